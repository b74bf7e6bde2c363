//! The `models` section: the public models, each served by one provider, with what it supports,
//! what it costs and its own routing policy.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::{Problem, ProviderConfig};
use crate::error::GatewayError;
use crate::policy::RouterFields;
use crate::request::{ImageRequest, CORE_FIELDS};

/// One public model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Public id, `provider/model` by convention (e.g. `openai/gpt-image-1`).
    pub id: String,
    /// The provider that serves it.
    pub provider: String,
    /// The model name the upstream expects; defaults to the part of `id` after the last `/`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Other names clients may use for it (e.g. `dall-e-3`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What the model can do; a request it cannot serve is a 400 naming the parameter, and as a
    /// fallback it is skipped without a call.
    #[serde(default)]
    pub supports: Supports,
    /// Request parameters the provider cannot honour that are dropped instead of refused.
    #[serde(default)]
    pub drop_params: Vec<String>,
    /// Display name in the catalogue (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Description in the catalogue.
    #[serde(default)]
    pub description: Option<String>,
    /// Unix seconds when the model was published, for the catalogue (default 0).
    #[serde(default)]
    pub created: u64,
    /// What a generation costs; gives answers their `usage.cost` and `x-imagegate-cost-usd`.
    #[serde(default)]
    pub pricing: Vec<PriceLine>,
    /// This model's routing policy, over `default_policy`.
    #[serde(default, rename = "policy")]
    pub(super) policy_json: Option<Value>,
    #[serde(skip)]
    pub(super) policy: RouterFields,
}

/// One billable line of a model's price, in OpenRouter's catalogue shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceLine {
    /// What is billed: `output_image`, `input_text`, `input_image`, ….
    #[serde(default = "default_billable")]
    pub billable: String,
    /// US dollars per unit.
    pub cost_usd: f64,
    pub unit: PriceUnit,
    /// For a `token` line: the most tokens one image can bill (output), which bounds what a
    /// budget holds before the answer; a token line without it cannot be budgeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_image: Option<u64>,
}

/// The unit a [`PriceLine`] is charged per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceUnit {
    Request,
    Image,
    Megapixel,
    Token,
}

fn default_billable() -> String {
    "output_image".to_owned()
}

/// The request parameters a model accepts. An absent list accepts any value the API allows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supports {
    /// The most images per request (`dall-e-3` takes 1).
    #[serde(default)]
    pub n_max: Option<u8>,
    #[serde(default)]
    pub sizes: Option<Vec<String>>,
    #[serde(default)]
    pub qualities: Option<Vec<String>>,
    #[serde(default)]
    pub styles: Option<Vec<String>>,
    #[serde(default)]
    pub response_formats: Option<Vec<String>>,
    #[serde(default)]
    pub output_formats: Option<Vec<String>>,
    /// Whether the model takes images in (edits, and variations where its kind makes them);
    /// unset, its kind decides (see the Edits page).
    #[serde(default)]
    pub edits: Option<bool>,
    /// Whether a request with `stream: true` is answered as server-sent events (its answer as
    /// one `completed` event) or refused with a 400 naming `stream` (`false`); unset, streamed.
    #[serde(default)]
    pub stream: Option<bool>,
}

impl Supports {
    /// Checks `request` against what the model supports; a 400 naming the first parameter it
    /// cannot honour.
    pub fn check(&self, model_id: &str, request: &ImageRequest) -> Result<(), GatewayError> {
        if request.inputs.is_some() && self.edits == Some(false) {
            return Err(GatewayError::invalid_param("image", format!("The model '{model_id}' does not take images (its supports.edits is false)."))
                .with_code("unsupported_parameter"));
        }
        if request.stream && self.stream == Some(false) {
            return Err(GatewayError::invalid_param("stream", format!("The model '{model_id}' does not stream its answers (its supports.stream is false)."))
                .with_code("unsupported_parameter"));
        }
        if let Some(max) = self.n_max.filter(|max| request.n > *max) {
            return Err(GatewayError::invalid_param("n", format!("The model '{model_id}' generates at most {max} image(s) per request.")));
        }
        let checks = [
            ("size", &self.sizes, request.size.as_ref().and_then(wire_text)),
            ("quality", &self.qualities, request.quality.clone()),
            ("style", &self.styles, request.style.clone()),
            ("response_format", &self.response_formats, request.response_format.as_ref().and_then(wire_text)),
            ("output_format", &self.output_formats, request.output_format.as_ref().and_then(wire_text)),
        ];
        for (param, allowed, value) in checks {
            if let (Some(allowed), Some(value)) = (allowed, value) {
                if !allowed.contains(&value) {
                    return Err(GatewayError::invalid_param(
                        param,
                        format!("The model '{model_id}' does not support {param} '{value}'; it supports: '{}'.", allowed.join("', '")),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A parameter's value as it appears on the wire (`"1024x1024"`, `"b64_json"`).
fn wire_text<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned))
}

impl ModelConfig {
    /// The model name sent upstream.
    pub fn upstream_name(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or_else(|| self.id.rsplit('/').next().unwrap_or(&self.id))
    }
}

/// A model id or alias: it is echoed in `x-imagegate-attempts` and `x-imagegate-model`.
fn is_model_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b';')
}

/// Each model's problems: its provider, dropped parameters, upstream name, pricing, and names
/// (ids and aliases, unique); the names that resolve, for the other sections' references.
pub(super) fn check<'c>(models: &'c [ModelConfig], providers: &[ProviderConfig], problems: &mut Vec<Problem>) -> HashSet<&'c str> {
    if models.is_empty() {
        problems.push(Problem::at("models", "models must list at least one model".to_owned()));
    }
    let mut names = HashSet::new();
    for (i, model) in models.iter().enumerate() {
        let at = format!("models[{i}]");
        let mut problem = |key: &str, text: String| problems.push(Problem::at(format!("{at}{key}"), text));
        match providers.iter().find(|p| p.id == model.provider) {
            None => problem(".provider", format!("{at}.provider '{}' is not a configured provider", model.provider)),
            Some(provider) => {
                if let Err(e) = provider.kind.adapter().check_model(model.upstream_name()) {
                    problem("", format!("{at}.{e}"));
                }
            }
        }
        if let Some(core) = model.drop_params.iter().find(|name| CORE_FIELDS.contains(&name.as_str())) {
            problem(".drop_params", format!("{at}.drop_params: '{core}' cannot be dropped (only optional parameters and extension fields can)"));
        }
        if let Some(line) = model.pricing.iter().find(|line| !(line.cost_usd >= 0.0 && line.cost_usd.is_finite())) {
            problem(".pricing", format!("{at}.pricing: cost_usd must be a non-negative number, not {}", line.cost_usd));
        }
        for name in std::iter::once(&model.id).chain(&model.aliases) {
            if !is_model_name(name) {
                problem(
                    "",
                    format!("{at}: model name '{name}' must be 1 to 128 visible ASCII characters, without ',' or ';' (it appears in response headers)"),
                );
            } else if !names.insert(name.as_str()) {
                problem("", format!("{at}: model name '{name}' is used twice"));
            }
        }
    }
    names
}
