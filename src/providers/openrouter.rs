//! OpenRouter's image API: `POST {base_url}/images` (default `https://openrouter.ai/api/v1`) with
//! a bearer key. The answer (`{created, data:[{b64_json, media_type?}], usage?:{…, cost?}}`) is
//! translated, not relayed: it carries a media type and the cost in US dollars.
//!
//! Followed: the official `@openrouter/sdk` 1.3.19 (`funcs/imagesGenerate.js`: path `/images`;
//! `models/imagegenerationrequest.js`: outbound fields; `models/imagegenerationresponse.js`,
//! `models/imagegenerationusage.js`: the answer; `models/*responseerrordata.js`: the error
//! envelope `{"error":{"code":<int>,"message","metadata"}}`) and OpenRouter's "Errors and
//! Debugging" page (402 = out of credits; 403 = moderation, `metadata.reasons`,
//! `metadata.flagged_input`; errors after generation started come inside a 200 body).
//!
//! Mapping: `size` `WxH` is sent as is (OpenRouter takes explicit pixels; `auto` is left out);
//! `aspect_ratio`, `resolution`, `seed`, `background`, `output_format`, `output_compression`,
//! `user` and `n` go through unchanged; `quality` `auto`/`low`/`medium`/`high` pass and DALL-E's
//! `standard` becomes `medium`, `hd` becomes `high` (OpenRouter's scale has no `standard`/`hd`;
//! `medium` is GPT-image's everyday tier and `high` its detailed one). Fields the provider lists
//! in `allowed_parameters` (e.g. `provider`, `session_id`) go through as sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::errors::{self, Detail};
use super::wire::{self, bearer, json_headers, post};
use super::{Adapter, AnswerError, Generated, Image, ImageData, Plan, Planned, Progress, Target};
use crate::error::GatewayError;
use crate::inputs::Operation;
use crate::request::{ImageRequest, OutputFormat, Size};

/// The request parameters OpenRouter's image API takes (besides `model`, `n`).
pub const HONOURED: &[&str] = &["size", "quality", "background", "output_format", "output_compression", "user", "seed", "aspect_ratio", "resolution"];

/// The body of `POST /images`, as `@openrouter/sdk` sends it; absent options are left out.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    prompt: &'a str,
    n: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    background: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<OutputFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_compression: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'a str>,
    /// An edit's images, as base64 data URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    input_references: Vec<Reference>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// One of `input_references`: `{"type": "image_url", "image_url": {"url"}}`.
#[derive(Serialize)]
struct Reference {
    #[serde(rename = "type")]
    kind: &'static str,
    image_url: ReferenceUrl,
}

#[derive(Serialize)]
struct ReferenceUrl {
    url: String,
}

/// The `openrouter` kind.
pub struct OpenRouter;

impl Adapter for OpenRouter {
    fn name(&self) -> &'static str {
        "openrouter"
    }
    fn default_base_url(&self) -> Option<&'static str> {
        Some("https://openrouter.ai/api/v1")
    }
    fn honoured(&self) -> &'static [&'static str] {
        HONOURED
    }
    fn passes_extensions(&self) -> bool {
        true
    }
    fn takes(&self, operation: Operation) -> bool {
        // Reference images in; OpenRouter has no variations.
        operation != Operation::Variation
    }
    fn plan(&self, target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError> {
        plan(target, request).map(Planned::Calls)
    }
    fn read_answer(&self, target: &Target, _content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError> {
        read_answer(target, body)
    }
    fn error_detail(&self, body: &[u8]) -> Detail {
        error_detail(body)
    }
}

/// One call to `{base_url}/images`, translated; a 400 naming `quality` for a value OpenRouter has
/// no equivalent of.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    if request.inputs.as_ref().is_some_and(|inputs| inputs.mask.is_some()) {
        return Err(GatewayError::invalid_param(
            "mask",
            format!("The model '{}' (an 'openrouter' provider) takes reference images, not a mask.", target.model_id),
        )
        .with_code("unsupported_parameter"));
    }
    let mut body = WireRequest {
        model: target.upstream_model(),
        prompt: &request.prompt,
        n: request.n,
        size: match request.size {
            Some(Size::Pixels { width, height }) => Some(format!("{width}x{height}")),
            Some(Size::Auto) | None => None,
        },
        quality: request.quality.as_deref().map(quality).transpose()?,
        background: request.background.as_deref(),
        output_format: request.output_format,
        output_compression: request.output_compression,
        user: request.user.as_deref(),
        seed: request.seed,
        aspect_ratio: request.aspect_ratio.as_deref(),
        resolution: request.resolution.as_deref(),
        input_references: Vec::new(),
        extra: &request.extra,
    };
    let mut headers = json_headers(target);
    if let Some(key) = target.key {
        headers.push(("authorization".to_owned(), bearer(key)));
    }
    let body = match &request.inputs {
        None => serde_json::to_vec(&body).expect("the request is always serialisable").into(),
        // The images encoded once per upstream model, the same bytes for every attempt.
        Some(inputs) => {
            let key = format!("{} {} {}", target.provider.id, target.model_id, target.upstream_model());
            let (_, body) = inputs.form_for(&key, || {
                body.input_references =
                    inputs.images.iter().map(|image| Reference { kind: "image_url", image_url: ReferenceUrl { url: image.data_url() } }).collect();
                ("application/json".to_owned(), serde_json::to_vec(&body).expect("the request is always serialisable").into())
            });
            body
        }
    };
    Ok(Plan::one(post(format!("{}/images", target.provider.base()), headers, body)))
}

/// OpenRouter's quality for ours: `auto`, `low`, `medium`, `high` as they are; `standard` →
/// `medium`, `hd` → `high`.
fn quality(ours: &str) -> Result<&'static str, GatewayError> {
    match ours {
        "auto" => Ok("auto"),
        "low" => Ok("low"),
        "medium" | "standard" => Ok("medium"),
        "high" | "hd" => Ok("high"),
        other => Err(GatewayError::invalid_param(
            "quality",
            format!("OpenRouter has no quality '{other}'; use 'auto', 'low', 'medium', 'high', 'standard' or 'hd'."),
        )),
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Vec<AnswerImage>,
    #[serde(default)]
    usage: Option<Usage>,
    /// An error raised after generation started comes inside a 200 answer.
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct AnswerImage {
    #[serde(default)]
    b64_json: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    cost: Option<f64>,
}

/// Reads an image answer: the Base64 images with their media types, and `usage.cost` as
/// [`Generated::cost_usd`]. A 200 answer carrying an `error` and no image is a 403
/// `content_policy_violation` when it is a moderation refusal, else a 502; one with neither is a
/// 502 `empty_upstream_answer`.
pub fn read_answer(target: &Target, body: &[u8]) -> Result<Progress, AnswerError> {
    let id = &target.provider.id;
    let answer: Answer = wire::parse(target, body, "an OpenRouter image answer")?;
    let images: Vec<Image> = answer
        .data
        .into_iter()
        .filter_map(|image| {
            let b64 = image.b64_json.filter(|b| !b.is_empty())?;
            Some(Image { data: ImageData::Base64(b64), media_type: image.media_type, revised_prompt: None })
        })
        .collect();
    if images.is_empty() {
        return Err(match answer.error.map(detail_of) {
            Some(Detail { code: Some(code), message }) if code == "content_policy_violation" => {
                errors::refused(id, message.as_deref().unwrap_or("the content was flagged"), target.key)
            }
            Some(detail) => errors::job_failed(id, detail.message.as_deref(), target.key),
            None => errors::no_images(id),
        });
    }
    let cost_usd = answer.usage.and_then(|u| u.cost).filter(|c| c.is_finite() && *c >= 0.0);
    Ok(Progress::Done(Generated { images, cost_usd, ..Generated::default() }))
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// What OpenRouter's error envelope says. A moderation refusal (metadata with `reasons` or
/// `flagged_input`) is `content_policy_violation`, its reasons appended to the message; code 402
/// is `insufficient_quota`; a string code is kept; other numeric codes (the HTTP status again)
/// give no code.
pub fn error_detail(body: &[u8]) -> Detail {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => detail_of(error),
        Err(_) => Detail::default(),
    }
}

fn detail_of(error: ErrorBody) -> Detail {
    let metadata = error.metadata.unwrap_or_default();
    let moderated = metadata.contains_key("reasons") || metadata.contains_key("flagged_input");
    let code = match &error.code {
        _ if moderated => Some("content_policy_violation".to_owned()),
        Some(Value::Number(n)) if n.as_u64() == Some(402) => Some("insufficient_quota".to_owned()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let reasons: Vec<&str> = metadata.get("reasons").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let message = match (error.message, reasons.is_empty()) {
        (Some(message), false) => Some(format!("{message} (reasons: {})", reasons.join(", "))),
        (message, _) => message,
    };
    Detail { message, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::testing::{as_golden, request, with_target_in};
    use crate::providers::{check_params, read_error};

    use crate::upstream::HeaderValue;
    use serde_json::json;

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/openrouter/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/openrouter/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/openrouter/error.json");

    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[{"id":"openrouter","kind":"openrouter","api_key_secret":"K"},
                             {"id":"routed","kind":"openrouter","base_url":"https://or.example.com/api/v1/","api_key_secret":"K","allowed_parameters":["provider"]}],
                "models":[{"id":"openrouter/seedream","provider":"openrouter","upstream_model":"bytedance-seed/seedream-4.5"},
                          {"id":"routed/gpt-image","provider":"routed","upstream_model":"openai/gpt-5-image"}]}"#,
        )
        .unwrap()
    }

    /// The wire body `plan` builds for `body` sent to `openrouter/seedream`.
    fn sent(body: &str) -> Result<Value, GatewayError> {
        let config = config();
        let (model, provider) = config.resolve_model(Some("openrouter/seedream")).unwrap();
        let plan = plan(&provider.target(model, None, 150_000), &request(body))?;
        Ok(serde_json::from_slice(&plan.calls[0].body).unwrap())
    }

    fn with_target<T>(f: impl FnOnce(&Target) -> T) -> T {
        with_target_in(&config(), "openrouter/seedream", "sk-or-test", f)
    }

    #[test]
    fn the_documented_request_matches_the_golden_file() {
        with_target(|target| {
            let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
            let plan = plan(target, &request(&golden["body"].to_string())).unwrap();
            assert!(!plan.relay, "answers are translated");
            assert_eq!(plan.calls.len(), 1);
            assert_eq!(as_golden(&plan.calls[0]), golden);
            assert!(matches!(plan.calls[0].headers.iter().find(|(n, _)| n == "authorization"), Some((_, HeaderValue::Secret(_)))));
            assert!(!format!("{:?}", plan.calls[0]).contains("sk-or-test"));
        });
    }

    #[test]
    fn every_honoured_parameter_goes_through() {
        let body = r#"{"prompt":"p","model":"x","n":2,"size":"2048x2048","quality":"low","background":"transparent","output_format":"webp",
            "output_compression":70,"user":"u1","seed":7,"aspect_ratio":"1:1","resolution":"2K","response_format":"url"}"#;
        assert_eq!(
            sent(body).unwrap(),
            json!({"model":"bytedance-seed/seedream-4.5","prompt":"p","n":2,"size":"2048x2048","quality":"low","background":"transparent",
                   "output_format":"webp","output_compression":70,"user":"u1","seed":7,"aspect_ratio":"1:1","resolution":"2K"})
        );
        assert_eq!(
            sent(r#"{"prompt":"p","size":"auto","aspect_ratio":"9:19.5"}"#).unwrap(),
            json!({"model":"bytedance-seed/seedream-4.5","prompt":"p","n":1,"aspect_ratio":"9:19.5"})
        );
        for format in ["png", "jpeg", "webp"] {
            assert_eq!(sent(&format!(r#"{{"prompt":"p","output_format":"{format}"}}"#)).unwrap()["output_format"], format);
        }
    }

    #[test]
    fn quality_maps_onto_openrouters_scale() {
        for (ours, theirs) in [("auto", "auto"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("standard", "medium"), ("hd", "high")] {
            assert_eq!(sent(&format!(r#"{{"prompt":"p","quality":"{ours}"}}"#)).unwrap()["quality"], theirs, "{ours}");
        }
        let err = quality("ultra").unwrap_err();
        assert_eq!((err.status(), err.param.as_deref()), (400, Some("quality")));
    }

    #[test]
    fn unhonoured_parameters_are_refused_and_allowed_extras_go_through() {
        with_target(|target| {
            for (body, param) in [
                (r#"{"prompt":"p","style":"vivid"}"#, "style"),
                (r#"{"prompt":"p","moderation":"low"}"#, "moderation"),
                (r#"{"prompt":"p","negative_prompt":"x"}"#, "negative_prompt"),
                (r#"{"prompt":"p","provider":{"only":["openai"]}}"#, "provider"),
            ] {
                let err = check_params(target, &request(body)).unwrap_err();
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
            }
        });
        let config = config();
        let (model, provider) = config.resolve_model(Some("routed/gpt-image")).unwrap();
        let target = provider.target(model, None, 150_000);
        let req = request(r#"{"prompt":"p","provider":{"only":["openai"]}}"#);
        check_params(&target, &req).unwrap();
        let call = &plan(&target, &req).unwrap().calls[0];
        assert_eq!(call.url, "https://or.example.com/api/v1/images");
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body, json!({"model":"openai/gpt-5-image","prompt":"p","n":1,"provider":{"only":["openai"]}}));
    }

    #[test]
    fn the_documented_answer_reads_into_images_with_media_type_and_cost() {
        with_target(|target| {
            let Ok(Progress::Done(done)) = read_answer(target, GOLDEN_ANSWER.as_bytes()) else { panic!("not done") };
            assert_eq!(done.images.len(), 2);
            assert_eq!(
                done.images[0].data,
                ImageData::Base64("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==".into())
            );
            assert_eq!(done.images[0].media_type.as_deref(), Some("image/png"));
            assert_eq!(done.images[1].media_type, None);
            assert_eq!(done.cost_usd, Some(0.04));
            let no_usage = read_answer(target, br#"{"created":1,"data":[{"b64_json":"aGk=","media_type":"image/webp"}]}"#).unwrap();
            assert!(matches!(no_usage, Progress::Done(Generated { cost_usd: None, .. })));
        });
    }

    #[test]
    fn answers_without_images_are_errors() {
        with_target(|target| {
            let empty = read_answer(target, br#"{"created":1,"data":[]}"#).unwrap_err().to_error();
            assert_eq!((empty.status(), empty.code), (502, Some("empty_upstream_answer")));
            assert_eq!(read_answer(target, b"<html>").unwrap_err().to_error().status(), 502);
            let flagged = br#"{"error":{"code":403,"message":"Input flagged","metadata":{"reasons":["violence"],"flagged_input":"..."}}}"#;
            let refused = read_answer(target, flagged).unwrap_err().to_error();
            assert_eq!((refused.status(), refused.code), (403, Some("content_policy_violation")));
            assert!(refused.message.contains("Input flagged (reasons: violence)"), "{}", refused.message);
            let failed = read_answer(target, br#"{"error":{"code":502,"message":"Provider returned error"}}"#).unwrap_err().to_error();
            assert_eq!((failed.status(), failed.code), (502, Some("upstream_generation_failed")));
            assert!(failed.message.contains("Provider returned error"));
        });
    }

    #[test]
    fn documented_errors_map_to_the_gateway_set() {
        with_target(|target| {
            let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
            let expected = [(403, Some("content_policy_violation")), (402, None), (429, None)];
            for (case, (status, code)) in golden.iter().zip(expected) {
                let err = read_error(target, "/", case["status"].as_u64().unwrap() as u16, Some("9".into()), case["body"].to_string().as_bytes());
                assert_eq!(err.status(), status, "{case}");
                if code.is_some() {
                    assert_eq!(err.code, code);
                }
                assert!(err.message.contains(case["body"]["error"]["message"].as_str().unwrap()), "{}", err.message);
            }
            assert_eq!(read_error(target, "/", 429, Some("9".into()), golden[2]["body"].to_string().as_bytes()).retry_after.as_deref(), Some("9"));
            let credits = error_detail(golden[1]["body"].to_string().as_bytes());
            assert_eq!(credits.code.as_deref(), Some("insufficient_quota"));
            let moderated = error_detail(golden[0]["body"].to_string().as_bytes());
            assert!(moderated.message.unwrap().ends_with("(reasons: sexual/minors)"));
            assert_eq!(error_detail(br#"{"error":{"code":"invalid_prompt","message":"m"}}"#).code.as_deref(), Some("invalid_prompt"));
            assert_eq!(error_detail(br#"{"error":{"code":400,"message":"m"}}"#), Detail { message: Some("m".into()), code: None });
            assert_eq!(error_detail(b"Bad Gateway"), Detail::default());
        });
    }
}
