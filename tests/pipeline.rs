//! The whole pipeline driven natively through fakes: a scripted upstream, a fake clock, fixed
//! secrets. Proves what the client gets and how many upstream calls were made.

mod support;

use imagegate::clock::Clock;
use imagegate::http::ReplyBody;
use imagegate::upstream::Method;
use serde_json::{json, Value};
use support::*;

#[test]
fn a_generation_is_relayed_once_with_the_upstream_model_and_provider_key() {
    let h = Harness::new();
    let served = h.generate(r#"{"prompt":"a fox","model":"gpt-image-1","size":"1024x1024"}"#, vec![answer(200, OK)]);
    assert_eq!(served.status, 200);
    assert_eq!(served.json(), serde_json::from_str::<Value>(OK).unwrap(), "relayed byte for byte");
    assert_eq!(served.calls.len(), 1);
    let call = &served.calls[0];
    assert_eq!(call.url, "http://127.0.0.1:9/v1/images/generations");
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent, json!({"prompt": "a fox", "model": "gpt-image-1", "n": 1, "size": "1024x1024"}));
    let auth = call.headers.iter().find(|(n, _)| n == "authorization").unwrap();
    assert_eq!(auth.1.expose(), format!("Bearer {PROVIDER_KEY}"));
    assert_eq!(served.header("x-request-id"), Some("req_test"));
    assert_eq!(served.header("openai-processing-ms"), Some("12"), "10 ms upstream + 2 ms reading the small answer to its end");
    assert_eq!(served.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(!served.everything_sent().contains(PROVIDER_KEY));
    let log: Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!((log["status"].as_u64(), log["attempts"].as_u64(), log["model"].as_str()), (Some(200), Some(1), Some("mock/gpt-image-1")));
    assert!(log.get("prompt").is_none(), "prompts are not logged unless configured");
}

#[test]
fn a_large_answer_is_relayed_from_the_first_chunk_without_reading_the_rest_first() {
    let h = Harness::new();
    let head = br#"{"created":1,"data":[{"b64_json":"iVBORw0KGgo"#.to_vec();
    let big = vec![b'A'; 2 << 20];
    let tail = br#""}]}"#.to_vec();
    let script = Script { latency_ms: 5, chunks: vec![head.clone(), big, tail], ..answer(200, "") };
    let handled = h.handle_generation(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![script]);
    match handled.reply.body {
        ReplyBody::Relay(body) => {
            assert_eq!(body.read, vec![head.clone()], "only the first chunk was read before answering");
            assert_eq!(body.chunks.len(), 2, "the 2 MB payload is still unread, to be streamed");
            assert_eq!(body.relay_limit_ms, Some(1000 - 5 - 1), "the rest may take until the request's deadline");
            let delivered = body.deliver();
            assert_eq!(delivered.len(), head.len() + (2 << 20) + 4, "delivered whole, from the first byte");
        }
        _ => panic!("a 200 answer is relayed"),
    }
}

#[test]
fn the_test_pattern_renders_without_any_upstream_call() {
    let h = Harness::new();
    let served = h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","n":2,"size":"64x32"}"#, vec![]);
    assert_eq!(served.status, 200);
    assert_eq!(served.json()["data"].as_array().unwrap().len(), 2);
    assert_eq!((served.calls.len(), served.attempts), (0, 1));
}

#[test]
fn bad_input_is_refused_before_any_upstream_call() {
    let h = Harness::new();
    for (body, status, param) in [
        (r#"{"prompt":"p","model":"gpt-image-1","n":11}"#, 400, Some("n")),
        (r#"{"prompt":"p","model":"gpt-image-1""#, 400, None),
        (r#"{"prompt":"p","model":"dall-e-9"}"#, 404, Some("model")),
        (r#"{"prompt":"p"}"#, 400, Some("model")),
    ] {
        let served = h.generate(body, vec![]);
        assert_eq!(served.status, status, "{body}");
        assert_eq!(served.json()["error"]["param"].as_str(), param, "{body}");
        assert_eq!(served.header("x-should-retry"), Some("false"));
        assert!(served.calls.is_empty());
    }
    let huge = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(2 << 20));
    assert_eq!(h.generate(&huge, vec![]).status, 413);
}

#[test]
fn keys_are_checked_before_anything_else() {
    let h = Harness::new();
    for auth in [None, Some("Bearer sk-wrong")] {
        // A malformed body with a bad key: the key decides (401), not the body (400).
        let served = h.serve("POST", "/v1/images/generations", auth, r#"{"prompt":"#, vec![]);
        assert_eq!(served.status, 401);
        assert_eq!(served.json()["error"]["code"], "invalid_api_key");
        assert_eq!(served.header("www-authenticate"), Some("Bearer"));
        assert!(served.calls.is_empty());
    }
}

#[test]
fn upstream_failures_map_to_gateway_errors_after_exactly_one_call() {
    let h = Harness::new();
    let rate_limited = Script { retry_after: Some("12"), ..answer(429, r#"{"error":{"message":"slow down"}}"#) };
    let cases = [
        (rate_limited, 429),
        (answer(401, r#"{"error":{"message":"Incorrect API key provided: sk-pro***lue"}}"#), 502),
        (answer(500, "<html>oops</html>"), 502),
        (answer(503, "{}"), 529),
        (answer(200, r#"{"created":1,"data":[]}"#), 502),
        (answer(200, r#"{"created":1}"#), 502),
        (answer(200, r#"{"created":1,"da"#), 502),
        (answer(200, "not json"), 502),
    ];
    for (script, status) in cases {
        let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":0}}"#, vec![script]);
        assert_eq!(served.status, status, "{}", served.everything_sent());
        assert_eq!(served.header("x-should-retry"), Some("false"), "{status}: the gateway has done the retrying");
        assert_eq!(served.calls.len(), 1);
        assert!(served.json()["error"]["message"].is_string());
        assert!(!served.everything_sent().contains("sk-pro"), "no part of our key: {}", served.everything_sent());
    }
    let limited = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":0}}"#, vec![Script { retry_after: Some("12"), ..answer(429, "{}") }]);
    assert_eq!(limited.header("retry-after"), Some("12"));
}

#[test]
fn a_slow_upstream_is_cut_off_at_the_deadline_with_524() {
    let h = Harness::new();
    let start = h.clock.now_ms();
    let slow = Script { latency_ms: 5_000, ..answer(200, OK) };
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![slow]);
    assert_eq!(served.status, 524);
    assert_eq!(served.json()["error"]["type"], "timeout_error");
    assert_eq!(served.header("x-should-retry"), Some("false"));
    assert_eq!(h.clock.now_ms() - start, 1_000, "gave up exactly at the 1000 ms deadline");
}

#[test]
fn a_missing_provider_key_is_a_500_that_names_the_secret_only_in_the_log() {
    let h = Harness::new();
    let served = h.generate(r#"{"prompt":"p","model":"keyless/m"}"#, vec![]);
    assert_eq!(served.status, 500);
    let message = served.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("'keyless' has no API key") && !message.contains("UNSET"), "{message}");
    let log: Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!(log["error_detail"], "the secret 'UNSET' is not set");
}

#[test]
fn models_lists_ids_and_aliases_for_authenticated_callers() {
    let h = Harness::new();
    let served = h.serve("GET", "/v1/models", Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![]);
    let ids: Vec<String> = served.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        ids,
        ["imagegate/test-pattern", "mock/gpt-image-1", "gpt-image-1", "mock/lenient", "backup/m", "keyless/m", "bfl/flux", "flux", "replicate/flux"]
    );
    assert_eq!(served.json()["object"], "list");
    assert_eq!(h.serve("GET", "/v1/models", None, "", vec![]).status, 401);
}

#[test]
fn health_preflight_and_unknown_routes() {
    let h = Harness::new();
    assert_eq!(h.serve("GET", "/healthz", None, "", vec![]).status, 200);
    let preflight = h.serve("OPTIONS", "/v1/images/generations", None, "", vec![]);
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, POST, OPTIONS"));
    let unknown = h.serve("GET", "/v1/chat/completions", None, "", vec![]);
    assert_eq!((unknown.status, unknown.json()["error"]["code"].as_str()), (404, Some("unknown_route")));
    let wrong = h.serve("GET", "/v1/images/generations", None, "", vec![]);
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST, OPTIONS")));
    let wrong = h.serve("POST", "/v1/models", None, "", vec![]);
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET, OPTIONS")));
}

// ---- The routing policy: retries, fallbacks, weights, timeouts (issue 4) ----

const RETRY_AFTER_2S: &str = "2";

/// The upstream each call went to: `mock` or `backup`, from its URL.
#[test]
fn a_rate_limit_with_retry_after_is_waited_out_then_succeeds() {
    let mut h = Harness::new();
    h.config.deadline_ms = 10_000;
    let limited = Script { retry_after: Some(RETRY_AFTER_2S), ..answer(429, "{}") };
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![limited, answer(200, OK)]);
    assert_eq!(served.status, 200);
    assert_eq!(trail(&served), ["mock/gpt-image-1;429", "mock/gpt-image-1;200"]);
    assert_eq!(*h.clock.1.borrow(), [2_000], "waited exactly the upstream's retry-after");
    assert_eq!(served.header("x-imagegate-model"), Some("mock/gpt-image-1"));
    assert_eq!(served.attempts, 2);
}

#[test]
fn retries_exhausted_then_the_fallback_answers() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let body = r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":2},"fallbacks":[{"model":"backup/m"}]}"#;
    let served = h.generate(body, vec![answer(500, "{}"), answer(500, "{}"), answer(500, "{}"), answer(200, OK)]);
    assert_eq!(served.status, 200);
    assert_eq!(providers_called(&served), ["mock", "mock", "mock", "backup"]);
    assert_eq!(*h.clock.1.borrow(), [1_000, 2_000], "exponential backoff between retries");
    assert_eq!(served.header("x-imagegate-model"), Some("backup/m"));
    let sent: Value = serde_json::from_slice(&served.calls[3].body).unwrap();
    assert_eq!(sent["model"], "m", "the fallback gets its own upstream model name");
}

#[test]
fn fallback_on_codes_decides_whether_to_move_on() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let only_529 = r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":0},"fallbacks":[{"model":"backup/m"}],"fallback_on_codes":[529]}"#;
    let served = h.generate(only_529, vec![answer(500, "{}")]);
    assert_eq!((served.status, providers_called(&served)), (502, vec!["mock"]), "500 is not listed: no fallback");
    assert_eq!(served.header("x-should-retry"), Some("false"));
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("after 1 attempt"), "{}", served.json());
    let served = h.generate(only_529, vec![answer(529, "{}"), answer(200, OK)]);
    assert_eq!((served.status, providers_called(&served)), (200, vec!["mock", "backup"]));
}

#[test]
fn a_bad_request_is_neither_retried_nor_sent_elsewhere() {
    let h = Harness::new();
    let served =
        h.generate(r#"{"prompt":"p","model":"gpt-image-1","fallbacks":[{"model":"backup/m"}]}"#, vec![answer(400, r#"{"error":{"message":"bad size"}}"#)]);
    assert_eq!((served.status, served.calls.len()), (400, 1));
}

#[test]
fn a_retry_after_longer_than_the_deadline_moves_on_instead_of_sleeping() {
    let h = Harness::new(); // 1000 ms deadline
    let limited = Script { retry_after: Some("5"), ..answer(429, "{}") };
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","fallbacks":[{"model":"backup/m"}]}"#, vec![limited, answer(200, OK)]);
    assert_eq!((served.status, providers_called(&served)), (200, vec!["mock", "backup"]));
    assert!(h.clock.1.borrow().is_empty(), "never slept past the deadline");
}

#[test]
fn a_call_timeout_cuts_one_attempt_and_the_fallback_answers() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let hang = Script { latency_ms: 50_000, ..answer(200, OK) };
    let body = r#"{"prompt":"p","model":"gpt-image-1","timeout":{"call_timeout":1000},"fallbacks":[{"model":"backup/m"}]}"#;
    let served = h.generate(body, vec![hang, answer(200, OK)]);
    assert_eq!(served.status, 200);
    let attempts = served.header("x-imagegate-attempts").unwrap();
    assert!(attempts.starts_with("mock/gpt-image-1;524;1000, backup/m;200;"), "{attempts}");
}

#[test]
fn the_deadline_ends_retries_with_a_final_answer() {
    let h = Harness::new(); // 1000 ms deadline: a 1 s backoff does not fit after the first attempt
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(503, "{}")]);
    assert_eq!((served.status, served.calls.len()), (529, 1));
    assert_eq!(served.header("x-should-retry"), Some("false"));
}

#[test]
fn a_200_without_a_usable_image_is_a_final_502_never_paid_for_again() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let fallback = r#""fallbacks":[{"model":"backup/m"}]"#;
    for body in [r#"{"data":[]}"#, r#"{"data":[{}]}"#, r#"{"created":1,"data":[{"b64_json":""}]}"#, r#"{"created": 1, "data": [{"b64_json": "#] {
        let served = h.generate(&format!(r#"{{"prompt":"p","model":"gpt-image-1",{fallback}}}"#), vec![answer(200, body)]);
        assert_eq!((served.status, served.calls.len()), (502, 1), "{body}: paid once, neither retried nor sent to the fallback");
        assert_eq!(trail(&served), ["mock/gpt-image-1;502"]);
        let message = served.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("may charge for"), "the charge risk is said: {message}");
    }
    let cut = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(200, r#"{"created": 1, "data": [{"b64_json": "#)]);
    assert_eq!(cut.json()["error"]["code"], "unreadable_upstream_answer");
}

#[test]
fn the_load_balancer_draws_the_first_target_by_weight() {
    let mut h = Harness::new();
    let body = r#"{"prompt":"p","load_balancer":{"type":"weight_based","models":[{"model":"gpt-image-1","weight":0.5},{"model":"backup/m","weight":0.5}]}}"#;
    h.draw = FixedDraw(0.9);
    assert_eq!(providers_called(&h.generate(body, vec![answer(200, OK)])), ["backup"]);
    h.draw = FixedDraw(0.1);
    assert_eq!(providers_called(&h.generate(body, vec![answer(200, OK)])), ["mock"]);
}

#[test]
fn a_target_that_cannot_serve_the_request_is_skipped_without_a_call() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let body = r#"{"prompt":"p","model":"imagegate/test-pattern","size":"4096x4096","fallbacks":[{"model":"gpt-image-1"}]}"#;
    let served = h.generate(body, vec![answer(200, OK)]);
    assert_eq!((served.status, providers_called(&served)), (200, vec!["mock"]));
}

#[test]
fn unknown_fallback_models_and_bad_router_fields_are_refused_before_any_call() {
    let h = Harness::new();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","fallbacks":[{"model":"nope/x"}]}"#, vec![]);
    assert_eq!((served.status, served.json()["error"]["param"].as_str()), (404, Some("fallbacks[0].model")));
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":2.5}}"#, vec![]);
    assert_eq!((served.status, served.json()["error"]["param"].as_str()), (400, Some("retry.count")));
}

#[test]
fn the_orq_endpoint_and_the_config_header_carry_the_same_policy() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let auth = format!("Bearer {GATEWAY_KEY}");
    let body = r#"{"prompt":"p","model":"gpt-image-1","orq":{"retry":{"count":0.0},"fallbacks":[{"model":"backup/m"}]}}"#;
    let served = h.serve("POST", "/v2/router/images/generations", Some(&auth), body, vec![answer(500, "{}"), answer(200, OK)]);
    assert_eq!((served.status, providers_called(&served)), (200, vec!["mock", "backup"]));
    let header = r#"{"retry":{"count":0},"fallbacks":[{"model":"backup/m"}]}"#;
    let served = h.serve_with(
        "POST",
        "/v1/images/generations",
        Some(&auth),
        Some(header),
        r#"{"prompt":"p","model":"gpt-image-1"}"#,
        vec![answer(500, "{}"), answer(200, OK)],
    );
    assert_eq!((served.status, providers_called(&served)), (200, vec!["mock", "backup"]));
}

#[test]
fn a_fallback_that_does_not_support_the_size_is_skipped_and_the_real_error_stays() {
    let mut h = Harness::new();
    h.config.deadline_ms = 60_000;
    let body = r#"{"prompt":"p","model":"gpt-image-1","size":"512x512","retry":{"count":0},"fallbacks":[{"model":"backup/m"}]}"#;
    let served = h.generate(body, vec![answer(500, "{}")]);
    assert_eq!(providers_called(&served), ["mock"], "backup/m takes 1024x1024 only: never called");
    assert_eq!(served.status, 502, "the primary's failure is the answer, not the skipped target's 400");
}

#[test]
fn the_server_caps_retries_and_logs_who_asked() {
    let mut h = Harness::new();
    h.config.max_retry_count = 1;
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":2}}"#, vec![]);
    assert_eq!((served.status, served.json()["error"]["param"].as_str()), (400, Some("retry.count")));
    let body = r#"{"prompt":"p","model":"gpt-image-1","name":"poster","metadata":{"team":"art"},"orq":{"identity":{"id":"user-7"}}}"#;
    let served = h.generate(body, vec![answer(200, OK)]);
    let log: Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!((log["name"].as_str(), log["identity"].as_str(), log["metadata"]["team"].as_str()), (Some("poster"), Some("user-7"), Some("art")));
    assert_eq!(log["trail"].as_array().map(Vec::len), Some(1));
}

// ---- Providers and the OpenRouter surface (issue 5) ----

#[test]
fn openrouter_callers_get_openrouter_shaped_answers_with_the_cost() {
    let h = Harness::new();
    let served = h.openrouter(
        r#"{"model":"mock/gpt-image-1","prompt":"p","n":2,"provider":{"only":["x"]},"session_id":"s"}"#,
        vec![answer(200, r#"{"created":1,"data":[{"b64_json":"aGk="},{"b64_json":"aG8="}]}"#)],
    );
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    let body = served.json();
    assert_eq!(body["data"], json!([{"b64_json": "aGk="}, {"b64_json": "aG8="}]));
    assert_eq!(body["created"], 1_700_000_000, "the gateway's clock, in seconds");
    assert_eq!(body["usage"]["cost"], 0.08, "two images at 0.04");
    assert_eq!(served.header("x-imagegate-cost-usd"), Some("0.08"));
    let sent: Value = serde_json::from_slice(&served.calls[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"prompt": "p", "model": "gpt-image-1", "n": 2}),
        "OpenRouter-only fields stay here, and no response_format is imposed (gpt-image models refuse one)"
    );
}

#[test]
fn an_openai_client_gets_the_cost_header_on_a_relayed_answer() {
    let h = Harness::new();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","n":3}"#, vec![answer(200, OK)]);
    assert_eq!((served.status, served.header("x-imagegate-cost-usd")), (200, Some("0.12")));
    let log: Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!(log["cost_usd"], "0.12");
    assert_eq!(served.json(), serde_json::from_str::<Value>(OK).unwrap(), "still relayed as is");
}

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
fn openrouter_routes_answer_errors_in_openrouter_envelope() {
    let h = Harness::new();
    let unauthorised = h.serve("POST", "/api/v1/images", None, r#"{"model":"m","prompt":"p"}"#, vec![]);
    assert_eq!(unauthorised.status, 401);
    assert_eq!(unauthorised.json()["error"]["code"], 401);
    assert!(unauthorised.json()["error"]["message"].is_string());
    let refs = h.openrouter(r#"{"model":"mock/gpt-image-1","prompt":"p","input_references":[{"type":"image_url"}]}"#, vec![]);
    assert_eq!((refs.status, refs.json()["error"]["metadata"]["param"].as_str()), (400, Some("input_references")));
    let wrong = h.serve("GET", "/api/v1/images", None, "", vec![]);
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST, OPTIONS")));
}

#[test]
fn parameters_a_provider_cannot_honour_are_refused_unless_the_model_drops_them() {
    let h = Harness::new();
    let refused = h.generate(r#"{"prompt":"p","model":"gpt-image-1","seed":7}"#, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["param"].as_str()), (400, Some("seed")));
    assert_eq!(refused.json()["error"]["code"], "unsupported_parameter");
    let unknown = h.generate(r#"{"prompt":"p","model":"gpt-image-1","steps":4}"#, vec![]);
    assert_eq!((unknown.status, unknown.json()["error"]["code"].as_str()), (400, Some("unknown_parameter")));
    assert!(refused.calls.is_empty() && unknown.calls.is_empty());
    // The style is dropped before the model's supported styles are checked.
    let h = Harness::with_config(
        &CONFIG.replace(r#""drop_params": ["style", "steps"]"#, r#""drop_params": ["style", "steps"], "supports": {"styles": ["natural"]}"#),
    );
    let dropped = h.generate(r#"{"prompt":"p","model":"mock/lenient","style":"vivid","steps":4,"quality":"high"}"#, vec![answer(200, OK)]);
    assert_eq!(dropped.status, 200);
    let sent: Value = serde_json::from_slice(&dropped.calls[0].body).unwrap();
    assert_eq!(sent, json!({"prompt": "p", "model": "gpt-image-1", "n": 1, "quality": "high"}), "style and steps dropped");
}

#[test]
fn an_asynchronous_job_is_polled_at_the_address_it_was_given_with_growing_waits() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let created = answer(200, r#"{"id":"t1","polling_url":"https://api.us1.bfl.ai/v1/get_result?id=t1"}"#);
    let pending = || answer(200, r#"{"id":"t1","status":"Pending","result":null}"#);
    let ready = answer(200, r#"{"id":"t1","status":"Ready","result":{"sample":"https://delivery.bfl.ai/t1.png?sig=x"}}"#);
    let served = h.generate(r#"{"prompt":"p","model":"bfl/flux","size":"1024x768"}"#, vec![created, pending(), pending(), ready]);
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(served.json()["data"], json!([{"url": "https://delivery.bfl.ai/t1.png?sig=x"}]));
    let urls: Vec<&str> = served.calls.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://api.bfl.ai/v1/flux-pro-1.1",
            "https://api.us1.bfl.ai/v1/get_result?id=t1",
            "https://api.us1.bfl.ai/v1/get_result?id=t1",
            "https://api.us1.bfl.ai/v1/get_result?id=t1"
        ]
    );
    assert!(served.calls[1..].iter().all(|c| c.method == Method::Get));
    assert_eq!(*h.clock.1.borrow(), vec![1000, 1500, 2250], "waits grow by half each poll");
}

#[test]
fn a_job_still_running_at_the_deadline_is_cancelled_and_answered_524() {
    let h = Harness::new();
    let running = |status: &str| {
        answer(
            200,
            &format!(
                r#"{{"id":"p1","status":"{status}","output":null,
            "urls":{{"get":"https://api.replicate.com/v1/predictions/p1","cancel":"https://api.replicate.com/v1/predictions/p1/cancel"}}}}"#
            ),
        )
    };
    // The deadline is 1000 ms: created (10 ms), a 990 ms wait, then time is up.
    let served = h.generate(r#"{"prompt":"p","model":"replicate/flux","retry":{"count":0}}"#, vec![running("starting"), running("canceled")]);
    assert_eq!(served.status, 524, "{}", served.everything_sent());
    let last = served.calls.last().unwrap();
    assert_eq!((last.method, last.url.as_str()), (Method::Post, "https://api.replicate.com/v1/predictions/p1/cancel"));
    assert_eq!(served.calls.len(), 2, "created, then cancelled: no poll after the deadline");
    assert_eq!(served.limits[1], 500, "past the request's deadline, the cancel gets a short margin only");
    // A call_timeout well inside the deadline leaves the cancel its full time; the job may
    // still be billed, so neither a retry nor the fallback pays for a second one.
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let served = h.generate(
        r#"{"prompt":"p","model":"replicate/flux","retry":{"count":3,"on_codes":[408]},"timeout":{"call_timeout":3000},"fallbacks":[{"model":"mock/gpt-image-1"}]}"#,
        vec![running("starting"), running("processing"), running("processing"), running("canceled")],
    );
    assert_eq!(served.status, 524, "{}", served.everything_sent());
    assert_eq!(served.calls[3].url, "https://api.replicate.com/v1/predictions/p1/cancel");
    assert_eq!(served.limits[3], 2000);
    assert_eq!((served.attempts, served.calls.len()), (1, 4), "one job, final");
}

/// A Replicate prediction `p1` in `status`, with its poll and cancel addresses.
fn prediction(status: &str) -> Script {
    answer(
        200,
        &format!(
            r#"{{"id":"p1","status":"{status}","output":null,
        "urls":{{"get":"https://api.replicate.com/v1/predictions/p1","cancel":"https://api.replicate.com/v1/predictions/p1/cancel"}}}}"#
        ),
    )
}

#[test]
fn polling_stops_at_the_subrequest_limit_and_keeps_one_to_cancel_the_job() {
    let config = CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000, "max_subrequests": 5"#);
    let h = Harness::with_config(&config);
    let served = h.generate(
        r#"{"prompt":"p","model":"replicate/flux"}"#,
        vec![prediction("starting"), prediction("processing"), prediction("processing"), answer(200, "{}")],
    );
    assert_eq!(served.status, 502, "{}", served.everything_sent());
    assert_eq!(served.json()["error"]["code"], "subrequest_limit");
    let urls: Vec<&str> = served.calls.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://api.replicate.com/v1/models/black-forest-labs/flux-schnell/predictions",
            "https://api.replicate.com/v1/predictions/p1",
            "https://api.replicate.com/v1/predictions/p1",
            "https://api.replicate.com/v1/predictions/p1/cancel",
        ],
        "the create and two polls, leaving one subrequest for the cancel and one for a download"
    );
    assert_eq!(served.attempts, 1, "never a second paid job");
}

#[test]
fn failed_polls_are_asked_again_rather_than_paying_for_a_second_job() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let created = answer(200, r#"{"id":"t1","polling_url":"https://api.bfl.ai/v1/get_result?id=t1"}"#);
    let ready = answer(200, r#"{"id":"t1","status":"Ready","result":{"sample":"https://delivery.bfl.ai/t1.png"}}"#);
    let served = h.generate(
        r#"{"prompt":"p","model":"bfl/flux","retry":{"count":2},"fallbacks":[{"model":"mock/gpt-image-1"}]}"#,
        vec![created, answer(503, "busy"), connection_refused(), answer(429, "slow down"), ready],
    );
    assert_eq!(served.status, 200, "{}", served.everything_sent());
    assert_eq!(served.json()["data"][0]["url"], "https://delivery.bfl.ai/t1.png");
    assert_eq!((served.calls.len(), served.attempts), (5, 1), "one create, four polls, one attempt");
    assert_eq!(*h.clock.1.borrow(), vec![1000, 1500, 2250, 3375]);
}

#[test]
fn a_job_that_can_no_longer_be_polled_is_cancelled_and_final() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let gone = answer(404, r#"{"title":"Not found","detail":"The requested resource could not be found.","status":404}"#);
    let served = h.generate(
        r#"{"prompt":"p","model":"replicate/flux","retry":{"count":2},"fallbacks":[{"model":"mock/gpt-image-1"}]}"#,
        vec![prediction("starting"), gone, answer(200, "{}")],
    );
    assert_eq!(served.status, 502, "{}", served.everything_sent());
    assert_eq!(served.json()["error"]["code"], "upstream_job_lost");
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("404"), "{}", served.everything_sent());
    assert_eq!(served.calls.last().unwrap().url, "https://api.replicate.com/v1/predictions/p1/cancel");
    assert_eq!((served.calls.len(), served.attempts), (3, 1), "create, poll, cancel: no retry, no fallback");
    let garbled = h.generate(r#"{"prompt":"p","model":"replicate/flux"}"#, vec![prediction("starting"), answer(200, "<html>"), answer(200, "{}")]);
    assert_eq!((garbled.status, garbled.calls.len(), garbled.attempts), (502, 3, 1), "{}", garbled.everything_sent());
}

#[test]
fn a_lost_job_among_several_calls_makes_the_whole_attempt_final() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let gone = answer(404, r#"{"detail":"Not found"}"#);
    // Call 1 fails retryably before any job exists; call 2's job is created, then lost.
    let served = h.generate(
        r#"{"prompt":"p","model":"replicate/flux","n":2,"retry":{"count":1},"fallbacks":[{"model":"mock/gpt-image-1"}]}"#,
        vec![answer(503, r#"{"detail":"busy"}"#), prediction("starting"), gone, answer(200, "{}")],
    );
    assert_eq!(served.status, 502, "{}", served.everything_sent());
    assert_eq!(served.json()["error"]["code"], "upstream_job_lost");
    assert_eq!((served.calls.len(), served.attempts), (4, 1), "no second pair of jobs");
}

#[test]
fn a_job_that_answers_but_cannot_be_read_is_final_while_a_failed_job_is_retried() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#));
    let policy = r#""retry":{"count":1},"fallbacks":[{"model":"mock/gpt-image-1"}]"#;
    let odd = answer(200, r#"{"id":"p1","status":"succeeded","output":{"image":"somewhere"}}"#);
    let served = h.generate(&format!(r#"{{"prompt":"p","model":"replicate/flux",{policy}}}"#), vec![prediction("starting"), odd]);
    assert_eq!((served.status, served.calls.len(), served.attempts), (502, 2, 1), "{}", served.everything_sent());
    assert_eq!(served.json()["error"]["code"], "empty_upstream_answer");
    let garbled_create = h.generate(&format!(r#"{{"prompt":"p","model":"bfl/flux",{policy}}}"#), vec![answer(200, "<html>")]);
    assert_eq!((garbled_create.status, garbled_create.calls.len(), garbled_create.attempts), (502, 1, 1), "{}", garbled_create.everything_sent());
    let done = answer(200, r#"{"id":"p2","status":"succeeded","output":["https://replicate.delivery/p2/out-0.png"]}"#);
    let retried = h.generate(&format!(r#"{{"prompt":"p","model":"replicate/flux",{policy}}}"#), vec![prediction("failed"), done]);
    assert_eq!((retried.status, retried.calls.len(), retried.attempts), (200, 2, 2), "{}", retried.everything_sent());
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

#[test]
fn a_replicate_create_waits_no_longer_than_the_attempt_may_take() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 20000"#));
    let done = || answer(200, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let served = h.generate(r#"{"prompt":"p","model":"replicate/flux"}"#, vec![done()]);
    let prefer = served.calls[0].headers.iter().find(|(n, _)| n == "prefer").map(|(_, v)| v.expose().to_owned());
    assert_eq!(prefer.as_deref(), Some("wait=15"), "20 s deadline, 5 s margin");
    let short = h.generate(r#"{"prompt":"p","model":"replicate/flux","timeout":{"call_timeout":4000}}"#, vec![done()]);
    assert!(short.calls[0].headers.iter().all(|(n, _)| n != "prefer"), "too short to wait: a plain asynchronous create");
}

#[test]
fn the_openrouter_catalogue_lists_models_and_their_endpoints_even_with_long_ids() {
    let long_id = r#""id": "replicate/black-forest-labs/flux-schnell""#;
    let h = Harness::with_config(&CONFIG.replace(r#""id": "replicate/flux""#, long_id));
    let auth = format!("Bearer {GATEWAY_KEY}");
    let list = h.serve("GET", "/api/v1/images/models", Some(&auth), "", vec![]);
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["data"].as_array().unwrap().len(), 7, "one entry per model, aliases aside");
    let long = h.serve("GET", "/api/v1/images/models/replicate/black-forest-labs/flux-schnell/endpoints", Some(&auth), "", vec![]);
    assert_eq!((long.status, long.json()["id"].as_str()), (200, Some("replicate/black-forest-labs/flux-schnell")));
    let priced = h.serve("GET", "/api/v1/images/models/mock/gpt-image-1/endpoints", Some(&auth), "", vec![]);
    assert_eq!(priced.json()["endpoints"][0]["pricing"], json!([{"billable": "output_image", "cost_usd": 0.04, "unit": "image"}]));
    let missing = h.serve("GET", "/api/v1/images/models/no/such/endpoints", Some(&auth), "", vec![]);
    assert_eq!((missing.status, missing.json()["error"]["code"].as_u64()), (404, Some(404)));
    assert_eq!(h.serve("GET", "/api/v1/images/models", None, "", vec![]).status, 401);
}
