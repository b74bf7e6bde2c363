//! The routing policies a configuration sets: `default_policy` and each model's `policy`, read
//! with the request fields' parser, and every model they route to configured.

use std::collections::HashSet;

use serde_json::Value;

use super::{Config, Problem};
use crate::policy::{take_router_fields, RouterFields};

/// Reads a configured policy with the request fields' parser; errors name `at` and the field.
pub(super) fn read_policy(json: Option<Value>, at: &str) -> Result<RouterFields, Problem> {
    let Some(json) = json else { return Ok(RouterFields::default()) };
    let Value::Object(mut fields) = json else { return Err(Problem::at(at, format!("{at} must be an object"))) };
    let policy = take_router_fields(&mut fields, None).map_err(|e| {
        let path = format!("{at}.{}", e.param.as_deref().unwrap_or(""));
        Problem::at(path.clone(), format!("{path}: {}", e.message))
    })?;
    match fields.keys().next() {
        Some(unknown) => Err(Problem::at(format!("{at}.{unknown}"), format!("{at}.{unknown} is not a policy field"))),
        None => Ok(policy),
    }
}

/// Each policy that routes to a model or alias not in `names`, and a `default_model` not in it.
pub(super) fn check(config: &Config, names: &HashSet<&str>, problems: &mut Vec<Problem>) {
    let policies = std::iter::once(("default_policy".to_owned(), &config.default_policy))
        .chain(config.models.iter().enumerate().map(|(i, m)| (format!("models[{i}].policy"), &m.policy)));
    for (at, fields) in policies {
        let targets = fields.fallbacks.iter().flatten().chain(fields.load_balancer.iter().flatten().map(|(m, _)| m));
        if let Some(unknown) = targets.into_iter().find(|m| !names.contains(m.as_str())) {
            problems.push(Problem::at(at.clone(), format!("{at} routes to '{unknown}', which is not a configured model or alias")));
        }
    }
    if let Some(default) = config.default_model.as_deref().filter(|d| !names.contains(d)) {
        problems.push(Problem::at("default_model", format!("default_model '{default}' is not a configured model or alias")));
    }
}
