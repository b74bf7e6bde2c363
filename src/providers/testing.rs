//! Helpers shared by the adapters' tests: requests, targets and golden-file views.

use serde_json::{json, Map, Value};

use super::Target;
use crate::config::Config;
use crate::request::{parse_generation, ImageRequest};
use crate::secret::Secret;
use crate::upstream::UpstreamRequest;

/// A validated request from its JSON body.
pub fn request(body: &str) -> ImageRequest {
    parse_generation(Some("application/json"), body.as_bytes(), 1 << 20).unwrap()
}

/// Runs `f` with the target for `model` in `config`, keyed with `key`.
pub fn with_target_in<T>(config: &Config, model: &str, key: &str, f: impl FnOnce(&Target) -> T) -> T {
    let (model, provider) = config.resolve_model(Some(model)).unwrap();
    let key = Secret::new(key);
    f(&provider.target(model, Some(&key), 150_000))
}

/// An upstream request as the golden files write it: `{method, url, headers, body}` with the
/// key exposed and a JSON body parsed (`null` when empty).
pub fn as_golden(upstream: &UpstreamRequest) -> Value {
    let headers: Map<String, Value> = upstream.headers.iter().map(|(n, v)| (n.clone(), Value::from(v.expose()))).collect();
    let body = if upstream.body.is_empty() { Value::Null } else { serde_json::from_slice(&upstream.body).unwrap() };
    json!({"method": upstream.method.as_str(), "url": upstream.url, "headers": headers, "body": body})
}
