//! Managed gateway keys: created, changed and deleted through OpenRouter's key API
//! (`/api/v1/keys`), kept as records by their SHA-256 digest (never the key), each with the
//! models and routes it may use and its limits ([`crate::limits`]).
//!
//! A key is `sk-ig-v1-` and 64 random hex digits, shown once, when it is created. Its `hash`
//! (the hex SHA-256 of the key) names it everywhere after: in the API's paths, and as the owner
//! of its actions, files and usage.

mod api;

pub use api::{apply_patch, current_body, key_body, parse_create, KeyPage, NewKey};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::limits::{micros, LimitReset, Limits};

/// What every managed key begins with.
pub const KEY_PREFIX: &str = "sk-ig-v1-";

/// One managed key, as the key store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The hex SHA-256 of the key: its id.
    pub hash: String,
    pub name: String,
    /// The key with all but its first and last digits hidden, to recognise it by.
    pub label: String,
    #[serde(default)]
    pub disabled: bool,
    /// A management key manages keys and reads everyone's records; it cannot generate.
    #[serde(default)]
    pub management: bool,
    /// The budget in US dollars, for the period `limit_reset` names (ever, without one).
    pub limit: Option<f64>,
    pub limit_reset: Option<LimitReset>,
    /// Unix milliseconds after which the key is refused.
    pub expires_at: Option<u64>,
    /// The models (ids) it may use; every model when `None`.
    pub models: Option<Vec<String>>,
    /// The routes (ids) it may use; every route it can see when `None`.
    pub routes: Option<Vec<String>>,
    /// Generations started per minute.
    pub rpm: Option<u32>,
    /// Generations in flight at once.
    pub max_parallel: Option<u32>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub updated_at: Option<u64>,
}

impl KeyRecord {
    /// A new key's record: named, unlimited, enabled, made at `now_ms`.
    pub fn new(hash: String, name: String, label: String, now_ms: u64) -> Self {
        KeyRecord {
            hash,
            name,
            label,
            disabled: false,
            management: false,
            limit: None,
            limit_reset: None,
            expires_at: None,
            models: None,
            routes: None,
            rpm: None,
            max_parallel: None,
            metadata: None,
            created_at: now_ms,
            updated_at: None,
        }
    }

    /// The limits its counters enforce.
    pub fn limits(&self) -> Limits {
        Limits { rpm: self.rpm, max_parallel: self.max_parallel, limit_micros: self.limit.map(micros), reset: self.limit_reset }
    }

    /// Why the key is refused at `now_ms`, if it is.
    pub fn refused(&self, now_ms: u64) -> Option<&'static str> {
        if self.disabled {
            Some("This API key is disabled.")
        } else if self.expires_at.is_some_and(|at| at <= now_ms) {
            Some("This API key has expired.")
        } else {
            None
        }
    }

    /// Whether it may use the model `id`.
    pub fn allows_model(&self, id: &str) -> bool {
        self.models.as_ref().is_none_or(|models| models.iter().any(|m| m == id))
    }

    /// Whether it may use the route `id`.
    pub fn allows_route(&self, id: &str) -> bool {
        self.routes.as_ref().is_none_or(|routes| routes.iter().any(|r| r == id))
    }
}

/// A new key from 32 random bytes: the key itself (shown once), its hash and its label.
pub fn new_key(random: [u8; 32]) -> (String, String, String) {
    let digits = hex::encode(random);
    let key = format!("{KEY_PREFIX}{digits}");
    let label = format!("{KEY_PREFIX}{}...{}", &digits[..3], &digits[digits.len() - 4..]);
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    (key, hash, label)
}

/// Whether `text` is a key's hash (64 lower-case hex digits).
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_named_by_its_digest_and_shown_by_its_ends() {
        let (key, hash, label) = new_key([0xab; 32]);
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        assert_eq!(hash, hex::encode(sha2::Sha256::digest(key.as_bytes())));
        assert!(is_hash(&hash) && !is_hash(&key));
        assert_eq!(label, "sk-ig-v1-aba...abab");
    }
}
