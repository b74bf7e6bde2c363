//! Turning the core's [`Reply`] into the runtime's response.

use js_sys::Uint8Array;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, WritableStream};
use worker::{Context, Headers, Response, Result};

use super::runtime::WorkerBody;
use crate::http::{Reply, ReplyBody};

#[wasm_bindgen]
extern "C" {
    /// workerd's byte pipe: what is written to `writable` is read from `readable`, natively.
    type IdentityTransformStream;
    #[wasm_bindgen(constructor)]
    fn new() -> IdentityTransformStream;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &IdentityTransformStream) -> ReadableStream;
    #[wasm_bindgen(method, getter)]
    fn writable(this: &IdentityTransformStream) -> WritableStream;
}

/// The runtime response for `reply`. A relayed answer streams: the bytes already read go first,
/// then the runtime pipes the unread rest of the upstream body straight to the client.
pub fn into_response(reply: Reply<WorkerBody>, ctx: &Context) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &reply.headers {
        headers.set(name, value)?;
    }
    let builder = Response::builder().with_status(reply.status).with_headers(headers);
    Ok(match reply.body {
        ReplyBody::Empty => builder.empty(),
        ReplyBody::Bytes(bytes) => builder.fixed(bytes),
        ReplyBody::Relay { prefix, rest } => match rest.into_rest() {
            None => builder.fixed(prefix),
            Some(rest) => builder.stream(prepend(prefix, rest, ctx)),
        },
    })
}

/// A stream of `prefix` followed by everything left in `rest`.
fn prepend(prefix: Vec<u8>, rest: ReadableStream, ctx: &Context) -> ReadableStream {
    let pipe = IdentityTransformStream::new();
    let readable = pipe.readable();
    let writable = pipe.writable();
    ctx.wait_until(async move {
        let Ok(writer) = writable.get_writer() else { return };
        let wrote = JsFuture::from(writer.write_with_chunk(&Uint8Array::from(prefix.as_slice()))).await;
        writer.release_lock();
        // Errors here mean the client went away or the upstream broke off; the runtime ends the
        // client's stream accordingly and there is nobody left to answer.
        if wrote.is_ok() {
            let _ = JsFuture::from(rest.pipe_to(&writable)).await;
        }
    });
    readable
}
