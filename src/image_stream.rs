//! OpenAI's image streams (`stream: true` on generations and edits, answered as server-sent
//! events): what an upstream's event is, and the events the gateway writes itself, a whole
//! answer as one `completed` event (a cache hit, a model that cannot stream) and a failure as an
//! `error` event, which the official clients raise as an API error.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::GatewayError;
use crate::providers::openai::Usage;
use crate::providers::{errors, Image, ImageData, Tokens};
use crate::request::{ImageRequest, Size};
use crate::secret::Secret;
use crate::sse::{self, Event, EventReader, ReadError};

/// Which operation a stream answers: its events are `image_generation.*` or `image_edit.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOf {
    Generation,
    Edit,
}

impl StreamOf {
    /// The name of its completion event.
    pub fn completed(self) -> &'static str {
        match self {
            StreamOf::Generation => "image_generation.completed",
            StreamOf::Edit => "image_edit.completed",
        }
    }

    /// The name of its partial image event.
    pub fn partial_image(self) -> &'static str {
        match self {
            StreamOf::Generation => "image_generation.partial_image",
            StreamOf::Edit => "image_edit.partial_image",
        }
    }
}

/// What an upstream's event is to the gateway.
#[derive(Debug, PartialEq)]
pub enum Streamed {
    /// A rough image on the way (`partial_image_index`), passed on and not kept.
    Partial { index: u64 },
    /// The final image (its base64, when the event has one) and the tokens billed.
    Completed { b64_json: Option<String>, tokens: Option<Tokens> },
    /// The upstream reports a failure in the stream (its message and code, as it said them).
    Failed { message: Option<String>, code: Option<String> },
    /// Anything else (passed on as it came).
    Other,
}

/// What the gateway reads of an event's data (the image's base64 borrowed, not copied).
#[derive(Deserialize, Default)]
struct Peek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    partial_image_index: Option<u64>,
    #[serde(borrow, default)]
    b64_json: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Failure>,
    /// An error event's message at the top level (an `error` event without an envelope).
    #[serde(default)]
    message: Option<String>,
}

/// `data` read field by field, each field that does not read as expected left out.
fn leniently(data: &str) -> Peek<'static> {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(data) else { return Peek::default() };
    let mut take = |name: &str| fields.remove(name).unwrap_or(Value::Null);
    let text = |value: Value| match value {
        Value::String(text) => Some(Cow::Owned(text)),
        _ => None,
    };
    let error = match take("error") {
        Value::Null => None,
        Value::Object(error) => Some(Failure {
            message: error.get("message").and_then(Value::as_str).map(str::to_owned),
            code: error.get("code").and_then(Value::as_str).map(str::to_owned),
        }),
        other => Some(Failure { message: other.as_str().map(str::to_owned), code: None }),
    };
    Peek {
        kind: text(take("type")),
        partial_image_index: take("partial_image_index").as_u64(),
        b64_json: text(take("b64_json")),
        usage: Usage::deserialize(take("usage")).ok(),
        error,
        message: take("message").as_str().map(str::to_owned),
    }
}

#[derive(Deserialize)]
struct Failure {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// The event's `type` (in its data, else its `event:` name) read as [`Streamed`]. A well-formed
/// event is read without copying its image; one with a field of an unexpected type is read
/// field by field, so that nothing it says is lost to one odd field.
pub fn classify(event: &Event) -> Streamed {
    let data: Peek = serde_json::from_str(&event.data).unwrap_or_else(|_| leniently(&event.data));
    let kind = data.kind.as_deref().or(event.name.as_deref()).unwrap_or("");
    if kind == "error" || data.error.is_some() {
        let (message, code) = data.error.map_or((None, None), |error| (error.message, error.code));
        return Streamed::Failed { message: message.or(data.message), code };
    }
    if kind.ends_with(".partial_image") {
        return Streamed::Partial { index: data.partial_image_index.unwrap_or(0) };
    }
    if kind.ends_with(".completed") {
        let tokens = data.usage.and_then(|usage| usage.tokens());
        return Streamed::Completed { b64_json: data.b64_json.map(Cow::into_owned), tokens };
    }
    Streamed::Other
}

/// An upstream's stream watched as it is relayed: read into whole events, each passed on as it
/// completes, and read here to know what has happened. Holds one event's bytes at a time
/// (partial images pass through and are never kept) and the final images only with
/// `keep_final` (for the history). The provider's key never passes: an error event that
/// repeats it goes on with it redacted.
#[derive(Debug)]
pub struct Watch {
    reader: EventReader,
    keep_final: bool,
    provider_id: String,
    key: Option<Secret>,
    /// Events read so far: after the first one reaches the client, the stream is the answer
    /// (no retry, no fallback).
    pub events: u32,
    pub partials: u32,
    /// The final images' base64, in order, with `keep_final`.
    pub final_images: Vec<String>,
    pub tokens: Option<Tokens>,
    /// How many `completed` events came (one per image).
    pub completed: u32,
    /// The upstream's own failure event, if it sent one.
    pub failure: Option<GatewayError>,
}

/// How a relayed stream ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// With its completed event.
    Completed,
    /// With the upstream's error event.
    Failed(GatewayError),
    /// Before its completed event (the connection broke, or the upstream stopped).
    Cut,
}

impl Watch {
    /// A watch of `provider_id`'s stream (called with `key`), refusing events over
    /// `max_event_bytes`, keeping the final images with `keep_final`.
    pub fn new(provider_id: &str, key: Option<Secret>, max_event_bytes: usize, keep_final: bool) -> Self {
        Watch {
            reader: EventReader::new(max_event_bytes),
            keep_final,
            provider_id: provider_id.to_owned(),
            key,
            events: 0,
            partials: 0,
            final_images: Vec::new(),
            tokens: None,
            completed: 0,
            failure: None,
        }
    }

    /// Reads the next chunk of the stream; gives the events it completed, framed for the client
    /// (empty while an event is still arriving).
    pub fn see(&mut self, chunk: &[u8]) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        for event in self.reader.feed(chunk)? {
            self.events += 1;
            let streamed = classify(&event);
            match (&streamed, &self.key) {
                // Images go on as they came; anything else (an error, an event the gateway does
                // not know) with the provider's key redacted, should it repeat it.
                (Streamed::Partial { .. } | Streamed::Completed { .. }, _) | (_, None) => out.extend(sse::write_again(&event)),
                (_, Some(key)) => out.extend(sse::write_again(&Event { data: key.redact_from(&event.data), ..event })),
            }
            match streamed {
                Streamed::Partial { .. } => self.partials += 1,
                Streamed::Completed { b64_json, tokens } => {
                    self.completed += 1;
                    if let Some(more) = tokens {
                        self.tokens = Some(self.tokens.map_or(more, |seen| seen.plus(more)));
                    }
                    if let (true, Some(b64)) = (self.keep_final, b64_json) {
                        self.final_images.push(b64);
                    }
                }
                Streamed::Failed { message, code } => {
                    self.failure = Some(errors::stream_failed(&self.provider_id, message.as_deref(), code.as_deref(), self.key.as_ref()));
                }
                Streamed::Other => {}
            }
        }
        Ok(out)
    }

    /// How the stream ended, once it has.
    pub fn ended(&self) -> Ended {
        match (&self.failure, self.completed) {
            (Some(message), _) => Ended::Failed(message.clone()),
            (None, 0) => Ended::Cut,
            (None, _) => Ended::Completed,
        }
    }
}

/// The settings a completed event repeats from the request (OpenAI's defaults where it said
/// none: `auto`, and `png`).
#[derive(Debug, Clone, Default)]
pub struct Described<'a> {
    pub size: Option<&'a str>,
    pub quality: Option<&'a str>,
    pub background: Option<&'a str>,
    pub output_format: Option<&'a str>,
}

/// What an image event holds beside its kind.
#[derive(Serialize)]
struct ImageEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    b64_json: &'a str,
    created_at: u64,
    size: &'a str,
    quality: &'a str,
    background: &'a str,
    output_format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_image_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

impl<'a> ImageEvent<'a> {
    fn new(kind: &'a str, described: &Described<'a>, b64_json: &'a str, created_at: u64) -> Self {
        ImageEvent {
            kind,
            b64_json,
            created_at,
            size: described.size.unwrap_or("auto"),
            quality: described.quality.unwrap_or("auto"),
            background: described.background.unwrap_or("auto"),
            output_format: described.output_format.unwrap_or("png"),
            partial_image_index: None,
            usage: None,
        }
    }

    fn written(&self) -> Vec<u8> {
        sse::write(self.kind, &serde_json::to_string(self).expect("an event always serialises"))
    }
}

/// A `completed` event for a whole image (`b64_json`), made at `created_at` (Unix seconds), with
/// the `usage` billed when it is known.
pub fn completed(of: StreamOf, described: &Described, b64_json: &str, created_at: u64, usage: Option<Value>) -> Vec<u8> {
    ImageEvent { usage, ..ImageEvent::new(of.completed(), described, b64_json, created_at) }.written()
}

/// A `partial_image` event: the `index`-th rough image (`b64_json`) before the final one.
pub fn partial_image(of: StreamOf, described: &Described, b64_json: &str, index: usize, created_at: u64) -> Vec<u8> {
    ImageEvent { partial_image_index: Some(index), ..ImageEvent::new(of.partial_image(), described, b64_json, created_at) }.written()
}

/// A whole answer as events made at `created_at`: its `partials` (base64) as `partial_image`
/// events, then its `images` as `completed` events, one per image. Each carries a `usage` (the
/// clients' types require one): the last the tokens billed (`tokens`, zero when the upstream
/// said none), the others zero.
pub fn events_of(of: StreamOf, request: &ImageRequest, created_at: u64, partials: &[Image], images: &[Image], tokens: Option<Tokens>) -> Vec<u8> {
    let size = request.size.map(Size::wire);
    let described = Described {
        size: size.as_deref(),
        quality: request.quality.as_deref(),
        background: request.background.as_deref(),
        output_format: request.output_format.map(|format| format.name()),
    };
    let mut out = Vec::new();
    for (index, partial) in partials.iter().enumerate() {
        if let ImageData::Base64(b64) = &partial.data {
            out.extend(partial_image(of, &described, b64, index, created_at));
        }
    }
    for (i, image) in images.iter().enumerate() {
        let ImageData::Base64(b64) = &image.data else { continue };
        let usage = usage_of(tokens.filter(|_| i + 1 == images.len()).unwrap_or_default());
        out.extend(completed(of, &described, b64, created_at, Some(usage)));
    }
    out
}

/// `tokens` as OpenAI's image `usage`.
fn usage_of(tokens: Tokens) -> Value {
    let input = tokens.input_text + tokens.input_image;
    serde_json::json!({
        "input_tokens": input,
        "output_tokens": tokens.output,
        "total_tokens": input + tokens.output,
        "input_tokens_details": {"text_tokens": tokens.input_text, "image_tokens": tokens.input_image},
    })
}

/// An `error` event for `error`, in the shape of OpenAI's error envelope with its `type`.
pub fn failed(error: &GatewayError) -> Vec<u8> {
    let envelope = String::from_utf8(error.body()).expect("the envelope is JSON, so UTF-8");
    let fields = envelope.strip_prefix('{').expect("the envelope is an object");
    sse::write("error", &format!(r#"{{"type":"error",{fields}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn event(name: &str, data: &str) -> Event {
        Event { name: Some(name.to_owned()), data: data.to_owned() }
    }

    fn read(bytes: &[u8]) -> Event {
        let mut events = EventReader::new(1 << 20).feed(bytes).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn upstream_events_are_told_apart() {
        let partial = event("image_generation.partial_image", r#"{"type":"image_generation.partial_image","b64_json":"AA","partial_image_index":2}"#);
        assert_eq!(classify(&partial), Streamed::Partial { index: 2 });
        let completed = event(
            "image_edit.completed",
            r#"{"type":"image_edit.completed","b64_json":"QUJD","usage":{"input_tokens":50,"output_tokens":4160,"input_tokens_details":{"text_tokens":10,"image_tokens":40}}}"#,
        );
        let tokens = Some(Tokens { input_text: 10, input_image: 40, output: 4160 });
        assert_eq!(classify(&completed), Streamed::Completed { b64_json: Some("QUJD".to_owned()), tokens });
        let by_name = Event { name: Some("image_generation.completed".to_owned()), data: r#"{"b64_json":"QQ"}"#.to_owned() };
        assert_eq!(classify(&by_name), Streamed::Completed { b64_json: Some("QQ".to_owned()), tokens: None });
        let failed = event("error", r#"{"type":"error","error":{"message":"moderation blocked","type":"image_generation_user_error"}}"#);
        assert_eq!(classify(&failed), Streamed::Failed { message: Some("moderation blocked".to_owned()), code: None });
        assert_eq!(classify(&event("other", "not json")), Streamed::Other);
        // One field of an unexpected type loses nothing else the event says.
        let odd = event(
            "image_generation.completed",
            r#"{"type":"image_generation.completed","b64_json":"QQ","partial_image_index":"none","usage":{"input_tokens":5,"output_tokens":9}}"#,
        );
        let tokens = Some(Tokens { input_text: 0, input_image: 0, output: 9 });
        assert!(
            matches!(classify(&odd), Streamed::Completed { b64_json: Some(ref b64), tokens: t } if b64 == "QQ" && t.map(|t| t.output) == tokens.map(|t| t.output))
        );
        let bare = Event { name: None, data: r#"{"error":"overloaded"}"#.to_owned() };
        assert_eq!(classify(&bare), Streamed::Failed { message: Some("overloaded".to_owned()), code: None });
    }

    #[test]
    fn a_watched_stream_keeps_only_the_final_image_and_knows_how_it_ended() {
        let partial = |i: u32| {
            sse::write(
                "image_generation.partial_image",
                &format!(r#"{{"type":"image_generation.partial_image","b64_json":"{}","partial_image_index":{i}}}"#, "P".repeat(1000)),
            )
        };
        let done = sse::write(
            "image_generation.completed",
            r#"{"type":"image_generation.completed","b64_json":"RklOQUw=","usage":{"input_tokens":5,"output_tokens":272}}"#,
        );
        let stream = [partial(0), partial(1), done].concat();
        let mut kept = Watch::new("p", None, 4096, true);
        let mut passed_on = Vec::new();
        for chunk in stream.chunks(700) {
            let events = kept.see(chunk).unwrap();
            // Whole events only, each as soon as its last byte came.
            assert!(events.is_empty() || events.ends_with(b"\n\n"));
            passed_on.extend(events);
        }
        assert_eq!(passed_on, stream, "the events go on as they came");
        assert_eq!((kept.events, kept.partials, kept.completed, kept.ended()), (3, 2, 1, Ended::Completed));
        assert_eq!(kept.final_images, ["RklOQUw="]);
        assert_eq!(kept.tokens, Some(Tokens { input_text: 5, input_image: 0, output: 272 }));
        let mut passed = Watch::new("p", None, 4096, false);
        passed.see(&stream).unwrap();
        assert_eq!((passed.final_images.len(), passed.ended()), (0, Ended::Completed));

        let mut cut = Watch::new("p", None, 4096, false);
        let half = cut.see(&[partial(0), b"event: image_generation.completed\ndata: {\"ty".to_vec()].concat()).unwrap();
        assert_eq!(half, partial(0), "half an event is held back");
        assert_eq!((cut.events, cut.ended()), (1, Ended::Cut));
        let mut failed = Watch::new("p", None, 4096, false);
        failed.see(&sse::write("error", r#"{"type":"error","error":{"message":"blocked"}}"#)).unwrap();
        let Ended::Failed(error) = failed.ended() else { panic!("failed") };
        assert_eq!((error.code, error.message.as_str()), (Some("upstream_stream_error"), "The upstream provider 'p' failed in its stream: blocked"));
        let mut refused = Watch::new("p", Some(Secret::new("sk-secret")), 4096, false);
        let echo = sse::write("error", r#"{"type":"error","error":{"message":"no, sk-secret","code":"moderation_blocked"}}"#);
        let passed_on = refused.see(&echo).unwrap();
        assert!(!String::from_utf8(passed_on).unwrap().contains("sk-secret"), "the key never goes on");
        let Ended::Failed(error) = refused.ended() else { panic!("failed") };
        assert_eq!((error.status(), error.code), (403, Some("content_policy_violation")));
        assert!(!error.message.contains("sk-secret"));
        assert_eq!(Watch::new("p", None, 100, false).see(&partial(0)), Err(ReadError::TooLarge { limit: 100 }));
    }

    #[test]
    fn a_whole_image_becomes_one_completed_event() {
        let described = Described { size: Some("1024x1024"), quality: Some("low"), ..Described::default() };
        let usage = serde_json::json!({"input_tokens": 5, "output_tokens": 272, "total_tokens": 277});
        let read = read(&completed(StreamOf::Generation, &described, "QUJD", 1_700_000_000, Some(usage.clone())));
        assert_eq!(read.name.as_deref(), Some("image_generation.completed"));
        let data: Value = serde_json::from_str(&read.data).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"type": "image_generation.completed", "b64_json": "QUJD", "created_at": 1_700_000_000u64, "size": "1024x1024",
                "quality": "low", "background": "auto", "output_format": "png", "usage": usage})
        );
        assert!(matches!(classify(&read), Streamed::Completed { .. }));
        let edit = self::read(&completed(StreamOf::Edit, &Described::default(), "QQ", 1, None));
        assert_eq!(edit.name.as_deref(), Some("image_edit.completed"));
        assert!(!edit.data.contains("usage"));
    }

    #[test]
    fn a_failure_is_an_error_event_in_openais_shape() {
        let error = GatewayError::new(ErrorKind::UpstreamTimeout, "The upstream's stream stalled.");
        let read = read(&failed(&error));
        assert_eq!(read.name.as_deref(), Some("error"));
        let data: Value = serde_json::from_str(&read.data).unwrap();
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["message"], "The upstream's stream stalled.");
        assert_eq!(data["error"]["type"], ErrorKind::UpstreamTimeout.error_type());
        assert_eq!(classify(&read), Streamed::Failed { message: Some("The upstream's stream stalled.".to_owned()), code: Some("upstream_timeout".to_owned()) });
    }
}
