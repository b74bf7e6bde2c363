//! Each managed key's exact counters in a Durable Object of its own (binding [`BINDING`], one
//! object per key hash): the one place where its rate, its generations in flight and its spend
//! are decided ([`Counters`]). The object keeps them in memory, where each call is decided
//! whole with no await in between, and writes them to its storage after every change, from
//! where a restarted object reads them back.
//!
//! `POST /admit` (an [`Ask`]) answers `{"admitted":true}` or the [`Refusal`]; `POST /settle`
//! (`{ticket, cost, now_ms}`) ends a hold and answers the [`Settled`]; `POST /usage` answers
//! the [`Usage`]. The object's own clock decides (the callers' `now_ms` is not used).

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, State};

use crate::limits::{Ask, Counters, Refusal, Settled, Usage};
use crate::state::{Limiter, Pending};

/// The Durable Object namespace's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_LIMITS";
/// Where the counters are kept in the object's storage.
const COUNTERS: &str = "counters";

#[derive(Serialize, Deserialize)]
struct Settle {
    ticket: String,
    cost: Option<u64>,
    now_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Now {
    now_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Admitted {
    admitted: bool,
    #[serde(default)]
    refusal: Option<Refusal>,
}

/// One key's counters.
#[durable_object]
pub struct KeyCounters {
    state: State,
    counters: RefCell<Option<Counters>>,
}

impl KeyCounters {
    /// Reads the counters from storage the first time they are needed.
    async fn load(&self) -> Result<()> {
        if self.counters.borrow().is_none() {
            let kept: Option<String> = self.state.storage().get(COUNTERS).await?;
            let counters = kept.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default();
            // Another call may have loaded them while this one read: the first load stands.
            self.counters.borrow_mut().get_or_insert(counters);
        }
        Ok(())
    }

    /// Decides with the counters (no await while they are borrowed), then keeps them; when
    /// they cannot be kept, the decision is taken back (its caller is told it failed).
    async fn change<T>(&self, decide: impl FnOnce(&mut Counters) -> T) -> Result<T> {
        self.load().await?;
        let (decided, text, before) = {
            let mut counters = self.counters.borrow_mut();
            let counters = counters.as_mut().expect("loaded");
            let before = counters.clone();
            let decided = decide(counters);
            (decided, serde_json::to_string(&*counters).expect("counters serialise"), before)
        };
        if let Err(error) = self.state.storage().put(COUNTERS, text).await {
            *self.counters.borrow_mut() = Some(before);
            return Err(error);
        }
        Ok(decided)
    }
}

impl DurableObject for KeyCounters {
    fn new(state: State, _env: Env) -> Self {
        KeyCounters { state, counters: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let text = req.text().await?;
        let bad = |e: serde_json::Error| worker::Error::RustError(e.to_string());
        match req.path().as_str() {
            "/admit" => {
                let mut ask: Ask = serde_json::from_str(&text).map_err(bad)?;
                // The object's clock decides, so that every isolate's requests are on one time line.
                ask.now_ms = super::runtime::now_ms();
                let decided = self.change(|counters| counters.admit(&ask)).await?;
                Response::from_json(&Admitted { admitted: decided.is_ok(), refusal: decided.err() })
            }
            "/settle" => {
                let settle: Settle = serde_json::from_str(&text).map_err(bad)?;
                let now_ms = super::runtime::now_ms();
                let settled = self.change(|counters| counters.settle(&settle.ticket, settle.cost, now_ms)).await?;
                Response::from_json(&settled)
            }
            "/usage" => {
                let _asked: Now = serde_json::from_str(&text).map_err(bad)?;
                let now_ms = super::runtime::now_ms();
                // Holds past their time are spent as they are read.
                let usage = self.change(|counters| counters.usage(now_ms)).await?;
                Response::from_json(&usage)
            }
            _ => Response::error("unknown", 404),
        }
    }
}

/// The counters of every key, as one request reaches them.
pub struct EdgeLimiter<'e> {
    env: &'e Env,
}

impl<'e> EdgeLimiter<'e> {
    pub fn new(env: &'e Env) -> Self {
        EdgeLimiter { env }
    }

    /// Sends `body` to `path` of the object of `key`, and reads its JSON answer.
    async fn call<T: for<'de> Deserialize<'de>>(&self, key: &str, path: &str, body: String) -> std::result::Result<T, String> {
        let failed = |e: worker::Error| format!("the key's counters failed: {e}");
        let namespace = self.env.durable_object(BINDING).map_err(failed)?;
        let stub = namespace.id_from_name(key).and_then(|id| id.get_stub()).map_err(failed)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(JsValue::from_str(&body)));
        let request = Request::new_with_init(&format!("https://counters{path}"), &init).map_err(failed)?;
        let mut answer = stub.fetch_with_request(request).await.map_err(failed)?;
        if answer.status_code() != 200 {
            return Err(format!("the key's counters answered {}", answer.status_code()));
        }
        answer.json().await.map_err(failed)
    }
}

impl Limiter for EdgeLimiter<'_> {
    fn available(&self) -> bool {
        self.env.durable_object(BINDING).is_ok()
    }

    fn admit<'a>(&'a self, key: &'a str, ask: &'a Ask) -> Pending<'a, std::result::Result<std::result::Result<(), Refusal>, String>> {
        Box::pin(async move {
            let answer: Admitted = self.call(key, "/admit", serde_json::to_string(ask).expect("an ask serialises")).await?;
            match (answer.admitted, answer.refusal) {
                (true, _) => Ok(Ok(())),
                (false, Some(refusal)) => Ok(Err(refusal)),
                (false, None) => Err("the key's counters refused without a reason".to_owned()),
            }
        })
    }

    fn settle<'a>(&'a self, key: &'a str, ticket: &'a str, cost: Option<u64>, now_ms: u64) -> Pending<'a, std::result::Result<Settled, String>> {
        Box::pin(async move {
            let body = serde_json::to_string(&Settle { ticket: ticket.to_owned(), cost, now_ms }).expect("a settlement serialises");
            self.call(key, "/settle", body).await
        })
    }

    fn usage<'a>(&'a self, key: &'a str, now_ms: u64) -> Pending<'a, std::result::Result<Usage, String>> {
        Box::pin(async move { self.call(key, "/usage", serde_json::to_string(&Now { now_ms }).expect("serialises")).await })
    }
}
