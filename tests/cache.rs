//! The exact-match response cache through the pipeline: a miss generates and stores, a hit costs
//! nothing and calls no upstream, tenants never share, `refresh` and `no-store` do what they say,
//! and only complete successes are stored.

mod support;

use imagegate::clock::Clock;
use imagegate::pipeline::{FlightEnd, Gateway};
use imagegate::state::Claim;
use serde_json::Value;
use support::*;

const GENERATIONS: &str = "/v1/images/generations";
const CACHED: &str = r#"{"prompt":"a lighthouse","model":"gpt-image-1","cache":{"type":"exact_match","ttl":600}}"#;

fn log(served: &Served) -> Value {
    serde_json::from_str(&served.log_line).unwrap()
}

#[test]
fn a_miss_is_generated_and_stored_then_the_same_request_hits_without_an_upstream_call() {
    let h = Harness::long();
    let miss = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    assert_eq!((miss.status, miss.calls.len(), miss.header("x-imagegate-cache")), (200, 1, Some("MISS")));
    assert_eq!(miss.json()["data"][0]["b64_json"], "aW1hZ2U=");
    assert_eq!(miss.header("x-imagegate-cost-usd"), Some("0.04"));
    let stored = h.cache.entries.borrow().values().next().cloned().expect("stored");
    assert_eq!(stored.until_ms, h.clock.now_ms() + 600_000, "the TTL reaches the store");
    assert_eq!(stored.value, miss.body, "the answer is stored as the client got it");
    drop(h.clock.sleep(5_000));
    let hit = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![]);
    assert_eq!((hit.status, hit.calls.len(), hit.header("x-imagegate-cache")), (200, 0, Some("HIT")));
    assert_eq!((hit.header("age"), hit.header("x-imagegate-cost-usd")), (Some("5"), Some("0")));
    assert_eq!(hit.json()["data"], miss.json()["data"]);
    assert_eq!(hit.json()["created"], miss.json()["created"], "the original created");
    assert_eq!((log(&hit)["cache"].as_str(), log(&hit)["cost_usd"].as_str()), (Some("HIT"), Some("0")));
}

#[test]
fn another_tenant_misses_and_fields_that_do_not_change_the_image_still_hit() {
    let h = Harness::long();
    h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    let other = h.generate_with(GENERATIONS, OTHER_GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    assert_eq!((other.calls.len(), other.header("x-imagegate-cache")), (1, Some("MISS")), "tenants never share");
    let same_image =
        r#"{"prompt":"a lighthouse","model":"mock/gpt-image-1","user":"u2","metadata":{"a":"b"},"retry":{"count":1},"cache":{"type":"exact_match","ttl":60}}"#;
    let hit = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, same_image, vec![]);
    assert_eq!((hit.calls.len(), hit.header("x-imagegate-cache")), (0, Some("HIT")), "an alias, user, metadata, retry and ttl do not split the entry");
    let other_image = CACHED.replace("a lighthouse", "a harbour");
    assert_eq!(h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, &other_image, vec![answer(200, OK)]).header("x-imagegate-cache"), Some("MISS"));
}

#[test]
fn refresh_skips_the_lookup_and_stores_while_no_store_neither_reads_nor_writes() {
    let h = Harness::long();
    h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    let fresh = OK.replace("aW1hZ2U=", "ZnJlc2g=");
    let refreshed = h.generate_with(GENERATIONS, GATEWAY_KEY, Some("refresh"), None, CACHED, vec![answer(200, &fresh)]);
    assert_eq!((refreshed.calls.len(), refreshed.header("x-imagegate-cache")), (1, Some("REFRESH")));
    let hit = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![]);
    assert_eq!(hit.json()["data"][0]["b64_json"], "ZnJlc2g=", "the refreshed answer was stored");
    let no_cache = h.generate_with(GENERATIONS, GATEWAY_KEY, None, Some("no-cache"), CACHED, vec![answer(200, OK)]);
    assert_eq!(no_cache.header("x-imagegate-cache"), Some("REFRESH"));
    let before = h.cache.entries.borrow().clone();
    let no_store = h.generate_with(GENERATIONS, GATEWAY_KEY, None, Some("no-store"), CACHED, vec![answer(200, &fresh)]);
    assert_eq!((no_store.calls.len(), no_store.header("x-imagegate-cache")), (1, Some("BYPASS")));
    assert_eq!(log(&no_store)["cache_bypass"], "no-store");
    assert_eq!(*h.cache.entries.borrow(), before, "nothing written");
}

#[test]
fn only_complete_successes_are_stored() {
    let h = Harness::long();
    let failed =
        h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, &CACHED.replace(r#""cache""#, r#""retry":{"count":0},"cache""#), vec![answer(500, "{}")]);
    assert_eq!((failed.status, failed.header("x-imagegate-cache")), (502, Some("BYPASS")));
    assert_eq!(log(&failed)["cache_bypass"], "not a success");
    let replicate = r#"{"prompt":"p","model":"replicate/flux","n":2,"response_format":"url","cache":{"type":"exact_match"}}"#;
    let done = answer(201, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let partial = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, replicate, vec![done, answer(500, r#"{"detail":"boom"}"#)]);
    assert_eq!((partial.status, partial.header("x-imagegate-images")), (200, Some("1/2")));
    assert_eq!(log(&partial)["cache_bypass"], "partial answer");
    let urls = replicate.replace(r#""n":2,"#, "");
    let done = answer(201, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let url_answer = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, &urls, vec![done]);
    assert_eq!(log(&url_answer)["cache_bypass"], "url images", "URLs expire: not stored");
    assert!(h.cache.entries.borrow().is_empty());
}

#[test]
fn the_openrouter_shape_hits_too_at_no_cost() {
    let h = Harness::long();
    let body = r#"{"model":"mock/gpt-image-1","prompt":"p","cache":{"type":"exact_match","ttl":60}}"#;
    let miss = h.generate_with("/api/v1/images", GATEWAY_KEY, None, None, body, vec![answer(200, OK)]);
    assert_eq!((miss.header("x-imagegate-cache"), miss.json()["usage"]["cost"].as_f64()), (Some("MISS"), Some(0.04)));
    let hit = h.generate_with("/api/v1/images", GATEWAY_KEY, None, None, body, vec![]);
    assert_eq!((hit.calls.len(), hit.header("x-imagegate-cache"), hit.json()["usage"]["cost"].as_f64()), (0, Some("HIT"), Some(0.0)));
    let openai = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, body, vec![answer(200, OK)]);
    assert_eq!(openai.header("x-imagegate-cache"), Some("MISS"), "the shape is part of the key");
}

#[test]
fn without_a_store_every_cache_enabled_answer_is_bypass_and_requests_without_cache_say_nothing() {
    let h = Harness::long();
    let upstream = FakeUpstream::new(&h.clock, vec![answer(200, OK)]);
    let gateway = Gateway::new(&h.config, &h.keys, &upstream, &FixedSecrets, &h.clock, &h.draw);
    let head = imagegate::http::RequestHead {
        method: "POST".into(),
        path: GENERATIONS.into(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {GATEWAY_KEY}")),
        ..Default::default()
    };
    let handled = futures_executor::block_on(gateway.handle("r".into(), &head, Body(CACHED.as_bytes().to_vec())));
    assert_eq!((handled.reply.header("x-imagegate-cache"), handled.log.unwrap().cache_bypass), (Some("BYPASS"), Some("store unavailable")));
    assert!(handled.store.is_none());
    let plain = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(200, OK)]);
    assert_eq!(plain.header("x-imagegate-cache"), None);
    assert!(h.cache.entries.borrow().is_empty());
}

#[test]
fn a_models_policy_can_turn_the_cache_on_for_every_request() {
    let config = CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#).replace(
        r#"{"id": "backup/m", "provider": "backup", "supports": {"sizes": ["1024x1024", "auto"]}}"#,
        r#"{"id": "backup/m", "provider": "backup", "supports": {"sizes": ["1024x1024", "auto"]}, "policy": {"cache": {"type": "exact_match", "ttl": 300}}}"#,
    );
    let h = Harness::with_config(&config);
    let body = r#"{"prompt":"p","model":"backup/m"}"#;
    assert_eq!(h.generate(body, vec![answer(200, OK)]).header("x-imagegate-cache"), Some("MISS"));
    let hit = h.generate(body, vec![]);
    assert_eq!((hit.calls.len(), hit.header("x-imagegate-cache")), (0, Some("HIT")));
    let stored = h.cache.entries.borrow().values().next().cloned().unwrap();
    assert!(stored.until_ms > h.clock.now_ms() + 290_000, "the model's TTL");
}

#[test]
fn a_miss_leads_the_generation_and_says_how_it_ended_for_the_waiting_requests() {
    let h = Harness::long();
    let led = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    let key = h.coalescer.claimed.borrow()[0].clone();
    assert_eq!(led.flight, Some(FlightEnd::Stored { key: key.clone() }));
    let failing = CACHED.replace(r#""cache""#, r#""retry":{"count":0},"cache""#).replace("lighthouse", "storm");
    let failed = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, &failing, vec![answer(500, r#"{"error":{"message":"boom"}}"#)]);
    match failed.flight {
        Some(FlightEnd::Failed { status, body, .. }) => assert_eq!((status, body), (502, failed.body.clone())),
        other => panic!("{other:?}"),
    }
    let hit = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![]);
    assert_eq!((hit.flight, h.coalescer.claimed.borrow().len()), (None, 2), "a hit claims nothing");
}

#[test]
fn a_request_that_waited_gets_the_leaders_entry_or_error_without_a_paid_call() {
    let h = Harness::long();
    h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    let entry = h.cache.entries.borrow().values().next().unwrap().value.clone();
    h.cache.entries.borrow_mut().clear();
    h.coalescer.claims.borrow_mut().push(Claim::Answer(entry));
    let waited = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![]);
    assert_eq!((waited.status, waited.calls.len()), (200, 0));
    assert_eq!((waited.header("x-imagegate-cache"), waited.header("x-imagegate-coalesced")), (Some("HIT"), Some("true")));
    assert_eq!((waited.json()["data"][0]["b64_json"].as_str(), waited.header("x-imagegate-cost-usd")), (Some("aW1hZ2U="), Some("0")));
    let error = br#"{"error":{"message":"boom","type":"upstream_error","param":null,"code":"bad_upstream_response"}}"#.to_vec();
    h.coalescer.claims.borrow_mut().push(Claim::Failed { status: 502, body: error.clone() });
    let failed = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![]);
    assert_eq!((failed.status, failed.calls.len(), failed.body.clone()), (502, 0, error));
    assert_eq!((failed.header("x-should-retry"), failed.header("x-imagegate-coalesced")), (Some("false"), Some("true")));
    h.coalescer.claims.borrow_mut().push(Claim::Unavailable);
    let alone = h.generate_with(GENERATIONS, GATEWAY_KEY, None, None, CACHED, vec![answer(200, OK)]);
    assert_eq!((alone.calls.len(), alone.flight), (1, None), "no place to coalesce: it generates, leading nobody");
}
