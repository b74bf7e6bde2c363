//! A route's statistics over time: `GET /v1/routes/{…}/stats?interval=hour|day&from=&to=`'s query,
//! the SQL that computes the buckets in the database (counts, sums and nearest-rank p50 and p95
//! latency, by window functions, never by reading every row into the worker), the same buckets
//! computed over actions in memory, and the answer with every bucket of the range (empty ones as
//! zeros, so that a chart needs no gaps filled).

use serde::Serialize;

use crate::action::Action;
use crate::action_list::SqlValue;
use crate::error::GatewayError;
use crate::http::query_params;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// The most buckets one answer holds.
pub const MAX_BUCKETS: u64 = 1000;
const PARAMS: [&str; 3] = ["interval", "from", "to"];

/// How wide a bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn ms(self) -> u64 {
        match self {
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS,
        }
    }
}

/// The query, checked: buckets of `interval` (aligned to UTC hours or days) from the one holding
/// `from_ms` up to the one holding the last millisecond before `to_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    pub interval: Interval,
    pub from_ms: u64,
    pub to_ms: u64,
}

impl StatsQuery {
    /// Reads the query string (without `?`) at `now_ms`. `interval` defaults to `day`; `to`
    /// (Unix seconds) to now; `from` to the start of the 24 hours or 30 days up to `to`'s. An unknown
    /// or repeated parameter, a bad value, `from` not before `to`, or more than [`MAX_BUCKETS`]
    /// buckets is a 400 naming the parameter.
    pub fn parse(query: Option<&str>, now_ms: u64) -> Result<Self, GatewayError> {
        let (mut interval, mut from, mut to) = (None, None, None);
        for (name, value) in query_params(query, &PARAMS, "A route's stats")? {
            match name.as_ref() {
                "interval" => {
                    interval = Some(match value.as_ref() {
                        "hour" => Interval::Hour,
                        "day" => Interval::Day,
                        other => return Err(GatewayError::invalid_param("interval", format!("'interval' is '{other}'; it must be 'hour' or 'day'."))),
                    })
                }
                "from" => from = Some(seconds("from", &value)?),
                _ => to = Some(seconds("to", &value)?),
            }
        }
        let interval = interval.unwrap_or(Interval::Day);
        let to_ms = to.unwrap_or(now_ms);
        let default_buckets = if interval == Interval::Hour { 24 } else { 30 };
        let last = to_ms.saturating_sub(1) / interval.ms();
        let from_ms = from.unwrap_or((last + 1).saturating_sub(default_buckets) * interval.ms());
        if from_ms >= to_ms {
            return Err(GatewayError::invalid_param("from", "'from' must be before 'to'."));
        }
        let query = StatsQuery { interval, from_ms, to_ms };
        if query.bucket_count() > MAX_BUCKETS {
            return Err(GatewayError::invalid_param(
                "from",
                format!("The range holds more than {MAX_BUCKETS} buckets of an {}; narrow it or use a wider interval.", interval_name(interval)),
            ));
        }
        Ok(query)
    }

    /// The first bucket's number (buckets are numbered from the Unix epoch).
    fn first_bucket(&self) -> u64 {
        self.from_ms / self.interval.ms()
    }

    fn last_bucket(&self) -> u64 {
        (self.to_ms - 1) / self.interval.ms()
    }

    fn bucket_count(&self) -> u64 {
        self.last_bucket() - self.first_bucket() + 1
    }
}

fn interval_name(interval: Interval) -> &'static str {
    match interval {
        Interval::Hour => "hour",
        Interval::Day => "day",
    }
}

/// The latest time a range may reach: the end of the year 9999, in Unix seconds.
const LATEST_SECS: u64 = 253_402_300_799;

/// A query parameter holding a Unix time in seconds (up to the end of the year 9999), in
/// milliseconds; else a 400 naming `param`.
pub fn seconds(param: &str, value: &str) -> Result<u64, GatewayError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= LATEST_SECS)
        .map(|s| s * 1000)
        .ok_or_else(|| GatewayError::invalid_param(param, format!("'{param}' is '{value}'; it must be a Unix time in seconds.")))
}

/// One bucket of a route's statistics (of the actions that have ended: one that is queued or
/// running counts nowhere yet).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's start, in Unix seconds.
    pub start: u64,
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
    pub cache_hits: u64,
    /// Images delivered (answers relayed uncounted add none).
    pub images: u64,
    pub cost_usd: f64,
    /// Nearest-rank percentiles of the whole request's latency; `null` for an empty bucket.
    pub p50_latency_ms: Option<u64>,
    pub p95_latency_ms: Option<u64>,
}

impl Bucket {
    fn empty(start: u64) -> Self {
        Bucket { start, requests: 0, successes: 0, errors: 0, cache_hits: 0, images: 0, cost_usd: 0.0, p50_latency_ms: None, p95_latency_ms: None }
    }
}

/// The statement that computes the non-empty buckets of `key`'s actions (everyone's for `None`) through the route
/// `route_id` for `query`, ordered by bucket (index `actions_by_route`). Each row: `bucket` (its
/// number), `requests`, `successes`, `errors`, `cache_hits`, `images`, `cost_usd`, `p50`, `p95`.
pub fn stats_sql(key: Option<&str>, route_id: &str, query: &StatsQuery) -> (String, Vec<SqlValue>) {
    // Nearest rank: the p-th percentile of n sorted values is the value at rank ceil(p·n/100),
    // the smallest latency among the ranks at or past it.
    const SQL: &str = "WITH ranked AS (\
        SELECT CAST(created_at / ?5 AS INTEGER) AS bucket, status, cache, images, cost_usd, latency_ms, \
        ROW_NUMBER() OVER (PARTITION BY CAST(created_at / ?5 AS INTEGER) ORDER BY latency_ms) AS rank, \
        COUNT(*) OVER (PARTITION BY CAST(created_at / ?5 AS INTEGER)) AS total \
        FROM actions WHERE KEY_FILTER route_id = ?2 AND created_at >= ?3 AND created_at < ?4 \
        AND status NOT IN ('queued', 'in-progress')) \
        SELECT bucket, COUNT(*) AS requests, SUM(status = 'success') AS successes, SUM(status <> 'success') AS errors, \
        SUM(cache IS 'HIT') AS cache_hits, COALESCE(SUM(images), 0) AS images, COALESCE(SUM(cost_usd), 0) AS cost_usd, \
        MIN(CASE WHEN rank * 100 >= total * 50 THEN latency_ms END) AS p50, \
        MIN(CASE WHEN rank * 100 >= total * 95 THEN latency_ms END) AS p95 \
        FROM ranked GROUP BY bucket ORDER BY bucket";
    let width = query.interval.ms();
    let args = vec![
        SqlValue::Text(key.unwrap_or_default().to_owned()),
        SqlValue::Text(route_id.to_owned()),
        SqlValue::Integer(query.first_bucket() * width),
        SqlValue::Integer((query.last_bucket() + 1) * width),
        SqlValue::Integer(width),
    ];
    // Everyone's (the management key's view) leaves `?1` unused.
    (SQL.replace("KEY_FILTER", if key.is_some() { "key_id = ?1 AND" } else { "?1 = ?1 AND" }), args)
}

/// The same buckets as [`stats_sql`] over `actions` (for histories that are not SQL).
pub fn buckets_of(actions: &[Action], key: Option<&str>, route_id: &str, query: &StatsQuery) -> Vec<(u64, Bucket)> {
    let width = query.interval.ms();
    let (from, to) = (query.first_bucket() * width, (query.last_bucket() + 1) * width);
    let mut grouped: std::collections::BTreeMap<u64, Vec<&Action>> = std::collections::BTreeMap::new();
    let ended = |a: &Action| !matches!(a.status.as_str(), "queued" | "in-progress");
    let counted = |a: &&Action| {
        key.is_none_or(|key| a.key.as_deref() == Some(key)) && a.route_id.as_deref() == Some(route_id) && (from..to).contains(&a.created_at) && ended(a)
    };
    for action in actions.iter().filter(counted) {
        grouped.entry(action.created_at / width).or_default().push(action);
    }
    grouped.into_iter().map(|(number, actions)| (number, summary(number * width / 1000, &actions))).collect()
}

/// `actions` summed up as a bucket starting at `start` (Unix seconds); nearest-rank percentiles.
pub fn summary(start: u64, actions: &[&Action]) -> Bucket {
    let mut latencies: Vec<u64> = actions.iter().map(|a| a.latency_ms).collect();
    latencies.sort_unstable();
    let rank = |p: usize| latencies.get((latencies.len() * p).div_ceil(100).max(1) - 1).copied();
    Bucket {
        start,
        requests: actions.len() as u64,
        successes: actions.iter().filter(|a| a.status == "success").count() as u64,
        errors: actions.iter().filter(|a| a.status != "success").count() as u64,
        cache_hits: actions.iter().filter(|a| a.cache.as_deref() == Some("HIT")).count() as u64,
        images: actions.iter().filter_map(|a| a.images.and_then(|i| i.got)).sum::<usize>() as u64,
        cost_usd: actions.iter().filter_map(|a| a.cost_usd).sum(),
        p50_latency_ms: rank(50),
        p95_latency_ms: rank(95),
    }
}

/// The answer: every bucket of the range in order, those the database gave (`found`, by bucket
/// number) and zeros for the rest.
pub fn answer(route_id: &str, query: &StatsQuery, found: Vec<(u64, Bucket)>) -> serde_json::Value {
    let width = query.interval.ms();
    let mut found = found.into_iter().peekable();
    let mut data = Vec::new();
    for number in query.first_bucket()..=query.last_bucket() {
        while found.peek().is_some_and(|(n, _)| *n < number) {
            found.next();
        }
        match found.peek() {
            Some((n, _)) if *n == number => data.push(found.next().expect("peeked").1),
            _ => data.push(Bucket::empty(number * width / 1000)),
        }
    }
    serde_json::json!({
        "object": "route.stats",
        "route_id": route_id,
        "interval": query.interval,
        "from": query.first_bucket() * width / 1000,
        "to": (query.last_bucket() + 1) * width / 1000,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ImageCount;

    const NOW: u64 = 1_700_000_000_000;

    fn action(at: u64, status: &str, latency_ms: u64, cache: Option<&str>) -> Action {
        Action {
            key: Some("k".into()),
            route_id: Some("r".into()),
            created_at: at,
            status: status.into(),
            latency_ms,
            cache: cache.map(str::to_owned),
            cost_usd: (status == "success").then_some(0.04),
            images: Some(ImageCount { got: Some(usize::from(status == "success")), asked: 1 }),
            ..Action::default()
        }
    }

    #[test]
    fn the_query_defaults_to_thirty_days_and_refuses_what_it_cannot_answer() {
        let q = StatsQuery::parse(None, NOW).unwrap();
        assert_eq!((q.interval, q.to_ms, q.bucket_count()), (Interval::Day, NOW, 30), "30 UTC days, today's included");
        let q = StatsQuery::parse(Some("interval=hour&from=1699990000&to=1700000000"), NOW).unwrap();
        assert_eq!((q.from_ms, q.to_ms), (1_699_990_000_000, NOW));
        for (bad, param) in [
            ("interval=week", "interval"),
            ("from=10&to=5", "from"),
            ("from=x", "from"),
            ("to=-1", "to"),
            ("interval=hour&from=0", "from"),
            ("span=1", "span"),
            ("to=1&to=2", "to"),
        ] {
            assert_eq!(StatsQuery::parse(Some(bad), NOW).unwrap_err().param.as_deref(), Some(param), "{bad}");
        }
        for far in ["interval=day&from=18446744073709000&to=18446744073709551", "to=253402300800"] {
            assert!(StatsQuery::parse(Some(far), NOW).is_err(), "{far}: past the year 9999");
        }
    }

    #[test]
    fn buckets_count_sum_and_rank_and_the_range_has_no_gaps() {
        let hour = HOUR_MS;
        let start = NOW / hour * hour;
        let mut actions: Vec<Action> = (1..=20).map(|i| action(start + i, "success", i * 10, if i <= 3 { Some("HIT") } else { None })).collect();
        actions.push(action(start + 2 * hour, "error", 5, None));
        actions.push(Action { key: Some("other".into()), ..action(start, "success", 1, None) });
        actions.push(Action { route_id: Some("another".into()), ..action(start, "success", 1, None) });
        actions.push(action(start + 5, "in-progress", 0, None));
        actions.push(action(start + 6, "queued", 0, None));
        let q = StatsQuery { interval: Interval::Hour, from_ms: start, to_ms: start + 3 * hour };
        let found = buckets_of(&actions, Some("k"), "r", &q);
        let body = answer("r", &q, found);
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 3, "three hours, the empty one too");
        assert_eq!(data[0]["start"], start / 1000);
        assert_eq!(
            (data[0]["requests"].as_u64(), data[0]["successes"].as_u64(), data[0]["cache_hits"].as_u64(), data[0]["images"].as_u64()),
            (Some(20), Some(20), Some(3), Some(20))
        );
        assert!((data[0]["cost_usd"].as_f64().unwrap() - 0.8).abs() < 1e-9);
        assert_eq!((data[0]["p50_latency_ms"].as_u64(), data[0]["p95_latency_ms"].as_u64()), (Some(100), Some(190)), "ranks 10 and 19 of 20");
        assert_eq!((data[1]["requests"].as_u64(), data[1]["p50_latency_ms"].as_u64()), (Some(0), None));
        assert_eq!((data[2]["errors"].as_u64(), data[2]["p95_latency_ms"].as_u64()), (Some(1), Some(5)));
        let total: u64 = data.iter().map(|b| b["requests"].as_u64().unwrap()).sum();
        assert_eq!(total, 21, "the key's actions through the route, no others");
    }

    #[test]
    fn the_sql_binds_every_value_and_aligns_the_range_to_buckets() {
        let q = StatsQuery { interval: Interval::Day, from_ms: DAY_MS + 5, to_ms: 3 * DAY_MS + 1 };
        let (sql, args) = stats_sql(Some("k"), "r", &q);
        assert!(!sql.contains("'k'") && !sql.contains("'r'"), "values are bound, never spliced");
        assert_eq!(
            args,
            vec![SqlValue::Text("k".into()), SqlValue::Text("r".into()), SqlValue::Integer(DAY_MS), SqlValue::Integer(4 * DAY_MS), SqlValue::Integer(DAY_MS)]
        );
    }
}
