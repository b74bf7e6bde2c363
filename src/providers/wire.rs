//! Wire helpers every adapter shares: the headers a call carries, a `POST`, and how a provider's
//! image URLs, ids and messages are read.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::errors::{self, AnswerError};
use super::{Image, ImageData, Target};
use crate::secret::Secret;
use crate::upstream::{HeaderValue, Method, UpstreamRequest};

/// `Bearer <key>`, kept secret.
pub fn bearer(key: &Secret) -> HeaderValue {
    HeaderValue::Secret(Secret::new(format!("Bearer {}", key.expose())))
}

/// The provider's configured headers.
pub fn configured_headers(target: &Target) -> Vec<(String, HeaderValue)> {
    target.provider.headers.iter().map(|(k, v)| (k.clone(), HeaderValue::Plain(v.clone()))).collect()
}

/// `content-type: application/json` and the provider's configured headers.
pub fn json_headers(target: &Target) -> Vec<(String, HeaderValue)> {
    headers_with(target, "application/json".to_owned())
}

/// `content-type: <content_type>` and the provider's configured headers.
pub fn headers_with(target: &Target, content_type: String) -> Vec<(String, HeaderValue)> {
    let mut headers = vec![("content-type".to_owned(), HeaderValue::Plain(content_type))];
    headers.extend(configured_headers(target));
    headers
}

/// A `POST` of `body`.
pub fn post(url: String, headers: Vec<(String, HeaderValue)>, body: impl Into<std::rc::Rc<[u8]>>) -> UpstreamRequest {
    UpstreamRequest { method: Method::Post, url, headers, body: body.into() }
}

/// An id safe to put in a URL path.
pub fn is_token(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// An image at `url`: a `data:…;base64,` URI becomes base64 with its media type (the prefix cut
/// in place, not copied); any other URL stays a URL, with the media type its extension names.
pub fn image_at(mut url: String) -> Image {
    let data_uri = url.strip_prefix("data:").and_then(|rest| rest.split_once(',')).and_then(|(meta, _)| {
        let media_type = meta.strip_suffix(";base64")?;
        Some(("data:".len() + meta.len() + 1, (!media_type.is_empty()).then(|| media_type.to_owned())))
    });
    if let Some((prefix, media_type)) = data_uri {
        url.drain(..prefix);
        return Image { data: ImageData::Base64(url), media_type, revised_prompt: None };
    }
    let media_type = media_type_of(&url).map(str::to_owned);
    Image { data: ImageData::Url(url), media_type, revised_prompt: None }
}

/// The media type a URL's file extension names (`…/out-0.webp?sig=…` → `image/webp`).
pub fn media_type_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = file.rsplit_once('.')?;
    match extension.to_ascii_lowercase().as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "webp" => Some("image/webp"),
        "gif" => Some("image/gif"),
        _ => None,
    }
}

/// A JSON value as text: a string as is, anything else compact JSON; a validation list
/// (`[{"loc": [...], "msg": "..."}]`, FastAPI's shape) as `field: message; …`.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let msg = item.get("msg").and_then(Value::as_str);
                let loc: Vec<String> = item
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|loc| loc.iter().filter(|p| p.as_str() != Some("body")).map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect())
                    .unwrap_or_default();
                match msg {
                    Some(msg) if loc.is_empty() => msg.to_owned(),
                    Some(msg) => format!("{}: {msg}", loc.join(".")),
                    None => text_of(item),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(fields) => match ["message", "msg", "detail"].iter().find_map(|k| fields.get(*k).and_then(Value::as_str)) {
            Some(text) => text.to_owned(),
            None => value.to_string(),
        },
        other => other.to_string(),
    }
}

/// A 2xx answer read as `T` (the adapter's answer type), or [`AnswerError::Unreadable`] naming
/// the `expected` shape.
pub fn parse<T: DeserializeOwned>(target: &Target, body: &[u8], expected: &'static str) -> Result<T, AnswerError> {
    serde_json::from_slice(body).map_err(|_| errors::unreadable(target.provider.id, expected))
}
