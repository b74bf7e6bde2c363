//! The `replicate` adapter. Not written yet: every call is a 500 naming the kind.

use super::errors::Detail;
use super::{Plan, Progress, Target};
use crate::error::{ErrorKind, GatewayError};
use crate::request::ImageRequest;

/// The request parameters this kind honours.
pub const HONOURED: &[&str] = &[];

fn unwritten() -> GatewayError {
    GatewayError::new(ErrorKind::Internal, "The 'replicate' adapter is not available in this build.")
}

pub fn plan(_target: &Target, _request: &ImageRequest) -> Result<Plan, GatewayError> {
    Err(unwritten())
}

pub fn read_answer(_target: &Target, _body: &[u8]) -> Result<Progress, GatewayError> {
    Err(unwritten())
}

pub fn error_detail(_body: &[u8]) -> Detail {
    Detail::default()
}

pub fn check_model(_model: &crate::config::ModelConfig) -> Result<(), String> {
    Ok(())
}
