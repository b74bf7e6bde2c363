//! How long to wait before retrying: the upstream's hint, or an exponential backoff with jitter.

/// The first backoff, before jitter.
const BASE_MS: u64 = 1_000;
/// The longest backoff, before jitter.
const CAP_MS: u64 = 16_000;

/// The backoff after `retries_done` retries: 1 s, 2 s, 4 s … capped at 16 s, each scaled by
/// ±25% with `jitter` uniform in `[0, 1)` (0.5 gives the exact value).
pub fn backoff_ms(retries_done: u8, jitter: f64) -> u64 {
    let exact = BASE_MS.saturating_mul(1 << retries_done.min(16)).min(CAP_MS);
    (exact as f64 * (0.75 + 0.5 * jitter.clamp(0.0, 1.0))).round() as u64
}

/// The upstream's retry hint in milliseconds: `retry-after-ms`, else `retry-after` as seconds
/// or an HTTP date (relative to `now_ms`). Unparseable or past hints give `None`.
pub fn retry_after_ms(retry_after_ms: Option<&str>, retry_after: Option<&str>, now_ms: u64) -> Option<u64> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()).filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some(ms.round() as u64);
    }
    let value = retry_after?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    at_ms.checked_sub(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let exact: Vec<u64> = (0..7).map(|n| backoff_ms(n, 0.5)).collect();
        assert_eq!(exact, [1000, 2000, 4000, 8000, 16000, 16000, 16000]);
        assert_eq!((backoff_ms(0, 0.0), backoff_ms(0, 0.999_999)), (750, 1250));
        assert_eq!(backoff_ms(255, 0.5), 16000);
    }

    #[test]
    fn retry_hints_in_every_form() {
        assert_eq!(retry_after_ms(Some("1500"), Some("9"), 0), Some(1500), "retry-after-ms wins");
        assert_eq!(retry_after_ms(None, Some("2"), 0), Some(2000));
        assert_eq!(retry_after_ms(None, Some("0.5"), 0), Some(500));
        let now_ms = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after_ms(None, Some("Wed, 21 Oct 2015 07:28:30 GMT"), now_ms), Some(30_000));
        assert_eq!(retry_after_ms(None, Some("Wed, 21 Oct 2015 07:27:00 GMT"), now_ms), None, "in the past");
        assert_eq!(retry_after_ms(None, Some("soon"), 0), None);
        assert_eq!(retry_after_ms(Some("-1"), None, 0), None);
    }
}
