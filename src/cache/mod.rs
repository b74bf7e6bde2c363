//! The exact-match response cache: which requests may be answered from it, under which key, and
//! what the client asked of it. Pure decisions; the store itself is a [`crate::state::Cache`].
//!
//! Here: the key ([`key`]), what is stored ([`entry`]), the request's cache directive
//! ([`Directive`]) and the TTL bounds. The lookup and store stages are `pipeline/caching.rs`.

pub mod entry;
pub mod key;

/// The shortest TTL a stored answer may have, in seconds (Workers KV's minimum).
pub const MIN_TTL_SECS: u64 = 60;
/// The longest, in seconds (three days).
pub const MAX_TTL_SECS: u64 = 259_200;
/// The TTL when a request turns the cache on without one (30 minutes).
pub const DEFAULT_TTL_SECS: u64 = 1_800;

/// What a request's headers ask of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Look up, and store a fresh answer.
    Normal,
    /// Skip the lookup and store the fresh answer (`x-imagegate-cache: refresh`, or
    /// `Cache-Control: no-cache`).
    Refresh,
    /// Neither read nor write (`Cache-Control: no-store`).
    NoStore,
}

impl Directive {
    /// The directive of a request with these `x-imagegate-cache` and `Cache-Control` headers.
    /// `no-store` wins over everything; unknown values are ignored, as HTTP caches do.
    pub fn of(imagegate_cache: Option<&str>, cache_control: Option<&str>) -> Directive {
        let controls: Vec<String> = cache_control.unwrap_or("").split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
        if controls.iter().any(|d| d == "no-store") {
            Directive::NoStore
        } else if controls.iter().any(|d| d == "no-cache") || imagegate_cache.is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh")) {
            Directive::Refresh
        } else {
            Directive::Normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_turn_into_a_directive() {
        assert_eq!(Directive::of(None, None), Directive::Normal);
        assert_eq!(Directive::of(Some("refresh"), None), Directive::Refresh);
        assert_eq!(Directive::of(Some(" REFRESH "), None), Directive::Refresh);
        assert_eq!(Directive::of(None, Some("max-age=0, no-cache")), Directive::Refresh);
        assert_eq!(Directive::of(Some("refresh"), Some("No-Store")), Directive::NoStore, "no-store wins");
        assert_eq!(Directive::of(Some("sometimes"), Some("private")), Directive::Normal, "unknown values are ignored");
    }
}
