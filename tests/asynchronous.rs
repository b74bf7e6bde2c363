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
        let gateway = Gateway::new(&h.config, &h.keys, &journaled, &FixedSecrets, &h.clock, &h.draw).with_state(&h.cache, &h.history, &h.limiter);
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
