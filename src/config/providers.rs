//! The `providers` section: where requests can be sent, each by a kind whose adapter speaks its
//! wire format.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{ModelConfig, Problem};
use crate::providers::{self, Adapter, Settings, Target};
use crate::secret::Secret;

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
        Target {
            adapter: self.kind.adapter(),
            provider: self.settings(),
            model_id: &model.id,
            upstream_model: model.upstream_name(),
            key,
            limit_ms,
            takes_images: model.supports.edits,
        }
    }

    /// The name shown in the catalogue.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Headers the gateway sets itself on upstream requests; configuration may not override them.
const RESERVED_HEADERS: [&str; 3] = ["authorization", "content-type", "content-length"];

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

/// A secret's name as `wrangler secret put` takes it: a capital letter, then capitals, digits
/// and `_`, at most 128 characters.
fn is_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128 && bytes.next().is_some_and(|b| b.is_ascii_uppercase()) && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Each provider's problems: ids, headers, base URL, key, download hosts, and its kind's own.
pub(super) fn check(list: &[ProviderConfig], problems: &mut Vec<Problem>) {
    let mut ids = HashSet::new();
    for (i, provider) in list.iter().enumerate() {
        let at = format!("providers[{i}]");
        let mut problem = |key: &str, text: String| problems.push(Problem::at(format!("{at}{key}"), text));
        if provider.id.is_empty() || !ids.insert(provider.id.as_str()) {
            problem(".id", format!("{at}.id '{}' is empty or used twice", provider.id));
        }
        for (name, value) in &provider.headers {
            if !is_header_name(name) || RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                problem(".headers", format!("{at}.headers: '{name}' is not a header the gateway can send (invalid, or set by the gateway itself)"));
            } else if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                problem(".headers", format!("{at}.headers.{name} contains a control character"));
            }
        }
        let adapter = provider.kind.adapter();
        if adapter.calls_upstream() {
            match provider.base_url.as_deref() {
                Some(url) if is_base_url(url) => {}
                Some(_) => problem(".base_url", format!("{at}.base_url must be an http(s) URL with a host and no credentials, query or fragment")),
                None => problem(".base_url", format!("{at}.base_url is required for kind '{}'", adapter.name())),
            }
            let keyless = adapter.key_optional() && provider.api_key_secret.is_none();
            match provider.api_key_secret.as_deref() {
                None | Some("") if !keyless => problem(".api_key_secret", format!("{at}.api_key_secret must name the secret holding the key")),
                // Never echoed: an operator may have pasted the key itself here.
                Some(name) if !is_secret_name(name) => problem(
                    ".api_key_secret",
                    format!("{at}.api_key_secret must be the name of a secret (a capital letter, then capitals, digits and '_', e.g. OPENAI_API_KEY), never the key itself; its value is not shown here"),
                ),
                _ => {}
            }
            for entry in &provider.download_hosts {
                if let Err(e) = providers::site::check_download_host(entry) {
                    problem(".download_hosts", format!("{at}.download_hosts: {e}"));
                }
            }
            if let Some(header) = provider.key_header.as_deref().filter(|h| !is_header_name(h)) {
                problem(".key_header", format!("{at}.key_header '{header}' is not a header name"));
            }
        }
        if let Err(e) = providers::check_provider(adapter, &provider.settings()) {
            problem("", format!("{at}.{e}"));
        }
    }
}
