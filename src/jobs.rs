//! Generations run apart from the client's connection: the job an asynchronous request leaves
//! (`Prefer: respond-async`, or a route whose `execution_mode` is `async`), and the journal that
//! keeps a rerun from paying twice.
//!
//! A job is run in its action's own place (a Durable Object at the edge), which may run it again
//! after a crash (alarms are delivered at least once). Before every call that may start paid work
//! (every `POST` upstream: creates; polls and downloads are `GET`), the run notes it in the
//! [`Journal`] and waits for the note to be kept. A rerun that finds a note does not run at all:
//! the call it notes may have been charged and its outcome is unknown, so the action ends
//! `error` saying so ([`interrupted`]). The [`Runner`] is where jobs are handed over.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::clock::Clock;
use crate::http::RequestHead;
use crate::secret::Secret;
use crate::state::{Off, Pending};
use crate::upstream::{HeaderValue, Method, TransportError, Upstream, UpstreamReply, UpstreamRequest};

/// One generation to run apart from its client: the request as it came (without its key), its
/// action as the client was told it (`queued`), and whom to tell when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub request_id: String,
    pub head: RequestHead,
    /// The request's body: JSON text (a body that is not UTF-8 never gets this far).
    pub body: String,
    pub queued: Action,
    #[serde(default)]
    pub callback: Option<Callback>,
}

/// The answer of a job run for a waiting client: status, headers and body as the runner's
/// gateway made them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a job run for a waiting client gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// The runner could not be reached or did not take the job: nothing runs.
    NotStarted(String),
    /// The runner took the job and the wait for it broke: it may be running, or done.
    Lost(String),
}

/// Whom a job tells how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Callback {
    /// The request's `webhook`: the action, POSTed and signed with `secret`.
    Webhook { url: String, secret: String },
    /// Ouro's async route protocol (`ouro-action-id`, `ouro-webhook-url`, `ouro-webhook-token`).
    Ouro { url: String, token: String, action_id: String, route_id: Option<String> },
}

/// The waits before a callback's second to fifth attempts.
pub const CALLBACK_BACKOFF_MS: [u64; 4] = [1_000, 2_000, 4_000, 8_000];
/// How long one callback attempt may take.
const CALLBACK_TIMEOUT_MS: u64 = 10_000;

/// The signature of a webhook `body` sent at `timestamp` (Unix seconds): the hex HMAC-SHA256 of
/// `"{timestamp}.{body}"` with the webhook's secret.
pub fn webhook_signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The request that tells `callback` how `action` ended (its images already as signed URLs),
/// at `now_secs`.
pub fn callback_request(callback: &Callback, action: &Action, now_secs: u64) -> UpstreamRequest {
    let plain = |value: &str| HeaderValue::Plain(value.to_owned());
    let (url, body, mut headers) = match callback {
        Callback::Webhook { url, secret } => {
            let body = to_json(action);
            let signature = format!("t={now_secs},v1={}", webhook_signature(secret, now_secs, &body));
            (url, body, vec![("x-imagegate-signature".to_owned(), plain(&signature)), ("x-imagegate-action-id".to_owned(), plain(&action.id))])
        }
        Callback::Ouro { url, token, action_id, route_id } => {
            let succeeded = action.status == "success";
            let response = match &action.response {
                Some(response) if succeeded => serde_json::to_value(response).expect("a response serialises"),
                _ => serde_json::json!({"error": action.error}),
            };
            let body = serde_json::json!({
                "status": if succeeded { "success" } else { "error" },
                "ouro_action_id": action_id,
                "ouro_route_id": route_id.as_deref().or(action.route_id.as_deref()),
                "response": response,
            });
            (url, to_json(&body), vec![("ouro-webhook-token".to_owned(), HeaderValue::Secret(Secret::new(token.clone())))])
        }
    };
    headers.push(("content-type".to_owned(), plain("application/json")));
    UpstreamRequest { method: Method::Post, url: url.clone(), headers, body: body.into() }
}

/// Sends a callback, again after each of [`CALLBACK_BACKOFF_MS`] while it fails (a connection
/// error or a status other than 2xx): the status that took it, or the last failure.
pub async fn deliver<U: Upstream>(upstream: &U, clock: &dyn Clock, request: UpstreamRequest) -> Result<u16, String> {
    let mut failure = String::new();
    for wait_ms in std::iter::once(0).chain(CALLBACK_BACKOFF_MS) {
        if wait_ms > 0 {
            clock.sleep(wait_ms).await;
        }
        match upstream.send(request.clone(), CALLBACK_TIMEOUT_MS).await {
            Ok(reply) if (200..300).contains(&reply.status) => return Ok(reply.status),
            Ok(reply) => failure = format!("the receiver answered {}", reply.status),
            Err(error) => failure = format!("{error:?}"),
        }
    }
    Err(failure)
}

/// A callback body.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("a callback body serialises")
}

/// Where jobs run apart from their clients (at the edge, a Durable Object per action).
pub trait Runner {
    /// Whether there is such a place (a deployment without its binding runs every request in
    /// place).
    fn available(&self) -> bool;

    /// Hands `job` over: once this is `Ok`, its queued action is written and the job runs to its
    /// end whatever becomes of this request. A failure says whether the job may have been taken.
    fn start<'a>(&'a self, job: &'a Job) -> Pending<'a, Result<(), RunFailure>>;

    /// Runs `job` there and waits for its answer: the job runs to its end even if this request
    /// ends first (its client hung up).
    fn run<'a>(&'a self, job: &'a Job) -> Pending<'a, Result<RunReply, RunFailure>>;

    /// Cancels the action `id` if it has not finished: the action as it ended, or `None` when
    /// the runner holds no unfinished run of it.
    fn cancel<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<Action>, String>>;
}

impl Runner for Off {
    fn available(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, _job: &'a Job) -> Pending<'a, Result<(), RunFailure>> {
        Box::pin(async { Err(RunFailure::NotStarted("no runner".to_owned())) })
    }

    fn run<'a>(&'a self, _job: &'a Job) -> Pending<'a, Result<RunReply, RunFailure>> {
        Box::pin(async { Err(RunFailure::NotStarted("no runner".to_owned())) })
    }

    fn cancel<'a>(&'a self, _id: &'a str) -> Pending<'a, Result<Option<Action>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// A runner that keeps the jobs handed to it, for a test to run (with
/// [`Gateway::run`](crate::pipeline::Gateway::run)) or cancel.
#[derive(Debug, Default)]
pub struct MemoryRunner {
    pub jobs: RefCell<Vec<Job>>,
    /// The ids of the actions cancelled.
    pub cancelled: RefCell<Vec<String>>,
    /// The jobs run for waiting clients.
    pub ran: RefCell<Vec<Job>>,
    /// How the jobs run for waiting clients end, in order; when none is left, such a job is
    /// not taken (and the gateway generates in place).
    pub replies: RefCell<Vec<Result<RunReply, RunFailure>>>,
}

impl Runner for MemoryRunner {
    fn available(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, job: &'a Job) -> Pending<'a, Result<(), RunFailure>> {
        self.jobs.borrow_mut().push(job.clone());
        Box::pin(async { Ok(()) })
    }

    fn run<'a>(&'a self, job: &'a Job) -> Pending<'a, Result<RunReply, RunFailure>> {
        let mut replies = self.replies.borrow_mut();
        let reply = if replies.is_empty() {
            Err(RunFailure::NotStarted("no reply scripted".to_owned()))
        } else {
            self.ran.borrow_mut().push(job.clone());
            replies.remove(0)
        };
        Box::pin(async move { reply })
    }

    fn cancel<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<Action>, String>> {
        let mut jobs = self.jobs.borrow_mut();
        let ended = jobs.iter().position(|job| job.queued.id == id).map(|at| {
            let job = jobs.remove(at);
            self.cancelled.borrow_mut().push(id.to_owned());
            cancelled(&job.queued, job.queued.created_at)
        });
        Box::pin(async move { Ok(ended) })
    }
}

/// Whether `prefer` (a `Prefer` header, RFC 7240) asks for an asynchronous answer.
pub fn prefers_async(prefer: Option<&str>) -> bool {
    prefer.is_some_and(|prefer| prefer.split(',').any(|preference| preference.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("respond-async")))
}

/// Where a run notes the paid calls it starts, kept across reruns.
pub trait Journal {
    /// How many paid calls earlier runs of this job started.
    fn paid_calls(&self) -> Pending<'_, Result<u32, String>>;

    /// Notes that a paid call is about to start; the call is made only once this returns `Ok`.
    fn note_paid_call(&self) -> Pending<'_, Result<(), String>>;
}

/// An upstream that notes every paid call in a journal before making it.
pub struct Journaled<'a, U> {
    pub inner: &'a U,
    pub journal: &'a dyn Journal,
}

impl<U: Upstream> Upstream for Journaled<'_, U> {
    type Body = U::Body;

    async fn send(&self, request: UpstreamRequest, limit_ms: u64) -> Result<UpstreamReply<U::Body>, TransportError> {
        if request.method == Method::Post {
            // Not noted, not sent: a call the journal cannot vouch for is never made.
            self.journal
                .note_paid_call()
                .await
                .map_err(|error| TransportError::NotSent(format!("the run could not note the call it was about to make: {error}")))?;
        }
        self.inner.send(request, limit_ms).await
    }
}

/// The action of a job whose earlier run was interrupted after starting `paid_calls` paid calls:
/// an error, not repeated, at `now_ms`.
pub fn interrupted(job: &Job, paid_calls: u32, now_ms: u64) -> Action {
    let calls = if paid_calls == 1 { "a call" } else { "calls" };
    let message = format!(
        "The run was interrupted after {calls} to the upstream had started; its outcome is unknown, and it was not repeated (it may have been charged)."
    );
    ended_in_error(&job.queued, 502, message, now_ms)
}

/// `queued` ended at `now_ms` as an error with `http_status` and `message`.
pub fn ended_in_error(queued: &Action, http_status: u16, message: impl Into<String>, now_ms: u64) -> Action {
    Action {
        status: "error".to_owned(),
        http_status,
        finished_at: Some(now_ms),
        latency_ms: now_ms.saturating_sub(queued.created_at),
        error: Some(message.into()),
        ..queued.clone()
    }
}

/// `queued` ended by a cancel at `now_ms`.
pub fn cancelled(queued: &Action, now_ms: u64) -> Action {
    ended_in_error(queued, 499, "cancelled", now_ms)
}

/// The request body a job keeps, read again where the job runs.
pub struct HeldBody(pub Vec<u8>);

impl crate::http::IncomingBody for HeldBody {
    async fn read(self, max_bytes: usize) -> Result<Vec<u8>, crate::error::GatewayError> {
        if self.0.len() > max_bytes {
            return Err(crate::request::body_too_large(max_bytes));
        }
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_read_among_other_preferences() {
        for prefer in ["respond-async", "Respond-Async", "wait=10, respond-async", "respond-async; foo=bar", "handling=lenient,respond-async"] {
            assert!(prefers_async(Some(prefer)), "{prefer}");
        }
        for prefer in [None, Some(""), Some("wait=10"), Some("respond-asynchronously"), Some("return=minimal")] {
            assert!(!prefers_async(prefer), "{prefer:?}");
        }
    }
}
