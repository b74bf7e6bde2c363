//! What an answer costs, from the model's configured price lines (OpenRouter's catalogue
//! shape): the `x-imagegate-cost-usd` header and `usage.cost`.

use crate::config::{ModelConfig, PriceUnit};
use crate::request::{ImageRequest, Size};

/// The pixels assumed for `size: auto` or no size.
const DEFAULT_PIXELS: f64 = 1024.0 * 1024.0;

/// The cost of generating `images` images for `request` on `model`: the sum of its `request`,
/// `image` and `megapixel` lines (megapixels from the requested `size`, 1024x1024 when `auto`).
/// Token lines cannot be priced before the answer is read and are left out. `None` when no line
/// applies.
pub fn cost(model: &ModelConfig, request: &ImageRequest, images: usize) -> Option<f64> {
    let pixels = match request.size {
        Some(Size::Pixels { width, height }) => width as f64 * height as f64,
        _ => DEFAULT_PIXELS,
    };
    let amounts: Vec<f64> = model
        .pricing
        .iter()
        .filter_map(|line| match line.unit {
            PriceUnit::Request => Some(line.cost_usd),
            PriceUnit::Image => Some(line.cost_usd * images as f64),
            PriceUnit::Megapixel => Some(line.cost_usd * images as f64 * pixels / 1_000_000.0),
            PriceUnit::Token => None,
        })
        .collect();
    (!amounts.is_empty()).then(|| amounts.iter().sum())
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
        cost(&config.models[0], &request, images)
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
