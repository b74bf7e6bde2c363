//! Providers: one module per kind, each an [`Adapter`] with its own wire types and pure
//! functions that build the upstream requests and read the upstream answers and errors. Nothing
//! here touches the network (the pipeline sends what these build) or the configuration's types
//! (the pipeline hands an adapter a [`Target`]).
//!
//! An adapter states its kind's facts (name, default base URL, whether it starts jobs, the
//! parameters it honours) and answers three questions:
//! - [`Adapter::plan`]: which calls to make for a request (one, or one per image for providers
//!   that make one image per call), and whether a 2xx answer is an OpenAI Images answer the
//!   gateway may relay unread; or the images themselves, for a kind that makes them in the worker;
//! - [`Adapter::read_answer`]: what a 2xx answer holds: images ([`Generated`]), or a job still
//!   running and how to poll it ([`Progress::Pending`]);
//! - [`Adapter::error_detail`]: what a non-2xx answer says; [`read_error`] maps it onto the
//!   gateway's errors, for every kind alike.
//!
//! Adding a kind is one new module and one line in [`ADAPTERS`].

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
pub mod wire;

use std::collections::BTreeMap;

use crate::error::GatewayError;
use crate::inputs::Operation;
use crate::request::{unknown_parameter, ImageRequest, CORE_FIELDS, PARAMETERS};
use crate::secret::Secret;
use crate::upstream::UpstreamRequest;

pub use errors::{AnswerError, Detail};

/// Every provider kind, found by the name configurations use.
pub const ADAPTERS: [&dyn Adapter; 9] = [
    &test_pattern::TestPattern,
    &openai::OpenAi,
    &azure_openai::AzureOpenAi,
    &openai_compatible::OpenAiCompatible,
    &openrouter::OpenRouter,
    &stability::Stability,
    &google_imagen::GoogleImagen,
    &replicate::Replicate,
    &bfl::Bfl,
];

/// A provider kind: its facts, and the pure functions that speak its wire format.
pub trait Adapter: Sync {
    /// The name configurations use (`azure_openai`).
    fn name(&self) -> &'static str;

    /// The base URL of the kind's public API, for providers configured without `base_url`.
    fn default_base_url(&self) -> Option<&'static str> {
        None
    }

    /// Whether it calls an upstream at all (with a base URL and a key); the test pattern does not.
    fn calls_upstream(&self) -> bool {
        true
    }

    /// Whether a provider of this kind may be configured without a key (a local server).
    fn key_optional(&self) -> bool {
        false
    }

    /// Whether an accepted call starts an asynchronous job (paid for from then on) that is polled.
    fn starts_jobs(&self) -> bool {
        false
    }

    /// The request parameters it honours (see [`ImageRequest::set_params`]), besides `model`,
    /// `n` and `response_format`; a provider's `allowed_parameters` are honoured as well.
    fn honoured(&self) -> &'static [&'static str];

    /// Whether it takes images in for `operation`: every kind generates; edits and variations
    /// only where the kind says so.
    fn takes(&self, operation: Operation) -> bool {
        operation == Operation::Generate
    }

    /// The parameters it honours for `operation` (by default [`Adapter::honoured`]).
    fn honoured_in(&self, _operation: Operation) -> &'static [&'static str] {
        self.honoured()
    }

    /// Whether it sends the request's extension fields ([`ImageRequest::extra`]) upstream as they
    /// came, which `allowed_parameters` relies on.
    fn passes_extensions(&self) -> bool {
        false
    }

    /// Whether its request is the OpenAI body, which carries every named parameter as it came
    /// (so `allowed_parameters` may list any of them).
    fn sends_openai_body(&self) -> bool {
        false
    }

    /// Whether its upstream streams an answer itself (OpenAI's image stream events) for the
    /// model it calls `upstream_model`, whose `supports.stream` is `declared`; otherwise the
    /// gateway writes a streamed answer's events from the whole answer.
    fn streams(&self, _upstream_model: &str, _declared: Option<bool>) -> bool {
        false
    }

    /// The aspect ratios it takes, when it takes a fixed list (for the catalogue).
    fn aspect_ratios(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The output formats it can produce (for the catalogue).
    fn output_formats(&self) -> &'static [&'static str] {
        &["png", "jpeg", "webp"]
    }

    /// Kind-specific checks of a provider's configuration; the error starts with the key's name.
    fn check_provider(&self, _provider: &Settings) -> Result<(), String> {
        Ok(())
    }

    /// Kind-specific checks of a model's `upstream_model` (or default name); the error starts
    /// with the key's name.
    fn check_model(&self, _upstream_model: &str) -> Result<(), String> {
        Ok(())
    }

    /// The calls for `request` (already checked by [`check_params`]), or the images made without
    /// one; a 400 naming the parameter when a value cannot be mapped (a size with no matching
    /// aspect ratio, too many images).
    fn plan(&self, target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError>;

    /// Reads a 2xx answer (`content_type` is its `Content-Type`): images, or a job to poll; or
    /// why it holds neither (an [`AnswerError`]: unreadable, empty, refused, failed).
    fn read_answer(&self, target: &Target, content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError>;

    /// What a non-2xx answer's body says.
    fn error_detail(&self, _body: &[u8]) -> Detail {
        Detail::default()
    }
}

/// The adapter for the kind named `name` in a configuration.
pub fn adapter(name: &str) -> Option<&'static dyn Adapter> {
    ADAPTERS.iter().copied().find(|adapter| adapter.name() == name)
}

/// The names of every kind, for messages.
pub fn kind_names() -> String {
    ADAPTERS.iter().map(|adapter| adapter.name()).collect::<Vec<_>>().join(", ")
}

/// What an adapter knows of a configured provider.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub id: &'a str,
    /// The base URL without a trailing `/`: the configured one, or the kind's default (empty for
    /// a kind with neither).
    pub base_url: &'a str,
    /// Extra headers sent with every upstream request.
    pub headers: &'a BTreeMap<String, String>,
    /// `azure_openai`: the `api-version` query parameter.
    pub api_version: Option<&'a str>,
    /// `openai_compatible`: the header carrying the key.
    pub key_header: Option<&'a str>,
    /// Request fields passed through as sent.
    pub allowed_parameters: &'a [String],
}

impl Settings<'_> {
    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        self.base_url
    }
}

/// The provider, model and key an attempt goes to.
pub struct Target<'a> {
    pub adapter: &'a dyn Adapter,
    pub provider: Settings<'a>,
    /// The public model id (for messages).
    pub model_id: &'a str,
    /// The model name the upstream expects.
    pub upstream_model: &'a str,
    /// The provider key; `None` only for providers configured without one.
    pub key: Option<&'a Secret>,
    /// How long the attempt may take, in milliseconds (a provider that holds the request open
    /// waiting for the result must answer sooner).
    pub limit_ms: u64,
    /// The model's `supports.edits`: whether it takes images in, over its kind's own rule.
    pub takes_images: Option<bool>,
}

impl Target<'_> {
    /// The model name the upstream expects.
    pub fn upstream_model(&self) -> &str {
        self.upstream_model
    }
}

/// The calls an attempt makes.
pub struct Plan {
    /// Sent concurrently; each answer is read by [`Adapter::read_answer`] unless `relay` is set.
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

/// What an attempt does for a request: call upstream, or deliver images made in the worker.
pub enum Planned {
    Calls(Plan),
    Made(Generated),
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
    /// The tokens the provider reported billing (gpt-image's `usage`), priced by the model's
    /// token lines.
    pub tokens: Option<Tokens>,
    /// Rough images of lower detail, in order, made before the final ones for a streamed answer
    /// that asked for `partial_images` (the test pattern's; a provider's own partial images
    /// are relayed, not kept).
    pub partials: Vec<Image>,
}

/// The tokens an answer billed, as the upstream reported them (gpt-image's `usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens that were text.
    pub input_text: u64,
    /// Prompt tokens that were images (edits).
    pub input_image: u64,
    /// Tokens of the generated images.
    pub output: u64,
}

impl Tokens {
    /// Both calls' tokens together.
    pub fn plus(self, other: Tokens) -> Tokens {
        Tokens { input_text: self.input_text + other.input_text, input_image: self.input_image + other.input_image, output: self.output + other.output }
    }
}

/// Where a call stands after an answer.
#[derive(Debug)]
pub enum Progress {
    Done(Generated),
    /// An asynchronous job is still running: `poll` fetches its state (answered again through
    /// [`Adapter::read_answer`]); `cancel`, when the provider has one, stops it once the gateway gives up.
    Pending {
        poll: UpstreamRequest,
        cancel: Option<UpstreamRequest>,
    },
}

/// Checks of a provider's configuration, for every kind and then the kind's own; the error
/// starts with the key's name. `allowed_parameters` must name fields the kind can send as they came.
pub fn check_provider(adapter: &dyn Adapter, provider: &Settings) -> Result<(), String> {
    if let Some(first) = provider.allowed_parameters.first() {
        if !adapter.passes_extensions() {
            return Err(format!(
                "allowed_parameters: a '{}' provider builds its own request and cannot pass '{first}' through; only openai, azure_openai, openai_compatible and openrouter providers can",
                adapter.name()
            ));
        }
    }
    // The OpenAI body carries every named parameter as it came; a kind's own request has fields
    // for the parameters it honours only.
    let unsendable =
        |name: &str| CORE_FIELDS.contains(&name) || (!adapter.sends_openai_body() && PARAMETERS.contains(&name) && !adapter.honoured().contains(&name));
    if let Some(name) = provider.allowed_parameters.iter().find(|name| unsendable(name)) {
        return Err(format!(
            "allowed_parameters: '{name}' cannot be passed through as it came (the gateway sets it, or this kind's request has no place for it)"
        ));
    }
    adapter.check_provider(provider)
}

/// The 400 for the first parameter `request` sets that the target cannot honour and its model
/// does not drop. Callers pass the request through [`ImageRequest::without`] first.
pub fn check_params(target: &Target, request: &ImageRequest) -> Result<(), GatewayError> {
    let operation = request.inputs.as_ref().map_or(Operation::Generate, |inputs| inputs.operation);
    if !target.adapter.takes(operation) {
        let what = if operation == Operation::Edit { "edit images" } else { "make variations of an image" };
        return Err(GatewayError::invalid_param(
            "image",
            format!("The model '{}' (a '{}' provider) cannot {what}. GET /v1/models says which models can.", target.model_id, target.adapter.name()),
        )
        .with_code("unsupported_parameter"));
    }
    let honoured = target.adapter.honoured_in(operation);
    let allowed = |name: &str| honoured.contains(&name) || target.provider.allowed_parameters.iter().any(|a| a == name);
    match request.set_params().into_iter().find(|name| !allowed(name)) {
        None => Ok(()),
        Some(name) if request.extra.contains_key(name) => Err(unknown_parameter(name)),
        Some(name) => Err(GatewayError::invalid_param(
            name,
            format!(
                "The model '{}' (a '{}' provider) does not support '{name}'. Leave it out, or list it in the model's drop_params to have the gateway drop it.",
                target.model_id,
                target.adapter.name()
            ),
        )
        .with_code("unsupported_parameter")),
    }
}

/// Maps a non-2xx answer to a call at `path` onto the gateway's error set, keeping the
/// provider's message (with the key redacted) and its `retry-after` hint.
pub fn read_error(target: &Target, path: &str, status: u16, retry_after: Option<String>, body: &[u8]) -> GatewayError {
    let said = target.adapter.error_detail(body);
    errors::upstream_error(target.provider.id, path, status, retry_after, said, target.key)
}
