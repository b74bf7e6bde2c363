//! The authenticate stage: gateway keys, stored as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ErrorKind, GatewayError};
use crate::keys::KeyRecord;
use crate::secret::Secret;

/// The secret that holds the management key: it reads every key's actions, files and routes,
/// and cannot generate.
pub const ADMIN_KEY_SECRET: &str = "IMAGEGATE_ADMIN_KEY";
/// The label the management key is logged and recorded as.
pub const MANAGEMENT_LABEL: &str = "management";

/// A key that called: its owner (a static key's label, or a managed key's hash), by which its
/// actions, files and usage are kept, and the managed key's record (with its limits).
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub owner: String,
    pub record: Option<KeyRecord>,
}

impl Caller {
    /// A key of `IMAGEGATE_KEYS`: no limits.
    pub fn fixed(label: &str) -> Self {
        Caller { owner: label.to_owned(), record: None }
    }

    /// A managed key.
    pub fn managed(record: KeyRecord) -> Self {
        Caller { owner: record.hash.clone(), record: Some(record) }
    }
}

/// Who reads the gateway's records: a gateway key, which sees its own, or a management key (the
/// secret, or a managed key made one), which sees everyone's and manages keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Reader {
    Key(Caller),
    Management(Caller),
}

impl Reader {
    /// The key whose records this reader may see; `None` for all of them.
    pub fn key(&self) -> Option<&str> {
        match self {
            Reader::Key(caller) => Some(&caller.owner),
            Reader::Management(_) => None,
        }
    }

    /// The key that called, whichever it is.
    pub fn caller(&self) -> &Caller {
        match self {
            Reader::Key(caller) | Reader::Management(caller) => caller,
        }
    }
}

/// Whether the bearer token of `authorization` is the management key `management` (their
/// SHA-256 digests compared in constant time).
pub fn is_management(authorization: Option<&str>, management: &Secret) -> bool {
    let Some(token) = authorization.and_then(bearer) else { return false };
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let expected: [u8; 32] = Sha256::digest(management.expose().as_bytes()).into();
    !management.expose().is_empty() && bool::from(presented.ct_eq(&expected))
}

/// The token of a `Bearer` authorization header.
pub fn bearer(header: &str) -> Option<&str> {
    header.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token.trim()).filter(|token| !token.is_empty())
}

/// One accepted gateway key: its SHA-256 digest and a label for logs.
#[derive(Clone, PartialEq, Eq)]
struct GatewayKey {
    label: String,
    digest: [u8; 32],
}

/// The gateway keys a deployment accepts. Holds digests only, never a key.
///
/// An empty set refuses every request: there is no fallback key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<GatewayKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.keys.iter().map(|k| k.label.as_str()).collect();
        f.debug_struct("KeySet").field("labels", &labels).finish()
    }
}

impl KeySet {
    /// Parses the `IMAGEGATE_KEYS` setting: entries separated by commas or whitespace, each a
    /// 64-digit hex SHA-256 digest, optionally preceded by a label and a colon
    /// (`ci:9f86d0…`). A label-less key is logged as `key-` and the digest's first 8 digits.
    ///
    /// Errors name the entry by position only, never by content: a pasted plain-text key must not
    /// reach a log or a response.
    pub fn parse(setting: &str) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        for (index, entry) in setting.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()).enumerate() {
            let (label, hex_digest) = match entry.rsplit_once(':') {
                Some((label, digest)) => (label.to_owned(), digest),
                None => (format!("key-{}", entry.get(..8).unwrap_or(entry)), entry),
            };
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(hex_digest, &mut digest).is_err() {
                return Err(format!("IMAGEGATE_KEYS entry {} is not a 64-digit hex SHA-256 digest (store `sha256sum` of the key, never the key)", index + 1));
            }
            if keys.iter().any(|key: &GatewayKey| key.label == label) {
                // A label owns actions, files and routes: two keys may not share one.
                return Err(format!("IMAGEGATE_KEYS entry {} repeats the label of an earlier entry; each key needs its own label", index + 1));
            }
            keys.push(GatewayKey { label, digest });
        }
        Ok(KeySet { keys })
    }

    /// The label `label` as this set holds it, if a key has it.
    pub fn label(&self, label: &str) -> Option<&str> {
        self.keys.iter().find(|key| key.label == label).map(|key| key.label.as_str())
    }

    /// Whether no key is configured (every request will be refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a presented key; returns the matching key's label.
    ///
    /// Every stored digest is compared, each in constant time, so the time taken does not reveal
    /// which key (or how much of one) matched.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key.label.as_str());
            }
        }
        found
    }
}

/// The 401 `invalid_api_key` with `message` (which never repeats what was presented).
pub fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidApiKey, message).with_code("invalid_api_key")
}

/// The 401 for a gateway that has no key at all.
pub fn no_keys() -> GatewayError {
    unauthorized("This gateway has no API keys configured, so it refuses every request. Set IMAGEGATE_KEYS to the SHA-256 digests of the keys to accept.")
}

/// The bearer token of the `Authorization` header; a missing or malformed header is a 401.
pub fn token(authorization: Option<&str>) -> Result<&str, GatewayError> {
    let Some(header) = authorization else {
        return Err(unauthorized("You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'."));
    };
    bearer(header).ok_or_else(|| unauthorized("The Authorization header must be 'Bearer YOUR_KEY'."))
}

/// Authenticates the `Authorization` header against `keys`; on success, the key's label.
///
/// Every failure is a 401 `invalid_api_key`; the message never repeats what was presented.
pub fn authenticate<'k>(authorization: Option<&str>, keys: &'k KeySet) -> Result<&'k str, GatewayError> {
    if keys.is_empty() {
        return Err(no_keys());
    }
    keys.check(token(authorization)?).ok_or_else(|| unauthorized("Incorrect API key provided."))
}

/// The lower-case hex SHA-256 digest of a key, as `IMAGEGATE_KEYS` stores it.
pub fn key_digest_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeySet {
        KeySet::parse(&format!("ci:{}, {}", key_digest_hex("sk-one"), key_digest_hex("sk-two"))).unwrap()
    }

    #[test]
    fn a_configured_key_is_accepted_and_labelled() {
        let keys = keys();
        assert_eq!(authenticate(Some("Bearer sk-one"), &keys).unwrap(), "ci");
        let label = authenticate(Some("bearer sk-two"), &keys).unwrap();
        assert_eq!(label, format!("key-{}", &key_digest_hex("sk-two")[..8]));
    }

    #[test]
    fn missing_wrong_and_malformed_keys_are_401() {
        let keys = keys();
        for header in [None, Some("Bearer sk-three"), Some("Basic sk-one"), Some("Bearer "), Some("sk-one")] {
            let err = authenticate(header, &keys).unwrap_err();
            assert_eq!((err.status(), err.code), (401, Some("invalid_api_key")), "{header:?}");
            assert!(!err.message.contains("sk-"), "the message must not echo the key: {}", err.message);
        }
    }

    #[test]
    fn no_configured_keys_refuses_everything() {
        let none = KeySet::parse("  ").unwrap();
        assert!(none.is_empty());
        assert_eq!(authenticate(Some("Bearer sk-one"), &none).unwrap_err().status(), 401);
    }

    #[test]
    fn a_plain_text_key_in_the_setting_is_rejected_without_echoing_it() {
        let err = KeySet::parse("sk-secret-plaintext-key").unwrap_err();
        assert!(err.contains("entry 1"), "{err}");
        assert!(!err.contains("sk-secret"), "{err}");
    }

    #[test]
    fn the_management_key_is_told_from_gateway_keys() {
        let management = Secret::new("sk-admin");
        assert!(is_management(Some("Bearer sk-admin"), &management));
        for header in [None, Some("Bearer sk-one"), Some("Basic sk-admin"), Some("Bearer ")] {
            assert!(!is_management(header, &management), "{header:?}");
        }
        assert!(!is_management(Some("Bearer "), &Secret::new("")), "an empty secret is no key");
        assert_eq!(Reader::Management(Caller::fixed(MANAGEMENT_LABEL)).key(), None);
        assert_eq!(Reader::Key(Caller::fixed("ci")).key(), Some("ci"));
    }

    #[test]
    fn two_keys_may_not_share_a_label() {
        let err = KeySet::parse(&format!("ci:{} ci:{}", key_digest_hex("sk-one"), key_digest_hex("sk-two"))).unwrap_err();
        assert!(err.contains("entry 2") && !err.contains("sk-"), "{err}");
    }

    #[test]
    fn debug_shows_labels_only() {
        let shown = format!("{:?}", keys());
        assert!(shown.contains("ci") && !shown.contains(&key_digest_hex("sk-one")), "{shown}");
    }
}
