//! Mapping rules shared by adapters whose providers take aspect ratios rather than pixel sizes.
//! README's provider table documents them.

use crate::error::GatewayError;
use crate::request::{ImageRequest, Size, MAX_ASPECT_RATIO};

/// How far (relative) a size's ratio may be from a provider's ratio and still map to it:
/// 1792x1024 (1.75) maps to 16:9 (1.78), 1024x1536 (0.667) to 2:3.
const RATIO_TOLERANCE: f64 = 0.05;

/// The value of a `W:H` ratio.
pub fn ratio_value(ratio: &str) -> Option<f64> {
    let (w, h) = ratio.split_once(':')?;
    let (w, h) = (w.parse::<f64>().ok()?, h.parse::<f64>().ok()?);
    (w > 0.0 && h > 0.0).then_some(w / h)
}

/// The provider aspect ratio for `request`, from `supported` (e.g. `["1:1", "16:9", …]`):
/// `aspect_ratio` when the request sets it (it must be in the list), else the ratio nearest a
/// `size` of `WxH` (within 5%), else `None` (the provider's default). A 400 naming the parameter
/// when nothing in the list matches.
pub fn aspect_ratio<'s>(request: &ImageRequest, supported: &[&'s str]) -> Result<Option<&'s str>, GatewayError> {
    if let Some(asked) = request.aspect_ratio.as_deref().filter(|r| *r != "auto") {
        return match supported.iter().find(|s| **s == asked) {
            Some(found) => Ok(Some(found)),
            None => Err(GatewayError::invalid_param(
                "aspect_ratio",
                format!("This model does not support aspect_ratio '{asked}'; it supports: '{}'.", supported.join("', '")),
            )),
        };
    }
    let Some(Size::Pixels { width, height }) = request.size else { return Ok(None) };
    let wanted = width as f64 / height as f64;
    let nearest = supported.iter().filter_map(|s| ratio_value(s).map(|v| (*s, ((v / wanted) - 1.0).abs()))).min_by(|a, b| a.1.total_cmp(&b.1));
    match nearest {
        Some((ratio, off)) if off <= RATIO_TOLERANCE => Ok(Some(ratio)),
        _ => Err(GatewayError::invalid_param(
            "size",
            format!(
                "This model takes aspect ratios, and {width}x{height} is not close to any it supports ('{}'). Use a size with one of those ratios, or set aspect_ratio.",
                supported.join("', '")
            ),
        )),
    }
}

/// Width and height for providers that take pixels with limits: `size` when given, else the
/// `aspect_ratio` applied to about one megapixel, each side rounded to a multiple of `step`.
/// `None` when the request sets neither.
pub fn pixels(request: &ImageRequest, step: u32) -> Option<(u32, u32)> {
    if let Some(Size::Pixels { width, height }) = request.size {
        return Some((width, height));
    }
    // Validation bounds the ratio (at most 100:1), so each side stays far inside u32; the
    // clamp and the saturating product keep even an unchecked ratio from overflowing.
    let ratio = request.aspect_ratio.as_deref().and_then(ratio_value)?.clamp(1.0 / MAX_ASPECT_RATIO, MAX_ASPECT_RATIO);
    let step = step.max(1);
    let round = |v: f64| ((v / f64::from(step)).round() as u32).max(1).saturating_mul(step);
    let height = (1_048_576.0 / ratio).sqrt();
    Some((round(height * ratio), round(height)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_generation;

    const RATIOS: [&str; 5] = ["1:1", "16:9", "9:16", "3:2", "2:3"];

    fn request(body: &str) -> ImageRequest {
        parse_generation(Some("application/json"), body.as_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn sizes_map_to_the_nearest_supported_ratio() {
        let cases = [("1024x1024", "1:1"), ("1792x1024", "16:9"), ("1024x1792", "9:16"), ("1536x1024", "3:2"), ("1024x1536", "2:3")];
        for (size, ratio) in cases {
            let req = request(&format!(r#"{{"prompt":"p","size":"{size}"}}"#));
            assert_eq!(aspect_ratio(&req, &RATIOS).unwrap(), Some(ratio), "{size}");
        }
        assert_eq!(aspect_ratio(&request(r#"{"prompt":"p","size":"auto"}"#), &RATIOS).unwrap(), None);
        let err = aspect_ratio(&request(r#"{"prompt":"p","size":"1000x100"}"#), &RATIOS).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("size"));
    }

    #[test]
    fn an_explicit_aspect_ratio_wins_and_must_be_supported() {
        let req = request(r#"{"prompt":"p","size":"1024x1024","aspect_ratio":"16:9"}"#);
        assert_eq!(aspect_ratio(&req, &RATIOS).unwrap(), Some("16:9"));
        let err = aspect_ratio(&request(r#"{"prompt":"p","aspect_ratio":"21:9"}"#), &RATIOS).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("aspect_ratio"));
    }

    #[test]
    fn extreme_ratios_are_refused_and_the_bounded_ones_never_overflow() {
        for ratio in ["99999999:0.000001", "0.000001:99999999", "101:1", "1:100.5"] {
            let err = crate::request::parse_generation(Some("application/json"), format!(r#"{{"prompt":"p","aspect_ratio":"{ratio}"}}"#).as_bytes(), 1 << 20)
                .unwrap_err();
            assert_eq!(err.param.as_deref(), Some("aspect_ratio"), "{ratio}");
        }
        assert_eq!(pixels(&request(r#"{"prompt":"p","aspect_ratio":"100:1"}"#), 32), Some((10240, 96)));
        assert_eq!(pixels(&request(r#"{"prompt":"p","aspect_ratio":"1:100"}"#), 32), Some((96, 10240)));
        let mut unchecked = request(r#"{"prompt":"p"}"#);
        unchecked.aspect_ratio = Some("99999999:0.000001".into());
        assert_eq!(pixels(&unchecked, 32), Some((10240, 96)), "clamped, not overflowed");
    }

    #[test]
    fn pixels_come_from_size_or_from_the_ratio_at_a_megapixel() {
        assert_eq!(pixels(&request(r#"{"prompt":"p","size":"512x768"}"#), 32), Some((512, 768)));
        assert_eq!(pixels(&request(r#"{"prompt":"p","aspect_ratio":"16:9"}"#), 32), Some((1376, 768)));
        assert_eq!(pixels(&request(r#"{"prompt":"p"}"#), 32), None);
    }
}
