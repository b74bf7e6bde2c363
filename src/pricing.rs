//! TEMPORARY STUB (replaced by helper-d's module)
use crate::config::ModelConfig;
use crate::request::ImageRequest;
pub fn cost(_model: &ModelConfig, _request: &ImageRequest, _images: usize) -> Option<f64> { None }
pub fn header_value(cost: f64) -> String { format!("{cost}") }
