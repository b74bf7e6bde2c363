//! Black Forest Labs' FLUX API: `POST {base_url}/{upstream_model}` (`flux-pro-1.1`, `flux-dev`,
//! `flux-pro-1.1-ultra`, `flux-kontext-pro`, `flux-2-pro`, …) with the key in `x-key`; the
//! answer `{"id", "polling_url"}` is polled (`GET polling_url`, with `x-key`) until `Ready`.
//! One image per task, so `n` images are `n` tasks (seed + index, so they differ). BFL has no
//! cancel endpoint: a task still running at the deadline is abandoned (and billed).
//!
//! References: the BFL API reference (https://docs.bfl.ai/api-reference, OpenAPI at
//! https://api.bfl.ai/openapi.json: `FluxPro11Inputs`, `FluxDevInputs`, `FluxUltraInput`,
//! `FluxKontextProInputs`, `AsyncResponse`, `ResultResponse` with `StatusResponse`,
//! `HTTPValidationError`); statuses and HTTP codes (https://help.bfl.ai/articles/2916279050);
//! FLUX.2 sizes and the 429 body (https://github.com/black-forest-labs/skills, bfl-api).
//!
//! | request | body |
//! |---|---|
//! | `size` | `width`, `height`: FLUX.1 (`flux-pro-1.1`, `flux-dev`, …) multiples of 32 from 256 to 1440; FLUX.2 (`flux-2-*`) multiples of 16, at least 64, at most 4 MP; else a 400 naming `size` |
//! | `aspect_ratio` (no `size`) | `width`, `height` for about a megapixel, shrunk to the model's limits |
//! | `aspect_ratio` on `*-ultra`, `flux-kontext-*` | `aspect_ratio` as asked (whole numbers, from 21:9 to 9:21) |
//! | `size` on `*-ultra`, `flux-kontext-*` | `aspect_ratio`: the nearest of [`RATIOS`] (within 5%) |
//! | `seed` | `seed` (+ the image's index) |
//! | `output_format` png / jpeg | `output_format` png / jpeg; webp is a 400 naming `output_format` |
//!
//! Neither `size` nor `aspect_ratio`: BFL's default (1024x768 on FLUX.1 [pro]/[dev], 16:9 on ultra).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::{self, Detail};
use super::site::same_site;
use super::wire::{self, configured_headers, image_at, is_token, json_headers, post, text_of};
use super::{mapping, Adapter, AnswerError, Generated, Plan, Planned, Progress, Target};
use crate::error::{ErrorKind, GatewayError};
use crate::inputs::Operation;
use crate::request::{ImageRequest, OutputFormat, Size};
use crate::secret::Secret;
use crate::upstream::{HeaderValue, UpstreamRequest};

/// The request parameters this kind honours.
pub const HONOURED: &[&str] = &["size", "aspect_ratio", "seed", "output_format"];

/// The ratios a `size` maps to on the aspect-ratio models (all within 21:9 .. 9:21).
pub const RATIOS: [&str; 11] = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"];

/// The sizes a pixel model takes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limits {
    step: u32,
    min: u32,
    max_side: u32,
    max_area: u64,
}

/// FLUX.1 [pro], 1.1 [pro], [dev]: `multipleOf: 32`, 256 to 1440.
const FLUX1: Limits = Limits { step: 32, min: 256, max_side: 1440, max_area: 1440 * 1440 };
/// FLUX.2: multiples of 16, at least 64, at most 4 MP (2048x2048).
const FLUX2: Limits = Limits { step: 16, min: 64, max_side: u32::MAX, max_area: 2048 * 2048 };

/// How a model takes its size: an aspect ratio, or pixels within limits.
#[derive(Debug, PartialEq)]
enum Geometry {
    Ratio,
    Pixels(Limits),
}

fn geometry(model: &str) -> Geometry {
    if model.contains("ultra") || model.starts_with("flux-kontext") {
        Geometry::Ratio
    } else if model.starts_with("flux-2") {
        Geometry::Pixels(FLUX2)
    } else {
        Geometry::Pixels(FLUX1)
    }
}

/// The `bfl` kind.
pub struct Bfl;

impl Adapter for Bfl {
    fn name(&self) -> &'static str {
        "bfl"
    }
    fn default_base_url(&self) -> Option<&'static str> {
        Some("https://api.bfl.ai/v1")
    }
    fn starts_jobs(&self) -> bool {
        true
    }
    fn honoured(&self) -> &'static [&'static str] {
        HONOURED
    }
    fn takes(&self, operation: Operation) -> bool {
        // Edits on FLUX.1 Kontext and FLUX.2 (checked per model when planned); no variations.
        operation != Operation::Variation
    }
    fn aspect_ratios(&self) -> Option<&'static [&'static str]> {
        Some(&RATIOS)
    }
    fn output_formats(&self) -> &'static [&'static str] {
        &["jpeg", "png"]
    }
    fn check_model(&self, upstream_model: &str) -> Result<(), String> {
        check_model(upstream_model)
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

/// Refuses an `upstream_model` (or default name) that is not a BFL endpoint name such as
/// `flux-pro-1.1`.
pub fn check_model(upstream_model: &str) -> Result<(), String> {
    let name = upstream_model;
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) && name.bytes().any(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(format!("upstream_model must be a BFL endpoint name such as 'flux-pro-1.1', not '{name}'"))
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'static str>,
    /// An edit's images, base64 (FLUX.1 Kontext and FLUX.2 models): `input_image`, then
    /// `input_image_2` to `input_image_4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_image_2: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_image_3: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_image_4: Option<&'a str>,
}

/// The most images one BFL edit takes (`input_image` to `input_image_4`).
pub const MAX_INPUT_IMAGES: usize = 4;

/// Whether the model edits: FLUX.1 Kontext (`flux-kontext-*`) and FLUX.2 (`flux-2-*`).
fn edits(model: &str) -> bool {
    model.starts_with("flux-kontext") || model.starts_with("flux-2")
}

/// An edit's images as base64, checked against what BFL takes (none for a generation).
fn input_images(target: &Target, request: &ImageRequest) -> Result<Vec<String>, GatewayError> {
    use base64::Engine as _;
    let Some(inputs) = &request.inputs else { return Ok(Vec::new()) };
    if !target.takes_images.unwrap_or_else(|| edits(target.upstream_model())) {
        return Err(GatewayError::invalid_param(
            "image",
            format!("The model '{}' does not edit images; BFL's FLUX.1 Kontext and FLUX.2 models do.", target.model_id),
        )
        .with_code("unsupported_parameter"));
    }
    if inputs.mask.is_some() {
        return Err(GatewayError::invalid_param("mask", "BFL's models take reference images, not a mask; describe the change in the prompt.")
            .with_code("unsupported_parameter"));
    }
    if inputs.images.len() > MAX_INPUT_IMAGES {
        return Err(GatewayError::invalid_param("image", format!("BFL's models take at most {MAX_INPUT_IMAGES} images, not {}.", inputs.images.len())));
    }
    Ok(inputs.images.iter().map(|image| base64::engine::general_purpose::STANDARD.encode(image.bytes())).collect())
}

/// `n` task requests (see the module's table); a 400 naming `size`, `aspect_ratio` or
/// `output_format` when the value cannot be mapped.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    let model = target.upstream_model();
    check_model(target.upstream_model()).map_err(|e| GatewayError::new(ErrorKind::Internal, format!("The BFL model is misconfigured: {e}.")))?;
    let output_format = match request.output_format {
        None => None,
        Some(OutputFormat::Png) => Some("png"),
        Some(OutputFormat::Jpeg) => Some("jpeg"),
        Some(OutputFormat::Webp) => return Err(GatewayError::invalid_param("output_format", "BFL's FLUX API makes 'jpeg' or 'png' images, not 'webp'.")),
    };
    let (pixels, ratio) = match geometry(model) {
        Geometry::Ratio => (None, ratio(request)?),
        Geometry::Pixels(limits) => (pixels(request, limits)?, None),
    };
    // Encoded once: every one of the `n` tasks sends the same images.
    let images = input_images(target, request)?;
    let image = |i: usize| images.get(i).map(String::as_str);
    let url = format!("{}/{model}", target.provider.base());
    let mut headers = json_headers(target);
    if let Some(key) = target.key {
        headers.push(("x-key".to_owned(), x_key(key)));
    }
    let calls = (0..request.n)
        .map(|i| {
            let body = WireRequest {
                prompt: &request.prompt,
                width: pixels.map(|(w, _)| w),
                height: pixels.map(|(_, h)| h),
                aspect_ratio: ratio.as_deref(),
                seed: request.seed.map(|seed| seed.wrapping_add(u32::from(i))),
                output_format,
                input_image: image(0),
                input_image_2: image(1),
                input_image_3: image(2),
                input_image_4: image(3),
            };
            post(url.clone(), headers.clone(), serde_json::to_vec(&body).expect("the body is always serialisable"))
        })
        .collect();
    Ok(Plan { calls, relay: false })
}

/// The key, kept secret.
fn x_key(key: &Secret) -> HeaderValue {
    HeaderValue::Secret(key.clone())
}

/// The aspect ratio for an aspect-ratio model: `aspect_ratio` as asked when it is whole numbers
/// between 21:9 and 9:21 (BFL's documented range), else a 400; a `size` → [`RATIOS`].
fn ratio(request: &ImageRequest) -> Result<Option<String>, GatewayError> {
    let Some(asked) = request.aspect_ratio.as_deref().filter(|r| *r != "auto") else {
        return Ok(mapping::aspect_ratio(request, &RATIOS)?.map(str::to_owned));
    };
    let whole = asked.split_once(':').and_then(|(w, h)| Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?)));
    match whole {
        Some((w, h)) if w > 0 && h > 0 && 9 * w <= 21 * h && 21 * w >= 9 * h => Ok(Some(asked.to_owned())),
        _ => Err(GatewayError::invalid_param(
            "aspect_ratio",
            format!("This model takes aspect ratios of whole numbers from 21:9 to 9:21 (e.g. '16:9'), not '{asked}'."),
        )),
    }
}

/// Width and height for a pixel model: `size` when it fits `limits` (else a 400 naming `size`),
/// else `aspect_ratio` at about a megapixel, shrunk to fit (a 400 naming `aspect_ratio` when
/// even that does not fit), else `None` (BFL's default).
fn pixels(request: &ImageRequest, limits: Limits) -> Result<Option<(u32, u32)>, GatewayError> {
    let fits = |w: u32, h: u32| {
        [w, h].iter().all(|&side| side % limits.step == 0 && side >= limits.min && side <= limits.max_side) && u64::from(w) * u64::from(h) <= limits.max_area
    };
    let rule = if limits == FLUX1 {
        format!("multiples of {} from {} to {} pixels", limits.step, limits.min, limits.max_side)
    } else {
        format!("multiples of {}, at least {} pixels, at most 4 megapixels (2048x2048)", limits.step, limits.min)
    };
    if let Some(Size::Pixels { width, height }) = request.size {
        return match fits(width, height) {
            true => Ok(Some((width, height))),
            false => Err(GatewayError::invalid_param("size", format!("This model takes sizes whose sides are {rule}; {width}x{height} is not one."))),
        };
    }
    let Some((width, height)) = mapping::pixels(request, limits.step) else { return Ok(None) };
    let (w, h) = (f64::from(width), f64::from(height));
    let scale = (f64::from(limits.max_side) / w.max(h)).min((limits.max_area as f64 / (w * h)).sqrt()).min(1.0);
    let shrink = |side: f64| (side * scale / f64::from(limits.step) + 1e-9).floor() as u32 * limits.step;
    let (width, height) = (shrink(w), shrink(h));
    match fits(width, height) {
        true => Ok(Some((width, height))),
        false => Err(GatewayError::invalid_param(
            "aspect_ratio",
            format!("This model takes sizes whose sides are {rule}; no such size has the aspect ratio '{}'.", request.aspect_ratio.as_deref().unwrap_or("")),
        )),
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    polling_url: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    details: Option<Value>,
}

/// Reads a BFL answer: the create answer `{id, polling_url}` → poll it; a poll answer `Ready` →
/// `result.sample` as a URL image; `Request Moderated` / `Content Moderated` → a 403
/// `content_policy_violation`; `Error` / `Task not found` → a 502 `upstream_generation_failed`;
/// `Pending` (or a status BFL adds later) → poll again. A poll answer does not repeat the polling
/// URL, so it names `{base_url}/get_result?id=…`; the pipeline keeps polling the URL the create
/// answer gave (which may be on a regional host the global endpoint does not answer for).
pub fn read_answer(target: &Target, body: &[u8]) -> Result<Progress, AnswerError> {
    let provider_id = &target.provider.id;
    let answer: Answer = wire::parse(target, body, "a BFL task answer")?;
    let said = |answer: &Answer| answer.error.as_ref().or(answer.details.as_ref()).filter(|v| !v.is_null()).map(text_of);
    match answer.status.as_deref() {
        None => pending(target, answer.polling_url, answer.id.as_deref()),
        Some("Ready") => {
            let sample = answer.result.and_then(|mut result| match result.get_mut("sample").map(Value::take) {
                Some(Value::String(url)) if !url.is_empty() => Some(url),
                _ => None,
            });
            match sample {
                Some(url) => Ok(Progress::Done(Generated { images: vec![image_at(url)], ..Generated::default() })),
                None => Err(errors::no_images(provider_id)),
            }
        }
        Some(status @ ("Request Moderated" | "Content Moderated")) => {
            let why = match said(&answer) {
                Some(reasons) => format!("{status} ({reasons})"),
                None => status.to_owned(),
            };
            Err(errors::refused(provider_id, &why, target.key))
        }
        Some(status @ ("Error" | "Task not found")) => {
            let why = match said(&answer) {
                Some(why) => format!("{status}: {why}"),
                None => status.to_owned(),
            };
            Err(errors::job_failed(provider_id, Some(&why), target.key))
        }
        Some(_) => pending(target, None, answer.id.as_deref()),
    }
}

/// The poll for a running task: its polling URL (kept only on the provider's site, since it
/// carries the key), else `{base_url}/get_result?id={id}`.
fn pending(target: &Target, polling_url: Option<String>, id: Option<&str>) -> Result<Progress, AnswerError> {
    let base = target.provider.base();
    let url = match (polling_url.filter(|url| same_site(base, url, "bfl.ai")), id.filter(|id| is_token(id))) {
        (Some(url), _) => url,
        (None, Some(id)) => format!("{base}/get_result?id={id}"),
        (None, None) => return Err(errors::unreadable(target.provider.id, "a BFL task answer with an id or a polling URL")),
    };
    let mut headers = configured_headers(target);
    if let Some(key) = target.key {
        headers.push(("x-key".to_owned(), x_key(key)));
    }
    Ok(Progress::Pending { poll: UpstreamRequest::get(url, headers), cancel: None })
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    detail: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

/// What a BFL error says: `{"detail": "…"}`, a 422's `{"detail": [{"loc", "msg"}]}` (the messages
/// joined), or `{"error": code, "message": "…"}`. Running out of credits is
/// `insufficient_quota`, a moderated request `content_policy_violation`.
pub fn error_detail(body: &[u8]) -> Detail {
    let Ok(said) = serde_json::from_slice::<ErrorBody>(body) else { return Detail::default() };
    let error_code = said.error.as_ref().and_then(Value::as_str).map(str::to_owned);
    let message = said
        .detail
        .as_ref()
        .filter(|d| !d.is_null())
        .map(text_of)
        .or(said.message)
        .or_else(|| said.error.as_ref().filter(|e| !e.is_string() && !e.is_null()).map(text_of))
        .or_else(|| error_code.clone());
    let lower = message.as_deref().unwrap_or("").to_ascii_lowercase();
    let code = match error_code.as_deref() {
        Some("insufficient_credits") => Some("insufficient_quota".to_owned()),
        _ if lower.contains("insufficient credits") || lower.contains("not enough credits") => Some("insufficient_quota".to_owned()),
        _ if lower.contains("moderated") => Some("content_policy_violation".to_owned()),
        other => other.map(str::to_owned),
    };
    Detail { message, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::testing::{as_golden, request, with_target_in};
    use crate::providers::{check_params, read_error, ImageData};
    use crate::upstream::Method;

    use serde_json::json;

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/bfl/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/bfl/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/bfl/error.json");
    const KEY: &str = "bfl-test";

    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[{"id":"bfl","kind":"bfl","api_key_secret":"K"},
                             {"id":"bfl-eu","kind":"bfl","base_url":"https://api.eu.bfl.ai/v1","api_key_secret":"K","headers":{"X-Team":"t1"}}],
                "models":[{"id":"bfl/flux-pro","provider":"bfl","upstream_model":"flux-pro-1.1"},
                          {"id":"bfl/ultra","provider":"bfl","upstream_model":"flux-pro-1.1-ultra"},
                          {"id":"bfl/kontext","provider":"bfl","upstream_model":"flux-kontext-pro"},
                          {"id":"bfl/flux-2","provider":"bfl","upstream_model":"flux-2-pro"},
                          {"id":"eu/flux-dev","provider":"bfl-eu","upstream_model":"flux-dev"}]}"#,
        )
        .unwrap()
    }

    fn with_target<T>(model: &str, f: impl FnOnce(&Target) -> T) -> T {
        with_target_in(&config(), model, KEY, f)
    }

    /// The body of the first task `plan` builds for `body` on `model`.
    fn sent(model: &str, body: &str) -> Result<Value, GatewayError> {
        with_target(model, |target| Ok(serde_json::from_slice(&plan(target, &request(body))?.calls[0].body).unwrap()))
    }

    fn golden_answer(name: &str) -> Vec<u8> {
        let golden: Value = serde_json::from_str(GOLDEN_ANSWER).unwrap();
        golden[name].to_string().into_bytes()
    }

    #[test]
    fn the_documented_request_matches_the_golden_file() {
        with_target("bfl/flux-pro", |target| {
            let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
            let client = r#"{"prompt":"ein fantastisches bild","model":"bfl/flux-pro","size":"1024x768","seed":42,"output_format":"jpeg"}"#;
            let plan = plan(target, &request(client)).unwrap();
            assert!(!plan.relay);
            assert_eq!(plan.calls.len(), 1);
            assert_eq!(as_golden(&plan.calls[0]), golden);
            assert!(matches!(plan.calls[0].headers.iter().find(|(n, _)| n == "x-key"), Some((_, HeaderValue::Secret(_)))));
            assert!(!format!("{:?}", plan.calls[0]).contains(KEY), "Debug must not show the key");
        });
    }

    #[test]
    fn sizes_must_fit_the_models_limits() {
        assert_eq!(sent("bfl/flux-pro", r#"{"prompt":"p","size":"1440x256"}"#).unwrap(), json!({"prompt":"p","width":1440,"height":256}));
        for size in ["1792x1024", "1000x1000", "224x1024", "1472x1472"] {
            let err = sent("bfl/flux-pro", &format!(r#"{{"prompt":"p","size":"{size}"}}"#)).unwrap_err();
            assert_eq!((err.status(), err.param.as_deref()), (400, Some("size")), "{size}");
            assert!(err.message.contains("multiples of 32 from 256 to 1440"), "{}", err.message);
        }
        assert_eq!(sent("bfl/flux-2", r#"{"prompt":"p","size":"1920x1072"}"#).unwrap()["width"], 1920);
        assert_eq!(sent("bfl/flux-2", r#"{"prompt":"p","size":"2048x2048"}"#).unwrap()["height"], 2048);
        for size in ["1920x1080", "2064x2048", "48x1024"] {
            assert_eq!(sent("bfl/flux-2", &format!(r#"{{"prompt":"p","size":"{size}"}}"#)).unwrap_err().param.as_deref(), Some("size"), "{size}");
        }
        assert_eq!(sent("bfl/flux-pro", r#"{"prompt":"p","size":"auto"}"#).unwrap(), json!({"prompt":"p"}));
    }

    #[test]
    fn aspect_ratios_become_pixels_on_pixel_models() {
        let wh = |model: &str, ratio: &str| {
            let body = sent(model, &format!(r#"{{"prompt":"p","aspect_ratio":"{ratio}"}}"#)).unwrap();
            (body["width"].as_u64().unwrap(), body["height"].as_u64().unwrap())
        };
        assert_eq!(wh("bfl/flux-pro", "1:1"), (1024, 1024));
        assert_eq!(wh("bfl/flux-pro", "16:9"), (1376, 768));
        assert_eq!(wh("bfl/flux-pro", "21:9"), (1440, 608), "shrunk to 1440 wide");
        assert_eq!(wh("eu/flux-dev", "9:21"), (608, 1440));
        assert_eq!(wh("bfl/flux-2", "21:9"), (1568, 672), "FLUX.2 allows wider");
        let err = sent("bfl/flux-pro", r#"{"prompt":"p","aspect_ratio":"8:1"}"#).unwrap_err();
        assert_eq!((err.status(), err.param.as_deref()), (400, Some("aspect_ratio")));
        assert_eq!(sent("bfl/flux-pro", r#"{"prompt":"p","size":"512x512","aspect_ratio":"16:9"}"#).unwrap()["width"], 512, "size wins");
    }

    #[test]
    fn ultra_and_kontext_take_aspect_ratios() {
        for model in ["bfl/ultra", "bfl/kontext"] {
            assert_eq!(sent(model, r#"{"prompt":"p","size":"1792x1024"}"#).unwrap(), json!({"prompt":"p","aspect_ratio":"16:9"}), "{model}");
            assert_eq!(sent(model, r#"{"prompt":"p","aspect_ratio":"7:3"}"#).unwrap()["aspect_ratio"], "7:3");
            assert_eq!(sent(model, r#"{"prompt":"p","aspect_ratio":"9:21","size":"1024x1024"}"#).unwrap()["aspect_ratio"], "9:21");
            for (body, param) in [
                (r#"{"prompt":"p","aspect_ratio":"22:9"}"#, "aspect_ratio"),
                (r#"{"prompt":"p","aspect_ratio":"2.35:1"}"#, "aspect_ratio"),
                (r#"{"prompt":"p","size":"1000x100"}"#, "size"),
            ] {
                let err = sent(model, body).unwrap_err();
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{model} {body}");
            }
        }
        assert_eq!(geometry("flux-pro-1.1-ultra-finetuned"), Geometry::Ratio);
        assert_eq!(geometry("flux-kontext-max"), Geometry::Ratio);
        assert_eq!(geometry("flux-pro"), Geometry::Pixels(FLUX1));
    }

    #[test]
    fn output_format_and_seed_map_and_n_makes_n_tasks() {
        assert_eq!(sent("bfl/flux-pro", r#"{"prompt":"p","output_format":"png"}"#).unwrap()["output_format"], "png");
        assert_eq!(sent("bfl/flux-pro", r#"{"prompt":"p","output_format":"jpeg"}"#).unwrap()["output_format"], "jpeg");
        let webp = sent("bfl/flux-pro", r#"{"prompt":"p","output_format":"webp"}"#).unwrap_err();
        assert_eq!((webp.status(), webp.param.as_deref()), (400, Some("output_format")));
        with_target("eu/flux-dev", |target| {
            let tasks = plan(target, &request(r#"{"prompt":"p","n":3,"seed":10}"#)).unwrap();
            assert_eq!(tasks.calls.len(), 3);
            let seeds: Vec<Value> = tasks.calls.iter().map(|c| serde_json::from_slice::<Value>(&c.body).unwrap()["seed"].clone()).collect();
            assert_eq!(seeds, vec![json!(10), json!(11), json!(12)]);
            let call = as_golden(&tasks.calls[0]);
            assert_eq!(call["url"], "https://api.eu.bfl.ai/v1/flux-dev");
            assert_eq!(call["headers"], json!({"content-type":"application/json","X-Team":"t1","x-key":"bfl-test"}));
        });
    }

    #[test]
    fn unhonoured_parameters_and_bad_model_names_are_refused() {
        with_target("bfl/flux-pro", |target| {
            for (body, param) in [
                (r#"{"prompt":"p","negative_prompt":"x"}"#, "negative_prompt"),
                (r#"{"prompt":"p","quality":"hd"}"#, "quality"),
                (r#"{"prompt":"p","resolution":"2K"}"#, "resolution"),
                (r#"{"prompt":"p","background":"transparent"}"#, "background"),
            ] {
                let err = check_params(target, &request(body)).unwrap_err();
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
            }
        });
        let bad = Config::from_json(
            r#"{"providers":[{"id":"bfl","kind":"bfl","api_key_secret":"K"}],
                "models":[{"id":"bfl/bad","provider":"bfl","upstream_model":"flux pro?"}]}"#,
        )
        .unwrap_err();
        assert!(bad.contains("models[0].upstream_model "), "a start-up error naming the key: {bad}");
    }

    #[test]
    fn a_created_task_is_polled_at_its_polling_url_without_a_cancel() {
        with_target("bfl/flux-pro", |target| {
            let Progress::Pending { poll, cancel } = read_answer(target, &golden_answer("created")).unwrap() else { panic!("not pending") };
            assert!(cancel.is_none(), "BFL has no cancel endpoint");
            assert_eq!((poll.method, poll.url.as_str()), (Method::Get, "https://api.us1.bfl.ai/v1/get_result?id=5d3a0d3c-2a40-4b13-9e2e-7f1e8f6a9b21"));
            assert!(poll.body.is_empty());
            assert!(matches!(poll.headers.as_slice(), [(name, HeaderValue::Secret(value))] if name == "x-key" && value.expose() == KEY));
            let evil = read_answer(target, br#"{"id":"abc-1","polling_url":"https://bfl.ai.evil.example/v1/get_result?id=abc-1"}"#).unwrap();
            let Progress::Pending { poll, .. } = evil else { panic!("not pending") };
            assert_eq!(poll.url, "https://api.bfl.ai/v1/get_result?id=abc-1", "the key stays on BFL's hosts");
            assert_eq!(read_answer(target, br#"{"polling_url":"https://evil.example/x"}"#).unwrap_err().to_error().status(), 502);
        });
    }

    #[test]
    fn a_pending_task_is_polled_again() {
        with_target("bfl/flux-pro", |target| {
            let Progress::Pending { poll, cancel } = read_answer(target, &golden_answer("pending")).unwrap() else { panic!("not pending") };
            assert_eq!(poll.url, "https://api.bfl.ai/v1/get_result?id=5d3a0d3c-2a40-4b13-9e2e-7f1e8f6a9b21");
            assert!(cancel.is_none());
            let later = read_answer(target, br#"{"id":"abc","status":"Processing","progress":0.5}"#).unwrap();
            assert!(matches!(later, Progress::Pending { .. }), "an undocumented status is taken as still running");
        });
    }

    #[test]
    fn a_ready_task_reads_into_a_url_image() {
        with_target("bfl/flux-pro", |target| {
            let Progress::Done(done) = read_answer(target, &golden_answer("ready")).unwrap() else { panic!("not done") };
            assert_eq!(done.images.len(), 1);
            let ImageData::Url(url) = &done.images[0].data else { panic!("not a URL") };
            assert!(url.starts_with("https://delivery-us1.bfl.ai/results/") && url.contains("sig="), "{url}");
            assert_eq!(done.images[0].media_type.as_deref(), Some("image/jpeg"));
            let empty = read_answer(target, br#"{"id":"x","status":"Ready","result":{}}"#).unwrap_err().to_error();
            assert_eq!(empty.code, Some("empty_upstream_answer"));
            assert_eq!(read_answer(target, b"not json").unwrap_err().to_error().status(), 502);
        });
    }

    #[test]
    fn moderated_failed_and_lost_tasks_are_errors() {
        with_target("bfl/flux-pro", |target| {
            for name in ["request_moderated", "content_moderated"] {
                let err = read_answer(target, &golden_answer(name)).unwrap_err().to_error();
                assert_eq!((err.status(), err.code), (403, Some("content_policy_violation")), "{name}");
                assert!(err.message.contains("Moderated"), "{}", err.message);
            }
            let reasons = read_answer(target, &golden_answer("request_moderated")).unwrap_err().to_error();
            assert!(reasons.message.contains("Derivative Works Filter"), "{}", reasons.message);
            let failed = read_answer(target, &golden_answer("error")).unwrap_err().to_error();
            assert_eq!((failed.status(), failed.code), (502, Some("upstream_generation_failed")));
            assert!(failed.message.contains("Error: Generation failed"), "{}", failed.message);
            let lost = read_answer(target, br#"{"id":"x","status":"Task not found"}"#).unwrap_err().to_error();
            assert_eq!(lost.code, Some("upstream_generation_failed"));
            assert!(lost.message.contains("Task not found"));
        });
    }

    #[test]
    fn documented_errors_map_to_the_gateway_set() {
        with_target("bfl/flux-pro", |target| {
            let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
            let expected = [
                (400, "width: Input should be a multiple of 32; height: Input should be less than or equal to 1440"),
                (402, "Insufficient credits"),
                (429, "Too many concurrent requests"),
            ];
            for (case, (status, text)) in golden.iter().zip(expected) {
                let err = read_error(target, "/", case["status"].as_u64().unwrap() as u16, Some("5".into()), case["body"].to_string().as_bytes());
                assert_eq!(err.status(), status, "{case}");
                assert!(err.message.contains(text), "{}", err.message);
            }
            assert_eq!(error_detail(golden[1]["body"].to_string().as_bytes()).code.as_deref(), Some("insufficient_quota"));
            assert_eq!(error_detail(golden[2]["body"].to_string().as_bytes()).code.as_deref(), Some("rate_limit_exceeded"));
            assert_eq!(read_error(target, "/", 429, Some("5".into()), golden[2]["body"].to_string().as_bytes()).retry_after.as_deref(), Some("5"));
        });
        assert_eq!(error_detail(br#"{"error":"insufficient_credits","message":"m"}"#).code.as_deref(), Some("insufficient_quota"));
        assert_eq!(error_detail(br#"{"detail":"Request Moderated"}"#).code.as_deref(), Some("content_policy_violation"));
        assert_eq!(error_detail(br#"{"detail":"Not authenticated"}"#), Detail { message: Some("Not authenticated".into()), code: None });
        assert_eq!(error_detail(b"<html>"), Detail::default());
    }
}
