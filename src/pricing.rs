//! What an answer costs, from the model's configured price lines (OpenRouter's catalogue
//! shape): the `x-imagegate-cost-usd` header and `usage.cost`.

use crate::config::{ModelConfig, PriceLine, PriceUnit};
pub use crate::providers::Tokens;
use crate::request::{ImageRequest, Size};

/// The pixels assumed for `size: auto` or no size.
const DEFAULT_PIXELS: f64 = 1024.0 * 1024.0;

/// The tokens of `line`'s `billable` in `tokens`.
fn billed(line: &PriceLine, tokens: &Tokens) -> u64 {
    match line.billable.as_str() {
        "input_text" | "input" => tokens.input_text,
        "input_image" => tokens.input_image,
        _ => tokens.output,
    }
}

fn pixels(request: &ImageRequest) -> f64 {
    match request.size {
        Some(Size::Pixels { width, height }) => width as f64 * height as f64,
        _ => DEFAULT_PIXELS,
    }
}

/// The cost of `images` images for `request` on `model`: the sum of its `request`, `image` and
/// `megapixel` lines (megapixels from the requested `size`, 1024x1024 when `auto`) and, when the
/// upstream reported them, its `token` lines priced by the tokens billed. `None` when no line
/// applies (a model with only token lines, and no usage reported).
pub fn cost(model: &ModelConfig, request: &ImageRequest, images: usize, tokens: Option<&Tokens>) -> Option<f64> {
    let pixels = pixels(request);
    let amounts: Vec<f64> = model
        .pricing
        .iter()
        .filter_map(|line| match line.unit {
            PriceUnit::Request => Some(line.cost_usd),
            PriceUnit::Image => Some(line.cost_usd * images as f64),
            PriceUnit::Megapixel => Some(line.cost_usd * images as f64 * pixels / 1_000_000.0),
            PriceUnit::Token => tokens.map(|tokens| line.cost_usd * billed(line, tokens) as f64),
        })
        .collect();
    (!amounts.is_empty()).then(|| amounts.iter().sum())
}

/// The most `request` can cost on `model` (all `n` images), which a budget holds before the
/// call; `Err` says why it cannot be known: no price at all, or a token line with no bound.
/// Text input tokens are bounded by the prompt's bytes (a token is at least one byte).
pub fn most(model: &ModelConfig, request: &ImageRequest) -> Result<f64, String> {
    if model.pricing.is_empty() {
        return Err(format!("the model '{}' has no price", model.id));
    }
    let images = f64::from(request.n);
    let prompt_bytes = (request.prompt.len() + request.negative_prompt.as_ref().map_or(0, String::len)) as f64;
    model.pricing.iter().try_fold(0.0, |sum, line| {
        let amount = match line.unit {
            PriceUnit::Request => line.cost_usd,
            PriceUnit::Image => line.cost_usd * images,
            PriceUnit::Megapixel => line.cost_usd * images * pixels(request) / 1_000_000.0,
            PriceUnit::Token => match (line.billable.as_str(), line.max_tokens_per_image) {
                ("input_text" | "input", _) => line.cost_usd * prompt_bytes,
                // A generation sends no image; an edit's images are bounded like outputs.
                ("input_image", _) if request.inputs.is_none() => 0.0,
                ("input_image", Some(max)) => {
                    let inputs = request.inputs.as_ref().expect("checked");
                    line.cost_usd * (inputs.images.len() + usize::from(inputs.mask.is_some())) as f64 * max as f64
                }
                (_, Some(max)) => line.cost_usd * images * max as f64,
                (billable, None) => return Err(format!("the model '{}' bills {billable} tokens with no max_tokens_per_image to bound them", model.id)),
            },
        };
        Ok(sum + amount)
    })
}

/// Whether `model` is priced by tokens (its answers must be read to be priced).
pub fn by_tokens(model: &ModelConfig) -> bool {
    model.pricing.iter().any(|line| line.unit == PriceUnit::Token)
}

/// A cost as the header writes it: at most six decimals, no trailing zeros (`0.04`, `0`).
pub fn header_value(cost: f64) -> String {
    let text = format!("{:.6}", cost.max(0.0));
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    trimmed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::request::parse_generation;

    fn model_with(pricing: &str) -> Config {
        Config::from_json(&format!(r#"{{"providers":[{{"id":"a","kind":"test_pattern"}}],"models":[{{"id":"a/m","provider":"a","pricing":{pricing}}}]}}"#))
            .unwrap()
    }

    fn cost_of(pricing: &str, body: &str, images: usize) -> Option<f64> {
        let config = model_with(pricing);
        let request = parse_generation(Some("application/json"), body.as_bytes(), 1 << 20).unwrap();
        cost(&config.models[0], &request, images, None)
    }

    #[test]
    fn each_unit_adds_its_share() {
        let p = r#"{"prompt":"p","size":"2000x500"}"#;
        assert_eq!(cost_of(r#"[{"cost_usd":0.04,"unit":"image"}]"#, p, 3), Some(0.12));
        assert_eq!(cost_of(r#"[{"cost_usd":0.01,"unit":"request"}]"#, p, 3), Some(0.01));
        assert_eq!(cost_of(r#"[{"cost_usd":0.02,"unit":"megapixel"}]"#, p, 2), Some(0.04), "two images of one megapixel");
        let auto = cost_of(r#"[{"cost_usd":1.0,"unit":"megapixel"}]"#, r#"{"prompt":"p"}"#, 1).unwrap();
        assert!((auto - 1.048576).abs() < 1e-9, "auto counts as 1024x1024: {auto}");
        let mixed = cost_of(r#"[{"cost_usd":0.01,"unit":"request"},{"cost_usd":0.04,"unit":"image"},{"cost_usd":5e-6,"unit":"token"}]"#, p, 2);
        assert_eq!(mixed, Some(0.09), "tokens are not added");
    }

    #[test]
    fn token_lines_price_the_reported_tokens_and_bound_the_most() {
        let pricing = r#"[{"billable":"input_text","cost_usd":5e-6,"unit":"token"},{"billable":"input_image","cost_usd":1e-5,"unit":"token"},{"billable":"output_image","cost_usd":4e-5,"unit":"token","max_tokens_per_image":6240}]"#;
        let config = model_with(pricing);
        let request = parse_generation(Some("application/json"), br#"{"prompt":"a cat","n":2}"#, 1 << 20).unwrap();
        let tokens = Tokens { input_text: 10, input_image: 100, output: 4160 };
        let billed = cost(&config.models[0], &request, 2, Some(&tokens)).unwrap();
        assert!((billed - (10.0 * 5e-6 + 100.0 * 1e-5 + 4160.0 * 4e-5)).abs() < 1e-12, "{billed}");
        let dearest = most(&config.models[0], &request).unwrap();
        assert!((dearest - (5.0 * 5e-6 + 2.0 * 6240.0 * 4e-5)).abs() < 1e-12, "{dearest}");
        let unbounded = model_with(r#"[{"cost_usd":4e-5,"unit":"token"}]"#);
        assert!(most(&unbounded.models[0], &request).unwrap_err().contains("max_tokens_per_image"));
        assert!(most(&model_with("[]").models[0], &request).unwrap_err().contains("no price"));
        assert!(by_tokens(&config.models[0]) && !by_tokens(&model_with(r#"[{"cost_usd":0.04,"unit":"image"}]"#).models[0]));
    }

    #[test]
    fn no_price_or_only_tokens_is_no_cost() {
        assert_eq!(cost_of("[]", r#"{"prompt":"p"}"#, 1), None);
        assert_eq!(cost_of(r#"[{"cost_usd":5e-6,"unit":"token","billable":"input_text"}]"#, r#"{"prompt":"p"}"#, 1), None);
    }

    #[test]
    fn the_header_has_at_most_six_decimals_and_no_trailing_zeros() {
        assert_eq!(header_value(0.04), "0.04");
        assert_eq!(header_value(0.12000000000000001), "0.12");
        assert_eq!(header_value(0.0001234), "0.000123");
        assert_eq!(header_value(2.0), "2");
        assert_eq!(header_value(0.0), "0");
    }
}
