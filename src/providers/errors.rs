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

/// Why a 2xx answer gave no images, as its adapter read it: the pipeline decides on the variant
/// (a refused or failed generation is judged by its status; an unreadable or empty answer is
/// final, since the upstream answered), and [`AnswerError::to_error`] renders the client's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The body is not `expected` (a JSON shape the adapter knows).
    Unreadable { provider: String, expected: &'static str },
    /// A well-formed answer without any image.
    Empty { provider: String },
    /// The provider refused the content; `why` is its reason, safe to show.
    Refused { provider: String, why: String },
    /// The generation failed upstream; `why` is the provider's reason, safe to show.
    Failed { provider: String, why: Option<String> },
}

/// The code of [`AnswerError::Refused`] (and of refusals in error answers).
pub const REFUSED: &str = "content_policy_violation";
/// The code of [`AnswerError::Failed`].
pub const JOB_FAILED: &str = "upstream_generation_failed";
/// The code of [`AnswerError::Unreadable`].
pub const UNREADABLE: &str = "unreadable_upstream_answer";
/// The code of [`AnswerError::Empty`].
pub const EMPTY: &str = "empty_upstream_answer";

impl AnswerError {
    /// The client's error: a 403 for a refusal, else a 502, with a code per variant.
    pub fn to_error(&self) -> GatewayError {
        match self {
            AnswerError::Unreadable { provider, expected } => {
                GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider}' answered with a body that is not {expected}."))
                    .with_code(UNREADABLE)
            }
            AnswerError::Empty { provider } => {
                GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider}' answered without any image.")).with_code(EMPTY)
            }
            AnswerError::Refused { provider, why } => {
                GatewayError::new(ErrorKind::Forbidden, format!("The upstream provider '{provider}' refused the request: {why}")).with_code(REFUSED)
            }
            AnswerError::Failed { provider, why } => GatewayError::new(
                ErrorKind::BadUpstream,
                match why {
                    Some(why) => format!("The upstream provider '{provider}' could not generate the image: {why}"),
                    None => format!("The upstream provider '{provider}' could not generate the image."),
                },
            )
            .with_code(JOB_FAILED),
        }
    }
}

impl From<AnswerError> for GatewayError {
    fn from(error: AnswerError) -> GatewayError {
        error.to_error()
    }
}

/// A generation the provider refused inside a 2xx answer (a moderated job), with the provider's
/// reason (the key redacted, at most 500 characters).
pub fn refused(provider_id: &str, why: &str, key: Option<&Secret>) -> AnswerError {
    AnswerError::Refused { provider: provider_id.to_owned(), why: provider_words(why, key) }
}

/// A 2xx answer that carries no image.
pub fn no_images(provider_id: &str) -> AnswerError {
    AnswerError::Empty { provider: provider_id.to_owned() }
}

/// A 2xx answer the adapter cannot read; `expected` names the shape it expected.
pub fn unreadable(provider_id: &str, expected: &'static str) -> AnswerError {
    AnswerError::Unreadable { provider: provider_id.to_owned(), expected }
}

/// An asynchronous job (or a generation) that failed upstream, with the provider's reason.
pub fn job_failed(provider_id: &str, why: Option<&str>, key: Option<&Secret>) -> AnswerError {
    AnswerError::Failed { provider: provider_id.to_owned(), why: why.map(|why| provider_words(why, key)) }
}

/// An `error` event in a provider's stream (its `message` and `code`): a refusal (a moderation
/// block) as a 403 `content_policy_violation`, anything else a 502 `upstream_stream_error`; the
/// provider's words kept, the key redacted.
pub fn stream_failed(provider_id: &str, message: Option<&str>, code: Option<&str>, key: Option<&Secret>) -> GatewayError {
    let words = message.map(|m| provider_words(m, key)).filter(|m| !m.trim().is_empty()).unwrap_or_else(|| "it gave no reason".to_owned());
    if code.is_some_and(|code| REFUSAL_CODES.contains(&code)) {
        return GatewayError::new(ErrorKind::Forbidden, format!("The upstream provider '{provider_id}' refused the request: {words}")).with_code(REFUSED);
    }
    GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider_id}' failed in its stream: {words}")).with_code("upstream_stream_error")
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
        let refused = refused("p", &format!("NSFW content detected for request signed {}{}", key.expose(), "x".repeat(900)), Some(&key)).to_error();
        assert_eq!((refused.status(), refused.code), (403, Some("content_policy_violation")));
        assert!(refused.message.contains("NSFW content detected") && !refused.message.contains("sk-provider-key"), "{}", refused.message);
        assert!(refused.message.len() < 600, "cut to 500 characters");
        let failed = job_failed("p", Some("CUDA out of memory (key sk-provider-key)"), Some(&key)).to_error();
        assert!(failed.message.contains("CUDA") && !failed.message.contains("sk-provider-key"), "{}", failed.message);
    }
}
