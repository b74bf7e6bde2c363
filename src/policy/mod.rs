//! The routing policy: which target to try first, when to retry it, when to fall back to the
//! next, and when to stop. Pure decisions; time and randomness come in as arguments, so every
//! branch is tested exactly.

mod backoff;
mod fields;
pub(crate) use fields::string_map;

pub use backoff::{backoff_ms, retry_after_ms};
pub use fields::{take_router_fields, Identity, RouterFields, MAX_RETRY_COUNT, ROUTER_FIELDS};

/// Upstream statuses retried on the same target by default.
pub const DEFAULT_RETRY_ON: [u16; 5] = [429, 500, 502, 503, 504];
/// Statuses that move on to the next target by default.
pub const DEFAULT_FALLBACK_ON: [u16; 7] = [408, 429, 500, 502, 503, 504, 529];
/// Retries of the same target by default.
pub const DEFAULT_RETRY_COUNT: u8 = 3;

/// How one attempt ended, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with images.
    Success,
    /// The upstream answered `status` (a 200 without images counts as 502), with its retry hint.
    Status { status: u16, retry_after_ms: Option<u64> },
    /// The per-attempt timeout passed (counts as 408 for `on_codes`, and always falls back).
    Timeout,
    /// No answer at all: always retryable, always falls back.
    ConnectionFailed,
    /// The target cannot serve this request (a size or format it lacks, a missing key): never
    /// retried, always falls back.
    Unusable,
    /// The upstream has (and charges for) the work, but the gateway cannot deliver it: an image
    /// download failed, a running job could no longer be followed, or the request spent its
    /// `max_subrequests`. Never retried and never sent elsewhere, which would pay again.
    Final,
}

impl Outcome {
    /// The status this outcome is matched against `on_codes` with.
    fn code(self) -> Option<u16> {
        match self {
            Outcome::Status { status, .. } => Some(status),
            Outcome::Timeout => Some(408),
            Outcome::Success | Outcome::ConnectionFailed | Outcome::Unusable | Outcome::Final => None,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same target again after waiting this many milliseconds.
    Retry { after_ms: u64 },
    /// Move on to the next target.
    FallBack,
    /// Stop: answer with this attempt's result.
    Stop,
}

/// The policy for one request: the server's defaults with the request's fields applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub retry_count: u8,
    pub retry_on: Vec<u16>,
    pub fallbacks: Vec<String>,
    pub fallback_on: Vec<u16>,
    pub load_balancer: Vec<(String, f64)>,
    pub call_timeout_ms: Option<u64>,
    /// How long a successful answer is kept in the response cache, when the cache is on.
    pub cache_ttl_secs: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retry_count: DEFAULT_RETRY_COUNT,
            retry_on: DEFAULT_RETRY_ON.to_vec(),
            fallbacks: Vec::new(),
            fallback_on: DEFAULT_FALLBACK_ON.to_vec(),
            load_balancer: Vec::new(),
            call_timeout_ms: None,
            cache_ttl_secs: None,
        }
    }
}

impl Policy {
    /// This policy with the fields a request set taking precedence.
    pub fn with_request(mut self, fields: &RouterFields) -> Policy {
        if let Some(count) = fields.retry_count {
            self.retry_count = count;
        }
        if let Some(codes) = &fields.retry_on {
            self.retry_on = codes.clone();
        }
        if let Some(models) = &fields.fallbacks {
            self.fallbacks = models.clone();
        }
        if let Some(codes) = &fields.fallback_on {
            self.fallback_on = codes.clone();
        }
        if let Some(weights) = &fields.load_balancer {
            self.load_balancer = weights.clone();
        }
        if fields.call_timeout_ms.is_some() {
            self.call_timeout_ms = fields.call_timeout_ms;
        }
        if fields.cache_ttl_secs.is_some() {
            self.cache_ttl_secs = fields.cache_ttl_secs;
        }
        self
    }

    /// The first target: `requested`, or one drawn from the load balancer by weight with
    /// `draw` uniform in `[0, 1)`.
    pub fn first_target<'a>(&'a self, requested: &'a str, draw: f64) -> &'a str {
        if self.load_balancer.is_empty() {
            return requested;
        }
        let total: f64 = self.load_balancer.iter().map(|(_, w)| w).sum();
        let mut point = draw.clamp(0.0, 1.0) * total;
        for (model, weight) in &self.load_balancer {
            if point < *weight {
                return model;
            }
            point -= weight;
        }
        &self.load_balancer[self.load_balancer.len() - 1].0
    }

    /// Decides what follows `outcome`, the result of an attempt after `retries_done` retries of
    /// the same target, with `remaining_ms` left before the deadline and `jitter` uniform in
    /// `[0, 1)` for the backoff.
    ///
    /// A retry waits for the upstream's retry hint when it gave one, otherwise for an
    /// exponential backoff; a wait that would not end before the deadline moves on instead.
    /// Only outcomes listed in `fallback_on` (plus timeouts and connection failures) fall back:
    /// a request that will fail everywhere (a 400, a moderation refusal) is not sent elsewhere.
    pub fn next(&self, outcome: Outcome, retries_done: u8, remaining_ms: u64, jitter: f64) -> Next {
        let code = outcome.code();
        if matches!(outcome, Outcome::Success | Outcome::Final) {
            return Next::Stop;
        }
        let retryable = outcome == Outcome::ConnectionFailed || code.is_some_and(|c| self.retry_on.contains(&c));
        if retryable && retries_done < self.retry_count {
            let hint = match outcome {
                Outcome::Status { retry_after_ms, .. } => retry_after_ms,
                _ => None,
            };
            let after_ms = hint.unwrap_or_else(|| backoff_ms(retries_done, jitter));
            if after_ms < remaining_ms {
                return Next::Retry { after_ms };
            }
        }
        let falls_back =
            matches!(outcome, Outcome::Timeout | Outcome::ConnectionFailed | Outcome::Unusable) || code.is_some_and(|c| self.fallback_on.contains(&c));
        if falls_back {
            Next::FallBack
        } else {
            Next::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Outcome {
        Outcome::Status { status, retry_after_ms: None }
    }

    #[test]
    fn retries_then_falls_back_then_stops() {
        let policy = Policy::default();
        assert_eq!(policy.next(status(500), 0, 100_000, 0.5), Next::Retry { after_ms: 1000 });
        assert_eq!(policy.next(status(500), 1, 100_000, 0.5), Next::Retry { after_ms: 2000 });
        assert_eq!(policy.next(status(500), 2, 100_000, 0.5), Next::Retry { after_ms: 4000 });
        assert_eq!(policy.next(status(500), 3, 100_000, 0.5), Next::FallBack, "retries exhausted");
        assert_eq!(policy.next(Outcome::Final, 0, 100_000, 0.5), Next::Stop, "paid for: never again");
        assert_eq!(policy.next(Outcome::Success, 0, 100_000, 0.5), Next::Stop);
    }

    #[test]
    fn invalid_requests_are_neither_retried_nor_sent_elsewhere_unless_listed() {
        let policy = Policy::default();
        assert_eq!(policy.next(status(400), 0, 100_000, 0.5), Next::Stop);
        assert_eq!(policy.next(status(403), 0, 100_000, 0.5), Next::Stop);
        let listed = Policy { fallback_on: vec![400], ..Policy::default() };
        assert_eq!(listed.next(status(400), 0, 100_000, 0.5), Next::FallBack);
    }

    #[test]
    fn fallback_on_codes_is_honoured_both_ways() {
        let narrow = Policy { retry_count: 0, fallback_on: vec![529], ..Policy::default() };
        assert_eq!(narrow.next(status(529), 0, 100_000, 0.5), Next::FallBack);
        assert_eq!(narrow.next(status(500), 0, 100_000, 0.5), Next::Stop, "500 not listed");
    }

    #[test]
    fn retry_after_is_honoured_when_it_fits_and_skipped_when_not() {
        let policy = Policy::default();
        let hinted = Outcome::Status { status: 429, retry_after_ms: Some(7_000) };
        assert_eq!(policy.next(hinted, 0, 10_000, 0.5), Next::Retry { after_ms: 7_000 });
        assert_eq!(policy.next(hinted, 0, 5_000, 0.5), Next::FallBack, "the wait would pass the deadline");
        let no_fallback = Policy { fallback_on: vec![], ..Policy::default() };
        assert_eq!(no_fallback.next(hinted, 0, 5_000, 0.5), Next::Stop);
    }

    #[test]
    fn timeouts_and_connection_failures() {
        let policy = Policy::default();
        assert_eq!(policy.next(Outcome::Timeout, 0, 100_000, 0.5), Next::FallBack, "408 is not retried by default");
        let retry_timeouts = Policy { retry_on: vec![408], ..Policy::default() };
        assert_eq!(retry_timeouts.next(Outcome::Timeout, 0, 100_000, 0.5), Next::Retry { after_ms: 1000 });
        assert_eq!(policy.next(Outcome::ConnectionFailed, 0, 100_000, 0.5), Next::Retry { after_ms: 1000 });
        assert_eq!(policy.next(Outcome::ConnectionFailed, 3, 100_000, 0.5), Next::FallBack);
        assert_eq!(policy.next(Outcome::Unusable, 0, 100_000, 0.5), Next::FallBack, "skipped, never retried");
    }

    #[test]
    fn backoff_near_the_deadline_moves_on() {
        let policy = Policy::default();
        assert_eq!(policy.next(status(503), 2, 3_000, 0.5), Next::FallBack, "a 4 s backoff does not fit in 3 s");
    }

    #[test]
    fn request_fields_override_the_server_policy() {
        let fields = RouterFields { retry_count: Some(1), fallbacks: Some(vec!["b".into()]), call_timeout_ms: Some(500), ..RouterFields::default() };
        let policy = Policy::default().with_request(&fields);
        assert_eq!((policy.retry_count, policy.fallbacks.as_slice(), policy.call_timeout_ms), (1, &["b".to_owned()][..], Some(500)));
        assert_eq!(policy.retry_on, DEFAULT_RETRY_ON.to_vec(), "unset fields keep the server's value");
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let policy = Policy { load_balancer: vec![("a".into(), 0.7), ("b".into(), 0.2), ("c".into(), 0.1)], ..Policy::default() };
        let draws = 20_000;
        let mut counts = [0u32; 3];
        let mut state = 0x9e37_79b9_7f4a_7c15u64; // a seeded xorshift: the same draws every run
        for _ in 0..draws {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let draw = (state >> 11) as f64 / (1u64 << 53) as f64;
            counts[["a", "b", "c"].iter().position(|m| *m == policy.first_target("x", draw)).unwrap()] += 1;
        }
        for (count, expected) in counts.iter().zip([0.7, 0.2, 0.1]) {
            let share = *count as f64 / draws as f64;
            assert!((share - expected).abs() < 0.015, "{counts:?}");
        }
        assert_eq!(Policy::default().first_target("x", 0.3), "x", "no balancer: the requested model");
    }
}
