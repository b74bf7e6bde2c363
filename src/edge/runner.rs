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

use std::cell::{OnceCell, RefCell};

use futures_util::future::{AbortHandle, Abortable};
use wasm_bindgen::JsValue;
use worker::{console_log, console_warn, durable_object, DurableObject, Env, Method, ObjectNamespace, Request, RequestInit, Response, Result, State, Storage};

use super::{cache, coalescer, files, history, runtime, settings};
use crate::clock::Clock;
use crate::jobs::{self, Job, Journal, Journaled, Runner};
use crate::pipeline::Gateway;
use crate::state::{Action, Off, Pending};

/// The Durable Object namespace's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_RUNNER";

const JOB: &str = "job";
/// The action the run ended as, kept before its callback is sent (a rerun only sends it).
const ENDED: &str = "ended";
const DONE: &str = "done";
const PAID_CALLS: &str = "paid_calls";

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
        let namespace = self.namespace().ok_or("no runner binding")?;
        let stub = namespace.id_from_name(action_id).and_then(|id| id.get_stub()).map_err(|e| e.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post);
        if let Some(body) = body {
            init.with_body(Some(JsValue::from_str(&body)));
        }
        let request = Request::new_with_init(&format!("https://run{path}"), &init).map_err(|e| e.to_string())?;
        stub.fetch_with_request(request).await.map_err(|e| e.to_string())
    }
}

impl Runner for EdgeRunner<'_> {
    fn available(&self) -> bool {
        self.namespace().is_some()
    }

    fn start<'a>(&'a self, job: &'a Job) -> Pending<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            let body = serde_json::to_string(job).expect("a job serialises");
            let answer = self.send(&job.queued.id, "/start", Some(body)).await?;
            match answer.status_code() {
                200 => Ok(()),
                status => Err(format!("the runner answered {status}")),
            }
        })
    }

    fn cancel<'a>(&'a self, id: &'a str) -> Pending<'a, std::result::Result<Option<Action>, String>> {
        Box::pin(async move {
            let mut answer = self.send(id, "/cancel", None).await?;
            match answer.status_code() {
                200 => answer.json().await.map(Some).map_err(|e| e.to_string()),
                _ => Ok(None),
            }
        })
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
}

impl DurableObject for ActionRun {
    fn new(state: State, env: Env) -> Self {
        ActionRun { state, env, running: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        match req.path().as_str() {
            "/start" => {
                let job: Job = req.json().await?;
                if storage.get::<Job>(JOB).await?.is_none() {
                    storage.put(JOB, &job).await?;
                    history::record(self.env.clone(), job.queued.clone()).await;
                    storage.set_alarm(0).await?;
                }
                Response::ok("started")
            }
            "/cancel" => {
                let Some(job) = storage.get::<Job>(JOB).await? else { return Response::error("no job", 404) };
                if storage.get::<bool>(DONE).await?.unwrap_or(false) {
                    return Response::error("finished", 409);
                }
                storage.put(DONE, true).await?;
                storage.delete_alarm().await?;
                if let Some(running) = self.running.borrow_mut().take() {
                    running.abort();
                }
                let ended = jobs::cancelled(&job.queued, runtime::WorkerClock.now_ms());
                history::record(self.env.clone(), ended.clone()).await;
                Response::from_json(&ended)
            }
            _ => Response::error("unknown", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let Some(job) = storage.get::<Job>(JOB).await? else { return Response::ok("no job") };
        if storage.get::<bool>(DONE).await?.unwrap_or(false) {
            return Response::ok("done");
        }
        let Ok(settings) = &*settings::load(&self.env) else {
            console_warn!("{{\"warning\":\"the action {} cannot run: the configuration is invalid\"}}", job.queued.id);
            return Response::ok("invalid configuration");
        };
        let journal = StorageJournal(self.state.storage());
        let upstream = Journaled { inner: &super::fetch::WorkerUpstream, journal: &journal };
        let (secrets, clock) = (runtime::EnvSecrets(&self.env), runtime::WorkerClock);
        let (cache, history, files) = (cache::EdgeCache::new(&self.env), history::D1History::new(&self.env), files::R2Files::new(&self.env));
        let coalescer = coalescer::EdgeCoalescer::new(&self.env);
        let gateway = Gateway::new(&settings.config, &settings.keys, &upstream, &secrets, &clock, &runtime::WorkerRandom)
            .with_state(&cache, &history, &Off)
            .with_files(&files)
            .with_coalescer(&coalescer);
        let ended = match storage.get::<Action>(ENDED).await? {
            Some(ended) => ended,
            None => {
                let started = Action { status: "in-progress".to_owned(), started_at: Some(clock.now_ms()), ..job.queued.clone() };
                history::record(self.env.clone(), started).await;
                let (stop, registration) = AbortHandle::new_pair();
                *self.running.borrow_mut() = Some(stop);
                let ran = Abortable::new(gateway.run(&job, &journal), registration).await;
                self.running.borrow_mut().take();
                // Cancelled: the cancel wrote the action and marked the job done.
                let Ok(handled) = ran else { return Response::ok("cancelled") };
                console_log!("{}", handled.log.to_line());
                files::store(&self.env, handled.files).await;
                let ended = handled.action.expect("a run always ends an action");
                history::record(self.env.clone(), ended.clone()).await;
                storage.put(ENDED, &ended).await?;
                ended
            }
        };
        if let Some(callback) = &job.callback {
            let told = gateway.with_urls(&job.head, ended.clone());
            let request = jobs::callback_request(callback, &told, clock.now_ms() / 1000);
            match jobs::deliver(&super::fetch::WorkerUpstream, &clock, request).await {
                Ok(status) => console_log!("{{\"callback\":{{\"action\":\"{}\",\"status\":{status}}}}}", ended.id),
                Err(why) => console_warn!("{{\"warning\":\"the callback of the action {} failed\",\"error\":{why:?}}}", ended.id),
            }
        }
        storage.put(DONE, true).await?;
        Response::ok("ran")
    }
}
