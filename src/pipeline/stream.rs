//! Streamed answers from a provider that streams (`stream: true` sent upstream): the attempt
//! reads the upstream's stream to its first whole event, and from then on the stream is the
//! answer ([`EventRelay`]). Until then the attempt is like any other: an error status, a
//! connection that fails before the answer, falls back; a 200 has been paid for, so a stream
//! that breaks before its first event is final. An upstream that answers whole instead (a host
//! that ignores `stream`) is read whole and written as events.
//!
//! Its log line, its action, its cost (priced from its `completed` events' usage) and its
//! key's settlement wait for its end ([`Gateway::finish_stream`]), after the answer.

use crate::action::Action;
use crate::config::{ModelConfig, ProviderConfig};
use crate::event_relay::{self, EventRelay, StreamEnd};
use crate::files::NewFile;
use crate::http::{Reply, ReplyBody};
use crate::image_stream::Watch;
use crate::log::RequestLog;
use crate::media_type;
use crate::pricing;
use crate::providers::{Generated, Image, ImageData, Target};
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::upstream::{Upstream, UpstreamBody, UpstreamRequest};

use super::attempt::{Answering, Attempt};
use super::context::{RequestContext, StreamTerms};
use super::failure::{cut_off, Failure, Window};
use super::files::Filing;
use super::Gateway;

/// A request whose answer is a stream still being relayed; [`Gateway::finish_stream`] ends it.
#[derive(Debug)]
pub struct Unfinished {
    pub(super) cx: RequestContext,
}

/// What the edge does once a relayed stream has ended: log the line, store the files, then
/// record the action.
pub struct Finished {
    pub log: RequestLog,
    pub action: Option<Action>,
    pub files: Vec<NewFile>,
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// The attempt for a streamed request whose target streams: `call` asks for the stream.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stream_relay(
        &self,
        target: &Target<'_>,
        provider: &ProviderConfig,
        model: &ModelConfig,
        call: UpstreamRequest,
        request: &ImageRequest,
        answering: Answering<'_>,
        window: Window,
    ) -> Attempt<U::Body> {
        let Window { deadline, request_deadline, .. } = window;
        let provider_id = &target.provider.id;
        let mut reply = match self.answered(target, call, window).await {
            Ok(reply) => reply,
            Err(failure) => return failure.into(),
        };
        if !media_type::is(reply.content_type.as_deref(), "text/event-stream") {
            // Answered whole: written as events like any whole answer.
            return match self.translated(target, reply, window, u32::from(request.n)).await {
                Ok(generated) => self.deliver(provider, model, request, answering, generated, request_deadline).await,
                Err(failure) => failure.into(),
            };
        }
        let mut watch = Watch::new(provider_id, target.key.cloned(), self.config.max_upstream_bytes, answering.files.is_some());
        let mut ready = Vec::new();
        while ready.is_empty() {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                return cut_off(crate::upstream::TransportError::Timeout, provider_id).into();
            }
            match reply.body.next_events(remaining).await {
                Ok(Some(chunk)) => match watch.see(&chunk) {
                    Ok(events) => ready = events,
                    Err(why) => return Failure::paid(502, event_relay::unreadable(provider_id, &why.to_string())).into(),
                },
                Ok(None) => {
                    let error = event_relay::unreadable(provider_id, "it ended before its first event");
                    return Failure::paid(502, error).into();
                }
                Err(error) => return cut_off(error, provider_id).into(),
            }
        }
        if let Some(error) = watch.failure.take() {
            // Failed at its start (a moderation block): a JSON error, not a stream.
            return Failure::paid(error.status(), error).into();
        }
        let relay = EventRelay::new(reply.body, watch, ready, request_deadline, provider_id);
        let headers = Reply::<()>::event_stream(200, Vec::new()).headers;
        let mut attempt = Attempt::answered(reply.status, Reply { status: 200, headers, body: ReplyBody::Events(Box::new(relay)) }, None, None);
        let filing = answering.files.map(|Filing { request_id, owner, base }| (request_id.to_owned(), owner.to_owned(), base.to_owned()));
        let request = ImageRequest { inputs: None, ..request.clone() };
        attempt.streamed = Some(Box::new(StreamTerms { model_id: model.id.clone(), request, filing }));
        attempt
    }

    /// Ends a request whose stream has been relayed, as `end` says it ended: prices it from
    /// its `completed` events' usage, keeps its final images, settles its key's counters, and
    /// gives the log line and the action (an `error` one, though its status was 200, when the
    /// stream failed after it began).
    pub async fn finish_stream(&self, unfinished: Unfinished, end: StreamEnd) -> Finished {
        let mut cx = unfinished.cx;
        let now_ms = self.clock.now_ms();
        let StreamEnd { error, completed, tokens, final_images, client_left, .. } = end;
        let completed = completed as usize;
        if let Some(terms) = cx.streamed.take() {
            let model = self.config.models.iter().find(|model| model.id == terms.model_id);
            cx.cost_usd = model.and_then(|model| pricing::cost(model, &terms.request, completed, tokens.as_ref()));
            if completed < usize::from(terms.request.n) {
                cx.short_of_images = Some((completed, terms.request.n));
            }
            if let (Some((request_id, owner, base)), false) = (&terms.filing, final_images.is_empty()) {
                let media_type = terms.request.output_format.map(|format| format.media_type().to_owned());
                let images = final_images.into_iter().map(|b64| Image { data: ImageData::Base64(b64), media_type: media_type.clone(), revised_prompt: None });
                let mut generated = Generated { images: images.collect(), ..Generated::default() };
                let filing = Filing { request_id, owner, base };
                cx.kept = Some(self.keep(filing, &mut generated, now_ms / 1000, |_| false).await);
            }
        }
        if completed > 0 && cx.cost_usd.is_none() {
            cx.unpriced.get_or_insert_with(|| "its model has no price for this answer".to_owned());
        }
        // The stream began with a 200: whatever its end, the upstream may have charged for it.
        self.settle(&mut cx, true).await;
        let files = cx.kept.as_mut().map(|kept| std::mem::take(&mut kept.pending)).unwrap_or_default();
        let (mut log, action) = cx.record(200, error.as_ref(), false, now_ms);
        log.client_left = client_left;
        Finished { log, action, files }
    }
}
