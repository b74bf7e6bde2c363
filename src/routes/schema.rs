//! A route described to its callers: what it is, where to send it, the models it may use, and the
//! request it takes as JSON Schema (the fields a caller may set, with their types and the route's
//! defaults). Never a secret: no key labels, no provider, no credential.

use serde_json::{json, Map, Value};

use crate::config::{Config, RouteConfig};
use crate::request::{MAX_N, MAX_PROMPT_CHARS};

/// The JSON Schema of one request field, by name.
pub fn field_schema(name: &str) -> Value {
    let one_of = |values: &[&str]| json!({"type": "string", "enum": values});
    match name {
        "prompt" => json!({"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS}),
        "negative_prompt" | "user" | "name" => json!({"type": "string"}),
        "model" => json!({"type": "string", "description": "a model id or alias (GET /v1/models)"}),
        "n" => json!({"type": "integer", "minimum": 1, "maximum": MAX_N}),
        "size" => json!({"type": "string", "pattern": "^(auto|[0-9]+x[0-9]+)$"}),
        "aspect_ratio" => json!({"type": "string", "pattern": "^(auto|[0-9]+(\\.[0-9]+)?:[0-9]+(\\.[0-9]+)?)$"}),
        "quality" => one_of(&["auto", "standard", "hd", "low", "medium", "high"]),
        "style" => one_of(&["vivid", "natural"]),
        "response_format" => one_of(&["url", "b64_json"]),
        "background" => one_of(&["auto", "transparent", "opaque"]),
        "output_format" => one_of(&["png", "jpeg", "webp"]),
        "moderation" => one_of(&["auto", "low"]),
        "resolution" => one_of(&["512", "1K", "2K", "4K"]),
        "output_compression" => json!({"type": "integer", "minimum": 0, "maximum": 100}),
        "seed" => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        "fallbacks" | "fallback_on_codes" => json!({"type": "array"}),
        "metadata" => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        _ => json!({"type": "object"}),
    }
}

/// The request a route takes: its overridable fields, each with its type and the route's default.
pub fn request_schema(route: &RouteConfig) -> Value {
    let mut properties = Map::new();
    for field in &route.overridable {
        let mut schema = field_schema(field);
        if let Some(default) = route.defaults.get(field) {
            schema["default"] = default.clone();
        }
        properties.insert(field.clone(), schema);
    }
    let required: Vec<&str> = ["prompt"].into_iter().filter(|f| !route.defaults.contains_key(*f)).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The route as `GET /v1/routes/{id}` answers it.
pub fn describe(config: &Config, route: &RouteConfig) -> Value {
    let models: Vec<&str> = std::iter::once(route.model.as_str())
        .chain(route.policy.fallbacks.iter().flatten().map(String::as_str))
        .chain(route.policy.load_balancer.iter().flatten().map(|(m, _)| m.as_str()))
        .collect();
    // The fixed fields: the defaults a caller cannot change.
    let fixed: Map<String, Value> = route.defaults.iter().filter(|(k, _)| !route.overridable.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let model_id = config.resolve_model(Some(&route.model)).map(|(m, _)| m.id.as_str()).unwrap_or(&route.model);
    json!({
        "id": route.id,
        "object": "route",
        "identifier": route.identifier,
        "name": route.name,
        "description": route.description,
        "visibility": route.visibility,
        "metadata": route.metadata,
        "execution_mode": route.execution_mode,
        "method": "POST",
        "path": format!("/v1/routes/{}/use", route.identifier),
        "model": model_id,
        "models": models,
        "defaults": route.defaults,
        "fixed": fixed,
        "overridable": route.overridable,
        "request_schema": request_schema(route),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::image_request;

    /// Every value a field's schema lists is one the request parser takes, and a value outside
    /// the list is one it refuses: the schema cannot drift from what is served.
    #[test]
    fn the_enums_are_exactly_what_the_parser_takes() {
        for field in ["quality", "style", "response_format", "background", "output_format", "moderation", "resolution"] {
            let schema = field_schema(field);
            let parse = |value: &str| {
                let mut fields = Map::new();
                fields.insert("prompt".into(), json!("p"));
                fields.insert(field.into(), json!(value));
                image_request(fields)
            };
            for value in schema["enum"].as_array().unwrap() {
                assert!(parse(value.as_str().unwrap()).is_ok(), "{field}={value}");
            }
            assert!(parse("surely-not-a-value").is_err(), "{field}");
        }
    }
}
