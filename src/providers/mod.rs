//! Providers: one module per kind, each with its own wire types and pure functions that build
//! the upstream requests and read the upstream answers and errors. Nothing here touches the
//! network; the pipeline (`pipeline/attempt.rs`) sends what these functions build.
//!
//! An adapter answers three questions:
//! - [`plan`]: which calls to make for a request (one, or one per image for providers that make
//!   one image per call), and whether a 2xx answer is an OpenAI Images answer the gateway may
//!   relay unread;
//! - [`read_answer`]: what a 2xx answer holds: images ([`Generated`]), or a job still running
//!   and how to poll it ([`Progress::Pending`]);
//! - [`read_error`]: which gateway error a non-2xx answer is, with the provider's own message.

pub mod azure_openai;
pub mod bfl;
pub mod errors;
pub mod google_imagen;
pub mod mapping;
pub mod openai;
pub mod openai_compatible;
pub mod openrouter;
pub mod replicate;
pub mod site;
pub mod stability;
pub mod test_pattern;
#[cfg(test)]
mod testing;

use crate::config::{ModelConfig, ProviderConfig, ProviderKind};
use crate::error::GatewayError;
use crate::request::{unknown_parameter, ImageRequest, CORE_FIELDS, PARAMETERS};
use crate::secret::Secret;
use crate::upstream::UpstreamRequest;

/// The model and provider an attempt goes to, and the provider's key.
pub struct Target<'a> {
    pub provider: &'a ProviderConfig,
    pub model: &'a ModelConfig,
    /// The provider key; `None` only for providers configured without one.
    pub key: Option<&'a Secret>,
    /// How long the attempt may take, in milliseconds (a provider that holds the request open
    /// waiting for the result must answer sooner).
    pub limit_ms: u64,
}

impl Target<'_> {
    /// The model name the upstream expects.
    pub fn upstream_model(&self) -> &str {
        self.model.upstream_name()
    }
}

/// The calls an attempt makes.
pub struct Plan {
    /// Sent concurrently; each answer is read by [`read_answer`] unless `relay` is set.
    pub calls: Vec<UpstreamRequest>,
    /// The one call's 2xx answer is an OpenAI Images answer: it may be relayed to an OpenAI
    /// client without being parsed.
    pub relay: bool,
}

impl Plan {
    /// One call whose answer is read and translated.
    pub fn one(call: UpstreamRequest) -> Plan {
        Plan { calls: vec![call], relay: false }
    }
}

/// One generated image, as the provider gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub data: ImageData,
    /// `image/png`, `image/jpeg`, `image/webp`, … when the provider says.
    pub media_type: Option<String>,
    /// The prompt the provider actually used, when it rewrote it.
    pub revised_prompt: Option<String>,
}

/// An image's bytes, or where to fetch them.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageData {
    /// Standard base64, no `data:` prefix.
    Base64(String),
    /// An `https:` URL (or a `data:` URL) the client can fetch.
    Url(String),
}

/// What a finished call produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generated {
    pub images: Vec<Image>,
    /// The cost the provider reported (OpenRouter's `usage.cost`), in US dollars.
    pub cost_usd: Option<f64>,
}

/// Where a call stands after an answer.
#[derive(Debug)]
pub enum Progress {
    Done(Generated),
    /// An asynchronous job is still running: `poll` fetches its state (answered again through
    /// [`read_answer`]); `cancel`, when the provider has one, stops it once the gateway gives up.
    Pending {
        poll: UpstreamRequest,
        cancel: Option<UpstreamRequest>,
    },
}

/// The base URL of a kind's public API, for providers configured without `base_url`.
pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Openai => Some("https://api.openai.com/v1"),
        ProviderKind::Openrouter => Some("https://openrouter.ai/api/v1"),
        ProviderKind::Stability => Some("https://api.stability.ai"),
        ProviderKind::GoogleImagen => Some("https://generativelanguage.googleapis.com/v1beta"),
        ProviderKind::Replicate => Some("https://api.replicate.com/v1"),
        ProviderKind::Bfl => Some("https://api.bfl.ai/v1"),
        ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible | ProviderKind::TestPattern => None,
    }
}

/// The request parameters a kind honours (see [`ImageRequest::set_params`]); for
/// `openai_compatible` the provider's `allowed_parameters` are honoured as well.
pub fn honoured_params(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Openai | ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible => openai::HONOURED,
        ProviderKind::Openrouter => openrouter::HONOURED,
        ProviderKind::Stability => stability::HONOURED,
        ProviderKind::GoogleImagen => google_imagen::HONOURED,
        ProviderKind::Replicate => replicate::HONOURED,
        ProviderKind::Bfl => bfl::HONOURED,
        ProviderKind::TestPattern => test_pattern::HONOURED,
    }
}

/// The aspect ratios a kind takes, when it takes a fixed list (for the catalogue).
pub fn aspect_ratios(kind: ProviderKind) -> Option<&'static [&'static str]> {
    match kind {
        ProviderKind::Replicate => Some(&replicate::RATIOS),
        ProviderKind::Bfl => Some(&bfl::RATIOS),
        ProviderKind::Stability => Some(&stability::RATIOS),
        ProviderKind::GoogleImagen => Some(&google_imagen::RATIOS),
        _ => None,
    }
}

/// Whether a kind sends the request's extension fields ([`ImageRequest::extra`]) upstream as
/// they came, which `allowed_parameters` relies on.
fn passes_extensions(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Openai | ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible | ProviderKind::Openrouter)
}

/// Checks of a provider's configuration; the error starts with the key's name.
/// `allowed_parameters` must name fields the kind can send as they came.
pub fn check_provider(provider: &ProviderConfig) -> Result<(), String> {
    if let Some(first) = provider.allowed_parameters.first() {
        if !passes_extensions(provider.kind) {
            return Err(format!(
                "allowed_parameters: a '{}' provider builds its own request and cannot pass '{first}' through; only openai, azure_openai, openai_compatible and openrouter providers can",
                provider.kind.name()
            ));
        }
    }
    // The OpenAI-bodied kinds send every named parameter as it came; OpenRouter's request has
    // fields for its own only.
    let unsendable = |name: &str| {
        CORE_FIELDS.contains(&name) || (provider.kind == ProviderKind::Openrouter && PARAMETERS.contains(&name) && !openrouter::HONOURED.contains(&name))
    };
    if let Some(name) = provider.allowed_parameters.iter().find(|name| unsendable(name)) {
        return Err(format!(
            "allowed_parameters: '{name}' cannot be passed through as it came (the gateway sets it, or this kind's request has no place for it)"
        ));
    }
    match provider.kind {
        ProviderKind::AzureOpenai => azure_openai::check_provider(provider),
        _ => Ok(()),
    }
}

/// Checks of a model's configuration; the error starts with the key's name. `drop_params`
/// cannot drop the fields every request needs.
pub fn check_model(provider: &ProviderConfig, model: &ModelConfig) -> Result<(), String> {
    if let Some(core) = model.drop_params.iter().find(|name| CORE_FIELDS.contains(&name.as_str())) {
        return Err(format!("drop_params: '{core}' cannot be dropped (only optional parameters and extension fields can)"));
    }
    match provider.kind {
        ProviderKind::Stability => stability::check_model(model),
        ProviderKind::Replicate => replicate::check_model(model),
        ProviderKind::Bfl => bfl::check_model(model),
        _ => Ok(()),
    }
}

/// The 400 for the first parameter `request` sets that the target cannot honour and its model
/// does not drop. Callers pass the request through [`ImageRequest::without`] first.
pub fn check_params(target: &Target, request: &ImageRequest) -> Result<(), GatewayError> {
    let honoured = honoured_params(target.provider.kind);
    let allowed = |name: &str| honoured.contains(&name) || target.provider.allowed_parameters.iter().any(|a| a == name);
    match request.set_params().into_iter().find(|name| !allowed(name)) {
        None => Ok(()),
        Some(name) if request.extra.contains_key(name) => Err(unknown_parameter(name)),
        Some(name) => Err(GatewayError::invalid_param(
            name,
            format!(
                "The model '{}' (a '{}' provider) does not support '{name}'. Leave it out, or list it in the model's drop_params to have the gateway drop it.",
                target.model.id,
                target.provider.kind.name()
            ),
        )
        .with_code("unsupported_parameter")),
    }
}

/// The calls for `request` (already checked by [`check_params`]); a 400 naming the parameter
/// when a value cannot be mapped (a size with no matching aspect ratio, too many images).
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    match target.provider.kind {
        ProviderKind::Openai => openai::plan(target, request),
        ProviderKind::AzureOpenai => azure_openai::plan(target, request),
        ProviderKind::OpenaiCompatible => openai_compatible::plan(target, request),
        ProviderKind::Openrouter => openrouter::plan(target, request),
        ProviderKind::Stability => stability::plan(target, request),
        ProviderKind::GoogleImagen => google_imagen::plan(target, request),
        ProviderKind::Replicate => replicate::plan(target, request),
        ProviderKind::Bfl => bfl::plan(target, request),
        ProviderKind::TestPattern => unreachable!("the test pattern is rendered, not called"),
    }
}

/// Reads a 2xx answer (`content_type` is its `Content-Type`): images, or a job to poll. An
/// answer without images is a 502 (`empty_upstream_answer`); a refusal reported inside a 2xx
/// (a moderated job) is a 403 `content_policy_violation`.
pub fn read_answer(target: &Target, content_type: Option<&str>, body: &[u8]) -> Result<Progress, GatewayError> {
    match target.provider.kind {
        ProviderKind::Openai | ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible => openai::read_answer(target, body),
        ProviderKind::Openrouter => openrouter::read_answer(target, body),
        ProviderKind::Stability => stability::read_answer(target, content_type, body),
        ProviderKind::GoogleImagen => google_imagen::read_answer(target, body),
        ProviderKind::Replicate => replicate::read_answer(target, body),
        ProviderKind::Bfl => bfl::read_answer(target, body),
        ProviderKind::TestPattern => unreachable!("the test pattern is rendered, not called"),
    }
}

/// Maps a non-2xx answer to a call at `path` onto the gateway's error set, keeping the
/// provider's message (with the key redacted) and its `retry-after` hint.
pub fn read_error(target: &Target, path: &str, status: u16, retry_after: Option<String>, body: &[u8]) -> GatewayError {
    let said = match target.provider.kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => openai::error_detail(body),
        ProviderKind::AzureOpenai => azure_openai::error_detail(body),
        ProviderKind::Openrouter => openrouter::error_detail(body),
        ProviderKind::Stability => stability::error_detail(body),
        ProviderKind::GoogleImagen => google_imagen::error_detail(body),
        ProviderKind::Replicate => replicate::error_detail(body),
        ProviderKind::Bfl => bfl::error_detail(body),
        ProviderKind::TestPattern => errors::Detail::default(),
    };
    errors::upstream_error(&target.provider.id, path, status, retry_after, said, target.key)
}
