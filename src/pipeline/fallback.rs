//! The fallback loop: the first target (requested, or drawn by weight), its retries, then each
//! fallback in order, until one answers, the policy stops, or the deadline passes.
//!
//! Paid work is bounded: each model is tried once however many of its names the fallbacks list,
//! and at most `max_attempts` attempts reach an upstream. So a request pays for at most
//! `min(max_attempts, (1 + retry.count) × distinct models)` attempts (each of `n` images where a
//! provider makes one per call).

use crate::error::GatewayError;
use crate::http::Reply;
use crate::policy::{Next, Outcome, Policy};
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::upstream::Upstream;

use super::attempt::Answering;
use super::context::RequestContext;
use super::Gateway;
use crate::state::AttemptRecord;

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Serves `request` under `policy`, starting from the `requested` model. Every attempt is
    /// recorded in `cx.attempts`; a successful answer's cost and image count in `cx` too.
    ///
    /// When nothing succeeds, the last attempt's error is the answer (the gateway already
    /// retried, so it tells the client not to), with the attempts named in its message.
    pub(super) async fn try_targets(
        &self,
        request: &ImageRequest,
        policy: &Policy,
        requested: &str,
        answering: Answering<'_>,
        cx: &mut RequestContext,
    ) -> Result<Reply<U::Body>, GatewayError> {
        let deadline = cx.deadline;
        let first = policy.first_target(requested, self.random.unit());
        let targets = std::iter::once(first).chain(policy.fallbacks.iter().map(String::as_str));
        let mut tried: Vec<&str> = Vec::new();
        let mut paid = 0;
        let mut capped = false;
        let mut last_error = None;
        'targets: for target in targets {
            let (model, provider) = self.config.resolve_model(Some(target))?;
            // A model is tried once, under whichever of its names or aliases came first.
            if tried.contains(&model.id.as_str()) {
                continue;
            }
            tried.push(&model.id);
            let mut retries = 0;
            loop {
                let remaining = deadline.remaining_ms(self.clock);
                if remaining == 0 {
                    break 'targets;
                }
                if paid >= self.config.max_attempts {
                    capped = true;
                    break 'targets;
                }
                let limit_ms = policy.call_timeout_ms.map_or(remaining, |call| call.min(remaining));
                let started = self.clock.now_ms();
                cx.started_at.get_or_insert(started);
                let attempt = self.attempt(provider, model, request, answering, limit_ms, deadline).await;
                let ms = self.clock.now_ms().saturating_sub(started);
                cx.attempts.push(AttemptRecord { model: model.id.clone(), provider: provider.id.clone(), status: attempt.status, ms });
                let error = match attempt.result {
                    Ok(reply) => {
                        cx.cost_usd = attempt.cost_usd;
                        cx.short_of_images = attempt.short_of_images;
                        cx.cache_entry = attempt.cache_entry;
                        cx.kept = attempt.kept;
                        cx.streamed = attempt.streamed;
                        return Ok(reply);
                    }
                    Err(error) => error,
                };
                // A target that merely cannot serve the request made no call: it costs nothing,
                // and does not hide a real answer.
                if attempt.outcome != Outcome::Unusable {
                    paid += 1;
                }
                if attempt.outcome != Outcome::Unusable || last_error.is_none() {
                    last_error = Some(error);
                }
                match policy.next(attempt.outcome, retries, deadline.remaining_ms(self.clock), self.random.unit()) {
                    Next::Retry { after_ms } => {
                        self.clock.sleep(after_ms).await;
                        retries += 1;
                    }
                    Next::FallBack => continue 'targets,
                    Next::Stop => break 'targets,
                }
            }
        }
        let error = last_error.unwrap_or_else(|| super::deadline_error(self.config.deadline_ms));
        let attempts = cx.attempts.len();
        let cap =
            if capped { format!("; the gateway makes at most {} paid attempts per request (max_attempts)", self.config.max_attempts) } else { String::new() };
        let message = format!("{} (after {attempts} attempt{}: {}{cap})", error.message, if attempts == 1 { "" } else { "s" }, cx.trail().join(", "));
        Err(GatewayError { message, ..error }.final_answer())
    }
}
