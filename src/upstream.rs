//! The seam between the deciding core and the network.
//!
//! The core builds an [`UpstreamRequest`], hands it to an [`Upstream`] with a time limit, and reads
//! the answer's body through [`UpstreamBody`]. The wasm build implements these with `fetch`, an
//! `AbortController` and a timer; tests implement them with scripted fakes.

use std::future::Future;
use std::rc::Rc;

use crate::secret::Secret;

/// The HTTP method of an upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request to send upstream: a `POST` with a body (JSON or a multipart form), or a `GET` (a
/// status poll, an image download) with an empty one. Redirects are never followed by the
/// runtime: a 3xx reaches the core as is (a redirect re-sends the request, its prompt and its
/// headers, credentials among them, to wherever it points), and only image downloads follow
/// one, by hand, checking each hop.
#[derive(Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    pub url: String,
    /// Header name and value; values may hold secrets (see [`HeaderValue`]).
    pub headers: Vec<(String, HeaderValue)>,
    /// Shared, not copied: a poll sent again, or a call kept for a cancel, points at the same bytes.
    pub body: Rc<[u8]>,
}

impl UpstreamRequest {
    /// A `GET` of `url` with `headers` and no body.
    pub fn get(url: String, headers: Vec<(String, HeaderValue)>) -> UpstreamRequest {
        UpstreamRequest { method: Method::Get, url, headers, body: Rc::from([]) }
    }
}

/// A header value that is either plain text or a secret.
#[derive(Clone)]
pub enum HeaderValue {
    Plain(String),
    Secret(Secret),
}

impl HeaderValue {
    /// The value to put on the wire.
    pub fn expose(&self) -> &str {
        match self {
            HeaderValue::Plain(value) => value,
            HeaderValue::Secret(secret) => secret.expose(),
        }
    }
}

impl std::fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderValue::Plain(value) => value.fmt(f),
            HeaderValue::Secret(secret) => secret.fmt(f),
        }
    }
}

impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The head of an upstream answer; the body is read separately.
pub struct UpstreamReply<B> {
    pub status: u16,
    /// The upstream's `retry-after` header, passed on to the client on 429.
    pub retry_after: Option<String>,
    /// The upstream's `retry-after-ms` header (OpenAI's finer retry hint).
    pub retry_after_ms: Option<String>,
    /// The answer's `Content-Type` (adapters whose upstream may answer raw image bytes read it).
    pub content_type: Option<String>,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    /// The body's exact length, when the upstream declared one for an unencoded body.
    pub length: Option<u64>,
    pub body: B,
}

impl<B> UpstreamReply<B> {
    /// The same head with `body`.
    pub fn with_body<C>(self, body: C) -> UpstreamReply<C> {
        let UpstreamReply { status, retry_after, retry_after_ms, content_type, location, length, .. } = self;
        UpstreamReply { status, retry_after, retry_after_ms, content_type, location, length, body }
    }
}

/// How many more bytes of upstream answers one request may read into the gateway (the
/// configuration's `max_upstream_bytes`), shared by every whole read and download of the request.
#[derive(Debug)]
pub struct ByteBudget {
    left: std::cell::Cell<usize>,
}

impl ByteBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        ByteBudget { left: std::cell::Cell::new(bytes) }
    }

    /// Takes `bytes` from the budget; `false` (and nothing taken) when fewer are left.
    pub fn take(&self, bytes: usize) -> bool {
        let left = self.left.get();
        if bytes > left {
            return false;
        }
        self.left.set(left - bytes);
        true
    }

    /// The bytes left.
    pub fn left(&self) -> usize {
        self.left.get()
    }
}

/// Why no answer (or no more of one) arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The time limit passed; the request was aborted.
    Timeout,
    /// The connection failed; the text is the runtime's description, safe to show. The request
    /// may have reached the upstream.
    Failed(String),
    /// The request could not be made (a header the runtime refuses): it never left the gateway.
    NotSent(String),
}

/// Sends requests upstream. One instance serves one incoming request.
pub trait Upstream {
    type Body: UpstreamBody;

    /// Sends `request` and waits at most `limit_ms` for the answer's head; on timeout the
    /// request is aborted and [`TransportError::Timeout`] returned.
    fn send(&self, request: UpstreamRequest, limit_ms: u64) -> impl Future<Output = Result<UpstreamReply<Self::Body>, TransportError>>;
}

/// The body of an upstream answer, read a chunk at a time.
///
/// Reading is for inspection only: what was read is still delivered when the body is relayed
/// ([`ReplyBody::Relay`](crate::http::ReplyBody::Relay)), so an implementation either keeps the
/// chunks it hands out or reads from a copy of the stream.
pub trait UpstreamBody {
    /// The next chunk, or `None` at the end; waits at most `limit_ms`.
    fn next_chunk(&mut self, limit_ms: u64) -> impl Future<Output = Result<Option<Vec<u8>>, TransportError>>;

    /// The next bytes of an event stream, or `None` at the end; waits at most `limit_ms`. An
    /// implementation may gather chunks until they hold the end of an event (a blank line), so
    /// that a stream is handed over an event at a time rather than a chunk at a time; this
    /// default is [`next_chunk`](Self::next_chunk).
    fn next_events(&mut self, limit_ms: u64) -> impl Future<Output = Result<Option<Vec<u8>>, TransportError>> {
        self.next_chunk(limit_ms)
    }

    /// The rest of the body, whole, for answers that are translated rather than relayed, each
    /// chunk taken from `budget` as it arrives. `Ok(None)` when the budget runs out (the rest is
    /// then left unread). This default waits at most `limit_ms` per chunk; implementations may
    /// bound the whole read and read it in one native call.
    fn read_all(&mut self, limit_ms: u64, budget: &ByteBudget) -> impl Future<Output = Result<Option<Vec<u8>>, TransportError>> {
        async move {
            let mut out = Vec::new();
            while let Some(chunk) = self.next_chunk(limit_ms).await? {
                if !budget.take(chunk.len()) {
                    return Ok(None);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Some(out))
        }
    }

    /// How long the rest of the body may take once it is relayed to the client: the request's
    /// deadline, not the attempt's (the answer has begun, and is paid for). Past it the stream
    /// ends as an error.
    fn relay_within(&mut self, limit_ms: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_budget_is_taken_whole_or_not_at_all() {
        let budget = ByteBudget::new(10);
        assert!(budget.take(6));
        assert!(!budget.take(5), "only 4 left");
        assert_eq!(budget.left(), 4);
        assert!(budget.take(4));
        assert!(!budget.take(1));
    }
}
