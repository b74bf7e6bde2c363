//! Retention: the scheduled handler deletes the actions older than `retention_days` and their
//! stored images, in bounded batches so that one run never holds the database for long; what a
//! run leaves, the next one takes. A batch's files go before its actions: a run that fails
//! between the two leaves actions whose images are gone (the next run deletes them), never
//! images that no action names.

use crate::state::{Files, History};

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
    /// How many stored images went with them.
    pub files: u64,
    /// Whether the run stopped at [`MAX_BATCHES`] with old actions possibly left.
    pub more: bool,
}

/// Deletes the actions created before [`cutoff_ms`], batch by batch; `Err` when storage
/// failed (what was deleted before stays deleted).
pub async fn sweep(history: &dyn History, files: &dyn Files, now_ms: u64, retention_days: u32) -> Result<Swept, String> {
    let cutoff_ms = cutoff_ms(now_ms, retention_days);
    let mut swept = Swept { cutoff_ms, deleted: 0, files: 0, more: false };
    for _ in 0..MAX_BATCHES {
        let batch = history.oldest_before(cutoff_ms, BATCH).await?;
        let file_ids: Vec<String> = batch.iter().flat_map(|action| action.response.iter().flat_map(|r| r.data.iter().map(|i| i.file_id.clone()))).collect();
        if !file_ids.is_empty() {
            files.delete(&file_ids).await?;
        }
        let ids: Vec<String> = batch.iter().map(|action| action.id.clone()).collect();
        history.forget(&ids).await?;
        swept.deleted += ids.len() as u64;
        swept.files += file_ids.len() as u64;
        if ids.len() < BATCH as usize {
            return Ok(swept);
        }
    }
    swept.more = true;
    Ok(swept)
}

/// The SQL that reads one batch: the oldest `?2` actions created before `?1` (index
/// `actions_by_time`).
pub const OLDEST_BATCH: &str = "SELECT record FROM actions WHERE created_at < ?1 ORDER BY created_at, id LIMIT ?2";
/// The SQL that deletes a batch: `?1` is a JSON array of action ids.
pub const DELETE_BATCH: &str = "DELETE FROM actions WHERE id IN (SELECT value FROM json_each(?1))";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, ActionResponse};
    use crate::files::{NewFile, StoredImage};
    use crate::state::{MemoryFiles, MemoryHistory, Off};
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
        let swept = block_on(sweep(&history, &Off, NOW + 1, 30)).unwrap();
        assert_eq!((swept.deleted, swept.more), (3, false), "30 days and a millisecond, 31 and 400");
        let left: Vec<String> = history.actions.borrow().iter().map(|a| a.id.clone()).collect();
        assert_eq!(left, ["act_0", "act_1"]);
    }

    #[test]
    fn a_run_is_bounded_and_says_when_it_left_some() {
        let history = history(&vec![90; (BATCH * MAX_BATCHES + 3) as usize]);
        let swept = block_on(sweep(&history, &Off, NOW, 30)).unwrap();
        assert_eq!((swept.deleted, swept.more), (u64::from(BATCH * MAX_BATCHES), true));
        let next = block_on(sweep(&history, &Off, NOW, 30)).unwrap();
        assert_eq!((next.deleted, next.more), (3, false));
    }

    #[test]
    fn the_images_of_old_actions_go_with_them_and_the_rest_stay() {
        let history = history(&[40, 1]);
        let files = MemoryFiles::default();
        for (i, action) in history.actions.borrow_mut().iter_mut().enumerate() {
            let file_id = format!("file_{i}");
            files
                .files
                .borrow_mut()
                .insert(file_id.clone(), NewFile { id: file_id.clone(), bytes: vec![1], media_type: "image/png".into(), owner: "k".into() });
            action.response = Some(ActionResponse { created: 0, data: vec![StoredImage { file_id, ..StoredImage::default() }] });
        }
        let swept = block_on(sweep(&history, &files, NOW, 30)).unwrap();
        assert_eq!((swept.deleted, swept.files), (1, 1));
        assert_eq!(files.files.borrow().keys().collect::<Vec<_>>(), ["file_1"]);

        // A store that fails keeps the actions, so the next run deletes their files.
        let history = self::history(&[40]);
        history.actions.borrow_mut()[0].response =
            Some(ActionResponse { created: 0, data: vec![StoredImage { file_id: "file_0".into(), ..StoredImage::default() }] });
        files.unreachable.set(true);
        assert!(block_on(sweep(&history, &files, NOW, 30)).is_err());
        assert_eq!(history.actions.borrow().len(), 1);
    }

    #[test]
    fn the_cutoff_never_underflows() {
        assert_eq!(cutoff_ms(1000, 3650), 0);
        assert_eq!(cutoff_ms(NOW, 1), NOW - DAY_MS);
    }
}
