//! Signed file URLs: `?expires=<unix seconds>&sig=<base64url HMAC-SHA256>` over the file's id
//! and the expiry, with the deployment's signing secret. Anyone holding the URL may load the
//! file until it expires (as a browser `<img>` must, without the bearer key); changing the id,
//! the expiry or the signature makes it a forgery. Verification takes the same time however
//! much of a forged signature matches.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a signed URL lives when nothing is configured: an hour, as OpenAI's image URLs.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Why a signed URL is refused (both are a 403 to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The signature is well formed and right, but its time has passed.
    Expired,
    /// The signature does not match the id and expiry, or is not a signature at all.
    Forged,
}

/// The message signed: a version, the file id and the expiry, each on its own line (an id
/// cannot contain a newline, so no two pairs sign the same message).
fn mac(secret: &[u8], file_id: &str, expires: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(format!("imagegate-file-v1\n{file_id}\n{expires}").as_bytes());
    mac
}

/// The signature of `file_id` until `expires` (Unix seconds).
pub fn sign(secret: &[u8], file_id: &str, expires: u64) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, file_id, expires).finalize().into_bytes())
}

/// The query string of a URL for `file_id` that lives `ttl_secs` from `now_secs`.
pub fn signed_query(secret: &[u8], file_id: &str, now_secs: u64, ttl_secs: u64) -> String {
    let expires = now_secs.saturating_add(ttl_secs);
    format!("expires={expires}&sig={}", sign(secret, file_id, expires))
}

/// Whether `sig` signs `file_id` until `expires`, and `expires` has not passed at `now_secs`.
/// A forgery is told as such even when its expiry has also passed.
pub fn verify(secret: &[u8], file_id: &str, expires: u64, sig: &str, now_secs: u64) -> Result<(), Refused> {
    let given = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Refused::Forged)?;
    mac(secret, file_id, expires).verify_slice(&given).map_err(|_| Refused::Forged)?;
    if now_secs >= expires {
        return Err(Refused::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000;

    fn parts(query: &str) -> (u64, String) {
        let (expires, sig) = query.strip_prefix("expires=").unwrap().split_once("&sig=").unwrap();
        (expires.parse().unwrap(), sig.to_owned())
    }

    #[test]
    fn a_signed_url_loads_until_it_expires() {
        let (expires, sig) = parts(&signed_query(SECRET, "file_1", NOW, DEFAULT_TTL_SECS));
        assert_eq!(expires, NOW + 3600);
        assert_eq!(sig.len(), 43, "32 bytes, base64url without padding");
        assert_eq!(verify(SECRET, "file_1", expires, &sig, NOW), Ok(()));
        assert_eq!(verify(SECRET, "file_1", expires, &sig, NOW + 3599), Ok(()));
        assert_eq!(verify(SECRET, "file_1", expires, &sig, NOW + 3600), Err(Refused::Expired));
    }

    #[test]
    fn changing_anything_is_a_forgery() {
        let (expires, sig) = parts(&signed_query(SECRET, "file_1", NOW, 60));
        assert_eq!(verify(SECRET, "file_2", expires, &sig, NOW), Err(Refused::Forged), "another file");
        assert_eq!(verify(SECRET, "file_1", expires + 86_400, &sig, NOW), Err(Refused::Forged), "a later expiry");
        assert_eq!(verify(b"another secret of at least 32 bytes!", "file_1", expires, &sig, NOW), Err(Refused::Forged));
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(verify(SECRET, "file_1", expires, std::str::from_utf8(&flipped).unwrap(), NOW), Err(Refused::Forged));
        for junk in ["", "not base64!", &sig[..20]] {
            assert_eq!(verify(SECRET, "file_1", expires, junk, NOW), Err(Refused::Forged), "{junk:?}");
        }
    }

    #[test]
    fn a_forgery_past_its_expiry_is_still_a_forgery() {
        assert_eq!(verify(SECRET, "file_1", NOW - 10, &sign(SECRET, "file_2", NOW - 10), NOW), Err(Refused::Forged));
        assert_eq!(verify(SECRET, "file_1", NOW - 10, &sign(SECRET, "file_1", NOW - 10), NOW), Err(Refused::Expired));
    }

    #[test]
    fn the_signature_is_stable_for_the_same_inputs() {
        assert_eq!(sign(SECRET, "file_1", NOW), sign(SECRET, "file_1", NOW));
        assert_ne!(sign(SECRET, "file_1", NOW), sign(SECRET, "file_1", NOW + 1));
    }
}
