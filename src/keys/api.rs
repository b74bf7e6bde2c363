//! OpenRouter's key API shapes: the bodies of `POST /api/v1/keys` and `PATCH /api/v1/keys/{hash}`
//! read into a [`KeyRecord`] (every mistake a 400 naming its field), and a record rendered as
//! OpenRouter's `Key` and `/key`'s current key, with imagegate's own fields beside them.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::KeyRecord;
use crate::config::Config;
use crate::error::GatewayError;
use crate::fields::{as_int, as_short_string, take, wrong_type};
use crate::limits::{micros, usd, LimitReset, Usage};
use crate::routes;

/// The longest name a key may have.
const MAX_NAME_CHARS: usize = 200;
/// The most models or routes a key may list.
const MAX_LISTED: usize = 100;
/// OpenRouter's fields that mean nothing to a self-hosted gateway: read and ignored.
const IGNORED: [&str; 4] = ["include_byok_in_limit", "workspace_id", "external", "creator_user_id"];

/// A key to create, read from `POST /api/v1/keys`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    pub name: String,
    /// Everything else, applied to the new record as a patch is.
    pub fields: Map<String, Value>,
}

/// Reads `POST /api/v1/keys`'s body: `name` is required.
pub fn parse_create(body: &[u8]) -> Result<NewKey, GatewayError> {
    let mut fields = object(body)?;
    let name = match take(&mut fields, "name") {
        Some(name) => name_of(name)?,
        None => return Err(GatewayError::invalid_param("name", "Missing required parameter: 'name'.").with_code("missing_required_parameter")),
    };
    Ok(NewKey { name, fields })
}

/// Applies a body's fields (`PATCH /api/v1/keys/{hash}`, or what a create gave besides its name)
/// to `record` at `now_ms`: OpenRouter's `name`, `disabled`, `limit`, `limit_reset`,
/// `expires_at`, and imagegate's `models`, `routes`, `rpm`, `max_parallel`, `metadata` and
/// `management`. `null` clears a field. Models and routes must be the configuration's.
pub fn apply_patch(record: &mut KeyRecord, mut fields: Map<String, Value>, config: &Config, now_ms: u64) -> Result<(), GatewayError> {
    for ignored in IGNORED {
        fields.remove(ignored);
    }
    let names: Vec<String> = fields.keys().cloned().collect();
    for name in names {
        let value = fields.remove(&name).expect("listed");
        let given = !value.is_null();
        match name.as_str() {
            "name" => record.name = name_of(value)?,
            "disabled" => record.disabled = given && value.as_bool().ok_or_else(|| wrong_type("disabled", "a boolean", &value))?,
            "management" => record.management = given && value.as_bool().ok_or_else(|| wrong_type("management", "a boolean", &value))?,
            "limit" => record.limit = given.then(|| dollars(&value)).transpose()?,
            "limit_reset" => record.limit_reset = given.then(|| reset_of(&value)).transpose()?,
            "expires_at" => record.expires_at = given.then(|| expiry(&value, now_ms)).transpose()?,
            "rpm" => record.rpm = given.then(|| as_int(&value, "rpm", 1, 100_000).map(|n| n as u32)).transpose()?,
            "max_parallel" => record.max_parallel = given.then(|| as_int(&value, "max_parallel", 1, 10_000).map(|n| n as u32)).transpose()?,
            "metadata" => record.metadata = given.then(|| crate::policy::string_map(value, "metadata")).transpose()?,
            "models" => record.models = given.then(|| models_of(value, config)).transpose()?,
            "routes" => record.routes = given.then(|| routes_of(value, config)).transpose()?,
            other => {
                return Err(GatewayError::invalid_param(
                    other,
                    format!("Unknown parameter: '{other}'. A key has name, disabled, limit, limit_reset, expires_at, models, routes, rpm, max_parallel, metadata and management."),
                )
                .with_code("unknown_parameter"))
            }
        }
    }
    record.updated_at = Some(now_ms);
    Ok(())
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(GatewayError::new(
            crate::error::ErrorKind::InvalidRequest,
            format!("The body must be a JSON object, not {}.", crate::fields::type_name(&other)),
        )),
        Err(error) => {
            Err(GatewayError::new(crate::error::ErrorKind::InvalidRequest, format!("The body is not valid JSON: {error}.")).with_code("invalid_json"))
        }
    }
}

fn name_of(value: Value) -> Result<String, GatewayError> {
    let name = as_short_string(value, "name", MAX_NAME_CHARS)?;
    if name.trim().is_empty() {
        return Err(GatewayError::invalid_param("name", "'name' must not be empty."));
    }
    Ok(name)
}

fn dollars(value: &Value) -> Result<f64, GatewayError> {
    match value.as_f64() {
        Some(limit) if (0.0..1e9).contains(&limit) => Ok(limit),
        Some(_) => Err(GatewayError::invalid_param("limit", "'limit' must be a number of US dollars, at least 0.")),
        None => Err(wrong_type("limit", "a number", value)),
    }
}

fn reset_of(value: &Value) -> Result<LimitReset, GatewayError> {
    let text = value.as_str().ok_or_else(|| wrong_type("limit_reset", "a string", value))?;
    LimitReset::parse(text).ok_or_else(|| {
        GatewayError::invalid_param(
            "limit_reset",
            format!("Invalid value for 'limit_reset': '{text}'. Supported values are: 'daily', 'weekly', 'monthly' (or null)."),
        )
    })
}

fn expiry(value: &Value, now_ms: u64) -> Result<u64, GatewayError> {
    let text = value.as_str().ok_or_else(|| wrong_type("expires_at", "a string", value))?;
    let at = humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .filter(|_| text.ends_with('Z') || text.ends_with('z'))
        .map(|since| since.as_millis() as u64)
        .ok_or_else(|| {
            GatewayError::invalid_param("expires_at", format!("'expires_at' is '{text}'; it must be an ISO 8601 time in UTC, such as 2027-01-31T23:59:59Z."))
        })?;
    if at <= now_ms {
        return Err(GatewayError::invalid_param("expires_at", "'expires_at' must be in the future."));
    }
    Ok(at)
}

/// A list of at most [`MAX_LISTED`] strings.
fn strings(value: Value, param: &str) -> Result<Vec<String>, GatewayError> {
    let Value::Array(items) = value else { return Err(wrong_type(param, "an array of strings", &value)) };
    if items.len() > MAX_LISTED {
        return Err(GatewayError::invalid_param(param, format!("'{param}' lists {} entries; at most {MAX_LISTED} are allowed.", items.len())));
    }
    items.into_iter().enumerate().map(|(i, item)| crate::fields::as_string(item, &format!("{param}[{i}]"))).collect()
}

/// The models listed, as their ids (aliases resolved); an unknown one is a 400.
fn models_of(value: Value, config: &Config) -> Result<Vec<String>, GatewayError> {
    strings(value, "models")?
        .iter()
        .enumerate()
        .map(|(i, name)| {
            config
                .resolve_model(Some(name))
                .map(|(model, _)| model.id.clone())
                .map_err(|_| GatewayError::invalid_param(&format!("models[{i}]"), format!("'models[{i}]' is '{name}', which this gateway does not serve.")))
        })
        .collect()
}

/// The routes listed (ids or `owner/name`), as their ids; an unknown one is a 400.
fn routes_of(value: Value, config: &Config) -> Result<Vec<String>, GatewayError> {
    strings(value, "routes")?
        .iter()
        .enumerate()
        .map(|(i, selector)| {
            routes::find(config, selector, None)
                .map(|route| route.id.clone())
                .map_err(|_| GatewayError::invalid_param(&format!("routes[{i}]"), format!("'routes[{i}]' is '{selector}', which is no route of this gateway.")))
        })
        .collect()
}

/// Unix milliseconds as ISO 8601 in UTC.
fn iso(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn reset_name(reset: Option<LimitReset>) -> Value {
    match reset {
        Some(LimitReset::Daily) => json!("daily"),
        Some(LimitReset::Weekly) => json!("weekly"),
        Some(LimitReset::Monthly) => json!("monthly"),
        None => Value::Null,
    }
}

/// What is left of `record`'s budget, in dollars (`null` without one).
fn remaining(record: &KeyRecord, usage: &Usage) -> Value {
    match record.limit {
        Some(limit) => json!(usd(micros(limit).saturating_sub(usage.counted(record.limit_reset)))),
        None => Value::Null,
    }
}

/// The usage fields both shapes share (BYOK usage is always 0 here: every call is the gateway's).
fn usage_fields(body: &mut Map<String, Value>, usage: &Usage) {
    for (name, micros) in [("usage", usage.total), ("usage_daily", usage.daily), ("usage_weekly", usage.weekly), ("usage_monthly", usage.monthly)] {
        body.insert(name.to_owned(), json!(usd(micros)));
        body.insert(format!("byok_{name}"), json!(0));
    }
}

/// imagegate's own fields of a key, beside OpenRouter's.
fn own_fields(body: &mut Map<String, Value>, record: &KeyRecord, usage: &Usage) {
    body.insert("models".to_owned(), json!(record.models));
    body.insert("routes".to_owned(), json!(record.routes));
    body.insert("rpm".to_owned(), json!(record.rpm));
    body.insert("max_parallel".to_owned(), json!(record.max_parallel));
    body.insert("metadata".to_owned(), json!(record.metadata));
    body.insert("is_management_key".to_owned(), json!(record.management));
    body.insert("in_flight".to_owned(), json!(usage.in_flight));
}

/// `record` as OpenRouter's `Key`, with `usage` (never the key itself: it is not kept).
pub fn key_body(record: &KeyRecord, usage: &Usage) -> Value {
    let mut body = Map::new();
    body.insert("hash".to_owned(), json!(record.hash));
    body.insert("name".to_owned(), json!(record.name));
    body.insert("label".to_owned(), json!(record.label));
    body.insert("disabled".to_owned(), json!(record.disabled));
    body.insert("limit".to_owned(), json!(record.limit));
    body.insert("limit_remaining".to_owned(), remaining(record, usage));
    body.insert("limit_reset".to_owned(), reset_name(record.limit_reset));
    body.insert("include_byok_in_limit".to_owned(), json!(false));
    usage_fields(&mut body, usage);
    body.insert("created_at".to_owned(), json!(iso(record.created_at)));
    body.insert("updated_at".to_owned(), json!(record.updated_at.map(iso)));
    body.insert("expires_at".to_owned(), json!(record.expires_at.map(iso)));
    body.insert("creator_user_id".to_owned(), Value::Null);
    body.insert("external_user".to_owned(), Value::Null);
    body.insert("workspace_id".to_owned(), json!("default"));
    own_fields(&mut body, record, usage);
    Value::Object(body)
}

/// `GET /api/v1/key`'s `data` for a managed key, or (without a record) a static key of
/// `IMAGEGATE_KEYS` labelled `label` (unlimited) or the management secret.
pub fn current_body(record: Option<&KeyRecord>, label: &str, management: bool, usage: &Usage) -> Value {
    let mut body = Map::new();
    body.insert("label".to_owned(), json!(record.map_or(label, |r| r.label.as_str())));
    body.insert("name".to_owned(), json!(record.map(|r| r.name.as_str())));
    body.insert("hash".to_owned(), json!(record.map(|r| r.hash.as_str())));
    body.insert("limit".to_owned(), json!(record.and_then(|r| r.limit)));
    body.insert("limit_remaining".to_owned(), record.map_or(Value::Null, |r| remaining(r, usage)));
    body.insert("limit_reset".to_owned(), reset_name(record.and_then(|r| r.limit_reset)));
    body.insert("include_byok_in_limit".to_owned(), json!(false));
    usage_fields(&mut body, usage);
    body.insert("expires_at".to_owned(), json!(record.and_then(|r| r.expires_at).map(iso)));
    body.insert("is_free_tier".to_owned(), json!(false));
    body.insert("is_management_key".to_owned(), json!(management));
    body.insert("is_provisioning_key".to_owned(), json!(management));
    body.insert("creator_user_id".to_owned(), Value::Null);
    body.insert("organization_id".to_owned(), Value::Null);
    body.insert("workspace_id".to_owned(), Value::Null);
    body.insert("allowed_data_regions".to_owned(), json!([]));
    body.insert("free_model_daily_requests".to_owned(), json!({"limit": 0, "remaining": 0, "used": 0}));
    let rpm = record.and_then(|r| r.rpm);
    let note = match rpm {
        Some(_) => "Generations started per minute by this key, counted exactly in one place.",
        None => "This key has no request rate limit.",
    };
    body.insert("rate_limit".to_owned(), json!({"requests": rpm.map_or(-1, i64::from), "interval": "1m", "note": note}));
    if let Some(record) = record {
        own_fields(&mut body, record, usage);
    }
    Value::Object(body)
}

/// `GET /api/v1/keys`' query: `include_disabled` (default false) and `offset` (default 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPage {
    pub include_disabled: bool,
    pub offset: u32,
}

impl KeyPage {
    /// The most keys one page holds.
    pub const SIZE: u32 = 100;

    pub fn parse(query: Option<&str>) -> Result<Self, GatewayError> {
        let mut page = KeyPage { include_disabled: false, offset: 0 };
        for (name, value) in crate::http::query_params(query, &["include_disabled", "offset", "workspace_id"], "The key list")? {
            match name.as_ref() {
                "include_disabled" => {
                    page.include_disabled = match value.as_ref() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(GatewayError::invalid_param("include_disabled", format!("'include_disabled' is '{other}'; it must be true or false.")))
                        }
                    }
                }
                "offset" => {
                    page.offset =
                        value.parse().ok().filter(|o| *o <= 1_000_000).ok_or_else(|| {
                            GatewayError::invalid_param("offset", format!("'offset' is '{value}'; it must be a whole number from 0 to 1000000."))
                        })?
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_json(r#"{"providers":[{"id":"a","kind":"test_pattern"}],"models":[{"id":"a/m","provider":"a","aliases":["m"]}]}"#).unwrap()
    }

    fn record() -> KeyRecord {
        let (_, hash, label) = super::super::new_key([7; 32]);
        KeyRecord::new(hash, "n".into(), label, 1_000)
    }

    fn patch(body: Value) -> Result<KeyRecord, GatewayError> {
        let mut r = record();
        let Value::Object(fields) = body else { panic!() };
        apply_patch(&mut r, fields, &config(), 1_764_000_000_000).map(|()| r)
    }

    #[test]
    fn a_patch_sets_and_clears_fields() {
        let r = patch(
            json!({"limit": 2.5, "limit_reset": "weekly", "models": ["m"], "rpm": 10, "expires_at": "2027-01-31T23:59:59Z", "include_byok_in_limit": true}),
        )
        .unwrap();
        assert_eq!((r.limit, r.limit_reset, r.models.clone(), r.rpm), (Some(2.5), Some(LimitReset::Weekly), Some(vec!["a/m".to_owned()]), Some(10)));
        assert_eq!(r.expires_at, Some(1_801_439_999_000));
        let mut cleared = r.clone();
        apply_patch(&mut cleared, json!({"limit": null, "models": null}).as_object().unwrap().clone(), &config(), 0).unwrap();
        assert_eq!((cleared.limit, cleared.models), (None, None));
    }

    #[test]
    fn every_bad_field_is_a_400_naming_it() {
        for (body, param) in [
            (json!({"limit": -1}), "limit"),
            (json!({"limit": "5"}), "limit"),
            (json!({"limit_reset": "yearly"}), "limit_reset"),
            (json!({"expires_at": "2020-01-01T00:00:00Z"}), "expires_at"),
            (json!({"expires_at": "tomorrow"}), "expires_at"),
            (json!({"models": ["nope"]}), "models[0]"),
            (json!({"routes": ["x/y"]}), "routes[0]"),
            (json!({"rpm": 0}), "rpm"),
            (json!({"name": ""}), "name"),
            (json!({"colour": "red"}), "colour"),
        ] {
            let error = patch(body.clone()).unwrap_err();
            assert_eq!((error.status(), error.param.as_deref()), (400, Some(param)), "{body}");
        }
        assert_eq!(parse_create(b"{}").unwrap_err().param.as_deref(), Some("name"));
        assert_eq!(parse_create(b"[").unwrap_err().status(), 400);
    }

    #[test]
    fn the_key_shape_has_every_field_openrouter_requires_and_no_key() {
        let r = patch(json!({"limit": 1.0})).unwrap();
        let usage = Usage { total: 250_000, daily: 250_000, weekly: 250_000, monthly: 250_000, held: 0, in_flight: 0 };
        let body = key_body(&r, &usage);
        for field in [
            "hash",
            "name",
            "label",
            "disabled",
            "limit",
            "limit_remaining",
            "limit_reset",
            "include_byok_in_limit",
            "usage",
            "usage_daily",
            "usage_weekly",
            "usage_monthly",
            "byok_usage",
            "created_at",
            "updated_at",
            "creator_user_id",
            "external_user",
            "workspace_id",
        ] {
            assert!(body.get(field).is_some(), "{field}");
        }
        assert_eq!((body["limit_remaining"].as_f64(), body["usage"].as_f64()), (Some(0.75), Some(0.25)));
        assert!(!body.to_string().contains(&hex::encode([7u8; 32])), "never the key");
        let current = current_body(Some(&r), "", false, &usage);
        assert_eq!((current["is_management_key"].as_bool(), current["rate_limit"]["requests"].as_i64()), (Some(false), Some(-1)));
    }
}
