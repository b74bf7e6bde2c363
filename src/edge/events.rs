//! A relayed image stream on its way to the client: the response's body is the readable side
//! of a native pipe, and the core's pump ([`EventRelay::pump`]) writes whole events to its
//! writable side, each copied out of wasm memory once. The pump runs after the response has
//! been returned (`waitUntil`), then the request is finished: its log line, its images, its
//! action.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, WritableStreamDefaultWriter};
use worker::{Delay, Env};

use super::fetch::{IdentityTransformStream, WorkerBody, PLAIN};
use super::runtime::{EnvSecrets, WorkerClock, WorkerRandom};
use super::settings::Settings;
use super::{files, keys, limits, plumbing};
use crate::event_relay::{EventRelay, EventSink, StreamEnd};
use crate::pipeline::{Gateway, Unfinished};

/// The client's side of a relayed stream.
pub struct ClientEvents {
    writer: WritableStreamDefaultWriter,
}

/// A pipe for a relayed stream: the response body, and where its events are written.
pub fn pipe() -> Result<(ReadableStream, ClientEvents), JsValue> {
    let pipe = IdentityTransformStream::new();
    let writer = pipe.writable().get_writer()?;
    Ok((pipe.readable(), ClientEvents { writer }))
}

impl EventSink for ClientEvents {
    /// Resolves once the runtime has taken the events (it holds back a writer whose client
    /// reads slowly), so at most one event waits here, and at most `limit_ms`.
    async fn send(&mut self, events: Vec<u8>, limit_ms: u64) -> bool {
        let chunk = Uint8Array::from(&events[..]);
        drop(events);
        let written = JsFuture::from(self.writer.write_with_chunk(&chunk));
        let timer = Delay::from(Duration::from_millis(limit_ms));
        pin_mut!(written, timer);
        match select(written, timer).await {
            Either::Left((written, _)) => written.is_ok(),
            Either::Right(_) => {
                // Too slow for the deadline: the stream is broken off (the client sees an error,
                // not an end), and the event still queued is dropped with it.
                plumbing::abort_quietly(&self.writer);
                false
            }
        }
    }
}

/// Relays `relay` to `client`, ends the response, then finishes the request: its log line,
/// its kept images, then its action.
pub async fn relay_and_finish(env: Env, settings: &Settings, relay: EventRelay<WorkerBody>, mut client: ClientEvents, unfinished: Unfinished) {
    let end = relay.pump(&mut client, &WorkerClock).await;
    // Not waited for: a client that reads slowly must not hold up the request's end.
    plumbing::close_quietly(&client.writer);
    finish(env, settings, unfinished, end).await;
}

/// Finishes a request whose relayed stream has ended as `end` says.
pub async fn finish(env: Env, settings: &Settings, unfinished: Unfinished, end: StreamEnd) {
    let secrets = EnvSecrets(&env);
    let (key_store, limiter, file_store) = (keys::D1Keys::new(&env), limits::EdgeLimiter::new(&env), files::R2Files::new(&env));
    let gateway = Gateway::new(&settings.config, &settings.keys, &PLAIN, &secrets, &WorkerClock, &WorkerRandom)
        .with_managed_keys(&key_store, &limiter)
        .with_files(&file_store);
    let finished = gateway.finish_stream(unfinished, end).await;
    web_sys::console::log_1(&JsValue::from_str(&finished.log.to_line()));
    if let Some(action) = finished.action {
        super::record_with_files(env, finished.files, action).await;
    }
}
