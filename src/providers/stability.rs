//! Stability AI's stable-image generate endpoints (v2beta):
//! `POST {base_url}/v2beta/stable-image/generate/{ultra|core|sd3}` (default base
//! `https://api.stability.ai`) with a bearer key and a multipart form body. One image per call,
//! so `n` images are `n` calls. The gateway asks for JSON (`{"image", "finish_reason", "seed"}`)
//! and also reads an answer of raw image bytes.
//!
//! Followed: Stability's API reference (platform.stability.ai/docs/api-reference, "Generate"
//! v2beta: Stable Image Ultra, Core and SD3 — fields `prompt`, `negative_prompt`,
//! `aspect_ratio` (16:9, 1:1, 21:9, 2:3, 3:2, 4:5, 5:4, 9:16, 9:21), `seed` (0–4294967294),
//! `output_format` (png, jpeg, webp; SD3 png or jpeg), `model` for SD3; answers as `image/*` or
//! `application/json`; errors `{"id","name","errors":[…]}` with 400, 403 `content_moderation`,
//! 413, 422, 429, 500).
//!
//! Mapping: the model's `upstream_model` picks the endpoint: `ultra`, `core`, or an SD3 model
//! (`sd3.5-large`, `sd3.5-large-turbo`, `sd3.5-medium`, `sd3.5-flash`) sent as `model` to `sd3`.
//! `aspect_ratio`, or `size` mapped to the nearest listed ratio; `output_format`; `seed` (image
//! `i` of `n` gets `seed + i`, so they differ); `negative_prompt`.
//!
//! Edits (one image): with a `mask`, `POST {base_url}/v2beta/stable-image/edit/inpaint` (`image`,
//! `mask`, `prompt`, `negative_prompt`, `seed`, `output_format`); without one, image-to-image on
//! `ultra` (`image`, `strength`) or `sd3` (`mode=image-to-image`, `image`, `strength`), with
//! [`EDIT_STRENGTH`]; `core` edits only with a mask. No `aspect_ratio`: the image's own shape
//! decides. Stability has no variations.

use base64::Engine as _;
use serde::Deserialize;

use super::errors::{self, Detail};
use super::mapping;
use super::wire::{self, bearer, configured_headers, post};
use super::{Adapter, AnswerError, Generated, Image, ImageData, Plan, Planned, Progress, Target};
use crate::error::GatewayError;
use crate::inputs::Operation;
use crate::multipart::Form;
use crate::request::{ImageRequest, OutputFormat};
use crate::upstream::HeaderValue;

/// The request parameters Stability takes (besides `n`).
pub const HONOURED: &[&str] = &["size", "aspect_ratio", "output_format", "seed", "negative_prompt"];
/// Those its edits take.
pub const HONOURED_IN_EDITS: &[&str] = &["output_format", "seed", "negative_prompt"];
/// The aspect ratios Stability takes.
pub const RATIOS: [&str; 9] = ["16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"];
/// The largest seed Stability takes.
const MAX_SEED: u64 = 4_294_967_294;
/// The most the forms of one edit with a seed (one per image asked) may hold together.
const MAX_EDIT_FORMS_BYTES: usize = 40 << 20;
/// How far an image-to-image edit may move from the image sent (Stability's `strength`, 0–1).
pub const EDIT_STRENGTH: &str = "0.6";
/// The SD3 models, sent as `model` to the `sd3` endpoint.
const SD3_MODELS: [&str; 4] = ["sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"];

/// The endpoint and the SD3 model for `upstream_model`.
fn endpoint(upstream_model: &str) -> Option<(&'static str, Option<&str>)> {
    match upstream_model {
        "ultra" => Some(("ultra", None)),
        "core" => Some(("core", None)),
        sd3 if SD3_MODELS.contains(&sd3) => Some(("sd3", Some(sd3))),
        _ => None,
    }
}

/// The `stability` kind.
pub struct Stability;

impl Adapter for Stability {
    fn name(&self) -> &'static str {
        "stability"
    }
    fn default_base_url(&self) -> Option<&'static str> {
        Some("https://api.stability.ai")
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
        // Inpainting and image-to-image; Stability has no variations.
        operation != Operation::Variation
    }
    fn honoured_in(&self, operation: Operation) -> &'static [&'static str] {
        match operation {
            // An edit keeps its image's shape: no size or aspect ratio.
            Operation::Edit => HONOURED_IN_EDITS,
            _ => HONOURED,
        }
    }
    fn plan(&self, target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError> {
        plan(target, request).map(Planned::Calls)
    }
    fn read_answer(&self, target: &Target, content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError> {
        read_answer(target, content_type, body)
    }
    fn error_detail(&self, body: &[u8]) -> Detail {
        error_detail(body)
    }
}

/// The model must name an endpoint: `ultra`, `core` or an SD3 model.
pub fn check_model(upstream_model: &str) -> Result<(), String> {
    match endpoint(upstream_model) {
        Some(_) => Ok(()),
        None => {
            Err(format!("upstream_model must be 'ultra', 'core' or one of '{}' for a 'stability' provider, not '{}'", SD3_MODELS.join("', '"), upstream_model))
        }
    }
}

/// `n` multipart calls; a 400 naming `size`, `aspect_ratio`, `output_format` or `seed` when
/// Stability has no equivalent.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    let (endpoint, sd3_model) = endpoint(target.upstream_model()).expect("validated by check_model");
    let ratio = mapping::aspect_ratio(request, &RATIOS)?;
    let format = match (request.output_format, sd3_model) {
        (Some(OutputFormat::Webp), Some(_)) => return Err(GatewayError::invalid_param("output_format", "Stability's SD3 models make png or jpeg, not webp.")),
        (format, _) => format.map(OutputFormat::name),
    };
    if let Some(seed) = request.seed.filter(|seed| u64::from(*seed) + u64::from(request.n) - 1 > MAX_SEED) {
        return Err(GatewayError::invalid_param("seed", format!("Stability takes seeds up to {MAX_SEED}, not {seed} (with n = {}).", request.n)));
    }
    let edit = edit(target, request, endpoint)?;
    let url = match &edit {
        Some(Edit { inpaint: true, .. }) => format!("{}/v2beta/stable-image/edit/inpaint", target.provider.base()),
        _ => format!("{}/v2beta/stable-image/generate/{endpoint}", target.provider.base()),
    };
    if let Some(edit) = edit.as_ref().filter(|_| request.seed.is_some() && request.n > 1) {
        // Each call's seed makes its own form, image included: bound what they hold together.
        let bytes = edit.inputs.images[0].bytes().len() + edit.inputs.mask.as_ref().map_or(0, |mask| mask.bytes().len());
        if bytes * usize::from(request.n) > MAX_EDIT_FORMS_BYTES {
            return Err(GatewayError::invalid_param(
                "n",
                format!(
                    "An edit with a seed sends Stability {} forms of {bytes} bytes; at most {MAX_EDIT_FORMS_BYTES} bytes together. Lower n, or leave out seed.",
                    request.n
                ),
            ));
        }
    }
    let form_for = |index: u8| {
        let seed = request.seed.map(|seed| (seed + u32::from(index)).to_string());
        let fields = [
            ("prompt", Some(request.prompt.as_str())),
            ("negative_prompt", request.negative_prompt.as_deref()),
            // An edit keeps its image's shape.
            ("aspect_ratio", ratio.filter(|_| edit.is_none())),
            ("seed", seed.as_deref()),
            ("output_format", format),
            ("model", sd3_model.filter(|_| !edit.as_ref().is_some_and(|edit| edit.inpaint))),
            ("mode", edit.as_ref().filter(|edit| !edit.inpaint && endpoint == "sd3").map(|_| "image-to-image")),
            ("strength", edit.as_ref().filter(|edit| !edit.inpaint).map(|_| EDIT_STRENGTH)),
        ];
        let form = fields.iter().filter_map(|(name, value)| value.map(|v| (*name, v))).fold(Form::new(), |form, (name, value)| form.text(name, value));
        let form = match &edit {
            Some(edit) => {
                let image = &edit.inputs.images[0];
                let form = form.file("image", image.format.filename(), image.format.media_type(), image.bytes());
                match &edit.inputs.mask {
                    Some(mask) => form.file("mask", "mask.png", mask.format.media_type(), mask.bytes()),
                    None => form,
                }
            }
            None => form,
        };
        form.finish()
    };
    // Without a seed every call's form is the same: written once, shared by the `n` calls.
    let shared = request.seed.is_none().then(|| form_for(0));
    let calls = (0..request.n)
        .map(|index| {
            let (content_type, body) = match &shared {
                Some((content_type, body)) => (content_type.clone(), std::rc::Rc::clone(body)),
                None => form_for(index),
            };
            let mut headers =
                vec![("content-type".to_owned(), HeaderValue::Plain(content_type)), ("accept".to_owned(), HeaderValue::Plain("application/json".to_owned()))];
            headers.extend(configured_headers(target));
            if let Some(key) = target.key {
                headers.push(("authorization".to_owned(), bearer(key)));
            }
            post(url.clone(), headers, body)
        })
        .collect();
    Ok(Plan { calls, relay: false })
}

/// An edit: its images, and whether it is an inpainting (with a mask).
struct Edit<'r> {
    inputs: &'r crate::inputs::Inputs,
    inpaint: bool,
}

/// The edit `request` asks of `endpoint`, if it is one; a 400 naming `image` when Stability
/// cannot make it.
fn edit<'r>(target: &Target, request: &'r ImageRequest, endpoint: &str) -> Result<Option<Edit<'r>>, GatewayError> {
    let Some(inputs) = request.inputs.as_deref() else { return Ok(None) };
    let refuse = |message: String| GatewayError::invalid_param("image", message).with_code("unsupported_parameter");
    if inputs.images.len() > 1 {
        return Err(refuse(format!("Stability edits one image, not {}.", inputs.images.len())));
    }
    if inputs.images[0].format == crate::inputs::ImageFormat::Gif {
        return Err(refuse("Stability edits PNG, JPEG or WebP images, not GIF.".to_owned()));
    }
    let inpaint = inputs.mask.is_some();
    if !inpaint && endpoint == "core" {
        return Err(refuse(format!("The model '{}' (Stability's core) edits only with a 'mask'; ultra and the SD3 models edit without one.", target.model_id)));
    }
    Ok(Some(Edit { inputs, inpaint }))
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// Reads an answer: JSON `{"image", "finish_reason"}`, or the image bytes themselves when the
/// answer's content type is `image/*`. `CONTENT_FILTERED` is a 403 (Stability blurs the image).
pub fn read_answer(target: &Target, content_type: Option<&str>, body: &[u8]) -> Result<Progress, AnswerError> {
    let id = &target.provider.id;
    let essence = content_type.and_then(|ct| ct.split(';').next()).map(str::trim).unwrap_or("");
    if let Some(subtype) = essence.strip_prefix("image/") {
        if body.is_empty() {
            return Err(errors::no_images(id));
        }
        let image = Image {
            data: ImageData::Base64(base64::engine::general_purpose::STANDARD.encode(body)),
            media_type: Some(format!("image/{subtype}")),
            revised_prompt: None,
        };
        return Ok(Progress::Done(Generated { images: vec![image], ..Generated::default() }));
    }
    let answer: Answer = wire::parse(target, body, "a Stability image answer")?;
    if answer.finish_reason.as_deref() == Some("CONTENT_FILTERED") {
        return Err(errors::refused(id, "the image was filtered by Stability's content moderation.", None));
    }
    match answer.image.filter(|image| !image.is_empty()) {
        Some(b64) => {
            let media_type = Some(format!("image/{}", sniff(&b64)));
            Ok(Progress::Done(Generated { images: vec![Image { data: ImageData::Base64(b64), media_type, revised_prompt: None }], ..Generated::default() }))
        }
        None => Err(errors::no_images(id)),
    }
}

/// The image type from the first base64 characters (the file signature).
fn sniff(b64: &str) -> &'static str {
    if b64.starts_with("/9j/") {
        "jpeg"
    } else if b64.starts_with("UklGR") {
        "webp"
    } else {
        "png"
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

/// Stability's `{"id","name","errors":[…]}`: the messages joined; `content_moderation` is a
/// refusal and `payment_required` a billing problem.
pub fn error_detail(body: &[u8]) -> Detail {
    let Ok(error) = serde_json::from_slice::<ErrorBody>(body) else { return Detail::default() };
    let code = match error.name.as_deref() {
        Some("content_moderation") => Some("content_policy_violation".to_owned()),
        Some("payment_required" | "insufficient_balance") => Some("insufficient_quota".to_owned()),
        other => other.map(str::to_owned),
    };
    let message = (!error.errors.is_empty()).then(|| error.errors.join("; "));
    Detail { message, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::testing::{request, with_target_in};
    use crate::providers::{check_params, read_error};

    use serde_json::{json, Value};

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/stability/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/stability/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/stability/error.json");

    fn config() -> Config {
        Config::from_json(
            r#"{"providers":[{"id":"stability","kind":"stability","api_key_secret":"K"}],
                "models":[{"id":"stability/core","provider":"stability","upstream_model":"core"},
                          {"id":"stability/sd3.5","provider":"stability","upstream_model":"sd3.5-large"}]}"#,
        )
        .unwrap()
    }

    fn with_target<T>(model: &str, f: impl FnOnce(&Target) -> T) -> T {
        with_target_in(&config(), model, "sk-stability-test", f)
    }

    /// The form fields of a multipart body, in order.
    fn form(call: &crate::upstream::UpstreamRequest) -> Vec<(String, String)> {
        let content_type = call.headers.iter().find(|(n, _)| n == "content-type").unwrap().1.expose().to_owned();
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        let text = String::from_utf8(call.body.to_vec()).unwrap();
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        text.split(&format!("--{boundary}"))
            .filter_map(|part| {
                let (head, value) = part.split_once("\r\n\r\n")?;
                let name = head.split("name=\"").nth(1)?.split('"').next()?;
                Some((name.to_owned(), value.trim_end_matches("\r\n").to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_documented_request_matches_the_golden_file() {
        let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
        with_target("stability/core", |target| {
            let plan = plan(
                target,
                &request(
                    r#"{"prompt":"Lighthouse on a cliff overlooking the ocean","aspect_ratio":"3:2","seed":42,"output_format":"webp","negative_prompt":"fog"}"#,
                ),
            )
            .unwrap();
            assert!(!plan.relay);
            let call = &plan.calls[0];
            assert_eq!(call.url, golden["url"]);
            assert_eq!(call.method.as_str(), golden["method"]);
            let header = |name: &str| call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.expose().to_owned());
            assert_eq!(header("authorization").as_deref(), golden["headers"]["authorization"].as_str());
            assert_eq!(header("accept").as_deref(), golden["headers"]["accept"].as_str());
            let fields: Value = form(call).into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>().into();
            assert_eq!(fields, golden["form"]);
            assert!(!format!("{call:?}").contains("sk-stability-test"));
        });
    }

    #[test]
    fn n_images_are_n_calls_with_consecutive_seeds_and_sizes_become_ratios() {
        with_target("stability/sd3.5", |target| {
            let plan = plan(target, &request(r#"{"prompt":"p","n":3,"size":"1792x1024","seed":7}"#)).unwrap();
            assert_eq!(plan.calls.len(), 3);
            assert!(plan.calls[0].url.ends_with("/v2beta/stable-image/generate/sd3"));
            let seeds: Vec<String> = plan.calls.iter().map(|c| form(c).into_iter().find(|(k, _)| k == "seed").unwrap().1).collect();
            assert_eq!(seeds, ["7", "8", "9"]);
            let fields = form(&plan.calls[0]);
            assert!(fields.contains(&("aspect_ratio".into(), "16:9".into())));
            assert!(fields.contains(&("model".into(), "sd3.5-large".into())));
        });
    }

    #[test]
    fn what_stability_cannot_do_is_a_400_naming_the_param() {
        with_target("stability/sd3.5", |target| {
            for (body, param) in [
                (r#"{"prompt":"p","size":"1000x100"}"#, "size"),
                (r#"{"prompt":"p","aspect_ratio":"4:3"}"#, "aspect_ratio"),
                (r#"{"prompt":"p","output_format":"webp"}"#, "output_format"),
                (r#"{"prompt":"p","seed":4294967295}"#, "seed"),
            ] {
                let Err(err) = plan(target, &request(body)) else { panic!("planned {body}") };
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
            }
            let err = check_params(target, &request(r#"{"prompt":"p","quality":"hd"}"#)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("quality"));
        });
        let bad = Config::from_json(
            r#"{"providers":[{"id":"s","kind":"stability","api_key_secret":"K"}],"models":[{"id":"s/x","provider":"s","upstream_model":"sdxl"}]}"#,
        );
        assert!(bad.unwrap_err().contains("models[0].upstream_model must be"));
    }

    #[test]
    fn json_and_raw_answers_read_into_images_and_filtered_ones_are_refusals() {
        let golden: Value = serde_json::from_str(GOLDEN_ANSWER).unwrap();
        with_target("stability/core", |target| {
            let Progress::Done(done) = read_answer(target, Some("application/json"), golden.to_string().as_bytes()).unwrap() else { panic!() };
            assert_eq!(done.images[0].data, ImageData::Base64(golden["image"].as_str().unwrap().to_owned()));
            assert_eq!(done.images[0].media_type.as_deref(), Some("image/png"));
            let Progress::Done(raw) = read_answer(target, Some("image/webp"), b"RIFFwebp").unwrap() else { panic!() };
            assert_eq!(raw.images[0].data, ImageData::Base64("UklGRndlYnA=".into()));
            assert_eq!(raw.images[0].media_type.as_deref(), Some("image/webp"));
            let filtered = json!({"image": "iVBOR", "finish_reason": "CONTENT_FILTERED", "seed": 1});
            let err = read_answer(target, Some("application/json"), filtered.to_string().as_bytes()).unwrap_err().to_error();
            assert_eq!((err.status(), err.code), (403, Some("content_policy_violation")));
            assert_eq!(read_answer(target, Some("application/json"), br#"{"finish_reason":"SUCCESS"}"#).unwrap_err().to_error().status(), 502);
            assert_eq!(read_answer(target, Some("application/json"), b"<html>").unwrap_err().to_error().status(), 502);
        });
    }

    #[test]
    fn documented_errors_map_to_the_gateway_set() {
        let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
        with_target("stability/core", |target| {
            for case in golden {
                let status = case["status"].as_u64().unwrap() as u16;
                let error = read_error(target, "/", status, None, case["body"].to_string().as_bytes());
                assert_eq!(error.status() as u64, case["gateway_status"].as_u64().unwrap(), "{case}");
                let said = case["body"]["errors"][0].as_str().unwrap();
                assert!(error.message.contains(said), "{}", error.message);
            }
        });
    }
}
