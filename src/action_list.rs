//! A key's history, listed: `GET /v1/actions`'s query, the SQL that reads one page of it, and
//! the page in OpenAI's list convention.
//!
//! Pages are keyset-paginated, newest first: actions are ordered by `(created_at, id)`
//! descending, a total order since ids are unique, and the next page starts strictly after the
//! last action of the previous one. Actions recorded while a client pages are therefore never
//! shown twice, and none that existed when the listing began is skipped.

use serde::Serialize;

use crate::action::Action;
use crate::error::GatewayError;
use crate::http::query_params;

/// How many actions a page holds when the query does not say.
pub const DEFAULT_LIMIT: u32 = 20;
/// The most a page holds (OpenAI's lists allow 1 to 100).
pub const MAX_LIMIT: u32 = 100;
/// The statuses an action can have (Ouro's values).
pub const STATUSES: [&str; 5] = ["queued", "in-progress", "success", "error", "timed-out"];
const PARAMS: [&str; 6] = ["route", "model", "status", "since", "limit", "after"];

/// `GET /v1/actions`'s query, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The route, as the caller named it (its id or `owner/name`); the gateway resolves it to
    /// [`ListQuery::route_id`].
    pub route: Option<String>,
    /// The id of the route the actions were made through.
    pub route_id: Option<String>,
    pub model: Option<String>,
    pub status: Option<String>,
    /// Only actions created at or after this time (the query gives Unix seconds).
    pub since_ms: Option<u64>,
    pub limit: u32,
    /// The id of the last action of the previous page.
    pub after: Option<String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery { route: None, route_id: None, model: None, status: None, since_ms: None, limit: DEFAULT_LIMIT, after: None }
    }
}

impl ListQuery {
    /// Reads a URL query string (without `?`). Every parameter is optional; an unknown or
    /// repeated one, or a value out of range, is a 400 naming it.
    pub fn parse(query: Option<&str>) -> Result<Self, GatewayError> {
        let mut list = ListQuery::default();
        for (name, value) in query_params(query, &PARAMS, "GET /v1/actions")? {
            match name.as_str() {
                "route" => list.route = Some(non_empty("route", value)?),
                "model" => list.model = Some(non_empty("model", value)?),
                "status" if STATUSES.contains(&value.as_str()) => list.status = Some(value),
                "status" => {
                    return Err(GatewayError::invalid_param("status", format!("'status' is '{value}'; it must be one of {}.", STATUSES.join(", "))));
                }
                "since" => {
                    let seconds = value.parse::<u64>().ok().filter(|s| *s <= u64::MAX / 1000);
                    let seconds =
                        seconds.ok_or_else(|| GatewayError::invalid_param("since", format!("'since' is '{value}'; it must be a Unix time in seconds.")))?;
                    list.since_ms = Some(seconds * 1000);
                }
                "limit" => {
                    list.limit =
                        value.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                            GatewayError::invalid_param("limit", format!("'limit' is '{value}'; it must be an integer from 1 to {MAX_LIMIT}."))
                        })?;
                }
                _ => list.after = Some(non_empty("after", value)?),
            }
        }
        Ok(list)
    }
}

fn non_empty(param: &str, value: String) -> Result<String, GatewayError> {
    if value.is_empty() || value.len() > 256 {
        return Err(GatewayError::invalid_param(param, format!("'{param}' must be between 1 and 256 characters.")));
    }
    Ok(value)
}

/// Where a page starts: strictly after this action in the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: u64,
    pub id: String,
}

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Integer(u64),
}

/// The statement that reads one page of `key`'s history (everyone's for `None`, the management
/// key's view): at most `limit + 1` records (the
/// extra one tells whether there is a next page), newest first. Uses the index
/// `actions_by_key (key_id, created_at DESC, id DESC)`, or with a route
/// `actions_by_route (key_id, route_id, created_at DESC, id DESC)`.
pub fn page_sql(key: Option<&str>, query: &ListQuery, cursor: Option<&Cursor>) -> (String, Vec<SqlValue>) {
    let mut args = Vec::new();
    // Binds `value` and gives its numbered placeholder.
    let mut bind = |value: SqlValue| {
        args.push(value);
        format!("?{}", args.len())
    };
    let mut conditions = Vec::new();
    if let Some(key) = key {
        conditions.push(format!("key_id = {}", bind(SqlValue::Text(key.to_owned()))));
    }
    if let Some(route_id) = &query.route_id {
        conditions.push(format!("route_id = {}", bind(SqlValue::Text(route_id.clone()))));
    }
    if let Some(model) = &query.model {
        conditions.push(format!("model = {}", bind(SqlValue::Text(model.clone()))));
    }
    if let Some(status) = &query.status {
        conditions.push(format!("status = {}", bind(SqlValue::Text(status.clone()))));
    }
    if let Some(since) = query.since_ms {
        conditions.push(format!("created_at >= {}", bind(SqlValue::Integer(since))));
    }
    if let Some(cursor) = cursor {
        let (at, id) = (bind(SqlValue::Integer(cursor.created_at)), bind(SqlValue::Text(cursor.id.clone())));
        conditions.push(format!("(created_at < {at} OR (created_at = {at} AND id < {id}))"));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let limit = bind(SqlValue::Integer(u64::from(query.limit) + 1));
    (format!("SELECT record FROM actions{filter} ORDER BY created_at DESC, id DESC LIMIT {limit}"), args)
}

/// Whether `action` belongs on a page of `key`'s history for `query` after `cursor`: what
/// [`page_sql`] selects, for histories that are not SQL.
pub fn selects(action: &Action, key: Option<&str>, query: &ListQuery, cursor: Option<&Cursor>) -> bool {
    key.is_none_or(|key| action.key.as_deref() == Some(key))
        && query.route_id.as_ref().is_none_or(|r| action.route_id.as_ref() == Some(r))
        && query.model.as_ref().is_none_or(|m| action.model.as_ref() == Some(m))
        && query.status.as_ref().is_none_or(|s| action.status == *s)
        && query.since_ms.is_none_or(|since| action.created_at >= since)
        && cursor.is_none_or(|c| (action.created_at, action.id.as_str()) < (c.created_at, c.id.as_str()))
}

/// One page of a history, as `GET /v1/actions` answers it.
#[derive(Debug, Serialize)]
pub struct Page {
    pub object: &'static str,
    pub data: Vec<Action>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl Page {
    /// The page from what the history returned for `limit` (up to `limit + 1`, newest first).
    pub fn new(mut actions: Vec<Action>, limit: u32) -> Self {
        let has_more = actions.len() > limit as usize;
        actions.truncate(limit as usize);
        Page { object: "list", first_id: actions.first().map(|a| a.id.clone()), last_id: actions.last().map(|a| a.id.clone()), data: actions, has_more }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(query: &str) -> Option<String> {
        ListQuery::parse(Some(query)).unwrap_err().param
    }

    #[test]
    fn an_empty_query_lists_twenty_newest_first() {
        assert_eq!(ListQuery::parse(None).unwrap(), ListQuery::default());
        assert_eq!(ListQuery::parse(Some("")).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn every_parameter_is_read() {
        let query = ListQuery::parse(Some("model=openai%2Fgpt-image-1&status=timed-out&since=1700000000&limit=100&after=act_1")).unwrap();
        assert_eq!(query.model.as_deref(), Some("openai/gpt-image-1"));
        assert_eq!(query.status.as_deref(), Some("timed-out"));
        assert_eq!(query.since_ms, Some(1_700_000_000_000));
        assert_eq!(query.limit, 100);
        assert_eq!(query.after.as_deref(), Some("act_1"));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, param) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("status=done", "status"),
            ("since=-1", "since"),
            ("since=18446744073709552", "since"),
            ("after=", "after"),
            ("model=", "model"),
            ("route=", "route"),
            ("sort=asc", "sort"),
            ("limit=1&limit=2", "limit"),
        ] {
            assert_eq!(param_of(query).as_deref(), Some(param), "{query}");
        }
    }

    #[test]
    fn the_first_page_binds_the_key_and_one_more_than_the_limit() {
        let (sql, args) = page_sql(Some("team"), &ListQuery::default(), None);
        assert_eq!(sql, "SELECT record FROM actions WHERE key_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2");
        assert_eq!(args, vec![SqlValue::Text("team".into()), SqlValue::Integer(21)]);
    }

    #[test]
    fn everyones_history_has_no_key_filter() {
        let (sql, args) = page_sql(None, &ListQuery::default(), None);
        assert_eq!(sql, "SELECT record FROM actions ORDER BY created_at DESC, id DESC LIMIT ?1");
        assert_eq!(args, vec![SqlValue::Integer(21)]);
    }

    #[test]
    fn filters_and_the_cursor_are_bound_never_inlined() {
        let query = ListQuery {
            route: Some("acme/x".into()),
            route_id: Some("r-1".into()),
            model: Some("m' OR 1=1 --".into()),
            status: Some("error".into()),
            since_ms: Some(5000),
            limit: 2,
            after: Some("act_b".into()),
        };
        let cursor = Cursor { created_at: 9000, id: "act_b".into() };
        let (sql, args) = page_sql(Some("team"), &query, Some(&cursor));
        assert_eq!(
            sql,
            "SELECT record FROM actions WHERE key_id = ?1 AND route_id = ?2 AND model = ?3 AND status = ?4 AND created_at >= ?5 \
             AND (created_at < ?6 OR (created_at = ?6 AND id < ?7)) ORDER BY created_at DESC, id DESC LIMIT ?8"
        );
        assert_eq!(
            args,
            vec![
                SqlValue::Text("team".into()),
                SqlValue::Text("r-1".into()),
                SqlValue::Text("m' OR 1=1 --".into()),
                SqlValue::Text("error".into()),
                SqlValue::Integer(5000),
                SqlValue::Integer(9000),
                SqlValue::Text("act_b".into()),
                SqlValue::Integer(3),
            ]
        );
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let action = |id: &str| Action { id: id.into(), ..Action::default() };
        let page = Page::new(vec![action("act_c"), action("act_b"), action("act_a")], 2);
        assert!(page.has_more);
        assert_eq!((page.first_id.as_deref(), page.last_id.as_deref(), page.data.len()), (Some("act_c"), Some("act_b"), 2));
        let last = Page::new(vec![action("act_a")], 2);
        assert!(!last.has_more);
        let empty = Page::new(Vec::new(), 2);
        assert_eq!((empty.first_id, empty.last_id, empty.has_more), (None, None, false));
    }
}
