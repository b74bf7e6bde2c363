//! Any other host speaking the OpenAI Images API (Together, xAI, Fireworks, a local server):
//! `POST {base_url}/images/generations` with the OpenAI wire body addressed to the upstream
//! model. Fields the provider lists in `allowed_parameters` (extension fields such as `seed`, or
//! the host's own such as Together's `steps`) go through as sent: [`super::check_params`] has
//! already refused every field that is neither OpenAI's nor allowed, and [`wire_body`]
//! serialises the rest. The answer is in the OpenAI shape and relayed.
//!
//! Followed: OpenAI's Images API reference (body and answer) and, for the golden files,
//! Together's OpenAPI spec (`togethercomputer/openapi`, `POST /images/generations`,
//! `ImageResponse`, `ErrorData`) and its image generation guide.

use super::errors::Detail;
use super::openai;
use super::wire::{bearer, headers_with, post};
use super::{Adapter, AnswerError, Plan, Planned, Progress, Settings, Target};
use crate::error::GatewayError;
use crate::inputs::Operation;
use crate::request::ImageRequest;
use crate::secret::Secret;
use crate::upstream::HeaderValue;

/// The `openai_compatible` kind.
pub struct OpenAiCompatible;

impl Adapter for OpenAiCompatible {
    fn name(&self) -> &'static str {
        "openai_compatible"
    }
    fn honoured(&self) -> &'static [&'static str] {
        openai::HONOURED
    }
    fn key_optional(&self) -> bool {
        true
    }
    fn passes_extensions(&self) -> bool {
        true
    }
    fn sends_openai_body(&self) -> bool {
        true
    }
    fn takes(&self, _operation: Operation) -> bool {
        true
    }
    fn honoured_in(&self, operation: Operation) -> &'static [&'static str] {
        openai::honoured_in(operation)
    }
    /// Only where the model declares it (`supports.stream: true`).
    fn streams(&self, _upstream_model: &str, declared: Option<bool>) -> bool {
        declared == Some(true)
    }
    fn plan(&self, target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError> {
        plan(target, request).map(Planned::Calls)
    }
    fn read_answer(&self, target: &Target, _content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError> {
        openai::read_answer(target, body)
    }
    fn error_detail(&self, body: &[u8]) -> Detail {
        openai::error_detail(body)
    }
}

/// One call to `{base_url}/images/generations`, relayed; no key header for a keyless provider.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    let (content_type, body) = openai::body_for(target, request, Some(target.upstream_model()))?;
    let mut headers = headers_with(target, content_type);
    if let Some(key) = target.key {
        headers.push(key_header(&target.provider, key));
    }
    let url = format!("{}/images/{}", target.provider.base(), openai::operation(request).path());
    Ok(Plan { calls: vec![post(url, headers, body)], relay: true })
}

/// The header carrying the key: `key_header` unset or `authorization` (any case) sends
/// `Authorization: Bearer <key>`; any other name sends that header with the bare key.
fn key_header(provider: &Settings, key: &Secret) -> (String, HeaderValue) {
    match provider.key_header {
        Some(name) if !name.eq_ignore_ascii_case("authorization") => (name.to_owned(), HeaderValue::Secret(key.clone())),
        _ => ("authorization".to_owned(), bearer(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::testing::{as_golden, request};
    use crate::providers::{check_params, errors, read_error, ImageData, Progress};

    use crate::upstream::UpstreamRequest;
    use serde_json::{json, Value};

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/openai_compatible/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/openai_compatible/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/openai_compatible/error.json");

    /// Together (bearer, `steps` and `seed` allowed), a host with an `x-api-key` header, and a
    /// keyless local server.
    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[
                 {"id":"together","kind":"openai_compatible","base_url":"https://api.together.xyz/v1/","api_key_secret":"T","allowed_parameters":["steps","seed"]},
                 {"id":"custom","kind":"openai_compatible","base_url":"https://img.example.com/v1","api_key_secret":"C","key_header":"x-api-key"},
                 {"id":"shouty","kind":"openai_compatible","base_url":"https://img.example.com/v1","api_key_secret":"C","key_header":"Authorization"},
                 {"id":"local","kind":"openai_compatible","base_url":"http://localhost:8080/v1"}],
               "models":[{"id":"together/flux-schnell","provider":"together","upstream_model":"black-forest-labs/FLUX.1-schnell"},
                         {"id":"custom/m","provider":"custom"},{"id":"shouty/m","provider":"shouty"},{"id":"local/sd","provider":"local"}]}"#,
        )
        .unwrap()
    }

    fn header<'a>(upstream: &'a UpstreamRequest, name: &str) -> Option<&'a HeaderValue> {
        upstream.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn togethers_documented_request_with_allowed_steps_and_seed_matches_the_golden_file() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("together/flux-schnell")).unwrap();
        let key = Secret::new("together-test-key");
        let target = provider.target(model, Some(&key), 150_000);
        let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
        let mut client_body = golden["body"].clone();
        client_body["model"] = json!("together/flux-schnell");
        let req = request(&client_body.to_string());
        check_params(&target, &req).expect("steps and seed are allowed for this provider");
        let plan = plan(&target, &req).unwrap();
        assert!(plan.relay);
        assert_eq!(as_golden(&plan.calls[0]), golden);
        assert!(matches!(header(&plan.calls[0], "authorization"), Some(HeaderValue::Secret(_))));
        assert!(!format!("{:?}", plan.calls[0]).contains("together-test-key"));
    }

    #[test]
    fn fields_not_in_allowed_parameters_are_refused_before_planning() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("custom/m")).unwrap();
        let target = provider.target(model, None, 150_000);
        let steps = check_params(&target, &request(r#"{"prompt":"p","steps":4}"#)).unwrap_err();
        assert_eq!((steps.status(), steps.param.as_deref(), steps.code), (400, Some("steps"), Some("unknown_parameter")));
        let seed = check_params(&target, &request(r#"{"prompt":"p","seed":7}"#)).unwrap_err();
        assert_eq!((seed.status(), seed.param.as_deref(), seed.code), (400, Some("seed"), Some("unsupported_parameter")));
        check_params(&target, &request(r#"{"prompt":"p","size":"1024x1024","quality":"hd","style":"vivid"}"#)).expect("OpenAI's own fields");
    }

    #[test]
    fn the_openai_fields_go_through_unchanged() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("custom/m")).unwrap();
        let target = provider.target(model, None, 150_000);
        let body = r#"{"prompt":"p","model":"custom/m","n":3,"size":"1792x1024","quality":"hd","style":"natural","response_format":"b64_json","user":"u"}"#;
        let sent: Value = serde_json::from_slice(&plan(&target, &request(body)).unwrap().calls[0].body).unwrap();
        assert_eq!(sent, json!({"prompt":"p","model":"m","n":3,"size":"1792x1024","quality":"hd","style":"natural","response_format":"b64_json","user":"u"}));
    }

    #[test]
    fn the_key_goes_in_the_configured_header_or_nowhere() {
        let config = config();
        let key = Secret::new("k-123456");
        let call = |id: &str, key: Option<&Secret>| {
            let (model, provider) = config.resolve_model(Some(id)).unwrap();
            plan(&provider.target(model, key, 150_000), &request(r#"{"prompt":"p"}"#)).unwrap().calls.remove(0)
        };
        let custom = call("custom/m", Some(&key));
        assert_eq!(custom.url, "https://img.example.com/v1/images/generations");
        assert!(matches!(header(&custom, "x-api-key"), Some(HeaderValue::Secret(s)) if s.expose() == "k-123456"));
        assert!(header(&custom, "authorization").is_none());
        let shouty = call("shouty/m", Some(&key));
        assert_eq!(header(&shouty, "authorization").map(HeaderValue::expose), Some("Bearer k-123456"));
        let local = call("local/sd", None);
        assert_eq!(local.url, "http://localhost:8080/v1/images/generations");
        assert_eq!(local.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["content-type"]);
    }

    #[test]
    fn togethers_documented_answers_read_into_images() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("together/flux-schnell")).unwrap();
        let target = provider.target(model, None, 150_000);
        let read = |body: &[u8]| match target.adapter.read_answer(&target, Some("application/json"), body) {
            Ok(Progress::Done(done)) => done,
            other => panic!("not done: {:?}", other.err()),
        };
        let done = read(GOLDEN_ANSWER.as_bytes());
        assert_eq!(done.images.len(), 1);
        assert_eq!(done.images[0].data, ImageData::Url("https://api.together.ai/v1/images/...".into()));
        let b64 = json!({"id":"i","model":"m","object":"list","data":[{"index":0,"type":"b64_json","b64_json":"/9j/4AAQ"}]});
        assert_eq!(read(b64.to_string().as_bytes()).images[0].data, ImageData::Base64("/9j/4AAQ".into()));
        let empty = target.adapter.read_answer(&target, None, br#"{"id":"i","model":"m","object":"list","data":[]}"#).unwrap_err().to_error();
        assert_eq!((empty.status(), empty.code), (502, Some("empty_upstream_answer")));
    }

    #[test]
    fn togethers_documented_error_keeps_its_message() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("together/flux-schnell")).unwrap();
        let key = Secret::new("together-test-key");
        let target = provider.target(model, Some(&key), 150_000);
        let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
        let expected = [400, 429];
        for (case, expected) in golden.iter().zip(expected) {
            let status = case["status"].as_u64().unwrap() as u16;
            let err = read_error(&target, "/", status, Some("3".into()), case["body"].to_string().as_bytes());
            assert_eq!(err.status(), expected);
            assert!(err.message.contains(case["body"]["error"]["message"].as_str().unwrap()), "{}", err.message);
        }
        let quota = read_error(&target, "/", 429, None, br#"{"error":{"message":"out","type":"insufficient_quota","code":null}}"#);
        assert_eq!(quota.status(), 402);
        assert_eq!(
            read_error(&target, "/", 500, None, b"Internal Server Error").message,
            errors::upstream_error("together", "/", 500, None, Default::default(), None).message
        );
    }
}
