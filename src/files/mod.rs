//! Stored images: the images of every recorded generation, kept by the file store (R2 at the
//! edge, binding `IMAGEGATE_FILES`) under ids derived from their action's, and served by
//! `GET /v1/files/{id}` to the key that made them, or to anyone holding a signed URL until it
//! expires ([`signature`]).

pub mod signature;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GatewayError};

/// The secret that signs file URLs (`wrangler secret put`; locally `.dev.vars`, which `make dev`
/// fills in). Without it a deployment stores no files.
pub const SECRET_NAME: &str = "IMAGEGATE_FILES_SECRET";

/// The media type of an image whose provider named none (every adapter's default is PNG).
pub const DEFAULT_MEDIA_TYPE: &str = "image/png";

/// An image to store: its id, its bytes and media type, and the label of the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub id: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub owner: String,
}

/// What the store knows of a stored image without reading its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The label of the key whose generation made it.
    pub owner: String,
    pub media_type: String,
    /// The quoted entity tag (`"…"`).
    pub etag: String,
    pub size: u64,
}

/// One image of an action's answer, as the history keeps it: a reference to the stored file,
/// never its bytes. `url` is filled in, freshly signed, when the action is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    pub file_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

/// The id of the `index`th image of the request `request_id`: `file_`, the request's 32 hex
/// digits, `_` and the index.
pub fn file_id(request_id: &str, index: usize) -> String {
    format!("file_{}_{index}", request_id.strip_prefix("req_").unwrap_or(request_id))
}

/// Whether `id` is shaped as [`file_id`] makes them: only such ids reach the store as keys.
pub fn valid_id(id: &str) -> bool {
    let Some((hex, index)) = id.strip_prefix("file_").and_then(|rest| rest.split_once('_')) else { return false };
    hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !index.is_empty() && index.len() <= 2 && index.bytes().all(|b| b.is_ascii_digit())
}

/// The URL of file `id` on the gateway at `base` (`scheme://host`), signed with `secret` to live
/// `ttl_secs` from `now_secs`.
pub fn signed_url(base: &str, id: &str, secret: &[u8], now_secs: u64, ttl_secs: u64) -> String {
    format!("{base}/v1/files/{id}?{}", signature::signed_query(secret, id, now_secs, ttl_secs))
}

/// The signature a file request carries: `Ok(None)` without one (the bearer key decides), the
/// expiry and signature with both, and a 403 for a query that holds only one of them or an
/// expiry that is not a number (a URL that was cut or changed).
pub fn requested_signature(query: Option<&str>) -> Result<Option<(u64, String)>, GatewayError> {
    let (mut expires, mut sig) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "expires" => expires = Some(value.into_owned()),
            "sig" => sig = Some(value.into_owned()),
            _ => {}
        }
    }
    match (expires, sig) {
        (None, None) => Ok(None),
        (Some(expires), Some(sig)) => Ok(Some((expires.parse().map_err(|_| refused(signature::Refused::Forged))?, sig))),
        _ => Err(refused(signature::Refused::Forged)),
    }
}

/// The 403 for a signed URL that is refused.
pub fn refused(why: signature::Refused) -> GatewayError {
    let (message, code) = match why {
        signature::Refused::Expired => ("This file URL has expired; read the action again for a fresh one.", "file_url_expired"),
        signature::Refused::Forged => ("This file URL's signature is not valid.", "file_url_invalid"),
    };
    GatewayError::new(ErrorKind::Forbidden, message).with_code(code)
}

/// The 404 for a file that is not there for this caller (another key's is answered alike).
pub fn not_found(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No file '{id}' for this key.")).with_code("file_not_found")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "req_0123456789abcdef0123456789abcdef";

    #[test]
    fn ids_come_from_the_request_and_only_such_ids_are_valid() {
        let id = file_id(REQUEST, 3);
        assert_eq!(id, "file_0123456789abcdef0123456789abcdef_3");
        assert!(valid_id(&id));
        for bad in [
            "",
            "file_",
            "file_0123_1",
            "file_0123456789abcdef0123456789abcdeg_1",
            "file_0123456789abcdef0123456789abcdef_",
            "../x",
            "file_0123456789abcdef0123456789abcdef_1/x",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_signed_url_carries_what_the_file_route_reads_back() {
        let url = signed_url("http://127.0.0.1:8787", "file_x", b"secret", 1_000, 60);
        let query = url.split_once('?').unwrap().1;
        let (expires, sig) = requested_signature(Some(query)).unwrap().unwrap();
        assert_eq!(expires, 1_060);
        assert_eq!(signature::verify(b"secret", "file_x", expires, &sig, 1_000), Ok(()));
        assert!(url.starts_with("http://127.0.0.1:8787/v1/files/file_x?expires=1060&sig="));
    }

    #[test]
    fn a_cut_signature_is_refused_and_none_leaves_it_to_the_key() {
        assert_eq!(requested_signature(None).unwrap(), None);
        assert_eq!(requested_signature(Some("download=1")).unwrap(), None);
        for cut in ["expires=10", "sig=abc", "expires=soon&sig=abc"] {
            let error = requested_signature(Some(cut)).unwrap_err();
            assert_eq!((error.status(), error.code), (403, Some("file_url_invalid")), "{cut}");
        }
    }
}
