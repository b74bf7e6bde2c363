//! The managed keys on D1 (the history's binding, `IMAGEGATE_DB`; table `keys` in `migrations/`), read through a
//! cache in the isolate that keeps each lookup for [`FRESH_MS`]: a key disabled or deleted
//! elsewhere is refused there within that time, and at once in the isolate that changed it.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

use js_sys::{Array, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

use super::history::{database, query, query_rows};
use crate::keys::KeyRecord;
use crate::state::{KeyStore, Pending};

/// How long a lookup is trusted in an isolate.
pub const FRESH_MS: u64 = 5_000;
/// The most lookups an isolate keeps (it forgets them all when full).
const MAX_CACHED: usize = 1_000;

const FIND: &str = "SELECT record FROM keys WHERE hash = ?1";
const LIST: &str = "SELECT record FROM keys WHERE (?1 = 1 OR disabled = 0) ORDER BY created_at, hash LIMIT ?2 OFFSET ?3";
const PUT: &str = "INSERT OR REPLACE INTO keys (hash, disabled, created_at, record) VALUES (?1, ?2, ?3, ?4)";
const DELETE: &str = "DELETE FROM keys WHERE hash = ?1";

thread_local! {
    /// Recent lookups by hash: when, and what was found.
    static LOOKED_UP: RefCell<HashMap<String, (u64, Option<KeyRecord>)>> = RefCell::new(HashMap::new());
}

fn forget(hash: &str) {
    LOOKED_UP.with(|cache| cache.borrow_mut().remove(hash));
}

/// The key store of one request: the binding is looked up once, when first needed (a request
/// with a key of `IMAGEGATE_KEYS` never needs it).
pub struct D1Keys<'e> {
    env: &'e Env,
    db: OnceCell<Option<JsValue>>,
}

impl<'e> D1Keys<'e> {
    pub fn new(env: &'e Env) -> Self {
        D1Keys { env, db: OnceCell::new() }
    }

    fn db(&self) -> Result<&JsValue, String> {
        self.db.get_or_init(|| database(self.env)).as_ref().ok_or_else(|| "no key store binding".to_owned())
    }
}

fn failed(what: &'static str) -> impl Fn(JsValue) -> String {
    move |error| format!("the key store {what} failed: {}", error.as_string().unwrap_or_else(|| format!("{error:?}")))
}

fn parse(record: &str) -> Result<KeyRecord, String> {
    serde_json::from_str(record).map_err(|error| format!("a key record does not parse: {error}"))
}

impl KeyStore for D1Keys<'_> {
    fn available(&self) -> bool {
        self.db().is_ok()
    }

    fn find<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<Option<KeyRecord>, String>> {
        Box::pin(async move {
            let now_ms = super::runtime::now_ms();
            let cached =
                LOOKED_UP.with(|cache| cache.borrow().get(hash).filter(|(at, _)| now_ms.saturating_sub(*at) < FRESH_MS).map(|(_, found)| found.clone()));
            if let Some(found) = cached {
                return Ok(found);
            }
            let record = query(self.db()?, FIND, &[JsValue::from_str(hash)], Some("record")).await.map_err(failed("lookup"))?;
            let found = record.as_string().map(|text| parse(&text)).transpose()?;
            LOOKED_UP.with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(hash.to_owned(), (now_ms, found.clone()));
            });
            Ok(found)
        })
    }

    fn find_fresh<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<Option<KeyRecord>, String>> {
        Box::pin(async move {
            forget(hash);
            self.find(hash).await
        })
    }

    fn list(&self, include_disabled: bool, offset: u32, limit: u32) -> Pending<'_, Result<Vec<KeyRecord>, String>> {
        Box::pin(async move {
            let args = [JsValue::from_f64(f64::from(u8::from(include_disabled))), JsValue::from_f64(f64::from(limit)), JsValue::from_f64(f64::from(offset))];
            let result = query_rows(self.db()?, LIST, &args).await.map_err(failed("list"))?;
            let rows: Array = Reflect::get(&result, &JsValue::from_str("results")).map_err(failed("list"))?.dyn_into().map_err(failed("list"))?;
            rows.iter()
                .map(|row| {
                    let text = Reflect::get(&row, &JsValue::from_str("record")).ok().and_then(|r| r.as_string()).ok_or("a key row has no record")?;
                    parse(&text)
                })
                .collect()
        })
    }

    fn put<'a>(&'a self, record: &'a KeyRecord) -> Pending<'a, Result<(), String>> {
        Box::pin(async move {
            forget(&record.hash);
            let text = serde_json::to_string(record).expect("a key record serialises");
            let args = [
                JsValue::from_str(&record.hash),
                JsValue::from_f64(f64::from(u8::from(record.disabled))),
                JsValue::from_f64(record.created_at as f64),
                JsValue::from_str(&text),
            ];
            query(self.db()?, PUT, &args, None).await.map_err(failed("write"))?;
            forget(&record.hash);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, hash: &'a str) -> Pending<'a, Result<bool, String>> {
        Box::pin(async move {
            forget(hash);
            let result = query(self.db()?, DELETE, &[JsValue::from_str(hash)], None).await.map_err(failed("delete"))?;
            forget(hash);
            let changes = Reflect::get(&result, &JsValue::from_str("meta")).and_then(|meta| Reflect::get(&meta, &JsValue::from_str("changes"))).ok();
            Ok(changes.and_then(|c| c.as_f64()).is_some_and(|c| c > 0.0))
        })
    }
}
