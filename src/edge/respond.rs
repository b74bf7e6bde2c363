//! Turning the core's [`Reply`] into the runtime's response.

use wasm_bindgen::JsValue;
use web_sys::{Headers, Response, ResponseInit};
use worker::Context;

use super::fetch::{Delivery, WorkerBody};
use crate::http::{Reply, ReplyBody};

/// The runtime response for `reply`. A relayed answer goes out as the runtime received it: the
/// same buffer for a small answer, otherwise a native pipe from the upstream stream.
pub fn into_response(reply: Reply<WorkerBody>, ctx: &Context) -> Result<Response, JsValue> {
    let headers = Headers::new()?;
    for (name, value) in &reply.headers {
        headers.set(name, value)?;
    }
    let init = ResponseInit::new();
    init.set_status(reply.status);
    init.set_headers(&headers);
    let mut bytes = match reply.body {
        ReplyBody::Empty => return Response::new_with_opt_str_and_init(None, &init),
        ReplyBody::Bytes(bytes) => bytes,
        ReplyBody::Relay(body) => match body.into_delivery() {
            Delivery::Buffer(buffer) => return Response::new_with_opt_buffer_source_and_init(Some(&buffer), &init),
            Delivery::Stream(stream) => return Response::new_with_opt_readable_stream_and_init(Some(&stream), &init),
            Delivery::Piped { readable, pump } => {
                ctx.wait_until(pump);
                return Response::new_with_opt_readable_stream_and_init(Some(&readable), &init);
            }
            Delivery::Empty => return Response::new_with_opt_str_and_init(None, &init),
        },
    };
    Response::new_with_opt_u8_array_and_init(Some(&mut bytes), &init)
}
