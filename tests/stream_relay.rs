//! A provider's own stream relayed (`stream: true` to an OpenAI upstream): each event goes on
//! whole as it completes; retries and fallbacks end at the first event; a failure after it is
//! an `error` event, never another paid call; the log line, the action and the cost come at
//! the stream's end.

mod support;

use imagegate::sse::{self, Event, EventReader};
use serde_json::Value;
use support::*;

const STREAM: &str = r#"{"prompt":"p","model":"gpt-image-1","stream":true,"partial_images":2,"size":"1024x1024"}"#;

fn partial(i: u32) -> Vec<u8> {
    let data = format!(r#"{{"type":"image_generation.partial_image","b64_json":"{}","partial_image_index":{i},"size":"1024x1024"}}"#, "UA".repeat(200));
    sse::write("image_generation.partial_image", &data)
}

fn completed() -> Vec<u8> {
    let data = r#"{"type":"image_generation.completed","b64_json":"RklOQUw=","size":"1024x1024","usage":{"input_tokens":12,"output_tokens":272,"total_tokens":284,"input_tokens_details":{"text_tokens":12,"image_tokens":0}}}"#;
    sse::write("image_generation.completed", data)
}

fn events(bytes: &[u8]) -> Vec<Event> {
    let mut reader = EventReader::new(1 << 20);
    let events = reader.feed(bytes).unwrap();
    assert!(!reader.unfinished(), "the client never gets half an event");
    events
}

fn kinds(bytes: &[u8]) -> Vec<String> {
    events(bytes).iter().map(|event| event.name.clone().unwrap_or_default()).collect()
}

fn log(served: &Served) -> Value {
    serde_json::from_str(&served.log_line).unwrap()
}

#[test]
fn the_stream_is_relayed_event_by_event_and_priced_at_its_end() {
    let h = Harness::new();
    let whole = [partial(0), partial(1), completed()].concat();
    // Cut anywhere, as a network cuts it: events go on whole, as soon as each is complete.
    let chunks: Vec<Vec<u8>> = whole.chunks(97).map(<[u8]>::to_vec).collect();
    let served = h.generate(STREAM, vec![event_stream(chunks)]);
    assert_eq!((served.status, served.header("content-type")), (200, Some("text/event-stream; charset=utf-8")));
    assert_eq!(served.body, whole, "the events as the upstream sent them");
    assert!(served.writes.iter().all(|write| events(write).len() == 1), "one write per event, as it completed");
    assert_eq!(served.writes.len(), 3);
    let sent: Value = serde_json::from_slice(&served.calls[0].body).unwrap();
    assert_eq!((sent["stream"].as_bool(), sent["partial_images"].as_u64()), (Some(true), Some(2)), "the upstream is asked to stream: {sent}");
    assert!(served.header("x-imagegate-attempts").unwrap().starts_with("mock/gpt-image-1;200;"));
    assert!(served.header("x-imagegate-cost-usd").is_none(), "the cost is known only at the end");
    let line = log(&served);
    assert_eq!((line["status"].as_u64(), line["cost_usd"].as_str()), (Some(200), Some("0.04")), "{line}");
    assert!(line.get("error").is_none());
    let action = &h.history.actions.borrow()[0];
    assert_eq!((action.status.as_str(), action.http_status, action.cost_usd), ("success", 200, Some(0.04)));
    assert_eq!(action.images.as_ref().map(|images| (images.got, images.asked)), Some((Some(1), 1)));
}

#[test]
fn a_failure_before_the_first_event_falls_back() {
    // The backup streams too (its upstream model is a gpt-image one).
    let h = Harness::with_config(
        &CONFIG.replace(r#"{"id": "backup/m", "provider": "backup","#, r#"{"id": "backup/m", "provider": "backup", "upstream_model": "gpt-image-1","#),
    );
    let body = r#"{"prompt":"p","model":"gpt-image-1","stream":true,"retry":{"count":0},"fallbacks":[{"model":"backup/m"}]}"#;
    let served = h.generate(body, vec![answer(503, r#"{"error":{"message":"busy"}}"#), event_stream(vec![completed()])]);
    assert_eq!(providers_called(&served), ["mock", "backup"]);
    assert_eq!(kinds(&served.body), ["image_generation.completed"]);
    assert_eq!(trail(&served), ["mock/gpt-image-1;503", "backup/m;200"]);
}

#[test]
fn a_200_that_breaks_before_its_first_event_is_final() {
    let h = Harness::new();
    let body = r#"{"prompt":"p","model":"gpt-image-1","stream":true,"fallbacks":[{"model":"backup/m"}]}"#;
    let broken = Script { cut_off: true, ..event_stream(vec![b"event: image_generation.partial_image\ndata: {\"ty".to_vec()]) };
    let served = h.generate(body, vec![broken]);
    assert_eq!((served.status, served.header("content-type")), (502, Some("application/json")));
    assert_eq!(served.calls.len(), 1, "paid for: no fallback");
    assert_eq!(served.json()["error"]["code"], "upstream_answer_cut_off");
}

#[test]
fn a_failure_after_the_first_event_ends_the_stream_with_an_error_event_and_no_other_call() {
    let h = Harness::new();
    let body = r#"{"prompt":"p","model":"gpt-image-1","stream":true,"partial_images":2,"retry":{"count":2},"fallbacks":[{"model":"backup/m"}]}"#;
    let broken = Script { cut_off: true, ..event_stream(vec![partial(0), partial(1)]) };
    let served = h.generate(body, vec![broken]);
    assert_eq!(served.status, 200);
    assert_eq!(served.calls.len(), 1, "the stream was the answer: no retry, no fallback");
    let streamed = events(&served.body);
    assert_eq!(kinds(&served.body), ["image_generation.partial_image", "image_generation.partial_image", "error"]);
    let error: Value = serde_json::from_str(&streamed[2].data).unwrap();
    assert_eq!((error["type"].as_str(), error["error"]["code"].as_str()), (Some("error"), Some("stream_cut")), "{error}");
    let line = log(&served);
    assert_eq!((line["status"].as_u64(), line["error_type"].as_str()), (Some(200), Some("upstream_error")), "{line}");
    assert!(line["error"].as_str().unwrap().contains("broke off"));
    let action = &h.history.actions.borrow()[0];
    assert_eq!((action.status.as_str(), action.http_status), ("error", 200));
    assert_eq!(action.images.as_ref().map(|images| images.got), Some(Some(0)));
}

#[test]
fn the_upstreams_own_error_event_goes_on_as_it_came() {
    let h = Harness::new();
    let failure = sse::write("error", r#"{"type":"error","error":{"message":"The image was blocked.","type":"image_generation_user_error"}}"#);
    let served = h.generate(STREAM, vec![event_stream(vec![partial(0), failure.clone()])]);
    assert_eq!(served.body, [partial(0), failure].concat(), "no second error event");
    assert!(log(&served)["error"].as_str().unwrap().contains("The image was blocked."));
    let refused_at_once = h.generate(STREAM, vec![event_stream(vec![sse::write("error", r#"{"type":"error","error":{"message":"blocked"}}"#)])]);
    assert_eq!((refused_at_once.status, refused_at_once.header("content-type")), (502, Some("application/json")), "nothing streamed yet");
}

#[test]
fn a_stalled_stream_is_cut_at_the_deadline() {
    let h = Harness::new();
    let stalled = Script { stall: true, ..event_stream(vec![partial(0)]) };
    let started = h.clock.0.get();
    let served = h.generate(STREAM, vec![stalled]);
    assert_eq!(kinds(&served.body), ["image_generation.partial_image", "error"]);
    let error: Value = serde_json::from_str(&events(&served.body)[1].data).unwrap();
    assert_eq!(error["error"]["code"], "stream_timeout");
    assert!(h.clock.0.get() - started <= 1_000 + 20, "not past the 1000 ms deadline");
    assert_eq!(h.history.actions.borrow()[0].status, "timed-out");
}

#[test]
fn a_client_that_stops_reading_is_given_up_at_the_deadline_and_the_rest_is_read_for_a_while() {
    let h = Harness::new();
    // The client takes the first event, then never takes another (a slow reader); the stream
    // stalls after it: reading stops 20 s after the client was given up, or at the deadline.
    h.client_stays.set(Some(1));
    let stalled = Script { stall: true, ..event_stream(vec![partial(0), partial(1)]) };
    let served = h.generate(STREAM, vec![stalled]);
    assert_eq!(kinds(&served.body), ["image_generation.partial_image"]);
    let line = log(&served);
    assert_eq!((line["client_left"].as_bool(), line["status"].as_u64()), (Some(true), Some(200)), "{line}");
    assert_eq!(h.history.actions.borrow()[0].status, "timed-out");

    let long = Harness::long();
    long.client_stays.set(Some(1));
    let started = long.clock.0.get();
    let stalled = Script { stall: true, ..event_stream(vec![partial(0), partial(1)]) };
    let served = long.generate(STREAM, vec![stalled]);
    let waited = long.clock.0.get() - started;
    assert!((20_000..21_000).contains(&waited), "read on for 20 s, not to the 60 s deadline ({waited} ms)");
    let action = &long.history.actions.borrow()[0];
    assert!(action.error.as_deref().unwrap().contains("The client left"), "{:?}", action.error);
    assert_eq!(log(&served)["client_left"], true);
}

#[test]
fn a_client_that_leaves_does_not_stop_the_generation_it_paid_for() {
    let h = Harness::keeping_files();
    h.client_stays.set(Some(1));
    // The first event only reaches the client; the rest is read on, and the image kept.
    let served = h.generate(STREAM, vec![event_stream(vec![partial(0), partial(1), completed()])]);
    assert_eq!(kinds(&served.body).len(), 1);
    assert_eq!(log(&served)["status"], 200);
    let action = &h.history.actions.borrow()[0];
    let kept = action.response.as_ref().expect("the final image is kept");
    assert_eq!(kept.data.len(), 1);
    assert_eq!(h.files.files.borrow()[&kept.data[0].file_id].bytes, b"FINAL");
}

#[test]
fn an_upstream_that_answers_whole_is_written_as_events() {
    let h = Harness::new();
    let served = h.generate(STREAM, vec![answer(200, OK)]);
    assert_eq!(kinds(&served.body), ["image_generation.completed"]);
    assert_eq!(served.header("x-imagegate-cost-usd"), Some("0.04"));
}

#[test]
fn only_a_host_that_declares_it_is_asked_to_stream() {
    let config = CONFIG
        .replace(
            r#"{"id": "imagegate", "kind": "test_pattern"},"#,
            r#"{"id": "imagegate", "kind": "test_pattern"}, {"id": "host", "kind": "openai_compatible", "base_url": "http://127.0.0.1:11/v1", "api_key_secret": "MOCK_KEY"},"#,
        )
        .replace(
            r#"{"id": "imagegate/test-pattern", "provider": "imagegate"},"#,
            r#"{"id": "imagegate/test-pattern", "provider": "imagegate"}, {"id": "host/m", "provider": "host"}, {"id": "host/s", "provider": "host", "supports": {"stream": true}},"#,
        );
    let config = config.replace(
        r#"{"id": "mock/lenient","#,
        r#"{"id": "mock/dall-e-3", "provider": "mock"}, {"id": "mock/own-name", "provider": "mock", "supports": {"stream": true}}, {"id": "mock/lenient","#,
    );
    let h = Harness::with_config(&config);
    let dalle = h.generate(r#"{"prompt":"p","model":"mock/dall-e-3","stream":true}"#, vec![answer(200, OK)]);
    let sent: Value = serde_json::from_slice(&dalle.calls[0].body).unwrap();
    assert!(sent.get("stream").is_none(), "OpenAI streams gpt-image models only: {sent}");
    assert_eq!(kinds(&dalle.body), ["image_generation.completed"]);
    let own_name = h.generate(r#"{"prompt":"p","model":"mock/own-name","stream":true}"#, vec![event_stream(vec![completed()])]);
    assert_eq!(own_name.body, completed(), "supports.stream: true streams any model");
    let plain = h.generate(r#"{"prompt":"p","model":"host/m","stream":true}"#, vec![answer(200, OK)]);
    let sent: Value = serde_json::from_slice(&plain.calls[0].body).unwrap();
    assert!(sent.get("stream").is_none(), "{sent}");
    assert_eq!(kinds(&plain.body), ["image_generation.completed"]);
    let declared = h.generate(r#"{"prompt":"p","model":"host/s","stream":true}"#, vec![event_stream(vec![completed()])]);
    let sent: Value = serde_json::from_slice(&declared.calls[0].body).unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(declared.body, completed());
}

#[test]
fn a_cached_streamed_request_is_generated_whole() {
    let h = Harness::new();
    let served =
        h.generate_with("/v1/images/generations", GATEWAY_KEY, None, None, &STREAM.replace('}', r#","cache":{"type":"exact_match"}}"#), vec![answer(200, OK)]);
    let sent: Value = serde_json::from_slice(&served.calls[0].body).unwrap();
    assert!(sent.get("stream").is_none(), "stored whole, so asked whole: {sent}");
    assert_eq!(kinds(&served.body), ["image_generation.completed"]);
}

#[test]
fn the_api_pages_error_event_is_the_one_the_gateway_writes() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let section = page.split("## Streamed answers").nth(1).expect("the section");
    let example = section.split("```text\n").nth(2).and_then(|rest| rest.split("\n```").next()).expect("its error example");
    let h = Harness::new();
    let broken = Script { cut_off: true, ..event_stream(vec![partial(0)]) };
    let served = h.generate(STREAM, vec![broken]);
    let written = String::from_utf8(served.writes.last().unwrap().clone()).unwrap();
    assert_eq!(example.replace("'openai'", "'mock'"), written.trim_end(), "the page shows a provider called openai; the harness's is mock");
}

#[test]
fn a_client_gone_from_the_first_event_gets_nothing_and_the_generation_is_recorded() {
    let h = Harness::new();
    h.client_stays.set(Some(0));
    let served = h.generate(STREAM, vec![event_stream(vec![partial(0), completed()])]);
    assert!(served.body.is_empty());
    assert_eq!(log(&served)["client_left"], true);
    let action = &h.history.actions.borrow()[0];
    assert_eq!((action.status.as_str(), action.cost_usd), ("success", Some(0.04)), "read to its end: its cost is known");
}

#[test]
fn the_provider_key_never_passes_in_a_streamed_error() {
    let h = Harness::new();
    let echo = sse::write("error", &format!(r#"{{"type":"error","error":{{"message":"bad key {PROVIDER_KEY}","code":"server_error"}}}}"#));
    let served = h.generate(STREAM, vec![event_stream(vec![partial(0), echo])]);
    assert_eq!(kinds(&served.body), ["image_generation.partial_image", "error"]);
    assert!(!served.everything_sent().contains(PROVIDER_KEY), "{}", served.everything_sent());
    assert!(!served.log_line.contains(PROVIDER_KEY));
    let action = serde_json::to_string(&h.history.actions.borrow()[0]).unwrap();
    assert!(!action.contains(PROVIDER_KEY) && action.contains("bad key"), "{action}");
}
