//! The history on D1 (binding [`BINDING`], tables in `migrations/`): each generation's action is
//! inserted after the answer has gone; a failed write is logged, never the client's error. A
//! deployment without the binding records nothing, and its answers name no action.

use std::cell::OnceCell;

use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{console_warn, Env};

use crate::action_list::{page_sql, Cursor, ListQuery, SqlValue};
use crate::retention::{DELETE_BATCH, OLDEST_BATCH};
use crate::route_stats::{stats_sql, Bucket, StatsQuery};
use crate::state::{Action, History, Pending};
use crate::usage::{usage_sql, UsageQuery, UsageRow};

/// The D1 database's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_DB";

const INSERT: &str =
    "INSERT OR REPLACE INTO actions (id, key_id, model, status, http_status, created_at, latency_ms, cost_usd, record, route_id, cache, images) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
const SELECT: &str = "SELECT record FROM actions WHERE id = ?1";
const RECENT_LATENCIES: &str = "SELECT latency_ms FROM actions WHERE model = ?1 AND status = 'success' ORDER BY created_at DESC LIMIT 50";
const RECENT_ROUTE_LATENCIES: &str = "SELECT latency_ms FROM actions WHERE route_id = ?1 AND status = 'success' ORDER BY created_at DESC LIMIT 50";

/// The history of one request: the binding is looked up once, when first needed.
pub struct D1History<'e> {
    env: &'e Env,
    db: OnceCell<Option<JsValue>>,
}

impl<'e> D1History<'e> {
    pub fn new(env: &'e Env) -> Self {
        D1History { env, db: OnceCell::new() }
    }

    fn db(&self) -> Option<&JsValue> {
        self.db.get_or_init(|| database(self.env)).as_ref()
    }
}

pub(super) fn database(env: &Env) -> Option<JsValue> {
    Reflect::get(env, &JsValue::from_str(BINDING)).ok().filter(|db| db.is_object())
}

impl History for D1History<'_> {
    fn keeps(&self) -> bool {
        self.db().is_some()
    }

    fn record(&self, action: Action) -> Pending<'_, ()> {
        Box::pin(async move {
            if let Some(db) = self.db() {
                insert(db, &action).await;
            }
        })
    }

    fn read<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<Action>, String>> {
        Box::pin(async move {
            let Some(db) = self.db() else { return Ok(None) };
            let record = query(db, SELECT, &[JsValue::from_str(id)], Some("record")).await.map_err(failure("read"))?;
            // `first(column)` answers null when no row matched.
            let Some(record) = record.as_string() else { return Ok(None) };
            serde_json::from_str(&record).map(Some).map_err(|error| format!("the action {id} does not parse: {error}"))
        })
    }

    fn list<'a>(&'a self, key: Option<&'a str>, query: &'a ListQuery, cursor: Option<&'a Cursor>) -> Pending<'a, Result<Vec<Action>, String>> {
        Box::pin(async move {
            let db = self.db().ok_or("no history binding")?;
            let (sql, args) = page_sql(key, query, cursor);
            records(db, &sql, &bound(args)).await
        })
    }

    fn stats<'a>(&'a self, key: Option<&'a str>, route_id: &'a str, query: &'a StatsQuery) -> Pending<'a, Result<Vec<(u64, Bucket)>, String>> {
        Box::pin(async move {
            let db = self.db().ok_or("no history binding")?;
            let (sql, args) = stats_sql(key, route_id, query);
            let failed = failure("stats query");
            let result = query_rows(db, &sql, &bound(args)).await.map_err(&failed)?;
            let rows: Array = Reflect::get(&result, &JsValue::from_str("results")).map_err(&failed)?.dyn_into().map_err(&failed)?;
            let width_secs = query.interval.ms() / 1000;
            Ok(rows
                .iter()
                .map(|row| {
                    let number = |name: &str| Reflect::get(&row, &JsValue::from_str(name)).ok().and_then(|v| v.as_f64());
                    let count = |name: &str| number(name).unwrap_or(0.0) as u64;
                    let bucket = count("bucket");
                    (
                        bucket,
                        Bucket {
                            start: bucket * width_secs,
                            requests: count("requests"),
                            successes: count("successes"),
                            errors: count("errors"),
                            cache_hits: count("cache_hits"),
                            images: count("images"),
                            cost_usd: number("cost_usd").unwrap_or(0.0),
                            p50_latency_ms: number("p50").map(|ms| ms as u64),
                            p95_latency_ms: number("p95").map(|ms| ms as u64),
                        },
                    )
                })
                .collect())
        })
    }

    fn usage<'a>(&'a self, key: Option<&'a str>, query: &'a UsageQuery) -> Pending<'a, Result<Vec<UsageRow>, String>> {
        Box::pin(async move {
            let db = self.db().ok_or("no history binding")?;
            let (sql, args) = usage_sql(key, query);
            let failed = failure("usage query");
            let result = query_rows(db, &sql, &bound(args)).await.map_err(&failed)?;
            let rows: Array = Reflect::get(&result, &JsValue::from_str("results")).map_err(&failed)?.dyn_into().map_err(&failed)?;
            Ok(rows
                .iter()
                .map(|row| {
                    let field = |name: &str| Reflect::get(&row, &JsValue::from_str(name)).ok();
                    let number = |name: &str| field(name).and_then(|v| v.as_f64());
                    let count = |name: &str| number(name).unwrap_or(0.0) as u64;
                    let group = match field("group_key") {
                        Some(v) if v.as_string().is_some() => serde_json::Value::from(v.as_string().expect("checked")),
                        Some(v) if v.as_f64().is_some() => serde_json::Value::from(v.as_f64().expect("checked") as u64),
                        _ => serde_json::Value::Null,
                    };
                    UsageRow {
                        group,
                        requests: count("requests"),
                        successes: count("successes"),
                        failures: count("failures"),
                        images: count("images"),
                        cost_usd: number("cost_usd").unwrap_or(0.0),
                        cache_hits: count("cache_hits"),
                        p50_latency_ms: number("p50").map(|ms| ms as u64),
                        p95_latency_ms: number("p95").map(|ms| ms as u64),
                    }
                })
                .collect())
        })
    }

    fn recent_latencies<'a>(&'a self, model: &'a str, route_id: Option<&'a str>) -> Pending<'a, Result<Vec<u64>, String>> {
        Box::pin(async move {
            let db = self.db().ok_or("no history binding")?;
            let failed = failure("latency query");
            let (sql, scope) = match route_id {
                Some(route_id) => (RECENT_ROUTE_LATENCIES, route_id),
                None => (RECENT_LATENCIES, model),
            };
            let result = query_rows(db, sql, &[JsValue::from_str(scope)]).await.map_err(&failed)?;
            let rows: Array = Reflect::get(&result, &JsValue::from_str("results")).map_err(&failed)?.dyn_into().map_err(&failed)?;
            Ok(rows.iter().filter_map(|row| Reflect::get(&row, &JsValue::from_str("latency_ms")).ok()?.as_f64()).map(|ms| ms as u64).collect())
        })
    }

    fn oldest_before(&self, cutoff_ms: u64, batch: u32) -> Pending<'_, Result<Vec<Action>, String>> {
        Box::pin(async move {
            let db = self.db().ok_or("no history binding")?;
            let args = [JsValue::from_f64(cutoff_ms as f64), JsValue::from_f64(f64::from(batch))];
            records(db, OLDEST_BATCH, &args).await
        })
    }

    fn forget<'a>(&'a self, ids: &'a [String]) -> Pending<'a, Result<(), String>> {
        Box::pin(async move {
            let db = self.db().ok_or("no history binding")?;
            let ids = serde_json::to_string(ids).expect("ids serialise");
            query(db, DELETE_BATCH, &[JsValue::from_str(&ids)], None).await.map_err(failure("retention delete"))?;
            Ok(())
        })
    }
}

/// `args` as the values D1 binds.
fn bound(args: Vec<SqlValue>) -> Vec<JsValue> {
    args.into_iter()
        .map(|arg| match arg {
            SqlValue::Text(text) => JsValue::from_str(&text),
            SqlValue::Integer(n) => JsValue::from_f64(n as f64),
        })
        .collect()
}

/// The actions `sql` selects (as their `record` column) with `args` bound.
async fn records(db: &JsValue, sql: &str, args: &[JsValue]) -> Result<Vec<Action>, String> {
    let failed = failure("query");
    let result = query_rows(db, sql, args).await.map_err(&failed)?;
    let rows: Array = Reflect::get(&result, &JsValue::from_str("results")).map_err(&failed)?.dyn_into().map_err(&failed)?;
    rows.iter()
        .map(|row| {
            let record = Reflect::get(&row, &JsValue::from_str("record")).ok().and_then(|r| r.as_string()).ok_or("a history row has no record")?;
            serde_json::from_str(&record).map_err(|error| format!("a history record does not parse: {error}"))
        })
        .collect()
}

/// Turns what D1 threw during `what` into the operator's message (for the log only).
fn failure(what: &'static str) -> impl Fn(JsValue) -> String {
    move |error| format!("the history {what} failed: {}", error.as_string().unwrap_or_else(|| format!("{error:?}")))
}

/// Records `action` in the deployment's database, if it has one (after the answer: `waitUntil`).
pub async fn record(env: Env, action: Action) {
    if let Some(db) = database(&env) {
        insert(&db, &action).await;
    }
}

/// Writes `action` to the deployment's database, saying whether it was written (for a writer
/// that tries again, as a runner's alarm does).
pub async fn write(env: &Env, action: &Action) -> Result<(), String> {
    let db = database(env).ok_or("no history binding")?;
    query(&db, INSERT, &insert_args(action), None).await.map(|_| ()).map_err(failure("write"))
}

async fn insert(db: &JsValue, action: &Action) {
    if let Err(error) = query(db, INSERT, &insert_args(action), None).await {
        console_warn!("{{\"warning\":\"the action {} was not recorded\",\"error\":{:?}}}", action.id, error.as_string().unwrap_or_default());
    }
}

/// The values [`INSERT`] binds for `action`.
fn insert_args(action: &Action) -> [JsValue; 12] {
    let record = serde_json::to_string(action).expect("an action always serialises");
    let number = |n: u64| JsValue::from_f64(n as f64);
    [
        JsValue::from_str(&action.id),
        JsValue::from_str(action.key.as_deref().unwrap_or("")),
        action.model.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        JsValue::from_str(&action.status),
        number(u64::from(action.http_status)),
        number(action.created_at),
        number(action.latency_ms),
        action.cost_usd.map_or(JsValue::NULL, JsValue::from_f64),
        JsValue::from_str(&record),
        action.route_id.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        action.cache.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        action.images.and_then(|images| images.got).map_or(JsValue::NULL, |got| number(got as u64)),
    ]
}

fn method(target: &JsValue, name: &str) -> Result<Function, JsValue> {
    Reflect::get(target, &JsValue::from_str(name))?.dyn_into()
}

/// `sql` prepared on `db` with `args` bound.
fn statement(db: &JsValue, sql: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let statement = method(db, "prepare")?.call1(db, &JsValue::from_str(sql))?;
    method(&statement, "bind")?.apply(&statement, &args.iter().collect::<Array>())
}

/// Runs `sql` with `args` on `db` and gives D1's result (`{ results: [...] }`).
pub(super) async fn query_rows(db: &JsValue, sql: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let bound = statement(db, sql, args)?;
    JsFuture::from(method(&bound, "all")?.call0(&bound)?.dyn_into::<Promise>()?).await
}

/// Runs `sql` with `args` on `db`: `first(column)` when a column is named, else `run()`.
pub(super) async fn query(db: &JsValue, sql: &str, args: &[JsValue], column: Option<&str>) -> Result<JsValue, JsValue> {
    let bound = statement(db, sql, args)?;
    let pending: Promise = match column {
        Some(column) => method(&bound, "first")?.call1(&bound, &JsValue::from_str(column))?,
        None => method(&bound, "run")?.call0(&bound)?,
    }
    .dyn_into()?;
    JsFuture::from(pending).await
}
