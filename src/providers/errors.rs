//! The one mapping from a provider's error answer to the gateway's error set, shared by every
//! adapter. Adapters only say what the provider said ([`Detail`]); this decides the status.

use crate::error::{ErrorKind, GatewayError};
use crate::secret::Secret;

/// The longest upstream error message passed on to the client.
const MAX_MESSAGE_CHARS: usize = 500;

/// What a provider's error answer said, read by its adapter.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Detail {
    /// The provider's message, as sent.
    pub message: Option<String>,
    /// The provider's error code or type, normalised by the adapter where it means the same as
    /// OpenAI's: `insufficient_quota` (billing), `content_policy_violation` (a refusal).
    pub code: Option<String>,
}

/// The code an adapter gives an error that says the gateway's provider key is invalid, whatever
/// its status (Google answers 400 `API_KEY_INVALID`): handled as a 401.
pub const PROVIDER_KEY_INVALID: &str = "provider_key_invalid";
/// Codes that mean the provider account cannot pay.
const QUOTA: [&str; 3] = ["insufficient_quota", "billing_hard_limit_reached", "billing_not_active"];
/// Codes that mean the provider refused the content.
const REFUSAL_CODES: [&str; 2] = [REFUSED, "moderation_blocked"];

/// The gateway error for a provider's non-2xx answer to a call at `path` (the URL's path, shown
/// on a 404). The provider's message is kept (our key redacted, at most 500 characters), except
/// on 401 (or [`PROVIDER_KEY_INVALID`]), where it would describe the gateway's provider key
/// rather than the client's request. An upstream's own timeout (408, 504, 524) is a 502 with code
/// `upstream_timeout`: the status 524 is the gateway's own deadline. An upstream 404 is a 502
/// naming the path: the model the client named exists here, so the provider's address or
/// `upstream_model` is what is wrong.
pub fn upstream_error(provider_id: &str, path: &str, status: u16, retry_after: Option<String>, said: Detail, key: Option<&Secret>) -> GatewayError {
    let code = said.code.as_deref().unwrap_or("");
    let kind = match status {
        _ if status == 401 || code == PROVIDER_KEY_INVALID => {
            return GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' rejected the gateway's credentials for it. Your gateway key is fine; the gateway's provider key needs fixing."),
            )
            .with_code("upstream_auth_failed")
        }
        402 => ErrorKind::PaymentRequired,
        _ if QUOTA.contains(&code) => ErrorKind::PaymentRequired,
        _ if REFUSAL_CODES.contains(&code) => ErrorKind::Forbidden,
        400 | 413 | 422 => ErrorKind::InvalidRequest,
        403 => ErrorKind::Forbidden,
        404 | 408 | 504 | 524 => ErrorKind::BadUpstream,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        _ => ErrorKind::BadUpstream,
    };
    let said_text = said.message.map(|m| provider_words(&m, key)).filter(|m| !m.trim().is_empty());
    let at = if status == 404 { format!(" for {}", path.chars().take(200).collect::<String>()) } else { String::new() };
    let message = match said_text {
        Some(text) => format!("The upstream provider '{provider_id}' answered {status}{at}: {text}"),
        None => format!("The upstream provider '{provider_id}' answered {status}{at}."),
    };
    let error = GatewayError::new(kind, message).with_retry_after(retry_after);
    match status {
        _ if kind == ErrorKind::Forbidden && REFUSAL_CODES.contains(&code) => error.with_code(REFUSED),
        404 => error.with_code("upstream_not_found"),
        408 | 504 | 524 => error.with_code("upstream_timeout"),
        _ => error,
    }
}

/// The 403 for a generation the provider refused inside a 2xx answer (a moderated job), with
/// the provider's reason (the key redacted, at most 500 characters).
pub fn refused(provider_id: &str, why: &str, key: Option<&Secret>) -> GatewayError {
    let why = provider_words(why, key);
    GatewayError::new(ErrorKind::Forbidden, format!("The upstream provider '{provider_id}' refused the request: {why}")).with_code(REFUSED)
}

/// The code of [`refused`].
pub const REFUSED: &str = "content_policy_violation";
/// The code of [`job_failed`].
pub const JOB_FAILED: &str = "upstream_generation_failed";

/// The 502 for a 2xx answer that carries no image.
pub fn no_images(provider_id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider_id}' answered without any image.")).with_code("empty_upstream_answer")
}

/// The code of [`unreadable`].
pub const UNREADABLE: &str = "unreadable_upstream_answer";

/// The 502 for a 2xx answer the adapter cannot read; `what` names the expected shape.
pub fn unreadable(provider_id: &str, what: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider_id}' answered with a body that is not {what}.")).with_code(UNREADABLE)
}

/// The 502 for an asynchronous job that failed upstream, with the provider's reason.
pub fn job_failed(provider_id: &str, why: Option<&str>, key: Option<&Secret>) -> GatewayError {
    let why = why.map(|why| provider_words(why, key));
    GatewayError::new(
        ErrorKind::BadUpstream,
        match why {
            Some(why) => format!("The upstream provider '{provider_id}' could not generate the image: {why}"),
            None => format!("The upstream provider '{provider_id}' could not generate the image."),
        },
    )
    .with_code(JOB_FAILED)
}

/// A provider's own words, safe to show: the key redacted, at most 500 characters.
fn provider_words(words: &str, key: Option<&Secret>) -> String {
    let redacted = key.map_or_else(|| words.to_owned(), |key| key.redact_from(words));
    redacted.chars().take(MAX_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, message: &str, code: Option<&str>) -> GatewayError {
        let said = Detail { message: Some(message.to_owned()), code: code.map(str::to_owned) };
        upstream_error("p", "/v1/images/generations", status, Some("7".into()), said, Some(&Secret::new("sk-provider-key")))
    }

    #[test]
    fn statuses_map_to_the_fixed_error_set() {
        let table = [
            (400, None, 400),
            (401, None, 502),
            (402, None, 402),
            (403, None, 403),
            (404, None, 502),
            (408, None, 502),
            (413, None, 400),
            (422, None, 400),
            (429, None, 429),
            (429, Some("insufficient_quota"), 402),
            (400, Some("moderation_blocked"), 403),
            (400, Some("content_policy_violation"), 403),
            (500, None, 502),
            (502, None, 502),
            (503, None, 529),
            (504, None, 502),
            (524, None, 502),
            (529, None, 529),
        ];
        for (status, code, expected) in table {
            assert_eq!(map(status, "m", code).status(), expected, "{status} {code:?}");
        }
    }

    #[test]
    fn an_upstream_timeout_is_a_502_and_a_404_names_the_providers_path() {
        for status in [408, 504, 524] {
            let err = map(status, "gateway timeout", None);
            assert_eq!((err.status(), err.code, err.kind.error_type()), (502, Some("upstream_timeout"), "upstream_error"), "{status}");
        }
        let missing = map(404, "no such route", None);
        assert_eq!((missing.status(), missing.code, missing.param), (502, Some("upstream_not_found"), None));
        assert!(missing.message.contains("answered 404 for /v1/images/generations: no such route"), "{}", missing.message);
    }

    #[test]
    fn the_message_is_kept_but_never_our_key() {
        let err = map(400, "Invalid size; key sk-provider-key was used", None);
        assert!(err.message.contains("Invalid size") && !err.message.contains("sk-provider-key"), "{}", err.message);
        let auth = map(401, "Incorrect API key provided: sk-provider-key", None);
        let google = map(400, "API key not valid. Please pass a valid API key.", Some(PROVIDER_KEY_INVALID));
        assert_eq!((google.status(), google.code), (502, Some("upstream_auth_failed")));
        assert!(!auth.message.contains("sk-"), "{}", auth.message);
        assert_eq!(map(429, "slow", None).retry_after.as_deref(), Some("7"));
        let silent = upstream_error("p", "/", 500, None, Detail::default(), None);
        assert_eq!(silent.message, "The upstream provider 'p' answered 500.");
    }

    #[test]
    fn refusals_and_failed_jobs_keep_the_providers_words_but_never_our_key() {
        let key = Secret::new("sk-provider-key");
        let refused = refused("p", &format!("NSFW content detected for request signed {}{}", key.expose(), "x".repeat(900)), Some(&key));
        assert_eq!((refused.status(), refused.code), (403, Some("content_policy_violation")));
        assert!(refused.message.contains("NSFW content detected") && !refused.message.contains("sk-provider-key"), "{}", refused.message);
        assert!(refused.message.len() < 600, "cut to 500 characters");
        let failed = job_failed("p", Some("CUDA out of memory (key sk-provider-key)"), Some(&key));
        assert!(failed.message.contains("CUDA") && !failed.message.contains("sk-provider-key"), "{}", failed.message);
    }
}
