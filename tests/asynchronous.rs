//! Asynchronous generation: `Prefer: respond-async` answers 202 with a queued action at once; the
//! job runs where the runner keeps it, to the same end a synchronous request would reach; a rerun
//! of an interrupted run never pays twice; cancel ends an unfinished action.

mod support;

use futures_util::FutureExt as _;
use imagegate::http::RequestHead;
use imagegate::jobs::Journaled;
use imagegate::pipeline::Gateway;
use support::*;

const ACTION: &str = "act_0123456789abcdef0123456789abcdef";

fn asynchronous(h: &Harness, body: &str) -> Served {
    let head = RequestHead {
        method: "POST".into(),
        path: "/v1/images/generations".into(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {GATEWAY_KEY}")),
        prefer: Some("respond-async".into()),
        ..RequestHead::default()
    };
    h.serve_head(head, body, vec![])
}

fn poll(h: &Harness) -> Served {
    h.serve("GET", &format!("/v1/actions/{ACTION}"), Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![])
}

#[test]
fn respond_async_answers_202_at_once_and_the_job_runs_to_success() {
    let h = Harness::long();
    let accepted = asynchronous(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#);
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    assert!(accepted.calls.is_empty(), "nothing upstream before the answer");
    let kept = h.runner.jobs.borrow()[0].head.clone();
    assert_eq!((kept.authorization, kept.caller_label.is_some()), (None, true), "a job keeps the key's label, never the key");
    assert_eq!(accepted.header("location"), Some(&*format!("/v1/actions/{ACTION}")));
    assert_eq!(accepted.header("preference-applied"), Some("respond-async"));
    assert_eq!(accepted.header("x-imagegate-action-id"), Some(ACTION));
    let queued = accepted.json();
    assert_eq!((queued["status"].as_str(), queued["model"].as_str(), queued["finished_at"].is_null()), (Some("queued"), Some("mock/gpt-image-1"), true));

    let waiting = poll(&h);
    assert_eq!((waiting.json()["status"].as_str(), waiting.header("retry-after")), (Some("queued"), Some("5")));

    let journal = MemoryJournal::default();
    let ran = h.run_job(&journal, vec![answer(500, "{}"), answer(200, OK)]);
    assert_eq!((ran.status, ran.calls.len(), journal.0.get()), (200, 2, 2), "a retry, as a synchronous request makes, each call noted first");
    let done = poll(&h);
    let action = done.json();
    assert_eq!((action["status"].as_str(), action["attempts"].as_array().unwrap().len()), (Some("success"), 2));
    assert_eq!(action["created_at"], queued["created_at"], "created when the client asked");
    assert!(done.header("retry-after").is_none());
}

#[test]
fn an_upstream_failure_ends_error_with_the_attempts() {
    let h = Harness::new();
    asynchronous(&h, r#"{"prompt": "p", "model": "gpt-image-1", "retry": {"count": 0}}"#);
    let ran = h.run_job(&MemoryJournal::default(), vec![answer(400, r#"{"error":{"message":"bad prompt"}}"#)]);
    assert_eq!(ran.status, 400);
    let action = poll(&h).json();
    assert_eq!((action["status"].as_str(), action["http_status"].as_u64()), (Some("error"), Some(400)));
    assert!(action["error"].as_str().unwrap().contains("bad prompt"), "{action}");
    assert_eq!(action["attempts"][0]["status"], 400);
}

#[test]
fn a_rerun_of_a_run_killed_mid_call_makes_no_second_paid_call() {
    let h = Harness::new();
    asynchronous(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#);
    let journal = MemoryJournal::default();
    let job = h.runner.jobs.borrow()[0].clone();
    let upstream = FakeUpstream::new(&h.clock, vec![hang()]);
    {
        let journaled = Journaled { inner: &upstream, journal: &journal };
        let gateway = Gateway::new(&h.config, &h.keys, &journaled, &FixedSecrets, &h.clock, &h.draw)
            .with_state(&h.cache, &h.history)
            .with_managed_keys(&h.key_store, &h.limiter);
        // The run gets as far as the upstream call, then is killed (its future dropped).
        assert!(gateway.run(&job, &journal).now_or_never().is_none(), "the run waits on the call");
    }
    assert_eq!((upstream.calls.borrow().len(), journal.0.get()), (1, 1), "the call left, noted");

    let rerun = h.run_job(&journal, vec![]);
    assert_eq!((rerun.status, rerun.calls.len()), (502, 0), "one upstream call in all");
    let action = poll(&h).json();
    assert_eq!(action["status"], "error");
    assert!(action["error"].as_str().unwrap().contains("outcome is unknown"), "{action}");
}

#[test]
fn cancel_ends_an_unfinished_action_and_leaves_a_finished_one() {
    let h = Harness::new();
    asynchronous(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#);
    let cancel = |h: &Harness| h.serve("POST", &format!("/v1/actions/{ACTION}/cancel"), Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![]);
    let cancelled = cancel(&h);
    assert_eq!((cancelled.status, cancelled.json()["status"].as_str(), cancelled.json()["error"].as_str()), (200, Some("error"), Some("cancelled")));
    assert_eq!(h.runner.cancelled.borrow().len(), 1);
    assert!(h.runner.jobs.borrow().is_empty(), "the job will not run");
    assert_eq!(h.serve("POST", &format!("/v1/actions/{ACTION}/cancel"), Some(&format!("Bearer {OTHER_GATEWAY_KEY}")), "", vec![]).status, 404);
    let wrong = h.serve("GET", &format!("/v1/actions/{ACTION}/cancel"), Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![]);
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST, OPTIONS")));
    let management = h.serve("POST", &format!("/v1/actions/{ACTION}/cancel"), Some(&format!("Bearer {MANAGEMENT_KEY}")), "", vec![]);
    assert_eq!(management.status, 403, "the management key reads, and does not cancel");

    let h = Harness::new();
    h.generate(r#"{"prompt": "p", "model": "gpt-image-1"}"#, vec![answer(200, OK)]);
    let finished = cancel(&h);
    assert_eq!((finished.status, finished.json()["status"].as_str()), (200, Some("success")), "a finished action is unchanged");
}

#[test]
fn without_a_prefer_header_or_a_runner_a_request_is_answered_in_place() {
    let h = Harness::new();
    let served = h.generate(r#"{"prompt": "p", "model": "gpt-image-1"}"#, vec![answer(200, OK)]);
    assert_eq!((served.status, served.header("preference-applied")), (200, None));
    assert!(h.runner.jobs.borrow().is_empty());
}

/// The standard configuration, where webhooks may go to `hooks.example.com` and Ouro's callbacks
/// to its default host.
fn with_webhooks() -> Harness {
    Harness::with_config(&CONFIG.replacen("\"deadline_ms\": 1000,", "\"deadline_ms\": 1000, \"webhook_hosts\": [\"hooks.example.com\"],", 1))
}

fn generation(h: &Harness, body: &str, ouro: Option<(&str, &str, &str)>) -> Served {
    let head = RequestHead {
        method: "POST".into(),
        path: "/v1/images/generations".into(),
        content_type: Some("application/json".into()),
        authorization: Some(format!("Bearer {GATEWAY_KEY}")),
        ouro_action_id: ouro.map(|o| o.0.to_owned()),
        ouro_webhook_url: ouro.map(|o| o.1.to_owned()),
        ouro_webhook_token: ouro.map(|o| o.2.to_owned()),
        ..RequestHead::default()
    };
    h.serve_head(head, body, vec![])
}

#[test]
fn a_webhook_makes_a_request_asynchronous_and_goes_only_where_the_configuration_allows() {
    let h = with_webhooks();
    let accepted = generation(&h, r#"{"prompt": "p", "model": "gpt-image-1", "webhook": {"url": "https://hooks.example.com/done", "secret": "whsec"}}"#, None);
    assert_eq!((accepted.status, accepted.header("preference-applied")), (202, None));
    let job = h.runner.jobs.borrow()[0].clone();
    assert_eq!(job.callback, Some(imagegate::jobs::Callback::Webhook { url: "https://hooks.example.com/done".into(), secret: "whsec".into() }));

    for (webhook, param) in [
        (r#"{"url": "https://evil.example/done", "secret": "s"}"#, "webhook.url"),
        (r#"{"url": "http://hooks.example.com/done", "secret": "s"}"#, "webhook.url"),
        (r#"{"url": "https://10.0.0.1/done", "secret": "s"}"#, "webhook.url"),
        (r#"{"url": "https://hooks.example.com:8443/done", "secret": "s"}"#, "webhook.url"),
        (r#"{"url": "https://hooks.example.com/done"}"#, "webhook.secret"),
        (r#"{"url": "https://hooks.example.com/done", "secret": "s", "events": []}"#, "webhook.events"),
        (r#""https://hooks.example.com""#, "webhook"),
    ] {
        let refused = generation(&h, &format!(r#"{{"prompt": "p", "model": "gpt-image-1", "webhook": {webhook}}}"#), None);
        assert_eq!((refused.status, refused.json()["error"]["param"].as_str()), (400, Some(param)), "{webhook}");
    }
    let nowhere = Harness::new();
    let refused = generation(&nowhere, r#"{"prompt": "p", "model": "gpt-image-1", "webhook": {"url": "https://hooks.example.com/x", "secret": "s"}}"#, None);
    assert_eq!(refused.status, 400, "no webhook_hosts: no webhooks");
}

#[test]
fn ouros_headers_make_a_request_asynchronous_and_its_token_stays_out_of_the_kept_request() {
    let h = Harness::new();
    let accepted = generation(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#, Some(("ouro-1", "https://api.ouro.foundation/hooks/1", "tok-secret")));
    assert_eq!(accepted.status, 202);
    let job = h.runner.jobs.borrow()[0].clone();
    assert!(matches!(&job.callback, Some(imagegate::jobs::Callback::Ouro { action_id, token, .. }) if action_id == "ouro-1" && token == "tok-secret"));
    assert_eq!(job.head.ouro_webhook_token, None);
    let partial = generation(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#, Some(("ouro-1", "https://api.ouro.foundation/hooks/1", "")));
    assert_eq!(partial.status, 202, "an empty token is still a token");
    let elsewhere = generation(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#, Some(("ouro-1", "https://evil.example/hooks/1", "t")));
    assert_eq!((elsewhere.status, elsewhere.json()["error"]["param"].as_str()), (400, Some("ouro-webhook-url")));
}

#[test]
fn a_callback_is_signed_and_tried_again_with_backoff_until_it_is_taken() {
    use imagegate::jobs::{callback_request, deliver, webhook_signature, Callback};
    let h = Harness::new();
    let action = imagegate::state::Action { id: ACTION.into(), status: "success".into(), ..Default::default() };
    let request = callback_request(&Callback::Webhook { url: "https://hooks.example.com/x".into(), secret: "whsec".into() }, &action, 1_700_000_000);
    let signature = request.headers.iter().find(|(n, _)| n == "x-imagegate-signature").unwrap().1.expose().to_owned();
    assert_eq!(signature, format!("t=1700000000,v1={}", webhook_signature("whsec", 1_700_000_000, &request.body)));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!((body["id"].as_str(), body["status"].as_str()), (Some(ACTION), Some("success")));

    let upstream = FakeUpstream::new(&h.clock, vec![answer(500, ""), connection_refused(), answer(204, "")]);
    assert_eq!(futures_executor::block_on(deliver(&upstream, &h.clock, request.clone())), Ok(204));
    assert_eq!(h.clock.1.borrow().as_slice(), [1_000, 2_000], "backoff between the attempts");
    let refusing = FakeUpstream::new(&h.clock, (0..5).map(|_| answer(500, "")).collect());
    assert!(futures_executor::block_on(deliver(&refusing, &h.clock, request)).is_err(), "five attempts, then it gives up");

    let ouro = Callback::Ouro { url: "https://api.ouro.foundation/x".into(), token: "tok".into(), action_id: "ouro-1".into(), route_id: Some("r-1".into()) };
    let failed = imagegate::state::Action { error: Some("boom".into()), status: "error".into(), ..action };
    let request = callback_request(&ouro, &failed, 0);
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, serde_json::json!({"status": "error", "ouro_action_id": "ouro-1", "ouro_route_id": "r-1", "response": {"error": "boom"}}));
    assert_eq!(request.headers.iter().find(|(n, _)| n == "ouro-webhook-token").unwrap().1.expose(), "tok");
    assert!(!format!("{request:?}").contains("tok\""), "the token is a secret in logs");
}

#[test]
fn a_synchronous_generation_runs_in_its_actions_place_and_its_answer_comes_back() {
    use imagegate::jobs::{RunFailure, RunReply};
    let h = Harness::new();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-imagegate-attempts".to_owned(), "mock/gpt-image-1;200;12".to_owned()),
        ("x-request-id".to_owned(), "req_the_runners".to_owned()),
        ("set-cookie".to_owned(), "never=relayed".to_owned()),
    ];
    h.runner.replies.borrow_mut().push(Ok(RunReply { status: 200, headers, body: OK.as_bytes().to_vec() }));
    let served = h.generate(r#"{"prompt": "p", "model": "gpt-image-1"}"#, vec![]);
    assert_eq!((served.status, served.calls.len(), served.body.as_slice()), (200, 0, OK.as_bytes()), "generated where the runner keeps it");
    assert_eq!(served.header("x-imagegate-attempts"), Some("mock/gpt-image-1;200;12"));
    assert_eq!((served.header("x-request-id"), served.header("set-cookie")), (Some(REQUEST_ID), None), "its own id; nothing else passed on");
    assert_eq!(served.header("x-imagegate-action-id"), Some(ACTION));
    assert!(h.history.actions.borrow().is_empty(), "the runner records the action, not the waiting request");
    assert!(served.log_line.contains(r#""ran_apart":true"#), "{}", served.log_line);
    assert!(h.runner.ran.borrow()[0].head.authorization.is_none());

    h.runner.replies.borrow_mut().push(Err(RunFailure::Lost("the object was reset".to_owned())));
    let lost = h.generate(r#"{"prompt": "p", "model": "gpt-image-1"}"#, vec![]);
    let error = lost.json()["error"].clone();
    assert_eq!((lost.status, error["code"].as_str(), lost.header("x-should-retry")), (502, Some("generation_detached"), Some("false")));
    assert!(error["message"].as_str().unwrap().contains(&format!("GET /v1/actions/{ACTION}")), "{error}");
    assert_eq!(lost.calls.len(), 0, "never generated twice");

    // A runner that cannot take the job: generated in place.
    let in_place = h.generate(r#"{"prompt": "p", "model": "gpt-image-1"}"#, vec![answer(200, OK)]);
    assert_eq!((in_place.status, in_place.calls.len(), h.history.actions.borrow().len()), (200, 1, 1));
}

#[test]
fn an_asynchronous_action_past_its_deadline_ends_timed_out() {
    let h = Harness::new();
    asynchronous(&h, r#"{"prompt": "p", "model": "gpt-image-1", "retry": {"count": 0}}"#);
    let slow = Script { latency_ms: 5_000, ..answer(200, OK) };
    let ran = h.run_job(&MemoryJournal::default(), vec![slow]);
    assert_eq!(ran.status, 524);
    let action = poll(&h).json();
    assert_eq!((action["status"].as_str(), action["http_status"].as_u64()), (Some("timed-out"), Some(524)));
}

#[test]
fn an_async_route_answers_202_and_calls_back_the_webhook_it_configures() {
    let route = r#"{"id": "6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6", "identifier": "acme/later", "model": "gpt-image-1", "execution_mode": "async",
                   "webhook": {"url": "https://hooks.example.com/later", "secret_name": "MOCK_KEY"}}"#;
    let config = CONFIG.replacen("\"deadline_ms\": 1000,", "\"deadline_ms\": 1000, \"webhook_hosts\": [\"hooks.example.com\"],", 1);
    let config = format!("{}, \"routes\": [{route}]}}", config.trim_end().strip_suffix('}').unwrap());
    let h = Harness::with_config(&config);
    let accepted = h.serve("POST", "/v1/routes/acme/later/use", Some(&format!("Bearer {GATEWAY_KEY}")), r#"{"prompt": "p"}"#, vec![]);
    assert_eq!((accepted.status, accepted.header("preference-applied")), (202, None), "async by the route, not by a preference");
    let callback = h.runner.jobs.borrow()[0].callback.clone();
    assert_eq!(callback, Some(imagegate::jobs::Callback::Webhook { url: "https://hooks.example.com/later".into(), secret: PROVIDER_KEY.into() }));

    let elsewhere = config.replace("https://hooks.example.com/later", "https://evil.example/later");
    assert!(imagegate::config::Config::from_json(&elsewhere).unwrap_err().contains("routes[0].webhook.url"));
    let pasted = config.replace("\"secret_name\": \"MOCK_KEY\"", "\"secret_name\": \"whsec-pasted\"");
    let error = imagegate::config::Config::from_json(&pasted).unwrap_err();
    assert!(error.contains("routes[0].webhook.secret_name") && !error.contains("whsec-pasted"), "{error}");
}

#[test]
fn retry_after_is_what_is_left_of_the_models_median_latency() {
    let h = Harness::new();
    for (i, latency_ms) in [10_000, 20_000, 90_000].into_iter().enumerate() {
        let done = imagegate::state::Action {
            id: format!("act_{i}"),
            model: Some("mock/gpt-image-1".into()),
            status: "success".into(),
            latency_ms,
            ..Default::default()
        };
        h.history.actions.borrow_mut().push(done);
    }
    let accepted = asynchronous(&h, r#"{"prompt": "p", "model": "gpt-image-1"}"#);
    assert_eq!(accepted.header("retry-after"), Some("20"), "the median of 10, 20 and 90 s");
    h.clock.0.set(h.clock.0.get() + 15_000);
    assert_eq!(poll(&h).header("retry-after"), Some("5"), "15 s of the 20 have passed");
    h.clock.0.set(h.clock.0.get() + 60_000);
    assert_eq!(poll(&h).header("retry-after"), Some("1"), "past the median: at least a second");
}
