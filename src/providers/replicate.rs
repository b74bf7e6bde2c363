//! Replicate: one prediction per image. `upstream_model` names an official model `owner/name`
//! (`POST {base_url}/models/{owner}/{name}/predictions`) or a pinned version `owner/name:version`
//! (`POST {base_url}/predictions` with `"version"`), with `Authorization: Bearer <key>` and
//! `Prefer: wait=N`: sync mode, where Replicate holds the request up to N s and usually answers
//! with the finished prediction. N is 60 (the documented maximum), or 5 s less than the attempt's
//! time limit when that is shorter, so that a prediction still running comes back with its id. A prediction still running is polled
//! at its `urls.get` and cancelled at its `urls.cancel` (both kept only on the provider's site,
//! since they carry the key; else `{base_url}/predictions/{id}[/cancel]`). A `Prefer` header in
//! the provider's configured `headers` replaces ours (e.g. `wait=10`; it should stay shorter
//! than the attempt's time limit).
//!
//! References: the HTTP API (https://replicate.com/docs/reference/http: `models.predictions.create`,
//! `predictions.create`, `.get`, `.cancel`, the `Prefer` header pattern `^wait(=n)?$` with n from
//! 1 to 60, the prediction object and its statuses); sync mode and data-URI outputs
//! (https://replicate.com/docs/topics/predictions/create-a-prediction); the input schemas of
//! black-forest-labs/flux-schnell, flux-dev, flux-1.1-pro, flux-1.1-pro-ultra
//! (https://replicate.com/black-forest-labs/flux-dev/api and siblings); errors as RFC 7807
//! problem details `{type, title, status, detail}` (replicate-python's `ReplicateError`).
//!
//! The input, after the FLUX/SDXL conventions Replicate's image models share:
//!
//! | request | `input` |
//! |---|---|
//! | `prompt` | `prompt` |
//! | `aspect_ratio`, or `size` → the nearest of [`RATIOS`] (within 5%) | `aspect_ratio` (each model takes a subset: flux-1.1-pro has no 21:9/9:21, imagen-4 only 1:1, 16:9, 9:16, 4:3, 3:4; Replicate's 422 for others is a 400) |
//! | `output_format` png / jpeg / webp | `output_format` png / jpg / webp |
//! | `seed` | `seed`, plus the image's index so the `n` images differ |
//! | `negative_prompt` | `negative_prompt` (SDXL-style models; Replicate ignores inputs a model does not declare, so FLUX models drop it silently; newer Cog runtimes may answer 422, a 400) |
//! | `n` | `n` predictions: flux-1.1-pro, flux-1.1-pro-ultra and imagen-4 take no `num_outputs`, and an ignored input would silently give fewer images |

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::{self, Detail};
use super::site::same_site;
use super::wire::{self, bearer, configured_headers, image_at, is_token, json_headers, post, text_of};
use super::{mapping, Adapter, AnswerError, Generated, Image, Plan, Planned, Progress, Target};
use crate::error::{ErrorKind, GatewayError};
use crate::inputs::Operation;
use crate::request::{ImageRequest, OutputFormat};
use crate::upstream::{HeaderValue, Method, UpstreamRequest};

/// The request parameters this kind honours.
pub const HONOURED: &[&str] = &["size", "aspect_ratio", "output_format", "seed", "negative_prompt"];

/// The aspect ratios of Replicate's FLUX models (flux-schnell, flux-dev, flux-1.1-pro-ultra).
pub const RATIOS: [&str; 11] = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"];

/// Sync mode's longest wait, in seconds (the `Prefer` header's documented maximum).
const PREFER_WAIT_S: u64 = 60;
/// How much sooner than the attempt's time limit sync mode must give up waiting, so that the
/// answer (and with it the prediction's id, needed to poll or cancel it) still arrives.
const PREFER_MARGIN_S: u64 = 5;
/// The provider's own domain: poll and cancel URLs on it may receive the key.
const SITE: &str = "replicate.com";

/// `owner/name` and the version, when `model` is `owner/name` or `owner/name:version`.
fn split_model(model: &str) -> Option<(&str, Option<&str>)> {
    let (name, version) = match model.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (model, None),
    };
    let part = |s: &str| s.bytes().any(|b| b.is_ascii_alphanumeric()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let (owner, short) = name.split_once('/')?;
    let version_ok = version.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()));
    (part(owner) && part(short) && version_ok).then_some((name, version))
}

/// The `replicate` kind.
pub struct Replicate;

impl Adapter for Replicate {
    fn name(&self) -> &'static str {
        "replicate"
    }
    fn default_base_url(&self) -> Option<&'static str> {
        Some("https://api.replicate.com/v1")
    }
    fn starts_jobs(&self) -> bool {
        true
    }
    fn honoured(&self) -> &'static [&'static str] {
        HONOURED
    }
    fn aspect_ratios(&self) -> Option<&'static [&'static str]> {
        Some(&RATIOS)
    }
    fn check_model(&self, upstream_model: &str) -> Result<(), String> {
        check_model(upstream_model)
    }
    fn takes(&self, operation: Operation) -> bool {
        // The model's image input; Replicate has no variations endpoint.
        operation != Operation::Variation
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

/// Refuses an `upstream_model` (or default name) that is not `owner/name[:version]`.
pub fn check_model(upstream_model: &str) -> Result<(), String> {
    let name = upstream_model;
    match split_model(name) {
        Some(_) => Ok(()),
        None => {
            Err(format!("upstream_model must be a Replicate model 'owner/name' (e.g. 'black-forest-labs/flux-schnell') or 'owner/name:version', not '{name}'"))
        }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    input: Input<'a>,
}

#[derive(Serialize)]
struct Input<'a> {
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<&'a str>,
    /// An edit's image as a data URL: `input_image` for FLUX.1 Kontext models, `image` for the
    /// others (the field most img2img and inpainting models take), with `mask` beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mask: Option<&'a str>,
}

/// An edit's image and mask as data URLs (none for a generation): Replicate models take one
/// image; FLUX.1 Kontext models edit, any other only when its `supports.edits` says so (Replicate
/// would ignore an input the model does not have, and bill a generation).
fn input_images(target: &Target, request: &ImageRequest) -> Result<(Option<String>, Option<String>), GatewayError> {
    let Some(inputs) = &request.inputs else { return Ok((None, None)) };
    if !target.takes_images.unwrap_or_else(|| target.upstream_model().contains("kontext")) {
        return Err(GatewayError::invalid_param(
            "image",
            format!("The model '{}' is not known to take an image; set its supports.edits to true if it does.", target.model_id),
        )
        .with_code("unsupported_parameter"));
    }
    if inputs.images.len() > 1 {
        return Err(GatewayError::invalid_param("image", format!("Replicate models take one image, not {}.", inputs.images.len())));
    }
    Ok((Some(inputs.images[0].data_url()), inputs.mask.as_ref().map(|mask| mask.data_url())))
}

/// `n` prediction requests, one image each (see the module's table); a 400 naming `size` or
/// `aspect_ratio` when no ratio of [`RATIOS`] fits.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    let model = target.upstream_model();
    let Some((name, version)) = split_model(model) else {
        return Err(GatewayError::new(
            ErrorKind::Internal,
            format!("The Replicate model '{model}' is not 'owner/name'; the configuration check should have refused it."),
        ));
    };
    let aspect_ratio = mapping::aspect_ratio(request, &RATIOS)?;
    // Encoded once: every one of the `n` predictions sends the same image.
    let (image, mask) = input_images(target, request)?;
    let kontext = name.contains("kontext");
    let output_format = request.output_format.map(|format| match format {
        OutputFormat::Png => "png",
        OutputFormat::Jpeg => "jpg",
        OutputFormat::Webp => "webp",
    });
    let base = target.provider.base();
    let url = match version {
        None => format!("{base}/models/{name}/predictions"),
        Some(_) => format!("{base}/predictions"),
    };
    let mut headers = json_headers(target);
    if let Some(key) = target.key {
        headers.push(("authorization".to_owned(), bearer(key)));
    }
    if !target.provider.headers.keys().any(|name| name.eq_ignore_ascii_case("prefer")) {
        if let Some(wait) = prefer_wait(target.limit_ms) {
            headers.push(("prefer".to_owned(), HeaderValue::Plain(format!("wait={wait}"))));
        }
    }
    let calls = (0..request.n)
        .map(|i| {
            let input = Input {
                prompt: &request.prompt,
                aspect_ratio,
                output_format,
                seed: request.seed.map(|seed| seed.wrapping_add(u32::from(i))),
                negative_prompt: request.negative_prompt.as_deref(),
                input_image: image.as_deref().filter(|_| kontext),
                image: image.as_deref().filter(|_| !kontext),
                mask: mask.as_deref(),
            };
            let body = serde_json::to_vec(&WireRequest { version: version.map(|_| model), input }).expect("the input is always serialisable");
            post(url.clone(), headers.clone(), body)
        })
        .collect();
    Ok(Plan { calls, relay: false })
}

#[derive(Deserialize)]
struct Prediction {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    urls: Urls,
}

#[derive(Deserialize, Default)]
struct Urls {
    #[serde(default)]
    get: Option<String>,
    #[serde(default)]
    cancel: Option<String>,
}

/// Reads a prediction (the create answer or a poll): `succeeded` → its output URLs (a string or a
/// list; `data:` URIs become base64); `failed` → a 502 `upstream_generation_failed` with
/// Replicate's error, or a 403 `content_policy_violation` when the error says the safety checker
/// refused; `canceled` / `aborted` → a 502; any other status (`starting`, `processing`) → poll
/// again, with a cancel.
pub fn read_answer(target: &Target, body: &[u8]) -> Result<Progress, AnswerError> {
    let id = &target.provider.id;
    let prediction: Prediction = wire::parse(target, body, "a Replicate prediction")?;
    match prediction.status.as_deref() {
        None => Err(errors::unreadable(id, "a Replicate prediction")),
        Some("succeeded") => {
            let images = output_images(prediction.output);
            if images.is_empty() {
                return Err(errors::no_images(id));
            }
            Ok(Progress::Done(Generated { images, ..Generated::default() }))
        }
        Some("failed") => {
            let why = prediction.error.as_ref().map(text_of).filter(|w| !w.trim().is_empty());
            match why {
                Some(why) if is_refusal(&why) => Err(errors::refused(id, &why, target.key)),
                why => Err(errors::job_failed(id, why.as_deref(), target.key)),
            }
        }
        Some("canceled") => Err(errors::job_failed(id, Some("the prediction was canceled (by its creator or at its deadline)"), target.key)),
        Some("aborted") => Err(errors::job_failed(id, Some("the prediction was aborted before it started"), target.key)),
        Some(_) => pending(target, prediction),
    }
}

/// Sync mode's wait, in seconds, for an attempt that may take `limit_ms`: up to 60 s, ending
/// [`PREFER_MARGIN_S`] before the attempt does; none (a plain asynchronous create) when the
/// attempt is too short for that.
fn prefer_wait(limit_ms: u64) -> Option<u64> {
    let wait = (limit_ms / 1000).saturating_sub(PREFER_MARGIN_S).min(PREFER_WAIT_S);
    (wait > 0).then_some(wait)
}

/// The poll and cancel for a running prediction.
fn pending(target: &Target, prediction: Prediction) -> Result<Progress, AnswerError> {
    let base = target.provider.base();
    let fallback = |suffix: &str| match prediction.id.as_deref().filter(|id| is_token(id)) {
        Some(id) => Ok(format!("{base}/predictions/{id}{suffix}")),
        None => Err(errors::unreadable(target.provider.id, "a Replicate prediction with an id or URLs")),
    };
    let on_site = |url: Option<String>| url.filter(|url| same_site(base, url, SITE));
    let get = match on_site(prediction.urls.get) {
        Some(url) => url,
        None => fallback("")?,
    };
    let cancel = match on_site(prediction.urls.cancel) {
        Some(url) => url,
        None => fallback("/cancel")?,
    };
    Ok(Progress::Pending { poll: keyed(target, Method::Get, get), cancel: Some(keyed(target, Method::Post, cancel)) })
}

/// A bodiless request to `url` with the provider's headers and the key.
fn keyed(target: &Target, method: Method, url: String) -> UpstreamRequest {
    let mut headers = configured_headers(target);
    if let Some(key) = target.key {
        headers.push(("authorization".to_owned(), bearer(key)));
    }
    UpstreamRequest { method, url, headers, body: std::rc::Rc::from([]) }
}

/// The images of a prediction's `output`: one URL, or a list of them.
fn output_images(output: Option<Value>) -> Vec<Image> {
    let urls = match output {
        Some(Value::String(url)) => vec![url],
        Some(Value::Array(items)) => items.into_iter().filter_map(|item| if let Value::String(url) = item { Some(url) } else { None }).collect(),
        _ => Vec::new(),
    };
    urls.into_iter().filter(|url| !url.is_empty()).map(image_at).collect()
}

/// Whether a failure message says the safety checker refused the prompt or the image.
fn is_refusal(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    why.contains("nsfw") || why.contains("flagged as sensitive")
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<Value>,
    #[serde(default)]
    status: Option<u16>,
}

/// What a Replicate error says: problem details `{"title","detail","status"}` (or the older
/// `{"detail": …}`) as `title: detail`; a 402 is `insufficient_quota`, a safety refusal
/// `content_policy_violation`.
pub fn error_detail(body: &[u8]) -> Detail {
    let Ok(problem) = serde_json::from_slice::<Problem>(body) else { return Detail::default() };
    let detail = problem.detail.as_ref().filter(|d| !d.is_null()).map(text_of);
    let message = match (problem.title, detail) {
        (Some(title), Some(detail)) if !detail.starts_with(&title) => Some(format!("{title}: {detail}")),
        (title, detail) => detail.or(title),
    };
    let code = if problem.status == Some(402) {
        Some("insufficient_quota".to_owned())
    } else if message.as_deref().is_some_and(is_refusal) {
        Some("content_policy_violation".to_owned())
    } else {
        None
    };
    Detail { message, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::testing::{as_golden, request, with_target_in};
    use crate::providers::wire::media_type_of;
    use crate::providers::{check_params, read_error, ImageData};

    use serde_json::json;

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/replicate/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/replicate/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/replicate/error.json");
    const KEY: &str = "r8-test";

    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[{"id":"replicate","kind":"replicate","api_key_secret":"K"},
                             {"id":"proxied","kind":"replicate","base_url":"https://proxy.example.com/replicate/v1/","api_key_secret":"K","headers":{"Prefer":"wait=5","X-Team":"t1"}}],
                "models":[{"id":"replicate/flux-schnell","provider":"replicate","upstream_model":"black-forest-labs/flux-schnell"},
                          {"id":"replicate/sdxl","provider":"proxied","upstream_model":"stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"}]}"#,
        )
        .unwrap()
    }

    fn with_target<T>(model: &str, f: impl FnOnce(&Target) -> T) -> T {
        with_target_in(&config(), model, KEY, f)
    }

    /// The `input` of the first prediction `plan` builds for `body` on flux-schnell.
    fn input(body: &str) -> Result<Value, GatewayError> {
        with_target("replicate/flux-schnell", |target| {
            let plan = plan(target, &request(body))?;
            Ok(serde_json::from_slice::<Value>(&plan.calls[0].body).unwrap()["input"].clone())
        })
    }

    fn golden_answer(name: &str) -> Vec<u8> {
        let golden: Value = serde_json::from_str(GOLDEN_ANSWER).unwrap();
        golden[name].to_string().into_bytes()
    }

    #[test]
    fn the_documented_request_matches_the_golden_file() {
        with_target("replicate/flux-schnell", |target| {
            let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
            let client = r#"{"prompt":"black forest gateau cake spelling out the words \"FLUX SCHNELL\", tasty, food photography, dynamic shot",
                             "model":"replicate/flux-schnell","size":"1792x1024","output_format":"jpeg","seed":42}"#;
            let plan = plan(target, &request(client)).unwrap();
            assert!(!plan.relay);
            assert_eq!(plan.calls.len(), 1);
            assert_eq!(as_golden(&plan.calls[0]), golden);
            assert!(matches!(plan.calls[0].headers.iter().find(|(n, _)| n == "authorization"), Some((_, HeaderValue::Secret(_)))));
            assert!(!format!("{:?}", plan.calls[0]).contains(KEY), "Debug must not show the key");
        });
    }

    #[test]
    fn sizes_and_ratios_map_to_replicate_aspect_ratios() {
        for (body, ratio) in [
            (r#"{"prompt":"p","size":"1024x1024"}"#, "1:1"),
            (r#"{"prompt":"p","size":"1792x1024"}"#, "16:9"),
            (r#"{"prompt":"p","size":"1024x1536"}"#, "2:3"),
            (r#"{"prompt":"p","size":"2560x1080"}"#, "21:9"),
            (r#"{"prompt":"p","aspect_ratio":"9:21"}"#, "9:21"),
            (r#"{"prompt":"p","size":"1024x1024","aspect_ratio":"4:5"}"#, "4:5"),
        ] {
            assert_eq!(input(body).unwrap()["aspect_ratio"], ratio, "{body}");
        }
        assert_eq!(input(r#"{"prompt":"p","size":"auto","aspect_ratio":"auto"}"#).unwrap(), json!({"prompt":"p"}));
        for (body, param) in [(r#"{"prompt":"p","size":"1000x100"}"#, "size"), (r#"{"prompt":"p","aspect_ratio":"2.35:1"}"#, "aspect_ratio")] {
            let err = input(body).unwrap_err();
            assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
        }
    }

    #[test]
    fn output_format_seed_and_negative_prompt_go_into_the_input() {
        for (ours, theirs) in [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")] {
            assert_eq!(input(&format!(r#"{{"prompt":"p","output_format":"{ours}"}}"#)).unwrap()["output_format"], theirs);
        }
        assert_eq!(input(r#"{"prompt":"p","seed":7,"negative_prompt":"blurry"}"#).unwrap(), json!({"prompt":"p","seed":7,"negative_prompt":"blurry"}));
    }

    #[test]
    fn n_images_are_n_predictions_with_distinct_seeds() {
        with_target("replicate/flux-schnell", |target| {
            let seeded = plan(target, &request(r#"{"prompt":"p","n":3,"seed":4294967295}"#)).unwrap();
            let seeds: Vec<Value> = seeded.calls.iter().map(|c| serde_json::from_slice::<Value>(&c.body).unwrap()["input"]["seed"].clone()).collect();
            assert_eq!(seeds, vec![json!(4294967295u32), json!(0), json!(1)]);
            assert!(seeded.calls.iter().all(|c| c.url == "https://api.replicate.com/v1/models/black-forest-labs/flux-schnell/predictions"));
            let unseeded = plan(target, &request(r#"{"prompt":"p","n":2}"#)).unwrap();
            assert_eq!(unseeded.calls.len(), 2);
            assert!(unseeded.calls.iter().all(|c| serde_json::from_slice::<Value>(&c.body).unwrap()["input"].get("num_outputs").is_none()));
        });
    }

    #[test]
    fn a_pinned_version_goes_to_predictions_and_configured_headers_win() {
        with_target("replicate/sdxl", |target| {
            let plan = plan(target, &request(r#"{"prompt":"p"}"#)).unwrap();
            let call = as_golden(&plan.calls[0]);
            assert_eq!(call["url"], "https://proxy.example.com/replicate/v1/predictions");
            assert_eq!(
                call["body"],
                json!({"version":"stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc","input":{"prompt":"p"}})
            );
            assert_eq!(call["headers"], json!({"content-type":"application/json","Prefer":"wait=5","X-Team":"t1","authorization":"Bearer r8-test"}));
        });
    }

    #[test]
    fn upstream_model_must_be_owner_slash_name() {
        let model = |upstream: Option<&str>| {
            let mut model = config().models[0].clone();
            model.upstream_model = upstream.map(str::to_owned);
            model
        };
        for good in ["black-forest-labs/flux-schnell", "google/imagen-4", "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"]
        {
            assert_eq!(check_model(model(Some(good)).upstream_name()), Ok(()), "{good}");
        }
        for bad in ["flux-schnell", "a/b/c", "owner/", "/name", "../..", "owner/name:", "owner/na me", "owner/name:v/1"] {
            let err = check_model(model(Some(bad)).upstream_name()).unwrap_err();
            assert!(err.starts_with("upstream_model ") && err.contains(bad), "{bad}: {err}");
        }
        assert!(check_model(model(None).upstream_name()).unwrap_err().contains("'flux-schnell'"), "the default name is the id's last part");
        assert!(Replicate.check_model("x").is_err(), "the adapter checks it");
        let refused = Config::from_json(r#"{"providers":[{"id":"r","kind":"replicate","api_key_secret":"K"}],"models":[{"id":"r/flux","provider":"r"}]}"#);
        assert!(refused.unwrap_err().contains("upstream_model"));
    }

    #[test]
    fn unhonoured_parameters_are_refused() {
        with_target("replicate/flux-schnell", |target| {
            for (body, param) in [
                (r#"{"prompt":"p","quality":"hd"}"#, "quality"),
                (r#"{"prompt":"p","style":"vivid"}"#, "style"),
                (r#"{"prompt":"p","background":"transparent"}"#, "background"),
                (r#"{"prompt":"p","resolution":"2K"}"#, "resolution"),
                (r#"{"prompt":"p","output_compression":80}"#, "output_compression"),
            ] {
                let err = check_params(target, &request(body)).unwrap_err();
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
            }
            assert!(check_params(
                target,
                &request(r#"{"prompt":"p","size":"1024x1024","seed":1,"negative_prompt":"x","output_format":"png","aspect_ratio":"1:1"}"#)
            )
            .is_ok());
        });
    }

    #[test]
    fn a_running_prediction_is_polled_and_cancellable_at_its_urls() {
        with_target("replicate/flux-schnell", |target| {
            for answer in ["created", "processing"] {
                let Progress::Pending { poll, cancel } = read_answer(target, &golden_answer(answer)).unwrap() else { panic!("{answer}: not pending") };
                let cancel = cancel.expect("Replicate can cancel");
                assert_eq!((poll.method, poll.url.as_str()), (Method::Get, "https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq"));
                assert_eq!((cancel.method, cancel.url.as_str()), (Method::Post, "https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq/cancel"));
                for call in [&poll, &cancel] {
                    assert!(call.body.is_empty());
                    assert!(
                        matches!(call.headers.as_slice(), [(name, HeaderValue::Secret(value))] if name == "authorization" && value.expose() == "Bearer r8-test")
                    );
                }
            }
        });
    }

    #[test]
    fn urls_off_the_providers_site_are_not_given_the_key() {
        with_target("replicate/flux-schnell", |target| {
            let answer = br#"{"id":"abc123","status":"starting","urls":{"get":"https://evil.example/predictions/abc123","cancel":"http://api.replicate.com/v1/predictions/abc123/cancel"}}"#;
            let Progress::Pending { poll, cancel } = read_answer(target, answer).unwrap() else { panic!("not pending") };
            assert_eq!(poll.url, "https://api.replicate.com/v1/predictions/abc123");
            assert_eq!(cancel.unwrap().url, "https://api.replicate.com/v1/predictions/abc123/cancel");
            let no_id = read_answer(target, br#"{"id":"../x","status":"processing","urls":{}}"#).unwrap_err().to_error();
            assert_eq!(no_id.status(), 502);
        });
    }

    #[test]
    fn a_succeeded_prediction_reads_into_url_images() {
        with_target("replicate/flux-schnell", |target| {
            let Progress::Done(done) = read_answer(target, &golden_answer("succeeded")).unwrap() else { panic!("not done") };
            assert_eq!(done.images.len(), 2);
            assert_eq!(
                done.images[0].data,
                ImageData::Url("https://replicate.delivery/xezq/ZlHn2Dmb9lbIC5dWHt6lMiQeWwLZbfSkpX3Ci7Xe9cVKOLfTA/out-0.jpg".into())
            );
            assert_eq!(done.images[0].media_type.as_deref(), Some("image/jpeg"));
            assert_eq!(done.images[1].media_type.as_deref(), Some("image/jpeg"));
            assert_eq!(done.cost_usd, None);
            let one = br#"{"id":"x","status":"succeeded","output":"https://replicate.delivery/a/b/output.webp"}"#;
            let Progress::Done(done) = read_answer(target, one).unwrap() else { panic!("not done") };
            assert_eq!((done.images.len(), done.images[0].media_type.as_deref()), (1, Some("image/webp")));
            let odd = br#"{"id":"x","status":"succeeded","output":["https://replicate.delivery/a/b/out"]}"#;
            let Progress::Done(done) = read_answer(target, odd).unwrap() else { panic!("not done") };
            assert_eq!(done.images[0].media_type, None);
        });
    }

    #[test]
    fn data_uri_outputs_become_base64() {
        let image = image_at("data:image/png;base64,iVBORw0KGgo=".to_owned());
        assert_eq!((image.data, image.media_type.as_deref()), (ImageData::Base64("iVBORw0KGgo=".into()), Some("image/png")));
        let plain = image_at("data:,hello".to_owned());
        assert_eq!(plain.data, ImageData::Url("data:,hello".into()), "not base64: left as a URL");
        assert_eq!(media_type_of("https://x/y/sample.jpeg?se=2025&sig=a.png"), Some("image/jpeg"));
        assert_eq!(media_type_of("https://x/y.z/file"), None);
    }

    #[test]
    fn failed_canceled_and_empty_predictions_are_errors() {
        with_target("replicate/flux-schnell", |target| {
            let failed = read_answer(target, &golden_answer("failed")).unwrap_err().to_error();
            assert_eq!((failed.status(), failed.code), (502, Some("upstream_generation_failed")));
            assert!(failed.message.contains("CUDA out of memory"), "{}", failed.message);
            for why in [
                "NSFW content detected. Try running it again, or try a different prompt.",
                "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
            ] {
                let answer = json!({"id":"x","status":"failed","error":why}).to_string();
                let refused = read_answer(target, answer.as_bytes()).unwrap_err().to_error();
                assert_eq!((refused.status(), refused.code), (403, Some("content_policy_violation")), "{why}");
                assert!(refused.message.contains(why));
            }
            let leaky = read_answer(target, br#"{"id":"x","status":"failed","error":"bad token r8-test"}"#).unwrap_err().to_error();
            assert!(!leaky.message.contains(KEY), "{}", leaky.message);
            let silent = read_answer(target, br#"{"id":"x","status":"failed","error":null}"#).unwrap_err().to_error();
            assert_eq!(silent.code, Some("upstream_generation_failed"));
            for status in ["canceled", "aborted"] {
                let err = read_answer(target, json!({"id":"x","status":status}).to_string().as_bytes()).unwrap_err().to_error();
                assert_eq!((err.status(), err.code), (502, Some("upstream_generation_failed")), "{status}");
                assert!(err.message.contains(status), "{}", err.message);
            }
            let removed = read_answer(target, br#"{"id":"x","status":"succeeded","output":null,"data_removed":true}"#).unwrap_err().to_error();
            assert_eq!(removed.code, Some("empty_upstream_answer"));
            assert_eq!(read_answer(target, b"<html>").unwrap_err().to_error().status(), 502);
            assert_eq!(read_answer(target, br#"{"id":"x"}"#).unwrap_err().to_error().status(), 502);
        });
    }

    #[test]
    fn documented_errors_map_to_the_gateway_set() {
        with_target("replicate/flux-schnell", |target| {
            let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
            let expected = [400, 402, 429, 502];
            for (case, status) in golden.iter().zip(expected) {
                let err = read_error(target, "/", case["status"].as_u64().unwrap() as u16, Some("30".into()), case["body"].to_string().as_bytes());
                assert_eq!(err.status(), status, "{case}");
                assert!(err.message.contains(case["body"]["detail"].as_str().unwrap()), "{}", err.message);
                assert!(err.message.contains(case["body"]["title"].as_str().unwrap()), "{}", err.message);
            }
            assert_eq!(error_detail(golden[1]["body"].to_string().as_bytes()).code.as_deref(), Some("insufficient_quota"));
            assert_eq!(read_error(target, "/", 429, Some("30".into()), golden[2]["body"].to_string().as_bytes()).retry_after.as_deref(), Some("30"));
        });
        assert_eq!(error_detail(br#"{"detail":"Not found."}"#), Detail { message: Some("Not found.".into()), code: None });
        assert_eq!(error_detail(br#"{"title":"Unauthenticated","detail":"Unauthenticated"}"#).message.as_deref(), Some("Unauthenticated"));
        let listed =
            error_detail(br#"{"detail":[{"loc":["body","input","guidance_scale"],"msg":"Unexpected field 'guidance_scale'","type":"value_error.extra"}]}"#);
        assert_eq!(listed.message.as_deref(), Some("input.guidance_scale: Unexpected field 'guidance_scale'"));
        assert_eq!(
            error_detail(br#"{"title":"Prediction failed","detail":"NSFW content detected","status":422}"#).code.as_deref(),
            Some("content_policy_violation")
        );
        assert_eq!(error_detail(b"Bad Gateway"), Detail::default());
    }
}
