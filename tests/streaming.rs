//! `stream: true`: the answer as OpenAI's image stream events. A model whose upstream answers
//! whole streams its whole answer as `completed` events (retries and fallbacks happen before
//! anything is sent), unless its `supports.stream` is false. (A provider's own stream, relayed:
//! `stream_relay.rs`.)

mod support;

use imagegate::sse::{Event, EventReader};
use serde_json::Value;
use support::*;

fn events(served: &Served) -> Vec<Event> {
    assert_eq!(served.header("content-type"), Some("text/event-stream; charset=utf-8"), "{}", served.everything_sent());
    let mut reader = EventReader::new(1 << 20);
    let events = reader.feed(&served.body).unwrap();
    assert!(!reader.unfinished());
    events
}

fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

#[test]
fn a_whole_answer_streams_as_one_completed_event_with_its_usage() {
    let h = Harness::new();
    let upstream = r#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}],"usage":{"input_tokens":12,"output_tokens":272,"input_tokens_details":{"text_tokens":12,"image_tokens":0}}}"#;
    let served =
        h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true,"partial_images":2,"size":"1024x1024","quality":"low"}"#, vec![answer(200, upstream)]);
    assert_eq!(served.status, 200);
    let streamed = events(&served);
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0].name.as_deref(), Some("image_generation.completed"));
    let completed = data(&streamed[0]);
    assert_eq!(completed["type"], "image_generation.completed");
    assert_eq!(completed["b64_json"], "aW1hZ2U=");
    assert_eq!((completed["size"].as_str(), completed["quality"].as_str(), completed["output_format"].as_str()), (Some("1024x1024"), Some("low"), Some("png")));
    assert_eq!(completed["usage"]["output_tokens"], 272);
    assert_eq!(completed["usage"]["total_tokens"], 284);
    assert_eq!(served.header("x-imagegate-cost-usd"), Some("0.04"), "priced as any answer");
    let sent: Value = serde_json::from_slice(&served.calls[0].body).unwrap();
    assert_eq!((sent["stream"].as_bool(), sent["partial_images"].as_u64()), (Some(true), Some(2)), "an OpenAI upstream is asked to stream: {sent}");
}

#[test]
fn retries_and_fallbacks_come_before_the_first_event() {
    let h = Harness::long();
    let served = h.generate(
        r#"{"prompt":"p","model":"gpt-image-1","stream":true,"retry":{"count":1},"fallbacks":[{"model":"backup/m"}]}"#,
        vec![answer(500, "{}"), answer(503, "{}"), answer(200, OK)],
    );
    assert_eq!(served.status, 200);
    assert_eq!(providers_called(&served), ["mock", "mock", "backup"]);
    assert_eq!(events(&served).len(), 1);
    let failed =
        h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true,"retry":{"count":0}}"#, vec![answer(400, r#"{"error":{"message":"bad prompt"}}"#)]);
    assert_eq!(failed.header("content-type"), Some("application/json"), "a failure before the stream is a plain error");
    assert_eq!(failed.status, 400);
}

#[test]
fn every_image_is_an_event_and_the_test_pattern_streams_too() {
    let h = Harness::new();
    let two = r#"{"created":1,"data":[{"b64_json":"QQ=="},{"b64_json":"Qg=="}],"usage":{"input_tokens":1,"output_tokens":2}}"#;
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true,"n":2}"#, vec![answer(200, two)]);
    let two_events = events(&served);
    assert_eq!(two_events.iter().map(|e| data(e)["b64_json"].as_str().unwrap().to_owned()).collect::<Vec<_>>(), ["QQ==", "Qg=="]);
    assert_eq!(
        (data(&two_events[0])["usage"]["total_tokens"].as_u64(), data(&two_events[1])["usage"]["output_tokens"].as_u64()),
        (Some(0), Some(2)),
        "the usage once, with the last"
    );
    let unknown = h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true}"#, vec![answer(200, r#"{"created":1,"data":[{"b64_json":"QQ=="}]}"#)]);
    assert_eq!(data(&events(&unknown)[0])["usage"]["total_tokens"], 0, "a usage even when the upstream told none");
    let pattern = h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","stream":true,"size":"256x256"}"#, vec![]);
    let completed = data(&events(&pattern)[0]);
    assert!(completed["b64_json"].as_str().unwrap().starts_with("iVBORw0KGgo"), "a PNG");
}

#[test]
fn the_test_pattern_sends_its_partial_images_of_lower_detail_first() {
    let h = Harness::new();
    let body = r#"{"prompt":"p","model":"imagegate/test-pattern","stream":true,"partial_images":3,"size":"256x256"}"#;
    let streamed = events(&h.generate(body, vec![]));
    let kinds: Vec<_> = streamed.iter().map(|e| e.name.clone().unwrap()).collect();
    assert_eq!(kinds, ["image_generation.partial_image", "image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"]);
    let images: Vec<String> = streamed.iter().map(|e| data(e)["b64_json"].as_str().unwrap().to_owned()).collect();
    for (i, event) in streamed[..3].iter().enumerate() {
        assert_eq!(data(event)["partial_image_index"], i);
    }
    let distinct: std::collections::BTreeSet<_> = images.iter().collect();
    assert_eq!(distinct.len(), 4, "each partial image is coarser than the next, and all differ from the final one");
    let plain = h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","size":"256x256"}"#, vec![]);
    assert_eq!(plain.json()["data"][0]["b64_json"], images[3], "the final image is the one a JSON answer has");
    let over = h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","stream":true,"partial_images":3,"size":"2048x2048"}"#, vec![]);
    assert_eq!((over.status, over.json()["error"]["param"].as_str()), (400, Some("size")), "partial images count against the pixel budget");
}

#[test]
fn a_url_answer_is_downloaded_into_the_event() {
    let h = Harness::new();
    let url_answer = r#"{"created":1,"data":[{"url":"data:image/png;base64,aW1hZ2U="}]}"#;
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true,"response_format":"url"}"#, vec![answer(200, url_answer)]);
    assert_eq!(data(&events(&served)[0])["b64_json"], "aW1hZ2U=");
}

#[test]
fn where_a_stream_cannot_be_made_the_400_names_stream() {
    let config =
        CONFIG.replace(r#"{"id": "keyless/m", "provider": "keyless"}"#, r#"{"id": "keyless/m", "provider": "keyless", "supports": {"stream": false}}"#);
    let h = Harness::with_config(&config);
    let refused = h.generate(r#"{"prompt":"p","model":"keyless/m","stream":true}"#, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["param"].as_str()), (400, Some("stream")));
    assert!(refused.calls.is_empty());
    let skipped =
        h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true,"retry":{"count":0},"fallbacks":[{"model":"keyless/m"}]}"#, vec![answer(500, "{}")]);
    assert_eq!(skipped.calls.len(), 1, "a fallback that cannot stream is skipped without a call");
    let openrouter = h.openrouter(r#"{"prompt":"p","model":"gpt-image-1","stream":true}"#, vec![]);
    assert_eq!(openrouter.status, 400);
    let not_bool = h.generate(r#"{"prompt":"p","stream":"yes"}"#, vec![]);
    assert_eq!((not_bool.status, not_bool.json()["error"]["code"].as_str()), (400, Some("invalid_type")));
    let partial_alone = h.generate(r#"{"prompt":"p","partial_images":1}"#, vec![]);
    assert_eq!(partial_alone.json()["error"]["param"], "partial_images");
}

#[test]
fn a_streamed_answer_is_cached_as_its_completed_events_apart_from_the_json_answer() {
    let h = Harness::new();
    let body = r#"{"prompt":"p","model":"imagegate/test-pattern","size":"256x256","stream":true,"partial_images":2,"cache":{"type":"exact_match"}}"#;
    let first = h.generate(body, vec![]);
    let names = |served: &Served| events(served).into_iter().map(|event| event.name.unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(names(&first), ["image_generation.completed"], "generated whole: no partial images");
    let hit = h.generate(&body.replace(r#","partial_images":2"#, ""), vec![]);
    assert_eq!(hit.header("x-imagegate-cache"), Some("HIT"), "partial images are never stored, so asking for them keys alike");
    assert_eq!(events(&hit), events(&first), "a hit is the one completed event");
    let json = h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","size":"256x256","cache":{"type":"exact_match"}}"#, vec![]);
    assert_eq!(json.header("x-imagegate-cache"), Some("MISS"), "the JSON answer is keyed apart");
    assert!(json.json()["data"][0]["b64_json"].is_string());
}

#[test]
fn the_api_pages_example_event_is_one_the_gateway_writes() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let section = page.split("## Streamed answers").nth(1).expect("the section");
    let example = section.split("```text\n").nth(1).and_then(|rest| rest.split("\n```").next()).expect("its example");
    let mut reader = EventReader::new(1 << 20);
    let documented = reader.feed(format!("{example}\n\n").as_bytes()).unwrap();
    assert_eq!(documented.len(), 1);
    let h = Harness::new();
    let upstream = r#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}],"usage":{"input_tokens":12,"output_tokens":272,"input_tokens_details":{"text_tokens":12,"image_tokens":0}}}"#;
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","stream":true,"size":"1024x1024","quality":"low"}"#, vec![answer(200, upstream)]);
    let written = &events(&served)[0];
    assert_eq!(documented[0].name, written.name);
    let (documented, written) = (data(&documented[0]), data(written));
    let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&documented), keys(&written));
    assert_eq!(keys(&documented["usage"]), keys(&written["usage"]));
    assert_eq!(documented["usage"], written["usage"], "the page's usage is this answer's");
}
