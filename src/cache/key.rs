//! The cache key: SHA-256 over the tenant, the models the request may be served by, the answer's
//! shape, and a canonical form of exactly the request fields that change the image. Two tenants
//! never share an entry; `user`, routing, timeout and cache settings never split one.
//!
//! [`key`] destructures [`ImageRequest`] field by field, so adding a field to the request does not
//! compile until someone decides whether it belongs in the key.

use serde::Serialize;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::answer::Shape;
use crate::request::{ImageRequest, OutputFormat, ResponseFormat, Size};

/// Bumped when what the key covers changes, so old entries are never read as new ones.
const VERSION: &str = "v2";

/// What the request may be served by: its first model (or the load balancer's set) and its
/// fallbacks, each by the id it resolved to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Targets<'a> {
    pub model: &'a str,
    /// `(model id, weight)`, in the request's order.
    pub balanced: Vec<(&'a str, f64)>,
    pub fallbacks: Vec<&'a str>,
}

/// The fields of a request that change the image, in a fixed order with fixed forms.
#[derive(Serialize)]
struct Fields<'a> {
    prompt: &'a str,
    n: u8,
    size: Option<String>,
    quality: Option<&'a str>,
    style: Option<&'a str>,
    response_format: Option<ResponseFormat>,
    background: Option<&'a str>,
    output_format: Option<OutputFormat>,
    output_compression: Option<u8>,
    moderation: Option<&'a str>,
    seed: Option<u32>,
    aspect_ratio: Option<&'a str>,
    resolution: Option<&'a str>,
    negative_prompt: Option<&'a str>,
    /// Provider extras, canonical: keys sorted, whole numbers as integers.
    extra: Value,
    /// An edit's or a variation's operation, input fidelity and the digest of every image and
    /// the mask; absent for a generation (whose keys are as before).
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<String>,
}

#[derive(Serialize)]
struct Keyed<'a> {
    version: &'static str,
    tenant: &'a str,
    targets: &'a Targets<'a>,
    shape: &'static str,
    fields: Fields<'a>,
}

/// The cache key of `request`, asked by `tenant`, served by `targets`, answered in `shape`:
/// `v2:` and 64 hex digits.
pub fn key(tenant: &str, targets: &Targets, shape: Shape, request: &ImageRequest) -> String {
    let ImageRequest {
        prompt,
        // The model is in `targets`, by the id it resolved to (an alias keys as its model).
        model: _,
        n,
        size,
        quality,
        style,
        response_format,
        background,
        output_format,
        output_compression,
        moderation,
        // Who the request is for does not change the image.
        user: _,
        seed,
        aspect_ratio,
        resolution,
        negative_prompt,
        extra,
        inputs,
        // A streamed answer is keyed apart (its stored answer is its `completed` events), by its
        // shape below; partial images are never stored, so asking for them keys alike.
        stream,
        partial_images: _,
        // Set only on the copy an attempt sends upstream.
        upstream_stream: _,
    } = request;
    let fields = Fields {
        prompt,
        n: *n,
        size: size.map(Size::wire),
        quality: quality.as_deref(),
        style: style.as_deref(),
        response_format: *response_format,
        background: background.as_deref(),
        output_format: *output_format,
        output_compression: *output_compression,
        moderation: moderation.as_deref(),
        seed: *seed,
        aspect_ratio: aspect_ratio.as_deref(),
        resolution: resolution.as_deref(),
        negative_prompt: negative_prompt.as_deref(),
        extra: canonical(&Value::Object(extra.clone())),
        inputs: inputs.as_ref().map(|inputs| format!("{}:{}:{}", inputs.operation.path(), inputs.input_fidelity.as_deref().unwrap_or(""), inputs.digest())),
    };
    let shape = match (shape, stream) {
        (Shape::OpenAi, false) => "openai",
        (Shape::OpenAi, true) => "openai-stream",
        (Shape::OpenRouter, _) => "openrouter",
    };
    let keyed = Keyed { version: VERSION, tenant, targets, shape, fields };
    let bytes = serde_json::to_vec(&keyed).expect("the key's parts always serialise");
    format!("{VERSION}:{}", hex::encode(Sha256::digest(&bytes)))
}

/// `value` with object keys sorted and whole numbers written as integers (`2.0` as `2`).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut sorted: Vec<(&String, &Value)> = map.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), canonical(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Number(number) => match number.as_f64() {
            Some(f) if number.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Number(Number::from(f as i64)),
            _ => value.clone(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_generation;

    fn request(body: &str) -> ImageRequest {
        parse_generation(Some("application/json"), body.as_bytes(), 1 << 20).unwrap()
    }

    fn targets() -> Targets<'static> {
        Targets { model: "openai/gpt-image-1", balanced: Vec::new(), fallbacks: vec!["azure/gpt-image-1"] }
    }

    fn key_of(body: &str) -> String {
        key("prod", &targets(), Shape::OpenAi, &request(body))
    }

    /// Every field of the request, set: the list the key test below decides on.
    const ALL_FIELDS: &str = r#"{"prompt":"p","model":"m","n":2,"size":"1024x1024","quality":"high","style":"vivid",
        "response_format":"b64_json","background":"opaque","output_format":"png","output_compression":50,"moderation":"low",
        "user":"u","seed":7,"aspect_ratio":"1:1","resolution":"1K","negative_prompt":"blur","steps":4}"#;
    /// The fields that change the image, and so the key.
    const KEYED: [&str; 15] = [
        "prompt",
        "n",
        "size",
        "quality",
        "style",
        "response_format",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "seed",
        "aspect_ratio",
        "resolution",
        "negative_prompt",
        "steps",
    ];
    /// The fields that do not.
    const UNKEYED: [&str; 2] = ["model", "user"];

    #[test]
    fn every_request_field_is_decided_and_each_keyed_one_changes_the_key() {
        let all: Value = serde_json::from_str(ALL_FIELDS).unwrap();
        let serialised = serde_json::to_value(request(ALL_FIELDS)).unwrap();
        // The request type's serialised fields (without `model`, which it never serialises) are
        // exactly the decided ones: a new field fails here until it is listed.
        let mut decided: Vec<&str> = KEYED.iter().chain(UNKEYED.iter()).copied().filter(|f| *f != "model").collect();
        decided.sort_unstable();
        let mut fields: Vec<&str> = serialised.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, decided);
        let base = key_of(ALL_FIELDS);
        for field in KEYED {
            let mut changed = all.clone();
            changed[field] = match &all[field] {
                Value::String(s) if field == "size" => Value::from(if s == "1024x1024" { "512x512" } else { "1024x1024" }),
                Value::String(_) if field == "quality" => Value::from("low"),
                Value::String(_) if field == "style" => Value::from("natural"),
                Value::String(_) if field == "response_format" => Value::from("url"),
                Value::String(_) if field == "background" => Value::from("transparent"),
                Value::String(_) if field == "output_format" => Value::from("jpeg"),
                Value::String(_) if field == "moderation" => Value::from("auto"),
                Value::String(_) if field == "aspect_ratio" => Value::from("16:9"),
                Value::String(_) if field == "resolution" => Value::from("2K"),
                Value::String(s) => Value::from(format!("{s}!")),
                Value::Number(n) => Value::from(n.as_u64().unwrap() + 1),
                other => panic!("{field}: {other}"),
            };
            assert_ne!(key_of(&changed.to_string()), base, "{field} changes the key");
        }
        for field in UNKEYED {
            let mut changed = all.clone();
            changed[field] = Value::from("other");
            assert_eq!(key_of(&changed.to_string()), base, "{field} does not change the key");
        }
    }

    #[test]
    fn forms_and_orders_that_mean_the_same_give_the_same_key() {
        assert_eq!(key_of(r#"{"prompt":"p","n":2,"seed":3}"#), key_of(r#"{"seed":3.0,"n":2.0,"prompt":"p"}"#));
        assert_eq!(key_of(r#"{"prompt":"p","steps":4,"cfg":{"b":1,"a":2}}"#), key_of(r#"{"cfg":{"a":2,"b":1.0},"steps":4.0,"prompt":"p"}"#));
        assert_eq!(key_of(r#"{"prompt":"p","user":null}"#), key_of(r#"{"prompt":"p"}"#), "null is absent");
        assert_ne!(key_of(r#"{"prompt":"p","steps":4}"#), key_of(r#"{"prompt":"p","steps":4.5}"#));
        assert!(key_of(r#"{"prompt":"p"}"#).starts_with("v2:") && key_of(r#"{"prompt":"p"}"#).len() == 3 + 64);
    }

    #[test]
    fn tenants_targets_and_shapes_never_share_an_entry() {
        let req = request(r#"{"prompt":"p"}"#);
        let base = key("prod", &targets(), Shape::OpenAi, &req);
        assert_ne!(key("staging", &targets(), Shape::OpenAi, &req), base, "another tenant");
        assert_ne!(key("prod", &targets(), Shape::OpenRouter, &req), base, "another answer shape");
        let no_fallback = Targets { fallbacks: Vec::new(), ..targets() };
        assert_ne!(key("prod", &no_fallback, Shape::OpenAi, &req), base, "another target set");
        let balanced = Targets { balanced: vec![("a/m", 0.5), ("b/m", 0.5)], ..targets() };
        assert_ne!(key("prod", &balanced, Shape::OpenAi, &req), base);
    }
}
