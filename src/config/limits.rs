//! The limits a deployment puts on each request: deadline, body size, retries, attempts,
//! subrequests and the bytes read from upstreams. Their defaults and their bounds live here.

use super::{Config, Problem};
use crate::policy::MAX_RETRY_COUNT;

/// The whole-request deadline when none is configured: 150 seconds.
pub const DEFAULT_DEADLINE_MS: u64 = 150_000;
/// The most upstream requests per request when none is configured: the Workers Free plan's limit.
pub const DEFAULT_MAX_SUBREQUESTS: u32 = 50;
/// The largest request body accepted when none is configured: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The largest edit or variation body accepted when none is configured: 25 MiB (images in
/// base64 would be a third larger; the Workers platform takes request bodies up to 100 MB).
pub const DEFAULT_MAX_EDIT_BODY_BYTES: usize = 25 << 20;
/// The most an edit body may be configured to: 90 MiB, under the platform's 100 MB.
const MAX_EDIT_BODY_BYTES: usize = 90 << 20;
/// The most upstream attempts that may be paid for in one request when none is configured.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// The most bytes of upstream answers one request reads into the gateway when none is
/// configured: 32 MiB, well inside an isolate's 128 MB with the answer rendered from them.
pub const DEFAULT_MAX_UPSTREAM_BYTES: usize = 32 << 20;
/// How long actions are kept when nothing is configured: 30 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// The bounds of `max_upstream_bytes`.
const UPSTREAM_BYTES_RANGE: std::ops::RangeInclusive<usize> = (1 << 20)..=(64 << 20);

pub(super) fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

pub(super) fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

pub(super) fn default_max_edit_body_bytes() -> usize {
    DEFAULT_MAX_EDIT_BODY_BYTES
}

pub(super) fn default_max_retry_count() -> u8 {
    MAX_RETRY_COUNT
}

pub(super) fn default_max_subrequests() -> u32 {
    DEFAULT_MAX_SUBREQUESTS
}

pub(super) fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

pub(super) fn default_max_upstream_bytes() -> usize {
    DEFAULT_MAX_UPSTREAM_BYTES
}

pub(super) fn default_retention_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

/// Each limit outside its bounds.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    if !(1..=900_000).contains(&config.deadline_ms) {
        problems.push(Problem::at("deadline_ms", format!("deadline_ms must be between 1 and 900000, not {}", config.deadline_ms)));
    }
    if config.max_retry_count > MAX_RETRY_COUNT {
        problems.push(Problem::at("max_retry_count", format!("max_retry_count must be at most {MAX_RETRY_COUNT}, not {}", config.max_retry_count)));
    }
    if !(1..=10_000).contains(&config.max_subrequests) {
        problems.push(Problem::at("max_subrequests", format!("max_subrequests must be between 1 and 10000, not {}", config.max_subrequests)));
    }
    if !(1..=20).contains(&config.max_attempts) {
        problems.push(Problem::at("max_attempts", format!("max_attempts must be between 1 and 20, not {}", config.max_attempts)));
    }
    if !UPSTREAM_BYTES_RANGE.contains(&config.max_upstream_bytes) {
        let (min, max) = (UPSTREAM_BYTES_RANGE.start(), UPSTREAM_BYTES_RANGE.end());
        problems.push(Problem::at("max_upstream_bytes", format!("max_upstream_bytes must be between {min} and {max}, not {}", config.max_upstream_bytes)));
    }
    if !(1..=3650).contains(&config.retention_days) {
        problems.push(Problem::at("retention_days", format!("retention_days must be between 1 and 3650, not {}", config.retention_days)));
    }
    if config.max_body_bytes < 1024 {
        problems.push(Problem::at("max_body_bytes", format!("max_body_bytes must be at least 1024, not {}", config.max_body_bytes)));
    }
    if !(1024..=MAX_EDIT_BODY_BYTES).contains(&config.max_edit_body_bytes) {
        problems.push(Problem::at(
            "max_edit_body_bytes",
            format!(
                "max_edit_body_bytes must be between 1024 and {MAX_EDIT_BODY_BYTES} (the platform takes bodies up to 100 MB), not {}",
                config.max_edit_body_bytes
            ),
        ));
    }
}
