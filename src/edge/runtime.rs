//! The Workers runtime behind the core's traits: clock, secrets, request body, and `fetch` with
//! an `AbortController` raced against a timer.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::{pin_mut, StreamExt};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader};
use worker::{AbortController, ByteStream, Delay, Env, Fetch, Headers, Method, Request, RequestInit, ResponseBody};

use crate::clock::Clock;
use crate::error::{ErrorKind, GatewayError};
use crate::http::{IncomingBody, RequestHead};
use crate::request::body_too_large;
use crate::secret::{Secret, Secrets};
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};

/// The runtime's clock.
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

/// A fresh request id: `req_` and 32 random hex digits.
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the runtime provides randomness");
    format!("req_{}", hex::encode(bytes))
}

/// The parts of the incoming request the core reads.
pub fn head(req: &Request) -> RequestHead {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    RequestHead {
        method: req.method().to_string(),
        path: req.path(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        origin: header("origin"),
        access_control_request_headers: header("access-control-request-headers"),
    }
}

/// Secrets from the environment (`.dev.vars` locally, `wrangler secret put` in production).
pub struct EnvSecrets<'e>(pub &'e Env);

impl Secrets for EnvSecrets<'_> {
    fn get(&self, name: &str) -> Option<Secret> {
        self.0.secret(name).ok().map(|value| Secret::new(value.to_string()))
    }
}

/// The incoming request's body, read on demand with a size cap.
pub struct IncomingWorkerBody {
    stream: Option<ReadableStream>,
    declared_length: Option<usize>,
}

impl IncomingWorkerBody {
    pub fn new(req: &Request) -> Self {
        let declared_length = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse().ok());
        IncomingWorkerBody { stream: req.inner().body(), declared_length }
    }
}

impl IncomingBody for IncomingWorkerBody {
    async fn read(self, max_bytes: usize) -> Result<Vec<u8>, GatewayError> {
        if self.declared_length.is_some_and(|len| len > max_bytes) {
            return Err(body_too_large(max_bytes));
        }
        let Some(stream) = self.stream else { return Ok(Vec::new()) };
        let mut chunks = ByteStream::from(stream);
        let mut body = Vec::with_capacity(self.declared_length.unwrap_or(0));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| GatewayError::new(ErrorKind::InvalidRequest, "The request body could not be read to the end."))?;
            if body.len() + chunk.len() > max_bytes {
                return Err(body_too_large(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Upstream calls with the runtime's `fetch`.
pub struct WorkerUpstream;

impl Upstream for WorkerUpstream {
    type Body = WorkerBody;

    async fn send(&self, request: UpstreamRequest, limit_ms: u64) -> Result<UpstreamReply<WorkerBody>, TransportError> {
        let failed = |what: &str| TransportError::Failed(what.to_owned());
        let headers = Headers::new();
        for (name, value) in &request.headers {
            headers.set(name, value.expose()).map_err(|_| failed(&format!("the header '{name}' is not valid")))?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(Uint8Array::from(request.body.as_slice()).into()));
        let outgoing = Request::new_with_init(&request.url, &init).map_err(|_| failed("the upstream URL is not valid"))?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Fetch::Request(outgoing);
        let sent = fetch.send_with_signal(&signal);
        let timer = Delay::from(Duration::from_millis(limit_ms));
        pin_mut!(sent, timer);
        match select(sent, timer).await {
            Either::Left((Ok(response), _)) => {
                let retry_after = response.headers().get("retry-after").ok().flatten();
                let stream = match response.body() {
                    ResponseBody::Stream(stream) => Some(stream.clone()),
                    _ => None,
                };
                Ok(UpstreamReply {
                    status: response.status_code(),
                    retry_after,
                    body: WorkerBody { stream, reader: None, controller: Some(controller), finished: false },
                })
            }
            Either::Left((Err(error), _)) => Err(TransportError::Failed(error.to_string())),
            Either::Right(_) => {
                controller.abort();
                Err(TransportError::Timeout)
            }
        }
    }
}

/// An upstream answer's body: read chunk by chunk while the core decides, then handed to the
/// runtime whole so the rest streams without passing through wasm.
pub struct WorkerBody {
    stream: Option<ReadableStream>,
    reader: Option<ReadableStreamDefaultReader>,
    controller: Option<AbortController>,
    finished: bool,
}

impl WorkerBody {
    /// The unread rest of the body, or `None` when it has all been read.
    pub fn into_rest(mut self) -> Option<ReadableStream> {
        if self.finished {
            return None;
        }
        if let Some(reader) = self.reader.take() {
            reader.release_lock();
        }
        self.stream
    }
}

impl UpstreamBody for WorkerBody {
    async fn next_chunk(&mut self, limit_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        let Some(stream) = self.stream.as_ref().filter(|_| !self.finished) else { return Ok(None) };
        let reader = self.reader.get_or_insert_with(|| stream.get_reader().unchecked_into());
        let read = JsFuture::from(reader.read());
        let timer = Delay::from(Duration::from_millis(limit_ms));
        pin_mut!(read, timer);
        match select(read, timer).await {
            Either::Left((Ok(result), _)) => {
                let done = Reflect::get(&result, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true);
                if done {
                    self.finished = true;
                    return Ok(None);
                }
                let value = Reflect::get(&result, &JsValue::from_str("value")).unwrap_or(JsValue::UNDEFINED);
                Ok(Some(Uint8Array::new(&value).to_vec()))
            }
            Either::Left((Err(error), _)) => {
                Err(TransportError::Failed(error.as_string().unwrap_or_else(|| "the answer broke off".to_owned())))
            }
            Either::Right(_) => {
                if let Some(controller) = self.controller.take() {
                    controller.abort();
                }
                Err(TransportError::Timeout)
            }
        }
    }
}
