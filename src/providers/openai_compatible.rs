//! The `openai_compatible` adapter. Not written yet: every call is a 500 naming the kind.

use super::{Plan, Target};
use crate::error::{ErrorKind, GatewayError};
use crate::request::ImageRequest;

fn unwritten() -> GatewayError {
    GatewayError::new(ErrorKind::Internal, "The 'openai_compatible' adapter is not available in this build.")
}

pub fn plan(_target: &Target, _request: &ImageRequest) -> Result<Plan, GatewayError> {
    Err(unwritten())
}
