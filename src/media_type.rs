//! Media types as `Content-Type` headers carry them.

/// Whether `content_type`'s essence (before any `;` parameters) is `essence`, in any case.
pub fn is(content_type: Option<&str>, essence: &str) -> bool {
    content_type.and_then(|ct| ct.split(';').next()).is_some_and(|given| given.trim().eq_ignore_ascii_case(essence))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_essence_is_compared_without_parameters_or_case() {
        assert!(super::is(Some("Text/Event-Stream; charset=utf-8"), "text/event-stream"));
        assert!(!super::is(Some("application/json"), "text/event-stream"));
        assert!(!super::is(None, "application/json"));
    }
}
