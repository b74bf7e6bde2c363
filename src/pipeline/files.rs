//! Stored images: which generations keep their images, keeping them, and `GET /v1/files/{id}`.
//!
//! A recorded generation on a deployment with a file store keeps every image it answers with:
//! before the answer when the caller gets the images as URLs (the URLs must load when the client
//! has them), after it otherwise (the edge stores them once the client has its answer). The
//! action then refers to the stored files; their URLs are signed when an action is read.

use base64::Engine as _;
use futures_util::future::join_all;

use crate::action::{Action, ActionResponse};
use crate::error::GatewayError;
use crate::files::{self, signature, FileMeta, NewFile, StoredImage, DEFAULT_MEDIA_TYPE};
use crate::http::{Reply, ReplyBody, RequestHead};
use crate::providers::{Generated, ImageData};
use crate::secret::{Secret, Secrets};
use crate::upstream::Upstream;

use super::{Gateway, RequestContext};

/// How long a file a caller fetched with its key may be cached: a file id's bytes never change.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// Where a generation's images are kept: their ids come from the request's, their owner is the
/// caller's key, their URLs point at the gateway at `base`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Filing<'r> {
    pub request_id: &'r str,
    pub owner: &'r str,
    pub base: &'r str,
}

/// One answer's images, kept: the action's reference to them, the files the edge stores after
/// the answer, and why any could not be stored before it (for the log).
#[derive(Debug, Default)]
pub struct Kept {
    pub response: ActionResponse,
    pub pending: Vec<NewFile>,
    pub failure: Option<String>,
}

impl<'a, U: Upstream, S: Secrets> Gateway<'a, U, S> {
    /// The secret file URLs are signed with, where there is a file store and the secret is set.
    fn files_secret(&self) -> Option<&Secret> {
        self.files_secret.get_or_init(|| if self.files.keeps() { self.secrets.get(files::SECRET_NAME) } else { None }).as_ref()
    }

    /// Where this generation's images are kept, if anywhere: only a recorded generation, on a
    /// deployment with a file store and its signing secret.
    pub(super) fn filing<'r>(&self, head: &'r RequestHead, request_id: &'r str, owner: &'r str, recorded: bool) -> Option<Filing<'r>> {
        if !(recorded && self.files_secret().is_some()) {
            return None;
        }
        Some(Filing { request_id, owner, base: head.base.as_deref()? })
    }

    /// Keeps `generated`'s base64 images (those still given as URLs could not be downloaded and
    /// stay as they are). With `as_url(i)`, image `i` is stored now and replaced by its signed
    /// URL; the others are left for the edge to store after the answer.
    pub(super) async fn keep(&self, filing: Filing<'_>, generated: &mut Generated, created: u64, as_url: impl Fn(usize) -> bool) -> Kept {
        let mut kept = Kept::default();
        // The action refers to its images in the answer's order.
        let mut referenced: Vec<(usize, StoredImage)> = Vec::new();
        let mut now = Vec::new();
        for (i, image) in generated.images.iter().enumerate() {
            let ImageData::Base64(b64) = &image.data else { continue };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) else { continue };
            let media_type = image.media_type.clone().unwrap_or_else(|| DEFAULT_MEDIA_TYPE.to_owned());
            let file = NewFile { id: files::file_id(filing.request_id, i), bytes, media_type, owner: filing.owner.to_owned() };
            let reference =
                StoredImage { file_id: file.id.clone(), url: None, media_type: file.media_type.clone(), revised_prompt: image.revised_prompt.clone() };
            if as_url(i) {
                now.push((i, file, reference));
            } else {
                referenced.push((i, reference));
                kept.pending.push(file);
            }
        }
        let (placed, files): (Vec<_>, Vec<_>) = now.into_iter().map(|(i, file, reference)| ((i, reference), file)).unzip();
        let stored = join_all(files.into_iter().map(|file| self.files.put(file))).await;
        let secret = self.files_secret().expect("filing needs the secret");
        let now_secs = self.clock.now_ms() / 1000;
        for ((i, reference), stored) in placed.into_iter().zip(stored) {
            match stored {
                Ok(()) => {
                    let url = files::signed_url(filing.base, &reference.file_id, secret.expose().as_bytes(), now_secs, signature::DEFAULT_TTL_SECS);
                    generated.images[i].data = ImageData::Url(url);
                    referenced.push((i, reference));
                }
                // The client still gets the image, inline; the action does not refer to it.
                Err(error) => kept.failure = Some(format!("the image {} was not stored: {error}", reference.file_id)),
            }
        }
        referenced.sort_by_key(|(i, _)| *i);
        kept.response = ActionResponse { created, data: referenced.into_iter().map(|(_, reference)| reference).collect() };
        kept
    }

    /// `action` with a freshly signed URL for each of its stored images.
    pub fn with_urls(&self, head: &RequestHead, mut action: Action) -> Action {
        let (Some(secret), Some(base), Some(response)) = (self.files_secret(), head.base.as_deref(), action.response.as_mut()) else { return action };
        let now_secs = self.clock.now_ms() / 1000;
        for image in &mut response.data {
            image.url = Some(files::signed_url(base, &image.file_id, secret.expose().as_bytes(), now_secs, signature::DEFAULT_TTL_SECS));
        }
        action
    }

    /// `GET /v1/files/{id}`: a stored image, to anyone with a valid signed URL, or to the key
    /// whose generation made it or the management key (another key, like an unknown id, gets a
    /// 404). An expired or
    /// forged signature is a 403, whatever key comes with it.
    pub(super) async fn file(&self, head: &RequestHead, id: &str, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let now_secs = self.clock.now_ms() / 1000;
        let signed = files::requested_signature(head.query.as_deref())?;
        let owner = match &signed {
            Some((expires, sig)) => {
                let secret = self.files_secret().ok_or_else(|| files::refused(signature::Refused::Forged))?;
                signature::verify(secret.expose().as_bytes(), id, *expires, sig, now_secs).map_err(files::refused)?;
                None
            }
            None => self.reader(head, cx).await?.key().map(str::to_owned),
        };
        if !files::valid_id(id) || !self.files.keeps() {
            return Err(files::not_found(id));
        }
        let meta = self.files.head(id).await.map_err(|detail| super::storage_unavailable("The file store", detail))?;
        let meta = meta.filter(|meta| owner.as_ref().is_none_or(|owner| *owner == meta.owner)).ok_or_else(|| files::not_found(id))?;
        let cache_control = match signed {
            Some((expires, _)) => format!("private, max-age={}", expires.saturating_sub(now_secs)),
            None => IMMUTABLE.to_owned(),
        };
        Ok(file_reply(head, id, meta, cache_control))
    }
}

/// The reply for a stored file: its bytes (streamed by the edge from the store), or a 304 when
/// the caller holds them already. The headers keep a browser from running what it is sent:
/// a provider's media type is trusted no further than `image/*`, and an SVG can hold a script.
fn file_reply<B>(head: &RequestHead, id: &str, meta: FileMeta, cache_control: String) -> Reply<B> {
    let unchanged = head.if_none_match.as_deref().is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == meta.etag || tag.trim() == "*"));
    let mut headers = vec![
        ("etag", meta.etag),
        ("cache-control", cache_control),
        ("x-content-type-options", "nosniff".to_owned()),
        ("content-security-policy", "default-src 'none'; sandbox".to_owned()),
    ];
    if unchanged {
        return Reply { status: 304, headers, body: ReplyBody::Empty };
    }
    headers.push(("content-type", meta.media_type));
    headers.push(("content-length", meta.size.to_string()));
    Reply { status: 200, headers, body: ReplyBody::Stored(id.to_owned()) }
}
