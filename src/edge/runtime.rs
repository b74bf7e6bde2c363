//! The Workers runtime behind the core's traits: clock, randomness, secrets and the incoming
//! request. Upstream calls are in [`super::fetch`].

use futures_util::StreamExt;
use js_sys::Uint8Array;
use wasm_bindgen_futures::JsFuture;
use web_sys::Request;
use worker::{ByteStream, Env};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::clock::{Clock, Random};
use crate::error::{ErrorKind, GatewayError};
use crate::http::{base_of, path_of, query_of, IncomingBody, RequestHead};
use crate::request::body_too_large;
use crate::secret::{Secret, Secrets};

use super::plumbing::IncomingHead;

/// The time in Unix milliseconds (`Date.now()`: no `Date` object made).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The runtime's clock.
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn sleep(&self, ms: u64) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(worker::Delay::from(Duration::from_millis(ms)))
    }
}

/// Randomness from the runtime (`crypto.getRandomValues`).
pub struct WorkerRandom;

impl Random for WorkerRandom {
    fn unit(&self) -> f64 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the runtime provides randomness");
        // The top 53 bits, as a fraction of 2^53: uniform in [0, 1).
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fill(&self, bytes: &mut [u8]) {
        getrandom::fill(bytes).expect("the runtime provides randomness");
    }
}

/// A fresh request id: `req_` and 32 random hex digits.
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the runtime provides randomness");
    format!("req_{}", hex::encode(bytes))
}

/// The parts of the incoming request the core reads (in one call to the runtime), and its
/// body's declared length.
pub fn head(req: &Request) -> (RequestHead, Option<usize>) {
    let IncomingHead { method, url, headers } = IncomingHead::of(req);
    // In the order of `HEAD_NAMES` in `plumbing.js`.
    let [content_type, authorization, origin, access_control_request_headers, imagegate_config, imagegate_cache, cache_control, if_none_match, prefer, ouro_action_id, ouro_webhook_url, ouro_webhook_token, ouro_route_id, content_length] =
        headers;
    let head = RequestHead {
        method,
        path: path_of(&url).to_owned(),
        query: query_of(&url).map(str::to_owned),
        base: base_of(&url).map(str::to_owned),
        content_type,
        authorization,
        origin,
        access_control_request_headers,
        imagegate_config,
        imagegate_cache,
        cache_control,
        if_none_match,
        prefer,
        ouro_action_id,
        ouro_webhook_url,
        ouro_webhook_token,
        ouro_route_id,
        in_runner: false,
        caller_label: None,
    };
    (head, content_length.and_then(|len| len.parse().ok()))
}

/// Secrets from the environment (`.dev.vars` locally, `wrangler secret put` in production).
pub struct EnvSecrets<'e>(pub &'e Env);

impl Secrets for EnvSecrets<'_> {
    fn get(&self, name: &str) -> Option<Secret> {
        // Trimmed as the runtime trims header values, so redaction finds the key as it was sent.
        self.0.secret(name).ok().map(|value| Secret::new(value.to_string().trim()))
    }
}

/// The incoming request's body, read on demand with a size cap.
pub struct IncomingWorkerBody<'r> {
    req: &'r Request,
    /// The body's length from its `Content-Length`, when declared.
    declared_length: Option<usize>,
}

impl<'r> IncomingWorkerBody<'r> {
    pub fn new(req: &'r Request, declared_length: Option<usize>) -> Self {
        IncomingWorkerBody { req, declared_length }
    }
}

impl IncomingBody for IncomingWorkerBody<'_> {
    async fn read(self, max_bytes: usize) -> Result<Vec<u8>, GatewayError> {
        let unreadable = || GatewayError::new(ErrorKind::InvalidRequest, "The request body could not be read to the end.");
        match self.declared_length {
            Some(len) if len > max_bytes => return Err(body_too_large(max_bytes)),
            // The usual case: a known, acceptable length, read in one native call.
            Some(_) => {
                let buffer = JsFuture::from(self.req.array_buffer().map_err(|_| unreadable())?).await.map_err(|_| unreadable())?;
                return Ok(Uint8Array::new(&buffer).to_vec());
            }
            None => {}
        }
        let Some(stream) = self.req.body() else { return Ok(Vec::new()) };
        let mut chunks = ByteStream::from(stream);
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| unreadable())?;
            if body.len() + chunk.len() > max_bytes {
                return Err(body_too_large(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
