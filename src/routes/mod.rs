//! Routes at request time: the route a path or a `model: "route:owner/name"` names, for the key
//! that asks; the caller's fields checked against what the route lets them set and merged over its
//! defaults; and the route described ([`describe`]) with its request schema ([`schema`]).

pub mod schema;

use serde_json::{Map, Value};

use crate::config::{Config, RouteConfig};
use crate::error::{ErrorKind, GatewayError};

pub use schema::describe;

/// What a `model` starts with to name a route on `/v1/images/generations`.
pub const MODEL_PREFIX: &str = "route:";

/// What a path under `/v1/routes/` asks of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Describe,
    Use,
    Actions,
    Stats,
}

/// The route selector (a UUID or `owner/name`) and the verb of a path under `/v1/routes/`.
pub fn parse_path(rest: &str) -> Option<(&str, Verb)> {
    let (selector, verb) = match rest.rsplit_once('/') {
        Some((selector, "use")) => (selector, Verb::Use),
        Some((selector, "actions")) => (selector, Verb::Actions),
        Some((selector, "stats")) => (selector, Verb::Stats),
        _ => (rest, Verb::Describe),
    };
    // An identifier has one slash, a UUID none: `acme/use` is the route `acme/use` described.
    let (selector, verb) =
        if verb != Verb::Describe && !selector.contains('/') && !crate::config::routes::is_uuid(selector) { (rest, Verb::Describe) } else { (selector, verb) };
    (!selector.is_empty() && selector.matches('/').count() <= 1).then_some((selector, verb))
}

/// The route `selector` names if the key labelled `key` may use it (any route for `None`, the
/// management key); a 404 alike for a route that does not exist and one the key may not see.
pub fn find<'c>(config: &'c Config, selector: &str, key: Option<&str>) -> Result<&'c RouteConfig, GatewayError> {
    config.routes.iter().find(|route| route.is(selector) && key.is_none_or(|key| route.allows(key))).ok_or_else(|| {
        GatewayError::new(ErrorKind::NotFound, format!("No route '{selector}' for this key. GET /v1/routes lists the routes it may use."))
            .with_code("route_not_found")
    })
}

/// The routes the key labelled `key` may use (all of them for `None`, the management key).
pub fn usable<'c>(config: &'c Config, key: Option<&'c str>) -> impl Iterator<Item = &'c RouteConfig> {
    config.routes.iter().filter(move |route| key.is_none_or(|key| route.allows(key)))
}

/// Applies `route` to a caller's request: every field the caller set (in the body, or in the
/// `x-imagegate-config` header) must be one the route lets callers set, else a 400 naming them;
/// then the route's defaults fill what the caller left out, and its model is the request's
/// unless the caller may choose one.
pub fn apply(route: &RouteConfig, fields: &mut Map<String, Value>, header: Option<&str>) -> Result<(), GatewayError> {
    let from_header: Vec<String> =
        header.and_then(|header| serde_json::from_str::<Map<String, Value>>(header).ok()).map(|header| header.keys().cloned().collect()).unwrap_or_default();
    let locked: Vec<&str> = fields.keys().chain(from_header.iter()).map(String::as_str).filter(|f| !route.overridable.iter().any(|o| o == f)).collect();
    if let Some(first) = locked.first() {
        let quoted = |names: &mut dyn Iterator<Item = &str>| names.map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        let message = format!(
            "The route '{}' fixes {}; callers may set only {}.",
            route.identifier,
            quoted(&mut locked.iter().copied()),
            quoted(&mut route.overridable.iter().map(String::as_str))
        );
        return Err(GatewayError::invalid_param(first, message).with_code("locked_parameter"));
    }
    for (name, value) in &route.defaults {
        fields.entry(name.clone()).or_insert_with(|| value.clone());
    }
    fields.entry("model").or_insert_with(|| Value::String(route.model.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6";

    #[test]
    fn paths_name_a_route_by_id_or_identifier_and_a_verb() {
        assert_eq!(parse_path("acme/thumbs"), Some(("acme/thumbs", Verb::Describe)));
        assert_eq!(parse_path("acme/thumbs/use"), Some(("acme/thumbs", Verb::Use)));
        assert_eq!(parse_path("acme/thumbs/actions"), Some(("acme/thumbs", Verb::Actions)));
        assert_eq!(parse_path("acme/thumbs/stats"), Some(("acme/thumbs", Verb::Stats)));
        assert_eq!(parse_path(ID), Some((ID, Verb::Describe)));
        assert_eq!(parse_path(&format!("{ID}/use")), Some((ID, Verb::Use)));
        assert_eq!(parse_path("acme/use"), Some(("acme/use", Verb::Describe)), "a route named 'use'");
        assert_eq!(parse_path("a/b/c/use"), None);
        assert_eq!(parse_path("a/b/c"), None);
    }
}
