//! The per-request routing fields, compatible with orq.ai's router: read from the body's top
//! level, from its `orq` object, or from the `x-imagegate-config` header, each field checked with
//! a 400 that names it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::cache::{DEFAULT_TTL_SECS, MAX_TTL_SECS, MIN_TTL_SECS};
use crate::error::GatewayError;
use crate::fields::{as_int, as_short_string, as_string, take, wrong_type};

/// The fields a request may carry besides the OpenAI ones. `identity` is accepted only under
/// `orq` or in the header, as orq's clients send it.
pub const ROUTER_FIELDS: [&str; 8] = ["retry", "fallbacks", "fallback_on_codes", "load_balancer", "timeout", "metadata", "name", "cache"];
/// The most retries a request may ask for.
pub const MAX_RETRY_COUNT: u8 = 5;
/// The most status codes in `on_codes` or `fallback_on_codes`.
const MAX_CODES: usize = 20;
/// The most fallback targets.
const MAX_FALLBACKS: usize = 10;
/// The longest per-attempt timeout, in milliseconds (the longest deadline).
const MAX_CALL_TIMEOUT_MS: i64 = 900_000;
/// The shortest per-attempt timeout: shorter would turn every attempt into a timeout, each of
/// which may have started paid work.
pub const MIN_CALL_TIMEOUT_MS: i64 = 1_000;
/// Bounds on what a request carries to the log line (and later to its stored history).
pub const MAX_METADATA_ENTRIES: usize = 16;
pub const MAX_METADATA_KEY_CHARS: usize = 64;
pub const MAX_METADATA_VALUE_CHARS: usize = 512;
/// The longest `name`, `identity.id`, `display_name` and `email`.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest `identity.logo_url`.
const MAX_URL_CHARS: usize = 2048;
/// The most `identity.tags`, and the longest tag.
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 64;

/// What a request asked of the router; absent fields fall back to the server's policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterFields {
    pub retry_count: Option<u8>,
    pub retry_on: Option<Vec<u16>>,
    pub fallbacks: Option<Vec<String>>,
    pub fallback_on: Option<Vec<u16>>,
    /// `(model, weight)` pairs, weights > 0.
    pub load_balancer: Option<Vec<(String, f64)>>,
    pub call_timeout_ms: Option<u64>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub name: Option<String>,
    pub identity: Option<Identity>,
    pub cache_ttl_secs: Option<u64>,
}

/// Who the request is for, as orq's `identity` describes them; carried for logs and history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub logo_url: Option<String>,
    pub tags: Vec<String>,
}

/// Takes the routing fields out of `body` (top level and `orq`) and the `x-imagegate-config`
/// header. A field given both at the top level and under `orq` is a 400; the header fills in
/// only what the body leaves unset.
pub fn take_router_fields(body: &mut Map<String, Value>, header: Option<&str>) -> Result<RouterFields, GatewayError> {
    let mut given: Map<String, Value> = Map::new();
    if let Some(orq) = take(body, "orq") {
        let Value::Object(orq) = orq else { return Err(wrong_type("orq", "an object", &orq)) };
        for (name, value) in orq {
            // `contact` is the older name orq's clients still send for `identity`.
            let name = if name == "contact" { "identity".to_owned() } else { name };
            if !ROUTER_FIELDS.contains(&name.as_str()) && name != "identity" {
                return Err(unknown(&format!("orq.{name}")));
            }
            if name != "identity" || !given.contains_key("identity") {
                given.insert(name, value);
            }
        }
    }
    for name in ROUTER_FIELDS {
        if let Some(value) = take(body, name) {
            if given.contains_key(name) {
                return Err(GatewayError::invalid_param(name, format!("'{name}' is given both at the top level and under 'orq'; give it once.")));
            }
            given.insert(name.to_owned(), value);
        }
    }
    if let Some(header) = header {
        let param = "x-imagegate-config";
        let value: Value = serde_json::from_str(header)
            .map_err(|e| GatewayError::invalid_param(param, format!("The {param} header is not valid JSON: {e}.")).with_code("invalid_json"))?;
        let Value::Object(fields) = value else { return Err(wrong_type(param, "a JSON object", &value)) };
        for (name, value) in fields {
            if !ROUTER_FIELDS.contains(&name.as_str()) && name != "identity" {
                return Err(unknown(&format!("{param}.{name}")));
            }
            given.entry(name).or_insert(value);
        }
    }
    read(given)
}

fn unknown(param: &str) -> GatewayError {
    GatewayError::invalid_param(param, format!("Unknown parameter: '{param}'.")).with_code("unknown_parameter")
}

fn object(value: Value, param: &str) -> Result<Map<String, Value>, GatewayError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(wrong_type(param, "an object", &other)),
    }
}

fn array(value: Value, param: &str, max: usize) -> Result<Vec<Value>, GatewayError> {
    match value {
        Value::Array(items) if items.len() <= max => Ok(items),
        Value::Array(items) => Err(GatewayError::invalid_param(param, format!("'{param}' has {} entries; at most {max} are allowed.", items.len()))),
        other => Err(wrong_type(param, "an array", &other)),
    }
}

/// Rejects any key of `map` other than `known`, naming it under `param`.
fn only(map: &Map<String, Value>, param: &str, known: &[&str]) -> Result<(), GatewayError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(unknown(&format!("{param}.{key}"))),
        None => Ok(()),
    }
}

fn codes(value: Value, param: &str) -> Result<Vec<u16>, GatewayError> {
    array(value, param, MAX_CODES)?.iter().enumerate().map(|(i, code)| as_int(code, &format!("{param}[{i}]"), 400, 599).map(|c| c as u16)).collect()
}

/// A map of strings within the metadata bounds: at most [`MAX_METADATA_ENTRIES`] entries, keys of
/// at most [`MAX_METADATA_KEY_CHARS`] and values of at most [`MAX_METADATA_VALUE_CHARS`] characters.
pub(crate) fn string_map(value: Value, param: &str) -> Result<BTreeMap<String, String>, GatewayError> {
    let map = object(value, param)?;
    if map.len() > MAX_METADATA_ENTRIES {
        return Err(GatewayError::invalid_param(param, format!("'{param}' has {} entries; at most {MAX_METADATA_ENTRIES} are allowed.", map.len())));
    }
    map.into_iter()
        .map(|(k, v)| {
            if k.chars().count() > MAX_METADATA_KEY_CHARS {
                let shown: String = k.chars().take(32).collect();
                return Err(GatewayError::invalid_param(param, format!("'{param}' has a key longer than {MAX_METADATA_KEY_CHARS} characters ('{shown}…').")));
            }
            let text = as_short_string(v, &format!("{param}.{k}"), MAX_METADATA_VALUE_CHARS)?;
            Ok((k, text))
        })
        .collect()
}

fn read(mut given: Map<String, Value>) -> Result<RouterFields, GatewayError> {
    let mut fields = RouterFields::default();
    if let Some(retry) = take(&mut given, "retry") {
        let mut retry = object(retry, "retry")?;
        only(&retry, "retry", &["count", "on_codes"])?;
        if let Some(count) = take(&mut retry, "count") {
            fields.retry_count = Some(as_int(&count, "retry.count", 0, MAX_RETRY_COUNT as i64)? as u8);
        }
        if let Some(on_codes) = take(&mut retry, "on_codes") {
            fields.retry_on = Some(codes(on_codes, "retry.on_codes")?);
        }
    }
    if let Some(fallbacks) = take(&mut given, "fallbacks") {
        let targets = array(fallbacks, "fallbacks", MAX_FALLBACKS)?
            .into_iter()
            .enumerate()
            .map(|(i, target)| {
                let param = format!("fallbacks[{i}]");
                let mut target = object(target, &param)?;
                only(&target, &param, &["model"])?;
                let model = take(&mut target, "model").ok_or_else(|| GatewayError::invalid_param(&param, format!("'{param}' needs a 'model'.")))?;
                as_string(model, &format!("{param}.model"))
            })
            .collect::<Result<_, _>>()?;
        fields.fallbacks = Some(targets);
    }
    if let Some(on_codes) = take(&mut given, "fallback_on_codes") {
        fields.fallback_on = Some(codes(on_codes, "fallback_on_codes")?);
    }
    if let Some(balancer) = take(&mut given, "load_balancer") {
        fields.load_balancer = Some(load_balancer(balancer)?);
    }
    if let Some(timeout) = take(&mut given, "timeout") {
        let mut timeout = object(timeout, "timeout")?;
        only(&timeout, "timeout", &["call_timeout"])?;
        if let Some(call) = take(&mut timeout, "call_timeout") {
            fields.call_timeout_ms = Some(as_int(&call, "timeout.call_timeout", MIN_CALL_TIMEOUT_MS, MAX_CALL_TIMEOUT_MS)? as u64);
        }
    }
    if let Some(metadata) = take(&mut given, "metadata") {
        fields.metadata = Some(string_map(metadata, "metadata")?);
    }
    if let Some(name) = take(&mut given, "name") {
        fields.name = Some(as_short_string(name, "name", MAX_NAME_CHARS)?);
    }
    if let Some(cache) = take(&mut given, "cache") {
        let mut cache = object(cache, "cache")?;
        only(&cache, "cache", &["type", "ttl"])?;
        let kind = take(&mut cache, "type").map(|t| as_string(t, "cache.type")).transpose()?;
        if kind.as_deref() != Some("exact_match") {
            return Err(GatewayError::invalid_param("cache.type", "'cache.type' must be 'exact_match'."));
        }
        let (min, max) = (MIN_TTL_SECS as i64, MAX_TTL_SECS as i64);
        let ttl = take(&mut cache, "ttl").map(|t| as_int(&t, "cache.ttl", min, max)).transpose()?;
        fields.cache_ttl_secs = Some(ttl.map_or(DEFAULT_TTL_SECS, |ttl| ttl as u64));
    }
    if let Some(identity) = take(&mut given, "identity") {
        fields.identity = Some(read_identity(identity)?);
    }
    Ok(fields)
}

fn load_balancer(value: Value) -> Result<Vec<(String, f64)>, GatewayError> {
    let mut balancer = object(value, "load_balancer")?;
    only(&balancer, "load_balancer", &["type", "models"])?;
    let kind = take(&mut balancer, "type").map(|t| as_string(t, "load_balancer.type")).transpose()?;
    if kind.as_deref() != Some("weight_based") {
        return Err(GatewayError::invalid_param("load_balancer.type", "'load_balancer.type' must be 'weight_based'."));
    }
    let models = take(&mut balancer, "models").ok_or_else(|| GatewayError::invalid_param("load_balancer.models", "'load_balancer.models' is required."))?;
    let models = array(models, "load_balancer.models", MAX_FALLBACKS)?;
    if models.is_empty() {
        return Err(GatewayError::invalid_param("load_balancer.models", "'load_balancer.models' must not be empty."));
    }
    models
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let param = format!("load_balancer.models[{i}]");
            let mut entry = object(entry, &param)?;
            only(&entry, &param, &["model", "weight"])?;
            let model = take(&mut entry, "model").ok_or_else(|| GatewayError::invalid_param(&param, format!("'{param}' needs a 'model'.")))?;
            let model = as_string(model, &format!("{param}.model"))?;
            let weight_param = format!("{param}.weight");
            let weight = match take(&mut entry, "weight") {
                None => 1.0,
                Some(Value::Number(w)) => w.as_f64().unwrap_or(0.0),
                Some(other) => return Err(wrong_type(&weight_param, "a number", &other)),
            };
            if !(weight > 0.0 && weight.is_finite()) {
                return Err(GatewayError::invalid_param(&weight_param, format!("'{weight_param}' must be greater than 0.")));
            }
            Ok((model, weight))
        })
        .collect()
}

fn read_identity(value: Value) -> Result<Identity, GatewayError> {
    let mut identity = object(value, "orq.identity")?;
    only(&identity, "orq.identity", &["id", "display_name", "email", "metadata", "logo_url", "tags"])?;
    let text = |identity: &mut Map<String, Value>, key: &str, max: usize| {
        take(identity, key).map(|v| as_short_string(v, &format!("orq.identity.{key}"), max)).transpose()
    };
    let id = text(&mut identity, "id", MAX_NAME_CHARS)?.ok_or_else(|| GatewayError::invalid_param("orq.identity.id", "'orq.identity.id' is required."))?;
    Ok(Identity {
        id,
        display_name: text(&mut identity, "display_name", MAX_NAME_CHARS)?,
        email: text(&mut identity, "email", MAX_NAME_CHARS)?,
        logo_url: text(&mut identity, "logo_url", MAX_URL_CHARS)?,
        metadata: take(&mut identity, "metadata").map(|m| string_map(m, "orq.identity.metadata")).transpose()?.unwrap_or_default(),
        tags: take(&mut identity, "tags")
            .map(|tags| {
                array(tags, "orq.identity.tags", MAX_TAGS)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, tag)| as_short_string(tag, &format!("orq.identity.tags[{i}]"), MAX_TAG_CHARS))
                    .collect()
            })
            .transpose()?
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(body: Value, header: Option<&str>) -> Result<(RouterFields, Map<String, Value>), GatewayError> {
        let Value::Object(mut body) = body else { panic!("an object") };
        let fields = take_router_fields(&mut body, header)?;
        Ok((fields, body))
    }

    fn param_of(body: Value) -> String {
        fields(body, None).unwrap_err().param.expect("a param")
    }

    #[test]
    fn orq_fields_are_read_and_taken_out_of_the_body() {
        let body = json!({
            "prompt": "p",
            "retry": {"count": 3.0, "on_codes": [429.0, 503]},
            "fallbacks": [{"model": "b/m"}],
            "fallback_on_codes": [529],
            "load_balancer": {"type": "weight_based", "models": [{"model": "a/m", "weight": 0.7}, {"model": "c/m", "weight": 0.3}]},
            "timeout": {"call_timeout": 30000},
            "metadata": {"team": "art"},
            "name": "poster",
            "cache": {"type": "exact_match", "ttl": 60},
            "orq": {"identity": {"id": "u1", "email": "u@example.com", "tags": ["beta"]}}
        });
        let (f, rest) = fields(body, None).unwrap();
        assert_eq!(rest, json!({"prompt": "p"}).as_object().unwrap().clone(), "only the OpenAI fields remain");
        assert_eq!((f.retry_count, f.retry_on), (Some(3), Some(vec![429, 503])));
        assert_eq!(f.fallbacks, Some(vec!["b/m".to_owned()]));
        assert_eq!(f.fallback_on, Some(vec![529]));
        assert_eq!(f.load_balancer, Some(vec![("a/m".to_owned(), 0.7), ("c/m".to_owned(), 0.3)]));
        assert_eq!((f.call_timeout_ms, f.cache_ttl_secs), (Some(30000), Some(60)));
        assert_eq!(f.name.as_deref(), Some("poster"));
        let identity = f.identity.unwrap();
        assert_eq!((identity.id.as_str(), identity.tags), ("u1", vec!["beta".to_owned()]));
    }

    #[test]
    fn fields_may_sit_under_orq_or_in_the_header_which_fills_gaps_only() {
        let (f, _) = fields(json!({"orq": {"retry": {"count": 1}, "contact": {"id": "c1"}}}), Some(r#"{"retry": {"count": 4}, "name": "h"}"#)).unwrap();
        assert_eq!(f.identity.map(|i| i.id).as_deref(), Some("c1"), "orq's older `contact` is read as `identity`");
        assert_eq!((f.retry_count, f.name.as_deref()), (Some(1), Some("h")));
        assert_eq!(param_of(json!({"retry": {"count": 1}, "orq": {"retry": {"count": 2}}})), "retry");
    }

    #[test]
    fn every_bad_field_is_a_400_naming_it() {
        let cases = [
            (json!({"retry": {"count": 2.5}}), "retry.count"),
            (json!({"retry": {"count": 6}}), "retry.count"),
            (json!({"retry": {"count": 1, "tries": 2}}), "retry.tries"),
            (json!({"retry": {"on_codes": [200]}}), "retry.on_codes[0]"),
            (json!({"fallback_on_codes": [500, 600]}), "fallback_on_codes[1]"),
            (json!({"fallback_on_codes": (400..421).collect::<Vec<_>>()}), "fallback_on_codes"),
            (json!({"fallbacks": [{"model": 3}]}), "fallbacks[0].model"),
            (json!({"fallbacks": ["b/m"]}), "fallbacks[0]"),
            (json!({"load_balancer": {"type": "round_robin", "models": []}}), "load_balancer.type"),
            (json!({"load_balancer": {"type": "weight_based", "models": []}}), "load_balancer.models"),
            (json!({"load_balancer": {"type": "weight_based", "models": [{"model": "a", "weight": 0}]}}), "load_balancer.models[0].weight"),
            (json!({"timeout": {"call_timeout": 0}}), "timeout.call_timeout"),
            (json!({"timeout": {"call_timeout": 999}}), "timeout.call_timeout"),
            (json!({"name": "n".repeat(MAX_NAME_CHARS + 1)}), "name"),
            (json!({"metadata": (0..=MAX_METADATA_ENTRIES).map(|i| (format!("k{i}"), json!("v"))).collect::<Map<_, _>>()}), "metadata"),
            (json!({"metadata": {"k".repeat(MAX_METADATA_KEY_CHARS + 1): "v"}}), "metadata"),
            (json!({"metadata": {"team": "v".repeat(MAX_METADATA_VALUE_CHARS + 1)}}), "metadata.team"),
            (json!({"orq": {"identity": {"id": "i".repeat(MAX_NAME_CHARS + 1)}}}), "orq.identity.id"),
            (json!({"orq": {"identity": {"id": "u", "tags": vec!["t"; MAX_TAGS + 1]}}}), "orq.identity.tags"),
            (json!({"orq": {"identity": {"id": "u", "tags": ["t".repeat(MAX_TAG_CHARS + 1)]}}}), "orq.identity.tags[0]"),
            (json!({"orq": {"identity": {"id": "u", "metadata": {"a": "v".repeat(MAX_METADATA_VALUE_CHARS + 1)}}}}), "orq.identity.metadata.a"),
            (json!({"metadata": {"a": 1}}), "metadata.a"),
            (json!({"cache": {"type": "semantic"}}), "cache.type"),
            (json!({"cache": {"type": "exact_match", "ttl": 59}}), "cache.ttl"),
            (json!({"cache": {"type": "exact_match", "ttl": 259_201}}), "cache.ttl"),
            (json!({"cache": {"type": "exact_match", "ttl": 60.5}}), "cache.ttl"),
            (json!({"orq": {"identity": {"email": "x"}}}), "orq.identity.id"),
            (json!({"orq": {"colour": 1}}), "orq.colour"),
            (json!({"orq": []}), "orq"),
        ];
        for (body, param) in cases {
            assert_eq!(param_of(body.clone()), param, "{body}");
        }
        let header = fields(json!({}), Some("{not json")).unwrap_err();
        assert_eq!(header.param.as_deref(), Some("x-imagegate-config"));
        let unknown = fields(json!({}), Some(r#"{"fallback": []}"#)).unwrap_err();
        assert_eq!(unknown.param.as_deref(), Some("x-imagegate-config.fallback"));
    }
}
