//! One attempt against one target: check what the target can do, plan the upstream calls, send
//! them within a time limit, and classify the answers. An OpenAI-shaped answer for an OpenAI
//! client is relayed unread once its first bytes show images; every other answer is read whole,
//! translated by the provider's adapter (polling asynchronous jobs), and written in the
//! caller's shape. Each attempt reports its [`Outcome`] for the policy and the status shown in
//! `x-imagegate-attempts`.

use futures_util::future::join_all;

use crate::answer::Shape;
use crate::answer_scan::{AnswerScan, Verdict};
use crate::clock::Deadline;
use crate::config::{ModelConfig, ProviderConfig, ProviderKind};
use crate::error::{ErrorKind, GatewayError};
use crate::http::{Reply, ReplyBody};
use crate::policy::{retry_after_ms, Outcome};
use crate::pricing;
use crate::providers::{self, errors, test_pattern, Generated, Progress, Target};
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};

use super::poll::{job_failure, lost};
use super::Gateway;

/// The most of an upstream error body read to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The most of a 200 answer held while deciding whether it carries images.
const MAX_UNDECIDED_BYTES: usize = 1 << 20;
/// The largest answer read whole to be translated (ten large images in base64).
pub(super) const MAX_ANSWER_BYTES: usize = 48 << 20;

/// How one attempt ended.
pub(super) struct Attempt<B> {
    /// What the policy decides on.
    pub outcome: Outcome,
    /// The upstream's status; 524 for a timeout, 502 for a failed connection or a 200 without
    /// images, the would-be status for a target that cannot serve the request.
    pub status: u16,
    pub result: Result<Reply<B>, GatewayError>,
}

impl<B> Attempt<B> {
    pub(super) fn failed(outcome: Outcome, status: u16, error: GatewayError) -> Self {
        Attempt { outcome, status, result: Err(error) }
    }

    fn unusable(error: GatewayError) -> Self {
        Attempt::failed(Outcome::Unusable, error.status(), error)
    }
}

/// Why one upstream call gave no images.
pub(super) struct Failure {
    pub outcome: Outcome,
    pub status: u16,
    pub error: GatewayError,
}

impl Failure {
    pub fn status(status: u16, retry_after_ms: Option<u64>, error: GatewayError) -> Self {
        Failure { outcome: Outcome::Status { status, retry_after_ms }, status, error }
    }

    /// This failure, never retried nor sent elsewhere: the upstream already has (and charges
    /// for) the work.
    pub fn into_final(self) -> Self {
        Failure { outcome: Outcome::Final, ..self }
    }

    fn into_attempt<B>(self) -> Attempt<B> {
        Attempt::failed(self.outcome, self.status, self.error)
    }
}

/// Why [`Gateway::send`] got no answer.
pub(super) enum Spent {
    Transport(TransportError),
    /// The request has sent its `max_subrequests`.
    Budget,
}

impl Spent {
    pub fn failure(self, provider_id: &str, limit_ms: u64, max_subrequests: u32) -> Failure {
        match self {
            Spent::Transport(error) => transport_failure(error, provider_id, limit_ms),
            // Sending more would fail in the runtime too; trying elsewhere cannot help.
            Spent::Budget => Failure {
                outcome: Outcome::Final,
                status: 502,
                error: GatewayError::new(
                    ErrorKind::BadUpstream,
                    format!("The request used all {max_subrequests} of its upstream requests (max_subrequests) before '{provider_id}' finished."),
                )
                .with_code("subrequest_limit"),
            },
        }
    }
}

/// The time an attempt's calls have: until `deadline` (`limit_ms` after the attempt began, for
/// messages); what they do for a job they give up on (a cancel) may last until
/// `request_deadline`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub deadline: Deadline,
    pub limit_ms: u64,
    pub request_deadline: Deadline,
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Tries `model` once for a caller speaking `shape`, giving up on the calls after
    /// `limit_ms`; images already generated may still be downloaded until `request_deadline`.
    pub(super) async fn attempt(
        &self,
        provider: &ProviderConfig,
        model: &ModelConfig,
        request: &ImageRequest,
        shape: Shape,
        limit_ms: u64,
        request_deadline: Deadline,
    ) -> Attempt<U::Body> {
        let trimmed;
        let request = if model.drop_params.is_empty() {
            request
        } else {
            trimmed = request.without(&model.drop_params);
            &trimmed
        };
        if let Err(error) = model.supports.check(&model.id, request) {
            // Skipped without a call; another target may serve the request.
            return Attempt::unusable(error);
        }
        let deadline = Deadline::after(self.clock.now_ms(), limit_ms);
        let key = match provider.api_key_secret.as_deref().filter(|_| provider.kind != ProviderKind::TestPattern) {
            None => None,
            Some(name) => match self.secrets.get(name) {
                Some(key) => Some(key),
                None => {
                    let error =
                        GatewayError::new(ErrorKind::Internal, format!("The provider '{}' has no API key: the secret '{name}' is not set.", provider.id))
                            .with_code("provider_key_missing");
                    return Attempt::failed(Outcome::Unusable, 500, error);
                }
            },
        };
        let target = Target { provider, model, key: key.as_ref(), limit_ms };
        if let Err(error) = providers::check_params(&target, request) {
            return Attempt::unusable(error);
        }
        let generated = if provider.kind == ProviderKind::TestPattern {
            match test_pattern::generate(request) {
                Ok(generated) => generated,
                // It cannot render this request (size, format): another target may.
                Err(error) => return Attempt::unusable(error),
            }
        } else {
            let plan = match providers::plan(&target, request) {
                Ok(plan) => plan,
                Err(error) => return Attempt::unusable(error),
            };
            if plan.relay && shape == Shape::OpenAi && plan.calls.len() == 1 {
                let call = plan.calls.into_iter().next().expect("one call");
                return self.relay(&target, call, request, deadline, limit_ms).await;
            }
            let window = Window { deadline, limit_ms, request_deadline };
            match self.collect(&target, plan.calls, request.n, window).await {
                Ok(generated) => generated,
                Err(failure) => return failure.into_attempt(),
            }
        };
        self.deliver(&target, request, shape, generated, request_deadline).await
    }

    /// An OpenAI-shaped answer relayed to an OpenAI client: checked from its first bytes, then
    /// streamed on unread.
    async fn relay(&self, target: &Target<'_>, call: UpstreamRequest, request: &ImageRequest, deadline: Deadline, limit_ms: u64) -> Attempt<U::Body> {
        let provider_id = &target.provider.id;
        let mut reply = match self.send(call, limit_ms, 0).await {
            Ok(reply) => reply,
            Err(spent) => return spent.failure(provider_id, limit_ms, self.config.max_subrequests).into_attempt(),
        };
        if !(200..300).contains(&reply.status) {
            return self.error_answer(target, reply.status, reply.retry_after, reply.retry_after_ms, &mut reply.body, deadline).await.into_attempt();
        }
        if let Err(failure) = self.check_answer(&mut reply.body, deadline, provider_id, limit_ms).await {
            return failure.into_attempt();
        }
        let mut headers = vec![("content-type", "application/json".to_owned())];
        headers.extend(cost_header(pricing::cost(target.model, request, request.n as usize)));
        Attempt { outcome: Outcome::Success, status: reply.status, result: Ok(Reply { status: 200, headers, body: ReplyBody::Relay(reply.body) }) }
    }

    /// Runs `calls` concurrently and gathers their images. Images already generated are kept
    /// even when a sibling call fails (they are paid for); with none, the first failure, unless
    /// one of them is final (a job that was paid for and lost): then that one, so that the
    /// attempt is not repeated. The calls and their polls leave enough of the request's
    /// `max_subrequests` unused to cancel each call's job and to download each of the `n` images.
    async fn collect(&self, target: &Target<'_>, calls: Vec<UpstreamRequest>, n: u8, window: Window) -> Result<Generated, Failure> {
        let keep = calls.len() as u32 + u32::from(n);
        let results = join_all(calls.into_iter().map(|call| self.call(target, call, window, keep))).await;
        let mut generated = Generated::default();
        let mut first_failure = None;
        for result in results {
            match result {
                Ok(done) => {
                    generated.images.extend(done.images);
                    generated.cost_usd = match (generated.cost_usd, done.cost_usd) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    };
                }
                Err(failure) => {
                    if first_failure.as_ref().is_none_or(|kept: &Failure| kept.outcome != Outcome::Final && failure.outcome == Outcome::Final) {
                        first_failure = Some(failure);
                    }
                }
            }
        }
        match first_failure {
            Some(failure) if generated.images.is_empty() => Err(failure),
            _ => Ok(generated),
        }
    }

    /// One upstream call, read whole and translated; an asynchronous job it starts is polled
    /// until it finishes (see [`Gateway::poll`]). Once a provider that starts jobs has accepted
    /// the call, the job exists and is paid for: a failure to read its answer, or an answer that
    /// is not a job status, is final (see [`job_failure`]).
    async fn call(&self, target: &Target<'_>, call: UpstreamRequest, window: Window, keep: u32) -> Result<Generated, Failure> {
        let Window { deadline, limit_ms, .. } = window;
        let provider_id = &target.provider.id;
        let remaining = deadline.remaining_ms(self.clock);
        if remaining == 0 {
            return Err(transport_failure(TransportError::Timeout, provider_id, limit_ms));
        }
        let mut reply = self.send(call, remaining, keep).await.map_err(|spent| spent.failure(provider_id, limit_ms, self.config.max_subrequests))?;
        if !(200..300).contains(&reply.status) {
            return Err(self.error_answer(target, reply.status, reply.retry_after, reply.retry_after_ms, &mut reply.body, deadline).await);
        }
        let starts_jobs = target.provider.kind.starts_jobs();
        let body = match reply.body.read_all(deadline.remaining_ms(self.clock).max(1), MAX_ANSWER_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                let error = errors::unreadable(provider_id, "an answer of a size the gateway accepts");
                return Err(if starts_jobs { lost(error) } else { Failure::status(502, None, error) });
            }
            Err(error) if starts_jobs => {
                let why = format!("its answer to the create call did not arrive ({})", transport_text(&error));
                return Err(lost(GatewayError::new(ErrorKind::BadUpstream, why)));
            }
            Err(error) => return Err(transport_failure(error, provider_id, limit_ms)),
        };
        match providers::read_answer(target, reply.content_type.as_deref(), &body) {
            Ok(Progress::Done(generated)) => Ok(generated),
            Ok(Progress::Pending { poll, cancel }) => self.poll(target, poll, cancel, window, keep).await,
            Err(error) if starts_jobs => Err(job_failure(error)),
            Err(error) => Err(Failure::status(error.status(), None, error)),
        }
    }

    /// Sends `request` upstream, unless that would leave fewer than `keep` of this request's
    /// `max_subrequests` unused.
    pub(super) async fn send(&self, request: UpstreamRequest, limit_ms: u64, keep: u32) -> Result<UpstreamReply<U::Body>, Spent> {
        let sent = self.subrequests.get();
        if sent.saturating_add(keep) >= self.config.max_subrequests {
            return Err(Spent::Budget);
        }
        self.subrequests.set(sent + 1);
        self.upstream.send(request, limit_ms).await.map_err(Spent::Transport)
    }

    /// The failure for a non-2xx answer, read by the provider's adapter.
    pub(super) async fn error_answer(
        &self,
        target: &Target<'_>,
        status: u16,
        retry_after: Option<String>,
        retry_after_ms_header: Option<String>,
        body: &mut U::Body,
        deadline: Deadline,
    ) -> Failure {
        let text = self.read_error_body(body, deadline).await;
        let hint = retry_after_ms(retry_after_ms_header.as_deref(), retry_after.as_deref(), self.clock.now_ms());
        Failure::status(status, hint, providers::read_error(target, status, retry_after, &text))
    }

    /// Reads an upstream error body (capped); a body that fails to arrive counts as empty.
    async fn read_error_body(&self, body: &mut U::Body, deadline: Deadline) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < MAX_ERROR_BODY_BYTES {
            let remaining = deadline.remaining_ms(self.clock);
            match body.next_chunk(remaining.max(1)).await {
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        out.truncate(MAX_ERROR_BODY_BYTES);
        out
    }

    /// Reads the start of a 200 answer until [`AnswerScan`] decides; a 502 when it has no images.
    async fn check_answer(&self, body: &mut U::Body, deadline: Deadline, provider_id: &str, limit_ms: u64) -> Result<(), Failure> {
        let mut scan = AnswerScan::new();
        let mut read = 0usize;
        let verdict = loop {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                return Err(transport_failure(TransportError::Timeout, provider_id, limit_ms));
            }
            match body.next_chunk(remaining).await {
                Ok(Some(chunk)) => {
                    let verdict = scan.feed(&chunk);
                    read += chunk.len();
                    if verdict != Verdict::NeedMore {
                        break verdict;
                    }
                    if read > MAX_UNDECIDED_BYTES {
                        break Verdict::Malformed;
                    }
                }
                Ok(None) => break scan.finish(),
                Err(error) => return Err(transport_failure(error, provider_id, limit_ms)),
            }
        };
        let error = match verdict {
            Verdict::HasImages => return Ok(()),
            Verdict::NoImages => {
                GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider_id}' answered 200 without any image in 'data'."))
                    .with_code("empty_upstream_answer")
            }
            Verdict::NeedMore | Verdict::Malformed => GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' answered 200 with a body that is not an OpenAI Images answer."),
            ),
        };
        // A 200 without images counts as a 502 for the policy.
        Err(Failure::status(502, None, error))
    }
}

/// The failure for a transport error: a timeout after `limit_ms`, or no connection.
pub(super) fn transport_failure(error: TransportError, provider_id: &str, limit_ms: u64) -> Failure {
    match error {
        TransportError::Timeout => Failure {
            outcome: Outcome::Timeout,
            status: 524,
            error: GatewayError::new(
                ErrorKind::UpstreamTimeout,
                format!("The upstream provider '{provider_id}' did not answer within {limit_ms} ms; the call was cancelled."),
            ),
        },
        TransportError::Failed(why) => Failure {
            outcome: Outcome::ConnectionFailed,
            status: 502,
            error: GatewayError::new(ErrorKind::BadUpstream, format!("The gateway could not reach the upstream provider '{provider_id}': {why}"))
                .with_code("upstream_unreachable"),
        },
    }
}

/// A transport error in words, for a message.
pub(super) fn transport_text(error: &TransportError) -> String {
    match error {
        TransportError::Timeout => "the deadline passed".to_owned(),
        TransportError::Failed(why) => why.clone(),
    }
}

/// `x-imagegate-cost-usd` when the cost is known.
pub(super) fn cost_header(cost: Option<f64>) -> Option<(&'static str, String)> {
    cost.map(|cost| ("x-imagegate-cost-usd", pricing::header_value(cost)))
}
