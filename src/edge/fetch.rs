//! Upstream calls with the runtime's `fetch`, an `AbortController` raced against a timer, and
//! answer bodies that are inspected without being copied on their way to the client.
//!
//! This talks to `web_sys` directly: the `worker` crate's request and response wrappers read
//! properties (`cf`, `websocket`) the gateway never uses, on every request.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, ReadableStream, ReadableStreamDefaultReader, RequestInit, Response, WorkerGlobalScope, WritableStream};
use worker::Delay;

use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};

/// The largest answer of known length read whole (one native call) rather than streamed.
const WHOLE_ANSWER_BYTES: usize = 64 * 1024;

/// Upstream calls with the runtime's `fetch`.
pub struct WorkerUpstream;

fn failure(error: JsValue) -> TransportError {
    let text = error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "the connection failed".to_owned());
    TransportError::Failed(text)
}

impl Upstream for WorkerUpstream {
    type Body = WorkerBody;

    async fn send(&self, request: UpstreamRequest, limit_ms: u64) -> Result<UpstreamReply<WorkerBody>, TransportError> {
        let headers = Headers::new().map_err(failure)?;
        for (name, value) in &request.headers {
            headers
                .set(name, value.expose())
                .map_err(|_| TransportError::Failed(format!("the header '{name}' is not valid")))?;
        }
        let controller = AbortController::new().map_err(failure)?;
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_body(&Uint8Array::from(request.body.as_slice()));
        init.set_signal(Some(&controller.signal()));
        let global: WorkerGlobalScope = js_sys::global().unchecked_into();
        let mut controller = Some(controller);
        let sent = JsFuture::from(global.fetch_with_str_and_init(&request.url, &init));
        let response: Response = within(&mut controller, limit_ms, async { sent.await.map_err(failure) }).await?.unchecked_into();
        let retry_after = response.headers().get("retry-after").ok().flatten();
        Ok(UpstreamReply { status: response.status(), retry_after, body: WorkerBody { source: Source::of(response), controller } })
    }
}

/// An upstream answer's body. Small answers of known length are read whole and delivered as
/// bytes. Larger ones are read only as far as the core needs to inspect them; the chunks read go
/// out first, then the runtime pipes the unread rest natively, never through wasm.
pub struct WorkerBody {
    source: Source,
    controller: Option<AbortController>,
}

enum Source {
    /// Read whole on first use.
    Whole { response: Response, bytes: Option<Vec<u8>> },
    /// Streamed: the chunks read to inspect it are kept, as the runtime's own buffers, to be sent
    /// ahead of the unread rest.
    Stream { stream: ReadableStream, length: Option<u64>, reader: Option<ReadableStreamDefaultReader>, read: Vec<Uint8Array>, finished: bool },
    Empty,
}

impl Source {
    fn of(response: Response) -> Self {
        let length = response.headers().get("content-length").ok().flatten().and_then(|len| len.parse::<u64>().ok());
        match response.body() {
            Some(_) if length.is_some_and(|len| len <= WHOLE_ANSWER_BYTES as u64) => Source::Whole { response, bytes: None },
            Some(stream) => Source::Stream { stream, length, reader: None, read: Vec::new(), finished: false },
            None => Source::Empty,
        }
    }
}

/// How the edge sends a relayed body on.
pub enum Delivery {
    Bytes(Vec<u8>),
    Stream(ReadableStream),
    /// `readable` is fed by `pump`, which must be kept running (`waitUntil`) until it ends.
    Piped { readable: ReadableStream, pump: Pin<Box<dyn Future<Output = ()>>> },
    Empty,
}

#[wasm_bindgen]
extern "C" {
    /// workerd's native byte pipe of a declared length: the response keeps its Content-Length.
    type FixedLengthStream;
    #[wasm_bindgen(constructor)]
    fn new(length: f64) -> FixedLengthStream;
    /// workerd's native byte pipe.
    type IdentityTransformStream;
    #[wasm_bindgen(constructor)]
    fn new() -> IdentityTransformStream;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &FixedLengthStream) -> ReadableStream;
    #[wasm_bindgen(method, getter)]
    fn writable(this: &FixedLengthStream) -> WritableStream;
}

impl WorkerBody {
    /// The whole answer, from its first byte, ready for the response.
    pub fn into_delivery(self) -> Delivery {
        match self.source {
            Source::Whole { bytes: Some(bytes), .. } => Delivery::Bytes(bytes),
            Source::Whole { response, bytes: None } => response.body().map_or(Delivery::Empty, Delivery::Stream),
            Source::Stream { stream, reader: None, .. } => Delivery::Stream(stream),
            Source::Stream { stream, length, reader: Some(reader), read, .. } => {
                reader.release_lock();
                let pipe: FixedLengthStream = match length {
                    Some(length) => FixedLengthStream::new(length as f64),
                    None => IdentityTransformStream::new().unchecked_into(),
                };
                let (readable, writable) = (pipe.readable(), pipe.writable());
                let pump = async move {
                    let Ok(writer) = writable.get_writer() else { return };
                    for chunk in &read {
                        if JsFuture::from(writer.write_with_chunk(chunk)).await.is_err() {
                            return;
                        }
                    }
                    writer.release_lock();
                    // Fails only when the client went away or the upstream broke off; the
                    // runtime ends the client's stream accordingly.
                    let _ = JsFuture::from(stream.pipe_to(&writable)).await;
                };
                Delivery::Piped { readable, pump: Box::pin(pump) }
            }
            Source::Empty => Delivery::Empty,
        }
    }
}

/// Runs `work` for at most `limit_ms`; on timeout aborts the upstream request.
async fn within<T>(
    controller: &mut Option<AbortController>,
    limit_ms: u64,
    work: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let timer = Delay::from(Duration::from_millis(limit_ms));
    pin_mut!(work, timer);
    match select(work, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            if let Some(controller) = controller.take() {
                controller.abort();
            }
            Err(TransportError::Timeout)
        }
    }
}

impl UpstreamBody for WorkerBody {
    async fn next_chunk(&mut self, limit_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        let WorkerBody { source, controller } = self;
        match source {
            Source::Whole { bytes: Some(_), .. } | Source::Empty | Source::Stream { finished: true, .. } => Ok(None),
            Source::Whole { response, bytes: bytes @ None } => {
                let read = JsFuture::from(response.array_buffer().map_err(failure)?);
                let buffer = within(controller, limit_ms, async { read.await.map_err(failure) }).await?;
                let whole = Uint8Array::new(&buffer).to_vec();
                *bytes = Some(whole.clone());
                Ok(Some(whole))
            }
            Source::Stream { stream, reader, read, finished, .. } => {
                let reader = reader.get_or_insert_with(|| stream.get_reader().unchecked_into());
                let next = JsFuture::from(reader.read());
                let result = within(controller, limit_ms, async { next.await.map_err(failure) }).await?;
                let done = Reflect::get(&result, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true);
                if done {
                    *finished = true;
                    return Ok(None);
                }
                let chunk: Uint8Array = Reflect::get(&result, &JsValue::from_str("value")).map_err(failure)?.unchecked_into();
                let copy = chunk.to_vec();
                read.push(chunk);
                Ok(Some(copy))
            }
        }
    }
}
