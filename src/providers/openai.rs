//! Upstreams speaking the OpenAI Images API: `POST {base_url}/images/generations` with a bearer key.

use serde::Deserialize;

use crate::config::{ModelConfig, ProviderConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::request::ImageRequest;
use crate::secret::Secret;
use crate::upstream::{HeaderValue, UpstreamRequest};

/// The longest upstream error message passed on to the client.
const MAX_MESSAGE_CHARS: usize = 500;

/// Builds the upstream request: the client's request with `model` set to the upstream's name.
pub fn build_request(provider: &ProviderConfig, model: &ModelConfig, request: &ImageRequest, key: Secret) -> UpstreamRequest {
    let base = provider.base_url.as_deref().expect("validated: openai providers have a base_url");
    let mut headers = vec![
        ("content-type".to_owned(), HeaderValue::Plain("application/json".to_owned())),
        ("authorization".to_owned(), HeaderValue::Secret(Secret::new(format!("Bearer {}", key.expose())))),
    ];
    headers.extend(provider.headers.iter().map(|(k, v)| (k.clone(), HeaderValue::Plain(v.clone()))));
    UpstreamRequest {
        url: format!("{}/images/generations", base.trim_end_matches('/')),
        headers,
        body: serde_json::to_vec(&request.for_model(model.upstream_name())).expect("the request is always serialisable"),
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: UpstreamError,
}

#[derive(Deserialize, Default)]
struct UpstreamError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Maps an upstream error answer onto the gateway's error set, keeping the provider's message
/// (with our key redacted) but never its verdict on our credentials.
pub fn error_from_answer(
    provider_id: &str,
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
    key: &Secret,
) -> GatewayError {
    let detail = serde_json::from_slice::<ErrorEnvelope>(body).map(|e| e.error).unwrap_or_default();
    let code = detail.code.as_ref().and_then(|c| c.as_str()).unwrap_or("");
    let kind_text = detail.kind.as_deref().unwrap_or("");
    let quota = ["insufficient_quota", "billing_hard_limit_reached", "billing_not_active"];
    let refused = ["content_policy_violation", "moderation_blocked"];
    let kind = match status {
        401 => {
            return GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' rejected the gateway's credentials for it. Your gateway key is fine; the gateway's provider key needs fixing."),
            )
            .with_code("upstream_auth_failed")
        }
        402 => ErrorKind::PaymentRequired,
        _ if quota.contains(&code) || quota.contains(&kind_text) => ErrorKind::PaymentRequired,
        _ if refused.contains(&code) || refused.contains(&kind_text) => ErrorKind::Forbidden,
        400 | 413 | 422 => ErrorKind::InvalidRequest,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        408 | 504 | 524 => ErrorKind::UpstreamTimeout,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        _ => ErrorKind::BadUpstream,
    };
    let said = detail
        .message
        .map(|m| key.redact_from(&m).chars().take(MAX_MESSAGE_CHARS).collect::<String>())
        .filter(|m| !m.trim().is_empty());
    let message = match said {
        Some(said) => format!("The upstream provider '{provider_id}' answered {status}: {said}"),
        None => format!("The upstream provider '{provider_id}' answered {status}."),
    };
    let error = GatewayError::new(kind, message).with_retry_after(retry_after);
    match kind {
        ErrorKind::Forbidden if refused.contains(&code) => error.with_code("content_policy_violation"),
        ErrorKind::NotFound => error.with_code("model_not_found").with_param("model"),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::request::parse_generation;
    use serde_json::{json, Value};

    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[{"id":"openai","kind":"openai","base_url":"https://api.openai.com/v1/","api_key_secret":"K",
                 "headers":{"OpenAI-Organization":"org-1"}}],
                "models":[{"id":"openai/dall-e-3","provider":"openai"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn request_goes_to_images_generations_with_the_upstream_model_and_bearer_key() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("openai/dall-e-3")).unwrap();
        let request = parse_generation(Some("application/json"), br#"{"prompt":"p","model":"openai/dall-e-3","size":"1024x1024"}"#, 1 << 20).unwrap();
        let upstream = build_request(provider, model, &request, Secret::new("sk-provider"));
        assert_eq!(upstream.url, "https://api.openai.com/v1/images/generations");
        let body: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert_eq!(body, json!({"prompt":"p","model":"dall-e-3","n":1,"size":"1024x1024"}));
        let header = |name: &str| upstream.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.expose().to_owned());
        assert_eq!(header("authorization").as_deref(), Some("Bearer sk-provider"));
        assert_eq!(header("OpenAI-Organization").as_deref(), Some("org-1"));
        assert!(!format!("{upstream:?}").contains("sk-provider"), "Debug must not show the key");
    }

    fn map(status: u16, body: Value) -> GatewayError {
        error_from_answer("openai", status, Some("7".into()), body.to_string().as_bytes(), &Secret::new("sk-provider-key"))
    }

    #[test]
    fn upstream_statuses_map_to_the_fixed_error_set() {
        let plain = |message: &str| json!({"error": {"message": message, "type": "invalid_request_error"}});
        let table = [
            (400, plain("bad size"), 400),
            (401, plain("Incorrect API key provided: sk-pro***key"), 502),
            (402, plain("pay"), 402),
            (403, plain("no"), 403),
            (404, plain("no such model"), 404),
            (408, plain("slow"), 524),
            (429, plain("slow down"), 429),
            (429, json!({"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}), 402),
            (400, json!({"error": {"message": "refused", "code": "moderation_blocked"}}), 403),
            (400, json!({"error": {"message": "refused", "code": "content_policy_violation"}}), 403),
            (500, plain("oops"), 502),
            (502, plain("oops"), 502),
            (503, plain("busy"), 529),
            (504, plain("slow"), 524),
            (529, plain("busy"), 529),
        ];
        for (status, body, expected) in table {
            assert_eq!(map(status, body.clone()).status(), expected, "{status} {body}");
        }
    }

    #[test]
    fn the_providers_message_is_kept_but_never_our_key() {
        let err = map(400, json!({"error": {"message": "Invalid size; key sk-provider-key was used"}}));
        assert!(err.message.contains("Invalid size"), "{}", err.message);
        assert!(!err.message.contains("sk-provider-key"), "{}", err.message);
        let auth = map(401, json!({"error": {"message": "Incorrect API key provided: sk-provider-key"}}));
        assert!(!auth.message.contains("sk-"), "{}", auth.message);
    }

    #[test]
    fn retry_after_is_kept_and_non_json_bodies_still_map() {
        assert_eq!(map(429, json!({})).retry_after.as_deref(), Some("7"));
        let err = error_from_answer("openai", 500, None, b"<html>Bad gateway</html>", &Secret::new("sk-x"));
        assert_eq!((err.status(), err.message.as_str()), (502, "The upstream provider 'openai' answered 500."));
    }
}
