//! Turning the core's [`Reply`] into the runtime's response.

use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use web_sys::{Headers, ReadableStream, Response, ResponseInit};
use worker::Context;

use super::fetch::{Delivery, WorkerBody};
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
    let headers = Headers::new()?;
    for (name, value) in &reply.headers {
        headers.set(name, value)?;
    }
    let init = ResponseInit::new();
    init.set_status(reply.status);
    init.set_headers(&headers);
    let response = match reply.body {
        ReplyBody::Empty => Response::new_with_opt_str_and_init(None, &init),
        ReplyBody::Stored(_) => Response::new_with_opt_readable_stream_and_init(stored.as_ref(), &init),
        ReplyBody::Bytes(bytes) if keep_body => {
            let buffer = Uint8Array::from(&bytes[..]);
            drop(bytes);
            return Ok((Response::new_with_opt_buffer_source_and_init(Some(&buffer), &init)?, Some(buffer)));
        }
        ReplyBody::Bytes(mut bytes) => Response::new_with_opt_u8_array_and_init(Some(&mut bytes), &init),
        ReplyBody::Relay(body) => match body.into_delivery() {
            Delivery::Buffer(buffer) => Response::new_with_opt_buffer_source_and_init(Some(&buffer), &init),
            Delivery::Stream(stream) => Response::new_with_opt_readable_stream_and_init(Some(&stream), &init),
            Delivery::Piped { readable, pump } => {
                ctx.wait_until(pump);
                Response::new_with_opt_readable_stream_and_init(Some(&readable), &init)
            }
            Delivery::Empty => Response::new_with_opt_str_and_init(None, &init),
        },
    };
    Ok((response?, None))
}
