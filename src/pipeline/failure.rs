//! Why an upstream call gave no images, as the policy and the client see it.
//!
//! A [`Failure`] carries the policy's [`Outcome`], the status shown in `x-imagegate-attempts` and
//! the client's error. Once the upstream may have started paid work (a job was created, a 200
//! arrived), a failure is [`Outcome::Final`]: never retried, never sent to a fallback.

use crate::clock::Deadline;
use crate::error::{ErrorKind, GatewayError};
use crate::policy::Outcome;
use crate::providers::AnswerError;
use crate::upstream::TransportError;

/// Why one upstream call gave no images.
pub(super) struct Failure {
    pub outcome: Outcome,
    pub status: u16,
    pub error: GatewayError,
}

/// What a final failure's message adds: why the gateway did not try again.
const CHARGE_RISK: &str = "The upstream may have started (and may charge for) the work, so the gateway did not try again.";

impl Failure {
    pub fn status(status: u16, retry_after_ms: Option<u64>, error: GatewayError) -> Self {
        Failure { outcome: Outcome::Status { status, retry_after_ms }, status, error }
    }

    /// A failure after the upstream may have started paid work: final, with `status`, and the
    /// charge risk said in the message.
    pub fn paid(status: u16, error: GatewayError) -> Self {
        let message = format!("{} {CHARGE_RISK}", error.message);
        Failure { outcome: Outcome::Final, status, error: GatewayError { message, ..error } }
    }

    /// This failure, never retried nor sent elsewhere: the upstream already has (and charges
    /// for) the work.
    pub fn into_final(self) -> Self {
        Failure { outcome: Outcome::Final, ..self }
    }
}

/// Why [`Gateway::send`](super::Gateway) got no answer.
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

/// The failure for a transport error before any answer: a timeout after `limit_ms`, or no
/// connection. Both may be retried: nothing was answered.
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
        TransportError::Failed(why) | TransportError::NotSent(why) => Failure {
            outcome: Outcome::ConnectionFailed,
            status: 502,
            error: GatewayError::new(ErrorKind::BadUpstream, format!("The gateway could not reach the upstream provider '{provider_id}': {why}"))
                .with_code("upstream_unreachable"),
        },
    }
}

/// The failure for a 2xx answer whose body did not arrive whole (cut off, or past the time
/// limit): final, since the upstream did the work.
pub(super) fn cut_off(error: TransportError, provider_id: &str) -> Failure {
    let (status, kind) = match error {
        TransportError::Timeout => (524, ErrorKind::UpstreamTimeout),
        TransportError::Failed(_) | TransportError::NotSent(_) => (502, ErrorKind::BadUpstream),
    };
    let message = format!("The upstream provider '{provider_id}' answered, but its answer did not arrive whole ({}).", transport_text(&error));
    Failure::paid(status, GatewayError::new(kind, message).with_code("upstream_answer_cut_off"))
}

/// The failure for a job create that got no answer (a lost connection, or no answer within
/// `limit_ms`): the job may exist, and be billed, so it is final. A create that never left the
/// gateway is an ordinary connection failure.
pub(super) fn create_lost(error: TransportError, provider_id: &str, limit_ms: u64) -> Failure {
    match error {
        TransportError::NotSent(_) => transport_failure(error, provider_id, limit_ms),
        TransportError::Timeout => Failure::paid(
            524,
            GatewayError::new(
                ErrorKind::UpstreamTimeout,
                format!("The upstream provider '{provider_id}' did not answer the job's create call within {limit_ms} ms."),
            ),
        ),
        TransportError::Failed(why) => lost(GatewayError::new(ErrorKind::BadUpstream, format!("its answer to the create call did not arrive ({why})"))),
    }
}

/// The final failure for an answer read past the request's `max_upstream_bytes`.
pub(super) fn over_budget(provider_id: &str, max_bytes: usize) -> Failure {
    let message = format!(
        "The upstream provider '{provider_id}' answered with more than the {max_bytes} bytes (max_upstream_bytes) one request may read into the gateway."
    );
    Failure::paid(502, GatewayError::new(ErrorKind::BadUpstream, message).with_code("upstream_answer_too_large"))
}

/// A transport error in words, for a message.
pub(super) fn transport_text(error: &TransportError) -> String {
    match error {
        TransportError::Timeout => "the deadline passed".to_owned(),
        TransportError::Failed(why) | TransportError::NotSent(why) => why.clone(),
    }
}

/// The final failure for a job whose status can no longer be read; `why` is what the last poll
/// (or the create) got.
pub(super) fn lost(why: GatewayError) -> Failure {
    let message = format!("The job was started, but the gateway lost track of it: {}", why.message);
    Failure::paid(502, GatewayError::new(ErrorKind::BadUpstream, message).with_code("upstream_job_lost"))
}

/// The failure for a 2xx answer without images. A generation the provider says failed or refused
/// is judged by its status (another attempt may succeed, and the policy decides); an answer that
/// is unreadable or empty is final: the upstream answered 2xx, so the work may be paid for.
pub(super) fn answer_failure(cause: AnswerError) -> Failure {
    let error = cause.to_error();
    match cause {
        AnswerError::Refused { .. } | AnswerError::Failed { .. } => Failure::status(error.status(), None, error),
        AnswerError::Unreadable { .. } | AnswerError::Empty { .. } => Failure::paid(error.status(), error),
    }
}
