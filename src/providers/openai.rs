//! OpenAI: `POST {base_url}/images/generations` with a bearer key. The request is the client's
//! own OpenAI Images request with `model` set to the upstream's name, and the answer is already
//! in the OpenAI shape, so an OpenAI client's answer is relayed unread. [`wire_body`],
//! [`read_answer`] and [`error_detail`] are shared with the other OpenAI-shaped kinds.

use serde::Deserialize;

use super::errors::{self, Detail};
use std::rc::Rc;

use serde_json::Value;

use super::wire::{self, bearer, post};
use super::{Adapter, AnswerError, Generated, Image, ImageData, Plan, Planned, Progress, Target};
use crate::error::GatewayError;
use crate::inputs::{Inputs, Operation};
use crate::multipart::Form;
use crate::request::ImageRequest;

/// The request parameters the OpenAI Images API takes (besides `model`, `n`, `response_format`).
pub const HONOURED: &[&str] = &["size", "quality", "style", "background", "output_format", "output_compression", "moderation", "user"];
/// Those its edits take (`/images/edits`).
pub const HONOURED_IN_EDITS: &[&str] = &["size", "quality", "background", "output_format", "output_compression", "user"];
/// Those its variations take (`/images/variations`).
pub const HONOURED_IN_VARIATIONS: &[&str] = &["size", "user"];

/// The parameters an OpenAI-shaped kind honours for `operation`.
pub fn honoured_in(operation: Operation) -> &'static [&'static str] {
    match operation {
        Operation::Generate => HONOURED,
        Operation::Edit => HONOURED_IN_EDITS,
        Operation::Variation => HONOURED_IN_VARIATIONS,
    }
}

/// The `openai` kind.
pub struct OpenAi;

impl Adapter for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn default_base_url(&self) -> Option<&'static str> {
        Some("https://api.openai.com/v1")
    }
    fn honoured(&self) -> &'static [&'static str] {
        HONOURED
    }
    fn takes(&self, _operation: Operation) -> bool {
        true
    }
    fn honoured_in(&self, operation: Operation) -> &'static [&'static str] {
        honoured_in(operation)
    }
    fn passes_extensions(&self) -> bool {
        true
    }
    fn sends_openai_body(&self) -> bool {
        true
    }
    /// OpenAI streams its gpt-image models (DALL·E refuses `stream`); `supports.stream` decides for any other.
    fn streams(&self, upstream_model: &str, declared: Option<bool>) -> bool {
        declared.unwrap_or_else(|| upstream_model.starts_with("gpt-image"))
    }
    fn plan(&self, target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError> {
        plan(target, request).map(Planned::Calls)
    }
    fn read_answer(&self, target: &Target, _content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError> {
        read_answer(target, body)
    }
    fn error_detail(&self, body: &[u8]) -> Detail {
        error_detail(body)
    }
}

/// One call to `{base_url}/images/generations` (or `edits`, `variations`), relayed.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    let (content_type, body) = body_for(target, request, Some(target.upstream_model()))?;
    let mut headers = wire::headers_with(target, content_type);
    if let Some(key) = target.key {
        headers.push(("authorization".to_owned(), bearer(key)));
    }
    let url = format!("{}/images/{}", target.provider.base(), operation(request).path());
    Ok(Plan { calls: vec![post(url, headers, body)], relay: true })
}

/// What `request` does: generate, edit or make variations.
pub fn operation(request: &ImageRequest) -> Operation {
    request.inputs.as_ref().map_or(Operation::Generate, |inputs| inputs.operation)
}

/// The body of `request` for an OpenAI-shaped upstream, addressed to `model`, and its content
/// type: the JSON body of a generation, or the form of an edit or a variation (written once per
/// upstream and model, the same bytes for every attempt).
pub fn body_for(target: &Target, request: &ImageRequest, model: Option<&str>) -> Result<(String, Rc<[u8]>), GatewayError> {
    let Some(inputs) = &request.inputs else { return Ok(("application/json".to_owned(), wire_body(request, model).into())) };
    check_mask(inputs)?;
    // Per configured model: two models on one upstream may drop different parameters.
    let key = format!("{} {} {} {:?}", target.provider.id, target.model_id, model.unwrap_or(""), request.upstream_stream);
    Ok(inputs.form_for(&key, || form(request, inputs, model)))
}

/// OpenAI's edits want the mask the size of the first image; a 400 naming `mask` when it is not.
fn check_mask(inputs: &Inputs) -> Result<(), GatewayError> {
    match (inputs.mask.as_ref().and_then(|mask| mask.size), inputs.images[0].size) {
        (Some(mask), Some(image)) if mask != image => Err(GatewayError::invalid_param(
            "mask",
            format!("'mask' is {}x{}, but the first image is {}x{}: OpenAI-style edits need them the same size.", mask.0, mask.1, image.0, image.1),
        )),
        _ => Ok(()),
    }
}

/// An edit's or a variation's OpenAI form: its fields as text, then its images and mask.
fn form(request: &ImageRequest, inputs: &Inputs, model: Option<&str>) -> (String, Rc<[u8]>) {
    let text = |value: &Value| value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(model) = model {
        fields.push(("model".to_owned(), model.to_owned()));
    }
    if inputs.operation == Operation::Edit {
        fields.push(("prompt".to_owned(), request.prompt.clone()));
    }
    if let Ok(Value::Object(named)) = serde_json::to_value(request) {
        // The request's own fields as the JSON body writes them (`prompt` is placed above).
        fields.extend(named.iter().filter(|(name, _)| name.as_str() != "prompt").map(|(name, value)| (name.clone(), text(value))));
    }
    if let Some(fidelity) = &inputs.input_fidelity {
        fields.push(("input_fidelity".to_owned(), fidelity.clone()));
    }
    let many = inputs.images.len() > 1;
    let form = fields.iter().fold(Form::new(), |form, (name, value)| form.text(name, value));
    let form = inputs
        .images
        .iter()
        .fold(form, |form, image| form.file(if many { "image[]" } else { "image" }, image.format.filename(), image.format.media_type(), image.bytes()));
    let form = match &inputs.mask {
        Some(mask) => form.file("mask", "mask.png", mask.format.media_type(), mask.bytes()),
        None => form,
    };
    form.finish()
}

/// The OpenAI wire body of `request`, addressed to `model` (or with no `model` field).
pub fn wire_body(request: &ImageRequest, model: Option<&str>) -> Vec<u8> {
    match model {
        Some(model) => serde_json::to_vec(&request.for_model(model)),
        None => serde_json::to_vec(request),
    }
    .expect("the request is always serialisable")
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Vec<AnswerImage>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// gpt-image's `usage`: the tokens billed (in an answer, and in a stream's `completed` event).
#[derive(Deserialize)]
pub struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    text_tokens: Option<u64>,
    #[serde(default)]
    image_tokens: u64,
}

impl Usage {
    /// The tokens by kind (input without details counts as text); `None` when the usage says
    /// nothing of input or output tokens (the answer is then priced as if it had none).
    pub fn tokens(&self) -> Option<super::Tokens> {
        let output = self.output_tokens?;
        let input = self.input_tokens.unwrap_or(0);
        let (text, image) = match &self.input_tokens_details {
            Some(details) => (details.text_tokens.unwrap_or(input.saturating_sub(details.image_tokens)), details.image_tokens),
            None => (input, 0),
        };
        Some(super::Tokens { input_text: text, input_image: image, output })
    }
}

#[derive(Deserialize)]
struct AnswerImage {
    #[serde(default)]
    b64_json: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    revised_prompt: Option<String>,
}

/// Reads an OpenAI Images answer (for clients that need it translated rather than relayed).
pub fn read_answer(target: &Target, body: &[u8]) -> Result<Progress, AnswerError> {
    let id = &target.provider.id;
    let answer: Answer = wire::parse(target, body, "an OpenAI Images answer")?;
    let images: Vec<Image> = answer
        .data
        .into_iter()
        .filter_map(|image| {
            let data = match (image.b64_json, image.url) {
                (Some(b64), _) => ImageData::Base64(b64),
                (None, Some(url)) => ImageData::Url(url),
                (None, None) => return None,
            };
            Some(Image { data, media_type: None, revised_prompt: image.revised_prompt })
        })
        .collect();
    if images.is_empty() {
        return Err(errors::no_images(id));
    }
    let tokens = answer.usage.as_ref().and_then(Usage::tokens);
    Ok(Progress::Done(Generated { images, tokens, ..Generated::default() }))
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// What an OpenAI error envelope `{"error":{"message","type","code"}}` says; the code, else the
/// type, is the [`Detail::code`].
pub fn error_detail(body: &[u8]) -> Detail {
    let Ok(ErrorEnvelope { error }) = serde_json::from_slice::<ErrorEnvelope>(body) else { return Detail::default() };
    let code = error.code.as_ref().and_then(|c| c.as_str()).map(str::to_owned);
    let quota = |c: &str| c == "insufficient_quota";
    let code = match (code, error.kind) {
        (Some(code), _) => Some(code),
        (None, Some(kind)) if quota(&kind) => Some(kind),
        (None, kind) => kind,
    };
    Detail { message: error.message, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::request::parse_generation;
    use crate::secret::Secret;
    use crate::upstream::Method;
    use serde_json::{json, Value};

    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[{"id":"openai","kind":"openai","base_url":"https://api.openai.com/v1/","api_key_secret":"K",
                 "headers":{"OpenAI-Organization":"org-1"}}],
                "models":[{"id":"openai/dall-e-3","provider":"openai"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn request_goes_to_images_generations_with_the_upstream_model_and_bearer_key() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("openai/dall-e-3")).unwrap();
        let key = Secret::new("sk-provider");
        let target = provider.target(model, Some(&key), 150_000);
        let request = parse_generation(Some("application/json"), br#"{"prompt":"p","model":"openai/dall-e-3","size":"1024x1024"}"#, 1 << 20).unwrap();
        let plan = plan(&target, &request).unwrap();
        assert!(plan.relay);
        let upstream = &plan.calls[0];
        assert_eq!((upstream.method, upstream.url.as_str()), (Method::Post, "https://api.openai.com/v1/images/generations"));
        let body: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert_eq!(body, json!({"prompt":"p","model":"dall-e-3","n":1,"size":"1024x1024"}));
        let header = |name: &str| upstream.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.expose().to_owned());
        assert_eq!(header("authorization").as_deref(), Some("Bearer sk-provider"));
        assert_eq!(header("OpenAI-Organization").as_deref(), Some("org-1"));
        assert!(!format!("{upstream:?}").contains("sk-provider"), "Debug must not show the key");
    }

    #[test]
    fn answers_read_into_images_and_errors_into_details() {
        let config = config();
        let (model, provider) = config.resolve_model(Some("openai/dall-e-3")).unwrap();
        let target = provider.target(model, None, 150_000);
        let body = json!({"created": 1, "data": [{"b64_json": "aGk=", "revised_prompt": "r"}, {"url": "https://x/y.png"}]});
        let Progress::Done(done) = read_answer(&target, body.to_string().as_bytes()).unwrap() else { panic!("not done") };
        assert_eq!(done.images[0].data, ImageData::Base64("aGk=".into()));
        assert_eq!(done.images[0].revised_prompt.as_deref(), Some("r"));
        assert_eq!(done.images[1].data, ImageData::Url("https://x/y.png".into()));
        assert_eq!(read_answer(&target, br#"{"data":[]}"#).unwrap_err().to_error().code, Some("empty_upstream_answer"));
        assert_eq!(read_answer(&target, b"<html>").unwrap_err().to_error().status(), 502);
        let detail = error_detail(br#"{"error":{"message":"quota","type":"insufficient_quota","code":null}}"#);
        assert_eq!((detail.message.as_deref(), detail.code.as_deref()), (Some("quota"), Some("insufficient_quota")));
        assert_eq!(error_detail(b"<html>"), Detail::default());
    }
}
