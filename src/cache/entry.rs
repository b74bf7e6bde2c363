//! What the cache keeps: an answer in a shape-neutral form (its images in base64 and its original
//! `created`), and what the edge is handed to store.

use serde::{Deserialize, Serialize};

use crate::providers::{Generated, ImageData};

/// The most bytes one stored answer may have: Workers KV's limit for a value.
pub const MAX_ENTRY_BYTES: usize = 25 << 20;

/// An answer as the cache keeps it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The answer's `created`, returned again on every hit.
    pub created: u64,
    /// When it was stored, for the `age` of a hit.
    pub stored_ms: u64,
    pub images: Vec<StoredImage>,
}

/// One stored image, in base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredImage {
    pub b64_json: String,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub revised_prompt: Option<String>,
}

/// How a coalesced generation ended, for the requests that waited for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlightEnd {
    /// Stored: the waiters are answered with the entry the edge stores.
    Stored { key: String },
    /// Failed: the waiters get the same error.
    Failed { key: String, status: u16, body: Vec<u8> },
    /// Succeeded without an entry to share (a partial answer, URL images): the waiters generate.
    Released { key: String },
}

/// An answer for the edge to store once the client has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub key: String,
    pub value: Vec<u8>,
    pub ttl_secs: u64,
}

/// The entry for `generated`, answered at `created` (seconds) and stored at `now_ms`, or why it
/// cannot be stored.
pub fn entry(generated: &Generated, asked: u8, created: u64, now_ms: u64) -> Result<Vec<u8>, &'static str> {
    if generated.images.len() < usize::from(asked) {
        return Err("partial answer");
    }
    let images = generated
        .images
        .iter()
        .map(|image| match &image.data {
            ImageData::Base64(b64) => {
                Ok(StoredImage { b64_json: b64.clone(), media_type: image.media_type.clone(), revised_prompt: image.revised_prompt.clone() })
            }
            ImageData::Url(_) => Err("url images"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let value = serde_json::to_vec(&Entry { created, stored_ms: now_ms, images }).expect("an entry always serialises");
    if value.len() > MAX_ENTRY_BYTES {
        return Err("too large");
    }
    Ok(value)
}
