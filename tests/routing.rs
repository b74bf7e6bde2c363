//! The routing policy through the pipeline: retries and their waits, fallbacks, the weighted
//! draw, call timeouts, and the fields that carry the policy (body, `orq`, header).

mod support;

use serde_json::Value;
use support::*;

const RETRY_AFTER_2S: &str = "2";

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
