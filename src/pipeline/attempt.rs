//! One attempt against one target: build the upstream request, send it within a time limit,
//! classify the answer, and check that a 200 carries images. Each attempt reports its
//! [`Outcome`] for the policy and the status shown in `x-imagegate-attempts`.

use crate::answer_scan::{AnswerScan, Verdict};
use crate::clock::Deadline;
use crate::config::{ModelConfig, ProviderConfig, ProviderKind};
use crate::error::{ErrorKind, GatewayError};
use crate::http::{Reply, ReplyBody};
use crate::policy::{retry_after_ms, Outcome};
use crate::providers::{self, test_pattern, Target};
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::upstream::{TransportError, Upstream, UpstreamBody};

use super::Gateway;

/// The most of an upstream error body read to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The most of a 200 answer held while deciding whether it carries images.
const MAX_UNDECIDED_BYTES: usize = 1 << 20;

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
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Tries `model` once, giving up after `limit_ms`.
    pub(super) async fn attempt(&self, provider: &ProviderConfig, model: &ModelConfig, request: &ImageRequest, limit_ms: u64) -> Attempt<U::Body> {
        if let Err(error) = model.supports.check(&model.id, request) {
            // Skipped without a call; another target may serve the request.
            return Attempt::failed(Outcome::Unusable, error.status(), error);
        }
        match provider.kind {
            ProviderKind::TestPattern => match test_pattern::generate(request, self.clock.now_ms() / 1000) {
                Ok(answer) => Attempt { outcome: Outcome::Success, status: 200, result: Ok(Reply::json(200, answer)) },
                // It cannot render this request (size, format): another target may.
                Err(error) => Attempt::failed(Outcome::Unusable, error.status(), error),
            },
            _ => self.relay(provider, model, request, limit_ms).await,
        }
    }

    /// An attempt against an upstream speaking the OpenAI Images API.
    async fn relay(&self, provider: &ProviderConfig, model: &ModelConfig, request: &ImageRequest, limit_ms: u64) -> Attempt<U::Body> {
        let secret_name = provider.api_key_secret.as_deref().expect("validated: openai providers name a secret");
        let Some(key) = self.secrets.get(secret_name) else {
            let error = GatewayError::new(
                ErrorKind::Internal,
                format!("The provider '{}' has no API key: the secret '{secret_name}' is not set.", provider.id),
            )
            .with_code("provider_key_missing");
            return Attempt::failed(Outcome::Unusable, 500, error);
        };
        let deadline = Deadline::after(self.clock.now_ms(), limit_ms);
        let target = Target { provider, model, key: Some(&key) };
        let mut plan = match providers::check_params(&target, request).and_then(|()| providers::plan(&target, request)) {
            Ok(plan) => plan,
            Err(error) => return Attempt::failed(Outcome::Unusable, error.status(), error),
        };
        let upstream_request = plan.calls.remove(0);
        let mut reply = match self.upstream.send(upstream_request, limit_ms).await {
            Ok(reply) => reply,
            Err(error) => return transport_failure(error, &provider.id, limit_ms),
        };
        if !(200..300).contains(&reply.status) {
            let body = self.read_error_body(&mut reply.body, deadline).await;
            let hint = retry_after_ms(reply.retry_after_ms.as_deref(), reply.retry_after.as_deref(), self.clock.now_ms());
            let error = providers::read_error(&target, reply.status, reply.retry_after, &body);
            return Attempt::failed(Outcome::Status { status: reply.status, retry_after_ms: hint }, reply.status, error);
        }
        match self.check_answer(&mut reply.body, deadline, &provider.id, limit_ms).await {
            Ok(()) => Attempt {
                outcome: Outcome::Success,
                status: reply.status,
                result: Ok(Reply {
                    status: 200,
                    headers: vec![("content-type", "application/json".to_owned())],
                    body: ReplyBody::Relay(reply.body),
                }),
            },
            Err(failure) => failure,
        }
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
    async fn check_answer(&self, body: &mut U::Body, deadline: Deadline, provider_id: &str, limit_ms: u64) -> Result<(), Attempt<U::Body>> {
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
        Err(Attempt::failed(Outcome::Status { status: 502, retry_after_ms: None }, 502, error))
    }
}

/// The attempt that ends in a transport failure: a timeout after `limit_ms`, or no connection.
fn transport_failure<B>(error: TransportError, provider_id: &str, limit_ms: u64) -> Attempt<B> {
    match error {
        TransportError::Timeout => Attempt::failed(
            Outcome::Timeout,
            524,
            GatewayError::new(
                ErrorKind::UpstreamTimeout,
                format!("The upstream provider '{provider_id}' did not answer within {limit_ms} ms; the call was cancelled."),
            ),
        ),
        TransportError::Failed(why) => Attempt::failed(
            Outcome::ConnectionFailed,
            502,
            GatewayError::new(ErrorKind::BadUpstream, format!("The gateway could not reach the upstream provider '{provider_id}': {why}"))
                .with_code("upstream_unreachable"),
        ),
    }
}
