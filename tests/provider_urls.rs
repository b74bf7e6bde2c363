//! URLs an upstream hands over are untrusted: a poll or cancel address gets the provider key only
//! on the provider's own site (as a WHATWG parser reads it), and an image is downloaded only from
//! a public https host (or one on the provider's `download_hosts`), hop by hop, and only when it is
//! an image.

mod support;

use imagegate::upstream::Method;
use support::*;

/// The hosts the request's upstream calls went to, as a WHATWG parser reads them.
fn hosts(served: &Served) -> Vec<String> {
    served.calls.iter().map(|c| url::Url::parse(&c.url).unwrap().host_str().unwrap_or("").to_owned()).collect()
}

#[test]
fn a_backslash_polling_url_never_receives_the_bfl_key() {
    let h = Harness::long();
    let created = r#"{"id":"t1","polling_url":"https://evil.example\\.bfl.ai/v1/get_result?id=t1"}"#;
    let ready = r#"{"id":"t1","status":"Ready","result":{"sample":"https://delivery-us1.bfl.ai/results/t1.jpeg?sig=s"}}"#;
    let served = h.generate(r#"{"prompt":"p","model":"bfl/flux"}"#, vec![answer(200, created), answer(200, ready)]);
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(hosts(&served), ["api.bfl.ai", "api.bfl.ai"], "polled at the configured base instead");
    assert_eq!(served.calls[1].url, "https://api.bfl.ai/v1/get_result?id=t1");
}

#[test]
fn a_replicate_poll_or_cancel_url_off_its_site_is_replaced_by_the_base_one() {
    let h = Harness::long();
    let running = r#"{"id":"p1","status":"starting","output":null,
        "urls":{"get":"https://evil.example\\api.replicate.com/v1/predictions/p1","cancel":"https://api.replicate.com@evil.example/c"}}"#;
    let done = r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#;
    let served = h.generate(r#"{"prompt":"p","model":"replicate/flux"}"#, vec![answer(201, running), answer(200, done)]);
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(served.calls[1].url, "https://api.replicate.com/v1/predictions/p1");
    assert!(hosts(&served).iter().all(|host| host == "api.replicate.com"));
}

/// A finished Replicate prediction whose one output is at `url`.
fn output_at(url: &str) -> Script {
    answer(200, &format!(r#"{{"id":"p1","status":"succeeded","output":["{url}"]}}"#))
}

#[test]
fn an_image_url_on_a_private_or_plain_address_is_refused_without_a_request() {
    let h = Harness::long();
    for url in ["https://169.254.169.254/latest/meta-data", "https://127.0.0.1/a.png", "http://replicate.delivery/a.png", "https://localhost/a.png"] {
        let served = h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at(url)]);
        assert_eq!((served.status, served.calls.len()), (502, 1), "{url}: only the prediction was asked for");
        assert_eq!(served.json()["error"]["metadata"]["code"], "image_download_failed", "{url}");
    }
}

#[test]
fn each_redirect_hop_is_checked_again() {
    let h = Harness::long();
    let served = h.openrouter(
        r#"{"model":"replicate/flux","prompt":"p"}"#,
        vec![output_at("https://replicate.delivery/a.png"), redirect(302, "https://cdn.example.com/a.png"), image_bytes(b"png", "image/png")],
    );
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(hosts(&served)[1..], ["replicate.delivery", "cdn.example.com"]);
    assert!(served.calls[1..].iter().all(|c| c.method == Method::Get && c.headers.is_empty()), "no credentials on downloads");

    let served =
        h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at("https://replicate.delivery/a.png"), redirect(307, "http://10.0.0.5/a.png")]);
    assert_eq!((served.status, served.calls.len()), (502, 2), "the private hop is never requested");
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("a redirect led elsewhere"));

    let hop = || redirect(302, "/again.png");
    let served = h.openrouter(
        r#"{"model":"replicate/flux","prompt":"p"}"#,
        vec![output_at("https://replicate.delivery/a.png"), hop(), hop(), hop(), hop(), hop(), hop()],
    );
    assert_eq!((served.status, served.calls.len()), (502, 7), "five redirects followed, the sixth refused");
}

#[test]
fn only_an_image_answer_is_taken_as_an_image() {
    let h = Harness::long();
    let served =
        h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at("https://replicate.delivery/a.png"), image_bytes(b"<html>", "text/html")]);
    assert_eq!(served.status, 502);
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("answered with text/html, not an image"));
}

#[test]
fn a_data_url_image_is_read_in_place() {
    let h = Harness::long();
    let served = h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at("data:image/webp;base64,UklGRg==")]);
    assert_eq!((served.status, served.calls.len()), (200, 1), "{}", served.everything_sent());
    assert_eq!(served.json()["data"][0]["b64_json"], "UklGRg==");
    assert_eq!(served.json()["data"][0]["media_type"], "image/webp");
}

#[test]
fn download_hosts_narrow_where_a_providers_images_may_come_from() {
    let config = CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#).replace(
        r#"{"id": "replicate", "kind": "replicate", "api_key_secret": "MOCK_KEY"}"#,
        r#"{"id": "replicate", "kind": "replicate", "api_key_secret": "MOCK_KEY", "download_hosts": ["*.Replicate.Delivery", "http://127.0.0.1:9000"]}"#,
    );
    let h = Harness::with_config(&config);
    let refused = h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at("https://replicate.delivery/a.png")]);
    assert_eq!((refused.status, refused.calls.len()), (502, 1));
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("download_hosts"));
    let under =
        h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at("https://eu.replicate.delivery/a.png"), image_bytes(b"png", "image/png")]);
    assert_eq!(under.status, 200, "entries match whatever their case: {}", under.everything_sent());
    let local = h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![output_at("http://127.0.0.1:9000/a.png"), image_bytes(b"png", "image/png")]);
    assert_eq!(local.status, 200, "an origin the operator listed is allowed as is");
}

#[test]
fn a_provider_key_pasted_as_the_secret_name_is_refused_at_load_and_never_echoed() {
    let pasted = "sk-proj-abc123DEF";
    let config = CONFIG.replace(r#""api_key_secret": "UNSET""#, &format!(r#""api_key_secret": "{pasted}""#));
    let problem = imagegate::config::Config::from_json(&config).unwrap_err();
    assert!(problem.contains("providers[3].api_key_secret must be the name of a secret"), "{problem}");
    assert!(!problem.contains(pasted) && !problem.contains("abc123"), "{problem}");
}
