//! Upstream calls with the runtime's `fetch` raced against a timer, and
//! answer bodies that are inspected without being copied whole on their way to the client.
//!
//! This talks to `web_sys` directly: the `worker` crate's request and response wrappers read
//! properties (`cf`, `websocket`) the gateway never uses, on every request.
//!
//! The call itself (`fetch`, its timer and a small answer's body) is made by `plumbing.js` as
//! one promise. Only a call made by a Durable Object carries an `AbortSignal` (in workerd a
//! signal on `fetch` costs about 100 µs of CPU per request, measured with `node bench/run.mjs
//! --quick`): an object outlives the request that started it, so its calls must be aborted. A
//! request's call whose deadline passes before the answer's head is instead ended by the
//! runtime, which cancels a request's outstanding subrequests once its response is complete;
//! after the head, the gateway cancels the answer's stream itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use js_sys::Uint8Array;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStream, ReadableStreamDefaultReader, Response, StreamPipeOptions, WritableStream};
use worker::Delay;

use super::plumbing::{self, Called};
use super::runtime::now_ms;

use crate::answer_scan::SMALL_ANSWER_BYTES;
use crate::jobs::Journal;
use crate::upstream::{ByteBudget, Method, TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};

/// The largest answer of known length read whole (one native call) rather than streamed: the
/// answers the core checks whole.
const WHOLE_ANSWER_BYTES: u64 = SMALL_ANSWER_BYTES as u64;
/// The most bytes copied into wasm per inspection step; the core rarely needs more than one.
const INSPECTION_WINDOW: u32 = 4 * 1024;

#[wasm_bindgen]
extern "C" {
    /// workerd's native byte pipe of a declared length: the response keeps its Content-Length.
    type FixedLengthStream;
    #[wasm_bindgen(constructor)]
    fn new(length: f64) -> FixedLengthStream;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &FixedLengthStream) -> ReadableStream;
    #[wasm_bindgen(method, getter)]
    fn writable(this: &FixedLengthStream) -> WritableStream;
    /// workerd's native byte pipe, for answers of unknown length (same shape as the above).
    pub(super) type IdentityTransformStream;
    #[wasm_bindgen(constructor)]
    pub(super) fn new() -> IdentityTransformStream;
    #[wasm_bindgen(method, getter)]
    pub(super) fn readable(this: &IdentityTransformStream) -> ReadableStream;
    #[wasm_bindgen(method, getter)]
    pub(super) fn writable(this: &IdentityTransformStream) -> WritableStream;
}

/// Aborts a call when dropped, unless disarmed (its `Option` taken).
struct AbortOnDrop(Option<AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

/// Upstream calls with the runtime's `fetch`; where a job runs, each paid call (`POST`) is first
/// noted in its journal, as [`crate::jobs::Journaled`] does. (One type for both, so that the
/// whole pipeline is compiled once into the wasm, not once per upstream type.)
pub struct WorkerUpstream<'j> {
    pub journal: Option<&'j dyn Journal>,
    /// Whether each call carries an `AbortSignal`, aborted when its time is up or when it is
    /// given up: where the calls are made by a Durable Object, which outlives any request.
    pub aborts: bool,
}

/// The upstream of a request served in place: its outstanding calls end with its response.
pub const PLAIN: WorkerUpstream<'static> = WorkerUpstream { journal: None, aborts: false };

/// The upstream of calls a Durable Object makes outside a job's run (webhooks).
pub const IN_OBJECT: WorkerUpstream<'static> = WorkerUpstream { journal: None, aborts: true };

fn failure(error: JsValue) -> TransportError {
    if plumbing::timed_out(&error) {
        return TransportError::Timeout;
    }
    let text =
        error.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| error.as_string()).unwrap_or_else(|| "the connection failed".to_owned());
    TransportError::Failed(text)
}

impl Upstream for WorkerUpstream<'_> {
    type Body = WorkerBody;

    async fn send(&self, request: UpstreamRequest, limit_ms: u64) -> Result<UpstreamReply<WorkerBody>, TransportError> {
        if let (Some(journal), Method::Post) = (self.journal, request.method) {
            journal
                .note_paid_call()
                .await
                .map_err(|error| TransportError::NotSent(format!("the run could not note the call it was about to make: {error}")))?;
        }
        let deadline_ms = now_ms() + limit_ms;
        let headers = request.headers.iter().map(|(name, value)| (name.as_ref(), value.expose()));
        let header_lines = plumbing::header_lines(headers).map_err(|name| TransportError::NotSent(format!("the header '{name}' is not valid")))?;
        let body = (request.method == Method::Post).then(|| Uint8Array::from(&request.body[..]));
        // In a Durable Object: aborted when its time is up, or when the call is given up (a
        // cancelled run drops it), so that the upstream connection closes at once. Once the
        // head has come, the body cancels its own stream when it is dropped unread.
        let mut stop = AbortOnDrop(self.aborts.then(AbortController::new).transpose().map_err(failure)?);
        let signal = stop.0.as_ref().map(AbortController::signal);
        // Never followed: the core follows an image download's redirects itself, checking each
        // hop, and no other request follows one.
        let call = plumbing::call(&request.url, request.method.as_str(), &header_lines, body, signal, limit_ms, WHOLE_ANSWER_BYTES).map_err(failure)?;
        let called = JsFuture::from(call).await.map_err(failure)?;
        stop.0.take();
        let called: Called = called.unchecked_into();
        let mut head = called.head();
        // A small answer comes whole with the call, as its one chunk.
        let whole = called.whole();
        let source = match &whole {
            Some(whole) => Source::Whole { length: u64::from(whole.length()) },
            None => match called.response().body() {
                Some(stream) => Source::Stream { stream, length: head.length, reader: None },
                None => Source::Empty,
            },
        };
        head.length = match &source {
            Source::Stream { length, .. } => *length,
            Source::Whole { length } => Some(*length),
            Source::Empty => Some(0),
        };
        let inspected = Inspected { chunks: whole.into_iter().collect(), ..Inspected::default() };
        Ok(head.with_body(WorkerBody { source, inspected, deadline_ms, delivered: false }))
    }
}

/// An upstream answer's body.
///
/// Small answers of known length are read whole in one native call and sent on as that same
/// buffer. Larger ones are read only as far as the core inspects them; the chunks read go out
/// first, then the runtime pipes the unread rest natively, never through wasm. Either way the
/// core sees at most [`INSPECTION_WINDOW`] bytes per step, copied from the runtime's buffers.
///
/// Dropped without being delivered (an error answer, a rejected 200, a timeout), it cancels the
/// answer's stream, closing the upstream connection. Delivered, it keeps enforcing the request
/// deadline while the rest streams.
pub struct WorkerBody {
    source: Source,
    inspected: Inspected,
    /// When the request's deadline passes, in Unix milliseconds (updated by each read's limit).
    deadline_ms: u64,
    delivered: bool,
}

enum Source {
    /// Small, of known length: read whole by the call (its one chunk).
    Whole {
        length: u64,
    },
    /// Streamed; `length` is the exact length when the upstream declared one for an unencoded body.
    Stream {
        stream: ReadableStream,
        length: Option<u64>,
        reader: Option<ReadableStreamDefaultReader>,
    },
    Empty,
}

/// The chunks taken from the runtime so far, and how far the core has looked into them.
#[derive(Default)]
struct Inspected {
    chunks: Vec<Uint8Array>,
    chunk: usize,
    offset: u32,
    finished: bool,
}

impl Inspected {
    /// The next window of what was taken and not yet shown to the core.
    fn next_window(&mut self) -> Option<Vec<u8>> {
        while let Some(chunk) = self.chunks.get(self.chunk) {
            let end = chunk.length().min(self.offset + INSPECTION_WINDOW);
            if self.offset < end {
                let window = chunk.subarray(self.offset, end).to_vec();
                self.offset = end;
                return Some(window);
            }
            self.chunk += 1;
            self.offset = 0;
        }
        None
    }
}

/// How the edge sends a relayed body on.
pub enum Delivery {
    Buffer(Uint8Array),
    Stream(ReadableStream),
    /// `readable` is fed by `pump`, which must be kept running (`waitUntil`) until it ends.
    Piped {
        readable: ReadableStream,
        pump: Pin<Box<dyn Future<Output = ()>>>,
    },
    Empty,
}

impl WorkerBody {
    /// The whole answer, from its first byte, ready for the response.
    pub fn into_delivery(mut self) -> Delivery {
        self.delivered = true;
        let source = std::mem::replace(&mut self.source, Source::Empty);
        let chunks = std::mem::take(&mut self.inspected.chunks);
        match source {
            Source::Whole { .. } => chunks.into_iter().next().map_or(Delivery::Empty, Delivery::Buffer),
            Source::Stream { stream, reader: None, .. } => Delivery::Stream(stream),
            Source::Stream { stream, length, reader: Some(reader) } => {
                reader.release_lock();
                let pipe: FixedLengthStream = match length {
                    Some(length) => FixedLengthStream::new(length as f64),
                    None => IdentityTransformStream::new().unchecked_into(),
                };
                let (readable, writable) = (pipe.readable(), pipe.writable());
                let limit_ms = self.deadline_ms.saturating_sub(now_ms());
                let pump = async move {
                    let Ok(writer) = writable.get_writer() else { return };
                    for chunk in &chunks {
                        if JsFuture::from(writer.write_with_chunk(chunk)).await.is_err() {
                            return;
                        }
                    }
                    writer.release_lock();
                    // The deadline still holds: past it, the upstream request is aborted and the
                    // client's stream ends in an error rather than hanging. Other failures mean
                    // the client went away or the upstream broke off; the runtime ends the
                    // client's stream accordingly.
                    let Ok(stop) = AbortController::new() else { return };
                    let options = StreamPipeOptions::new();
                    options.set_signal(&stop.signal());
                    let piped = JsFuture::from(stream.pipe_to_with_options(&writable, &options));
                    if within(limit_ms, async { piped.await.map_err(failure) }).await == Err(TransportError::Timeout) {
                        // Cancels the upstream answer and errors the client's stream.
                        stop.abort();
                    }
                };
                Delivery::Piped { readable, pump: Box::pin(pump) }
            }
            Source::Empty => Delivery::Empty,
        }
    }

    /// Takes the next chunk from the runtime within `limit_ms`; `false` at the end of the body.
    async fn take_chunk(&mut self, limit_ms: u64) -> Result<bool, TransportError> {
        self.take(limit_ms, Reading::Chunks).await
    }

    /// Takes from the runtime, within `limit_ms`, a chunk or the bytes that end an event, as
    /// `reading` says; `false` at the end of the body. (A body is read one way only.)
    async fn take(&mut self, limit_ms: u64, reading: Reading) -> Result<bool, TransportError> {
        let WorkerBody { source, inspected, .. } = self;
        match source {
            Source::Empty => Ok(false),
            // Read whole with the call itself.
            Source::Whole { .. } => Ok(false),
            Source::Stream { stream, reader, .. } => {
                let reader = reader.get_or_insert_with(|| match reading {
                    Reading::Chunks => stream.get_reader().unchecked_into(),
                    Reading::Events => plumbing::events_reader(stream),
                });
                let next = JsFuture::from(match reading {
                    Reading::Chunks => plumbing::next_chunk(reader),
                    Reading::Events => plumbing::next_events(reader),
                });
                // A timer per read: a timer polled by another task (the relay's, after the
                // request's) would wake the first one.
                let chunk = within(limit_ms, async { next.await.map_err(failure) }).await?;
                if chunk.is_undefined() {
                    return Ok(false);
                }
                inspected.chunks.push(chunk.unchecked_into());
                Ok(true)
            }
        }
    }
}

/// How a body is taken from the runtime.
#[derive(Clone, Copy)]
enum Reading {
    /// A chunk at a time, as the runtime hands them out.
    Chunks,
    /// Gathered into a buffer until it holds the end of an event.
    Events,
}

impl Drop for WorkerBody {
    fn drop(&mut self) {
        if self.delivered {
            return;
        }
        // Nobody will read the rest: cancelling it closes the upstream connection now.
        let _ = match &self.source {
            // Read to its end already.
            Source::Whole { .. } => None,
            Source::Stream { reader: Some(reader), .. } => Some(reader.cancel()),
            Source::Stream { stream, reader: None, .. } => Some(stream.cancel()),
            Source::Empty => None,
        };
    }
}

/// What is left of `stream`, read whole in one native call within `limit_ms`.
async fn rest_of(stream: &ReadableStream, limit_ms: u64) -> Result<Uint8Array, TransportError> {
    let read = Response::new_with_opt_readable_stream(Some(stream)).and_then(|whole| whole.array_buffer()).map_err(failure)?;
    let buffer = within(limit_ms, async { JsFuture::from(read).await.map_err(failure) }).await?;
    Ok(Uint8Array::new(&buffer))
}

/// Runs `work` for at most `limit_ms`.
async fn within<T>(limit_ms: u64, work: impl Future<Output = Result<T, TransportError>>) -> Result<T, TransportError> {
    let timer = Delay::from(Duration::from_millis(limit_ms));
    pin_mut!(work, timer);
    match select(work, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(TransportError::Timeout),
    }
}

impl UpstreamBody for WorkerBody {
    async fn next_chunk(&mut self, limit_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        self.deadline_ms = now_ms() + limit_ms;
        loop {
            if let Some(window) = self.inspected.next_window() {
                return Ok(Some(window));
            }
            if self.inspected.finished || !self.take_chunk(limit_ms).await? {
                self.inspected.finished = true;
                return Ok(None);
            }
        }
    }

    /// Whole events as the runtime gathered them (one crossing per event, not per chunk), after
    /// anything taken earlier and not yet shown.
    async fn next_events(&mut self, limit_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        self.deadline_ms = now_ms() + limit_ms;
        if let Some(window) = self.inspected.next_window() {
            return Ok(Some(window));
        }
        if self.inspected.finished || !self.take(limit_ms, Reading::Events).await? {
            self.inspected.finished = true;
            return Ok(None);
        }
        // Copied at once: the runtime reads the next bytes into the same buffer.
        let taken = self.inspected.chunks.pop().expect("take pushed one");
        // A small answer's one chunk was shown already; a stream's is taken whole.
        self.inspected.chunk = self.inspected.chunks.len();
        Ok(Some(taken.to_vec()))
    }

    /// Copies whole runtime chunks into wasm (one `arrayBuffer` call for a small answer of known
    /// length) rather than inspection windows; the limit holds for the whole read.
    async fn read_all(&mut self, limit_ms: u64, budget: &ByteBudget) -> Result<Option<Vec<u8>>, TransportError> {
        let deadline_ms = now_ms() + limit_ms;
        let mut out = Vec::new();
        // What was taken but not yet shown to the core comes first; a small answer read whole is
        // then complete.
        while let Some(window) = self.inspected.next_window() {
            if !budget.take(window.len()) {
                return Ok(None);
            }
            out.extend_from_slice(&window);
        }
        if !self.inspected.chunks.is_empty() && matches!(self.source, Source::Whole { .. }) {
            self.inspected.finished = true;
        }
        let taken: u64 = self.inspected.chunks.iter().map(|chunk| u64::from(chunk.length())).sum();
        self.inspected.chunks.clear();
        if !self.inspected.finished {
            if let Source::Stream { stream, length: Some(length), reader } = &mut self.source {
                // A declared length: the rest in one native call, not chunk by chunk.
                if !budget.take(length.saturating_sub(taken) as usize) {
                    return Ok(None);
                }
                if let Some(reader) = reader.take() {
                    reader.release_lock();
                }
                let rest = rest_of(stream, deadline_ms.saturating_sub(now_ms())).await?;
                self.source = Source::Empty;
                self.inspected.finished = true;
                let start = out.len();
                out.resize(start + rest.length() as usize, 0);
                rest.copy_to(&mut out[start..]);
            }
        }
        while !self.inspected.finished {
            let remaining = deadline_ms.saturating_sub(now_ms());
            if remaining == 0 {
                return Err(TransportError::Timeout);
            }
            if !self.take_chunk(remaining).await? {
                self.inspected.finished = true;
                break;
            }
            let chunk = self.inspected.chunks.pop().expect("take_chunk pushed one");
            let start = out.len();
            if !budget.take(chunk.length() as usize) {
                return Ok(None);
            }
            out.resize(start + chunk.length() as usize, 0);
            chunk.copy_to(&mut out[start..]);
            if matches!(self.source, Source::Whole { .. }) {
                self.inspected.finished = true;
            }
        }
        Ok(Some(out))
    }

    fn relay_within(&mut self, limit_ms: u64) {
        self.deadline_ms = now_ms() + limit_ms;
    }
}
