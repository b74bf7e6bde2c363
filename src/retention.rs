//! Retention: the scheduled handler deletes the actions older than `retention_days`, in bounded
//! batches so that one run never holds the database for long; what a run leaves, the next one
//! takes.

use crate::state::History;

/// The most actions one batch deletes.
pub const BATCH: u32 = 500;
/// The most batches one run deletes (so at most 10,000 actions a run).
pub const MAX_BATCHES: u32 = 20;
const DAY_MS: u64 = 86_400_000;

/// The creation time before which actions are deleted at `now_ms`.
pub fn cutoff_ms(now_ms: u64, retention_days: u32) -> u64 {
    now_ms.saturating_sub(u64::from(retention_days) * DAY_MS)
}

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub cutoff_ms: u64,
    pub deleted: u64,
    /// Whether the run stopped at [`MAX_BATCHES`] with old actions possibly left.
    pub more: bool,
}

/// Deletes the actions created before [`cutoff_ms`], batch by batch; `Err` when storage
/// failed (what was deleted before stays deleted).
pub async fn sweep(history: &dyn History, now_ms: u64, retention_days: u32) -> Result<Swept, String> {
    let cutoff_ms = cutoff_ms(now_ms, retention_days);
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let batch = history.forget_before(cutoff_ms, BATCH).await?;
        deleted += u64::from(batch);
        if batch < BATCH {
            return Ok(Swept { cutoff_ms, deleted, more: false });
        }
    }
    Ok(Swept { cutoff_ms, deleted, more: true })
}

/// The SQL of one batch: the oldest `?2` actions created before `?1` (index `actions_by_time`).
pub const DELETE_BATCH: &str = "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::state::MemoryHistory;
    use futures_executor::block_on;

    const NOW: u64 = 1_700_000_000_000;

    fn history(ages_days: &[u64]) -> MemoryHistory {
        let history = MemoryHistory::default();
        for (i, age) in ages_days.iter().enumerate() {
            let created_at = NOW - age * DAY_MS;
            history.actions.borrow_mut().push(Action { id: format!("act_{i}"), created_at, ..Action::default() });
        }
        history
    }

    #[test]
    fn actions_older_than_the_retention_go_and_the_rest_stay() {
        let history = history(&[0, 29, 30, 31, 400]);
        let swept = block_on(sweep(&history, NOW + 1, 30)).unwrap();
        assert_eq!((swept.deleted, swept.more), (3, false), "30 days and a millisecond, 31 and 400");
        let left: Vec<String> = history.actions.borrow().iter().map(|a| a.id.clone()).collect();
        assert_eq!(left, ["act_0", "act_1"]);
    }

    #[test]
    fn a_run_is_bounded_and_says_when_it_left_some() {
        let history = history(&vec![90; (BATCH * MAX_BATCHES + 3) as usize]);
        let swept = block_on(sweep(&history, NOW, 30)).unwrap();
        assert_eq!((swept.deleted, swept.more), (u64::from(BATCH * MAX_BATCHES), true));
        let next = block_on(sweep(&history, NOW, 30)).unwrap();
        assert_eq!((next.deleted, next.more), (3, false));
    }

    #[test]
    fn the_cutoff_never_underflows() {
        assert_eq!(cutoff_ms(1000, 3650), 0);
        assert_eq!(cutoff_ms(NOW, 1), NOW - DAY_MS);
    }
}
