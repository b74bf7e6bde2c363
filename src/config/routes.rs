//! Routes: named, described endpoints (`owner/name` or a UUID), each a model with its own
//! routing policy, default request fields, and the fields a caller may set. Checked when the
//! configuration loads, defaults included, so a route never fails a caller for its own sake.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Problem;
use crate::policy::{RouterFields, ROUTER_FIELDS};
use crate::request::{image_request, PARAMETERS};

/// Who may use a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Any valid gateway key.
    #[default]
    Public,
    /// Only the keys the route lists (by label); to any other it does not exist.
    Private,
}

/// How a route runs its generations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// The caller waits for the answer.
    #[default]
    Sync,
    /// Answered at once (202) with a queued action that runs apart from the caller, where the
    /// deployment has a runner (else in place, as `sync`).
    Async,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A UUID, the route's stable id.
    pub id: String,
    /// `owner/name`, the route's readable address.
    pub identifier: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
    /// The labels of the keys that may use a private route.
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// The model (or alias) the route generates with.
    pub model: String,
    /// The route's routing policy, in the request fields' shape (`retry`, `fallbacks`,
    /// `load_balancer`, `timeout`, `cache`, …): over the model's, under what a caller may set.
    #[serde(default, rename = "policy")]
    pub(super) policy_json: Option<Value>,
    #[serde(skip)]
    pub policy: RouterFields,
    /// Request fields used when the caller leaves them out (`size`, `quality`, `n`, …).
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// The fields a caller may set (default: `prompt` only); any other is a 400 naming it.
    #[serde(default = "default_overridable")]
    pub overridable: Vec<String>,
    /// Where the route's asynchronous uses are called back when a caller gives no webhook.
    #[serde(default)]
    pub webhook: Option<RouteWebhook>,
}

/// A route's webhook: the URL (on a host of `webhook_hosts`) and the name of the secret that
/// signs its callbacks (a secret's name, never the secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWebhook {
    pub url: String,
    pub secret_name: String,
}

fn default_overridable() -> Vec<String> {
    vec!["prompt".to_owned()]
}

/// The request fields a route can name: the image fields and the routing fields.
pub fn settable_fields() -> impl Iterator<Item = &'static str> {
    ["prompt", "model", "n", "response_format"].into_iter().chain(PARAMETERS).chain(ROUTER_FIELDS).chain(["orq", "identity", "webhook"])
}

impl RouteConfig {
    /// Whether the key labelled `key` may use this route.
    pub fn allows(&self, key: &str) -> bool {
        self.visibility == Visibility::Public || self.keys.iter().any(|k| k == key)
    }

    /// Whether this route is the one `selector` names: its id (any case) or its identifier.
    pub fn is(&self, selector: &str) -> bool {
        self.id.eq_ignore_ascii_case(selector) || self.identifier == selector
    }
}

/// Whether `id` is a UUID in its textual form (`8-4-4-4-12` hex digits).
pub fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `identifier` is `owner/name`, each part of lower-case letters, digits, `-`, `_`, `.`.
fn is_identifier(identifier: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    identifier.split_once('/').is_some_and(|(owner, name)| part(owner) && part(name) && !is_uuid(owner))
}

/// Every problem of the routes: ids, identifiers, visibility, mode, model, defaults and the
/// fields they let callers set, each naming its key path.
pub(super) fn check(routes: &[RouteConfig], names: &HashSet<&str>, webhook_hosts: &[String], problems: &mut Vec<Problem>) {
    let mut ids = HashSet::new();
    let mut identifiers = HashSet::new();
    for (i, route) in routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !is_uuid(&route.id) {
            problems.push(Problem::at(format!("{at}.id"), format!("{at}.id '{}' is not a UUID", route.id)));
        } else if !ids.insert(route.id.to_ascii_lowercase()) {
            problems.push(Problem::at(format!("{at}.id"), format!("{at}.id '{}' is another route's id too", route.id)));
        }
        if !is_identifier(&route.identifier) {
            let message = format!("{at}.identifier '{}' is not 'owner/name' (lower-case letters, digits, '-', '_', '.')", route.identifier);
            problems.push(Problem::at(format!("{at}.identifier"), message));
        } else if !identifiers.insert(route.identifier.as_str()) {
            problems.push(Problem::at(format!("{at}.identifier"), format!("{at}.identifier '{}' is another route's too", route.identifier)));
        }
        if route.visibility == Visibility::Private && route.keys.is_empty() {
            problems.push(Problem::at(format!("{at}.keys"), format!("{at}.keys is empty, but the route is private: no key could use it")));
        }
        if !names.contains(route.model.as_str()) {
            problems.push(Problem::at(format!("{at}.model"), format!("{at}.model '{}' is not a configured model or alias", route.model)));
        }
        let targets = route.policy.fallbacks.iter().flatten().chain(route.policy.load_balancer.iter().flatten().map(|(m, _)| m));
        if let Some(unknown) = targets.into_iter().find(|m| !names.contains(m.as_str())) {
            problems.push(Problem::at(format!("{at}.policy"), format!("{at}.policy routes to '{unknown}', which is not a configured model or alias")));
        }
        for (j, field) in route.overridable.iter().enumerate() {
            if !settable_fields().any(|known| known == field) {
                problems.push(Problem::at(format!("{at}.overridable[{j}]"), format!("{at}.overridable[{j}] '{field}' is not a request field")));
            }
        }
        if let Some(webhook) = &route.webhook {
            if let Err(why) = crate::providers::site::callback_url(&webhook.url, webhook_hosts) {
                problems.push(Problem::at(format!("{at}.webhook.url"), format!("{at}.webhook.url is refused: {why} (webhook_hosts)")));
            }
            let name_like = webhook.secret_name.starts_with(|c: char| c.is_ascii_uppercase())
                && webhook.secret_name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if name_like && webhook.secret_name.starts_with("IMAGEGATE_") {
                let message = format!("{at}.webhook.secret_name names one of the gateway's own secrets; give the webhook a secret of its own");
                problems.push(Problem::at(format!("{at}.webhook.secret_name"), message));
            } else if !name_like {
                problems.push(Problem::at(
                    format!("{at}.webhook.secret_name"),
                    format!("{at}.webhook.secret_name must be a secret's name (capitals, digits and '_'), not a secret"),
                ));
            }
        }
        check_defaults(route, &at, problems);
    }
}

/// The defaults must be image fields a request could carry (routing belongs in `policy`).
fn check_defaults(route: &RouteConfig, at: &str, problems: &mut Vec<Problem>) {
    if let Some(field) = route.defaults.keys().find(|k| ROUTER_FIELDS.contains(&k.as_str()) || *k == "model") {
        let message = format!("{at}.defaults.{field} is not a default request field: the model and routing belong in {at}.model and {at}.policy");
        problems.push(Problem::at(format!("{at}.defaults.{field}"), message));
        return;
    }
    let mut sample = route.defaults.clone();
    sample.entry("prompt").or_insert_with(|| Value::String("a sample".to_owned()));
    match image_request(sample) {
        Err(error) => {
            let path = format!("{at}.defaults.{}", error.param.as_deref().unwrap_or(""));
            problems.push(Problem::at(path.clone(), format!("{path}: {}", error.message)));
        }
        Ok(request) if !request.extra.is_empty() => {
            let field = request.extra.keys().next().expect("not empty");
            problems.push(Problem::at(format!("{at}.defaults.{field}"), format!("{at}.defaults.{field} is not an image request field")));
        }
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_identifiers_are_told_apart() {
        assert!(is_uuid("6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6"));
        assert!(!is_uuid("6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c"));
        assert!(!is_uuid("acme"));
        assert!(is_identifier("acme/thumbnails"));
        for bad in ["acme", "Acme/x", "acme/", "/x", "a/b/c", "6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6/x"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
