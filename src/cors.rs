//! CORS: which browser origins may call the gateway, and the headers that let them.

use crate::config::CorsConfig;
use crate::error::{ErrorKind, GatewayError};

/// Headers a browser app may read from responses.
const EXPOSED: &str =
    "x-request-id, openai-processing-ms, x-should-retry, retry-after, www-authenticate, allow, x-imagegate-attempts, x-imagegate-model, x-imagegate-cost-usd, x-imagegate-images, x-imagegate-cache, x-imagegate-coalesced, age";
/// Headers allowed when the preflight asks for none in particular.
const DEFAULT_ALLOWED_HEADERS: &str = "authorization, content-type";

/// The `Access-Control-*` headers for a response to `origin`; none when the origin is absent or
/// not allowed (the browser then blocks the read).
pub fn response_headers(config: &CorsConfig, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(allowed) = allowed_origin(config, origin) else { return Vec::new() };
    let mut headers = vec![("access-control-allow-origin", allowed), ("access-control-expose-headers", EXPOSED.to_owned())];
    if !wildcard(config) {
        headers.push(("vary", "Origin".to_owned()));
    }
    headers
}

/// Answers a preflight: the methods and the requested headers are allowed for an allowed origin;
/// any other origin gets a 403.
pub fn preflight(config: &CorsConfig, origin: Option<&str>, requested_headers: Option<&str>) -> Result<Vec<(&'static str, String)>, GatewayError> {
    let Some(allowed) = allowed_origin(config, origin) else {
        return Err(GatewayError::new(ErrorKind::Forbidden, "This origin may not call the gateway from a browser.").with_code("origin_not_allowed"));
    };
    let requested = requested_headers
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b)))
        .unwrap_or(DEFAULT_ALLOWED_HEADERS);
    let mut headers = vec![
        ("access-control-allow-origin", allowed),
        ("access-control-allow-methods", "GET, POST, OPTIONS".to_owned()),
        ("access-control-allow-headers", requested.to_owned()),
        ("access-control-max-age", "86400".to_owned()),
    ];
    if !wildcard(config) {
        headers.push(("vary", "Origin".to_owned()));
    }
    Ok(headers)
}

fn wildcard(config: &CorsConfig) -> bool {
    config.allowed_origins.iter().any(|o| o == "*")
}

fn allowed_origin(config: &CorsConfig, origin: Option<&str>) -> Option<String> {
    let origin = origin?;
    if wildcard(config) {
        Some("*".to_owned())
    } else {
        config.allowed_origins.iter().find(|o| o.as_str() == origin).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(origin: &str) -> CorsConfig {
        CorsConfig { allowed_origins: vec![origin.to_owned()] }
    }

    #[test]
    fn wildcard_allows_any_origin() {
        let headers = response_headers(&CorsConfig::default(), Some("https://a.example"));
        assert!(headers.contains(&("access-control-allow-origin", "*".to_owned())));
        assert!(response_headers(&CorsConfig::default(), None).is_empty(), "no Origin, no CORS headers");
    }

    #[test]
    fn listed_origins_are_echoed_with_vary_and_others_get_nothing() {
        let config = only("https://app.example");
        let headers = response_headers(&config, Some("https://app.example"));
        assert!(headers.contains(&("access-control-allow-origin", "https://app.example".to_owned())));
        assert!(headers.contains(&("vary", "Origin".to_owned())));
        assert!(response_headers(&config, Some("https://evil.example")).is_empty());
    }

    #[test]
    fn preflight_allows_the_requested_headers_for_allowed_origins_only() {
        let config = only("https://app.example");
        let headers = preflight(&config, Some("https://app.example"), Some("authorization, x-stainless-os")).unwrap();
        assert!(headers.contains(&("access-control-allow-headers", "authorization, x-stainless-os".to_owned())));
        let odd = preflight(&config, Some("https://app.example"), Some("x\r\nset-cookie: a")).unwrap();
        assert!(odd.contains(&("access-control-allow-headers", DEFAULT_ALLOWED_HEADERS.to_owned())));
        assert_eq!(preflight(&config, Some("https://evil.example"), None).unwrap_err().status(), 403);
    }
}
