//! `GET /v1/actions`: a key's history, newest first, a page at a time, in OpenAI's list
//! convention; stable while actions are recorded between pages.

mod support;

use std::collections::BTreeSet;

use imagegate::state::Action;
use serde_json::Value;
use support::*;

/// An action of `key` created at `created_at`, recorded straight into the harness's history.
fn record(h: &Harness, id: &str, key: &str, created_at: u64, status: &str) {
    let action = Action {
        id: id.into(),
        object: "action".into(),
        key: Some(key.into()),
        model: Some(if status == "error" { "mock/dall-e-3" } else { "mock/gpt-image-1" }.into()),
        status: status.into(),
        http_status: if status == "success" { 200 } else { 502 },
        created_at,
        ..Action::default()
    };
    h.history.actions.borrow_mut().push(action);
}

fn list(h: &Harness, key: &str, query: &str) -> Value {
    let served = h.serve("GET", &format!("/v1/actions?{query}"), Some(&format!("Bearer {key}")), "", vec![]);
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    served.json()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

/// The label the harness gives the gateway key (`GATEWAY_KEY`).
fn own_label(h: &Harness) -> String {
    h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(200, OK)]);
    let label = h.history.actions.borrow_mut().pop().unwrap().key.unwrap();
    label
}

#[test]
fn pages_run_newest_first_without_duplicates_or_gaps_while_actions_are_recorded() {
    let h = Harness::new();
    let me = own_label(&h);
    // Two actions share a millisecond: the id breaks the tie.
    for (i, at) in [(1, 1000), (2, 2000), (3, 3000), (4, 3000), (5, 4000)] {
        record(&h, &format!("act_{i}"), &me, at, "success");
    }
    record(&h, "act_theirs", "other", 3500, "success");

    let first = list(&h, GATEWAY_KEY, "limit=2");
    assert_eq!((first["object"].as_str(), ids(&first)), (Some("list"), vec!["act_5".to_owned(), "act_4".into()]));
    assert_eq!((first["first_id"].as_str(), first["last_id"].as_str(), first["has_more"].as_bool()), (Some("act_5"), Some("act_4"), Some(true)));

    // Recorded between pages: newer than the cursor, so on no later page.
    record(&h, "act_6", &me, 5000, "success");
    let mut seen: Vec<String> = ids(&first);
    let mut after = first["last_id"].as_str().unwrap().to_owned();
    loop {
        let page = list(&h, GATEWAY_KEY, &format!("limit=2&after={after}"));
        seen.extend(ids(&page));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, ["act_5", "act_4", "act_3", "act_2", "act_1"], "every action that existed, once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    assert_eq!(ids(&list(&h, GATEWAY_KEY, "limit=1"))[0], "act_6", "a new listing starts at the newest");
}

#[test]
fn filters_narrow_the_history_and_another_key_sees_none_of_it() {
    let h = Harness::new();
    let me = own_label(&h);
    record(&h, "act_1", &me, 1_700_000_000_000, "success");
    record(&h, "act_2", &me, 1_700_000_100_000, "error");
    record(&h, "act_3", &me, 1_700_000_200_000, "success");
    assert_eq!(ids(&list(&h, GATEWAY_KEY, "status=error")), ["act_2"]);
    assert_eq!(ids(&list(&h, GATEWAY_KEY, "model=mock%2Fgpt-image-1")), ["act_3", "act_1"]);
    assert_eq!(ids(&list(&h, GATEWAY_KEY, "since=1700000100")), ["act_3", "act_2"]);
    assert_eq!(ids(&list(&h, GATEWAY_KEY, "since=1700000100&status=success")), ["act_3"]);
    let theirs = list(&h, OTHER_GATEWAY_KEY, "");
    assert_eq!((ids(&theirs).len(), theirs["first_id"].clone(), theirs["has_more"].as_bool()), (0, Value::Null, Some(false)));
}

#[test]
fn a_bad_query_or_a_cursor_that_is_not_the_callers_is_a_400_naming_it() {
    let h = Harness::new();
    let me = own_label(&h);
    record(&h, "act_mine", &me, 1000, "success");
    record(&h, "act_theirs", "other", 1000, "success");
    let auth = format!("Bearer {GATEWAY_KEY}");
    for (query, param) in
        [("limit=500", "limit"), ("status=finished", "status"), ("route=team%2Fposter", "route"), ("after=act_theirs", "after"), ("after=act_none", "after")]
    {
        let served = h.serve("GET", &format!("/v1/actions?{query}"), Some(&auth), "", vec![]);
        let error = &served.json()["error"];
        assert_eq!((served.status, error["param"].as_str(), error["type"].as_str()), (400, Some(param), Some("invalid_request_error")), "{query}");
    }
    assert_eq!(h.serve("GET", "/v1/actions", None, "", vec![]).status, 401);
    let post = h.serve("POST", "/v1/actions", Some(&auth), "{}", vec![]);
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, OPTIONS")));
}

#[test]
fn a_deployment_without_a_history_says_it_records_no_actions() {
    use imagegate::http::{ReplyBody, RequestHead};
    use imagegate::pipeline::Gateway;
    let h = Harness::new();
    let upstream = FakeUpstream::new(&h.clock, vec![]);
    let gateway = Gateway::new(&h.config, &h.keys, &upstream, &FixedSecrets, &h.clock, &h.draw);
    let head = RequestHead { method: "GET".into(), path: "/v1/actions".into(), authorization: Some(format!("Bearer {GATEWAY_KEY}")), ..RequestHead::default() };
    let handled = futures_executor::block_on(gateway.handle("req_test".into(), &head, Body(Vec::new())));
    let ReplyBody::Bytes(body) = handled.reply.body else { panic!("an error body") };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((handled.reply.status, body["error"]["code"].as_str()), (404, Some("actions_not_recorded")));
}

#[test]
fn openrouter_callers_read_an_action_as_a_generation_and_only_their_own() {
    let h = Harness::long();
    let served = h.openrouter(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(200, OK)]);
    assert_eq!((served.status, served.header("x-imagegate-action-id")), (200, Some("act_0123456789abcdef0123456789abcdef")));
    let read = |key: &str, query: &str| h.serve("GET", &format!("/api/v1/generation?{query}"), Some(&format!("Bearer {key}")), "", vec![]);
    let generation = read(GATEWAY_KEY, "id=act_0123456789abcdef0123456789abcdef");
    assert_eq!(generation.status, 200);
    let data = &generation.json()["data"];
    assert_eq!(
        (data["id"].as_str(), data["api_type"].as_str(), data["total_cost"].as_f64()),
        (Some("act_0123456789abcdef0123456789abcdef"), Some("image"), Some(0.04))
    );
    let theirs = read(OTHER_GATEWAY_KEY, "id=act_0123456789abcdef0123456789abcdef");
    let error = theirs.json();
    assert_eq!((theirs.status, error["error"]["code"].as_u64()), (404, Some(404)), "OpenRouter's envelope: {error}");
    assert_eq!(read(GATEWAY_KEY, "").status, 400);
}

#[test]
fn an_action_keeps_the_request_without_its_prompt_and_the_images_got_of_those_asked() {
    let h = Harness::long();
    h.generate(r#"{"prompt":"a secret plan","model":"gpt-image-1","n":2,"size":"1024x1024"}"#, vec![answer(200, OK)]);
    let action = h.history.actions.borrow().last().cloned().unwrap();
    let request = action.request.expect("the request's fields");
    assert_eq!((request["model"].as_str(), request["n"].as_u64(), request["size"].as_str()), (Some("gpt-image-1"), Some(2), Some("1024x1024")));
    assert!(!request.contains_key("prompt"), "no prompt unless prompts are logged: {request:?}");
    let images = action.images.unwrap();
    assert_eq!((images.got, images.asked), (None, 2), "a relayed answer's images are not counted");
    let done = answer(200, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let short = h.generate(r#"{"prompt":"p","model":"replicate/flux","n":2}"#, vec![done, answer(500, r#"{"detail":"boom"}"#)]);
    assert_eq!(short.header("x-imagegate-images"), Some("1/2"));
    let counted = |h: &Harness| h.history.actions.borrow().last().unwrap().images.unwrap();
    assert_eq!((counted(&h).got, counted(&h).asked), (Some(1), 2));
    h.generate(r#"{"prompt":"p","model":"imagegate/test-pattern","n":2,"size":"64x64"}"#, vec![]);
    assert_eq!((counted(&h).got, counted(&h).asked), (Some(2), 2));

    let logging = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000, "log_prompts": true"#));
    logging.generate(r#"{"prompt":"a secret plan","model":"gpt-image-1"}"#, vec![answer(200, OK)]);
    let request = logging.history.actions.borrow().last().cloned().unwrap().request.unwrap();
    assert_eq!(request["prompt"], "a secret plan");

    let refused = h.generate(r#"{"prompt":"p","model":"gpt-image-1","n":0}"#, vec![]);
    assert_eq!(refused.status, 400);
    let action = h.history.actions.borrow().last().cloned().unwrap();
    assert_eq!((action.images, action.request), (None, None), "a request that was not read records neither");
}

#[test]
fn a_history_that_cannot_be_read_is_a_503_to_retry_never_a_404_or_a_400() {
    let h = Harness::long();
    h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(200, OK)]);
    h.history.unreachable.set(true);
    let auth = format!("Bearer {GATEWAY_KEY}");
    for path in [
        "/v1/actions/act_0123456789abcdef0123456789abcdef",
        "/v1/actions",
        "/v1/actions?after=act_0123456789abcdef0123456789abcdef",
        "/api/v1/generation?id=act_0123456789abcdef0123456789abcdef",
    ] {
        let served = h.serve("GET", path, Some(&auth), "", vec![]);
        assert_eq!((served.status, served.header("x-should-retry")), (503, Some("true")), "{path}");
        assert!(!String::from_utf8_lossy(&served.body).contains("unreachable"), "what storage said stays in the log");
        assert!(served.log_line.contains("unreachable"), "{path}");
    }
}
