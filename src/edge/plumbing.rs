//! Bindings to `plumbing.js`: the request path's runtime calls gathered into few crossings
//! between wasm and JS (each crossing, each timer and each awaited promise costs CPU per request).

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use web_sys::{AbortSignal, Request, Response};

use crate::upstream::UpstreamReply;

#[wasm_bindgen(module = "/src/edge/plumbing.js")]
extern "C" {
    /// The request's method, URL and the headers of `HEAD_NAMES`, one per line.
    fn head(request: &Request) -> String;

    /// An upstream call and, for a small answer, its body, within one timer; see `plumbing.js`.
    /// A throw (a header the runtime refuses) comes back as the error, never through wasm.
    #[wasm_bindgen(catch, js_name = call)]
    fn call_js(
        url: &str,
        method: &str,
        header_lines: &str,
        body: Option<Uint8Array>,
        signal: Option<AbortSignal>,
        limit_ms: f64,
        whole_bytes: f64,
    ) -> Result<Promise, JsValue>;

    /// The response of `status` with the headers of `header_lines` and `body` (a buffer, a
    /// stream or null), made in one call; a throw comes back as the error.
    #[wasm_bindgen(catch)]
    pub fn respond(status: u16, header_lines: &str, body: &JsValue) -> Result<Response, JsValue>;

    /// The reader's next chunk: a promise of a `Uint8Array`, or of `undefined` at the end.
    #[wasm_bindgen(js_name = nextChunk)]
    pub fn next_chunk(reader: &web_sys::ReadableStreamDefaultReader) -> Promise;

    /// A reader for [`next_events`]: one that reads into the gateway's own buffer where the
    /// stream allows it.
    #[wasm_bindgen(js_name = eventsReader)]
    pub fn events_reader(stream: &web_sys::ReadableStream) -> web_sys::ReadableStreamDefaultReader;

    /// The reader's next bytes of an event stream, gathered up to the end of an event: a
    /// promise of a `Uint8Array`, or of `undefined` at the end.
    #[wasm_bindgen(js_name = nextEvents)]
    pub fn next_events(reader: &web_sys::ReadableStreamDefaultReader) -> Promise;

    /// Closes `writer` without waiting for its client to take what is queued; a failure (the
    /// client has gone) is ignored.
    #[wasm_bindgen(js_name = closeQuietly)]
    pub fn close_quietly(writer: &web_sys::WritableStreamDefaultWriter);

    /// Aborts `writer`, breaking its stream off; a failure is ignored.
    #[wasm_bindgen(js_name = abortQuietly)]
    pub fn abort_quietly(writer: &web_sys::WritableStreamDefaultWriter);

    /// What [`call`]'s promise resolves to.
    pub type Called;
    #[wasm_bindgen(method, getter)]
    pub fn response(this: &Called) -> Response;
    #[wasm_bindgen(method, getter)]
    fn meta(this: &Called) -> String;
    #[wasm_bindgen(method, getter)]
    pub fn whole(this: &Called) -> Option<Uint8Array>;
}

/// `headers` as the `name\0value` lines [`call`] and [`respond`] take; an error when a name or
/// value holds a line break, a carriage return or a NUL (which no header may hold): the error
/// names it.
pub fn header_lines<'h, V: AsRef<str> + 'h>(headers: impl IntoIterator<Item = (&'h str, V)>) -> Result<String, String> {
    let mut lines = String::new();
    for (name, value) in headers {
        let value = value.as_ref();
        if name.contains(['\n', '\r', '\0']) || value.contains(['\n', '\r', '\0']) {
            return Err(name.to_owned());
        }
        if !lines.is_empty() {
            lines.push('\n');
        }
        lines.push_str(name);
        lines.push('\0');
        lines.push_str(value);
    }
    Ok(lines)
}

/// The incoming request's method, URL and the headers `HEAD_NAMES` in `plumbing.js` lists, in
/// its order (`None` where absent), read in one call.
pub struct IncomingHead {
    pub method: String,
    pub url: String,
    pub headers: [Option<String>; 14],
}

impl IncomingHead {
    pub fn of(request: &Request) -> Self {
        let text = head(request);
        let mut lines = text.split('\n');
        let method = lines.next().unwrap_or_default().to_owned();
        let url = lines.next().unwrap_or_default().to_owned();
        let headers = std::array::from_fn(|_| present(lines.next()));
        IncomingHead { method, url, headers }
    }
}

/// `line`, unless it stands for an absent header.
fn present(line: Option<&str>) -> Option<String> {
    line.filter(|value| *value != "\0").map(str::to_owned)
}

impl Called {
    /// The answer's head (its body still to come).
    pub fn head(&self) -> UpstreamReply<()> {
        let text = self.meta();
        let mut lines = text.split('\n');
        let status = lines.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut next = || present(lines.next());
        let (retry_after, retry_after_ms, content_type, location) = (next(), next(), next(), next());
        let length = lines.next().and_then(|l| l.parse().ok());
        UpstreamReply { status, retry_after, retry_after_ms, content_type, location, length, body: () }
    }
}

/// Calls `url` within `limit_ms`, reading the body of an answer of at most `whole_bytes` too;
/// `header_lines` holds `name\0value` lines. Rejects with a value [`timed_out`] recognises when the
/// time is up.
pub fn call(
    url: &str,
    method: &str,
    header_lines: &str,
    body: Option<Uint8Array>,
    signal: Option<AbortSignal>,
    limit_ms: u64,
    whole_bytes: u64,
) -> Result<Promise, JsValue> {
    call_js(url, method, header_lines, body, signal, limit_ms as f64, whole_bytes as f64)
}

/// What [`call`]'s promise rejects with when the time is up (`TIMED_OUT` in `plumbing.js`).
const TIMED_OUT: &str = "imagegate: the call timed out";

/// Whether `error` is [`call`]'s rejection for a call whose time was up.
pub fn timed_out(error: &JsValue) -> bool {
    error.as_string().is_some_and(|text| text == TIMED_OUT)
}
