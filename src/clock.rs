//! Time and chance, injected: the wasm build uses the runtime's clock, timers and randomness;
//! tests use fakes, so backoff, deadlines and weighted choice are tested exactly.

use std::future::Future;
use std::pin::Pin;

/// A source of the current time, and a way to wait.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Waits `ms` milliseconds (a backoff before a retry).
    fn sleep(&self, ms: u64) -> Pin<Box<dyn Future<Output = ()> + '_>>;
}

/// A source of randomness for jitter and weighted choice.
pub trait Random {
    /// A number uniform in `[0, 1)`.
    fn unit(&self) -> f64;

    /// Fills `bytes` with random bytes fit for secrets (a new key).
    fn fill(&self, bytes: &mut [u8]);
}

/// The instant by which the whole request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at_ms: u64,
}

impl Deadline {
    /// A deadline `budget_ms` after `start_ms`.
    pub fn after(start_ms: u64, budget_ms: u64) -> Self {
        Deadline { at_ms: start_ms.saturating_add(budget_ms) }
    }

    /// The instant, in milliseconds since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        self.at_ms
    }

    /// The earlier of this deadline and `other`.
    pub fn earlier(self, other: Deadline) -> Deadline {
        Deadline { at_ms: self.at_ms.min(other.at_ms) }
    }

    /// Milliseconds left at `clock`'s current time; zero once passed.
    pub fn remaining_ms(&self, clock: &dyn Clock) -> u64 {
        self.at_ms.saturating_sub(clock.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fixed(Cell<u64>);
    impl Clock for Fixed {
        fn now_ms(&self) -> u64 {
            self.0.get()
        }
        fn sleep(&self, ms: u64) -> Pin<Box<dyn Future<Output = ()> + '_>> {
            self.0.set(self.0.get() + ms);
            Box::pin(async {})
        }
    }

    #[test]
    fn remaining_counts_down_to_zero() {
        let clock = Fixed(Cell::new(1_000));
        let deadline = Deadline::after(1_000, 150);
        assert_eq!(deadline.remaining_ms(&clock), 150);
        clock.0.set(1_100);
        assert_eq!(deadline.remaining_ms(&clock), 50);
        clock.0.set(2_000);
        assert_eq!(deadline.remaining_ms(&clock), 0);
    }
}
