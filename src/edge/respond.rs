//! Turning the core's [`Reply`] into the runtime's response.

use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use web_sys::{ReadableStream, Response};
use worker::Context;

use super::fetch::{Delivery, WorkerBody};
use super::plumbing;
use crate::http::{Reply, ReplyBody};

/// The runtime response for `reply`. A relayed answer goes out as the runtime received it: the
/// same buffer for a small answer, otherwise a native pipe from the upstream stream. With
/// `keep_body`, a body the gateway wrote is also returned, as the same runtime buffer the response
/// sends (to be stored after the answer without another copy). A stored file goes out as
/// `stored`, the file store's stream.
pub fn into_response(
    reply: Reply<WorkerBody>,
    ctx: &Context,
    keep_body: bool,
    stored: Option<ReadableStream>,
) -> Result<(Response, Option<Uint8Array>), JsValue> {
    let lines = lines_of(&reply)?;
    let respond = |body: &JsValue| plumbing::respond(reply.status, &lines, body);
    let response = match reply.body {
        ReplyBody::Empty => respond(&JsValue::NULL),
        ReplyBody::Stored(_) => respond(stored.as_ref().map_or(&JsValue::NULL, |stream| stream.as_ref())),
        ReplyBody::Bytes(bytes) if keep_body => {
            let buffer = Uint8Array::from(&bytes[..]);
            drop(bytes);
            return Ok((respond(&buffer)?, Some(buffer)));
        }
        // Copied out of wasm memory: the runtime keeps a body's buffer as it is given (no copy of
        // its own), and sends it after these bytes are freed.
        ReplyBody::Bytes(bytes) => respond(&Uint8Array::from(&bytes[..])),
        ReplyBody::Events(_) => return Err(JsValue::from_str("a relayed stream is answered by `streamed`")),
        ReplyBody::Relay(body) => match body.into_delivery() {
            Delivery::Buffer(buffer) => respond(&buffer),
            Delivery::Stream(stream) => respond(&stream),
            Delivery::Piped { readable, pump } => {
                ctx.wait_until(pump);
                respond(&readable)
            }
            Delivery::Empty => respond(&JsValue::NULL),
        },
    };
    Ok((response?, None))
}

/// The response for a relayed stream: `reply`'s status and headers, with `events` (the pipe the
/// stream's events are written to) as its body.
pub fn streamed(reply: Reply<WorkerBody>, events: &ReadableStream) -> Result<Response, JsValue> {
    plumbing::respond(reply.status, &lines_of(&reply)?, events)
}

/// `reply`'s headers as `plumbing::respond` takes them.
fn lines_of(reply: &Reply<WorkerBody>) -> Result<String, JsValue> {
    plumbing::header_lines(reply.headers.iter().map(|(name, value)| (*name, value)))
        .map_err(|name| JsValue::from_str(&format!("the header '{name}' is not valid")))
}
