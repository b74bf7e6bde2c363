//! Generations apart from their clients: handing an asynchronous request to the runner (a 202
//! with its queued action), running a job where the runner keeps it, cancelling one, and the
//! `Retry-After` a poll of an unfinished action gets.

use crate::action::{Action, ImageCount};
use crate::error::{ErrorKind, GatewayError};
use crate::http::{Reply, ReplyBody, RequestHead};
use serde_json::{Map, Value};

use crate::auth::Reader;
use crate::config::routes::ExecutionMode;
use crate::config::RouteConfig;
use crate::jobs::{self, Callback, HeldBody, Job, Journal, RunFailure};
use crate::providers::site;
use crate::secret::Secrets;
use crate::upstream::Upstream;

use super::context::action_id;
use super::{storage_unavailable, Gateway, Handled, RequestContext};

/// How long a poll waits when there is nothing to go by.
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;
/// The longest a poll is told to wait.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// The headers of a runner's answer that the waiting request passes on (those it sets itself,
/// such as `x-request-id`, it renders from its own record).
fn relayed_header(name: &str) -> Option<&'static str> {
    const RELAYED: [&str; 11] = [
        "content-type",
        "x-imagegate-attempts",
        "x-imagegate-model",
        "x-imagegate-cost-usd",
        "x-imagegate-images",
        "x-imagegate-cache",
        "x-should-retry",
        "retry-after",
        "www-authenticate",
        "allow",
        "preference-applied",
    ];
    RELAYED.into_iter().find(|known| known.eq_ignore_ascii_case(name))
}

/// The final 502 for a generation whose runner may have it while this request cannot tell.
fn detached(id: &str, detail: String) -> GatewayError {
    GatewayError::new(
        ErrorKind::BadUpstream,
        format!("The gateway lost touch with this generation, which may still be running; GET /v1/actions/{id} tells how it ends. It was not retried."),
    )
    .with_code("generation_detached")
    .with_log_detail(detail)
    .final_answer()
}

/// Whether an action's status says it has not finished.
pub fn unfinished(action: &Action) -> bool {
    matches!(action.status.as_str(), "queued" | "in-progress")
}

impl<'a, U: Upstream, S: Secrets> Gateway<'a, U, S> {
    /// Hands a validated generation to the runner and answers `202 Accepted` with its queued
    /// action, `Location` to poll and a `Retry-After`; a runner that cannot take it is a 503.
    pub(super) async fn hand_off(
        &self,
        head: &RequestHead,
        body: String,
        model: &str,
        callback: Option<Callback>,
        cx: &mut RequestContext,
    ) -> Result<Reply<U::Body>, GatewayError> {
        let job = self.job(head, body, model, callback, cx);
        match self.runner.start(&job).await {
            Ok(()) => {}
            // Not started: this request's ticket is settled at nothing.
            Err(RunFailure::NotStarted(detail)) => return Err(storage_unavailable("The action runner", detail)),
            Err(RunFailure::Lost(detail)) => {
                cx.ticket = None;
                return Err(detached(&job.queued.id, detail));
            }
        }
        // The run settles the admitted generation.
        cx.ticket = None;
        cx.handed_off = true;
        let id = job.queued.id.clone();
        let mut reply = Reply::json(202, serde_json::to_vec(&job.queued).expect("an action serialises"));
        reply.headers.push(("location", format!("/v1/actions/{id}")));
        if jobs::prefers_async(job.head.prefer.as_deref()) {
            reply.headers.push(("preference-applied", "respond-async".to_owned()));
        }
        reply.headers.push(("retry-after", self.retry_after_secs(&job.queued).await.to_string()));
        Ok(reply)
    }

    /// Runs a validated synchronous generation in its action's place and waits for its answer,
    /// so that the generation ends, and is recorded, even if this request's client hangs up.
    /// `None` when the runner could not take it (the caller then generates in place); a 502
    /// when the wait broke after the runner took it (the generation may go on: its action says).
    pub(super) async fn run_apart(
        &self,
        head: &RequestHead,
        body: String,
        model: &str,
        cx: &mut RequestContext,
    ) -> Result<Option<Reply<U::Body>>, GatewayError> {
        let job = self.job(head, body, model, None, cx);
        match self.runner.run(&job).await {
            Ok(ran) => {
                // The run settled the admitted generation.
                cx.ticket = None;
                cx.handed_off = true;
                let headers = ran.headers.into_iter().filter_map(|(name, value)| relayed_header(&name).map(|name| (name, value))).collect();
                Ok(Some(Reply { status: ran.status, headers, body: ReplyBody::Bytes(ran.body) }))
            }
            Err(RunFailure::NotStarted(_)) => Ok(None),
            Err(RunFailure::Lost(detail)) => {
                // The run may settle it yet; else its hold lapses.
                cx.ticket = None;
                cx.handed_off = true;
                Err(detached(&job.queued.id, detail))
            }
        }
    }

    /// The job of a validated generation, with its action as queued now.
    fn job(&self, head: &RequestHead, body: String, model: &str, callback: Option<Callback>, cx: &RequestContext) -> Job {
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
        // The job keeps the key's label, never the key itself; Ouro's token only in its callback.
        let head = RequestHead { authorization: None, caller_label: cx.key.clone(), ouro_webhook_token: None, ..head.clone() };
        Job { request_id: cx.request_id.clone(), head, body, queued, callback }
    }

    /// Whom this generation tells how it ended, if anyone: the body's `webhook` (`{url, secret}`,
    /// taken out of `fields`) or Ouro's headers, each URL on a host the configuration allows
    /// (`webhook_hosts`, `ouro_hosts`); anything else is a 400 naming the field or header.
    /// Where the job runs, the callback is the job's: the field is only taken out.
    pub(super) fn callback(&self, head: &RequestHead, fields: &mut Map<String, Value>) -> Result<Option<Callback>, GatewayError> {
        if head.in_runner {
            fields.remove("webhook");
            return Ok(None);
        }
        if let Some(webhook) = crate::fields::take(fields, "webhook") {
            let Value::Object(mut webhook) = webhook else {
                return Err(GatewayError::invalid_param("webhook", "'webhook' must be an object: {\"url\", \"secret\"}."));
            };
            let url =
                crate::fields::optional_string(&mut webhook, "url")?.ok_or_else(|| GatewayError::invalid_param("webhook.url", "'webhook.url' is required."))?;
            let secret = crate::fields::optional_string(&mut webhook, "secret")?.filter(|s| !s.is_empty() && s.len() <= 256);
            let secret = secret
                .ok_or_else(|| GatewayError::invalid_param("webhook.secret", "'webhook.secret' is required: 1 to 256 characters to sign the callback with."))?;
            if let Some(unknown) = webhook.keys().next() {
                return Err(GatewayError::invalid_param(
                    &format!("webhook.{unknown}"),
                    format!("Unknown parameter: 'webhook.{unknown}'. A webhook has 'url' and 'secret'."),
                ));
            }
            let url = site::callback_url(&url, &self.config.webhook_hosts)
                .map_err(|why| GatewayError::invalid_param("webhook.url", format!("'webhook.url' is refused: {why} (webhook_hosts).")))?;
            // The URL as parsed and checked is the one called.
            return Ok(Some(Callback::Webhook { url: url.to_string(), secret }));
        }
        let ouro = [("ouro-action-id", &head.ouro_action_id), ("ouro-webhook-url", &head.ouro_webhook_url), ("ouro-webhook-token", &head.ouro_webhook_token)];
        if ouro.iter().all(|(_, value)| value.is_none()) {
            return Ok(None);
        }
        if let Some((missing, _)) = ouro.iter().find(|(_, value)| value.is_none()) {
            return Err(GatewayError::invalid_param(missing, format!("Ouro's async route protocol needs the header '{missing}' too.")));
        }
        let [action_id, url, token] = ouro.map(|(_, value)| value.clone().expect("checked"));
        let url = site::callback_url(&url, &self.config.ouro_hosts)
            .map_err(|why| GatewayError::invalid_param("ouro-webhook-url", format!("'ouro-webhook-url' is refused: {why} (ouro_hosts).")))?;
        Ok(Some(Callback::Ouro { url: url.to_string(), token, action_id, route_id: head.ouro_route_id.clone() }))
    }

    /// The webhook a route configures, for its asynchronous uses (a `Prefer: respond-async`, or
    /// an `async` route); its secret missing is the deployment's fault (a 500 naming it in the
    /// log only).
    pub(super) fn route_webhook(&self, head: &RequestHead, route: Option<&RouteConfig>) -> Result<Option<Callback>, GatewayError> {
        let Some(webhook) = route.and_then(|route| route.webhook.as_ref()) else { return Ok(None) };
        // Where nothing runs apart, an async route runs in place, and there is no one to call back.
        if !self.runner.available() {
            return Ok(None);
        }
        let asynchronous = jobs::prefers_async(head.prefer.as_deref()) || route.is_some_and(|route| route.execution_mode == ExecutionMode::Async);
        if head.in_runner || !asynchronous {
            return Ok(None);
        }
        let secret = self.secrets.get(&webhook.secret_name).ok_or_else(|| {
            GatewayError::new(ErrorKind::Internal, "The route's webhook has no secret: the secret its secret_name names is not set.")
                .with_code("webhook_secret_missing")
                .with_log_detail(format!("the secret '{}' is not set", webhook.secret_name))
        })?;
        Ok(Some(Callback::Webhook { url: webhook.url.clone(), secret: secret.expose().to_owned() }))
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
            Err(error) => Some(jobs::ended_in_error(&job.queued, 502, format!("The run could not read its journal ({error}); it was not started."), now_ms)),
        };
        if let Some(action) = interrupted {
            // A paid call's outcome is unknown: the key is charged what its generation held.
            if let Some(owner) = job.head.caller_label.as_deref().filter(|owner| crate::keys::is_hash(owner)) {
                let _ = self.limiter.settle(owner, &job.request_id, None, now_ms).await;
            }
            let error = GatewayError::new(crate::error::ErrorKind::BadUpstream, action.error.clone().unwrap_or_default());
            let reply = Reply::error(&error);
            let log = crate::log::RequestLog {
                request_id: job.request_id.clone(),
                method: job.head.method.clone(),
                path: job.head.path.clone(),
                status: 502,
                ..Default::default()
            };
            return Handled { reply, log: Some(log), action: Some(action), store: None, files: Vec::new(), flight: None, unfinished: None };
        }
        let head = RequestHead { in_runner: true, ..job.head.clone() };
        let mut handled = self.handle(job.request_id.clone(), &head, HeldBody(job.body.clone().into_bytes())).await;
        // Refused before it generated (its key is gone): the action still ends, as an error.
        let refused = || {
            jobs::ended_in_error(
                &job.queued,
                handled.reply.status,
                handled.log.as_ref().and_then(|log| log.error.clone()).unwrap_or_default(),
                self.clock.now_ms(),
            )
        };
        let mut action = handled.action.take().unwrap_or_else(refused);
        action.created_at = job.queued.created_at;
        action.latency_ms = action.finished_at.unwrap_or(now_ms).saturating_sub(action.created_at);
        handled.action = Some(action);
        handled
    }

    /// `POST /v1/actions/{id}/cancel`: ends the caller's unfinished action `error` (`cancelled`);
    /// a finished one is answered as it is.
    pub(super) async fn cancel(&self, head: &RequestHead, id: &str, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        // A gateway key cancels its own actions; the management key only reads.
        let reader = Reader::Key(self.caller(head, cx).await?);
        let action = self.found_action(&reader, id).await?;
        let action = match unfinished(&action) {
            true => self.runner.cancel(id).await.map_err(|detail| storage_unavailable("The action runner", detail))?.unwrap_or(action),
            false => action,
        };
        Ok(Reply::json(200, serde_json::to_vec(&self.with_urls(head, action)).expect("an action serialises")))
    }

    /// How long a poll of the unfinished `action` should wait: what is left of the median
    /// latency of its route's (or else its model's) recent successes, at least a second, else a
    /// default.
    pub(super) async fn retry_after_secs(&self, action: &Action) -> u64 {
        let Some(model) = &action.model else { return DEFAULT_RETRY_AFTER_SECS };
        let mut latencies = self.history.recent_latencies(model, action.route_id.as_deref()).await.unwrap_or_default();
        if latencies.is_empty() {
            return DEFAULT_RETRY_AFTER_SECS;
        }
        latencies.sort_unstable();
        let median = latencies[(latencies.len() - 1) / 2];
        let elapsed = self.clock.now_ms().saturating_sub(action.created_at);
        median.saturating_sub(elapsed).div_ceil(1000).clamp(1, MAX_RETRY_AFTER_SECS)
    }
}
