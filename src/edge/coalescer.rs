//! Coalescing identical cache-enabled requests in a Durable Object: one object per cache key
//! (binding [`BINDING`]), the one place that knows whether that key's generation is running.
//!
//! `POST /claim` (header `x-until`: the claimant's deadline, in Unix milliseconds) answers
//! `x-claim: lead` when nothing runs for the key, and records a flight until that deadline;
//! otherwise it holds the claim open until the flight ends and answers with its outcome
//! (`entry` with the stored entry, `failed` with the leader's status and error body, or
//! `generate` when the leader had nothing to share or the wait outlived the claimant's deadline).
//! `POST /end` (header `x-end`: `stored`, `failed` with `x-status`, or `released`) ends the flight.
//! A flight whose leader never reports ends at its deadline: the next claim leads.

use std::cell::RefCell;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use futures_util::pin_mut;
use wasm_bindgen::JsValue;
use worker::{durable_object, Delay, DurableObject, Env, Headers, Method, Request, RequestInit, Response, Result, State};

use crate::cache::entry::FlightEnd;
use crate::state::{Claim, Coalescer, Pending};

/// The Durable Object namespace's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_COALESCER";

/// How a flight ended, as a waiter receives it.
#[derive(Clone)]
enum Ending {
    Entry(Vec<u8>),
    Failed(u16, Vec<u8>),
    Generate,
}

struct Flight {
    until_ms: u64,
    waiters: Vec<oneshot::Sender<Ending>>,
}

/// One cache key's flight.
#[durable_object]
pub struct CacheFlight {
    flight: RefCell<Option<Flight>>,
}

impl DurableObject for CacheFlight {
    fn new(_state: State, _env: Env) -> Self {
        CacheFlight { flight: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let header = |req: &Request, name: &str| req.headers().get(name).ok().flatten();
        match req.path().as_str() {
            "/claim" => {
                let until_ms: u64 = header(&req, "x-until").and_then(|v| v.parse().ok()).unwrap_or(0);
                let now_ms = super::runtime::now_ms();
                let waiting = {
                    let mut flight = self.flight.borrow_mut();
                    match flight.as_mut() {
                        Some(running) if running.until_ms > now_ms => {
                            let (tell, told) = oneshot::channel();
                            running.waiters.push(tell);
                            Some(told)
                        }
                        _ => {
                            *flight = Some(Flight { until_ms, waiters: Vec::new() });
                            None
                        }
                    }
                };
                let Some(told) = waiting else { return answer("lead", None, Vec::new()) };
                let timer = Delay::from(Duration::from_millis(until_ms.saturating_sub(now_ms)));
                pin_mut!(timer);
                match select(told, timer).await {
                    Either::Left((Ok(Ending::Entry(entry)), _)) => answer("entry", None, entry),
                    Either::Left((Ok(Ending::Failed(status, body)), _)) => answer("failed", Some(status), body),
                    _ => answer("generate", None, Vec::new()),
                }
            }
            "/end" => {
                let body = req.bytes().await.unwrap_or_default();
                let ending = match header(&req, "x-end").as_deref() {
                    Some("stored") => Ending::Entry(body),
                    Some("failed") => Ending::Failed(header(&req, "x-status").and_then(|s| s.parse().ok()).unwrap_or(502), body),
                    _ => Ending::Generate,
                };
                if let Some(flight) = self.flight.borrow_mut().take() {
                    for waiter in flight.waiters {
                        let _ = waiter.send(ending.clone());
                    }
                }
                answer("ended", None, Vec::new())
            }
            _ => Response::error("unknown", 404),
        }
    }
}

fn answer(claim: &str, status: Option<u16>, body: Vec<u8>) -> Result<Response> {
    let headers = Headers::new();
    headers.set("x-claim", claim)?;
    if let Some(status) = status {
        headers.set("x-status", &status.to_string())?;
    }
    Ok(Response::from_bytes(body)?.with_headers(headers))
}

/// A request to the flight of `key`.
async fn send(env: &Env, key: &str, path: &str, headers: Headers, body: Option<&js_sys::Uint8Array>) -> Result<Response> {
    let stub = env.durable_object(BINDING)?.id_from_name(key)?.get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers);
    if let Some(body) = body {
        init.with_body(Some(JsValue::from(body.clone())));
    }
    stub.fetch_with_request(Request::new_with_init(&format!("https://flight{path}"), &init)?).await
}

/// The coalescer of one request.
pub struct EdgeCoalescer<'e> {
    env: &'e Env,
}

impl<'e> EdgeCoalescer<'e> {
    pub fn new(env: &'e Env) -> Self {
        EdgeCoalescer { env }
    }
}

impl Coalescer for EdgeCoalescer<'_> {
    fn claim<'a>(&'a self, key: &'a str, until_ms: u64) -> Pending<'a, Claim> {
        Box::pin(async move {
            let headers = Headers::new();
            if headers.set("x-until", &until_ms.to_string()).is_err() {
                return Claim::Unavailable;
            }
            let Ok(mut answer) = send(self.env, key, "/claim", headers, None).await else { return Claim::Unavailable };
            let claim = answer.headers().get("x-claim").ok().flatten();
            match claim.as_deref() {
                Some("lead") => Claim::Lead,
                Some("entry") => answer.bytes().await.map_or(Claim::Unavailable, Claim::Answer),
                Some("failed") => {
                    let status = answer.headers().get("x-status").ok().flatten().and_then(|s| s.parse().ok()).unwrap_or(502);
                    answer.bytes().await.map_or(Claim::Unavailable, |body| Claim::Failed { status, body })
                }
                _ => Claim::Unavailable,
            }
        })
    }
}

/// Ends the flight the request led, after the answer has gone (`waitUntil`); `entry` is what was
/// stored, for the waiters.
pub async fn end(env: &Env, flight: FlightEnd, answer: Option<&js_sys::Uint8Array>) {
    let headers = Headers::new();
    let failed;
    let (key, end, body) = match &flight {
        FlightEnd::Stored { key } if answer.is_some() => (key, "stored", answer),
        FlightEnd::Failed { key, status, body } => {
            let _ = headers.set("x-status", &status.to_string());
            failed = js_sys::Uint8Array::from(&body[..]);
            (key, "failed", Some(&failed))
        }
        FlightEnd::Stored { key } | FlightEnd::Released { key } => (key, "released", None),
    };
    let _ = headers.set("x-end", end);
    let _ = send(env, key, "/end", headers, body).await;
}
