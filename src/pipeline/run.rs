//! Generations apart from their clients: handing an asynchronous request to the runner (a 202
//! with its queued action), running a job where the runner keeps it, cancelling one, and the
//! `Retry-After` a poll of an unfinished action gets.

use crate::action::{Action, ImageCount};
use crate::error::GatewayError;
use crate::http::{Reply, RequestHead};
use crate::jobs::{self, HeldBody, Job, Journal};
use crate::secret::Secrets;
use crate::upstream::Upstream;

use super::context::action_id;
use super::{storage_unavailable, Gateway, Handled, RequestContext};

/// How long a poll waits when there is nothing to go by.
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;
/// The longest a poll is told to wait.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Whether an action's status says it has not finished.
pub fn unfinished(action: &Action) -> bool {
    matches!(action.status.as_str(), "queued" | "in-progress")
}

impl<'a, U: Upstream, S: Secrets> Gateway<'a, U, S> {
    /// Hands a validated generation to the runner and answers `202 Accepted` with its queued
    /// action, `Location` to poll and a `Retry-After`; a runner that cannot take it is a 503.
    pub(super) async fn hand_off(&self, head: &RequestHead, body: Vec<u8>, model: &str, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let id = action_id(&cx.request_id);
        let queued = Action {
            id: id.clone(),
            object: "action".to_owned(),
            request_id: cx.request_id.clone(),
            key: cx.key.clone(),
            route_id: cx.route_id.clone(),
            model: Some(model.to_owned()),
            status: "queued".to_owned(),
            http_status: 202,
            created_at: cx.started_ms,
            name: cx.name.clone(),
            identity: cx.identity.clone(),
            metadata: cx.metadata.clone(),
            images: cx.asked_images.map(|asked| ImageCount { got: None, asked }),
            request: cx.request_fields.clone(),
            ..Action::default()
        };
        let job = Job { request_id: cx.request_id.clone(), head: head.clone(), body, queued };
        self.runner.start(&job).await.map_err(|detail| storage_unavailable("The action runner", detail))?;
        cx.handed_off = true;
        let mut reply = Reply::json(202, serde_json::to_vec(&job.queued).expect("an action serialises"));
        reply.headers.push(("location", format!("/v1/actions/{id}")));
        if jobs::prefers_async(head.prefer.as_deref()) {
            reply.headers.push(("preference-applied", "respond-async".to_owned()));
        }
        reply.headers.push(("retry-after", self.retry_after_secs(&job.queued).await.to_string()));
        Ok(reply)
    }

    /// Runs `job` where the runner keeps it: the request as it came, generated in place, with
    /// the action it ends as (created when the client asked). A job whose earlier run started a
    /// paid call ([`Journal`]) is not run again: it ends `error`, its outcome unknown. The
    /// gateway's upstream must be [`Journaled`](crate::jobs::Journaled) with the same journal.
    pub async fn run(&self, job: &Job, journal: &dyn Journal) -> Handled<U::Body> {
        let now_ms = self.clock.now_ms();
        let interrupted = match journal.paid_calls().await {
            Ok(0) => None,
            Ok(calls) => Some(jobs::interrupted(job, calls, now_ms)),
            // The journal cannot tell whether a call was made: never risk a second.
            Err(error) => {
                Some(Action { error: Some(format!("The run could not read its journal ({error}); it was not started.")), ..jobs::interrupted(job, 0, now_ms) })
            }
        };
        if let Some(action) = interrupted {
            let error = GatewayError::new(crate::error::ErrorKind::BadUpstream, action.error.clone().unwrap_or_default());
            let reply = Reply::error(&error);
            let log = crate::log::RequestLog {
                request_id: job.request_id.clone(),
                method: job.head.method.clone(),
                path: job.head.path.clone(),
                status: 502,
                ..Default::default()
            };
            return Handled { reply, log, action: Some(action), store: None, files: Vec::new(), flight: None };
        }
        let head = RequestHead { in_runner: true, ..job.head.clone() };
        let mut handled = self.handle(job.request_id.clone(), &head, HeldBody(job.body.clone())).await;
        if let Some(action) = &mut handled.action {
            action.created_at = job.queued.created_at;
            action.latency_ms = action.finished_at.unwrap_or(now_ms).saturating_sub(action.created_at);
        }
        handled
    }

    /// `POST /v1/actions/{id}/cancel`: ends the caller's unfinished action `error` (`cancelled`);
    /// a finished one is answered as it is.
    pub(super) async fn cancel(&self, head: &RequestHead, id: &str, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx)?;
        let action = self.found_action(reader, id).await?;
        let action = match unfinished(&action) {
            true => self.runner.cancel(id).await.map_err(|detail| storage_unavailable("The action runner", detail))?.unwrap_or(action),
            false => action,
        };
        Ok(Reply::json(200, serde_json::to_vec(&self.with_urls(head, action)).expect("an action serialises")))
    }

    /// How long a poll of the unfinished `action` should wait: what is left of its model's
    /// median latency (recent successes), at least a second, else a default.
    pub(super) async fn retry_after_secs(&self, action: &Action) -> u64 {
        let Some(model) = &action.model else { return DEFAULT_RETRY_AFTER_SECS };
        let mut latencies = self.history.recent_latencies(model).await.unwrap_or_default();
        if latencies.is_empty() {
            return DEFAULT_RETRY_AFTER_SECS;
        }
        latencies.sort_unstable();
        let median = latencies[(latencies.len() - 1) / 2];
        let elapsed = self.clock.now_ms().saturating_sub(action.created_at);
        median.saturating_sub(elapsed).div_ceil(1000).clamp(1, MAX_RETRY_AFTER_SECS)
    }
}
