//! Delivery in the caller's format: images given as URLs downloaded without credentials for a
//! base64 caller, in order; a failed download final; fewer images than asked said so.

mod support;

use imagegate::upstream::Method;
use serde_json::{json, Value};
use support::*;

#[test]
fn image_urls_are_downloaded_without_credentials_when_base64_is_wanted() {
    let h = Harness::new();
    let url_answer = answer(200, r#"{"created":1,"data":[{"url":"https://img.example/a.webp?sig=1"}]}"#);
    let served = h.openrouter(r#"{"model":"mock/gpt-image-1","prompt":"p"}"#, vec![url_answer, image_bytes(b"RIFFwebp", "image/webp")]);
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(served.json()["data"], json!([{"b64_json": "UklGRndlYnA=", "media_type": "image/webp"}]));
    let download = &served.calls[1];
    assert_eq!((download.method, download.url.as_str()), (Method::Get, "https://img.example/a.webp?sig=1"));
    assert!(download.headers.is_empty(), "no key goes to an image host: {:?}", download.headers);
}

#[test]
fn a_failed_download_is_final_because_the_image_was_already_paid_for() {
    let h = Harness::new();
    let url_answer = answer(200, r#"{"created":1,"data":[{"url":"https://img.example/a.png"}]}"#);
    let served = h.openrouter(r#"{"model":"mock/gpt-image-1","prompt":"p"}"#, vec![url_answer, answer(500, "gone")]);
    assert_eq!(served.status, 502);
    assert_eq!(served.json()["error"]["metadata"]["code"], "image_download_failed");
    assert_eq!(served.calls.len(), 2, "one generation and one download: no paid retry");
}

#[test]
fn fewer_images_than_asked_are_delivered_and_said_so() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let done = answer(200, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let served = h.generate(r#"{"prompt":"p","model":"replicate/flux","n":2}"#, vec![done, answer(500, r#"{"detail":"boom"}"#)]);
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(served.json()["data"], json!([{"url": "https://replicate.delivery/p1/out-0.png"}]));
    assert_eq!(served.header("x-imagegate-images"), Some("1/2"));
    let log: Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!(log["images"], "1/2");
    let whole = h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","n":2,"size":"64x64"}"#, vec![]);
    assert_eq!((whole.status, whole.header("x-imagegate-images")), (200, None));
}

#[test]
fn every_image_url_is_downloaded_in_order_for_a_base64_caller() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let done = |i: u8| answer(200, &format!(r#"{{"id":"p{i}","status":"succeeded","output":["https://replicate.delivery/p{i}/out-0.webp"]}}"#));
    let served = h.openrouter(
        r#"{"model":"replicate/flux","prompt":"p","n":2}"#,
        vec![done(1), done(2), image_bytes(b"first", "image/webp"), image_bytes(b"second", "image/webp")],
    );
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(served.json()["data"], json!([{"b64_json": "Zmlyc3Q=", "media_type": "image/webp"}, {"b64_json": "c2Vjb25k", "media_type": "image/webp"}]));
    let downloads: Vec<&str> = served.calls[2..].iter().map(|c| c.url.as_str()).collect();
    assert_eq!(downloads, ["https://replicate.delivery/p1/out-0.webp", "https://replicate.delivery/p2/out-0.webp"]);
    assert!(served.calls[2..].iter().all(|c| c.headers.is_empty() && c.body.is_empty()), "downloads carry nothing");
}
