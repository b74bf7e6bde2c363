//! TEMPORARY STUB (replaced by helper-d's module)
use crate::config::Config;
use crate::error::GatewayError;
pub fn openai_models(_config: &Config) -> Vec<u8> { b"{}".to_vec() }
pub fn image_models(_config: &Config) -> Vec<u8> { b"{}".to_vec() }
pub fn endpoints(_config: &Config, _a: &str, _s: &str) -> Result<Vec<u8>, GatewayError> { Ok(b"{}".to_vec()) }
