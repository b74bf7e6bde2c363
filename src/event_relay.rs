//! A provider's own image stream relayed to its client, event by event, after the first event
//! has made it the answer: no retry and no fallback from then on (the client has part of an
//! answer, and the generation is paid for). Events go on whole as soon as their last byte
//! arrives; the relay holds one event at a time, and the final images only when the history
//! keeps them. A stream that fails, breaks off, is unreadable or outlasts the request's deadline
//! ends with an `error` event in OpenAI's shape, which the official clients raise.
//!
//! A client that leaves does not stop the reading at once: the generation is paid for, and its
//! end gives its cost and its image. The reading goes on for at most
//! [`READ_ON_AFTER_CLIENT_LEFT_MS`], within what the runtime allows a request's work after its
//! client has gone. A client too slow to take an event by the deadline is given up there (its
//! stream is broken off, so that it cannot mistake it for a whole answer).

use std::future::Future;

use crate::clock::{Clock, Deadline};
use crate::error::{ErrorKind, GatewayError};
use crate::image_stream::{self, Ended, Watch};
use crate::providers::Tokens;
use crate::upstream::{TransportError, UpstreamBody};

/// How long a stream is read on once its client has gone (Workers keep a request's work alive
/// for about 30 s after its client disconnects; the rest is for recording what was read).
pub const READ_ON_AFTER_CLIENT_LEFT_MS: u64 = 20_000;

/// The least time a client is given to take an event, also past the deadline (the error event
/// that says the deadline passed must have time to go).
pub const MIN_SEND_MS: u64 = 2_000;

/// Where a relayed stream's events go: the client's response.
pub trait EventSink {
    /// Sends `events` (whole events); `false` once the client has gone, or has not taken them
    /// within `limit_ms` (it reads too slowly for the deadline: its stream is then broken off,
    /// never ended as if whole).
    fn send(&mut self, events: Vec<u8>, limit_ms: u64) -> impl Future<Output = bool>;
}

/// How long the client may take to take an event: what is left of the deadline, and at least
/// [`MIN_SEND_MS`].
fn send_limit(deadline: Deadline, clock: &dyn Clock) -> u64 {
    deadline.remaining_ms(clock).max(MIN_SEND_MS)
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
    /// Whether the client went away before the end.
    pub client_left: bool,
}

impl StreamEnd {
    /// The end of a stream that never reached its client (its response could not be made).
    pub fn undelivered(error: GatewayError) -> Self {
        StreamEnd { error: Some(error), completed: 0, partials: 0, tokens: None, final_images: Vec::new(), client_left: true }
    }
}

impl<B: UpstreamBody> EventRelay<B> {
    /// The rest of `body` to relay, `watch` having read `ready` (whole events) from it.
    pub fn new(body: B, watch: Watch, ready: Vec<u8>, deadline: Deadline, provider_id: &str) -> Self {
        EventRelay { body, watch, ready, deadline, provider_id: provider_id.to_owned() }
    }

    /// Relays the stream to `sink` until it ends or the deadline passes.
    pub async fn pump(self, sink: &mut impl EventSink, clock: &dyn Clock) -> StreamEnd {
        let EventRelay { mut body, mut watch, ready, deadline, provider_id } = self;
        let mut present = sink.send(ready, send_limit(deadline, clock)).await;
        // Once the client has gone, the reading stops at the earlier of the deadline and this.
        let mut read_until = (!present).then(|| Deadline::after(clock.now_ms(), READ_ON_AFTER_CLIENT_LEFT_MS));
        let error = loop {
            let until = read_until.map_or(deadline, |until| until.earlier(deadline));
            let remaining = until.remaining_ms(clock);
            if remaining == 0 {
                break Some(stalled(&provider_id, read_until.is_some() && until != deadline));
            }
            match body.next_events(remaining).await {
                Ok(Some(chunk)) => match watch.see(&chunk) {
                    Ok(events) if events.is_empty() => {}
                    Ok(events) => {
                        if present && !sink.send(events, send_limit(deadline, clock)).await {
                            present = false;
                            read_until = Some(Deadline::after(clock.now_ms(), READ_ON_AFTER_CLIENT_LEFT_MS));
                        }
                    }
                    Err(why) => break Some(unreadable(&provider_id, &why.to_string())),
                },
                Ok(None) => {
                    break match watch.ended() {
                        Ended::Completed => None,
                        Ended::Failed(failure) => Some(failure),
                        Ended::Cut => Some(cut(&provider_id, "it ended before its completed event")),
                    };
                }
                Err(TransportError::Timeout) => break Some(stalled(&provider_id, read_until.is_some() && until != deadline)),
                Err(TransportError::Failed(why) | TransportError::NotSent(why)) => break Some(cut(&provider_id, &format!("the connection broke ({why})"))),
            }
        };
        // The upstream's own error event went on as it came; any other end is told here.
        if let (Some(error), true, true) = (&error, watch.failure.is_none(), present) {
            present = sink.send(image_stream::failed(error), send_limit(deadline, clock)).await;
        }
        drop(body);
        StreamEnd { error, completed: watch.completed, partials: watch.partials, tokens: watch.tokens, final_images: watch.final_images, client_left: !present }
    }
}

/// The stream outlasted the request's deadline, or (`client_left`) the time it is read on for
/// a client that has gone.
fn stalled(provider_id: &str, client_left: bool) -> GatewayError {
    if client_left {
        let secs = READ_ON_AFTER_CLIENT_LEFT_MS / 1000;
        return GatewayError::new(
            ErrorKind::UpstreamTimeout,
            format!("The client left before the stream of the upstream provider '{provider_id}' ended, and it did not end within {secs} s; the gateway stopped reading."),
        )
        .with_code("client_left");
    }
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

/// The stream could not be read on.
pub fn unreadable(provider_id: &str, why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadUpstream, format!("The stream of the upstream provider '{provider_id}' could not be read: {why}."))
        .with_code(crate::providers::errors::UNREADABLE)
}
