//! Managed keys: the key API (OpenRouter's shape), what a key may use, its rate, its generations
//! in flight and its budget, token pricing, and usage.

mod support;

use imagegate::limits::{Ask, Limits};
use imagegate::state::Limiter;
use serde_json::json;
use support::*;

fn call(h: &Harness, method: &str, path: &str, key: &str, body: &str) -> Served {
    h.serve(method, path, Some(&format!("Bearer {key}")), body, vec![])
}

fn generate(h: &Harness, key: &str, body: &str, script: Vec<Script>) -> Served {
    h.serve("POST", "/v1/images/generations", Some(&format!("Bearer {key}")), body, script)
}

/// An asynchronous generation's head (`Prefer: respond-async`) with `key`.
fn asynchronous(key: &str) -> imagegate::http::RequestHead {
    imagegate::http::RequestHead {
        method: "POST".into(),
        path: "/v1/images/generations".into(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {key}")),
        prefer: Some("respond-async".into()),
        ..Default::default()
    }
}

const GPT: &str = r#"{"prompt":"p","model":"gpt-image-1"}"#;

#[test]
fn a_key_is_created_shown_once_listed_read_changed_and_deleted() {
    let h = Harness::long();
    let created = call(&h, "POST", "/api/v1/keys", MANAGEMENT_KEY, r#"{"name":"ci","limit":1.5,"limit_reset":"daily","rpm":5}"#);
    assert_eq!(created.status, 201);
    let body = created.json();
    let key = body["key"].as_str().unwrap().to_owned();
    let hash = body["data"]["hash"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-ig-v1-") && !body["data"].to_string().contains(&key));
    assert_eq!((body["data"]["limit"].as_f64(), body["data"]["limit_remaining"].as_f64(), body["data"]["rpm"].as_u64()), (Some(1.5), Some(1.5), Some(5)));

    let listed = call(&h, "GET", "/api/v1/keys", MANAGEMENT_KEY, "");
    assert_eq!(listed.json()["data"].as_array().unwrap().len(), 1);
    assert!(!String::from_utf8_lossy(&listed.body).contains(&key[9..]), "no listing shows a key");
    let own = call(&h, "GET", "/api/v1/key", &key, "").json();
    assert_eq!((own["data"]["label"].as_str(), own["data"]["is_management_key"].as_bool()), (body["data"]["label"].as_str(), Some(false)));

    let changed = call(&h, "PATCH", &format!("/api/v1/keys/{hash}"), MANAGEMENT_KEY, r#"{"limit":3,"disabled":true}"#);
    assert_eq!((changed.status, changed.json()["data"]["limit"].as_f64()), (200, Some(3.0)));
    assert_eq!(generate(&h, &key, GPT, vec![]).status, 401, "disabled");
    assert_eq!(call(&h, "GET", "/api/v1/keys", MANAGEMENT_KEY, "").json()["data"].as_array().unwrap().len(), 0, "disabled keys are left out");
    assert_eq!(call(&h, "GET", "/api/v1/keys?include_disabled=true", MANAGEMENT_KEY, "").json()["data"].as_array().unwrap().len(), 1);
    call(&h, "PATCH", &format!("/api/v1/keys/{hash}"), MANAGEMENT_KEY, r#"{"disabled":false}"#);
    assert_eq!(generate(&h, &key, GPT, vec![answer(200, OK)]).status, 200);

    let deleted = call(&h, "DELETE", &format!("/api/v1/keys/{hash}"), MANAGEMENT_KEY, "");
    assert_eq!((deleted.status, deleted.json()["deleted"].as_bool()), (200, Some(true)));
    for path in ["/api/v1/key", "/v1/models", "/v1/actions"] {
        assert_eq!(call(&h, "GET", path, &key, "").status, 401, "{path}");
    }
    assert_eq!(call(&h, "GET", &format!("/api/v1/keys/{hash}"), MANAGEMENT_KEY, "").status, 404);
}

#[test]
fn gateway_keys_cannot_manage_and_management_keys_cannot_generate() {
    let h = Harness::long();
    let denied = call(&h, "POST", "/api/v1/keys", GATEWAY_KEY, r#"{"name":"x"}"#);
    assert_eq!((denied.status, denied.json()["error"]["code"].as_u64()), (403, Some(403)), "OpenRouter's envelope under /api/v1");
    let (manager, _) = h.managed_key(json!({"management": true}));
    assert_eq!(call(&h, "GET", "/api/v1/keys", &manager, "").status, 200, "a managed key made a management key manages");
    for key in [MANAGEMENT_KEY, manager.as_str()] {
        let refused = generate(&h, key, GPT, vec![]);
        assert_eq!((refused.status, refused.json()["error"]["code"].as_str()), (403, Some("management_key")));
    }
    let (gateway, _) = h.managed_key(json!({}));
    assert_eq!(call(&h, "GET", "/api/v1/keys", &gateway, "").status, 403);
}

#[test]
fn every_bad_key_field_is_a_400_naming_it() {
    let h = Harness::long();
    for (body, param) in [(r#"{"limit":1}"#, "name"), (r#"{"name":"x","models":["nope"]}"#, "models[0]"), (r#"{"name":"x","expires_at":"soon"}"#, "expires_at")]
    {
        let refused = call(&h, "POST", "/api/v1/keys", MANAGEMENT_KEY, body);
        assert_eq!((refused.status, refused.json()["error"]["metadata"]["param"].as_str()), (400, Some(param)), "{body}");
    }
    assert_eq!(call(&h, "GET", "/api/v1/keys?offset=-1", MANAGEMENT_KEY, "").status, 400);
    assert_eq!(call(&h, "PUT", "/api/v1/keys/abc", MANAGEMENT_KEY, "").status, 405);
}

#[test]
fn an_expired_key_is_refused() {
    let h = Harness::long();
    let (key, _) = h.managed_key(json!({"expires_at": "2023-11-14T22:14:00Z"}));
    assert_eq!(generate(&h, &key, GPT, vec![answer(200, OK)]).status, 200);
    h.clock.0.set(1_700_000_050_000);
    let refused = generate(&h, &key, GPT, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["message"].as_str()), (401, Some("This API key has expired.")));
}

#[test]
fn a_model_or_route_outside_the_keys_list_is_403_before_any_call() {
    let h = Harness::long();
    let (key, _) = h.managed_key(json!({"models": ["gpt-image-1"]}));
    let refused = generate(&h, &key, r#"{"prompt":"p","model":"imagegate/test-pattern"}"#, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["type"].as_str()), (403, Some("permission_error")));
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("imagegate/test-pattern"));
    let fallback = generate(&h, &key, r#"{"prompt":"p","model":"gpt-image-1","fallbacks":[{"model":"backup/m"}]}"#, vec![]);
    assert!(fallback.json()["error"]["message"].as_str().unwrap().contains("backup/m"), "a fallback outside the list is named");
    assert_eq!(generate(&h, &key, GPT, vec![answer(200, OK)]).status, 200);
}

#[test]
fn a_budget_is_held_before_the_call_and_settled_after() {
    let h = Harness::long();
    let (key, hash) = h.managed_key(json!({"limit": 0.1}));
    for _ in 0..2 {
        assert_eq!(generate(&h, &key, GPT, vec![answer(200, OK)]).status, 200);
    }
    let refused = generate(&h, &key, GPT, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["code"].as_str()), (402, Some("insufficient_quota")));
    let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("$0.1") && message.contains("$0.08") && message.contains("$0.04"), "{message}");
    assert_eq!(refused.header("x-should-retry"), Some("false"));
    let openrouter = h.serve("POST", "/api/v1/images", Some(&format!("Bearer {key}")), GPT, vec![]);
    assert_eq!((openrouter.status, openrouter.json()["error"]["code"].as_u64()), (402, Some(402)));
    let held = h.limiter.asked.borrow()[0].hold_micros;
    assert_eq!(held, 40_000, "n × the image price is held");
    let own = call(&h, "GET", "/api/v1/key", &key, "").json();
    assert_eq!((own["data"]["usage"].as_f64(), own["data"]["limit_remaining"].as_f64()), (Some(0.08), Some(0.02)));
    let _ = hash;
    let dearest = generate(&h, &key, r#"{"prompt":"p","model":"gpt-image-1","n":3}"#, vec![]);
    assert_eq!(dearest.status, 402, "three images may cost 0.12");
}

#[test]
fn a_failed_generation_costs_nothing_and_frees_its_hold() {
    let h = Harness::long();
    let (key, _) = h.managed_key(json!({"limit": 0.04}));
    assert_eq!(generate(&h, &key, GPT, vec![answer(400, r#"{"error":{"message":"bad"}}"#)]).status, 400);
    assert_eq!(generate(&h, &key, GPT, vec![answer(200, OK)]).status, 200, "the failure spent nothing");
}

#[test]
fn a_key_with_a_budget_may_not_use_an_unpriced_model() {
    let h = Harness::long();
    let (key, _) = h.managed_key(json!({"limit": 5}));
    let refused = generate(&h, &key, r#"{"prompt":"p","model":"imagegate/test-pattern"}"#, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["code"].as_str()), (403, Some("unpriced_model")));
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("has no price"));
    let (unlimited, _) = h.managed_key(json!({}));
    let served = generate(&h, &unlimited, r#"{"prompt":"p","model":"imagegate/test-pattern"}"#, vec![]);
    let log: serde_json::Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!((served.status, log["unpriced"].as_str()), (200, Some("its model has no price for this answer")));
    let models = call(&h, "GET", "/v1/models", GATEWAY_KEY, "").json();
    let priced = |id: &str| models["data"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["priced"].as_bool();
    assert_eq!((priced("imagegate/test-pattern"), priced("gpt-image-1")), (Some(false), Some(true)), "GET /v1/models flags unpriced models");
}

#[test]
fn too_many_generations_in_flight_is_a_429() {
    let h = Harness::long();
    let (key, hash) = h.managed_key(json!({"max_parallel": 1}));
    let limits = Limits { max_parallel: Some(1), ..Limits::default() };
    let elsewhere = Ask { ticket: "req_elsewhere".into(), limits, hold_micros: 0, now_ms: h.clock.0.get(), until_ms: h.clock.0.get() + 60_000 };
    futures_executor::block_on(h.limiter.admit(&hash, &elsewhere)).unwrap().unwrap();
    let refused = generate(&h, &key, GPT, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["code"].as_str(), refused.header("retry-after")), (429, Some("too_many_in_flight"), Some("1")));
    futures_executor::block_on(h.limiter.settle(&hash, "req_elsewhere", Some(0), h.clock.0.get())).unwrap();
    assert_eq!(generate(&h, &key, GPT, vec![answer(200, OK)]).status, 200);
}

const TOKEN_PRICED: &str = r#"{"id": "mock/tokens", "provider": "mock", "upstream_model": "gpt-image-1", "pricing": [
    {"billable": "input_text", "cost_usd": 0.000005, "unit": "token"},
    {"billable": "input_image", "cost_usd": 0.00001, "unit": "token"},
    {"billable": "output_image", "cost_usd": 0.00004, "unit": "token", "max_tokens_per_image": 6240}]},"#;

#[test]
fn token_prices_come_from_the_upstreams_usage_and_the_answer_header_and_ledger_agree() {
    let h = Harness::with_config(&CONFIG.replace(r#""models": ["#, &format!(r#""models": [{TOKEN_PRICED}"#)));
    let (key, _) = h.managed_key(json!({"limit": 1}));
    let usage = r#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}],"usage":{"input_tokens":50,"output_tokens":4160,"input_tokens_details":{"text_tokens":40,"image_tokens":10}}}"#;
    let served = h.serve("POST", "/api/v1/images", Some(&format!("Bearer {key}")), r#"{"prompt":"a cat","model":"mock/tokens"}"#, vec![answer(200, usage)]);
    // 40 × 0.000005 + 10 × 0.00001 + 4160 × 0.00004 = 0.0002 + 0.0001 + 0.1664
    assert_eq!(served.header("x-imagegate-cost-usd"), Some("0.1667"));
    assert_eq!(served.json()["usage"]["cost"].as_f64(), Some(0.1667));
    let held = h.limiter.asked.borrow()[0].hold_micros;
    assert_eq!(held, 249_625, "5 prompt bytes × 0.000005 + 6240 × 0.00004");
    let own = call(&h, "GET", "/api/v1/key", &key, "").json();
    assert_eq!(own["data"]["usage"].as_f64(), Some(0.1667));
    let relayed = generate(&h, &key, r#"{"prompt":"a cat","model":"mock/tokens"}"#, vec![answer(200, usage)]);
    assert_eq!(relayed.header("x-imagegate-cost-usd"), Some("0.1667"), "an OpenAI caller's token-priced answer is read, not relayed blind");
}

#[test]
fn usage_sums_the_requests_made_grouped() {
    let h = Harness::long();
    let (key, hash) = h.managed_key(json!({}));
    let body = |team: &str| format!(r#"{{"prompt":"p","model":"gpt-image-1","metadata":{{"team":"{team}"}}}}"#);
    generate(&h, &key, &body("art"), vec![answer(200, OK)]);
    generate(&h, &key, &body("art"), vec![answer(400, r#"{"error":{"message":"no"}}"#)]);
    generate(&h, &key, &body("ads"), vec![answer(200, OK)]);
    generate(&h, GATEWAY_KEY, &body("art"), vec![answer(200, OK)]);
    let mine = call(&h, "GET", "/v1/usage?group_by=metadata.team", &key, "").json();
    assert_eq!(mine["total"]["requests"], 3, "only this key's");
    let data = mine["data"].as_array().unwrap();
    assert_eq!((data[0]["group"].as_str(), data[0]["requests"].as_u64(), data[0]["cost_usd"].as_f64()), (Some("ads"), Some(1), Some(0.04)));
    assert_eq!((data[1]["group"].as_str(), data[1]["successes"].as_u64(), data[1]["failures"].as_u64()), (Some("art"), Some(1), Some(1)));
    let everyone = call(&h, "GET", "/v1/usage?group_by=key", MANAGEMENT_KEY, "").json();
    assert_eq!(everyone["total"]["requests"], 4);
    assert!(everyone["data"].as_array().unwrap().iter().any(|row| row["group"] == hash.as_str()));
    assert_eq!(call(&h, "GET", "/v1/usage?group_by=colour", &key, "").status, 400);
}

#[test]
fn an_asynchronous_generation_is_admitted_when_handed_over_and_settled_by_its_run() {
    let h = Harness::long();
    let (key, hash) = h.managed_key(json!({"limit": 0.04}));
    assert_eq!(h.serve_head(asynchronous(&key), GPT, vec![]).status, 202);
    let usage = |now| futures_executor::block_on(h.limiter.usage(&hash, now)).unwrap();
    assert_eq!((usage(h.clock.0.get()).held, usage(h.clock.0.get()).total), (40_000, 0), "held from the hand-over");
    let ran = h.run_job(&MemoryJournal(std::cell::Cell::new(0)), vec![answer(200, OK)]);
    assert_eq!(ran.status, 200);
    assert_eq!((usage(h.clock.0.get()).held, usage(h.clock.0.get()).total), (0, 40_000), "settled by the run");
}

#[test]
fn a_static_keys_usage_comes_from_its_recorded_actions() {
    let h = Harness::long();
    generate(&h, GATEWAY_KEY, GPT, vec![answer(200, OK)]);
    generate(&h, GATEWAY_KEY, GPT, vec![answer(200, OK)]);
    let own = call(&h, "GET", "/api/v1/key", GATEWAY_KEY, "").json();
    assert_eq!((own["data"]["usage"].as_f64(), own["data"]["usage_daily"].as_f64(), own["data"]["limit"].as_f64()), (Some(0.08), Some(0.08), None));
    assert_eq!(call(&h, "GET", "/api/v1/key", OTHER_GATEWAY_KEY, "").json()["data"]["usage"].as_f64(), Some(0.0));
}

#[test]
fn a_job_refused_where_it_runs_still_frees_its_hold() {
    let h = Harness::long();
    let (key, hash) = h.managed_key(json!({"limit": 1}));
    assert_eq!(h.serve_head(asynchronous(&key), GPT, vec![]).status, 202);
    // The key loses the model while its job waits.
    call(&h, "PATCH", &format!("/api/v1/keys/{hash}"), MANAGEMENT_KEY, r#"{"models":["imagegate/test-pattern"]}"#);
    let ran = h.run_job(&MemoryJournal(std::cell::Cell::new(0)), vec![]);
    assert_eq!(ran.status, 403);
    let usage = futures_executor::block_on(h.limiter.usage(&hash, h.clock.0.get())).unwrap();
    assert_eq!((usage.held, usage.in_flight, usage.total), (0, 0, 0), "settled at nothing");
}

#[test]
fn an_answer_of_unknown_cost_is_charged_what_it_held_and_a_cost_past_its_hold_is_logged() {
    let bounded = TOKEN_PRICED.replace(r#""max_tokens_per_image": 6240"#, r#""max_tokens_per_image": 1000"#);
    let h = Harness::with_config(&CONFIG.replace(r#""models": ["#, &format!(r#""models": [{bounded}"#)));
    let (key, hash) = h.managed_key(json!({"limit": 1}));
    let body = r#"{"prompt":"a cat","model":"mock/tokens"}"#;
    // `OK` reports no input or output tokens: its cost is unknown, never 0.
    let unknown = generate(&h, &key, body, vec![answer(200, OK)]);
    assert_eq!((unknown.status, unknown.header("x-imagegate-cost-usd")), (200, None));
    let spent = |h: &Harness| futures_executor::block_on(h.limiter.usage(&hash, h.clock.0.get())).unwrap().total;
    assert_eq!(spent(&h), 40_025, "5 prompt bytes × 0.000005 + 1000 × 0.00004, as held");
    let over = r#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}],"usage":{"input_tokens":5,"output_tokens":4160}}"#;
    let served = generate(&h, &key, body, vec![answer(200, over)]);
    let log: serde_json::Value = serde_json::from_str(&served.log_line).unwrap();
    assert_eq!(log["budget"].as_str(), Some("the cost $0.166425 passed the $0.040025 held"));
    assert_eq!(spent(&h), 40_025 + 166_425, "the real cost is spent all the same");
}

#[test]
fn a_key_pasted_where_a_hash_belongs_is_never_repeated() {
    let h = Harness::long();
    let (key, _) = h.managed_key(json!({}));
    let served = call(&h, "GET", &format!("/api/v1/keys/{key}"), MANAGEMENT_KEY, "");
    assert_eq!(served.status, 404);
    assert!(!served.everything_sent().contains(&key[10..]) && !served.log_line.contains(&key[10..]), "{}", served.log_line);
}
