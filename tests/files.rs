//! Stored images: a recorded generation keeps its images in the file store, answers with signed
//! gateway URLs when asked for URLs, and `GET /v1/files/{id}` serves them to a valid signature or
//! to the key that made them.

mod support;

use base64::Engine as _;
use serde_json::Value;
use support::*;

const PATTERN_URL: &str = r#"{"prompt":"a lighthouse","model":"imagegate/test-pattern","response_format":"url"}"#;

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// The path and query of a gateway URL.
fn local(url: &str) -> &str {
    url.strip_prefix(BASE).unwrap_or_else(|| panic!("{url} is not the gateway's"))
}

fn get(h: &Harness, path: &str, auth: Option<&str>) -> Served {
    h.serve("GET", path, auth, "", vec![])
}

#[test]
fn a_base64_only_provider_answers_urls_that_load_as_the_same_png_without_the_key() {
    let h = Harness::keeping_files();
    let served = h.generate(PATTERN_URL, vec![]);
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    let url = served.json()["data"][0]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{BASE}/v1/files/file_0123456789abcdef0123456789abcdef_0?expires=")), "{url}");

    let file = get(&h, local(&url), None);
    assert_eq!((file.status, file.header("content-type")), (200, Some("image/png")));
    assert!(file.body.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert_eq!(file.header("cache-control"), Some("private, max-age=3600"), "as long as the signature lives");
    assert_eq!((file.header("x-content-type-options"), file.header("content-security-policy")), (Some("nosniff"), Some("default-src 'none'; sandbox")));

    // The same prompt in base64 is the same picture: the stored bytes are the image.
    let b64 = h.generate(&PATTERN_URL.replace("url", "b64_json"), vec![]);
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.json()["data"][0]["b64_json"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, file.body);
}

#[test]
fn an_expired_or_forged_signature_is_403_whatever_key_comes_with_it() {
    let h = Harness::keeping_files();
    let url = h.generate(PATTERN_URL, vec![]).json()["data"][0]["url"].as_str().unwrap().to_owned();
    let path = local(&url);
    let (file, query) = path.split_once('?').unwrap();
    let sig = query.split_once("&sig=").unwrap().1;

    let forged = [
        format!("{file}?{}", query.replace(&sig[..4], "AAAA")),
        path.replace("_0?", "_1?"),
        format!("{file}?expires=9999999999&sig={sig}"),
        format!("{file}?expires=1"),
        format!("{file}?sig={sig}"),
    ];
    for path in &forged {
        let refused = get(&h, path, Some(&bearer(GATEWAY_KEY)));
        assert_eq!((refused.status, refused.json()["error"]["code"].as_str()), (403, Some("file_url_invalid")), "{path}");
    }
    h.clock.0.set(h.clock.0.get() + 3_600_000);
    let expired = get(&h, path, None);
    assert_eq!((expired.status, expired.json()["error"]["code"].as_str()), (403, Some("file_url_expired")));
}

#[test]
fn without_a_signature_only_the_key_that_made_the_file_gets_it() {
    let h = Harness::keeping_files();
    h.generate(PATTERN_URL, vec![]);
    let path = "/v1/files/file_0123456789abcdef0123456789abcdef_0";
    let own = get(&h, path, Some(&bearer(GATEWAY_KEY)));
    assert_eq!((own.status, own.header("cache-control")), (200, Some("private, max-age=31536000, immutable")));
    let etag = own.header("etag").unwrap().to_owned();

    let theirs = get(&h, path, Some(&bearer(OTHER_GATEWAY_KEY)));
    assert_eq!((theirs.status, theirs.json()["error"]["code"].as_str()), (404, Some("file_not_found")));
    for unknown in ["/v1/files/file_ffffffffffffffffffffffffffffffff_0", "/v1/files/../actions"] {
        assert_eq!(get(&h, unknown, Some(&bearer(GATEWAY_KEY))).status, 404, "{unknown}");
    }
    assert_eq!(get(&h, path, None).status, 401);
    assert_eq!(h.serve("DELETE", path, Some(&bearer(GATEWAY_KEY)), "", vec![]).status, 405);

    let head = imagegate::http::RequestHead {
        method: "GET".into(),
        path: path.into(),
        authorization: Some(bearer(GATEWAY_KEY)),
        if_none_match: Some(format!("\"other\", {etag}")),
        ..Default::default()
    };
    let unchanged = h.serve_head(head, "", vec![]);
    assert_eq!((unchanged.status, unchanged.body.len(), unchanged.header("etag")), (304, 0, Some(etag.as_str())));
}

#[test]
fn an_action_refers_to_its_images_and_reading_it_signs_fresh_urls() {
    let h = Harness::keeping_files();
    let served = h.generate(&PATTERN_URL.replace("url", "b64_json").replace('}', r#","n":2}"#), vec![]);
    assert_eq!(served.status, 200);
    assert_eq!(h.files.files.borrow().len(), 2, "stored after the answer");
    let id = served.header("x-imagegate-action-id").unwrap();
    h.clock.0.set(h.clock.0.get() + 7_200_000);
    let action = get(&h, &format!("/v1/actions/{id}"), Some(&bearer(GATEWAY_KEY))).json();
    let data = action["response"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let ids: Vec<&str> = data.iter().map(|image| image["file_id"].as_str().unwrap()).collect();
    assert!(ids[0].ends_with("_0") && ids[1].ends_with("_1"), "in the answer's order: {ids:?}");
    assert!(data.iter().all(|image| image["media_type"] == "image/png" && image.get("b64_json").is_none()), "{action}");
    let url = data[1]["url"].as_str().unwrap();
    let file = get(&h, local(url), None);
    assert_eq!(file.status, 200, "signed when read, two hours after the generation");
    let listed = get(&h, "/v1/actions", Some(&bearer(GATEWAY_KEY))).json();
    assert!(listed["data"][0]["response"]["data"][0]["url"].as_str().is_some());
}

#[test]
fn a_store_that_fails_still_answers_with_the_image_inline_and_says_so_in_the_log() {
    let h = Harness::keeping_files();
    h.files.unreachable.set(true);
    let served = h.generate(PATTERN_URL, vec![]);
    assert_eq!(served.status, 200);
    assert!(served.json()["data"][0]["url"].as_str().unwrap().starts_with("data:image/png;base64,"));
    let log: Value = serde_json::from_str(&served.log_line).unwrap();
    assert!(log["files_error"].as_str().unwrap().contains("was not stored"), "{log}");
    let action = h.history.actions.borrow()[0].clone();
    assert_eq!(action.response, None, "the action names no file that is not there");
    let read = get(&h, "/v1/files/file_0123456789abcdef0123456789abcdef_0", Some(&bearer(GATEWAY_KEY)));
    assert_eq!((read.status, read.json()["error"]["code"].as_str()), (503, Some("storage_unavailable")));
}

#[test]
fn without_a_file_store_urls_stay_data_urls_and_actions_name_no_files() {
    let h = Harness::new();
    let served = h.generate(PATTERN_URL, vec![]);
    assert!(served.json()["data"][0]["url"].as_str().unwrap().starts_with("data:image/png;base64,"));
    assert_eq!(h.history.actions.borrow()[0].response, None);
    assert_eq!(get(&h, "/v1/files/file_0123456789abcdef0123456789abcdef_0", Some(&bearer(GATEWAY_KEY))).status, 404);
}

#[test]
fn an_openai_answer_is_read_whole_and_kept_when_files_are_kept() {
    let h = Harness::keeping_files();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(200, OK)]);
    assert_eq!(served.json()["data"][0]["b64_json"], "aW1hZ2U=", "the caller's base64, as the upstream sent it");
    assert_eq!(h.files.files.borrow().values().next().unwrap().bytes, b"image");
}
