//! Azure OpenAI: `POST {base_url}/openai/deployments/{deployment}/images/generations?api-version=…`
//! with an `api-key` header. The deployment in the URL chooses the model, so the body is the
//! client's OpenAI Images request without `model`; the answer is in the OpenAI shape and relayed.
//!
//! Followed: the Azure OpenAI image generation how-to (learn.microsoft.com, "How to use Azure
//! OpenAI image generation models": URL, `api-key` header, `contentFilter` refusals) and the
//! data-plane spec `AzureOpenAI/inference/preview/2025-04-01-preview` (its image generation
//! example body has no `model`; `dalleError.inner_error.code` is `ResponsibleAIPolicyViolation`).

use serde::Deserialize;

use super::errors::Detail;
use super::openai;
use super::wire::{headers_with, post};
use super::{Adapter, AnswerError, Plan, Planned, Progress, Settings, Target};
use crate::error::GatewayError;
use crate::inputs::Operation;
use crate::request::ImageRequest;
use crate::upstream::HeaderValue;

/// The `api-version` used when the provider sets none: `2025-04-01-preview`, the version the
/// image generation how-to names for GPT-image-1 deployments and the last dated data-plane
/// version (later features ship in the undated `/openai/v1` API instead).
pub const DEFAULT_API_VERSION: &str = "2025-04-01-preview";

/// The `azure_openai` kind.
pub struct AzureOpenAi;

impl Adapter for AzureOpenAi {
    fn name(&self) -> &'static str {
        "azure_openai"
    }
    fn passes_extensions(&self) -> bool {
        true
    }
    fn sends_openai_body(&self) -> bool {
        true
    }
    fn check_provider(&self, provider: &Settings) -> Result<(), String> {
        check_provider(provider)
    }
    fn honoured(&self) -> &'static [&'static str] {
        openai::HONOURED
    }
    fn takes(&self, _operation: Operation) -> bool {
        true
    }
    fn honoured_in(&self, operation: Operation) -> &'static [&'static str] {
        openai::honoured_in(operation)
    }
    /// Azure streams gpt-image deployments as OpenAI does: a deployment named for one streams unless its model says otherwise; `supports.stream: true` for any other name.
    fn streams(&self, upstream_model: &str, declared: Option<bool>) -> bool {
        declared.unwrap_or_else(|| upstream_model.contains("gpt-image"))
    }
    fn plan(&self, target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError> {
        plan(target, request).map(Planned::Calls)
    }
    fn read_answer(&self, target: &Target, _content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError> {
        openai::read_answer(target, body)
    }
    fn error_detail(&self, body: &[u8]) -> Detail {
        error_detail(body)
    }
}

/// One call to the deployment's `images/generations`, relayed.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    let provider = target.provider;
    let api_version = provider.api_version.unwrap_or(DEFAULT_API_VERSION);
    let path = openai::operation(request).path();
    let url = format!("{}/openai/deployments/{}/images/{path}?api-version={api_version}", provider.base(), path_segment(target.upstream_model()));
    let (content_type, body) = openai::body_for(target, request, None)?;
    let mut headers = headers_with(target, content_type);
    if let Some(key) = target.key {
        headers.push(("api-key".to_owned(), HeaderValue::Secret(key.clone())));
    }
    Ok(Plan { calls: vec![post(url, headers, body)], relay: true })
}

/// Checks the provider's configuration: `base_url` (the resource endpoint, no default) is set and
/// is not already a deployment URL; `api_version`, when set, is non-empty and URL-safe.
pub fn check_provider(provider: &Settings) -> Result<(), String> {
    match provider.base_url.trim() {
        "" => return Err("base_url is required for kind 'azure_openai': the resource endpoint, e.g. https://myres.openai.azure.com".to_owned()),
        url if url.contains("/openai/deployments") => {
            return Err(format!("base_url '{url}' must be the resource endpoint (e.g. https://myres.openai.azure.com), without /openai/deployments/…; the deployment is the model's upstream_model"))
        }
        _ => {}
    }
    match provider.api_version {
        Some(version) if version.is_empty() || !version.bytes().all(unreserved) => {
            Err(format!("api_version '{version}' must be a non-empty API version such as '{DEFAULT_API_VERSION}' (letters, digits, '-', '.', '_', '~')"))
        }
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: AzureError,
}

#[derive(Deserialize)]
struct AzureError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    /// Chat-style errors spell it `innererror`, the image (DALL-E) schema `inner_error`.
    #[serde(default)]
    innererror: Option<InnerError>,
    #[serde(default)]
    inner_error: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(default)]
    code: Option<String>,
}

/// What an Azure error envelope says: OpenAI's reading ([`openai::error_detail`]), except that a
/// content-filter refusal (`code` `contentFilter` or `content_filter`, or an inner error
/// `ResponsibleAIPolicyViolation`) has the code `content_policy_violation`.
pub fn error_detail(body: &[u8]) -> Detail {
    let detail = openai::error_detail(body);
    let Ok(ErrorEnvelope { error }) = serde_json::from_slice::<ErrorEnvelope>(body) else { return detail };
    let code = error.code.as_ref().and_then(|c| c.as_str());
    let inner = error.innererror.or(error.inner_error).and_then(|i| i.code);
    let filtered = matches!(code, Some("contentFilter" | "content_filter")) || inner.as_deref() == Some("ResponsibleAIPolicyViolation");
    match filtered {
        true => Detail { code: Some("content_policy_violation".to_owned()), ..detail },
        false => detail,
    }
}

/// RFC 3986 unreserved characters: safe anywhere in a URL without escaping.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `name` as one URL path segment: unreserved characters as they are, anything else escaped.
fn path_segment(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().all(unreserved) {
        return name.into();
    }
    name.bytes().map(|b| if unreserved(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::errors::upstream_error;
    use crate::providers::testing::{as_golden, request};

    use crate::secret::Secret;

    use serde_json::{json, Value};

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/azure_openai/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/azure_openai/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/azure_openai/error.json");

    fn config(provider_extra: &str) -> Config {
        Config::from_json(&format!(
            r#"{{"providers":[{{"id":"azure","kind":"azure_openai","base_url":"https://myres.openai.azure.com/","api_key_secret":"K"{provider_extra}}}],
                "models":[{{"id":"azure/gpt-image-1","provider":"azure","upstream_model":"gpt-image-1"}},
                          {{"id":"azure/odd","provider":"azure","upstream_model":"my deploy/1"}}]}}"#
        ))
        .unwrap()
    }

    fn provider(json: &str) -> crate::config::ProviderConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_documented_request_matches_the_golden_file() {
        let config = config("");
        let (model, provider) = config.resolve_model(Some("azure/gpt-image-1")).unwrap();
        let key = Secret::new("azure-test-key");
        let target = provider.target(model, Some(&key), 150_000);
        let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
        let plan = plan(&target, &request(&golden["body"].to_string())).unwrap();
        assert!(plan.relay);
        assert_eq!(plan.calls.len(), 1);
        assert_eq!(as_golden(&plan.calls[0]), golden);
        assert!(matches!(plan.calls[0].headers.iter().find(|(n, _)| n == "api-key"), Some((_, HeaderValue::Secret(_)))));
        assert!(!format!("{:?}", plan.calls[0]).contains("azure-test-key"));
    }

    #[test]
    fn the_body_is_the_openai_body_without_model_and_the_version_is_configurable() {
        let config = config(r#","api_version":"2024-10-21""#);
        let (model, provider) = config.resolve_model(Some("azure/gpt-image-1")).unwrap();
        let target = provider.target(model, None, 150_000);
        let body = r#"{"prompt":"p","model":"azure/gpt-image-1","n":2,"size":"1536x1024","quality":"low","background":"transparent","output_format":"webp","output_compression":50,"user":"u"}"#;
        let call = &plan(&target, &request(body)).unwrap().calls[0];
        assert_eq!(call.url, "https://myres.openai.azure.com/openai/deployments/gpt-image-1/images/generations?api-version=2024-10-21");
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            sent,
            json!({"prompt":"p","n":2,"size":"1536x1024","quality":"low","background":"transparent","output_format":"webp","output_compression":50,"user":"u"})
        );
        assert!(call.headers.iter().all(|(n, _)| n != "api-key"), "no key, no header");
    }

    #[test]
    fn the_default_version_is_used_and_odd_deployment_names_are_escaped() {
        let config = config("");
        let (model, provider) = config.resolve_model(Some("azure/odd")).unwrap();
        let target = provider.target(model, None, 150_000);
        let call = &plan(&target, &request(r#"{"prompt":"p"}"#)).unwrap().calls[0];
        assert_eq!(call.url, "https://myres.openai.azure.com/openai/deployments/my%20deploy%2F1/images/generations?api-version=2025-04-01-preview");
    }

    #[test]
    fn provider_checks_name_the_key() {
        let base = r#""id":"a","kind":"azure_openai","api_key_secret":"K""#;
        assert!(check_provider(&provider(&format!(r#"{{{base},"base_url":"https://r.openai.azure.com"}}"#)).settings()).is_ok());
        let version = |v: &str| check_provider(&provider(&format!(r#"{{{base},"base_url":"https://r.openai.azure.com","api_version":"{v}"}}"#)).settings());
        assert!(version("2025-04-01-preview").is_ok());
        for bad in ["", "2025-04-01&x=1", "2025 04", "a/b", "é"] {
            assert!(version(bad).unwrap_err().starts_with("api_version "), "{bad:?}");
        }
        assert!(check_provider(&provider(&format!("{{{base}}}")).settings()).unwrap_err().starts_with("base_url "));
        assert!(check_provider(&provider(&format!(r#"{{{base},"base_url":" "}}"#)).settings()).unwrap_err().starts_with("base_url "));
        let deployment_url = format!(r#"{{{base},"base_url":"https://r.openai.azure.com/openai/deployments/x"}}"#);
        assert!(check_provider(&provider(&deployment_url).settings()).unwrap_err().starts_with("base_url "));
        let err = Config::from_json(r#"{"providers":[{"id":"a","kind":"azure_openai","base_url":"https://r.openai.azure.com","api_key_secret":"K","api_version":"x y"}],"models":[{"id":"m","provider":"a"}]}"#).unwrap_err();
        assert!(
            err.ends_with("providers[0].api_version 'x y' must be a non-empty API version such as '2025-04-01-preview' (letters, digits, '-', '.', '_', '~')"),
            "{err}"
        );
    }

    #[test]
    fn the_documented_answer_reads_through_the_openai_reader() {
        let config = config("");
        let (model, provider) = config.resolve_model(Some("azure/gpt-image-1")).unwrap();
        let target = provider.target(model, None, 150_000);
        let Ok(crate::providers::Progress::Done(done)) = target.adapter.read_answer(&target, Some("application/json"), GOLDEN_ANSWER.as_bytes()) else {
            panic!("not done")
        };
        assert_eq!(done.images.len(), 2);
        assert!(
            matches!(&done.images[0].data, crate::providers::ImageData::Url(u) if u.starts_with("https://dalletipusw2.blob.core.windows.net/private/images/e5451cc6"))
        );
        assert_eq!(done.images[1].revised_prompt.as_deref(), Some("A vivid, natural representation of Microsoft Clippy wearing a cowboy hat."));
    }

    #[test]
    fn content_filter_refusals_are_content_policy_violations() {
        let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
        for case in &golden {
            let (status, body) = (case["status"].as_u64().unwrap() as u16, case["body"].to_string());
            let detail = error_detail(body.as_bytes());
            assert_eq!(detail.code.as_deref(), Some("content_policy_violation"), "{body}");
            let err = upstream_error("azure", "/", status, None, detail, None);
            assert_eq!((err.status(), err.code), (403, Some("content_policy_violation")));
            assert!(err.message.contains(case["body"]["error"]["message"].as_str().unwrap()), "{}", err.message);
        }
        let chat_style = json!({"error":{"message":"filtered","type":null,"param":"prompt","code":"content_filter","status":400,
            "innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"medium"}}}}});
        assert_eq!(error_detail(chat_style.to_string().as_bytes()).code.as_deref(), Some("content_policy_violation"));
        let inner_only = json!({"error":{"message":"m","code":"BadRequest","inner_error":{"code":"ResponsibleAIPolicyViolation"}}});
        assert_eq!(error_detail(inner_only.to_string().as_bytes()).code.as_deref(), Some("content_policy_violation"));
    }

    #[test]
    fn other_errors_read_as_openai_errors() {
        let quota = error_detail(br#"{"error":{"code":"429","message":"Requests have exceeded the rate limit."}}"#);
        assert_eq!((quota.code.as_deref(), quota.message.as_deref()), (Some("429"), Some("Requests have exceeded the rate limit.")));
        let not_found = error_detail(br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#);
        assert_eq!(upstream_error("azure", "/openai/deployments/d/images/generations", 404, None, not_found, None).status(), 502);
        assert_eq!(error_detail(b"<html>"), Detail::default());
    }
}
