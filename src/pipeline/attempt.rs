//! One attempt against one target: check what the target can do, plan the upstream calls, send
//! them within a time limit, and classify the answers. An OpenAI-shaped answer for an OpenAI
//! client is relayed unread once its first bytes show images; every other answer is read whole,
//! translated by the provider's adapter (polling asynchronous jobs), and written in the
//! caller's shape. Each attempt reports its [`Outcome`] for the policy and the status shown in
//! `x-imagegate-attempts`.

use futures_util::future::join_all;

use crate::answer::Shape;
use crate::answer_scan::{check_whole, AnswerScan, Verdict, SMALL_ANSWER_BYTES};
use crate::clock::Deadline;
use crate::config::{ModelConfig, ProviderConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::http::{path_of, Reply, ReplyBody};
use crate::image_stream::StreamOf;
use crate::policy::{retry_after_ms, Outcome};
use crate::pricing;
use crate::providers::{self, errors, Generated, Planned, Progress, Target};
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};

use super::failure::{answer_failure, create_lost, cut_off, over_budget, transport_failure, Failure, Spent, Window};
use super::files::{Filing, Kept};
use super::Gateway;

/// The most of an upstream error body read to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The most of a large 200 answer held while deciding whether it carries images.
const MAX_UNDECIDED_BYTES: usize = 1 << 20;

/// How one attempt ended.
pub(super) struct Attempt<B> {
    /// What the policy decides on.
    pub outcome: Outcome,
    /// The upstream's status; 524 for a timeout, 502 for a failed connection or a 200 without
    /// images, the would-be status for a target that cannot serve the request.
    pub status: u16,
    pub result: Result<Reply<B>, GatewayError>,
    /// What a successful answer cost, when known.
    pub cost_usd: Option<f64>,
    /// `(delivered, asked)` when a successful answer has fewer images than asked.
    pub short_of_images: Option<(usize, u8)>,
    /// For a cache-enabled request, whether a success may be stored, or why not.
    pub cache_entry: Option<Result<(), &'static str>>,
    /// A success's images, where they are kept.
    pub kept: Option<Kept>,
    /// For a provider's stream being relayed, what its end is priced and kept with.
    pub streamed: Option<Box<super::context::StreamTerms>>,
}

impl<B> Attempt<B> {
    pub(super) fn failed(outcome: Outcome, status: u16, error: GatewayError) -> Self {
        Attempt { outcome, status, result: Err(error), cost_usd: None, short_of_images: None, cache_entry: None, kept: None, streamed: None }
    }

    /// A successful attempt: `reply`, what it cost, and how many images it has of those asked.
    pub(super) fn answered(status: u16, reply: Reply<B>, cost_usd: Option<f64>, short_of_images: Option<(usize, u8)>) -> Self {
        Attempt { outcome: Outcome::Success, status, result: Ok(reply), cost_usd, short_of_images, cache_entry: None, kept: None, streamed: None }
    }

    fn unusable(error: GatewayError) -> Self {
        Attempt::failed(Outcome::Unusable, error.status(), error)
    }
}

/// How an attempt's answer is delivered: in the caller's `shape`; for a cache-enabled request,
/// one whose images are kept (`files`), or one whose answer the gateway adds to (`whole`), read
/// whole rather than relayed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering<'r> {
    pub shape: Shape,
    pub for_cache: bool,
    pub files: Option<Filing<'r>>,
    pub whole: bool,
    /// Answered as server-sent events (`stream: true`): relayed from a provider that streams,
    /// else the images read whole, as base64, and written as events.
    pub stream: Option<StreamOf>,
}

impl Answering<'_> {
    /// Whether an upstream answer may be relayed as it streams, unread.
    fn may_relay(&self) -> bool {
        self.shape == Shape::OpenAi && !self.for_cache && self.files.is_none() && !self.whole && self.stream.is_none()
    }

    /// Whether a provider's own stream may be relayed: not for an answer the cache stores or
    /// a route names, which is read whole (and answered as `completed` events).
    fn may_relay_stream(&self) -> bool {
        self.stream.is_some() && !self.for_cache && !self.whole
    }
}

impl<B> From<Failure> for Attempt<B> {
    fn from(failure: Failure) -> Self {
        Attempt::failed(failure.outcome, failure.status, failure.error)
    }
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Tries `model` once for a caller speaking `shape`, giving up on the calls after
    /// `limit_ms`; images already generated may still be downloaded until `request_deadline`.
    pub(super) async fn attempt(
        &self,
        provider: &ProviderConfig,
        model: &ModelConfig,
        request: &ImageRequest,
        answering: Answering<'_>,
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
        let adapter = provider.kind.adapter();
        let key = match provider.api_key_secret.as_deref().filter(|_| adapter.calls_upstream()) {
            None => None,
            Some(name) => match self.secrets.get(name) {
                Some(key) => Some(key),
                None => {
                    // The name stays in the log: an operator may have pasted a key as the name.
                    let error = GatewayError::new(
                        ErrorKind::Internal,
                        format!("The provider '{}' has no API key: the secret its api_key_secret names is not set.", provider.id),
                    )
                    .with_code("provider_key_missing")
                    .with_log_detail(format!("the secret '{name}' is not set"));
                    return Attempt::failed(Outcome::Unusable, 500, error);
                }
            },
        };
        let target = provider.target(model, key.as_ref(), limit_ms);
        if let Err(error) = providers::check_params(&target, request) {
            return Attempt::unusable(error);
        }
        let window = Window { deadline, limit_ms, request_deadline };
        if answering.may_relay_stream() && adapter.streams(model.upstream_name(), model.supports.stream) {
            let streamed = request.streamed_upstream();
            return match adapter.plan(&target, &streamed) {
                Ok(Planned::Calls(plan)) if plan.calls.len() == 1 => {
                    let call = plan.calls.into_iter().next().expect("one call");
                    self.stream_relay(&target, provider, model, call, request, answering, window).await
                }
                Ok(_) => Attempt::unusable(GatewayError::new(ErrorKind::Internal, format!("The provider '{}' cannot stream this request.", provider.id))),
                Err(error) => Attempt::unusable(error),
            };
        }
        let plan = match adapter.plan(&target, request) {
            Ok(Planned::Calls(plan)) => plan,
            Ok(Planned::Made(generated)) => return self.deliver(provider, model, request, answering, generated, request_deadline).await,
            // It cannot map this request (a size, a format): another target may.
            Err(error) => return Attempt::unusable(error),
        };
        // A token-priced answer is read whole: its `usage` is what it costs.
        if plan.relay && answering.may_relay() && plan.calls.len() == 1 && !pricing::by_tokens(model) {
            let call = plan.calls.into_iter().next().expect("one call");
            return self.relay(&target, model, call, request, window).await;
        }
        match self.collect(&target, plan.calls, request.n, window).await {
            Ok(generated) => self.deliver(provider, model, request, answering, generated, request_deadline).await,
            Err(failure) => failure.into(),
        }
    }

    /// An OpenAI-shaped answer relayed to an OpenAI client: checked (whole when small, from its
    /// first bytes when large), then streamed on unread until the request's deadline.
    async fn relay(&self, target: &Target<'_>, model: &ModelConfig, call: UpstreamRequest, request: &ImageRequest, window: Window) -> Attempt<U::Body> {
        let Window { deadline, request_deadline, .. } = window;
        let provider_id = &target.provider.id;
        let mut reply = match self.answered(target, call, window).await {
            Ok(reply) => reply,
            Err(failure) => return failure.into(),
        };
        if let Err(failure) = self.check_answer(&mut reply.body, reply.length, deadline, provider_id).await {
            return failure.into();
        }
        reply.body.relay_within(request_deadline.remaining_ms(self.clock));
        let headers = vec![("content-type", "application/json".to_owned())];
        let cost = pricing::cost(model, request, request.n as usize, None);
        Attempt::answered(reply.status, Reply { status: 200, headers, body: ReplyBody::Relay(reply.body) }, cost, None)
    }

    /// Sends the one call of an attempt whose 2xx answer is read on by the caller; a failure
    /// for no answer, or for an error answer (read by the provider's adapter).
    pub(super) async fn answered(&self, target: &Target<'_>, call: UpstreamRequest, window: Window) -> Result<UpstreamReply<U::Body>, Failure> {
        let Window { deadline, limit_ms, .. } = window;
        let path = path_of(&call.url).to_owned();
        let mut reply = self.send(call, limit_ms, 0).await.map_err(|spent| spent.failure(target.provider.id, limit_ms, self.config.max_subrequests))?;
        if !(200..300).contains(&reply.status) {
            return Err(self.error_answer(target, &path, &mut reply, deadline).await);
        }
        Ok(reply)
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
                    generated.tokens = match (generated.tokens, done.tokens) {
                        (Some(a), Some(b)) => Some(a.plus(b)),
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
    /// until it finishes (see [`Gateway::poll`]). Once the upstream may have started paid work
    /// the call is final whatever follows: a job create that got no answer, a 2xx answer that
    /// did not arrive whole or exceeds the request's byte budget, or one without readable images
    /// (see [`answer_failure`]).
    async fn call(&self, target: &Target<'_>, call: UpstreamRequest, window: Window, keep: u32) -> Result<Generated, Failure> {
        let Window { deadline, limit_ms, .. } = window;
        let provider_id = &target.provider.id;
        let remaining = deadline.remaining_ms(self.clock);
        if remaining == 0 {
            return Err(transport_failure(TransportError::Timeout, provider_id, limit_ms));
        }
        let path = path_of(&call.url).to_owned();
        let mut reply = match self.send(call, remaining, keep).await {
            Ok(reply) => reply,
            // The create may have reached the provider before the connection failed.
            Err(Spent::Transport(error)) if target.adapter.starts_jobs() => return Err(create_lost(error, provider_id, limit_ms)),
            Err(spent) => return Err(spent.failure(provider_id, limit_ms, self.config.max_subrequests)),
        };
        if !(200..300).contains(&reply.status) {
            return Err(self.error_answer(target, &path, &mut reply, deadline).await);
        }
        self.translated(target, reply, window, keep).await
    }

    /// A 2xx answer read whole (within the request's byte budget) and translated by the
    /// provider's adapter; an asynchronous job it starts is polled until it finishes.
    pub(super) async fn translated(&self, target: &Target<'_>, mut reply: UpstreamReply<U::Body>, window: Window, keep: u32) -> Result<Generated, Failure> {
        let provider_id = &target.provider.id;
        let body = match reply.body.read_all(window.deadline.remaining_ms(self.clock).max(1), &self.upstream_bytes).await {
            Ok(Some(body)) => body,
            Ok(None) => return Err(over_budget(provider_id, self.config.max_upstream_bytes)),
            Err(error) => return Err(cut_off(error, provider_id)),
        };
        let progress = target.adapter.read_answer(target, reply.content_type.as_deref(), &body);
        // The raw answer is not kept while a job is polled or the images are delivered.
        drop(body);
        match progress {
            Ok(Progress::Done(generated)) => Ok(generated),
            Ok(Progress::Pending { poll, cancel }) => self.poll(target, poll, cancel, window, keep).await,
            Err(error) => Err(answer_failure(error)),
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

    /// The failure for a non-2xx answer to a call at `path`, read by the provider's adapter.
    pub(super) async fn error_answer(&self, target: &Target<'_>, path: &str, reply: &mut UpstreamReply<U::Body>, deadline: Deadline) -> Failure {
        let text = self.read_error_body(&mut reply.body, deadline).await;
        let hint = retry_after_ms(reply.retry_after_ms.as_deref(), reply.retry_after.as_deref(), self.clock.now_ms());
        Failure::status(reply.status, hint, providers::read_error(target, path, reply.status, reply.retry_after.take(), &text))
    }

    /// Reads an upstream error body (capped, and taken from the request's byte budget); what
    /// fails to arrive, or does not fit the budget, is left out.
    async fn read_error_body(&self, body: &mut U::Body, deadline: Deadline) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < MAX_ERROR_BODY_BYTES {
            let remaining = deadline.remaining_ms(self.clock);
            match body.next_chunk(remaining.max(1)).await {
                Ok(Some(chunk)) if self.upstream_bytes.take(chunk.len()) => out.extend_from_slice(&chunk),
                Ok(_) | Err(_) => break,
            }
        }
        out.truncate(MAX_ERROR_BODY_BYTES);
        out
    }

    /// Checks a 2xx answer before it is relayed: a small one (of a declared `length` up to
    /// [`SMALL_ANSWER_BYTES`]) is read to its end and checked whole, a larger one from its first
    /// bytes until [`AnswerScan`] decides; what is read is taken from the request's byte budget.
    /// A 200 has been paid for, so every failure here is final.
    async fn check_answer(&self, body: &mut U::Body, length: Option<u64>, deadline: Deadline, provider_id: &str) -> Result<(), Failure> {
        let small = length.is_some_and(|length| length <= SMALL_ANSWER_BYTES as u64);
        let mut scan = AnswerScan::new();
        let mut whole = Vec::new();
        let mut read = 0usize;
        let verdict = loop {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                return Err(cut_off(TransportError::Timeout, provider_id));
            }
            let next = body.next_chunk(remaining).await;
            if let Ok(Some(chunk)) = &next {
                if !self.upstream_bytes.take(chunk.len()) {
                    return Err(over_budget(provider_id, self.config.max_upstream_bytes));
                }
            }
            match next {
                Ok(Some(chunk)) if small => whole.extend_from_slice(&chunk),
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
                Ok(None) if small => break check_whole(&whole),
                Ok(None) => break scan.finish(),
                Err(error) => return Err(cut_off(error, provider_id)),
            }
        };
        let error = match verdict {
            Verdict::HasImages => return Ok(()),
            Verdict::NoImages => GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' answered 200 without a usable image (no 'data' entry with 'b64_json' or 'url')."),
            )
            .with_code("empty_upstream_answer"),
            Verdict::NeedMore | Verdict::Malformed => GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' answered 200 with a body that is not a complete OpenAI Images answer."),
            )
            .with_code(errors::UNREADABLE),
        };
        // A 200 without images counts as a 502; the call may have been paid for.
        Err(Failure::paid(502, error))
    }
}
