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
use crate::http::RequestHead;
use crate::state::{Off, Pending};
use crate::upstream::{Method, TransportError, Upstream, UpstreamReply, UpstreamRequest};

/// One generation to run apart from its client: the request as it came, and its action as the
/// client was told it (`queued`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub request_id: String,
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub queued: Action,
}

/// Where jobs run apart from their clients (at the edge, a Durable Object per action).
pub trait Runner {
    /// Whether there is such a place (a deployment without its binding runs every request in
    /// place).
    fn available(&self) -> bool;

    /// Hands `job` over: once this is `Ok`, its queued action is written and the job runs to its
    /// end whatever becomes of this request.
    fn start<'a>(&'a self, job: &'a Job) -> Pending<'a, Result<(), String>>;

    /// Cancels the action `id` if it has not finished: the action as it ended, or `None` when
    /// the runner holds no unfinished run of it.
    fn cancel<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<Action>, String>>;
}

impl Runner for Off {
    fn available(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, _job: &'a Job) -> Pending<'a, Result<(), String>> {
        Box::pin(async { Err("no runner".to_owned()) })
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
}

impl Runner for MemoryRunner {
    fn available(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, job: &'a Job) -> Pending<'a, Result<(), String>> {
        self.jobs.borrow_mut().push(job.clone());
        Box::pin(async { Ok(()) })
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
    Action {
        status: "error".to_owned(),
        http_status: 502,
        finished_at: Some(now_ms),
        latency_ms: now_ms.saturating_sub(job.queued.created_at),
        error: Some(format!(
            "The run was interrupted after {calls} to the upstream had started; its outcome is unknown, and it was not repeated (it may have been charged)."
        )),
        ..job.queued.clone()
    }
}

/// `queued` ended by a cancel at `now_ms`.
pub fn cancelled(queued: &Action, now_ms: u64) -> Action {
    Action {
        status: "error".to_owned(),
        http_status: 499,
        finished_at: Some(now_ms),
        latency_ms: now_ms.saturating_sub(queued.created_at),
        error: Some("cancelled".to_owned()),
        ..queued.clone()
    }
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
