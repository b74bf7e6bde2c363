//! What the cache keeps: the answer exactly as the client got it (the shape is part of the key),
//! so a hit is served as stored and the answer is kept in memory once, not rendered twice.

use crate::providers::{Generated, ImageData};

/// The most bytes one stored answer may have: Workers KV's limit for a value.
pub const MAX_ENTRY_BYTES: usize = 25 << 20;

/// A stored answer and when it was stored (for the `age` of a hit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub value: Vec<u8>,
    pub stored_ms: u64,
}

/// How a coalesced generation ended, for the requests that waited for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlightEnd {
    /// Stored: the waiters are answered with the answer the edge stores.
    Stored { key: String },
    /// Failed: the waiters get the same error.
    Failed { key: String, status: u16, body: Vec<u8> },
    /// Succeeded without an answer to share (a partial answer, URL images): the waiters generate.
    Released { key: String },
}

/// An answer for the edge to store once the client has it: the reply's own body, under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub key: String,
    pub ttl_secs: u64,
}

/// Whether the answer made of `generated` may be stored: all the images asked for, in base64
/// (URLs expire before the entry would); else why not.
pub fn storable(generated: &Generated, asked: u8) -> Result<(), &'static str> {
    if generated.images.len() < usize::from(asked) {
        return Err("partial answer");
    }
    if generated.images.iter().any(|image| matches!(image.data, ImageData::Url(_))) {
        return Err("url images");
    }
    Ok(())
}
