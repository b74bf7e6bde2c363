//! The HTTP exchange as the core sees it: a request head, a body to read, and a reply.
//!
//! These types carry no runtime objects, so every stage can be driven natively in tests.

use std::future::Future;

use crate::answer::Shape;
use crate::error::{ErrorKind, GatewayError};
use crate::event_relay::EventRelay;

/// What the core needs from an incoming request's head (kept with a [`Job`](crate::jobs::Job)
/// when the request runs apart from its client).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RequestHead {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The query string, without `?`, when the URL has one.
    pub query: Option<String>,
    /// The URL's scheme and authority (`https://gw.example`), what the gateway's own URLs
    /// (signed file URLs) start with.
    pub base: Option<String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub origin: Option<String>,
    /// The preflight's `Access-Control-Request-Headers`.
    pub access_control_request_headers: Option<String>,
    /// The `x-imagegate-config` header: routing fields for clients that cannot add body fields.
    pub imagegate_config: Option<String>,
    /// The `x-imagegate-cache` header (`refresh`).
    pub imagegate_cache: Option<String>,
    /// The `Cache-Control` header (`no-cache`, `no-store`).
    pub cache_control: Option<String>,
    /// The `If-None-Match` header (a stored file's entity tags the caller holds).
    pub if_none_match: Option<String>,
    /// The `Prefer` header (`respond-async`, RFC 7240).
    pub prefer: Option<String>,
    /// Set where a job runs apart from its client: the request is generated here and now,
    /// never handed off again.
    pub in_runner: bool,
    /// Ouro's async route protocol: `ouro-action-id`, `ouro-webhook-url`,
    /// `ouro-webhook-token` and `ouro-route-id`.
    pub ouro_action_id: Option<String>,
    pub ouro_webhook_url: Option<String>,
    pub ouro_webhook_token: Option<String>,
    pub ouro_route_id: Option<String>,
    /// Where a job runs: the label of the key that asked (a job keeps no key, only its label;
    /// a key removed since is refused).
    pub caller_label: Option<String>,
}

/// The scheme and authority of a serialised absolute URL (`https://gw.example:8443`).
pub fn base_of(url: &str) -> Option<&str> {
    let after_scheme = url.find("://")? + 3;
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    Some(&url[..end])
}

/// The query string of a serialised absolute URL (without `?` or fragment), if it has one.
pub fn query_of(url: &str) -> Option<&str> {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    url.split_once('?').map(|(_, query)| query)
}

/// The path of a serialised absolute URL (as the runtime gives it), without query or fragment.
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path = url[after_scheme..].find('/').map_or("/", |i| &url[after_scheme + i..]);
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

/// The parameters of a query string (without `?`) for an endpoint that takes only `params`:
/// each with its value, in order; an unknown or repeated one is a 400 naming it (`endpoint` says
/// whose query it is, for the message).
pub fn query_params(query: Option<&str>, params: &[&str], endpoint: &str) -> Result<Vec<(String, String)>, GatewayError> {
    let mut given: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !params.contains(&name.as_ref()) {
            return Err(GatewayError::invalid_param(&name, format!("Unknown query parameter '{name}'. {endpoint} takes {}.", params.join(", "))));
        }
        if given.iter().any(|(seen, _)| *seen == name) {
            return Err(GatewayError::invalid_param(&name, format!("The query parameter '{name}' is given more than once.")));
        }
        given.push((name.into_owned(), value.into_owned()));
    }
    Ok(given)
}

/// The incoming request's body, read only once a stage needs it.
pub trait IncomingBody {
    /// Reads the whole body; a 413 as soon as it exceeds `max_bytes`, without reading the rest.
    fn read(self, max_bytes: usize) -> impl Future<Output = Result<Vec<u8>, GatewayError>>;
}

/// A reply's body: nothing, bytes made here, or an upstream answer relayed whole.
pub enum ReplyBody<B> {
    Empty,
    Bytes(Vec<u8>),
    /// A stored file, by id: the edge streams it from the file store.
    Stored(String),
    /// The upstream answer, from its first byte, including what the core read to check it: the
    /// body keeps what it handed out and the edge delivers all of it without parsing.
    Relay(B),
    /// A provider's image stream, its first events read: the edge relays it event by event
    /// ([`EventRelay::pump`]) and then finishes the request
    /// ([`Gateway::finish_stream`](crate::pipeline::Gateway::finish_stream)).
    Events(Box<EventRelay<B>>),
}

/// The reply the edge turns into its runtime's response.
pub struct Reply<B> {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReplyBody<B>,
}

impl<B> Reply<B> {
    /// A JSON reply.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Reply { status, headers: vec![("content-type", "application/json".to_owned())], body: ReplyBody::Bytes(body) }
    }

    /// A reply of server-sent events (`body`, whole), never cached by anything in between.
    pub fn event_stream(status: u16, body: Vec<u8>) -> Self {
        let headers = vec![("content-type", "text/event-stream; charset=utf-8".to_owned()), ("cache-control", "no-cache".to_owned())];
        Reply { status, headers, body: ReplyBody::Bytes(body) }
    }

    /// The reply for an error: the OpenAI envelope, with `x-should-retry` always set so the
    /// OpenAI SDKs neither guess nor multiply paid attempts, `retry-after` when known, and
    /// `WWW-Authenticate` on 401.
    pub fn error(error: &GatewayError) -> Self {
        Reply::error_in(error, Shape::OpenAi)
    }

    /// [`Reply::error`] with the body in the caller's `shape` (OpenRouter's envelope under
    /// `/api/v1`).
    pub fn error_in(error: &GatewayError, shape: Shape) -> Self {
        let body = match shape {
            Shape::OpenAi => error.body(),
            Shape::OpenRouter => error.openrouter_body(),
        };
        let mut reply = Reply::json(error.status(), body);
        let retry = error.client_retry.unwrap_or(error.kind.client_should_retry());
        reply.headers.push(("x-should-retry", retry.to_string()));
        if let Some(retry_after) = error.retry_after.as_ref().filter(|_| matches!(error.kind, ErrorKind::RateLimited | ErrorKind::Overloaded)) {
            reply.headers.push(("retry-after", retry_after.to_string()));
        }
        if error.status() == 401 {
            reply.headers.push(("www-authenticate", "Bearer".to_owned()));
        }
        if let Some(allow) = error.allow {
            reply.headers.push(("allow", allow.to_owned()));
        }
        reply
    }

    /// The value of header `name`, if set (for tests and logs).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{base_of, path_of};

    #[test]
    fn base_of_keeps_scheme_host_and_port() {
        assert_eq!(base_of("https://gw.example/v1/x?y"), Some("https://gw.example"));
        assert_eq!(base_of("http://127.0.0.1:8787"), Some("http://127.0.0.1:8787"));
        assert_eq!(base_of("/relative"), None);
    }

    #[test]
    fn path_of_drops_origin_query_and_fragment() {
        assert_eq!(path_of("https://gw.example/v1/images/generations?x=1#y"), "/v1/images/generations");
        assert_eq!(path_of("http://127.0.0.1:8787/healthz"), "/healthz");
        assert_eq!(path_of("http://127.0.0.1:8787"), "/");
        assert_eq!(path_of("http://h/?q=/a"), "/");
    }
}
