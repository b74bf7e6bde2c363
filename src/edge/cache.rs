//! The response cache on Workers KV (binding [`BINDING`]): read on a cache-enabled request's
//! lookup, written after the answer has gone. A deployment without the binding has no store,
//! and every cache-enabled answer says BYPASS.

use std::cell::OnceCell;

use worker::{Env, KvStore};

use crate::cache::entry::Store;
use crate::state::{Cache, Pending};

/// The KV namespace's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_CACHE";

/// The cache of one request: the binding is looked up only when a request uses the cache.
pub struct EdgeCache<'e> {
    env: &'e Env,
    store: OnceCell<Option<KvStore>>,
}

impl<'e> EdgeCache<'e> {
    pub fn new(env: &'e Env) -> Self {
        EdgeCache { env, store: OnceCell::new() }
    }

    fn store(&self) -> Option<&KvStore> {
        self.store.get_or_init(|| self.env.kv(BINDING).ok()).as_ref()
    }
}

impl Cache for EdgeCache<'_> {
    fn available(&self) -> bool {
        self.store().is_some()
    }

    fn get<'a>(&'a self, key: &'a str, _now_ms: u64) -> Pending<'a, Option<Vec<u8>>> {
        // KV expires entries itself; a read that fails is a miss.
        Box::pin(async move {
            let kv = self.store()?;
            kv.get(key).bytes().await.ok().flatten()
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, _now_ms: u64, ttl_secs: u64) -> Pending<'a, ()> {
        Box::pin(async move {
            if let Some(kv) = self.store() {
                put(kv.clone(), key.to_owned(), value, ttl_secs).await;
            }
        })
    }
}

/// Writes `value` under `key` for `ttl_secs`; a failed write only costs a later miss.
pub async fn put(kv: KvStore, key: String, value: Vec<u8>, ttl_secs: u64) {
    if let Ok(put) = kv.put_bytes(&key, &value) {
        let _ = put.expiration_ttl(ttl_secs).execute().await;
    }
}

/// Stores `store`, if the deployment has the binding.
pub async fn store(env: &Env, store: Store) {
    if let Ok(kv) = env.kv(BINDING) {
        put(kv, store.key, store.value, store.ttl_secs).await;
    }
}
