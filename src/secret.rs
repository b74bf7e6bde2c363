//! Secrets that cannot leak by accident.

/// A provider API key or other secret. `Debug` prints `*****`; the value is reachable only
/// through [`Secret::expose`], at the one place that puts it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the upstream request only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `*****`, for upstream messages
    /// that might echo it.
    pub fn redact_from(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_owned();
        }
        text.replace(&self.0, "*****")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("*****")
    }
}

/// Where provider secrets come from: `.dev.vars` locally, `wrangler secret put` in production.
pub trait Secrets {
    /// The secret called `name`, if it is set.
    fn get(&self, name: &str) -> Option<Secret>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("sk-live-123")), "*****");
    }

    #[test]
    fn redact_removes_every_copy() {
        let s = Secret::new("sk-live-123");
        assert_eq!(s.redact_from("bad key sk-live-123 (sk-live-123)"), "bad key ***** (*****)");
    }
}
