//! The seams for state: what the pipeline will ask of the platform's storage, as small traits
//! beside [`Upstream`](crate::upstream::Upstream). Each has an implementation that keeps nothing
//! ([`Off`], what a deployment runs until the feature's binding exists) and one in memory for
//! native tests; the Workers implementations (KV, D1 and R2, Durable Objects) arrive in `edge/`
//! with their bindings.
//!
//! - [`Cache`]: stored answers by key, each for a time (the exact-match response cache).
//! - [`History`]: every generation recorded as an [`Action`], and read back.
//! - [`Files`]: the images of recorded generations (stored by id, served by reference).
//! - [`Limiter`]: whether a managed key may start a generation now, and what it spent.
//! - [`KeyStore`]: the managed keys.
//!
//! Their futures are boxed so that the gateway holds them as trait objects: a deployment without
//! a feature pays one allocation per call, and only where the feature is asked for.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

pub use crate::action::{Action, AttemptRecord};
use crate::action_list::{self, Cursor, ListQuery};
use crate::cache::entry::Stored;
use crate::files::{FileMeta, NewFile};
use crate::keys::KeyRecord;
use crate::limits::{Ask, Counters, Refusal, Settled, Usage};
use crate::route_stats::{self, Bucket, StatsQuery};
use crate::usage::{self, UsageQuery, UsageRow};
use sha2::Digest as _;

/// A boxed future of the state's traits.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A response cache.
pub trait Cache {
    /// Whether a store is there to look in (a deployment without its binding has none).
    fn available(&self) -> bool;

    /// The value stored under `key` and when, unless there is none or it has expired.
    fn get<'a>(&'a self, key: &'a str, now_ms: u64) -> Pending<'a, Option<Stored>>;

    /// Stores `value` under `key` until `ttl_secs` after `now_ms`.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, now_ms: u64, ttl_secs: u64) -> Pending<'a, ()>;
}

/// Where generations are recorded.
pub trait History {
    /// Whether recording keeps anything (the edge skips scheduling it when not).
    fn keeps(&self) -> bool;

    /// Records `action`.
    fn record(&self, action: Action) -> Pending<'_, ()>;

    /// The action recorded as `id`, if there is one; `Err` when storage failed.
    fn read<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<Action>, String>>;

    /// One page of `key`'s history (everyone's for `None`) for `query`, after `cursor`: up to `query.limit + 1`
    /// actions, newest first (see [`action_list::page_sql`]); `Err` when storage failed.
    fn list<'a>(&'a self, key: Option<&'a str>, query: &'a ListQuery, cursor: Option<&'a Cursor>) -> Pending<'a, Result<Vec<Action>, String>>;

    /// The non-empty buckets of `key`'s actions through the route `route_id` for `query`, by
    /// bucket number (see [`route_stats::stats_sql`]); `Err` when storage failed.
    fn stats<'a>(&'a self, key: Option<&'a str>, route_id: &'a str, query: &'a StatsQuery) -> Pending<'a, Result<Vec<(u64, Bucket)>, String>>;

    /// The usage rows of `key`'s actions (everyone's for `None`) for `query`, by group (see
    /// [`usage::usage_sql`]); `Err` when storage failed.
    fn usage<'a>(&'a self, key: Option<&'a str>, query: &'a UsageQuery) -> Pending<'a, Result<Vec<UsageRow>, String>>;

    /// The latencies of the most recent successes (at most 50) through the route `route_id`, or
    /// else of `model`, for a poll's `Retry-After`.
    fn recent_latencies<'a>(&'a self, model: &'a str, route_id: Option<&'a str>) -> Pending<'a, Result<Vec<u64>, String>>;

    /// Up to `batch` of the oldest actions created before `cutoff_ms`, oldest first.
    fn oldest_before(&self, cutoff_ms: u64, batch: u32) -> Pending<'_, Result<Vec<Action>, String>>;

    /// Deletes the actions `ids`.
    fn forget<'a>(&'a self, ids: &'a [String]) -> Pending<'a, Result<(), String>>;
}

/// Where the images of recorded generations are kept.
pub trait Files {
    /// Whether a store is there (a deployment without its binding stores no images).
    fn keeps(&self) -> bool;

    /// Stores `file` under its id.
    fn put(&self, file: NewFile) -> Pending<'_, Result<(), String>>;

    /// What is stored as `id`, without its bytes; `Ok(None)` when nothing is.
    fn head<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<FileMeta>, String>>;

    /// Deletes the files `ids` (those already gone are no error).
    fn delete<'a>(&'a self, ids: &'a [String]) -> Pending<'a, Result<(), String>>;
}

/// What a cache-enabled request that missed learns from the place that coalesces identical
/// requests (one per cache key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No identical request is generating: this one does, and reports how it ended.
    Lead,
    /// An identical request generated while this one waited: its stored entry.
    Answer(Vec<u8>),
    /// The identical request it waited for failed: its status and error body.
    Failed { status: u16, body: Vec<u8> },
    /// There is no place to coalesce in (no binding), or it could not be reached: generate.
    Unavailable,
}

/// Coalesces identical cache-enabled requests: one generation for all that arrive while it runs.
pub trait Coalescer {
    /// Claims the generation for `key` until `until_ms`: lead it, or wait for the one running.
    fn claim<'a>(&'a self, key: &'a str, until_ms: u64) -> Pending<'a, Claim>;
}

/// One managed key's exact counters ([`crate::limits`]): rate, generations in flight, spend.
/// Every call names the key by its hash; each key's counters are decided in one place.
pub trait Limiter {
    /// Whether counters are kept (without them, a key with limits is refused: a 503).
    fn available(&self) -> bool;

    /// Admits `ask` for `key`, or says why not; `Err` when the counters could not be reached.
    fn admit<'a>(&'a self, key: &'a str, ask: &'a Ask) -> Pending<'a, Result<Result<(), Refusal>, String>>;

    /// Settles `ticket` of `key` with what it cost (micro-dollars; `None`: what it held).
    fn settle<'a>(&'a self, key: &'a str, ticket: &'a str, cost: Option<u64>, now_ms: u64) -> Pending<'a, Result<Settled, String>>;

    /// What `key` has spent and holds.
    fn usage<'a>(&'a self, key: &'a str, now_ms: u64) -> Pending<'a, Result<Usage, String>>;
}

/// Where managed keys are kept, by hash.
pub trait KeyStore {
    /// Whether a store is there (a deployment without its binding has only `IMAGEGATE_KEYS`).
    fn available(&self) -> bool;

    /// The key whose hash is `hash`, if there is one; it may be a few seconds old (see
    /// `docs/keys.md`), except in the place that changed it.
    fn find<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<Option<KeyRecord>, String>>;

    /// The key `hash` as stored now (for a change to it), past any cache.
    fn find_fresh<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<Option<KeyRecord>, String>> {
        self.find(hash)
    }

    /// A page of keys, oldest first.
    fn list(&self, include_disabled: bool, offset: u32, limit: u32) -> Pending<'_, Result<Vec<KeyRecord>, String>>;

    /// Stores `record` under its hash (new or changed).
    fn put<'a>(&'a self, record: &'a KeyRecord) -> Pending<'a, Result<(), String>>;

    /// Deletes the key `hash`; whether there was one.
    fn delete<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<bool, String>>;
}

/// The state that keeps nothing: no cache hits, no history, no limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Off;

impl Cache for Off {
    fn available(&self) -> bool {
        false
    }

    fn get<'a>(&'a self, _key: &'a str, _now_ms: u64) -> Pending<'a, Option<Stored>> {
        Box::pin(async { None })
    }

    fn put<'a>(&'a self, _key: &'a str, _value: Vec<u8>, _now_ms: u64, _ttl_secs: u64) -> Pending<'a, ()> {
        Box::pin(async {})
    }
}

impl History for Off {
    fn keeps(&self) -> bool {
        false
    }

    fn record(&self, _action: Action) -> Pending<'_, ()> {
        Box::pin(async {})
    }

    fn read<'a>(&'a self, _id: &'a str) -> Pending<'a, Result<Option<Action>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn list<'a>(&'a self, _key: Option<&'a str>, _query: &'a ListQuery, _cursor: Option<&'a Cursor>) -> Pending<'a, Result<Vec<Action>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn stats<'a>(&'a self, _key: Option<&'a str>, _route_id: &'a str, _query: &'a StatsQuery) -> Pending<'a, Result<Vec<(u64, Bucket)>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn usage<'a>(&'a self, _key: Option<&'a str>, _query: &'a UsageQuery) -> Pending<'a, Result<Vec<UsageRow>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn recent_latencies<'a>(&'a self, _model: &'a str, _route_id: Option<&'a str>) -> Pending<'a, Result<Vec<u64>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn oldest_before(&self, _cutoff_ms: u64, _batch: u32) -> Pending<'_, Result<Vec<Action>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn forget<'a>(&'a self, _ids: &'a [String]) -> Pending<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

impl Files for Off {
    fn keeps(&self) -> bool {
        false
    }

    fn put(&self, _file: NewFile) -> Pending<'_, Result<(), String>> {
        Box::pin(async { Err("no file store".to_owned()) })
    }

    fn head<'a>(&'a self, _id: &'a str) -> Pending<'a, Result<Option<FileMeta>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn delete<'a>(&'a self, _ids: &'a [String]) -> Pending<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

impl Coalescer for Off {
    fn claim<'a>(&'a self, _key: &'a str, _until_ms: u64) -> Pending<'a, Claim> {
        Box::pin(async { Claim::Unavailable })
    }
}

impl Limiter for Off {
    fn available(&self) -> bool {
        false
    }

    fn admit<'a>(&'a self, _key: &'a str, _ask: &'a Ask) -> Pending<'a, Result<Result<(), Refusal>, String>> {
        Box::pin(async { Err("no counters".to_owned()) })
    }

    fn settle<'a>(&'a self, _key: &'a str, _ticket: &'a str, cost: Option<u64>, _now_ms: u64) -> Pending<'a, Result<Settled, String>> {
        Box::pin(async move { Ok(Settled { held: None, spent: cost.unwrap_or(0) }) })
    }

    fn usage<'a>(&'a self, _key: &'a str, _now_ms: u64) -> Pending<'a, Result<Usage, String>> {
        Box::pin(async { Ok(Usage::default()) })
    }
}

impl KeyStore for Off {
    fn available(&self) -> bool {
        false
    }

    fn find<'a>(&'a self, _hash: &'a str) -> Pending<'a, Result<Option<KeyRecord>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn list(&self, _include_disabled: bool, _offset: u32, _limit: u32) -> Pending<'_, Result<Vec<KeyRecord>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn put<'a>(&'a self, _record: &'a KeyRecord) -> Pending<'a, Result<(), String>> {
        Box::pin(async { Err("no key store".to_owned()) })
    }

    fn delete<'a>(&'a self, _hash: &'a str) -> Pending<'a, Result<bool, String>> {
        Box::pin(async { Ok(false) })
    }
}

/// A cache in memory, with expiry by the given clock (for tests).
#[derive(Debug, Default)]
pub struct MemoryCache {
    pub entries: RefCell<BTreeMap<String, MemoryEntry>>,
}

/// One value of a [`MemoryCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEntry {
    pub value: Vec<u8>,
    pub until_ms: u64,
    pub stored_ms: u64,
}

impl Cache for MemoryCache {
    fn available(&self) -> bool {
        true
    }

    fn get<'a>(&'a self, key: &'a str, now_ms: u64) -> Pending<'a, Option<Stored>> {
        let hit = self
            .entries
            .borrow()
            .get(key)
            .filter(|entry| now_ms < entry.until_ms)
            .map(|entry| Stored { value: entry.value.clone(), stored_ms: entry.stored_ms });
        Box::pin(async move { hit })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, now_ms: u64, ttl_secs: u64) -> Pending<'a, ()> {
        let until_ms = now_ms.saturating_add(ttl_secs.saturating_mul(1000));
        self.entries.borrow_mut().insert(key.to_owned(), MemoryEntry { value, until_ms, stored_ms: now_ms });
        Box::pin(async {})
    }
}

/// A history in memory (for tests).
#[derive(Debug, Default)]
pub struct MemoryHistory {
    pub actions: RefCell<Vec<Action>>,
    /// When set, reads fail as a storage that cannot be reached does.
    pub unreachable: std::cell::Cell<bool>,
}

impl MemoryHistory {
    fn reachable(&self) -> Result<(), String> {
        if self.unreachable.get() {
            return Err("unreachable".to_owned());
        }
        Ok(())
    }
}

impl History for MemoryHistory {
    fn keeps(&self) -> bool {
        true
    }

    fn record(&self, action: Action) -> Pending<'_, ()> {
        self.actions.borrow_mut().push(action);
        Box::pin(async {})
    }

    fn read<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<Action>, String>> {
        let found = self.actions.borrow().iter().find(|a| a.id == id).cloned();
        let result = self.reachable().map(|()| found);
        Box::pin(async move { result })
    }

    fn list<'a>(&'a self, key: Option<&'a str>, query: &'a ListQuery, cursor: Option<&'a Cursor>) -> Pending<'a, Result<Vec<Action>, String>> {
        let mut page: Vec<Action> = self.actions.borrow().iter().filter(|a| action_list::selects(a, key, query, cursor)).cloned().collect();
        page.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        page.truncate(query.limit as usize + 1);
        let result = self.reachable().map(|()| page);
        Box::pin(async move { result })
    }

    fn stats<'a>(&'a self, key: Option<&'a str>, route_id: &'a str, query: &'a StatsQuery) -> Pending<'a, Result<Vec<(u64, Bucket)>, String>> {
        let buckets = route_stats::buckets_of(&self.actions.borrow(), key, route_id, query);
        let result = self.reachable().map(|()| buckets);
        Box::pin(async move { result })
    }

    fn usage<'a>(&'a self, key: Option<&'a str>, query: &'a UsageQuery) -> Pending<'a, Result<Vec<UsageRow>, String>> {
        let rows = usage::rows_of(&self.actions.borrow(), key, query);
        let result = self.reachable().map(|()| rows);
        Box::pin(async move { result })
    }

    fn recent_latencies<'a>(&'a self, model: &'a str, route_id: Option<&'a str>) -> Pending<'a, Result<Vec<u64>, String>> {
        let mut done: Vec<&Action> = Vec::new();
        let actions = self.actions.borrow();
        let scoped = |a: &Action| match route_id {
            Some(route_id) => a.route_id.as_deref() == Some(route_id),
            None => a.model.as_deref() == Some(model),
        };
        done.extend(actions.iter().filter(|a| scoped(a) && a.status == "success"));
        done.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        let latencies: Vec<u64> = done.iter().take(50).map(|a| a.latency_ms).collect();
        Box::pin(async move { Ok(latencies) })
    }

    fn oldest_before(&self, cutoff_ms: u64, batch: u32) -> Pending<'_, Result<Vec<Action>, String>> {
        let mut old: Vec<Action> = self.actions.borrow().iter().filter(|a| a.created_at < cutoff_ms).cloned().collect();
        old.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        old.truncate(batch as usize);
        let result = self.reachable().map(|()| old);
        Box::pin(async move { result })
    }

    fn forget<'a>(&'a self, ids: &'a [String]) -> Pending<'a, Result<(), String>> {
        self.actions.borrow_mut().retain(|a| !ids.contains(&a.id));
        Box::pin(async { Ok(()) })
    }
}

/// A file store in memory (for tests).
#[derive(Debug, Default)]
pub struct MemoryFiles {
    pub files: RefCell<BTreeMap<String, NewFile>>,
    /// When set, every call fails as a store that cannot be reached does.
    pub unreachable: std::cell::Cell<bool>,
}

impl MemoryFiles {
    fn reachable(&self) -> Result<(), String> {
        if self.unreachable.get() {
            return Err("unreachable".to_owned());
        }
        Ok(())
    }
}

impl Files for MemoryFiles {
    fn keeps(&self) -> bool {
        true
    }

    fn put(&self, file: NewFile) -> Pending<'_, Result<(), String>> {
        let result = self.reachable().map(|()| {
            self.files.borrow_mut().insert(file.id.clone(), file);
        });
        Box::pin(async move { result })
    }

    fn head<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<FileMeta>, String>> {
        let meta = self.files.borrow().get(id).map(|file| FileMeta {
            owner: file.owner.clone(),
            media_type: file.media_type.clone(),
            etag: format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&file.bytes)[..8])),
            size: file.bytes.len() as u64,
        });
        let result = self.reachable().map(|()| meta);
        Box::pin(async move { result })
    }

    fn delete<'a>(&'a self, ids: &'a [String]) -> Pending<'a, Result<(), String>> {
        let result = self.reachable().map(|()| self.files.borrow_mut().retain(|id, _| !ids.contains(id)));
        Box::pin(async move { result })
    }
}

/// A coalescer that answers every claim with the outcomes queued in it, then leads (for tests).
#[derive(Debug, Default)]
pub struct ScriptedCoalescer {
    pub claims: RefCell<Vec<Claim>>,
    /// The keys claimed, in order.
    pub claimed: RefCell<Vec<String>>,
}

impl Coalescer for ScriptedCoalescer {
    fn claim<'a>(&'a self, key: &'a str, _until_ms: u64) -> Pending<'a, Claim> {
        self.claimed.borrow_mut().push(key.to_owned());
        let mut claims = self.claims.borrow_mut();
        let claim = if claims.is_empty() { Claim::Lead } else { claims.remove(0) };
        Box::pin(async move { claim })
    }
}

/// Counters in memory, one [`Counters`] per key (for tests).
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    pub counters: RefCell<BTreeMap<String, Counters>>,
    /// Every admission asked for, in order.
    pub asked: RefCell<Vec<Ask>>,
}

impl Limiter for MemoryLimiter {
    fn available(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, key: &'a str, ask: &'a Ask) -> Pending<'a, Result<Result<(), Refusal>, String>> {
        self.asked.borrow_mut().push(ask.clone());
        let admitted = self.counters.borrow_mut().entry(key.to_owned()).or_default().admit(ask);
        Box::pin(async move { Ok(admitted) })
    }

    fn settle<'a>(&'a self, key: &'a str, ticket: &'a str, cost: Option<u64>, now_ms: u64) -> Pending<'a, Result<Settled, String>> {
        let settled = self.counters.borrow_mut().entry(key.to_owned()).or_default().settle(ticket, cost, now_ms);
        Box::pin(async move { Ok(settled) })
    }

    fn usage<'a>(&'a self, key: &'a str, now_ms: u64) -> Pending<'a, Result<Usage, String>> {
        let usage = self.counters.borrow_mut().get_mut(key).map(|c| c.usage(now_ms)).unwrap_or_default();
        Box::pin(async move { Ok(usage) })
    }
}

/// Keys in memory (for tests).
#[derive(Debug, Default)]
pub struct MemoryKeys {
    pub keys: RefCell<BTreeMap<String, KeyRecord>>,
}

impl KeyStore for MemoryKeys {
    fn available(&self) -> bool {
        true
    }

    fn find<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<Option<KeyRecord>, String>> {
        let found = self.keys.borrow().get(hash).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn list(&self, include_disabled: bool, offset: u32, limit: u32) -> Pending<'_, Result<Vec<KeyRecord>, String>> {
        let mut keys: Vec<KeyRecord> = self.keys.borrow().values().filter(|k| include_disabled || !k.disabled).cloned().collect();
        keys.sort_by(|a, b| (a.created_at, &a.hash).cmp(&(b.created_at, &b.hash)));
        let page = keys.into_iter().skip(offset as usize).take(limit as usize).collect();
        Box::pin(async move { Ok(page) })
    }

    fn put<'a>(&'a self, record: &'a KeyRecord) -> Pending<'a, Result<(), String>> {
        self.keys.borrow_mut().insert(record.hash.clone(), record.clone());
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<bool, String>> {
        let gone = self.keys.borrow_mut().remove(hash).is_some();
        Box::pin(async move { Ok(gone) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;

    #[test]
    fn the_memory_cache_keeps_a_value_for_its_time() {
        let cache = MemoryCache::default();
        block_on(cache.put("k", b"answer".to_vec(), 1_000, 60));
        assert_eq!(block_on(cache.get("k", 60_999)), Some(Stored { value: b"answer".to_vec(), stored_ms: 1_000 }));
        assert_eq!(block_on(cache.get("k", 61_000)), None, "expired");
        assert_eq!(block_on(Off.get("k", 0)), None, "Off keeps nothing");
    }
}
