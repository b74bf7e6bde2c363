//! Delivery: a translated answer written in the caller's shape and format.
//!
//! Images a provider gave as URLs are downloaded (concurrently, without credentials, following
//! redirects) when the caller wants base64, which OpenRouter's shape always does; base64 images
//! become `data:` URLs when the caller asked for URLs. The images are already generated and paid
//! for, so downloads get the request's whole remaining time, and a failed one is
//! [`Outcome::Final`]. An answer with fewer images than asked says so in `x-imagegate-images`.

use base64::Engine as _;
use futures_util::future::join_all;

use crate::answer::{self, Shape};
use crate::clock::Deadline;
use crate::error::{ErrorKind, GatewayError};
use crate::http::Reply;
use crate::policy::Outcome;
use crate::pricing;
use crate::providers::{Generated, ImageData, Target};
use crate::request::{ImageRequest, ResponseFormat};
use crate::secret::Secrets;
use crate::upstream::{Method, TransportError, Upstream, UpstreamBody, UpstreamRequest};

use super::attempt::{cost_header, transport_text, Attempt, Spent};
use super::Gateway;

/// The largest image downloaded for a client that asked for `b64_json`.
const MAX_IMAGE_BYTES: usize = 24 << 20;

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// The answer to `request` in `shape`, with `generated`'s images in the format asked for;
    /// downloads end at `deadline` (the request's, not the attempt's).
    pub(super) async fn deliver(
        &self,
        target: &Target<'_>,
        request: &ImageRequest,
        shape: Shape,
        mut generated: Generated,
        deadline: Deadline,
    ) -> Attempt<U::Body> {
        let wants = if shape == Shape::OpenRouter { Some(ResponseFormat::B64Json) } else { request.response_format };
        if wants == Some(ResponseFormat::B64Json) {
            if let Err(why) = self.download_all(&mut generated, deadline).await {
                let error = GatewayError::new(
                    ErrorKind::BadUpstream,
                    format!("The upstream provider '{}' generated the image, but the gateway could not download it: {why}", target.provider.id),
                )
                .with_code("image_download_failed");
                // Generated and paid for: another attempt would pay again.
                return Attempt::failed(Outcome::Final, 502, error);
            }
        }
        for image in &mut generated.images {
            if let ImageData::Base64(b64) = &image.data {
                if image.media_type.is_none() {
                    image.media_type = request.output_format.map(|f| format!("image/{}", f.name()));
                }
                if wants == Some(ResponseFormat::Url) {
                    image.data = ImageData::Url(answer::data_url(b64, image.media_type.as_deref()));
                }
            }
        }
        let count = generated.images.len();
        let cost = generated.cost_usd.or_else(|| pricing::cost(target.model, request, count));
        let body = answer::render(shape, self.clock.now_ms() / 1000, &generated.images, cost);
        let mut reply = Reply::json(200, body);
        reply.headers.extend(cost_header(cost));
        if count < usize::from(request.n) {
            reply.headers.push(("x-imagegate-images", format!("{count}/{}", request.n)));
        }
        Attempt { outcome: Outcome::Success, status: 200, result: Ok(reply) }
    }

    /// Replaces every image given as a URL with its bytes in base64, downloading them all at
    /// once; the first failure's reason when any fails.
    async fn download_all(&self, generated: &mut Generated, deadline: Deadline) -> Result<(), String> {
        let urls: Vec<(usize, String)> = generated
            .images
            .iter()
            .enumerate()
            .filter_map(|(i, image)| match &image.data {
                ImageData::Url(url) => Some((i, url.clone())),
                ImageData::Base64(_) => None,
            })
            .collect();
        let downloads = join_all(urls.into_iter().map(|(i, url)| async move { (i, self.download(url, deadline).await) })).await;
        for (i, downloaded) in downloads {
            let (b64, media_type) = downloaded?;
            let image = &mut generated.images[i];
            image.data = ImageData::Base64(b64);
            image.media_type = media_type.or(image.media_type.take());
        }
        Ok(())
    }

    /// Downloads an image (no credentials: provider image URLs are signed or public) as base64,
    /// with the media type its answer names.
    async fn download(&self, url: String, deadline: Deadline) -> Result<(String, Option<String>), String> {
        let remaining = deadline.remaining_ms(self.clock);
        if remaining == 0 {
            return Err(transport_text(&TransportError::Timeout));
        }
        let get = UpstreamRequest { method: Method::Get, url, headers: Vec::new(), body: Vec::new() };
        let mut reply = match self.send(get, remaining, 0).await {
            Ok(reply) => reply,
            Err(Spent::Transport(error)) => return Err(transport_text(&error)),
            Err(Spent::Budget) => return Err(format!("the request used all {} of its upstream requests (max_subrequests)", self.config.max_subrequests)),
        };
        if !(200..300).contains(&reply.status) {
            return Err(format!("the image URL answered {}", reply.status));
        }
        let bytes = reply
            .body
            .read_all(deadline.remaining_ms(self.clock).max(1), MAX_IMAGE_BYTES)
            .await
            .map_err(|e| transport_text(&e))?
            .ok_or_else(|| format!("the image is larger than {MAX_IMAGE_BYTES} bytes"))?;
        let media_type = reply.content_type.filter(|ct| ct.starts_with("image/")).map(|ct| ct.split(';').next().unwrap_or("").trim().to_owned());
        Ok((base64::engine::general_purpose::STANDARD.encode(bytes), media_type))
    }
}
