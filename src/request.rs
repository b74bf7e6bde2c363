//! The parse stage: an OpenAI Images request body, checked field by field.
//!
//! [`parse_generation`] turns the raw body into an [`ImageRequest`] or a 400/413/415 naming the
//! offending `param`. Only the shape and ranges the OpenAI Images API documents are checked here;
//! what a particular model supports is the provider's business.

use serde::Serialize;
use serde_json::{Map, Value};

use std::rc::Rc;

use crate::error::{ErrorKind, GatewayError};
use crate::fields::{one_of, optional_int, optional_string, take, wrong_type};
use crate::inputs::{Inputs, Operation};

/// The longest prompt accepted, in characters (the largest any OpenAI image model takes).
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// The most images one request may ask for.
pub const MAX_N: u8 = 10;

/// A validated image generation request, in the OpenAI Images shape.
///
/// [`ImageRequest::for_model`] gives the OpenAI wire body (absent options left out) that an
/// OpenAI-speaking upstream receives, addressed to the upstream's model name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRequest {
    pub prompt: String,
    /// The model the client asked for; never sent upstream as is (see [`ImageRequest::for_model`]).
    #[serde(skip_serializing)]
    pub model: Option<String>,
    pub n: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_compression: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moderation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension (OpenRouter, Stability, Replicate, BFL): a fixed seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// Extension: `W:H` (`16:9`, `2.35:1`) or `auto`; for providers that take ratios, not pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Extension (OpenRouter, Google): `512`, `1K`, `2K` or `4K`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Extension (Stability, Replicate models that take one): what the image should not show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Any other fields, kept as sent: only a provider that lists them in its
    /// `allowed_parameters` receives them; for any other they are a 400 naming the field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// The images an edit or a variation sends in (none for a generation), shared by every
    /// attempt; never serialised (the history keeps [`Inputs::describe`]).
    #[serde(skip)]
    pub inputs: Option<Rc<Inputs>>,
    /// `stream: true`: the answer comes as server-sent events, OpenAI's image stream events
    /// ([`crate::image_stream`]). Sent upstream only through [`ImageRequest::streamed_upstream`],
    /// to an upstream that streams; for any other the gateway writes the events.
    #[serde(skip)]
    pub stream: bool,
    /// With `stream`: how many partial images (0–3) the client would take before the final one.
    #[serde(skip)]
    pub partial_images: Option<u8>,
    /// Set on the copy of a streamed request sent to an upstream that streams itself: its wire
    /// body then asks for the stream (`stream`, `partial_images`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub upstream_stream: Option<UpstreamStream>,
}

/// What a wire body asks of an upstream that streams its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UpstreamStream {
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_images: Option<u8>,
}

impl ImageRequest {
    /// This streamed request as sent to an upstream that streams its answer itself.
    pub fn streamed_upstream(&self) -> ImageRequest {
        ImageRequest { upstream_stream: Some(UpstreamStream { stream: true, partial_images: self.partial_images }), ..self.clone() }
    }
}

/// The OpenAI wire body of a request, addressed to an upstream model: borrows, never copies.
#[derive(Serialize)]
pub struct OpenAiBody<'a> {
    model: &'a str,
    #[serde(flatten)]
    request: &'a ImageRequest,
}

impl ImageRequest {
    /// This request as sent to `model` upstream.
    pub fn for_model<'a>(&'a self, model: &'a str) -> OpenAiBody<'a> {
        OpenAiBody { model, request: self }
    }
}

/// The requested image size: `auto` or explicit pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Auto,
    Pixels { width: u32, height: u32 },
}

impl Size {
    /// As on the wire: `auto` or `WxH`.
    pub fn wire(self) -> String {
        match self {
            Size::Auto => "auto".to_owned(),
            Size::Pixels { width, height } => format!("{width}x{height}"),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Size::Auto => s.serialize_str("auto"),
            Size::Pixels { width, height } => s.collect_str(&format_args!("{width}x{height}")),
        }
    }
}

/// How generated images are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Url,
    B64Json,
}

/// The encoding of generated images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

impl OutputFormat {
    /// The wire name, also the media subtype (`image/png`).
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Webp => "webp",
        }
    }

    /// Its media type (`image/png`).
    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }
}

/// Parses and validates a `POST /v1/images/generations` body.
///
/// `content_type` is the request's `Content-Type` header. Errors: 415 when it is not JSON, 413
/// when the body exceeds `max_body_bytes`, 400 for malformed JSON, unknown parameters and every
/// type or range error, each naming its `param`.
pub fn parse_generation(content_type: Option<&str>, body: &[u8], max_body_bytes: usize) -> Result<ImageRequest, GatewayError> {
    image_request(parse_body(content_type, body, max_body_bytes)?)
}

/// The body as a JSON object: 415 unless JSON, 413 over `max_body_bytes`, 400 when malformed or
/// not an object.
pub fn parse_body(content_type: Option<&str>, body: &[u8], max_body_bytes: usize) -> Result<Map<String, Value>, GatewayError> {
    check_content_type(content_type)?;
    if body.len() > max_body_bytes {
        return Err(body_too_large(max_body_bytes));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(ErrorKind::InvalidRequest, format!("We could not parse the JSON body of your request: {e}.")).with_code("invalid_json")
    })?;
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(GatewayError::new(ErrorKind::InvalidRequest, "The request body must be a JSON object.").with_code("invalid_json")),
    }
}

/// The OpenAI Images fields of a body object; any field left over is a 400 naming it, so
/// extension fields must be taken out first (see [`crate::policy::take_router_fields`]).
pub fn image_request(fields: Map<String, Value>) -> Result<ImageRequest, GatewayError> {
    request_for(fields, Operation::Generate)
}

/// [`image_request`] for `operation`: a variation takes no prompt.
pub fn request_for(mut fields: Map<String, Value>, operation: Operation) -> Result<ImageRequest, GatewayError> {
    let prompt = match operation {
        Operation::Variation if fields.contains_key("prompt") => {
            return Err(
                GatewayError::invalid_param("prompt", "A variation takes no 'prompt': it makes more images like the one sent.").with_code("unknown_parameter")
            )
        }
        Operation::Variation => String::new(),
        _ => prompt(&mut fields)?,
    };
    let request = ImageRequest {
        prompt,
        model: optional_string(&mut fields, "model")?,
        n: n(&mut fields)?,
        size: size(&mut fields)?,
        quality: one_of(&mut fields, "quality", &["auto", "standard", "hd", "low", "medium", "high"])?,
        style: one_of(&mut fields, "style", &["vivid", "natural"])?,
        response_format: one_of(&mut fields, "response_format", &["url", "b64_json"])?.map(|f| {
            if f == "url" {
                ResponseFormat::Url
            } else {
                ResponseFormat::B64Json
            }
        }),
        background: one_of(&mut fields, "background", &["auto", "transparent", "opaque"])?,
        output_format: one_of(&mut fields, "output_format", &["png", "jpeg", "webp"])?.map(|f| match f.as_str() {
            "png" => OutputFormat::Png,
            "jpeg" => OutputFormat::Jpeg,
            _ => OutputFormat::Webp,
        }),
        output_compression: optional_int(&mut fields, "output_compression", 0, 100)?.map(|v| v as u8),
        moderation: one_of(&mut fields, "moderation", &["auto", "low"])?,
        user: optional_string(&mut fields, "user")?,
        seed: optional_int(&mut fields, "seed", 0, u32::MAX as i64)?.map(|v| v as u32),
        aspect_ratio: aspect_ratio(&mut fields)?,
        resolution: one_of(&mut fields, "resolution", &["512", "1K", "2K", "4K"])?,
        negative_prompt: negative_prompt(&mut fields)?,
        extra: Map::new(),
        inputs: None,
        stream: match take(&mut fields, "stream") {
            None => false,
            Some(Value::Bool(stream)) => stream,
            Some(other) => return Err(wrong_type("stream", "a boolean", &other)),
        },
        partial_images: optional_int(&mut fields, "partial_images", 0, 3)?.map(|v| v as u8),
        upstream_stream: None,
    };
    if request.partial_images.is_some() && !request.stream {
        return Err(GatewayError::invalid_param("partial_images", "'partial_images' is for streamed answers: set 'stream' to true, or leave it out."));
    }
    Ok(ImageRequest { extra: fields, ..request })
}

/// The 400 for a field that neither the OpenAI Images API nor the chosen provider knows.
pub fn unknown_parameter(name: &str) -> GatewayError {
    GatewayError::invalid_param(name, format!("Unknown parameter: '{name}'.")).with_code("unknown_parameter")
}

/// The optional parameters the gateway knows by name (see [`ImageRequest::set_params`]); any
/// other field is an extension kept in [`ImageRequest::extra`].
pub const PARAMETERS: [&str; 12] = [
    "size",
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "user",
    "seed",
    "aspect_ratio",
    "resolution",
    "negative_prompt",
];

/// The fields every provider is given in its own way: never dropped, never passed through.
pub const CORE_FIELDS: [&str; 4] = ["prompt", "model", "n", "response_format"];

impl ImageRequest {
    /// The optional parameters this request sets, by wire name, leaving out `model`, `n`,
    /// `response_format` (the gateway honours those for every provider) and values that only
    /// restate the default (`auto`). Extension fields in [`ImageRequest::extra`] come last.
    pub fn set_params(&self) -> Vec<&str> {
        let not_auto = |v: &Option<String>| v.as_deref().is_some_and(|v| v != "auto");
        let set = [
            ("size", matches!(self.size, Some(Size::Pixels { .. }))),
            ("quality", not_auto(&self.quality)),
            ("style", self.style.is_some()),
            ("background", not_auto(&self.background)),
            ("output_format", self.output_format.is_some()),
            ("output_compression", self.output_compression.is_some()),
            ("moderation", not_auto(&self.moderation)),
            ("user", self.user.is_some()),
            ("seed", self.seed.is_some()),
            ("aspect_ratio", not_auto(&self.aspect_ratio)),
            ("resolution", self.resolution.is_some()),
            ("negative_prompt", self.negative_prompt.is_some()),
        ];
        set.into_iter().filter(|(_, set)| *set).map(|(name, _)| name).chain(self.extra.keys().map(String::as_str)).collect()
    }

    /// This request without the parameters named in `dropped` (a model's `drop_params`).
    pub fn without(&self, dropped: &[String]) -> ImageRequest {
        let mut request = self.clone();
        for name in dropped {
            match name.as_str() {
                "size" => request.size = None,
                "quality" => request.quality = None,
                "style" => request.style = None,
                "background" => request.background = None,
                "output_format" => request.output_format = None,
                "output_compression" => request.output_compression = None,
                "moderation" => request.moderation = None,
                "user" => request.user = None,
                "seed" => request.seed = None,
                "aspect_ratio" => request.aspect_ratio = None,
                "resolution" => request.resolution = None,
                "negative_prompt" => request.negative_prompt = None,
                other => {
                    request.extra.remove(other);
                }
            }
        }
        request
    }
}

/// The most one side of an `aspect_ratio` may be to the other (100:1 to 1:100).
pub const MAX_ASPECT_RATIO: f64 = 100.0;

/// `aspect_ratio`: `auto` or `W:H` with positive decimal sides (`16:9`, `2.35:1`, `9:19.5`), no
/// side more than [`MAX_ASPECT_RATIO`] times the other.
fn aspect_ratio(fields: &mut Map<String, Value>) -> Result<Option<String>, GatewayError> {
    let Some(text) = optional_string(fields, "aspect_ratio")? else { return Ok(None) };
    let side = |s: &str| {
        let decimal = !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        decimal.then(|| s.parse::<f64>().ok()).flatten().filter(|v| *v > 0.0)
    };
    let sides = text.split_once(':').and_then(|(w, h)| Some((side(w)?, side(h)?)));
    match sides {
        _ if text == "auto" => Ok(Some(text)),
        Some((w, h)) if w / h <= MAX_ASPECT_RATIO && h / w <= MAX_ASPECT_RATIO => Ok(Some(text)),
        Some(_) => Err(GatewayError::invalid_param(
            "aspect_ratio",
            format!("Invalid value for 'aspect_ratio': '{text}'. Neither side may be more than {MAX_ASPECT_RATIO} times the other."),
        )),
        None => {
            Err(GatewayError::invalid_param("aspect_ratio", format!("Invalid value for 'aspect_ratio': '{text}'. Use 'auto' or WIDTH:HEIGHT, e.g. '16:9'.")))
        }
    }
}

/// `negative_prompt`: a string of at most [`MAX_PROMPT_CHARS`] characters.
fn negative_prompt(fields: &mut Map<String, Value>) -> Result<Option<String>, GatewayError> {
    let Some(text) = optional_string(fields, "negative_prompt")? else { return Ok(None) };
    if text.chars().count() > MAX_PROMPT_CHARS {
        return Err(GatewayError::invalid_param("negative_prompt", format!("'negative_prompt' is longer than {MAX_PROMPT_CHARS} characters.")));
    }
    Ok(Some(text))
}

/// The 413 for a body over the configured limit.
pub fn body_too_large(max_body_bytes: usize) -> GatewayError {
    GatewayError::new(ErrorKind::PayloadTooLarge, format!("The request body is larger than the {max_body_bytes} bytes this gateway accepts."))
}

fn check_content_type(content_type: Option<&str>) -> Result<(), GatewayError> {
    let essence = content_type.and_then(|ct| ct.split(';').next()).map(str::trim);
    match essence {
        Some(ct) if ct.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(GatewayError::new(
            ErrorKind::UnsupportedMediaType,
            format!("Content-Type must be application/json, not {}.", content_type.map_or("missing".to_owned(), |ct| format!("'{ct}'"))),
        )),
    }
}

fn prompt(fields: &mut Map<String, Value>) -> Result<String, GatewayError> {
    let prompt = optional_string(fields, "prompt")?
        .ok_or_else(|| GatewayError::invalid_param("prompt", "Missing required parameter: 'prompt'.").with_code("missing_required_parameter"))?;
    if prompt.trim().is_empty() {
        return Err(GatewayError::invalid_param("prompt", "'prompt' must not be empty."));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(GatewayError::invalid_param("prompt", format!("'prompt' is {chars} characters long; the maximum is {MAX_PROMPT_CHARS}.")));
    }
    Ok(prompt)
}

fn n(fields: &mut Map<String, Value>) -> Result<u8, GatewayError> {
    Ok(optional_int(fields, "n", 1, MAX_N as i64)?.map_or(1, |n| n as u8))
}

fn size(fields: &mut Map<String, Value>) -> Result<Option<Size>, GatewayError> {
    let Some(text) = optional_string(fields, "size")? else { return Ok(None) };
    if text == "auto" {
        return Ok(Some(Size::Auto));
    }
    let pixels = text.split_once('x').and_then(|(w, h)| Some((dimension(w)?, dimension(h)?)));
    match pixels {
        Some((width, height)) => Ok(Some(Size::Pixels { width, height })),
        None => {
            Err(GatewayError::invalid_param("size", format!("Invalid value for 'size': '{text}'. Use 'auto' or WIDTHxHEIGHT in pixels, e.g. '1024x1024'.")))
        }
    }
}

/// One side of a `WxH` size: decimal digits only, 1 to 16384.
fn dimension(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|v| (1..=16_384).contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");

    fn parse(body: &str) -> Result<ImageRequest, GatewayError> {
        parse_generation(JSON, body.as_bytes(), 1 << 20)
    }

    fn param_of(body: &str) -> (u16, Option<String>) {
        let err = parse(body).unwrap_err();
        (err.status(), err.param)
    }

    #[test]
    fn every_named_parameter_is_listed_and_can_be_dropped() {
        let all = parse(
            r#"{"prompt":"p","size":"1024x1024","quality":"high","style":"vivid","background":"opaque","output_format":"png",
                "output_compression":50,"moderation":"low","user":"u","seed":1,"aspect_ratio":"1:1","resolution":"1K",
                "negative_prompt":"x","steps":4}"#,
        )
        .unwrap();
        let mut set = all.set_params();
        set.sort_unstable();
        let mut listed: Vec<&str> = PARAMETERS.iter().copied().chain(["steps"]).collect();
        listed.sort_unstable();
        assert_eq!(set, listed);
        let names: Vec<String> = listed.iter().map(|n| (*n).to_owned()).collect();
        assert!(all.without(&names).set_params().is_empty());
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let req = parse(r#"{"prompt":"a red fox"}"#).unwrap();
        assert_eq!(req.prompt, "a red fox");
        assert_eq!(req.n, 1);
        assert_eq!(req.size, None);
        assert_eq!(req.model, None);
    }

    #[test]
    fn full_request_round_trips_to_the_openai_wire_shape() {
        let body = r#"{"prompt":"p","model":"m","n":2,"size":"512x256","quality":"hd","style":"vivid",
            "response_format":"b64_json","background":"opaque","output_format":"webp",
            "output_compression":80,"moderation":"low","user":"u1"}"#;
        let req = parse(body).unwrap();
        assert_eq!(req.size, Some(Size::Pixels { width: 512, height: 256 }));
        let wire: Value = serde_json::to_value(req.for_model("m")).unwrap();
        let original: Value = serde_json::from_str(body).unwrap();
        assert_eq!(wire, original);
    }

    #[test]
    fn nulls_count_as_absent() {
        let req = parse(r#"{"prompt":"p","n":null,"size":null,"user":null}"#).unwrap();
        assert_eq!((req.n, req.size, req.user), (1, None, None));
    }

    #[test]
    fn integral_floats_are_accepted_for_integers() {
        assert_eq!(parse(r#"{"prompt":"p","n":3.0}"#).unwrap().n, 3);
        assert_eq!(param_of(r#"{"prompt":"p","n":2.5}"#), (400, Some("n".into())));
        for huge in ["1e20", "18446744073709551615", "-9223372036854775808"] {
            let err = parse(&format!(r#"{{"prompt":"p","n":{huge}}}"#)).unwrap_err();
            assert_eq!((err.param.as_deref(), err.code), (Some("n"), None), "{huge}: a range error, not a type error");
        }
    }

    #[test]
    fn every_type_and_range_error_names_its_param() {
        let cases = [
            (r#"{}"#, "prompt"),
            (r#"{"prompt":""}"#, "prompt"),
            (r#"{"prompt":"   "}"#, "prompt"),
            (r#"{"prompt":42}"#, "prompt"),
            (r#"{"prompt":"p","n":0}"#, "n"),
            (r#"{"prompt":"p","n":11}"#, "n"),
            (r#"{"prompt":"p","n":"2"}"#, "n"),
            (r#"{"prompt":"p","size":"big"}"#, "size"),
            (r#"{"prompt":"p","size":"0x10"}"#, "size"),
            (r#"{"prompt":"p","size":"+1x10"}"#, "size"),
            (r#"{"prompt":"p","size":1024}"#, "size"),
            (r#"{"prompt":"p","quality":"ultra"}"#, "quality"),
            (r#"{"prompt":"p","style":"pop"}"#, "style"),
            (r#"{"prompt":"p","response_format":"file"}"#, "response_format"),
            (r#"{"prompt":"p","background":"red"}"#, "background"),
            (r#"{"prompt":"p","output_format":"gif"}"#, "output_format"),
            (r#"{"prompt":"p","output_compression":101}"#, "output_compression"),
            (r#"{"prompt":"p","output_compression":-1}"#, "output_compression"),
            (r#"{"prompt":"p","moderation":"none"}"#, "moderation"),
            (r#"{"prompt":"p","user":7}"#, "user"),
            (r#"{"prompt":"p","model":["a"]}"#, "model"),
            (r#"{"prompt":"p","stream":"yes"}"#, "stream"),
            (r#"{"prompt":"p","partial_images":2}"#, "partial_images"),
            (r#"{"prompt":"p","stream":true,"partial_images":4}"#, "partial_images"),
            (r#"{"prompt":"p","seed":-1}"#, "seed"),
            (r#"{"prompt":"p","seed":"7"}"#, "seed"),
            (r#"{"prompt":"p","aspect_ratio":"wide"}"#, "aspect_ratio"),
            (r#"{"prompt":"p","aspect_ratio":"16:-9"}"#, "aspect_ratio"),
            (r#"{"prompt":"p","resolution":"8K"}"#, "resolution"),
            (r#"{"prompt":"p","negative_prompt":false}"#, "negative_prompt"),
        ];
        for (body, param) in cases {
            assert_eq!(param_of(body), (400, Some(param.to_owned())), "{body}");
        }
    }

    #[test]
    fn unknown_fields_are_kept_for_the_provider_to_accept_or_refuse() {
        let req = parse(r#"{"prompt":"p","steps":4,"seed":7,"aspect_ratio":"16:9","quality":"auto"}"#).unwrap();
        assert_eq!(req.extra.get("steps"), Some(&Value::from(4)));
        assert_eq!(req.set_params(), vec!["seed", "aspect_ratio", "steps"]);
        let wire: Value = serde_json::to_value(req.for_model("m")).unwrap();
        assert_eq!(wire["steps"], 4);
        let trimmed = req.without(&["steps".to_owned(), "seed".to_owned()]);
        assert_eq!(trimmed.set_params(), vec!["aspect_ratio"]);
    }

    #[test]
    fn overlong_prompt_is_rejected() {
        let body = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(MAX_PROMPT_CHARS + 1));
        assert_eq!(param_of(&body), (400, Some("prompt".into())));
    }

    #[test]
    fn malformed_json_is_a_400_without_a_param() {
        let err = parse(r#"{"prompt": "unterminated"#).unwrap_err();
        assert_eq!((err.status(), err.code, err.param), (400, Some("invalid_json"), None));
        assert_eq!(parse("[1,2]").unwrap_err().code, Some("invalid_json"));
    }

    #[test]
    fn content_type_must_be_json() {
        let body = br#"{"prompt":"p"}"#;
        assert!(parse_generation(Some("application/json; charset=utf-8"), body, 1024).is_ok());
        assert!(parse_generation(Some("Application/JSON"), body, 1024).is_ok());
        for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            assert_eq!(parse_generation(ct, body, 1024).unwrap_err().status(), 415, "{ct:?}");
        }
    }

    #[test]
    fn oversized_body_is_413() {
        let body = br#"{"prompt":"a long enough prompt"}"#;
        assert_eq!(parse_generation(JSON, body, 10).unwrap_err().status(), 413);
    }
}
