//! `imagegate/test-pattern`: a provider that renders a deterministic PNG inside the worker.
//!
//! No network and no account: it is the embedded default and what tests and benchmarks use. The
//! picture is colour bars over a checkerboard, with colours drawn from the SHA-256 of the prompt
//! and the image's index, so the same request always gives the same bytes and each of `n` images
//! differs. It edits and makes variations too: the pattern at the first image's size (unless the
//! request sets one), its colours drawn from the prompt and the digest of every image sent in, so
//! other input bytes give another picture.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{Adapter, AnswerError, Generated, Image, ImageData, Planned, Progress, Target};
use crate::error::GatewayError;
use crate::inputs::Operation;
use crate::png::{encode_palette4, Row};
use crate::request::{ImageRequest, OutputFormat, Size};

/// The request parameters it accepts: the OpenAI ones (it ignores what it cannot show).
pub const HONOURED: &[&str] = super::openai::HONOURED;

/// Smallest side, in pixels.
pub const MIN_SIDE: u32 = 16;
/// Largest side, in pixels.
pub const MAX_SIDE: u32 = 2048;
/// The size used for `auto` or no size.
pub const AUTO_SIDE: u32 = 1024;
/// The most pixels one request renders, all `n` images together (8 Mi: two 2048x2048 images,
/// eight 1024x1024). Rendering costs about 0.15 µs a pixel natively (`--release`), so a request
/// stays a few milliseconds of CPU in wasm, well inside the Workers limits.
pub const MAX_PIXELS: u64 = 8 << 20;

const BARS: u32 = 8;
const CHECKS: u32 = 16;

/// The `test_pattern` kind.
pub struct TestPattern;

impl Adapter for TestPattern {
    fn name(&self) -> &'static str {
        "test_pattern"
    }
    fn calls_upstream(&self) -> bool {
        false
    }
    fn honoured(&self) -> &'static [&'static str] {
        HONOURED
    }
    fn takes(&self, _operation: Operation) -> bool {
        true
    }
    fn honoured_in(&self, operation: Operation) -> &'static [&'static str] {
        match operation {
            // What OpenAI's variations take; edits and generations take the same fields here.
            Operation::Variation => super::openai::HONOURED_IN_VARIATIONS,
            _ => HONOURED,
        }
    }
    fn output_formats(&self) -> &'static [&'static str] {
        &["png"]
    }
    fn plan(&self, _target: &Target, request: &ImageRequest) -> Result<Planned, GatewayError> {
        generate(request).map(Planned::Made)
    }
    fn read_answer(&self, _target: &Target, _content_type: Option<&str>, _body: &[u8]) -> Result<Progress, AnswerError> {
        unreachable!("the test pattern makes its images without a call")
    }
}

/// Renders `n` PNGs for `request` as base64. 400 naming `size` or `output_format` when they
/// can't be honoured.
pub fn generate(request: &ImageRequest) -> Result<Generated, GatewayError> {
    let input_size = request.inputs.as_ref().and_then(|inputs| inputs.images[0].size);
    let (width, height) = match (request.size, input_size) {
        (None | Some(Size::Auto), Some((width, height))) => dimensions(Some(Size::Pixels { width, height })).map_err(|_| {
            GatewayError::invalid_param(
                "image",
                format!(
                    "imagegate/test-pattern edits images with sides from {MIN_SIDE} to {MAX_SIDE} pixels, not {width}x{height}; send a 'size' in that range."
                ),
            )
        })?,
        (size, _) => dimensions(size)?,
    };
    // An edit's picture depends on the images sent in as well as on the prompt.
    let seed = match &request.inputs {
        Some(inputs) => format!("{}\n{}", request.prompt, inputs.digest()),
        None => request.prompt.clone(),
    };
    // A streamed answer's partial images: the first image's, of lower detail, before it.
    let partials = if request.stream { request.partial_images.unwrap_or(0) } else { 0 };
    let pixels = (u64::from(request.n) + u64::from(partials)) * u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(GatewayError::invalid_param(
            "size",
            format!(
                "imagegate/test-pattern renders at most {MAX_PIXELS} pixels per request ((n + partial_images) × width × height); {} × {width}x{height} is {pixels}.",
                request.n + partials
            ),
        ));
    }
    if matches!(request.output_format, Some(OutputFormat::Jpeg | OutputFormat::Webp)) {
        return Err(GatewayError::invalid_param("output_format", "imagegate/test-pattern renders PNG only; omit 'output_format' or set it to 'png'."));
    }
    let png = |png: Vec<u8>| Image {
        data: ImageData::Base64(base64::engine::general_purpose::STANDARD.encode(png)),
        media_type: Some("image/png".to_owned()),
        revised_prompt: None,
    };
    let images = (0..request.n).map(|index| png(render(&seed, index, width, height, 0))).collect();
    // Coarsest first: each partial image has half the bars and checks of the next.
    let partials = (0..partials).map(|i| png(render(&seed, 0, width, height, u32::from(partials - i)))).collect();
    Ok(Generated { images, partials, ..Generated::default() })
}

fn dimensions(size: Option<Size>) -> Result<(u32, u32), GatewayError> {
    match size {
        None | Some(Size::Auto) => Ok((AUTO_SIDE, AUTO_SIDE)),
        Some(Size::Pixels { width, height }) => {
            let fits = |side: u32| (MIN_SIDE..=MAX_SIDE).contains(&side);
            if fits(width) && fits(height) {
                Ok((width, height))
            } else {
                Err(GatewayError::invalid_param(
                    "size",
                    format!("imagegate/test-pattern renders sides from {MIN_SIDE} to {MAX_SIDE} pixels, not {width}x{height}."),
                ))
            }
        }
    }
}

/// One PNG: the top three quarters are `BARS` vertical bars, the rest a checkerboard; each step
/// of `coarser` halves the bars and the checks (a partial image's lower detail).
fn render(prompt: &str, index: u8, width: u32, height: u32, coarser: u32) -> Vec<u8> {
    let (bars, checks) = ((BARS >> coarser).max(1), (CHECKS >> coarser).max(2));
    let seed: [u8; 32] = Sha256::new().chain_update(prompt.as_bytes()).chain_update([index]).finalize().into();
    // 16 colours: the digest's bytes read as RGB triples, brightened so the picture is never black.
    let palette: Vec<[u8; 3]> = (0..16).map(|i| [0, 1, 2].map(|c| 64 | seed[(i * 3 + c) % 32])).collect();
    let bar_row = pixel_row(width, |x| (x * bars / width) as u8);
    let check_rows = [0u32, 1].map(|phase| pixel_row(width, |x| if (x * checks / width + phase) % 2 == 0 { 8 + seed[0] % 4 } else { 12 + seed[1] % 4 }));
    let bars_end = height * 3 / 4;
    let check_height = (height / checks).max(1);
    let rows = (0..height).map(|y| {
        if y == 0 {
            Row::Pixels(&bar_row)
        } else if y < bars_end {
            Row::SameAsAbove
        } else {
            let band = (y - bars_end) / check_height;
            let band_start = y == bars_end || (y - bars_end) % check_height == 0;
            if band_start {
                Row::Pixels(&check_rows[(band % 2) as usize])
            } else {
                Row::SameAsAbove
            }
        }
    });
    encode_palette4(width, height, &palette, rows)
}

/// A row of 4-bit palette indices, two pixels a byte, high nibble first.
fn pixel_row(width: u32, colour_at: impl Fn(u32) -> u8) -> Vec<u8> {
    (0..width.div_ceil(2))
        .map(|pair| {
            let left = colour_at(pair * 2);
            let right = if pair * 2 + 1 < width { colour_at(pair * 2 + 1) } else { 0 };
            (left << 4) | (right & 0x0f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_generation;

    fn request(body: &str) -> ImageRequest {
        parse_generation(Some("application/json"), body.as_bytes(), 1 << 20).unwrap()
    }

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(png_bytes).read_info().expect("a valid PNG header");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("valid PNG data");
        (info, pixels)
    }

    fn pngs(body: &str) -> Vec<Vec<u8>> {
        let generated = generate(&request(body)).unwrap();
        generated
            .images
            .iter()
            .map(|image| {
                assert_eq!(image.media_type.as_deref(), Some("image/png"));
                let ImageData::Base64(b64) = &image.data else { panic!("base64 expected") };
                base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_request_renders_at_most_max_pixels() {
        assert_eq!(pngs(r#"{"prompt":"p","n":2,"size":"2048x2048"}"#).len(), 2, "exactly the limit");
        for body in [r#"{"prompt":"p","n":3,"size":"2048x2048"}"#, r#"{"prompt":"p","n":10,"size":"1024x1024"}"#, r#"{"prompt":"p","n":9}"#] {
            let err = generate(&request(body)).unwrap_err();
            assert_eq!((err.status(), err.param.as_deref()), (400, Some("size")), "{body}");
            assert!(err.message.contains(&MAX_PIXELS.to_string()), "{}", err.message);
        }
    }

    #[test]
    fn renders_n_decodable_pngs_of_the_requested_size() {
        let pngs = pngs(r#"{"prompt":"a lighthouse","n":3,"size":"333x77"}"#);
        assert_eq!(pngs.len(), 3);
        for png_bytes in &pngs {
            let (info, _) = decode(png_bytes);
            assert_eq!((info.width, info.height), (333, 77));
        }
        assert_ne!(pngs[0], pngs[1], "each image of n differs");
    }

    #[test]
    fn is_deterministic_per_prompt() {
        assert_eq!(pngs(r#"{"prompt":"same"}"#), pngs(r#"{"prompt":"same"}"#));
        assert_ne!(pngs(r#"{"prompt":"same"}"#), pngs(r#"{"prompt":"different"}"#));
    }

    #[test]
    fn auto_is_1024_square_and_the_picture_has_bars_and_checks() {
        let pngs = pngs(r#"{"prompt":"p","size":"auto"}"#);
        let (info, pixels) = decode(&pngs[0]);
        assert_eq!((info.width, info.height, info.bit_depth), (1024, 1024, png::BitDepth::Four));
        let at = |x: usize, y: usize| (pixels[y * info.line_size + x / 2] >> if x % 2 == 0 { 4 } else { 0 }) & 0x0f;
        assert_eq!((at(0, 0), at(1023, 0), at(1023, 700)), (0, 7, 7), "eight bars, left to right");
        assert!(at(10, 1000) >= 8, "the checkerboard uses the upper palette half");
    }

    #[test]
    fn large_images_stay_small() {
        let pngs = pngs(r#"{"prompt":"p","size":"2048x2048"}"#);
        assert_eq!(decode(&pngs[0]).0.width, 2048);
        assert!(pngs[0].len() < 32 * 1024, "compressed: {} bytes", pngs[0].len());
    }

    #[test]
    fn sizes_and_formats_it_cannot_render_are_400s_naming_the_param() {
        for (body, param) in [
            (r#"{"prompt":"p","size":"15x100"}"#, "size"),
            (r#"{"prompt":"p","size":"2049x100"}"#, "size"),
            (r#"{"prompt":"p","output_format":"jpeg"}"#, "output_format"),
        ] {
            let err = generate(&request(body)).unwrap_err();
            assert_eq!((err.status(), err.param.as_deref()), (400, Some(param)), "{body}");
        }
    }
}
