//! Serving a request end to end through the fakes: what a generation sends and relays, how bad
//! input, keys and upstream failures are answered, the catalogue and the OpenRouter shape.

mod support;

use imagegate::clock::Clock;
use imagegate::http::ReplyBody;
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
    assert_eq!(served.header("x-request-id"), Some(REQUEST_ID));
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
fn openrouter_routes_answer_errors_in_openrouter_envelope() {
    let h = Harness::new();
    let unauthorised = h.serve("POST", "/api/v1/images", None, r#"{"model":"m","prompt":"p"}"#, vec![]);
    assert_eq!(unauthorised.status, 401);
    assert_eq!(unauthorised.json()["error"]["code"], 401);
    assert!(unauthorised.json()["error"]["message"].is_string());
    let refs = h.openrouter(r#"{"model":"mock/gpt-image-1","prompt":"p","input_references":[{"type":"image_url"}]}"#, vec![]);
    assert_eq!(
        (refs.status, refs.json()["error"]["metadata"]["param"].as_str()),
        (400, Some("input_references[0].image_url.url")),
        "a reference without its URL"
    );
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

#[test]
fn a_generation_is_recorded_as_an_action_and_a_limited_key_is_refused_before_any_call() {
    let h = Harness::long();
    let (key, _) = h.managed_key(serde_json::json!({"rpm": 1}));
    let generate = |script| h.serve("POST", "/v1/images/generations", Some(&format!("Bearer {key}")), r#"{"prompt":"p","model":"gpt-image-1"}"#, script);
    let served = generate(vec![answer(200, OK)]);
    assert_eq!(served.status, 200);
    let refused = generate(vec![]);
    assert_eq!((refused.status, refused.calls.len(), refused.json()["error"]["code"].as_str()), (429, 0, Some("rate_limit_exceeded")));
    assert_eq!(refused.header("retry-after"), Some("60"));
    let actions = h.history.actions.borrow();
    assert_eq!(actions.len(), 2, "the refusal is a generation too");
    assert_eq!(
        (actions[0].model.as_deref(), actions[0].http_status, actions[0].attempts.len(), actions[0].cost_usd),
        (Some("mock/gpt-image-1"), 200, 1, Some(0.04))
    );
    assert_eq!((actions[1].http_status, actions[1].status.as_str(), actions[1].attempts.len()), (429, "error", 0));
    drop(actions);
    let models = h.serve("GET", "/v1/models", Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![]);
    assert_eq!((models.status, h.history.actions.borrow().len()), (200, 2), "a catalogue read is no action");
}

#[test]
fn a_generation_names_its_action_which_only_its_key_may_read() {
    let h = Harness::long();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","metadata":{"team":"art"}}"#, vec![answer(500, "{}"), answer(200, OK)]);
    assert_eq!(served.header("x-imagegate-action-id"), Some("act_0123456789abcdef0123456789abcdef"));
    let read = h.serve("GET", "/v1/actions/act_0123456789abcdef0123456789abcdef", Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![]);
    assert_eq!(read.status, 200);
    let action = read.json();
    assert_eq!(
        (action["id"].as_str(), action["object"].as_str(), action["status"].as_str()),
        (Some("act_0123456789abcdef0123456789abcdef"), Some("action"), Some("success"))
    );
    assert_eq!(action["attempts"].as_array().unwrap().len(), 2);
    assert!(action["started_at"].as_u64().unwrap() >= action["created_at"].as_u64().unwrap(), "{action}");
    assert_eq!((action["attempts"][0]["status"].as_u64(), action["cost_usd"].as_f64()), (Some(500), Some(0.04)));
    assert_eq!(action["metadata"]["team"], "art");
    for (key, id) in [(OTHER_GATEWAY_KEY, "act_0123456789abcdef0123456789abcdef"), (GATEWAY_KEY, "act_unknown")] {
        let missing = h.serve("GET", &format!("/v1/actions/{id}"), Some(&format!("Bearer {key}")), "", vec![]);
        assert_eq!((missing.status, missing.json()["error"]["code"].as_str()), (404, Some("action_not_found")), "{key} {id}");
    }
    assert_eq!(h.serve("GET", "/v1/actions/act_0123456789abcdef0123456789abcdef", None, "", vec![]).status, 401);
}

#[test]
fn the_consoles_other_name_leads_to_it() {
    let h = Harness::new();
    let served = h.serve("GET", "/console", None, "", vec![]);
    assert_eq!((served.status, served.header("location")), (308, Some("/")));
}
