//! Polling an asynchronous job (Replicate, BFL) until it finishes, within the attempt's time.
//!
//! Once the create call has answered, the job exists and is paid for. A poll that fails for a
//! passing reason (a 429, a 5xx, a lost connection, a body cut short) is therefore waited out and
//! asked again, and a job lost for good (a poll refused with another 4xx, an answer that is not
//! a job status, a finished job whose images cannot be read, the request's upstream budget spent)
//! is [`Outcome::Final`](crate::policy::Outcome::Final): never retried, never sent elsewhere. A job the provider reports as failed
//! or refused is judged by its status like any answer. When the attempt's time runs out the job is
//! cancelled where the provider can cancel, else abandoned (BFL bills it all the same), and the
//! attempt ends as a final 524: no retry or fallback pays for a second job.

use crate::clock::Deadline;
use crate::error::{ErrorKind, GatewayError};
use crate::http::path_of;
use crate::providers::{AnswerError, Generated, Progress, Target};
use crate::secret::Secrets;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamRequest};

use super::failure::{answer_failure, lost, over_budget, Failure, Spent, Window};
use super::Gateway;

/// The most polls of one job (with the waits below, longer than any deadline); it also bounds
/// the subrequests one call makes.
pub(super) const MAX_POLLS: u32 = 40;
/// The wait before the first poll; each later wait is 1.5 times longer, up to [`MAX_POLL_WAIT_MS`].
const FIRST_POLL_WAIT_MS: u64 = 1_000;
const MAX_POLL_WAIT_MS: u64 = 5_000;
/// How long a cancellation of an abandoned job may take: what is left of the request's
/// deadline, at most [`CANCEL_LIMIT_MS`] and at least [`CANCEL_MARGIN_MS`] (by which a 524 after a
/// cancel may pass the deadline: a job left running is billed).
const CANCEL_LIMIT_MS: u64 = 2_000;
const CANCEL_MARGIN_MS: u64 = 500;

/// The wait before poll number `polls` (1-based).
fn poll_wait_ms(polls: u32) -> u64 {
    let wait = FIRST_POLL_WAIT_MS as f64 * 1.5f64.powi(polls.saturating_sub(1).min(10) as i32);
    (wait as u64).min(MAX_POLL_WAIT_MS)
}

/// What one poll gave.
enum Polled {
    Answer(Result<Progress, AnswerError>),
    /// A passing failure: ask again after the next wait.
    Again,
    /// The attempt's time ran out.
    OutOfTime,
    /// The job cannot be followed any further.
    Lost(Failure),
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Polls a running job with `poll` (the address the create answer gave: some providers'
    /// poll answers do not repeat it) until it finishes, fails, or the time runs out; `cancel`
    /// stops it when the gateway gives up. Polls leave `keep` of the request's subrequests unused.
    pub(super) async fn poll(
        &self,
        target: &Target<'_>,
        poll: UpstreamRequest,
        mut cancel: Option<UpstreamRequest>,
        window: Window,
        keep: u32,
    ) -> Result<Generated, Failure> {
        let Window { deadline, limit_ms, request_deadline } = window;
        let provider_id = &target.provider.id;
        for polls in 1..=MAX_POLLS {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                break;
            }
            self.clock.sleep(poll_wait_ms(polls).min(remaining)).await;
            match self.poll_once(target, poll.clone(), deadline, keep).await {
                Polled::Answer(Ok(Progress::Done(generated))) => return Ok(generated),
                Polled::Answer(Ok(Progress::Pending { cancel: also, .. })) => cancel = cancel.or(also),
                // The job has ended (failed, refused, or finished unreadably): nothing to cancel.
                Polled::Answer(Err(error)) => return Err(answer_failure(error)),
                Polled::Again => {}
                Polled::OutOfTime => break,
                Polled::Lost(failure) => {
                    self.abandon(cancel, request_deadline).await;
                    return Err(failure.into_final());
                }
            }
        }
        let cancelled = cancel.is_some();
        self.abandon(cancel, request_deadline).await;
        let what = if cancelled { "it was cancelled" } else { "it was abandoned" };
        let why = if deadline.remaining_ms(self.clock) == 0 { format!("within {limit_ms} ms") } else { format!("after {MAX_POLLS} polls") };
        let error = GatewayError::new(ErrorKind::UpstreamTimeout, format!("The upstream provider '{provider_id}' did not finish the job {why}; {what}."));
        Err(Failure::paid(524, error))
    }

    /// One poll, read whole and translated.
    async fn poll_once(&self, target: &Target<'_>, poll: UpstreamRequest, deadline: Deadline, keep: u32) -> Polled {
        let provider_id = &target.provider.id;
        let remaining = deadline.remaining_ms(self.clock);
        if remaining == 0 {
            return Polled::OutOfTime;
        }
        let poll_url = poll.url.clone();
        let mut reply = match self.send(poll, remaining, keep).await {
            Ok(reply) => reply,
            Err(Spent::Transport(TransportError::Failed(_))) => return Polled::Again,
            Err(Spent::Transport(TransportError::Timeout)) => return Polled::OutOfTime,
            // The poll itself cannot be made: asking again cannot help.
            Err(Spent::Transport(TransportError::NotSent(why))) => {
                return Polled::Lost(lost(GatewayError::new(ErrorKind::BadUpstream, format!("its status could not be asked for ({why})"))))
            }
            Err(spent @ Spent::Budget) => return Polled::Lost(spent.failure(provider_id, 0, self.config.max_subrequests)),
        };
        if reply.status == 429 || reply.status >= 500 {
            return Polled::Again;
        }
        if !(200..300).contains(&reply.status) {
            let failure = self.error_answer(target, path_of(&poll_url), &mut reply, deadline).await;
            return Polled::Lost(lost(failure.error));
        }
        match reply.body.read_all(deadline.remaining_ms(self.clock).max(1), &self.upstream_bytes).await {
            Ok(Some(body)) => match target.adapter.read_answer(target, reply.content_type.as_deref(), &body) {
                // Not a status the adapter knows: where the job stands is unknown.
                Err(error @ AnswerError::Unreadable { .. }) => Polled::Lost(lost(error.to_error())),
                read => Polled::Answer(read),
            },
            Ok(None) => Polled::Lost(over_budget(provider_id, self.config.max_upstream_bytes)),
            Err(TransportError::Failed(_) | TransportError::NotSent(_)) => Polled::Again,
            Err(TransportError::Timeout) => Polled::OutOfTime,
        }
    }

    /// Cancels an abandoned job, if the provider can; the answer does not matter. It may use
    /// the subrequests the polls left unused, and the time [`CANCEL_LIMIT_MS`] describes.
    pub(super) async fn abandon(&self, cancel: Option<UpstreamRequest>, request_deadline: Deadline) {
        if let Some(cancel) = cancel {
            let limit_ms = request_deadline.remaining_ms(self.clock).clamp(CANCEL_MARGIN_MS, CANCEL_LIMIT_MS);
            let _ = self.send(cancel, limit_ms, 0).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_wait_one_second_then_half_as_long_again_up_to_five() {
        let waits: Vec<u64> = (1..=7).map(poll_wait_ms).collect();
        assert_eq!(waits, [1000, 1500, 2250, 3375, 5000, 5000, 5000]);
    }
}
