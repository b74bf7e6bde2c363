//! Typed gateway configuration, validated once before anything is served.
//!
//! The configuration is JSON (the `IMAGEGATE_CONFIG` variable). Unknown keys, dangling references
//! and duplicate names are start-up errors naming the key, never runtime surprises. Without a
//! configuration the gateway serves [`EMBEDDED_DEFAULT`]: the built-in test-pattern model only.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ErrorKind, GatewayError};
use crate::policy::{take_router_fields, Policy, RouterFields};
use crate::providers::{self, Adapter, Settings, Target};
use crate::request::{ImageRequest, CORE_FIELDS};
use crate::secret::Secret;

/// The configuration used when `IMAGEGATE_CONFIG` is not set: one model, rendered in the worker.
pub const EMBEDDED_DEFAULT: &str = r#"{
  "default_model": "imagegate/test-pattern",
  "providers": [{ "id": "imagegate", "kind": "test_pattern" }],
  "models": [{ "id": "imagegate/test-pattern", "provider": "imagegate" }]
}"#;

/// The whole-request deadline when none is configured: 150 seconds.
pub const DEFAULT_DEADLINE_MS: u64 = 150_000;
/// The most upstream requests per request when none is configured: the Workers Free plan's limit.
pub const DEFAULT_MAX_SUBREQUESTS: u32 = 50;
/// The largest request body accepted when none is configured: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The most upstream attempts that may be paid for in one request when none is configured.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// The most bytes of upstream answers one request reads into the gateway when none is
/// configured: 32 MiB, well inside an isolate's 128 MB with the answer rendered from them.
pub const DEFAULT_MAX_UPSTREAM_BYTES: usize = 32 << 20;
/// The bounds of `max_upstream_bytes`.
const UPSTREAM_BYTES_RANGE: std::ops::RangeInclusive<usize> = (1 << 20)..=(64 << 20);

/// The gateway's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whole-request deadline in milliseconds (default 150000).
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest request body accepted, in bytes (default 1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The most retries a request may ask for (0–5, default 5); more is a 400 naming `retry.count`.
    #[serde(default = "default_max_retry_count")]
    pub max_retry_count: u8,
    /// The most upstream requests one request may send, polls and downloads included (default
    /// 50, the Workers Free plan's subrequest limit; Paid plans allow 1000).
    #[serde(default = "default_max_subrequests")]
    pub max_subrequests: u32,
    /// The most attempts one request may make that reach an upstream (and so may be paid for),
    /// retries and fallbacks together (default 6).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The most bytes of upstream answers one request reads into the gateway: answers read
    /// whole to be translated, and image downloads (default 32 MiB). Relayed answers stream
    /// past the gateway and do not count.
    #[serde(default = "default_max_upstream_bytes")]
    pub max_upstream_bytes: usize,
    /// Whether the request log line includes the prompt (default false).
    #[serde(default)]
    pub log_prompts: bool,
    /// Browser access.
    #[serde(default)]
    pub cors: CorsConfig,
    /// The model used when a request names none.
    #[serde(default)]
    pub default_model: Option<String>,
    /// The routing policy for every model, in the request fields' shape (`retry`, `fallbacks`,
    /// `fallback_on_codes`, `load_balancer`, `timeout`); a model's own `policy` overrides it.
    #[serde(default, rename = "default_policy")]
    default_policy_json: Option<Value>,
    #[serde(skip)]
    default_policy: RouterFields,
    /// Where requests can be sent.
    pub providers: Vec<ProviderConfig>,
    /// The public models, each served by one provider.
    pub models: Vec<ModelConfig>,
}

/// Which browser origins may call the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) or `*` for any; empty disables CORS.
    pub allowed_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig { allowed_origins: vec!["*".to_owned()] }
    }
}

/// A provider kind, configured by its name (`azure_openai`): the adapter in
/// [`crate::providers`] that speaks its wire format.
#[derive(Clone, Copy)]
pub struct Kind(&'static dyn Adapter);

impl Kind {
    /// The adapter of this kind.
    pub fn adapter(self) -> &'static dyn Adapter {
        self.0
    }

    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.name() == other.name()
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        let name = String::deserialize(deserializer)?;
        providers::adapter(&name)
            .map(Kind)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown provider kind '{name}', expected one of: {}", providers::kind_names())))
    }
}

/// One upstream provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, used in model references and logs.
    pub id: String,
    pub kind: Kind,
    /// Base URL up to and including the API version, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the secret holding the provider's API key (never the key itself).
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// Extra headers sent with every upstream request (e.g. `OpenAI-Organization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Display name in the catalogue (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// `azure_openai`: the `api-version` query parameter.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `openai_compatible`: the header carrying the key; `authorization` (the default) sends
    /// `Bearer <key>`, any other header the bare key.
    #[serde(default)]
    pub key_header: Option<String>,
    /// Request fields this provider takes beyond its kind's own (see the README's provider
    /// table), passed through as sent: e.g. `steps` for an `openai_compatible` host.
    #[serde(default)]
    pub allowed_parameters: Vec<String>,
    /// Where images this provider answers with as URLs may be downloaded from: host names
    /// (`cdn.example.com`), wildcards (`*.bfl.ai`) or exact origins (`http://127.0.0.1:9000`).
    /// Empty: any public host name over https (see [`crate::providers::site`]).
    #[serde(default)]
    pub download_hosts: Vec<String>,
}

impl ProviderConfig {
    /// The base URL without a trailing `/`: the configured one, or (once loaded) the kind's
    /// public API.
    pub fn base(&self) -> &str {
        self.base_url.as_deref().unwrap_or("").trim_end_matches('/')
    }

    /// What the provider's adapter knows of it.
    pub fn settings(&self) -> Settings<'_> {
        Settings {
            id: &self.id,
            base_url: self.base(),
            headers: &self.headers,
            api_version: self.api_version.as_deref(),
            key_header: self.key_header.as_deref(),
            allowed_parameters: &self.allowed_parameters,
        }
    }

    /// The target of an attempt on `model` of this provider, with `key`, that may take `limit_ms`.
    pub fn target<'a>(&'a self, model: &'a ModelConfig, key: Option<&'a Secret>, limit_ms: u64) -> Target<'a> {
        Target { adapter: self.kind.adapter(), provider: self.settings(), model_id: &model.id, upstream_model: model.upstream_name(), key, limit_ms }
    }

    /// The name shown in the catalogue.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

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
    policy_json: Option<Value>,
    #[serde(skip)]
    policy: RouterFields,
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
}

impl Supports {
    /// Checks `request` against what the model supports; a 400 naming the first parameter it
    /// cannot honour.
    pub fn check(&self, model_id: &str, request: &ImageRequest) -> Result<(), GatewayError> {
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

/// Headers the gateway sets itself on upstream requests; configuration may not override them.
const RESERVED_HEADERS: [&str; 3] = ["authorization", "content-type", "content-length"];

/// A model id or alias: it is echoed in `x-imagegate-attempts` and `x-imagegate-model`.
fn is_model_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b';')
}

/// An HTTP header name: one or more token characters (RFC 9110).
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A base URL: http(s), with a host, and nothing a parser could read two ways.
fn is_base_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|parsed| {
        matches!(parsed.scheme(), "https" | "http")
            && parsed.host().is_some()
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && parsed.query().is_none()
            && parsed.fragment().is_none()
            && !url.contains('\\')
    })
}

/// Reads a configured policy with the request fields' parser; errors name `at` and the field.
fn read_policy(json: Option<Value>, at: &str) -> Result<RouterFields, String> {
    let Some(json) = json else { return Ok(RouterFields::default()) };
    let Value::Object(mut fields) = json else { return Err(format!("{at} must be an object")) };
    let policy = take_router_fields(&mut fields, None).map_err(|e| format!("{at}.{}: {}", e.param.as_deref().unwrap_or(""), e.message))?;
    match fields.keys().next() {
        Some(unknown) => Err(format!("{at}.{unknown} is not a policy field")),
        None => Ok(policy),
    }
}

fn default_max_retry_count() -> u8 {
    crate::policy::MAX_RETRY_COUNT
}

fn default_max_subrequests() -> u32 {
    DEFAULT_MAX_SUBREQUESTS
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_max_upstream_bytes() -> usize {
    DEFAULT_MAX_UPSTREAM_BYTES
}

/// A secret's name as `wrangler secret put` takes it: a capital letter, then capitals, digits
/// and `_`, at most 128 characters.
fn is_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128 && bytes.next().is_some_and(|b| b.is_ascii_uppercase()) && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

impl Config {
    /// Parses and validates a configuration; the error names the offending key.
    pub fn from_json(text: &str) -> Result<Config, String> {
        let invalid = |e: String| format!("IMAGEGATE_CONFIG is not valid: {e}");
        let mut config: Config = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        // Resolved once: nothing asks the adapters for defaults after loading.
        for provider in &mut config.providers {
            if provider.base_url.is_none() {
                provider.base_url = provider.kind.adapter().default_base_url().map(str::to_owned);
            }
        }
        config.default_policy = read_policy(config.default_policy_json.take(), "default_policy").map_err(invalid)?;
        for (i, model) in config.models.iter_mut().enumerate() {
            model.policy = read_policy(model.policy_json.take(), &format!("models[{i}].policy")).map_err(invalid)?;
        }
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// The server's policy for `model`: built-in defaults, then `default_policy`, then the
    /// model's own `policy`.
    pub fn policy_for(&self, model: &ModelConfig) -> Policy {
        Policy::default().with_request(&self.default_policy).with_request(&model.policy)
    }

    /// Checks that every model a policy may route to is configured: a 404 naming the field.
    pub fn check_targets(&self, policy: &Policy) -> Result<(), GatewayError> {
        let fallbacks = policy.fallbacks.iter().enumerate().map(|(i, m)| (format!("fallbacks[{i}].model"), m));
        let balanced = policy.load_balancer.iter().enumerate().map(|(i, (m, _))| (format!("load_balancer.models[{i}].model"), m));
        for (param, model) in fallbacks.chain(balanced) {
            self.resolve_model(Some(model)).map_err(|e| GatewayError { param: Some(param), ..e })?;
        }
        Ok(())
    }

    /// The built-in configuration.
    pub fn embedded_default() -> Config {
        Config::from_json(EMBEDDED_DEFAULT).expect("the embedded default is valid")
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=900_000).contains(&self.deadline_ms) {
            return Err(format!("deadline_ms must be between 1 and 900000, not {}", self.deadline_ms));
        }
        if self.max_retry_count > crate::policy::MAX_RETRY_COUNT {
            return Err(format!("max_retry_count must be at most {}, not {}", crate::policy::MAX_RETRY_COUNT, self.max_retry_count));
        }
        if !(1..=10_000).contains(&self.max_subrequests) {
            return Err(format!("max_subrequests must be between 1 and 10000, not {}", self.max_subrequests));
        }
        if !(1..=20).contains(&self.max_attempts) {
            return Err(format!("max_attempts must be between 1 and 20, not {}", self.max_attempts));
        }
        if !UPSTREAM_BYTES_RANGE.contains(&self.max_upstream_bytes) {
            let (min, max) = (UPSTREAM_BYTES_RANGE.start(), UPSTREAM_BYTES_RANGE.end());
            return Err(format!("max_upstream_bytes must be between {min} and {max}, not {}", self.max_upstream_bytes));
        }
        if self.max_body_bytes < 1024 {
            return Err(format!("max_body_bytes must be at least 1024, not {}", self.max_body_bytes));
        }
        let mut provider_ids = HashSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if provider.id.is_empty() || !provider_ids.insert(provider.id.as_str()) {
                return Err(format!("{at}.id '{}' is empty or used twice", provider.id));
            }
            for (name, value) in &provider.headers {
                if !is_header_name(name) || RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                    return Err(format!("{at}.headers: '{name}' is not a header the gateway can send (invalid, or set by the gateway itself)"));
                }
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    return Err(format!("{at}.headers.{name} contains a control character"));
                }
            }
            if provider.kind.adapter().calls_upstream() {
                let kind = provider.kind.name();
                match provider.base_url.as_deref() {
                    Some(url) if is_base_url(url) => {}
                    Some(_) => return Err(format!("{at}.base_url must be an http(s) URL with a host and no credentials, query or fragment")),
                    None => return Err(format!("{at}.base_url is required for kind '{kind}'")),
                }
                let keyless = provider.kind.adapter().key_optional() && provider.api_key_secret.is_none();
                if !keyless && provider.api_key_secret.as_deref().is_none_or(str::is_empty) {
                    return Err(format!("{at}.api_key_secret must name the secret holding the key"));
                }
                // Never echoed: an operator may have pasted the key itself here.
                if provider.api_key_secret.as_deref().is_some_and(|name| !is_secret_name(name)) {
                    return Err(format!(
                        "{at}.api_key_secret must be the name of a secret (a capital letter, then capitals, digits and '_', e.g. OPENAI_API_KEY), never the key itself; its value is not shown here"
                    ));
                }
                for entry in &provider.download_hosts {
                    providers::site::check_download_host(entry).map_err(|e| format!("{at}.download_hosts: {e}"))?;
                }
                if let Some(header) = provider.key_header.as_deref().filter(|h| !is_header_name(h)) {
                    return Err(format!("{at}.key_header '{header}' is not a header name"));
                }
            }
            providers::check_provider(provider.kind.adapter(), &provider.settings()).map_err(|e| format!("{at}.{e}"))?;
        }
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            let scheme_and_host = origin.split_once("://").is_some_and(|(scheme, host)| !scheme.is_empty() && !host.is_empty() && !host.contains('/'));
            if origin != "*" && (!scheme_and_host || origin.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())) {
                return Err(format!("cors.allowed_origins[{i}] '{origin}' is not '*' or an origin like 'https://app.example.com'"));
            }
        }
        if self.models.is_empty() {
            return Err("models must list at least one model".to_owned());
        }
        let mut names = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let at = format!("models[{i}]");
            let Some(provider) = self.providers.iter().find(|p| p.id == model.provider) else {
                return Err(format!("{at}.provider '{}' is not a configured provider", model.provider));
            };
            if let Some(core) = model.drop_params.iter().find(|name| CORE_FIELDS.contains(&name.as_str())) {
                return Err(format!("{at}.drop_params: '{core}' cannot be dropped (only optional parameters and extension fields can)"));
            }
            provider.kind.adapter().check_model(model.upstream_name()).map_err(|e| format!("{at}.{e}"))?;
            if let Some(line) = model.pricing.iter().find(|line| !(line.cost_usd >= 0.0 && line.cost_usd.is_finite())) {
                return Err(format!("{at}.pricing: cost_usd must be a non-negative number, not {}", line.cost_usd));
            }
            for name in std::iter::once(&model.id).chain(&model.aliases) {
                if !is_model_name(name) {
                    return Err(format!(
                        "{at}: model name '{name}' must be 1 to 128 visible ASCII characters, without ',' or ';' (it appears in response headers)"
                    ));
                }
                if !names.insert(name.as_str()) {
                    return Err(format!("{at}: model name '{name}' is used twice"));
                }
            }
        }
        let policies = std::iter::once(("default_policy".to_owned(), &self.default_policy))
            .chain(self.models.iter().enumerate().map(|(i, m)| (format!("models[{i}].policy"), &m.policy)));
        for (at, fields) in policies {
            let targets = fields.fallbacks.iter().flatten().chain(fields.load_balancer.iter().flatten().map(|(m, _)| m));
            if let Some(unknown) = targets.into_iter().find(|m| !names.contains(m.as_str())) {
                return Err(format!("{at} routes to '{unknown}', which is not a configured model or alias"));
            }
        }
        if let Some(default) = &self.default_model {
            if !names.contains(default.as_str()) {
                return Err(format!("default_model '{default}' is not a configured model or alias"));
            }
        }
        Ok(())
    }

    /// Finds the model a request names (by id or alias), or the default model when it names none.
    pub fn resolve_model(&self, requested: Option<&str>) -> Result<(&ModelConfig, &ProviderConfig), GatewayError> {
        let name = match requested.or(self.default_model.as_deref()) {
            Some(name) => name,
            None => return Err(GatewayError::invalid_param("model", "Missing required parameter: 'model'.").with_code("missing_required_parameter")),
        };
        let model = self.models.iter().find(|m| m.id == name || m.aliases.iter().any(|a| a == name)).ok_or_else(|| {
            GatewayError::new(ErrorKind::NotFound, format!("The model '{name}' does not exist on this gateway. GET /v1/models lists the models it serves."))
                .with_param("model")
                .with_code("model_not_found")
        })?;
        let provider = self.providers.iter().find(|p| p.id == model.provider).expect("validated: every model's provider exists");
        Ok((model, provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai_config(extra: &str) -> String {
        format!(
            r#"{{ {extra} "providers": [{{"id":"openai","kind":"openai","base_url":"https://api.openai.com/v1","api_key_secret":"OPENAI_API_KEY"}}],
                 "models": [{{"id":"openai/gpt-image-1","provider":"openai","aliases":["gpt-image-1"]}}] }}"#
        )
    }

    #[test]
    fn embedded_default_serves_the_test_pattern() {
        let config = Config::embedded_default();
        assert_eq!(config.deadline_ms, DEFAULT_DEADLINE_MS);
        let (model, provider) = config.resolve_model(None).unwrap();
        assert_eq!((model.id.as_str(), provider.kind.name()), ("imagegate/test-pattern", "test_pattern"));
    }

    #[test]
    fn models_resolve_by_id_and_alias() {
        let config = Config::from_json(&openai_config("")).unwrap();
        for name in ["openai/gpt-image-1", "gpt-image-1"] {
            let (model, _) = config.resolve_model(Some(name)).unwrap();
            assert_eq!(model.upstream_name(), "gpt-image-1");
        }
        let err = config.resolve_model(Some("dall-e-2")).unwrap_err();
        assert_eq!((err.status(), err.param.as_deref()), (404, Some("model")));
        assert_eq!(config.resolve_model(None).unwrap_err().status(), 400);
    }

    #[test]
    fn model_policies_override_the_default_policy_which_overrides_the_built_in_one() {
        let config = Config::from_json(
            r#"{ "default_policy": {"retry": {"count": 1}, "timeout": {"call_timeout": 5000}},
                 "providers": [{"id":"a","kind":"test_pattern"}],
                 "models": [{"id":"a/x","provider":"a","policy":{"retry":{"count":0},"fallbacks":[{"model":"a/y"}]}},
                            {"id":"a/y","provider":"a"}] }"#,
        )
        .unwrap();
        let (x, _) = config.resolve_model(Some("a/x")).unwrap();
        let (y, _) = config.resolve_model(Some("a/y")).unwrap();
        let (px, py) = (config.policy_for(x), config.policy_for(y));
        assert_eq!((px.retry_count, px.fallbacks.clone(), px.call_timeout_ms), (0, vec!["a/y".to_owned()], Some(5000)));
        assert_eq!((py.retry_count, py.fallbacks.len(), py.retry_on), (1, 0, crate::policy::DEFAULT_RETRY_ON.to_vec()));
        let bad = Policy { fallbacks: vec!["a/z".into()], ..Policy::default() };
        let err = config.check_targets(&bad).unwrap_err();
        assert_eq!((err.status(), err.param.as_deref()), (404, Some("fallbacks[0].model")));
    }

    #[test]
    fn supports_names_the_parameter_a_model_cannot_honour() {
        let config = Config::from_json(
            r#"{"providers":[{"id":"a","kind":"test_pattern"}],
                "models":[{"id":"a/x","provider":"a","supports":{"n_max":1,"sizes":["1024x1024","auto"],"styles":["vivid"]}}]}"#,
        )
        .unwrap();
        let (model, _) = config.resolve_model(Some("a/x")).unwrap();
        let check = |body: &str| {
            let request = crate::request::parse_generation(Some("application/json"), body.as_bytes(), 1 << 20).unwrap();
            model.supports.check(&model.id, &request).err().and_then(|e| e.param)
        };
        assert_eq!(check(r#"{"prompt":"p","size":"1024x1024","style":"vivid"}"#), None);
        assert_eq!(check(r#"{"prompt":"p","size":"auto"}"#), None);
        assert_eq!(check(r#"{"prompt":"p","n":2}"#).as_deref(), Some("n"));
        assert_eq!(check(r#"{"prompt":"p","size":"512x512"}"#).as_deref(), Some("size"));
        assert_eq!(check(r#"{"prompt":"p","style":"natural"}"#).as_deref(), Some("style"));
    }

    #[test]
    fn mistakes_are_start_up_errors_naming_the_key() {
        let cases = [
            (openai_config(r#""deadline":5,"#), "deadline"),
            (openai_config(r#""deadline_ms":0,"#), "deadline_ms"),
            (openai_config(r#""default_model":"nope","#), "default_model"),
            (r#"{"providers":[],"models":[]}"#.to_owned(), "models"),
            (
                r#"{"providers":[{"id":"a","kind":"openai","base_url":"ftp://x","api_key_secret":"K"}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[0].base_url",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"openai_compatible","api_key_secret":"K"}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[0].base_url is required for kind 'openai_compatible'",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"openai","base_url":"https://x"}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[0].api_key_secret",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern"}],"models":[{"id":"m","provider":"b"}]}"#.to_owned(),
                "models[0].provider",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern"},{"id":"a","kind":"test_pattern"}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[1].id",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern"}],"models":[{"id":"m","provider":"a","aliases":["m"]}]}"#.to_owned(),
                "models[0]: model name 'm' is used twice",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern"}],"models":[{"id":"a/b c","provider":"a"}]}"#.to_owned(),
                "models[0]: model name 'a/b c' must be",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"dalle"}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "dalle",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern","headers":{"Authorization":"x"}}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[0].headers: 'Authorization'",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern","headers":{"bad name":"x"}}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[0].headers: 'bad name'",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern","headers":{"X-Ok":"a\r\nb"}}],"models":[{"id":"m","provider":"a"}]}"#.to_owned(),
                "providers[0].headers.X-Ok",
            ),
            (openai_config(r#""cors":{"allowed_origins":["app.example.com"]},"#), "cors.allowed_origins[0]"),
            (openai_config(r#""default_policy":{"retry":{"count":9}},"#), "default_policy.retry.count"),
            (openai_config(r#""default_policy":{"fallbacks":[{"model":"nope"}]},"#), "default_policy routes to 'nope'"),
            (openai_config(r#""default_policy":{"retries":1},"#), "default_policy.retries"),
            (openai_config(r#""cors":{"allowed_origins":["https://a.example","https://b.example/path"]},"#), "cors.allowed_origins[1]"),
            (
                r#"{"providers":[{"id":"s","kind":"stability","api_key_secret":"K","allowed_parameters":["cfg_scale"]}],"models":[{"id":"m","provider":"s","upstream_model":"core"}]}"#.to_owned(),
                "providers[0].allowed_parameters: a 'stability' provider builds its own request and cannot pass 'cfg_scale' through",
            ),
            (
                r#"{"providers":[{"id":"o","kind":"openrouter","api_key_secret":"K","allowed_parameters":["style"]}],"models":[{"id":"m","provider":"o"}]}"#.to_owned(),
                "providers[0].allowed_parameters: 'style' cannot be passed through",
            ),
            (
                r#"{"providers":[{"id":"c","kind":"openai_compatible","base_url":"http://127.0.0.1:1/v1","allowed_parameters":["n"]}],"models":[{"id":"m","provider":"c"}]}"#.to_owned(),
                "providers[0].allowed_parameters: 'n' cannot be passed through",
            ),
            (
                r#"{"providers":[{"id":"a","kind":"test_pattern"}],"models":[{"id":"m","provider":"a","drop_params":["seed","prompt"]}]}"#.to_owned(),
                "models[0].drop_params: 'prompt' cannot be dropped",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_json(&text).unwrap_err();
            assert!(err.contains(key), "expected '{key}' in: {err}");
        }
    }
}
