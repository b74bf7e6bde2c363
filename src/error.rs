//! The gateway's one error type.
//!
//! Every failure a client can see is a [`GatewayError`]. Its [`ErrorKind`] alone decides the HTTP
//! status, the OpenAI error `type`, the default `code` and whether the client should retry; the
//! body is always the OpenAI envelope `{"error":{"message","type","param","code"}}`. No handler
//! builds an error response by hand.

use serde::Serialize;

/// What went wrong, from the client's point of view. Decides status, `type` and retryability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a parameter is out of range.
    InvalidRequest,
    /// 401: the gateway key is missing or wrong.
    InvalidApiKey,
    /// 402: the upstream account is out of quota or billing failed.
    PaymentRequired,
    /// 403: the request was refused (moderation, a model the key may not use, a disallowed origin).
    Forbidden,
    /// 404: unknown model or route.
    NotFound,
    /// 405: known route, wrong method.
    MethodNotAllowed,
    /// 413: the request body is larger than the gateway accepts.
    PayloadTooLarge,
    /// 415: the request body is not JSON.
    UnsupportedMediaType,
    /// 429: the upstream is rate limiting us; `retry_after` carries its hint.
    RateLimited,
    /// 500: the gateway itself failed (a bug or a broken deployment configuration).
    Internal,
    /// 502: the upstream answered with something unusable, or rejected our provider key.
    BadUpstream,
    /// 524: the deadline passed before the upstream answered.
    UpstreamTimeout,
    /// 529: the upstream says it is overloaded or unavailable.
    Overloaded,
    /// 503: the gateway's own storage could not be read; reading again may succeed.
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::InvalidApiKey => 401,
            ErrorKind::PaymentRequired => 402,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadUpstream => 502,
            ErrorKind::UpstreamTimeout => 524,
            ErrorKind::Overloaded => 529,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The OpenAI envelope's `type` field.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::InvalidApiKey
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::PaymentRequired => "insufficient_quota",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal | ErrorKind::Unavailable => "server_error",
            ErrorKind::BadUpstream => "upstream_error",
            ErrorKind::UpstreamTimeout => "timeout_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }

    /// The envelope's `code` when the error does not name a more precise one.
    fn default_code(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_value",
            ErrorKind::InvalidApiKey => "invalid_api_key",
            ErrorKind::PaymentRequired => "insufficient_quota",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::Internal => "internal_error",
            ErrorKind::BadUpstream => "bad_upstream_response",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Overloaded => "provider_overloaded",
            ErrorKind::Unavailable => "storage_unavailable",
        }
    }

    /// Whether the client may do better by sending the same request again.
    ///
    /// Only the kinds where no image was generated and waiting can help are retryable: rate
    /// limits, overload, and a storage read that failed. Everything else (bad input, a timeout after which the upstream may
    /// still bill, a broken answer) is `false`, so SDK retries never multiply paid generations.
    pub fn client_should_retry(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Unavailable)
    }
}

/// A failure the client will see, with everything needed to render it.
///
/// The `message` is shown to the client verbatim: it must never contain a secret. Upstream
/// messages are kept (they are the provider's words about the request) but our provider key is
/// never part of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// Decides status, `type` and retryability.
    pub kind: ErrorKind,
    /// Human-readable explanation, safe to show.
    pub message: String,
    /// The request parameter at fault, when there is one.
    pub param: Option<String>,
    /// A machine-readable code; defaults to one per kind.
    pub code: Option<&'static str>,
    /// Seconds the client should wait before trying again (429 and 529 only).
    pub retry_after: Option<Box<str>>,
    /// The methods the route allows (405 only).
    pub allow: Option<&'static str>,
    /// Overrides the kind's [`ErrorKind::client_should_retry`] for `x-should-retry`.
    pub client_retry: Option<bool>,
    /// Words for the operator's log line only, never rendered to a client (the name of a
    /// missing secret, what is wrong with a deployment's configuration).
    pub log_detail: Option<Box<str>>,
}

impl GatewayError {
    /// A new error of `kind` with a client-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError { kind, message: message.into(), param: None, code: None, retry_after: None, allow: None, client_retry: None, log_detail: None }
    }

    /// Marks this as the answer after the gateway's own retries and fallbacks: the client
    /// should not retry it (`x-should-retry: false`), whatever its kind.
    pub fn final_answer(mut self) -> Self {
        self.client_retry = Some(false);
        self
    }

    /// A 405 for a route that allows only `allow` (e.g. `"POST, OPTIONS"`).
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        GatewayError { allow: Some(allow), ..GatewayError::new(ErrorKind::MethodNotAllowed, format!("{method} is not allowed on {path}; use {allow}.")) }
    }

    /// A 400 naming the offending request parameter.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        GatewayError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Sets a precise machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Adds words for the operator's log line that the client never sees.
    pub fn with_log_detail(mut self, detail: impl Into<String>) -> Self {
        self.log_detail = Some(detail.into().into_boxed_str());
        self
    }

    /// Passes on the upstream's retry hint.
    pub fn with_retry_after(mut self, retry_after: Option<String>) -> Self {
        self.retry_after = retry_after.map(String::into_boxed_str);
        self
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The OpenAI error envelope, serialised.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: &'a str,
        }
        let envelope = Envelope {
            error: Inner {
                message: &self.message,
                kind: self.kind.error_type(),
                param: self.param.as_deref(),
                code: self.code.unwrap_or(self.kind.default_code()),
            },
        };
        serde_json::to_vec(&envelope).expect("the envelope is always serialisable")
    }

    /// OpenRouter's error envelope `{"error":{"code":<status>,"message","metadata":{"type",
    /// "param","code"}}}`, for callers of the `/api/v1` routes.
    pub fn openrouter_body(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "error": {
                "code": self.status(),
                "message": self.message,
                "metadata": {
                    "type": self.kind.error_type(),
                    "param": self.param,
                    "code": self.code.unwrap_or(self.kind.default_code()),
                },
            }
        });
        serde_json::to_vec(&body).expect("the envelope is always serialisable")
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status(), self.kind.error_type(), self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn body_is_the_openai_envelope_naming_the_param() {
        let err = GatewayError::invalid_param("n", "n must be between 1 and 10");
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"message": "n must be between 1 and 10",
                             "type": "invalid_request_error", "param": "n", "code": "invalid_value"}})
        );
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn each_kind_has_its_fixed_status() {
        let table = [
            (ErrorKind::InvalidRequest, 400),
            (ErrorKind::InvalidApiKey, 401),
            (ErrorKind::PaymentRequired, 402),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::MethodNotAllowed, 405),
            (ErrorKind::PayloadTooLarge, 413),
            (ErrorKind::UnsupportedMediaType, 415),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::Internal, 500),
            (ErrorKind::BadUpstream, 502),
            (ErrorKind::UpstreamTimeout, 524),
            (ErrorKind::Overloaded, 529),
            (ErrorKind::Unavailable, 503),
        ];
        for (kind, status) in table {
            assert_eq!(kind.status(), status, "{kind:?}");
        }
    }

    #[test]
    fn only_rate_limits_and_overload_invite_a_client_retry() {
        assert!(ErrorKind::RateLimited.client_should_retry());
        assert!(ErrorKind::Overloaded.client_should_retry());
        for kind in [ErrorKind::UpstreamTimeout, ErrorKind::BadUpstream, ErrorKind::InvalidRequest] {
            assert!(!kind.client_should_retry(), "{kind:?}");
        }
    }

    #[test]
    fn openrouter_envelope_has_the_status_as_code_and_the_rest_in_metadata() {
        let err = GatewayError::invalid_param("size", "bad size");
        let body: Value = serde_json::from_slice(&err.openrouter_body()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": 400, "message": "bad size",
                             "metadata": {"type": "invalid_request_error", "param": "size", "code": "invalid_value"}}})
        );
    }

    #[test]
    fn timeout_has_the_timeout_type() {
        let err = GatewayError::new(ErrorKind::UpstreamTimeout, "deadline passed");
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["error"]["type"], "timeout_error");
        assert_eq!(body["error"]["param"], Value::Null);
    }
}
