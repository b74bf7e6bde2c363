//! The response cache on Workers KV (binding [`BINDING`]): read on a cache-enabled request's
//! lookup, written after the answer has gone from the same runtime buffer the answer was sent
//! from. A deployment without the binding has no store, and every cache-enabled answer says
//! BYPASS.

use std::cell::OnceCell;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{Env, KvStore};

use crate::cache::entry::{Store, Stored};
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

    fn get<'a>(&'a self, key: &'a str, now_ms: u64) -> Pending<'a, Option<Stored>> {
        // KV expires entries itself; a read that fails is a miss. The metadata is when it was stored.
        Box::pin(async move {
            let kv = self.store()?;
            let (value, stored_ms) = kv.get(key).bytes_with_metadata::<u64>().await.ok()?;
            Some(Stored { value: value?, stored_ms: stored_ms.unwrap_or(now_ms) })
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, now_ms: u64, ttl_secs: u64) -> Pending<'a, ()> {
        Box::pin(async move {
            let _ = put(self.env, key, &Uint8Array::from(&value[..]), now_ms, ttl_secs).await;
        })
    }
}

/// Writes `value` under `key` for `ttl_secs`, with `now_ms` as its metadata.
async fn put(env: &Env, key: &str, value: &Uint8Array, now_ms: u64, ttl_secs: u64) -> Result<(), JsValue> {
    let namespace = Reflect::get(env, &JsValue::from_str(BINDING))?;
    let put: Function = Reflect::get(&namespace, &JsValue::from_str("put"))?.dyn_into()?;
    let options = Object::new();
    Reflect::set(&options, &JsValue::from_str("expirationTtl"), &JsValue::from_f64(ttl_secs as f64))?;
    Reflect::set(&options, &JsValue::from_str("metadata"), &JsValue::from_f64(now_ms as f64))?;
    let written: Promise = put.call3(&namespace, &JsValue::from_str(key), value, &options)?.dyn_into()?;
    JsFuture::from(written).await.map(|_| ())
}

/// Stores the answer `body` as `store` says; a failed write only costs a later miss.
pub async fn store(env: &Env, store: Store, body: &Uint8Array) {
    let _ = put(env, &store.key, body, super::runtime::now_ms(), store.ttl_secs).await;
}
