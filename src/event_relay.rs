//! A provider's own image stream relayed to its client, event by event, after the first event
//! has made it the answer: no retry and no fallback from then on (the client has part of an
//! answer, and the generation is paid for). Each event goes on whole as soon as its last byte
//! arrives; the relay holds one event at a time, and the final images only when the history
//! keeps them. A stream that fails, breaks off, is unreadable or outlasts the request's
//! deadline ends with an `error` event in OpenAI's shape, which the official clients raise.

use std::future::Future;

use crate::clock::{Clock, Deadline};
use crate::error::{ErrorKind, GatewayError};
use crate::image_stream::{self, Ended, Watch};
use crate::providers::Tokens;
use crate::upstream::{TransportError, UpstreamBody};

/// Where a relayed stream's events go: the client's response.
pub trait EventSink {
    /// Sends `events` (whole events); `false` once the client has gone.
    fn send(&mut self, events: Vec<u8>) -> impl Future<Output = bool>;
}

/// An upstream's image stream whose first events have been read, ready to be relayed.
pub struct EventRelay<B> {
    body: B,
    watch: Watch,
    /// The events read before the relay began, sent first.
    ready: Vec<u8>,
    /// The request's deadline, which holds over the whole stream.
    deadline: Deadline,
    provider_id: String,
}

/// How a relayed stream ended, for the log, the action, the cost and the key's counters.
#[derive(Debug)]
pub struct StreamEnd {
    /// Why the stream ended before its answer was whole (the client got it as an `error` event).
    pub error: Option<GatewayError>,
    /// How many `completed` events (images) it carried.
    pub completed: u32,
    pub partials: u32,
    /// The tokens its `completed` events billed.
    pub tokens: Option<Tokens>,
    /// The final images' base64, when the relay kept them.
    pub final_images: Vec<String>,
    /// Whether the client went away before the end (the stream was read on to its end).
    pub client_left: bool,
}

impl<B: UpstreamBody> EventRelay<B> {
    /// The rest of `body` to relay, `watch` having read `ready` (whole events) from it.
    pub fn new(body: B, watch: Watch, ready: Vec<u8>, deadline: Deadline, provider_id: &str) -> Self {
        EventRelay { body, watch, ready, deadline, provider_id: provider_id.to_owned() }
    }

    /// Relays the stream to `sink` until it ends or the deadline passes. A client that leaves
    /// does not stop the reading: the generation is paid for, and the history records it.
    pub async fn pump(self, sink: &mut impl EventSink, clock: &dyn Clock) -> StreamEnd {
        let EventRelay { mut body, mut watch, ready, deadline, provider_id } = self;
        let mut present = sink.send(ready).await;
        let error = loop {
            let remaining = deadline.remaining_ms(clock);
            if remaining == 0 {
                break Some(stalled(&provider_id));
            }
            match body.next_events(remaining).await {
                Ok(Some(chunk)) => match watch.see(&chunk) {
                    Ok(events) if events.is_empty() => {}
                    Ok(events) => present = present && sink.send(events).await,
                    Err(why) => break Some(unreadable(&provider_id, &why.to_string())),
                },
                Ok(None) => {
                    break match watch.ended() {
                        Ended::Completed => None,
                        Ended::Failed(message) => Some(failed(&provider_id, &message)),
                        Ended::Cut => Some(cut(&provider_id, "it ended before its completed event")),
                    };
                }
                Err(TransportError::Timeout) => break Some(stalled(&provider_id)),
                Err(TransportError::Failed(why) | TransportError::NotSent(why)) => break Some(cut(&provider_id, &format!("the connection broke ({why})"))),
            }
        };
        // The upstream's own error event went on as it came; any other end is told here.
        if let (Some(error), true) = (&error, watch.failure.is_none()) {
            if present {
                present = sink.send(image_stream::failed(error)).await;
            }
        }
        drop(body);
        StreamEnd { error, completed: watch.completed, partials: watch.partials, tokens: watch.tokens, final_images: watch.final_images, client_left: !present }
    }
}

/// The stream outlasted the request's deadline.
fn stalled(provider_id: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamTimeout,
        format!("The request's deadline passed before the stream of the upstream provider '{provider_id}' ended; it was cut."),
    )
    .with_code("stream_timeout")
}

/// The stream broke off or ended early.
fn cut(provider_id: &str, why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadUpstream, format!("The stream of the upstream provider '{provider_id}' broke off: {why}.")).with_code("stream_cut")
}

/// The upstream reported a failure in its stream.
fn failed(provider_id: &str, message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadUpstream, format!("The upstream provider '{provider_id}' failed in its stream: {message}"))
        .with_code("upstream_stream_error")
}

/// The stream could not be read on.
pub fn unreadable(provider_id: &str, why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadUpstream, format!("The stream of the upstream provider '{provider_id}' could not be read: {why}."))
        .with_code(crate::providers::errors::UNREADABLE)
}
