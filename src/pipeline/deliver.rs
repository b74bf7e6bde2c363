//! Delivery: a translated answer written in the caller's shape and format.
//!
//! Images a provider gave as URLs are downloaded (concurrently, without credentials) when the
//! caller wants base64, which OpenRouter's shape always does; base64 images become `data:` URLs
//! when the caller asked for URLs. A download goes only where [`site::download_url`] allows,
//! follows at most [`MAX_REDIRECTS`] redirects by hand (each hop checked again), takes only an
//! `image/*` answer, and reads within the request's `max_upstream_bytes`. A `data:` URL is read in
//! place. The images are already generated and paid for, so downloads get the request's whole
//! remaining time, and a failed one is [`Outcome::Final`]. More images than asked are cut to `n`
//! before any download; fewer are said in `x-imagegate-images`.

use base64::Engine as _;
use futures_util::future::join_all;

use crate::answer::{self, Shape};
use crate::clock::Deadline;
use crate::config::{ModelConfig, ProviderConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::http::Reply;
use crate::image_stream;
use crate::policy::Outcome;
use crate::pricing;
use crate::providers::{site, Generated, ImageData};
use crate::request::{ImageRequest, ResponseFormat};
use crate::secret::Secrets;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamRequest};

use super::attempt::{Answering, Attempt};
use super::failure::{transport_text, Spent};
use super::Gateway;

/// The most redirects one image download follows.
pub const MAX_REDIRECTS: usize = 5;

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// The answer to `request` in `shape`, with `generated`'s images in the format asked for;
    /// downloads end at `deadline` (the request's, not the attempt's).
    pub(super) async fn deliver(
        &self,
        provider: &ProviderConfig,
        model: &ModelConfig,
        request: &ImageRequest,
        answering: Answering<'_>,
        mut generated: Generated,
        deadline: Deadline,
    ) -> Attempt<U::Body> {
        let shape = answering.shape;
        // OpenRouter's answers and streamed events carry base64 only.
        let wants = if shape == Shape::OpenRouter || answering.stream.is_some() { Some(ResponseFormat::B64Json) } else { request.response_format };
        generated.images.truncate(usize::from(request.n));
        let given_as_url: Vec<bool> = generated.images.iter().map(|image| matches!(image.data, ImageData::Url(_))).collect();
        if answering.files.is_some() && wants != Some(ResponseFormat::B64Json) {
            // Downloaded to be kept; one that fails stays the provider's URL, and is not kept.
            let _ = self.download_all(&mut generated, &provider.download_hosts, deadline).await;
        }
        if wants == Some(ResponseFormat::B64Json) {
            if let Err(why) = self.download_all(&mut generated, &provider.download_hosts, deadline).await {
                let error = GatewayError::new(
                    ErrorKind::BadUpstream,
                    format!("The upstream provider '{}' generated the image, but the gateway could not download it: {why}", provider.id),
                )
                .with_code("image_download_failed");
                // Generated and paid for: another attempt would pay again.
                return Attempt::failed(Outcome::Final, 502, error);
            }
        }
        let now_ms = self.clock.now_ms();
        for image in &mut generated.images {
            if image.media_type.is_none() && matches!(image.data, ImageData::Base64(_)) {
                image.media_type = request.output_format.map(|f| f.media_type().to_owned());
            }
        }
        // Kept images the caller gets as URLs become the gateway's signed URLs: those asked as
        // URLs, and, when the request did not say, those the provider gave as URLs.
        let as_url = |i: usize| wants == Some(ResponseFormat::Url) || (wants.is_none() && given_as_url[i]);
        let kept = match answering.files {
            Some(filing) => Some(self.keep(filing, &mut generated, now_ms / 1000, as_url).await),
            None => None,
        };
        for image in &mut generated.images {
            if let ImageData::Base64(b64) = &image.data {
                if wants == Some(ResponseFormat::Url) {
                    image.data = ImageData::Url(answer::data_url(b64, image.media_type.as_deref()));
                }
            }
        }
        let count = generated.images.len();
        let cost = generated.cost_usd.or_else(|| pricing::cost(model, request, count, generated.tokens.as_ref()));
        let cache_entry = answering.for_cache.then(|| crate::cache::entry::storable(&generated, request.n));
        let reply = match answering.stream {
            Some(of) => {
                // A cached answer is its completed events alone: a hit answers with those.
                let partials = if answering.for_cache { &[][..] } else { &generated.partials[..] };
                let events = image_stream::events_of(of, request, now_ms / 1000, partials, &generated.images, generated.tokens);
                Reply::event_stream(200, events)
            }
            None => Reply::json(200, answer::render(shape, now_ms / 1000, &generated.images, cost)),
        };
        let short = (count < usize::from(request.n)).then_some((count, request.n));
        Attempt { cache_entry, kept, ..Attempt::answered(200, reply, cost, short) }
    }

    /// Replaces every image given as a URL with its bytes in base64, downloading them all at
    /// once from where `hosts` (the provider's `download_hosts`) allows; the first failure's
    /// reason when any fails.
    async fn download_all(&self, generated: &mut Generated, hosts: &[String], deadline: Deadline) -> Result<(), String> {
        let urls: Vec<(usize, String)> = generated
            .images
            .iter()
            .enumerate()
            .filter_map(|(i, image)| match &image.data {
                ImageData::Url(url) => Some((i, url.clone())),
                ImageData::Base64(_) => None,
            })
            .collect();
        let downloads = join_all(urls.into_iter().map(|(i, url)| async move { (i, self.download(&url, hosts, deadline).await) })).await;
        for (i, downloaded) in downloads {
            let (b64, media_type) = downloaded?;
            let image = &mut generated.images[i];
            image.data = ImageData::Base64(b64);
            image.media_type = media_type.or(image.media_type.take());
        }
        Ok(())
    }

    /// Downloads an image (no credentials: provider image URLs are signed or public) as base64,
    /// with its media type, following redirects by hand; a `data:` URL is read in place.
    async fn download(&self, url: &str, hosts: &[String], deadline: Deadline) -> Result<(String, Option<String>), String> {
        if url.starts_with("data:") {
            return self.data_url_image(url);
        }
        let mut at = site::download_url(url, hosts)?;
        for _ in 0..=MAX_REDIRECTS {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                return Err(transport_text(&TransportError::Timeout));
            }
            let get = UpstreamRequest::get(at.as_str().to_owned(), Vec::new());
            let mut reply = match self.send(get, remaining, 0).await {
                Ok(reply) => reply,
                Err(Spent::Transport(error)) => return Err(transport_text(&error)),
                Err(Spent::Budget) => return Err(format!("the request used all {} of its upstream requests (max_subrequests)", self.config.max_subrequests)),
            };
            if matches!(reply.status, 301 | 302 | 303 | 307 | 308) {
                let location = reply.location.as_deref().ok_or_else(|| format!("the image URL answered {} without a Location", reply.status))?;
                let next = at.join(location).map_err(|_| "the image URL redirected to something that is not a URL".to_owned())?;
                at = site::download_url(next.as_str(), hosts).map_err(|why| format!("a redirect led elsewhere: {why}"))?;
                continue;
            }
            if !(200..300).contains(&reply.status) {
                return Err(format!("the image URL answered {}", reply.status));
            }
            let media_type = reply.content_type.as_deref().map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).unwrap_or_default();
            if !media_type.starts_with("image/") {
                let shown = if media_type.is_empty() { "no Content-Type" } else { media_type.as_str() };
                return Err(format!("the image URL answered with {shown}, not an image"));
            }
            let bytes =
                reply.body.read_all(deadline.remaining_ms(self.clock).max(1), &self.upstream_bytes).await.map_err(|e| transport_text(&e))?.ok_or_else(
                    || format!("the images are larger than the {} bytes (max_upstream_bytes) one request may read", self.config.max_upstream_bytes),
                )?;
            return Ok((base64::engine::general_purpose::STANDARD.encode(bytes), Some(media_type)));
        }
        Err(format!("the image URL redirected more than {MAX_REDIRECTS} times"))
    }

    /// An image given as a base64 `data:` URL, read in place (its bytes came with the answer, and
    /// were counted against the request's byte budget then).
    fn data_url_image(&self, url: &str) -> Result<(String, Option<String>), String> {
        let (head, payload) = url["data:".len()..].split_once(',').ok_or("the image is a data: URL without data")?;
        let params = head.strip_suffix(";base64").ok_or("the image is a data: URL that is not base64")?;
        let media_type = params.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !media_type.starts_with("image/") {
            return Err(format!("the image is a data: URL of '{media_type}', not an image"));
        }
        base64::engine::general_purpose::STANDARD.decode(payload).map_err(|_| "the image is a data: URL whose base64 does not decode")?;
        Ok((payload.to_owned(), Some(media_type)))
    }
}
