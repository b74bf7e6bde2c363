//! The runner on Durable Objects: one `ActionRun` per action (binding [`BINDING`]), the one place
//! that runs its job, apart from the client that asked.
//!
//! `POST /start` (the job as JSON) keeps the job, writes its queued action, and sets an alarm for
//! now; it answers once all three are kept, so a 202 is only sent for a job that will run. The
//! alarm runs the job to its end (alarms may take 15 minutes, the longest deadline) with the
//! upstream journaled in the object's storage, then stores the images and writes the action. An
//! alarm is delivered at least once: a rerun finds the job done, or finds the paid calls its
//! interrupted run noted and ends the action without calling again ([`crate::jobs`]).
//! `POST /cancel` ends an unfinished action (`cancelled`) and stops its run.
//!
//! A synchronous generation is run the same way (`POST /start` with `x-wait`, which writes no
//! queued action), and its request then waits with `POST /wait` (header `x-until`, its deadline):
//! the answer comes back as the body, with `x-run-status` and `x-run-headers` (JSON). If the
//! client hangs up, the wait ends and the run does not.

use std::cell::{Cell, OnceCell, RefCell};
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{select, AbortHandle, Abortable, Either};
use futures_util::pin_mut;
use wasm_bindgen::JsValue;
use worker::{
    console_log, console_warn, durable_object, Delay, DurableObject, Env, Headers, Method, ObjectNamespace, Request, RequestInit, Response, Result, State,
    Storage,
};

use super::{cache, coalescer, files, history, runtime, settings};
use crate::cache::entry::{FlightEnd, Store};
use crate::clock::Clock;
use crate::http::ReplyBody;
use crate::jobs::{self, Job, Journal, RunFailure, RunReply, Runner};
use crate::pipeline::Gateway;
use crate::state::{Action, Limiter, Pending};

/// The Durable Object namespace's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_RUNNER";

const JOB: &str = "job";
/// The action the run ended as, kept before its callback is sent (a rerun only sends it).
const ENDED: &str = "ended";
const DONE: &str = "done";
const PAID_CALLS: &str = "paid_calls";
/// How long past its deadline a waiting request waits for its run (the run's own answer ends it
/// at the deadline; this is for the writes after).
const WAIT_MARGIN_MS: u64 = 5_000;

/// The runner of one request: the namespace is looked up once, when first needed.
pub struct EdgeRunner<'e> {
    env: &'e Env,
    namespace: OnceCell<Option<ObjectNamespace>>,
}

impl<'e> EdgeRunner<'e> {
    pub fn new(env: &'e Env) -> Self {
        EdgeRunner { env, namespace: OnceCell::new() }
    }

    fn namespace(&self) -> Option<&ObjectNamespace> {
        self.namespace.get_or_init(|| self.env.durable_object(BINDING).ok()).as_ref()
    }

    /// A request to the object of `action_id`.
    async fn send(&self, action_id: &str, path: &str, body: Option<String>) -> std::result::Result<Response, String> {
        self.send_with(action_id, path, body, Headers::new()).await.map_err(|failure| match failure {
            RunFailure::NotStarted(why) | RunFailure::Lost(why) => why,
        })
    }

    /// A request to the object of `action_id`: a failure before it was sent is `NotStarted`, one
    /// after (the object may have acted on it) is `Lost`.
    async fn send_with(&self, action_id: &str, path: &str, body: Option<String>, headers: Headers) -> std::result::Result<Response, RunFailure> {
        let not_started = |e: worker::Error| RunFailure::NotStarted(e.to_string());
        let namespace = self.namespace().ok_or_else(|| RunFailure::NotStarted("no runner binding".to_owned()))?;
        let stub = namespace.id_from_name(action_id).and_then(|id| id.get_stub()).map_err(not_started)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers);
        if let Some(body) = body {
            init.with_body(Some(JsValue::from_str(&body)));
        }
        let request = Request::new_with_init(&format!("https://run{path}"), &init).map_err(not_started)?;
        stub.fetch_with_request(request).await.map_err(|e| RunFailure::Lost(e.to_string()))
    }

    /// Starts `job` (`waited`: a request waits for its answer); any answer but 200 is a refusal.
    async fn start_job(&self, job: &Job, waited: bool) -> std::result::Result<(), RunFailure> {
        let body = serde_json::to_string(job).expect("a job serialises");
        let headers = Headers::new();
        if waited {
            let _ = headers.set("x-wait", "1");
        }
        let started = self.send_with(&job.queued.id, "/start", Some(body), headers).await?;
        match started.status_code() {
            200 => Ok(()),
            status => Err(RunFailure::NotStarted(format!("the runner answered {status}"))),
        }
    }
}

impl Runner for EdgeRunner<'_> {
    fn available(&self) -> bool {
        self.namespace().is_some()
    }

    fn start<'a>(&'a self, job: &'a Job) -> Pending<'a, std::result::Result<(), RunFailure>> {
        Box::pin(self.start_job(job, false))
    }

    fn run<'a>(&'a self, job: &'a Job) -> Pending<'a, std::result::Result<RunReply, RunFailure>> {
        Box::pin(async move {
            let id = &job.queued.id;
            self.start_job(job, true).await?;
            let until = Headers::new();
            let deadline_ms = settings::load(self.env).as_ref().as_ref().map_or(0, |s| s.config.deadline_ms);
            let _ = until.set("x-until", &(job.queued.created_at + deadline_ms + WAIT_MARGIN_MS).to_string());
            let mut answer = self.send_with(id, "/wait", None, until).await.map_err(|failure| match failure {
                RunFailure::NotStarted(why) | RunFailure::Lost(why) => RunFailure::Lost(why),
            })?;
            let header = |name: &str| answer.headers().get(name).ok().flatten();
            let status = header("x-run-status").and_then(|s| s.parse().ok()).ok_or_else(|| RunFailure::Lost("the run did not end in time".to_owned()))?;
            let headers = header("x-run-headers").and_then(|h| serde_json::from_str(&h).ok()).unwrap_or_default();
            let body = answer.bytes().await.map_err(|e| RunFailure::Lost(e.to_string()))?;
            Ok(RunReply { status, headers, body })
        })
    }

    fn cancel<'a>(&'a self, id: &'a str) -> Pending<'a, std::result::Result<Option<Action>, String>> {
        Box::pin(async move {
            let mut answer = self.send(id, "/cancel", None).await?;
            match answer.status_code() {
                200 => {
                    let text = answer.text().await.map_err(|e| e.to_string())?;
                    serde_json::from_str(&text).map(Some).map_err(|e| e.to_string())
                }
                _ => Ok(None),
            }
        })
    }
}

/// Settles the ticket of `job`'s managed key (if it was asked with one) with `cost`, for a job
/// that ends without running the pipeline to its end (cancelled, or never runnable).
async fn settle_job(env: &Env, job: &Job, cost: Option<u64>) {
    if let Some(owner) = job.head.caller_label.as_deref().filter(|owner| crate::keys::is_hash(owner)) {
        let limiter = super::limits::EdgeLimiter::new(env);
        if let Err(why) = limiter.settle(owner, &job.request_id, cost, runtime::WorkerClock.now_ms()).await {
            console_warn!("{{\"warning\":\"a key's ticket was not settled\",\"error\":{why:?}}}");
        }
    }
}

/// The journal of one job, in its object's storage.
struct StorageJournal(Storage);

impl Journal for StorageJournal {
    fn paid_calls(&self) -> Pending<'_, std::result::Result<u32, String>> {
        Box::pin(async move { self.0.get::<u32>(PAID_CALLS).await.map(Option::unwrap_or_default).map_err(|e| e.to_string()) })
    }

    fn note_paid_call(&self) -> Pending<'_, std::result::Result<(), String>> {
        Box::pin(async move {
            let calls = self.0.get::<u32>(PAID_CALLS).await.map_err(|e| e.to_string())?.unwrap_or_default();
            self.0.put(PAID_CALLS, calls + 1).await.map_err(|e| e.to_string())
        })
    }
}

/// One action's run.
#[durable_object]
pub struct ActionRun {
    state: State,
    env: Env,
    /// Stops the run in progress, if one is.
    running: RefCell<Option<AbortHandle>>,
    /// The requests waiting for the run's answer, and the answer once there is one.
    waiters: RefCell<Vec<oneshot::Sender<RunReply>>>,
    answered: RefCell<Option<RunReply>>,
    /// Whether a request will wait for the answer (kept only then, until it is taken).
    awaited: Cell<bool>,
    /// Set once the run has its answer (a cancel then comes too late) or was cancelled.
    finishing: Cell<bool>,
    cancelled: Cell<bool>,
}

impl DurableObject for ActionRun {
    fn new(state: State, env: Env) -> Self {
        ActionRun {
            state,
            env,
            running: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            answered: RefCell::new(None),
            awaited: Cell::new(false),
            finishing: Cell::new(false),
            cancelled: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        match req.path().as_str() {
            "/start" => {
                let waited = req.headers().get("x-wait").ok().flatten().is_some();
                self.awaited.set(waited);
                let text = req.text().await?;
                let job: Job = serde_json::from_str(&text).map_err(|e| worker::Error::RustError(e.to_string()))?;
                if storage.get::<String>(JOB).await?.is_none() {
                    storage.put(JOB, &text).await?;
                    // The alarm first: a job kept is a job that runs.
                    storage.set_alarm(0).await?;
                    if !waited {
                        // Polled from now on: the queued action is there before the 202.
                        history::record(self.env.clone(), job.queued.clone()).await;
                    }
                }
                Response::ok("started")
            }
            "/wait" => {
                let until_ms: u64 = req.headers().get("x-until").ok().flatten().and_then(|v| v.parse().ok()).unwrap_or(0);
                let answered = self.answered.borrow_mut().take();
                let reply = match answered {
                    Some(reply) => Some(reply),
                    None => {
                        let (tell, told) = oneshot::channel();
                        self.waiters.borrow_mut().push(tell);
                        let timer = Delay::from(Duration::from_millis(until_ms.saturating_sub(super::runtime::now_ms())));
                        pin_mut!(timer);
                        match select(told, timer).await {
                            Either::Left((Ok(reply), _)) => Some(reply),
                            _ => None,
                        }
                    }
                };
                let Some(reply) = reply else { return Response::ok("pending") };
                let headers = Headers::new();
                headers.set("x-run-status", &reply.status.to_string())?;
                headers.set("x-run-headers", &serde_json::to_string(&reply.headers).expect("headers serialise"))?;
                Ok(Response::from_bytes(reply.body)?.with_headers(headers))
            }
            "/cancel" => {
                let Some(job) = kept::<Job>(&storage, JOB).await? else { return Response::error("no job", 404) };
                let done = storage.get::<bool>(DONE).await?.unwrap_or(false) || storage.get::<String>(ENDED).await?.is_some();
                // Decided with no await in between: a run that has its answer is not cancelled,
                // and a cancelled run never records or calls again (the alarm checks `cancelled`).
                if done || self.finishing.get() || self.cancelled.get() {
                    return Response::error("finished", 409);
                }
                self.cancelled.set(true);
                let running = self.running.borrow_mut().take();
                let was_running = running.is_some();
                if let Some(running) = running {
                    running.abort();
                }
                let ended = jobs::cancelled(&job.queued, runtime::WorkerClock.now_ms());
                self.answer_with(RunReply {
                    status: 409,
                    headers: vec![("content-type".to_owned(), "application/json".to_owned()), ("x-should-retry".to_owned(), "false".to_owned())],
                    body: br#"{"error":{"message":"The generation was cancelled.","type":"invalid_request_error","param":null,"code":"cancelled"}}"#.to_vec(),
                });
                storage.put(ENDED, serde_json::to_string(&ended).expect("an action serialises")).await?;
                storage.delete_alarm().await?;
                history::write(&self.env, &ended).await.map_err(worker::Error::RustError)?;
                if let Some(callback) = &job.callback {
                    // Told after the answer to the cancel, as any ending is.
                    let request = jobs::callback_request(callback, &ended, runtime::WorkerClock.now_ms() / 1000);
                    self.state.wait_until(async move {
                        if let Err(why) = jobs::deliver(&super::fetch::IN_OBJECT, &runtime::WorkerClock, request).await {
                            console_warn!("{{\"warning\":\"the callback of a cancelled action failed\",\"error\":{why:?}}}");
                        }
                    });
                }
                // A run in progress settles its own key's ticket as it stops; a job that never ran
                // is settled here (at its hold if an earlier run's paid call had started).
                if !was_running {
                    let cost = match storage.get::<u32>(PAID_CALLS).await {
                        Ok(None | Some(0)) => Some(0),
                        _ => None,
                    };
                    settle_job(&self.env, &job, cost).await;
                }
                forget(&storage).await?;
                Response::ok(serde_json::to_string(&ended).expect("an action serialises"))
            }
            _ => Response::error("unknown", 404),
        }
    }

    /// Runs the job, or finishes what an earlier run of it left: the action written, the
    /// callback sent, the job forgotten. A failed write throws, so that the runtime runs the
    /// alarm again (which then only writes and tells).
    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let Some(job) = kept::<Job>(&storage, JOB).await? else { return Response::ok("no job") };
        if storage.get::<bool>(DONE).await?.unwrap_or(false) || self.cancelled.get() {
            return Response::ok("done");
        }
        let clock = runtime::WorkerClock;
        let settings = settings::load(&self.env);
        let Ok(settings) = &*settings else {
            // Never runnable as deployed: the action ends now rather than waiting forever.
            let ended = jobs::ended_in_error(&job.queued, 500, "The gateway's configuration is invalid; the generation was not started.", clock.now_ms());
            storage.put(ENDED, serde_json::to_string(&ended).expect("an action serialises")).await?;
            history::write(&self.env, &ended).await.map_err(worker::Error::RustError)?;
            settle_job(&self.env, &job, Some(0)).await;
            forget(&storage).await?;
            return Response::ok("invalid configuration");
        };
        let journal = StorageJournal(self.state.storage());
        let upstream = super::fetch::WorkerUpstream { journal: Some(&journal), aborts: true };
        let secrets = runtime::EnvSecrets(&self.env);
        let (cache, history, files) = (cache::EdgeCache::new(&self.env), history::D1History::new(&self.env), files::R2Files::new(&self.env));
        let coalescer = coalescer::EdgeCoalescer::new(&self.env);
        let (key_store, limiter) = (super::keys::D1Keys::new(&self.env), super::limits::EdgeLimiter::new(&self.env));
        let gateway = Gateway::new(&settings.config, &settings.keys, &upstream, &secrets, &clock, &runtime::WorkerRandom)
            .with_state(&cache, &history)
            .with_managed_keys(&key_store, &limiter)
            .with_files(&files)
            .with_coalescer(&coalescer);
        let ended = match kept::<Action>(&storage, ENDED).await? {
            Some(ended) => ended,
            None => {
                if self.cancelled.get() {
                    return Response::ok("cancelled");
                }
                // Cancellable from here on, before the first await.
                let (stop, registration) = AbortHandle::new_pair();
                *self.running.borrow_mut() = Some(stop);
                let started = Action { status: "in-progress".to_owned(), started_at: Some(clock.now_ms()), ..job.queued.clone() };
                history::record(self.env.clone(), started).await;
                let ran = Abortable::new(gateway.run(&job, &journal), registration).await;
                self.running.borrow_mut().take();
                // Cancelled: the cancel wrote the action and forgot the job. A managed key is
                // charged what its generation held if a paid call had started, else nothing.
                let Ok(mut handled) = ran else {
                    let cost = match journal.paid_calls().await {
                        Ok(0) => Some(0),
                        _ => None,
                    };
                    settle_job(&self.env, &job, cost).await;
                    return Response::ok("cancelled");
                };
                self.finishing.set(true);
                if let Some(log) = &handled.log {
                    console_log!("{}", log.to_line());
                }
                let ended = handled.action.take().expect("a run always ends an action");
                // Kept first: from here a rerun only writes and tells, never runs again.
                storage.put(ENDED, serde_json::to_string(&ended).expect("an action serialises")).await?;
                self.share(&mut handled.reply, handled.store.take(), handled.flight.take()).await;
                files::store(&self.env, std::mem::take(&mut handled.files)).await;
                ended
            }
        };
        history::write(&self.env, &ended).await.map_err(worker::Error::RustError)?;
        if let Some(callback) = &job.callback {
            let told = gateway.with_urls(&job.head, ended.clone());
            let request = jobs::callback_request(callback, &told, clock.now_ms() / 1000);
            match jobs::deliver(&super::fetch::IN_OBJECT, &clock, request).await {
                Ok(status) => console_log!("{{\"callback\":{{\"action\":\"{}\",\"status\":{status}}}}}", ended.id),
                Err(why) => console_warn!("{{\"warning\":\"the callback of the action {} failed\",\"error\":{why:?}}}", ended.id),
            }
        }
        forget(&storage).await?;
        Response::ok("ran")
    }
}

/// Forgets a finished job: its request (with the prompt and any callback secret), journal and
/// action go; a tombstone stays, so that a late alarm or cancel finds it done.
async fn forget(storage: &Storage) -> Result<()> {
    storage.delete_all().await?;
    storage.put(DONE, true).await
}

/// A value kept in `storage` as JSON under `key` (JSON text rather than structured values: the
/// types' serde code is compiled once, for JSON).
async fn kept<T: serde::de::DeserializeOwned>(storage: &Storage, key: &str) -> Result<Option<T>> {
    let Some(text) = storage.get::<String>(key).await? else { return Ok(None) };
    serde_json::from_str(&text).map(Some).map_err(|e| worker::Error::RustError(format!("the kept {key} does not parse: {e}")))
}

impl ActionRun {
    /// Shares the run's answer: with the requests waiting for it, with the response cache and
    /// with identical requests waiting on its coalescing flight (as a request served in place
    /// does after its answer).
    async fn share(&self, reply: &mut crate::http::Reply<super::fetch::WorkerBody>, store: Option<Store>, flight: Option<FlightEnd>) {
        let body = match std::mem::replace(&mut reply.body, ReplyBody::Empty) {
            ReplyBody::Bytes(bytes) => bytes,
            _ => Vec::new(),
        };
        if store.is_some() || flight.is_some() {
            let buffer = js_sys::Uint8Array::from(&body[..]);
            if let Some(flight) = flight {
                coalescer::end(&self.env, flight, Some(&buffer)).await;
            }
            if let Some(store) = store {
                cache::store(&self.env, store, &buffer).await;
            }
        }
        let headers = reply.headers.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
        self.answer_with(RunReply { status: reply.status, headers, body });
    }

    /// Gives `answer` to the requests waiting for it, or keeps it for one that asks later.
    fn answer_with(&self, answer: RunReply) {
        let waiters: Vec<_> = self.waiters.borrow_mut().drain(..).collect();
        if waiters.is_empty() {
            if self.awaited.get() {
                *self.answered.borrow_mut() = Some(answer);
            }
            return;
        }
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
        }
    }
}
