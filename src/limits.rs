//! One managed key's exact counters: its request rate, its generations in flight and its spend,
//! decided in one place (a Durable Object per key at the edge, [`Counters`] in memory in tests).
//!
//! A generation is *admitted* before its first upstream call: the rate and the parallel limit are
//! checked, and the most it can cost is *held* against the budget under a ticket (the request's
//! id). When it ends the ticket is *settled*: the hold goes and the real cost is spent. Holds
//! and spend together never pass the limit, so concurrent requests cannot overspend (as long as
//! a generation costs no more than its hold: the price's bound). A hold whose settlement never
//! comes (an isolate that died mid-call) lapses at its `until_ms` and is spent in full, since the
//! upstream may have billed; a settlement that comes after all replaces that charge.
//!
//! Amounts are whole micro-dollars, so that sums are exact.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// Micro-dollars in `usd` (negative and non-finite amounts count as none).
pub fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round() as u64
    } else {
        0
    }
}

/// `micros` in US dollars.
pub fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// When a budget starts again: OpenRouter's `limit_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitReset {
    Daily,
    Weekly,
    Monthly,
}

impl LimitReset {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "daily" => Some(LimitReset::Daily),
            "weekly" => Some(LimitReset::Weekly),
            "monthly" => Some(LimitReset::Monthly),
            _ => None,
        }
    }

    /// The start of the period holding `now_ms` (UTC days; weeks from Monday; calendar months).
    pub fn period_start(self, now_ms: u64) -> u64 {
        let day = now_ms - now_ms % DAY_MS;
        match self {
            LimitReset::Daily => day,
            // 1970-01-01 was a Thursday: three days after a Monday.
            LimitReset::Weekly => day.saturating_sub(((day / DAY_MS + 3) % 7) * DAY_MS),
            LimitReset::Monthly => month_start(now_ms),
        }
    }

    /// The start of the period after the one holding `now_ms`.
    pub fn next_start(self, now_ms: u64) -> u64 {
        let start = self.period_start(now_ms);
        match self {
            LimitReset::Daily => start + DAY_MS,
            LimitReset::Weekly => start + 7 * DAY_MS,
            LimitReset::Monthly => month_start(start + 32 * DAY_MS),
        }
    }
}

/// The first millisecond of the UTC calendar month holding `ms`.
fn month_start(ms: u64) -> u64 {
    let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    let first = format!("{}-01T00:00:00Z", &text[..7]);
    let start = humantime::parse_rfc3339(&first).expect("a month's first day parses");
    start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The limits a managed key has; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Generations started per minute (a sliding minute).
    pub rpm: Option<u32>,
    /// Generations in flight at once.
    pub max_parallel: Option<u32>,
    /// The budget, in micro-dollars, for the period `reset` names (ever, without one).
    pub limit_micros: Option<u64>,
    pub reset: Option<LimitReset>,
}

/// A generation asking to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    /// What settles it later: the request's id.
    pub ticket: String,
    pub limits: Limits,
    /// The most the generation can cost, held until it settles.
    pub hold_micros: u64,
    pub now_ms: u64,
    /// When the hold lapses if it was never settled.
    pub until_ms: u64,
}

/// Why a generation may not start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "refused", rename_all = "snake_case")]
pub enum Refusal {
    /// `rpm` generations started in the last minute; one may start after `retry_after_secs`.
    Rate { rpm: u32, retry_after_secs: u64 },
    /// `max_parallel` generations are in flight.
    Parallel { max_parallel: u32 },
    /// The budget cannot hold this generation's most: `spent` (this period) and `held` (by
    /// generations in flight) of `limit`, all in micro-dollars; it resets at `resets_at_ms`.
    Budget { limit: u64, spent: u64, held: u64, asked: u64, resets_at_ms: Option<u64> },
}

/// Spend in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Period {
    start_ms: u64,
    micros: u64,
}

impl Period {
    /// The amount spent in the period starting `start_ms` (none when this one is older).
    fn at(self, start_ms: u64) -> u64 {
        if self.start_ms == start_ms {
            self.micros
        } else {
            0
        }
    }

    fn add(&mut self, start_ms: u64, micros: u64) {
        if self.start_ms != start_ms {
            *self = Period { start_ms, micros: 0 };
        }
        self.micros += micros;
    }
}

/// How long a lapsed hold's charge may still be replaced by its late settlement.
const LAPSED_KEPT_MS: u64 = DAY_MS;

/// What a settlement did: what the ticket held (none for a ticket not held) and what was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub held: Option<u64>,
    pub spent: u64,
}

/// A hold on the budget by a generation in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    micros: u64,
    until_ms: u64,
}

/// What a key has spent, in micro-dollars: ever, this UTC day, week and month, and what its
/// generations in flight hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub total: u64,
    pub daily: u64,
    pub weekly: u64,
    pub monthly: u64,
    pub held: u64,
    pub in_flight: u32,
}

impl Usage {
    /// The spend `limits`' budget counts: this period's, or ever.
    pub fn counted(&self, reset: Option<LimitReset>) -> u64 {
        match reset {
            None => self.total,
            Some(LimitReset::Daily) => self.daily,
            Some(LimitReset::Weekly) => self.weekly,
            Some(LimitReset::Monthly) => self.monthly,
        }
    }
}

/// One key's counters, as its one place keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// When the generations of the last minute started, oldest first.
    started: VecDeque<u64>,
    holds: BTreeMap<String, Hold>,
    /// Holds that lapsed unsettled, spent in full: what each charged and when.
    #[serde(default)]
    lapsed: BTreeMap<String, (u64, u64)>,
    total: u64,
    day: Period,
    week: Period,
    month: Period,
}

impl Counters {
    /// Admits `ask` (noting its start and holding its most) or says why not. A ticket admitted
    /// before is admitted again without a second hold (a retried call to the counters).
    pub fn admit(&mut self, ask: &Ask) -> Result<(), Refusal> {
        self.lapse(ask.now_ms);
        if self.holds.contains_key(&ask.ticket) {
            return Ok(());
        }
        let limits = ask.limits;
        if let Some(rpm) = limits.rpm {
            if self.started.len() >= rpm as usize {
                let frees_at = self.started[self.started.len() - rpm as usize] + MINUTE_MS;
                return Err(Refusal::Rate { rpm, retry_after_secs: frees_at.saturating_sub(ask.now_ms).div_ceil(1000).max(1) });
            }
        }
        if let Some(max_parallel) = limits.max_parallel {
            if self.holds.len() >= max_parallel as usize {
                return Err(Refusal::Parallel { max_parallel });
            }
        }
        if let Some(limit) = limits.limit_micros {
            let usage = self.usage(ask.now_ms);
            let (spent, held) = (usage.counted(limits.reset), usage.held);
            if spent + held + ask.hold_micros > limit {
                let resets_at_ms = limits.reset.map(|reset| reset.next_start(ask.now_ms));
                return Err(Refusal::Budget { limit, spent, held, asked: ask.hold_micros, resets_at_ms });
            }
        }
        self.started.push_back(ask.now_ms);
        self.holds.insert(ask.ticket.clone(), Hold { micros: ask.hold_micros, until_ms: ask.until_ms });
        Ok(())
    }

    /// Ends `ticket`'s hold and spends `cost` (micro-dollars); `None` spends what was held (an
    /// outcome nobody can tell, charged at its most). A ticket whose hold lapsed has that charge
    /// replaced by `cost`; a ticket settled already, or never admitted, spends `cost` all the
    /// same (a cost is never lost).
    pub fn settle(&mut self, ticket: &str, cost: Option<u64>, now_ms: u64) -> Settled {
        self.lapse(now_ms);
        let held = self.holds.remove(ticket).map(|hold| hold.micros);
        if let Some((charged, at_ms)) = self.lapsed.remove(ticket) {
            self.unspend(charged, at_ms);
            let spent = cost.unwrap_or(charged);
            self.spend(spent, now_ms);
            return Settled { held: Some(charged), spent };
        }
        let spent = cost.unwrap_or(held.unwrap_or(0));
        self.spend(spent, now_ms);
        Settled { held, spent }
    }

    /// Takes back `micros` spent at `at_ms` (from each period that is still the current one).
    fn unspend(&mut self, micros: u64, at_ms: u64) {
        self.total = self.total.saturating_sub(micros);
        for (period, reset) in [(&mut self.day, LimitReset::Daily), (&mut self.week, LimitReset::Weekly), (&mut self.month, LimitReset::Monthly)] {
            if period.start_ms == reset.period_start(at_ms) {
                period.micros = period.micros.saturating_sub(micros);
            }
        }
    }

    /// Spends `micros` at `now_ms`, with no ticket (a generation that needed no admission).
    pub fn spend(&mut self, micros: u64, now_ms: u64) {
        self.total += micros;
        self.day.add(LimitReset::Daily.period_start(now_ms), micros);
        self.week.add(LimitReset::Weekly.period_start(now_ms), micros);
        self.month.add(LimitReset::Monthly.period_start(now_ms), micros);
    }

    /// What has been spent and is held at `now_ms` (holds past their time count as spent).
    pub fn usage(&mut self, now_ms: u64) -> Usage {
        self.lapse(now_ms);
        let live = self.holds.values().filter(|hold| hold.until_ms > now_ms);
        Usage {
            total: self.total,
            daily: self.day.at(LimitReset::Daily.period_start(now_ms)),
            weekly: self.week.at(LimitReset::Weekly.period_start(now_ms)),
            monthly: self.month.at(LimitReset::Monthly.period_start(now_ms)),
            held: live.clone().map(|hold| hold.micros).sum(),
            in_flight: live.count() as u32,
        }
    }

    /// Forgets starts older than a minute; spends the holds past their time in full.
    fn lapse(&mut self, now_ms: u64) {
        while self.started.front().is_some_and(|at| at + MINUTE_MS <= now_ms) {
            self.started.pop_front();
        }
        let expired: Vec<String> = self.holds.iter().filter(|(_, hold)| hold.until_ms <= now_ms).map(|(ticket, _)| ticket.clone()).collect();
        for ticket in expired {
            let hold = self.holds.remove(&ticket).expect("listed");
            self.spend(hold.micros, now_ms);
            self.lapsed.insert(ticket, (hold.micros, now_ms));
        }
        self.lapsed.retain(|_, (_, at_ms)| *at_ms + LAPSED_KEPT_MS > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_410_400_000; // 2025-11-29T10:00:00Z, a Saturday

    fn ask(ticket: &str, limits: Limits, hold: u64, now_ms: u64) -> Ask {
        Ask { ticket: ticket.to_owned(), limits, hold_micros: hold, now_ms, until_ms: now_ms + 200_000 }
    }

    #[test]
    fn periods_start_at_utc_days_mondays_and_months() {
        assert_eq!(LimitReset::Daily.period_start(NOW), 1_764_374_400_000, "2025-11-29T00:00Z");
        assert_eq!(LimitReset::Weekly.period_start(NOW), 1_763_942_400_000, "Monday 2025-11-24");
        assert_eq!(LimitReset::Monthly.period_start(NOW), 1_761_955_200_000, "2025-11-01");
        assert_eq!(LimitReset::Monthly.next_start(NOW), 1_764_547_200_000, "2025-12-01");
        assert_eq!(LimitReset::Weekly.next_start(NOW), 1_764_547_200_000, "Monday 2025-12-01");
        assert_eq!(LimitReset::Monthly.next_start(1_767_139_200_000), 1_767_225_600_000, "2025-12-31 → 2026-01-01");
    }

    #[test]
    fn a_budget_holds_the_most_and_never_lets_concurrent_generations_pass_it() {
        let limits = Limits { limit_micros: Some(200_000), ..Limits::default() };
        let mut counters = Counters::default();
        let admitted: Vec<bool> = (0..20).map(|i| counters.admit(&ask(&format!("t{i}"), limits, 40_000, NOW)).is_ok()).collect();
        assert_eq!(admitted.iter().filter(|a| **a).count(), 5, "five holds of 0.04 fill 0.20");
        let Err(Refusal::Budget { spent, held, .. }) = counters.admit(&ask("late", limits, 40_000, NOW)) else { panic!("refused") };
        assert_eq!((spent, held), (0, 200_000));
        for i in 0..5 {
            counters.settle(&format!("t{i}"), Some(40_000), NOW + 1);
        }
        assert_eq!(counters.usage(NOW + 1).total, 200_000);
        assert!(counters.admit(&ask("after", limits, 40_000, NOW + 2)).is_err(), "spent in full");
        assert!(counters.admit(&ask("free", limits, 0, NOW + 2)).is_ok(), "a generation that costs nothing fits");
    }

    #[test]
    fn settling_below_the_hold_frees_the_rest() {
        let limits = Limits { limit_micros: Some(100_000), reset: Some(LimitReset::Daily), ..Limits::default() };
        let mut counters = Counters::default();
        counters.admit(&ask("a", limits, 80_000, NOW)).unwrap();
        assert!(counters.admit(&ask("b", limits, 80_000, NOW)).is_err());
        assert_eq!(counters.settle("a", Some(10_000), NOW), Settled { held: Some(80_000), spent: 10_000 });
        counters.admit(&ask("b", limits, 80_000, NOW)).unwrap();
        assert_eq!(counters.settle("b", None, NOW).spent, 80_000, "an unknown outcome spends what was held");
        let Err(Refusal::Budget { resets_at_ms, .. }) = counters.admit(&ask("c", limits, 80_000, NOW)) else { panic!() };
        assert_eq!(resets_at_ms, Some(LimitReset::Daily.next_start(NOW)));
        assert!(counters.admit(&ask("c", limits, 80_000, LimitReset::Daily.next_start(NOW))).is_ok(), "a new day, a new budget");
    }

    #[test]
    fn the_rate_is_a_sliding_minute_and_says_when_to_retry() {
        let limits = Limits { rpm: Some(2), ..Limits::default() };
        let mut counters = Counters::default();
        counters.admit(&ask("a", limits, 0, NOW)).unwrap();
        counters.admit(&ask("b", limits, 0, NOW + 10_000)).unwrap();
        assert_eq!(counters.admit(&ask("c", limits, 0, NOW + 20_000)), Err(Refusal::Rate { rpm: 2, retry_after_secs: 40 }));
        assert!(counters.admit(&ask("c", limits, 0, NOW + 60_000)).is_ok());
    }

    #[test]
    fn in_flight_is_capped_and_a_lapsed_hold_frees_its_place() {
        let limits = Limits { max_parallel: Some(1), ..Limits::default() };
        let mut counters = Counters::default();
        counters.admit(&ask("a", limits, 0, NOW)).unwrap();
        assert_eq!(counters.admit(&ask("b", limits, 0, NOW)), Err(Refusal::Parallel { max_parallel: 1 }));
        assert!(counters.admit(&ask("a", limits, 0, NOW)).is_ok(), "the same ticket again is no second generation");
        assert!(counters.admit(&ask("b", limits, 0, NOW + 200_000)).is_ok(), "a's hold lapsed");
    }

    #[test]
    fn a_lapsed_hold_is_spent_until_its_late_settlement_replaces_it() {
        let limits = Limits { limit_micros: Some(100_000), ..Limits::default() };
        let mut counters = Counters::default();
        counters.admit(&ask("a", limits, 60_000, NOW)).unwrap();
        assert_eq!(counters.usage(NOW + 200_000).total, 60_000, "the upstream may have billed: the hold is spent");
        assert_eq!(counters.settle("a", Some(20_000), NOW + 300_000), Settled { held: Some(60_000), spent: 20_000 });
        assert_eq!(counters.usage(NOW + 300_000).total, 20_000, "the real cost replaces the charge");
        assert_eq!(counters.settle("a", Some(0), NOW + 300_000).spent, 0, "settling again spends nothing more");
        assert_eq!(counters.usage(NOW + 300_000).total, 20_000);
    }

    #[test]
    fn micro_dollars_are_exact() {
        assert_eq!(micros(0.04) * 5, micros(0.2));
        assert_eq!((micros(-1.0), micros(f64::NAN)), (0, 0));
        assert_eq!(usd(40_000), 0.04);
    }
}
