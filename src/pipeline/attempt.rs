//! One attempt against one target: check what the target can do, plan the upstream calls, send
//! them within a time limit, and classify the answers. An OpenAI-shaped answer for an OpenAI
//! client is relayed unread once its first bytes show images; every other answer is read whole,
//! translated by the provider's adapter (polling asynchronous jobs), and written in the
//! caller's shape. Each attempt reports its [`Outcome`] for the policy and the status shown in
//! `x-imagegate-attempts`.

use base64::Engine as _;
use futures_util::future::join_all;

use crate::answer::{self, Shape};
use crate::answer_scan::{AnswerScan, Verdict};
use crate::clock::Deadline;
use crate::config::{ModelConfig, ProviderConfig, ProviderKind};
use crate::error::{ErrorKind, GatewayError};
use crate::http::{Reply, ReplyBody};
use crate::policy::{retry_after_ms, Outcome};
use crate::pricing;
use crate::providers::{self, errors, test_pattern, Generated, ImageData, Progress, Target};
use crate::request::{ImageRequest, ResponseFormat};
use crate::secret::Secrets;
use crate::upstream::{HeaderValue, Method, TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};

use super::Gateway;

/// The most of an upstream error body read to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The most of a 200 answer held while deciding whether it carries images.
const MAX_UNDECIDED_BYTES: usize = 1 << 20;
/// The largest answer read whole to be translated (ten large images in base64).
const MAX_ANSWER_BYTES: usize = 48 << 20;
/// The largest image downloaded for a client that asked for `b64_json`.
const MAX_IMAGE_BYTES: usize = 24 << 20;
/// The most polls of one asynchronous job (with the waits below, longer than any deadline);
/// it also bounds the subrequests one call makes.
const MAX_POLLS: u32 = 40;
/// The wait before the first poll; each later wait is 1.5 times longer, up to [`MAX_POLL_WAIT_MS`].
const FIRST_POLL_WAIT_MS: u64 = 1_000;
const MAX_POLL_WAIT_MS: u64 = 5_000;
/// How long a cancellation of an abandoned job may take.
const CANCEL_LIMIT_MS: u64 = 2_000;

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
    fn failed(outcome: Outcome, status: u16, error: GatewayError) -> Self {
        Attempt { outcome, status, result: Err(error) }
    }

    fn unusable(error: GatewayError) -> Self {
        Attempt::failed(Outcome::Unusable, error.status(), error)
    }
}

/// Why one upstream call gave no images.
struct Failure {
    outcome: Outcome,
    status: u16,
    error: GatewayError,
}

impl Failure {
    fn status(status: u16, retry_after_ms: Option<u64>, error: GatewayError) -> Self {
        Failure { outcome: Outcome::Status { status, retry_after_ms }, status, error }
    }

    fn into_attempt<B>(self) -> Attempt<B> {
        Attempt::failed(self.outcome, self.status, self.error)
    }
}

/// Why [`Gateway::send`] got no answer.
enum Spent {
    Transport(TransportError),
    /// The request has sent its `max_subrequests`.
    Budget,
}

impl Spent {
    fn failure(self, provider_id: &str, limit_ms: u64, max_subrequests: u32) -> Failure {
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

/// The wait before poll number `polls` (1-based).
fn poll_wait_ms(polls: u32) -> u64 {
    let wait = FIRST_POLL_WAIT_MS as f64 * 1.5f64.powi(polls.saturating_sub(1).min(10) as i32);
    (wait as u64).min(MAX_POLL_WAIT_MS)
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Tries `model` once for a caller speaking `shape`, giving up after `limit_ms`.
    pub(super) async fn attempt(
        &self,
        provider: &ProviderConfig,
        model: &ModelConfig,
        request: &ImageRequest,
        shape: Shape,
        limit_ms: u64,
    ) -> Attempt<U::Body> {
        if let Err(error) = model.supports.check(&model.id, request) {
            // Skipped without a call; another target may serve the request.
            return Attempt::unusable(error);
        }
        let trimmed;
        let request = if model.drop_params.is_empty() {
            request
        } else {
            trimmed = request.without(&model.drop_params);
            &trimmed
        };
        let deadline = Deadline::after(self.clock.now_ms(), limit_ms);
        let key = match provider.api_key_secret.as_deref().filter(|_| provider.kind != ProviderKind::TestPattern) {
            None => None,
            Some(name) => match self.secrets.get(name) {
                Some(key) => Some(key),
                None => {
                    let error = GatewayError::new(
                        ErrorKind::Internal,
                        format!("The provider '{}' has no API key: the secret '{name}' is not set.", provider.id),
                    )
                    .with_code("provider_key_missing");
                    return Attempt::failed(Outcome::Unusable, 500, error);
                }
            },
        };
        let target = Target { provider, model, key: key.as_ref() };
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
            match self.collect(&target, plan.calls, deadline, limit_ms).await {
                Ok(generated) => generated,
                Err(failure) => return failure.into_attempt(),
            }
        };
        self.deliver(&target, request, shape, generated, deadline).await
    }

    /// An OpenAI-shaped answer relayed to an OpenAI client: checked from its first bytes, then
    /// streamed on unread.
    async fn relay(&self, target: &Target<'_>, call: UpstreamRequest, request: &ImageRequest, deadline: Deadline, limit_ms: u64) -> Attempt<U::Body> {
        let provider_id = &target.provider.id;
        let mut reply = match self.send(call, limit_ms).await {
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
    /// even when a sibling call fails (they are paid for); with none, the first failure.
    async fn collect(&self, target: &Target<'_>, calls: Vec<UpstreamRequest>, deadline: Deadline, limit_ms: u64) -> Result<Generated, Failure> {
        let results = join_all(calls.into_iter().map(|call| self.call(target, call, deadline, limit_ms))).await;
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
                    first_failure.get_or_insert(failure);
                }
            }
        }
        match first_failure {
            Some(failure) if generated.images.is_empty() => Err(failure),
            _ => Ok(generated),
        }
    }

    /// One upstream call, read whole and translated; an asynchronous job is polled until it
    /// finishes, and cancelled (where the provider can) when the time runs out.
    async fn call(&self, target: &Target<'_>, call: UpstreamRequest, deadline: Deadline, limit_ms: u64) -> Result<Generated, Failure> {
        let provider_id = &target.provider.id;
        let mut next = call;
        let mut cancel = None;
        let mut polling: Option<UpstreamRequest> = None;
        let mut polls = 0;
        loop {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                self.abandon(cancel).await;
                return Err(transport_failure(TransportError::Timeout, provider_id, limit_ms));
            }
            let mut reply = match self.send(next, remaining).await {
                Ok(reply) => reply,
                Err(spent) => {
                    self.abandon(cancel).await;
                    return Err(spent.failure(provider_id, limit_ms, self.config.max_subrequests));
                }
            };
            if !(200..300).contains(&reply.status) {
                self.abandon(cancel).await;
                return Err(self.error_answer(target, reply.status, reply.retry_after, reply.retry_after_ms, &mut reply.body, deadline).await);
            }
            let body = match reply.body.read_all(deadline.remaining_ms(self.clock).max(1), MAX_ANSWER_BYTES).await {
                Ok(Some(body)) => body,
                Ok(None) => return Err(Failure::status(502, None, errors::unreadable(provider_id, "an answer of a size the gateway accepts"))),
                Err(error) => {
                    self.abandon(cancel).await;
                    return Err(transport_failure(error, provider_id, limit_ms));
                }
            };
            match providers::read_answer(target, reply.content_type.as_deref(), &body) {
                Ok(Progress::Done(generated)) => return Ok(generated),
                Ok(Progress::Pending { poll, cancel: can_cancel }) => {
                    // The job's address comes with the create answer; polls keep asking there
                    // (some providers' poll answers do not repeat it).
                    let poll = polling.get_or_insert(poll).clone();
                    cancel = cancel.or(can_cancel);
                    polls += 1;
                    if polls > MAX_POLLS {
                        self.abandon(cancel).await;
                        let error = GatewayError::new(
                            ErrorKind::UpstreamTimeout,
                            format!("The upstream provider '{provider_id}' did not finish the job after {MAX_POLLS} polls; it was abandoned."),
                        );
                        return Err(Failure { outcome: Outcome::Timeout, status: 524, error });
                    }
                    self.clock.sleep(poll_wait_ms(polls).min(deadline.remaining_ms(self.clock))).await;
                    next = poll;
                }
                Err(error) => return Err(Failure::status(error.status(), None, error)),
            }
        }
    }

    /// Sends `request` upstream, unless this request has used all its `max_subrequests`.
    async fn send(&self, request: UpstreamRequest, limit_ms: u64) -> Result<UpstreamReply<U::Body>, Spent> {
        let sent = self.subrequests.get();
        if sent >= self.config.max_subrequests {
            return Err(Spent::Budget);
        }
        self.subrequests.set(sent + 1);
        self.upstream.send(request, limit_ms).await.map_err(Spent::Transport)
    }

    /// Cancels an abandoned asynchronous job, if the provider can; the answer does not matter.
    async fn abandon(&self, cancel: Option<UpstreamRequest>) {
        if let Some(cancel) = cancel {
            let _ = self.send(cancel, CANCEL_LIMIT_MS).await;
        }
    }

    /// The failure for a non-2xx answer, read by the provider's adapter.
    async fn error_answer(
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

    /// The answer in the caller's shape and format: images the provider gave as URLs are
    /// downloaded when the caller wants base64 (OpenRouter's shape always does), and base64
    /// images become `data:` URLs when the caller asked for URLs.
    async fn deliver(&self, target: &Target<'_>, request: &ImageRequest, shape: Shape, mut generated: Generated, deadline: Deadline) -> Attempt<U::Body> {
        let wants = if shape == Shape::OpenRouter { Some(ResponseFormat::B64Json) } else { request.response_format };
        for image in &mut generated.images {
            match (&image.data, wants) {
                (ImageData::Url(url), Some(ResponseFormat::B64Json)) => match self.download(url, deadline).await {
                    Ok((b64, media_type)) => {
                        image.data = ImageData::Base64(b64);
                        image.media_type = media_type.or(image.media_type.take());
                    }
                    Err(why) => {
                        let error = GatewayError::new(
                            ErrorKind::BadUpstream,
                            format!("The upstream provider '{}' generated the image, but the gateway could not download it: {why}", target.provider.id),
                        )
                        .with_code("image_download_failed");
                        // Generated and paid for: another attempt would pay again.
                        return Attempt::failed(Outcome::Final, 502, error);
                    }
                },
                (ImageData::Base64(_), _) if image.media_type.is_none() => {
                    image.media_type = request.output_format.map(|f| format!("image/{}", f.name()));
                    if wants == Some(ResponseFormat::Url) {
                        let ImageData::Base64(b64) = &image.data else { unreachable!() };
                        image.data = ImageData::Url(answer::data_url(b64, image.media_type.as_deref()));
                    }
                }
                (ImageData::Base64(b64), Some(ResponseFormat::Url)) => {
                    image.data = ImageData::Url(answer::data_url(b64, image.media_type.as_deref()));
                }
                _ => {}
            }
        }
        let cost = generated.cost_usd.or_else(|| pricing::cost(target.model, request, generated.images.len()));
        let body = answer::render(shape, self.clock.now_ms() / 1000, &generated.images, cost);
        let mut reply = Reply::json(200, body);
        reply.headers.extend(cost_header(cost));
        Attempt { outcome: Outcome::Success, status: 200, result: Ok(reply) }
    }

    /// Downloads an image (no credentials: provider image URLs are signed or public) as base64,
    /// with its media type.
    async fn download(&self, url: &str, deadline: Deadline) -> Result<(String, Option<String>), String> {
        let remaining = deadline.remaining_ms(self.clock);
        if remaining == 0 {
            return Err("the deadline passed".to_owned());
        }
        let get = UpstreamRequest { method: Method::Get, url: url.to_owned(), headers: Vec::<(String, HeaderValue)>::new(), body: Vec::new() };
        let mut reply = match self.send(get, remaining).await {
            Ok(reply) => reply,
            Err(Spent::Transport(error)) => return Err(transport_text(&error)),
            Err(Spent::Budget) => return Err(format!("the request used all {} of its subrequests (max_subrequests)", self.config.max_subrequests)),
        };
        if !(200..300).contains(&reply.status) {
            return Err(format!("the image URL answered {}", reply.status));
        }
        let bytes = reply
            .body
            .read_all(deadline.remaining_ms(self.clock).max(1), MAX_IMAGE_BYTES)
            .await
            .map_err(|e| transport_text(&e))?
            .ok_or_else(|| format!("the image is larger than {MAX_IMAGE_BYTES} bytes"))?;
        let media_type = reply.content_type.filter(|ct| ct.starts_with("image/")).map(|ct| ct.split(';').next().unwrap_or("").trim().to_owned());
        Ok((base64::engine::general_purpose::STANDARD.encode(bytes), media_type))
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
            Verdict::NoImages => GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' answered 200 without any image in 'data'."),
            )
            .with_code("empty_upstream_answer"),
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
fn transport_failure(error: TransportError, provider_id: &str, limit_ms: u64) -> Failure {
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
fn transport_text(error: &TransportError) -> String {
    match error {
        TransportError::Timeout => "the deadline passed".to_owned(),
        TransportError::Failed(why) => why.clone(),
    }
}

/// `x-imagegate-cost-usd` when the cost is known.
fn cost_header(cost: Option<f64>) -> Option<(&'static str, String)> {
    cost.map(|cost| ("x-imagegate-cost-usd", pricing::header_value(cost)))
}
