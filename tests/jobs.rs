//! Asynchronous jobs (Replicate, BFL): polled at the address they were given with growing waits,
//! asked again after a passing failure, cancelled or abandoned past their time, and final once
//! lost, so that a paid job is never paid twice.

mod support;

use imagegate::upstream::Method;
use serde_json::json;
use support::*;

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
fn a_replicate_create_waits_no_longer_than_the_attempt_may_take() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 20000"#));
    let done = || answer(200, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let served = h.generate(r#"{"prompt":"p","model":"replicate/flux"}"#, vec![done()]);
    let prefer = served.calls[0].headers.iter().find(|(n, _)| n == "prefer").map(|(_, v)| v.expose().to_owned());
    assert_eq!(prefer.as_deref(), Some("wait=15"), "20 s deadline, 5 s margin");
    let short = h.generate(r#"{"prompt":"p","model":"replicate/flux","timeout":{"call_timeout":4000}}"#, vec![done()]);
    assert!(short.calls[0].headers.iter().all(|(n, _)| n != "prefer"), "too short to wait: a plain asynchronous create");
}
