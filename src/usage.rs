//! `GET /v1/usage?from=&to=&group_by=`: what a key's generations (everyone's, for a management
//! key) did and cost over a range, grouped by model, key, identity, route, UTC day or a metadata
//! field. Computed by one SQL statement where the actions are kept, and the same way over
//! actions in memory.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::action::Action;
use crate::action_list::SqlValue;
use crate::error::GatewayError;
use crate::http::query_params;
use crate::route_stats::{seconds, summary};

const DAY_MS: u64 = 86_400_000;
/// The range when `from` is not given: the 30 days up to `to`.
const DEFAULT_RANGE_MS: u64 = 30 * DAY_MS;

/// What the rows are grouped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Key,
    Identity,
    Route,
    Day,
    /// A request `metadata` field.
    Metadata(String),
}

/// The query, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub group_by: GroupBy,
    pub from_ms: u64,
    pub to_ms: u64,
}

impl UsageQuery {
    /// Reads the query string at `now_ms`: `group_by` (default `model`), `to` (Unix seconds,
    /// default now), `from` (default 30 days before `to`).
    pub fn parse(query: Option<&str>, now_ms: u64) -> Result<Self, GatewayError> {
        let (mut group_by, mut from, mut to) = (GroupBy::Model, None, None);
        for (name, value) in query_params(query, &["group_by", "from", "to"], "Usage")? {
            match name.as_str() {
                "group_by" => group_by = group(&value)?,
                "from" => from = Some(seconds("from", &value)?),
                _ => to = Some(seconds("to", &value)?),
            }
        }
        let to_ms = to.unwrap_or(now_ms);
        let from_ms = from.unwrap_or(to_ms.saturating_sub(DEFAULT_RANGE_MS));
        if from_ms >= to_ms {
            return Err(GatewayError::invalid_param("from", "'from' must be before 'to'."));
        }
        Ok(UsageQuery { group_by, from_ms, to_ms })
    }

    fn name(&self) -> String {
        match &self.group_by {
            GroupBy::Model => "model".to_owned(),
            GroupBy::Key => "key".to_owned(),
            GroupBy::Identity => "identity".to_owned(),
            GroupBy::Route => "route".to_owned(),
            GroupBy::Day => "day".to_owned(),
            GroupBy::Metadata(field) => format!("metadata.{field}"),
        }
    }
}

fn group(value: &str) -> Result<GroupBy, GatewayError> {
    Ok(match value {
        "model" => GroupBy::Model,
        "key" => GroupBy::Key,
        "identity" => GroupBy::Identity,
        "route" => GroupBy::Route,
        "day" => GroupBy::Day,
        other => match other.strip_prefix("metadata.") {
            Some(field) if !field.is_empty() && field.len() <= 64 && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {
                GroupBy::Metadata(field.to_owned())
            }
            _ => {
                return Err(GatewayError::invalid_param(
                    "group_by",
                    format!("'group_by' is '{other}'; it must be model, key, identity, route, day or metadata.<field> (letters, digits, _ and -)."),
                ))
            }
        },
    })
}

/// One group's usage (of the actions that have ended).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The model, key, identity, route id, day (Unix seconds) or metadata value; `null` for
    /// generations without one.
    pub group: Value,
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub images: u64,
    pub cost_usd: f64,
    pub cache_hits: u64,
    pub p50_latency_ms: Option<u64>,
    pub p95_latency_ms: Option<u64>,
}

/// The statement that computes the rows for `key` (everyone's for `None`), ordered by group.
/// Each row: `group_key`, `requests`, `successes`, `failures`, `cache_hits`, `images`,
/// `cost_usd`, `p50`, `p95`.
pub fn usage_sql(key: Option<&str>, query: &UsageQuery) -> (String, Vec<SqlValue>) {
    const SQL: &str = "WITH scoped AS (SELECT GROUP_EXPR AS grp, status, cache, images, cost_usd, latency_ms FROM actions \
        WHERE KEY_FILTER created_at >= ?2 AND created_at < ?3 AND status NOT IN ('queued', 'in-progress')), \
        ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY grp ORDER BY latency_ms) AS rank, COUNT(*) OVER (PARTITION BY grp) AS total FROM scoped) \
        SELECT grp AS group_key, COUNT(*) AS requests, SUM(status = 'success') AS successes, SUM(status <> 'success') AS failures, \
        SUM(cache IS 'HIT') AS cache_hits, COALESCE(SUM(images), 0) AS images, COALESCE(SUM(cost_usd), 0) AS cost_usd, \
        MIN(CASE WHEN rank * 100 >= total * 50 THEN latency_ms END) AS p50, \
        MIN(CASE WHEN rank * 100 >= total * 95 THEN latency_ms END) AS p95 \
        FROM ranked GROUP BY grp ORDER BY grp";
    let mut args = vec![SqlValue::Text(key.unwrap_or_default().to_owned()), SqlValue::Integer(query.from_ms), SqlValue::Integer(query.to_ms)];
    let expression = match &query.group_by {
        GroupBy::Model => "model".to_owned(),
        GroupBy::Key => "key_id".to_owned(),
        GroupBy::Route => "route_id".to_owned(),
        GroupBy::Identity => "json_extract(record, '$.identity')".to_owned(),
        GroupBy::Day => format!("CAST(created_at / {DAY_MS} AS INTEGER) * 86400"),
        GroupBy::Metadata(field) => {
            args.push(SqlValue::Text(format!("$.metadata.\"{field}\"")));
            "json_extract(record, ?4)".to_owned()
        }
    };
    let sql = SQL.replace("GROUP_EXPR", &expression).replace("KEY_FILTER", if key.is_some() { "key_id = ?1 AND" } else { "?1 = ?1 AND" });
    (sql, args)
}

/// The group `action` falls in.
fn group_of(action: &Action, group_by: &GroupBy) -> Value {
    let text = |s: Option<&String>| s.map_or(Value::Null, |s| Value::String(s.clone()));
    match group_by {
        GroupBy::Model => text(action.model.as_ref()),
        GroupBy::Key => text(action.key.as_ref()),
        GroupBy::Route => text(action.route_id.as_ref()),
        GroupBy::Identity => text(action.identity.as_ref()),
        GroupBy::Day => Value::from(action.created_at / DAY_MS * 86_400),
        GroupBy::Metadata(field) => text(action.metadata.as_ref().and_then(|m| m.get(field))),
    }
}

/// The same rows as [`usage_sql`] over `actions` (for histories that are not SQL).
pub fn rows_of(actions: &[Action], key: Option<&str>, query: &UsageQuery) -> Vec<UsageRow> {
    let mut grouped: BTreeMap<String, (Value, Vec<&Action>)> = BTreeMap::new();
    let counted = |a: &&Action| {
        key.is_none_or(|key| a.key.as_deref() == Some(key))
            && (query.from_ms..query.to_ms).contains(&a.created_at)
            && !matches!(a.status.as_str(), "queued" | "in-progress")
    };
    for action in actions.iter().filter(counted) {
        let group = group_of(action, &query.group_by);
        // SQL orders NULL first, then numbers, then text.
        let order = match &group {
            Value::Null => String::new(),
            Value::Number(n) => format!("1{:020}", n.as_u64().unwrap_or(0)),
            other => format!("2{}", other.as_str().unwrap_or_default()),
        };
        grouped.entry(order).or_insert_with(|| (group, Vec::new())).1.push(action);
    }
    grouped.into_values().map(|(group, actions)| row(group, &actions)).collect()
}

fn row(group: Value, actions: &[&Action]) -> UsageRow {
    let sum = summary(0, actions);
    UsageRow {
        group,
        requests: sum.requests,
        successes: sum.successes,
        failures: sum.errors,
        images: sum.images,
        cost_usd: sum.cost_usd,
        cache_hits: sum.cache_hits,
        p50_latency_ms: sum.p50_latency_ms,
        p95_latency_ms: sum.p95_latency_ms,
    }
}

/// The answer: the rows, and their totals.
pub fn answer(query: &UsageQuery, rows: Vec<UsageRow>) -> Value {
    let total = serde_json::json!({
        "requests": rows.iter().map(|r| r.requests).sum::<u64>(),
        "successes": rows.iter().map(|r| r.successes).sum::<u64>(),
        "failures": rows.iter().map(|r| r.failures).sum::<u64>(),
        "images": rows.iter().map(|r| r.images).sum::<u64>(),
        "cost_usd": (rows.iter().map(|r| r.cost_usd).sum::<f64>() * 1e6).round() / 1e6,
        "cache_hits": rows.iter().map(|r| r.cache_hits).sum::<u64>(),
    });
    serde_json::json!({
        "object": "usage",
        "group_by": query.name(),
        "from": query.from_ms / 1000,
        "to": query.to_ms / 1000,
        "data": rows,
        "total": total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked() {
        let q = UsageQuery::parse(Some("group_by=metadata.team&from=10&to=20"), 0).unwrap();
        assert_eq!(q, UsageQuery { group_by: GroupBy::Metadata("team".into()), from_ms: 10_000, to_ms: 20_000 });
        assert_eq!(UsageQuery::parse(None, 40 * DAY_MS).unwrap().from_ms, 10 * DAY_MS);
        for (bad, param) in
            [("group_by=colour", "group_by"), ("group_by=metadata.a'b", "group_by"), ("from=20&to=10", "from"), ("to=x", "to"), ("week=1", "week")]
        {
            assert_eq!(UsageQuery::parse(Some(bad), 0).unwrap_err().param.as_deref(), Some(param), "{bad}");
        }
    }

    #[test]
    fn the_statement_binds_the_metadata_path_and_scopes_the_key() {
        let q = UsageQuery::parse(Some("group_by=metadata.team"), DAY_MS).unwrap();
        let (sql, args) = usage_sql(Some("k"), &q);
        assert!(sql.contains("json_extract(record, ?4)") && sql.contains("key_id = ?1"), "{sql}");
        assert_eq!(args.last(), Some(&SqlValue::Text("$.metadata.\"team\"".into())));
        let (everyone, _) = usage_sql(None, &q);
        assert!(!everyone.contains("key_id = ?1"));
    }
}
