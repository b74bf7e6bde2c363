//! Typed gateway configuration, validated once before anything is served.
//!
//! The configuration is JSON (the `IMAGEGATE_CONFIG` variable). Loading ([`Config::from_json`])
//! parses it (unknown keys are errors), resolves what defaults to the provider kinds (their base
//! URLs), reads the routing policies, and checks every section, collecting each [`Problem`] with
//! the key path it is at: never a runtime surprise. Without a configuration the gateway serves
//! [`EMBEDDED_DEFAULT`]: the built-in test-pattern model only.
//!
//! One module per concern: [`limits`] (per-request limits), [`providers`] (where requests go),
//! [`models`] (what clients ask for), [`policy`] (routing). The sections the next features add
//! (`keys`, `storage`) each get a module here and a line in [`Config::problems`]; [`routes`] holds
//! the named endpoints.

pub mod limits;
pub mod models;
pub mod policy;
pub mod providers;
pub mod routes;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ErrorKind, GatewayError};
use crate::policy::{Policy, RouterFields};

pub use limits::{DEFAULT_DEADLINE_MS, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_SUBREQUESTS, DEFAULT_MAX_UPSTREAM_BYTES};
pub use models::{ModelConfig, PriceLine, PriceUnit, Supports};
pub use providers::{Kind, ProviderConfig};
pub use routes::RouteConfig;

/// The configuration used when `IMAGEGATE_CONFIG` is not set: one model, rendered in the worker.
pub const EMBEDDED_DEFAULT: &str = r#"{
  "default_model": "imagegate/test-pattern",
  "providers": [{ "id": "imagegate", "kind": "test_pattern" }],
  "models": [{ "id": "imagegate/test-pattern", "provider": "imagegate" }]
}"#;

/// One thing wrong with a configuration: the key path it is at (`providers[0].base_url`), and
/// the whole sentence that says what is wrong, naming that path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    fn at(path: impl Into<String>, message: String) -> Problem {
        Problem { path: path.into(), message }
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Whole-request deadline in milliseconds (default 150000).
    #[serde(default = "limits::default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest request body accepted, in bytes (default 1 MiB).
    #[serde(default = "limits::default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest edit or variation body accepted, images included, in bytes (default 25 MiB).
    #[serde(default = "limits::default_max_edit_body_bytes")]
    pub max_edit_body_bytes: usize,
    /// The most retries a request may ask for (0–5, default 5); more is a 400 naming `retry.count`.
    #[serde(default = "limits::default_max_retry_count")]
    pub max_retry_count: u8,
    /// The most upstream requests one request may send, polls and downloads included (default
    /// 50, the Workers Free plan's subrequest limit; Paid plans allow 1000).
    #[serde(default = "limits::default_max_subrequests")]
    pub max_subrequests: u32,
    /// The most attempts one request may make that reach an upstream (and so may be paid for),
    /// retries and fallbacks together (default 6).
    #[serde(default = "limits::default_max_attempts")]
    pub max_attempts: u32,
    /// The most bytes of upstream answers one request reads into the gateway: answers read
    /// whole to be translated, image downloads, error bodies and the checked start of relayed
    /// answers (default 32 MiB). The rest of a relayed answer streams past the gateway and
    /// does not count.
    #[serde(default = "limits::default_max_upstream_bytes")]
    pub max_upstream_bytes: usize,
    /// How many days actions are kept before the scheduled handler deletes them (default 30).
    #[serde(default = "limits::default_retention_days")]
    pub retention_days: u32,
    /// Where an asynchronous request's `webhook.url` may point: host names, `*.domain`
    /// wildcards (both over https) or exact origins (for a local receiver). Empty: no webhooks.
    #[serde(default)]
    pub webhook_hosts: Vec<String>,
    /// Where Ouro's `ouro-webhook-url` may point (default `api.ouro.foundation`).
    #[serde(default = "default_ouro_hosts")]
    pub ouro_hosts: Vec<String>,
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
    pub(super) default_policy_json: Option<Value>,
    #[serde(skip)]
    pub(super) default_policy: RouterFields,
    /// Where requests can be sent.
    pub providers: Vec<ProviderConfig>,
    /// The public models, each served by one provider.
    pub models: Vec<ModelConfig>,
    /// Named endpoints over the models, with their own defaults and policy.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Which browser origins may call the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) or `*` for any; empty disables CORS.
    pub allowed_origins: Vec<String>,
}

fn default_ouro_hosts() -> Vec<String> {
    vec!["api.ouro.foundation".to_owned()]
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig { allowed_origins: vec!["*".to_owned()] }
    }
}

impl Config {
    /// Loads a configuration: parsed, defaults resolved, policies read, every section checked.
    /// The error is every problem found, each naming its key.
    pub fn from_json(text: &str) -> Result<Config, String> {
        let invalid = |problems: &[Problem]| {
            let listed: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            format!("IMAGEGATE_CONFIG is not valid: {}", listed.join("; "))
        };
        let mut config: Config = serde_json::from_str(text).map_err(|e| invalid(&[Problem::at("", e.to_string())]))?;
        // Resolved once: nothing asks the adapters for defaults after loading, and host names
        // are compared in lower case.
        for provider in &mut config.providers {
            if provider.base_url.is_none() {
                provider.base_url = provider.kind.adapter().default_base_url().map(str::to_owned);
            }
            provider.download_hosts.iter_mut().for_each(|entry| entry.make_ascii_lowercase());
        }
        let mut problems = Vec::new();
        match policy::read_policy(config.default_policy_json.take(), "default_policy") {
            Ok(fields) => config.default_policy = fields,
            Err(problem) => problems.push(problem),
        }
        for (i, model) in config.models.iter_mut().enumerate() {
            match policy::read_policy(model.policy_json.take(), &format!("models[{i}].policy")) {
                Ok(fields) => model.policy = fields,
                Err(problem) => problems.push(problem),
            }
        }
        for (i, route) in config.routes.iter_mut().enumerate() {
            match policy::read_policy(route.policy_json.take(), &format!("routes[{i}].policy")) {
                Ok(fields) => route.policy = fields,
                Err(problem) => problems.push(problem),
            }
        }
        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(&problems))
        }
    }

    /// Every problem of the sections, each naming its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        limits::check(self, &mut problems);
        providers::check(&self.providers, &mut problems);
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            let scheme_and_host = origin.split_once("://").is_some_and(|(scheme, host)| !scheme.is_empty() && !host.is_empty() && !host.contains('/'));
            if origin != "*" && (!scheme_and_host || origin.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())) {
                let path = format!("cors.allowed_origins[{i}]");
                problems.push(Problem::at(path.clone(), format!("{path} '{origin}' is not '*' or an origin like 'https://app.example.com'")));
            }
        }
        let names = models::check(&self.models, &self.providers, &mut problems);
        policy::check(self, &names, &mut problems);
        routes::check(&self.routes, &names, &self.webhook_hosts, &mut problems);
        for (key, hosts) in [("webhook_hosts", &self.webhook_hosts), ("ouro_hosts", &self.ouro_hosts)] {
            for (i, entry) in hosts.iter().enumerate() {
                if let Err(e) = crate::providers::site::check_download_host(entry) {
                    problems.push(Problem::at(format!("{key}[{i}]"), format!("{key}[{i}]: {e}")));
                }
            }
        }
        problems
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
    fn every_problem_is_listed_with_its_key_path() {
        let mut config = Config::from_json(&openai_config("")).unwrap();
        config.deadline_ms = 0;
        config.providers[0].api_key_secret = Some("sk-live-abc".into());
        config.models[0].aliases.push("openai/gpt-image-1".into());
        let paths: Vec<String> = config.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["deadline_ms", "providers[0].api_key_secret", "models[0]"]);
        let both = Config::from_json(&openai_config(r#""deadline_ms":0,"max_attempts":0,"#)).unwrap_err();
        assert!(both.contains("deadline_ms must be") && both.contains("; max_attempts must be"), "{both}");
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
