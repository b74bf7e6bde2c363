//! Google's Imagen through the Gemini API: `POST {base_url}/models/{model}:predict` (default
//! base `https://generativelanguage.googleapis.com/v1beta`) with the `x-goog-api-key` header.
//! One call makes up to four images (`sampleCount`).
//!
//! Followed: the Gemini API's "Generate images using Imagen" guide and REST reference
//! (ai.google.dev/gemini-api/docs/imagen: `instances[].prompt`, `parameters.sampleCount` 1–4,
//! `aspectRatio` 1:1, 3:4, 4:3, 9:16, 16:9, `sampleImageSize` 1K or 2K for the Standard and
//! Ultra models, `outputOptions.mimeType` `image/png` or `image/jpeg` with `compressionQuality`,
//! `includeRaiReason`; answer `predictions[].bytesBase64Encoded` with `mimeType`, a filtered
//! image as `raiFilteredReason`; google-genai's `GenerateImagesConfig` wire names) and Google's
//! API error model
//! (`{"error":{"code","message","status"}}`, cloud.google.com/apis/design/errors).
//!
//! Mapping: `n` → `sampleCount` (more than 4 is a 400 naming `n`); `aspect_ratio`, or `size`
//! mapped to the nearest listed ratio; `resolution` `1K`/`2K` → `sampleImageSize`;
//! `output_format` png/jpeg → `outputOptions.mimeType` (webp is a 400), `output_compression` →
//! `outputOptions.compressionQuality`. `includeRaiReason` is always set, so that a refusal says
//! why.

use serde::{Deserialize, Serialize};

use super::errors::{self, Detail};
use super::mapping;
use super::wire::{self, json_headers, post};
use super::{Adapter, AnswerError, Generated, Image, ImageData, Plan, Planned, Progress, Target};
use crate::error::GatewayError;
use crate::request::{ImageRequest, OutputFormat};
use crate::secret::Secret;
use crate::upstream::HeaderValue;

/// The request parameters Imagen takes (besides `n`).
pub const HONOURED: &[&str] = &["size", "aspect_ratio", "resolution", "output_format", "output_compression"];
/// The aspect ratios Imagen takes.
pub const RATIOS: [&str; 5] = ["1:1", "3:4", "4:3", "9:16", "16:9"];
/// The most images one predict call makes.
const MAX_SAMPLES: u8 = 4;

#[derive(Serialize)]
struct WireRequest<'a> {
    instances: [Instance<'a>; 1],
    parameters: Parameters<'a>,
}

#[derive(Serialize)]
struct Instance<'a> {
    prompt: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters<'a> {
    sample_count: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_image_size: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_options: Option<OutputOptions>,
    include_rai_reason: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutputOptions {
    mime_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression_quality: Option<u8>,
}

/// The `google_imagen` kind.
pub struct GoogleImagen;

impl Adapter for GoogleImagen {
    fn name(&self) -> &'static str {
        "google_imagen"
    }
    fn default_base_url(&self) -> Option<&'static str> {
        Some("https://generativelanguage.googleapis.com/v1beta")
    }
    fn honoured(&self) -> &'static [&'static str] {
        HONOURED
    }
    fn aspect_ratios(&self) -> Option<&'static [&'static str]> {
        Some(&RATIOS)
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

/// One predict call for all `n` images; a 400 naming `n`, `size`, `aspect_ratio`,
/// `resolution` or `output_format` when Imagen has no equivalent.
pub fn plan(target: &Target, request: &ImageRequest) -> Result<Plan, GatewayError> {
    if request.n > MAX_SAMPLES {
        return Err(GatewayError::invalid_param("n", format!("Imagen makes at most {MAX_SAMPLES} images per request, not {}.", request.n)));
    }
    let sample_image_size = match request.resolution.as_deref() {
        None => None,
        Some(size @ ("1K" | "2K")) => Some(size),
        Some(other) => return Err(GatewayError::invalid_param("resolution", format!("Imagen makes 1K or 2K images, not {other}."))),
    };
    let mime_type = match (request.output_format, request.output_compression) {
        (None, None) => None,
        (Some(OutputFormat::Png), None) => Some("image/png"),
        (Some(OutputFormat::Jpeg), _) | (None, Some(_)) => Some("image/jpeg"),
        (Some(OutputFormat::Png), Some(_)) => {
            return Err(GatewayError::invalid_param("output_compression", "Imagen compresses jpeg images only; ask for output_format jpeg."))
        }
        (Some(OutputFormat::Webp), _) => return Err(GatewayError::invalid_param("output_format", "Imagen makes png or jpeg images, not webp.")),
    };
    let body = WireRequest {
        instances: [Instance { prompt: &request.prompt }],
        parameters: Parameters {
            sample_count: request.n,
            aspect_ratio: mapping::aspect_ratio(request, &RATIOS)?,
            sample_image_size,
            output_options: mime_type.map(|mime_type| OutputOptions { mime_type, compression_quality: request.output_compression }),
            include_rai_reason: true,
        },
    };
    let mut headers = json_headers(target);
    if let Some(key) = target.key {
        headers.push(("x-goog-api-key".to_owned(), HeaderValue::Secret(Secret::new(key.expose()))));
    }
    let url = format!("{}/models/{}:predict", target.provider.base(), target.upstream_model());
    Ok(Plan::one(post(url, headers, serde_json::to_vec(&body).expect("the request is always serialisable"))))
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prediction {
    #[serde(default)]
    bytes_base64_encoded: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    rai_filtered_reason: Option<String>,
}

/// Reads `{"predictions":[{"bytesBase64Encoded","mimeType"}]}`. Filtered predictions are left
/// out; when every one was filtered, a 403 with Google's reason; none at all is a 502.
pub fn read_answer(target: &Target, body: &[u8]) -> Result<Progress, AnswerError> {
    let id = &target.provider.id;
    let answer: Answer = wire::parse(target, body, "an Imagen predict answer")?;
    let mut filtered = None;
    let images: Vec<Image> = answer
        .predictions
        .into_iter()
        .filter_map(|prediction| match prediction.bytes_base64_encoded.filter(|b| !b.is_empty()) {
            Some(b64) => Some(Image { data: ImageData::Base64(b64), media_type: prediction.mime_type, revised_prompt: None }),
            None => {
                filtered = filtered.take().or(prediction.rai_filtered_reason);
                None
            }
        })
        .collect();
    match (images.is_empty(), filtered) {
        (false, _) => Ok(Progress::Done(Generated { images, ..Generated::default() })),
        (true, Some(reason)) => Err(errors::refused(id, &reason, target.key)),
        (true, None) => Err(errors::no_images(id)),
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<ErrorInfo>,
}

#[derive(Deserialize)]
struct ErrorInfo {
    #[serde(default)]
    reason: Option<String>,
}

/// Google's `{"error":{"code","message","status","details"}}`; the status (`INVALID_ARGUMENT`,
/// `RESOURCE_EXHAUSTED`, …) is the code, except that `API_KEY_INVALID` (a 400) means the
/// gateway's provider key is wrong.
pub fn error_detail(body: &[u8]) -> Detail {
    let Ok(ErrorEnvelope { error }) = serde_json::from_slice::<ErrorEnvelope>(body) else { return Detail::default() };
    let key_invalid = error.details.iter().any(|d| d.reason.as_deref() == Some("API_KEY_INVALID"));
    let code = if key_invalid { Some(errors::PROVIDER_KEY_INVALID.to_owned()) } else { error.status };
    Detail { message: error.message, code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::testing::{request, with_target_in};
    use crate::providers::{check_params, read_error};

    use serde_json::{json, Value};

    const GOLDEN_REQUEST: &str = include_str!("../../tests/golden/google_imagen/request.json");
    const GOLDEN_ANSWER: &str = include_str!("../../tests/golden/google_imagen/answer.json");
    const GOLDEN_ERROR: &str = include_str!("../../tests/golden/google_imagen/error.json");

    fn with_target<T>(f: impl FnOnce(&Target) -> T) -> T {
        let config = Config::from_json(
            r#"{"providers":[{"id":"google","kind":"google_imagen","api_key_secret":"K"}],
                "models":[{"id":"google/imagen-4","provider":"google","upstream_model":"imagen-4.0-generate-001"}]}"#,
        )
        .unwrap();
        with_target_in(&config, "google/imagen-4", "goog-test-key", f)
    }

    #[test]
    fn the_documented_request_matches_the_golden_file() {
        let golden: Value = serde_json::from_str(GOLDEN_REQUEST).unwrap();
        with_target(|target| {
            let plan = plan(target, &request(r#"{"prompt":"Robot holding a red skateboard","n":4,"size":"1792x1024","resolution":"2K"}"#)).unwrap();
            assert!(!plan.relay);
            let call = &plan.calls[0];
            assert_eq!((call.method.as_str(), call.url.as_str()), (golden["method"].as_str().unwrap(), golden["url"].as_str().unwrap()));
            let header = |name: &str| call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.expose().to_owned());
            assert_eq!(header("x-goog-api-key").as_deref(), golden["headers"]["x-goog-api-key"].as_str());
            assert_eq!(header("content-type").as_deref(), golden["headers"]["content-type"].as_str());
            assert_eq!(serde_json::from_slice::<Value>(&call.body).unwrap(), golden["body"]);
            assert!(!format!("{call:?}").contains("goog-test-key"));
        });
    }

    #[test]
    fn what_imagen_cannot_do_is_a_400_naming_the_param() {
        with_target(|target| {
            for (body, param) in [
                (r#"{"prompt":"p","n":5}"#, "n"),
                (r#"{"prompt":"p","size":"1024x256"}"#, "size"),
                (r#"{"prompt":"p","aspect_ratio":"21:9"}"#, "aspect_ratio"),
                (r#"{"prompt":"p","resolution":"4K"}"#, "resolution"),
            ] {
                let Err(err) = plan(target, &request(body)) else { panic!("planned {body}") };
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
            }
            for (body, param) in [
                (r#"{"prompt":"p","output_format":"webp"}"#, "output_format"),
                (r#"{"prompt":"p","output_format":"png","output_compression":50}"#, "output_compression"),
            ] {
                let Err(err) = plan(target, &request(body)) else { panic!("planned {body}") };
                assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
            }
            for (body, param) in [(r#"{"prompt":"p","seed":1}"#, "seed"), (r#"{"prompt":"p","style":"vivid"}"#, "style")] {
                assert_eq!(check_params(target, &request(body)).unwrap_err().param.as_deref(), Some(param));
            }
            let body_of = |body: &str| serde_json::from_slice::<Value>(&plan(target, &request(body)).unwrap().calls[0].body).unwrap();
            assert_eq!(body_of(r#"{"prompt":"p"}"#), json!({"instances": [{"prompt": "p"}], "parameters": {"sampleCount": 1, "includeRaiReason": true}}));
            assert_eq!(
                body_of(r#"{"prompt":"p","output_format":"jpeg","output_compression":70}"#)["parameters"]["outputOptions"],
                json!({"mimeType": "image/jpeg", "compressionQuality": 70})
            );
            assert_eq!(body_of(r#"{"prompt":"p","output_format":"png"}"#)["parameters"]["outputOptions"], json!({"mimeType": "image/png"}));
        });
    }

    #[test]
    fn predictions_read_into_images_and_filtered_ones_are_left_out() {
        let golden: Value = serde_json::from_str(GOLDEN_ANSWER).unwrap();
        with_target(|target| {
            let Progress::Done(done) = read_answer(target, golden.to_string().as_bytes()).unwrap() else { panic!() };
            assert_eq!(done.images.len(), 2, "the filtered third prediction is left out");
            assert_eq!(done.images[0].data, ImageData::Base64(golden["predictions"][0]["bytesBase64Encoded"].as_str().unwrap().into()));
            assert_eq!(done.images[1].media_type.as_deref(), Some("image/png"));
            let all_filtered = json!({"predictions": [{"raiFilteredReason": "Your current safety filter threshold filtered out the generated image."}]});
            let err = read_answer(target, all_filtered.to_string().as_bytes()).unwrap_err().to_error();
            assert_eq!((err.status(), err.code), (403, Some("content_policy_violation")));
            assert!(err.message.contains("safety filter"));
            assert_eq!(read_answer(target, b"{}").unwrap_err().to_error().code, Some("empty_upstream_answer"));
            assert_eq!(read_answer(target, b"[1]").unwrap_err().to_error().status(), 502);
        });
    }

    #[test]
    fn documented_errors_map_to_the_gateway_set() {
        let golden: Vec<Value> = serde_json::from_str(GOLDEN_ERROR).unwrap();
        with_target(|target| {
            for case in golden {
                let status = case["status"].as_u64().unwrap() as u16;
                let error = read_error(target, "/", status, None, case["body"].to_string().as_bytes());
                assert_eq!(error.status() as u64, case["gateway_status"].as_u64().unwrap(), "{case}");
                if case["gateway_status"] != 502 || status >= 500 {
                    assert!(error.message.contains(case["body"]["error"]["message"].as_str().unwrap()), "{}", error.message);
                }
            }
        });
    }
}
