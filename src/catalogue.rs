//! The model catalogue: what the gateway serves, written from the configuration in the shapes
//! the official clients parse: OpenAI's model list (`GET /v1/models`) and OpenRouter's image
//! catalogue (`GET /api/v1/images/models` and a model's `/endpoints`).

use crate::inputs::Operation;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::{Config, ModelConfig, PriceLine, ProviderConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::request::MAX_N;

/// `GET /v1/models`: every model id and alias, OpenAI's list shape.
pub fn openai_models(config: &Config) -> Vec<u8> {
    #[derive(Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'a str,
        /// Whether the model has a price: an unpriced one's cost is unknown (never 0), and a
        /// key with a budget may not use it.
        priced: bool,
        /// What it does: `generate`, and `edit` and `variation` where its provider can.
        capabilities: Vec<&'static str>,
    }
    let data: Vec<Model> = config
        .models
        .iter()
        .flat_map(|m| {
            let priced = !m.pricing.is_empty();
            let capabilities = capabilities(provider_of(config, m));
            std::iter::once(&m.id).chain(&m.aliases).map(move |id| Model {
                id,
                object: "model",
                created: m.created,
                owned_by: &m.provider,
                priced,
                capabilities: capabilities.clone(),
            })
        })
        .collect();
    to_json(&json!({ "object": "list", "data": data }))
}

/// `GET /api/v1/images/models`: one entry per model (aliases are names for the same entry).
pub fn image_models(config: &Config) -> Vec<u8> {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|model| {
            let provider = provider_of(config, model);
            json!({
                "id": model.id,
                "name": model.name.as_deref().unwrap_or(&model.id),
                "description": description(model, provider),
                "created": model.created,
                // Reference images in (`input_references`) where the provider edits.
                "architecture": { "input_modalities": input_modalities(provider), "output_modalities": ["image"] },
                "supported_parameters": supported_parameters(provider, model),
                "supports_streaming": false,
                "endpoints": format!("/api/v1/images/models/{}/endpoints", model.id),
            })
        })
        .collect();
    to_json(&json!({ "data": data }))
}

/// `GET /api/v1/images/models/{author}/{slug}/endpoints`: the provider that serves the model
/// `author/slug` (an id or alias), with what it takes and what it costs; a 404 otherwise.
pub fn endpoints(config: &Config, author: &str, slug: &str) -> Result<Vec<u8>, GatewayError> {
    // Clients percent-encode the path (`a%3Av1` for `a:v1`); the names are matched decoded.
    let decoded = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
    let name = format!("{}/{}", decoded(author), decoded(slug));
    let model = config.models.iter().find(|m| m.id == name || m.aliases.contains(&name)).ok_or_else(|| {
        GatewayError::new(ErrorKind::NotFound, format!("No image model '{name}' on this gateway; GET /api/v1/images/models lists them."))
            .with_code("model_not_found")
    })?;
    let provider = provider_of(config, model);
    let endpoint = json!({
        "provider_name": provider.display_name(),
        "provider_slug": provider.id,
        "provider_tag": Value::Null,
        "supported_parameters": supported_parameters(provider, model),
        "allowed_passthrough_parameters": provider.allowed_parameters,
        "pricing": model.pricing.iter().map(price_line).collect::<Vec<_>>(),
        "supports_streaming": false,
    });
    Ok(to_json(&json!({ "id": model.id, "endpoints": [endpoint] })))
}

/// What a provider's models do: generate, and edit and make variations where its kind can.
fn capabilities(provider: &ProviderConfig) -> Vec<&'static str> {
    let adapter = provider.kind.adapter();
    [(Operation::Generate, "generate"), (Operation::Edit, "edit"), (Operation::Variation, "variation")]
        .into_iter()
        .filter(|(operation, _)| adapter.takes(*operation))
        .map(|(_, name)| name)
        .collect()
}

/// What a provider's models take in: text, and images where its kind edits.
fn input_modalities(provider: &ProviderConfig) -> Vec<&'static str> {
    match provider.kind.adapter().takes(Operation::Edit) {
        true => vec!["text", "image"],
        false => vec!["text"],
    }
}

fn provider_of<'c>(config: &'c Config, model: &ModelConfig) -> &'c ProviderConfig {
    config.providers.iter().find(|p| p.id == model.provider).expect("validated: every model's provider exists")
}

fn description(model: &ModelConfig, provider: &ProviderConfig) -> String {
    model.description.clone().unwrap_or_else(|| format!("{} through the '{}' provider ({}).", model.id, provider.id, provider.kind.name()))
}

fn price_line(line: &PriceLine) -> Value {
    json!({ "billable": line.billable, "cost_usd": line.cost_usd, "unit": line.unit })
}

/// What the model takes, as OpenRouter's capability descriptors: `enum` with the values,
/// `range` with bounds, or `boolean` for a free-form parameter it accepts.
pub fn supported_parameters(provider: &ProviderConfig, model: &ModelConfig) -> Map<String, Value> {
    let supports = &model.supports;
    let one_of = |listed: &Option<Vec<String>>, defaults: &[&str]| match listed {
        Some(values) => json!({ "type": "enum", "values": values }),
        None => json!({ "type": "enum", "values": defaults }),
    };
    let range = |min: u64, max: u64| json!({ "type": "range", "min": min, "max": max });
    let mut map = Map::new();
    map.insert("n".into(), range(1, supports.n_max.unwrap_or(MAX_N).into()));
    let adapter = provider.kind.adapter();
    let names = adapter.honoured().iter().copied().chain(provider.allowed_parameters.iter().map(String::as_str));
    for name in names {
        let descriptor = match name {
            "size" => match &supports.sizes {
                Some(sizes) => json!({ "type": "enum", "values": sizes }),
                None => json!({ "type": "boolean" }),
            },
            "quality" => one_of(&supports.qualities, &["auto", "standard", "hd", "low", "medium", "high"]),
            "style" => one_of(&supports.styles, &["vivid", "natural"]),
            "output_format" => one_of(&supports.output_formats, adapter.output_formats()),
            "background" => json!({ "type": "enum", "values": ["auto", "transparent", "opaque"] }),
            "moderation" => json!({ "type": "enum", "values": ["auto", "low"] }),
            "resolution" => json!({ "type": "enum", "values": ["512", "1K", "2K", "4K"] }),
            "aspect_ratio" => match adapter.aspect_ratios() {
                Some(ratios) => json!({ "type": "enum", "values": ratios }),
                None => json!({ "type": "boolean" }),
            },
            "output_compression" => range(0, 100),
            "seed" => range(0, u32::MAX.into()),
            _ => json!({ "type": "boolean" }),
        };
        map.insert(name.to_owned(), descriptor);
    }
    if adapter.takes(Operation::Edit) {
        // Images in: `POST /v1/images/edits` (and `variations`, as `capabilities` says).
        map.insert("image".into(), json!({ "type": "boolean" }));
        map.insert("mask".into(), json!({ "type": "boolean" }));
    }
    map
}

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
      "providers": [
        {"id": "imagegate", "kind": "test_pattern", "name": "Built in"},
        {"id": "together", "kind": "openai_compatible", "base_url": "https://api.together.xyz/v1", "api_key_secret": "T",
         "allowed_parameters": ["steps"]},
        {"id": "bfl", "kind": "bfl", "api_key_secret": "B"}
      ],
      "models": [
        {"id": "imagegate/test-pattern", "provider": "imagegate", "aliases": ["test"], "name": "Test pattern", "created": 1700000000,
         "supports": {"n_max": 4, "sizes": ["256x256"]},
         "pricing": [{"cost_usd": 0.01, "unit": "request"}, {"billable": "output_image", "cost_usd": 0.002, "unit": "image"},
                     {"cost_usd": 0.03, "unit": "megapixel"}, {"billable": "input_text", "cost_usd": 0.000005, "unit": "token"}]},
        {"id": "together/flux", "provider": "together"},
        {"id": "bfl/flux-pro", "provider": "bfl", "upstream_model": "flux-pro-1.1"}
      ]
    }"#;

    fn parsed(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn openai_list_has_every_id_and_alias() {
        let list = parsed(openai_models(&Config::from_json(CONFIG).unwrap()));
        assert_eq!(list["object"], "list");
        let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["imagegate/test-pattern", "test", "together/flux", "bfl/flux-pro"]);
        assert_eq!(
            list["data"][1],
            json!({"id": "test", "object": "model", "created": 1700000000, "owned_by": "imagegate", "priced": true, "capabilities": ["generate", "edit", "variation"]})
        );
    }

    #[test]
    fn image_models_have_every_field_openrouter_requires() {
        let list = parsed(image_models(&Config::from_json(CONFIG).unwrap()));
        let models = list["data"].as_array().unwrap();
        assert_eq!(models.len(), 3, "aliases are not separate models");
        let first = &models[0];
        assert_eq!(first["id"], "imagegate/test-pattern");
        assert_eq!(first["name"], "Test pattern");
        assert_eq!(first["created"], 1700000000);
        assert_eq!(first["architecture"], json!({"input_modalities": ["text", "image"], "output_modalities": ["image"]}), "the test pattern edits");
        assert_eq!(first["supports_streaming"], false);
        assert_eq!(first["endpoints"], "/api/v1/images/models/imagegate/test-pattern/endpoints");
        assert_eq!(first["supported_parameters"]["n"], json!({"type": "range", "min": 1, "max": 4}));
        assert_eq!(first["supported_parameters"]["size"], json!({"type": "enum", "values": ["256x256"]}));
        assert_eq!(first["supported_parameters"]["output_format"], json!({"type": "enum", "values": ["png"]}));
        assert!(models[1]["description"].as_str().unwrap().contains("'together' provider"));
        assert_eq!(models[1]["supported_parameters"]["steps"], json!({"type": "boolean"}));
        assert_eq!(models[2]["supported_parameters"]["seed"], json!({"type": "range", "min": 0, "max": 4294967295u64}));
        assert_eq!(models[2]["supported_parameters"]["aspect_ratio"]["type"], "enum");
        assert!(models[2]["supported_parameters"].get("quality").is_none(), "BFL takes no quality");
    }

    #[test]
    fn endpoint_paths_are_matched_percent_decoded() {
        let config = Config::from_json(CONFIG).unwrap();
        let answer = parsed(endpoints(&config, "imagegate", "test%2Dpattern").unwrap());
        assert_eq!(answer["id"], "imagegate/test-pattern");
        assert_eq!(endpoints(&config, "imagegate", "test%FFpattern").unwrap_err().status(), 404);
    }

    #[test]
    fn endpoints_carry_provider_passthrough_and_pricing() {
        let config = Config::from_json(CONFIG).unwrap();
        let answer = parsed(endpoints(&config, "imagegate", "test-pattern").unwrap());
        assert_eq!(answer["id"], "imagegate/test-pattern");
        let endpoint = &answer["endpoints"][0];
        assert_eq!((endpoint["provider_name"].as_str(), endpoint["provider_slug"].as_str()), (Some("Built in"), Some("imagegate")));
        assert_eq!(endpoint["provider_tag"], Value::Null);
        assert_eq!(endpoint["pricing"][0], json!({"billable": "output_image", "cost_usd": 0.01, "unit": "request"}));
        assert_eq!(endpoint["pricing"][3], json!({"billable": "input_text", "cost_usd": 0.000005, "unit": "token"}));
        let together = parsed(endpoints(&config, "together", "flux").unwrap());
        assert_eq!(together["endpoints"][0]["allowed_passthrough_parameters"], json!(["steps"]));
        let missing = endpoints(&config, "nobody", "nothing").unwrap_err();
        assert_eq!((missing.status(), missing.code), (404, Some("model_not_found")));
    }
}
