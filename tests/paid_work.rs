//! One request never pays for more than its policy allows: each model is tried once however many
//! of its names the fallbacks list, `max_attempts` caps the attempts that reach an upstream, and
//! once an upstream may have started paid work the attempt is final. Each test counts the
//! upstream calls exactly.

mod support;

use support::*;

const BFL_CREATED: &str = r#"{"id":"t1","polling_url":"https://api.us1.bfl.ai/v1/get_result?id=t1"}"#;
const BFL_PENDING: &str = r#"{"id":"t1","status":"Pending","result":null}"#;

#[test]
fn the_issues_trigger_creates_one_bfl_job_not_sixty_six() {
    // Retries on timeouts, and ten fallbacks that all name the same model by its alias.
    let h = Harness::long();
    let fallbacks = [r#"{"model":"flux"}"#; 10].join(",");
    let body =
        format!(r#"{{"prompt":"p","model":"bfl/flux","timeout":{{"call_timeout":1500}},"retry":{{"count":5,"on_codes":[408]}},"fallbacks":[{fallbacks}]}}"#);
    // Created after 10 ms; one poll after 1 s finds it pending; the 1.5 s are then spent.
    let served = h.generate(&body, vec![answer(200, BFL_CREATED), answer(200, BFL_PENDING)]);
    assert_eq!(served.status, 524, "{}", served.everything_sent());
    let creates = served.calls.iter().filter(|c| c.method == imagegate::upstream::Method::Post).count();
    assert_eq!((creates, served.calls.len(), served.attempts), (1, 2, 1), "one job created, polled once, abandoned, final");
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("may charge for"), "the charge risk is said");
}

#[test]
fn fallbacks_naming_a_model_already_tried_are_skipped() {
    let h = Harness::long();
    let fallbacks = [r#"{"model":"gpt-image-1"}"#; 4].join(",");
    let body = format!(
        r#"{{"prompt":"p","model":"mock/gpt-image-1","retry":{{"count":1}},"fallbacks":[{fallbacks},{{"model":"backup/m"}},{{"model":"mock/gpt-image-1"}}]}}"#
    );
    let fail = || answer(500, r#"{"error":{"message":"boom"}}"#);
    let served = h.generate(&body, vec![fail(), fail(), fail(), fail()]);
    assert_eq!(providers_called(&served), ["mock", "mock", "backup", "backup"], "(1 + 1 retry) × two distinct models, not × seven names");
}

#[test]
fn max_attempts_caps_the_paid_attempts_of_one_request() {
    let mut h = Harness::long();
    h.config.max_attempts = 3;
    let fail = || answer(500, r#"{"error":{"message":"boom"}}"#);
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":5},"fallbacks":[{"model":"backup/m"}]}"#, vec![fail(), fail(), fail()]);
    assert_eq!((served.status, served.calls.len()), (502, 3));
    let message = served.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("at most 3 paid attempts per request (max_attempts)"), "{message}");
    // A target skipped without a call costs nothing: the fallback after it still runs.
    let mut h = Harness::long();
    h.config.max_attempts = 1;
    let served = h.generate(r#"{"prompt":"p","model":"keyless/m","fallbacks":[{"model":"gpt-image-1"}]}"#, vec![answer(200, OK)]);
    assert_eq!((served.status, trail(&served)), (200, vec!["keyless/m;500".to_owned(), "mock/gpt-image-1;200".to_owned()]));
}

#[test]
fn a_job_create_whose_connection_broke_is_final() {
    let h = Harness::long();
    let body = r#"{"prompt":"p","model":"replicate/flux","retry":{"count":3},"fallbacks":[{"model":"mock/gpt-image-1"}]}"#;
    let served = h.generate(body, vec![connection_refused()]);
    assert_eq!((served.status, served.calls.len()), (502, 1), "the create may have reached Replicate: not sent again");
    assert_eq!(served.json()["error"]["code"], "upstream_job_lost");
    // The same for an answer that never came: a timeout before the head.
    let hung = Script { latency_ms: 5_000, ..answer(201, "{}") };
    let served = h.generate(r#"{"prompt":"p","model":"bfl/flux","retry":{"count":3,"on_codes":[408]},"timeout":{"call_timeout":2000}}"#, vec![hung]);
    assert_eq!((served.status, served.calls.len()), (524, 1));
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("did not answer the job's create call within 2000 ms"));
}

#[test]
fn a_job_create_that_never_left_the_gateway_is_not_final() {
    let h = Harness::long();
    let done = answer(201, r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/p1/out-0.png"]}"#);
    let served = h.generate(r#"{"prompt":"p","model":"replicate/flux","retry":{"count":1}}"#, vec![not_sent(), done]);
    assert_eq!((served.status, served.calls.len()), (200, 2), "{}", served.everything_sent());
}

#[test]
fn a_synchronous_connection_failure_before_any_answer_is_still_retried() {
    let h = Harness::long();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":1}}"#, vec![connection_refused(), answer(200, OK)]);
    assert_eq!((served.status, served.calls.len()), (200, 2));
}

#[test]
fn a_200_that_is_cut_off_or_unreadable_is_paid_once() {
    let h = Harness::long();
    let policy = r#""retry":{"count":3},"fallbacks":[{"model":"backup/m"}]"#;
    // Translated (an OpenRouter caller): the answer is read whole.
    for script in [cut_off_after_head(), answer(200, r#"{"created":1,"data":[{"b64_json":"aW1h"#), answer(200, r#"{"created":1,"data":[]}"#)] {
        let served = h.openrouter(&format!(r#"{{"model":"mock/gpt-image-1","prompt":"p",{policy}}}"#), vec![script]);
        assert_eq!((served.status, served.calls.len()), (502, 1), "{}", served.everything_sent());
    }
    // Relayed (an OpenAI caller): a large answer whose body breaks before its first image.
    let head = Script { chunks: vec![br#"{"created":1,"data":["#.to_vec()], cut_off: true, declared_length: Some(2 << 20), ..answer(200, "") };
    let served = h.generate(&format!(r#"{{"model":"gpt-image-1","prompt":"p",{policy}}}"#), vec![head]);
    assert_eq!((served.status, served.calls.len()), (502, 1));
    assert_eq!(served.json()["error"]["code"], "upstream_answer_cut_off");
}

#[test]
fn an_answer_past_the_byte_budget_is_a_final_502_that_says_so() {
    let mut h = Harness::long();
    h.config.max_upstream_bytes = 1 << 20;
    let big = format!(r#"{{"created":1,"data":[{{"b64_json":"{}"}}]}}"#, "A".repeat(1 << 20));
    let served = h.openrouter(r#"{"model":"mock/gpt-image-1","prompt":"p","retry":{"count":2}}"#, vec![answer(200, &big)]);
    assert_eq!((served.status, served.calls.len()), (502, 1));
    assert_eq!(served.json()["error"]["metadata"]["code"], "upstream_answer_too_large");
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("1048576 bytes (max_upstream_bytes)"));
}

#[test]
fn the_byte_budget_is_shared_by_every_download_of_a_request() {
    let mut h = Harness::long();
    h.config.max_upstream_bytes = 1 << 20;
    let done = |i: u8| answer(200, &format!(r#"{{"id":"p{i}","status":"succeeded","output":["https://replicate.delivery/p{i}/out-0.png"]}}"#));
    let half = vec![7u8; 600 * 1024];
    let served = h.openrouter(
        r#"{"model":"replicate/flux","prompt":"p","n":2}"#,
        vec![done(1), done(2), image_bytes(&half, "image/png"), image_bytes(&half, "image/png")],
    );
    assert_eq!((served.status, served.calls.len()), (502, 4), "{}", served.everything_sent());
    let message = served.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("max_upstream_bytes"), "{message}");
}

#[test]
fn more_images_than_asked_are_cut_to_n_before_any_download() {
    let h = Harness::long();
    let many = r#"{"id":"p1","status":"succeeded","output":["https://replicate.delivery/a.png","https://replicate.delivery/b.png","https://replicate.delivery/c.png"]}"#;
    let served = h.openrouter(r#"{"model":"replicate/flux","prompt":"p"}"#, vec![answer(200, many), image_bytes(b"a", "image/png")]);
    assert_eq!((served.status, served.calls.len()), (200, 2), "{}", served.everything_sent());
    assert_eq!(served.calls[1].url, "https://replicate.delivery/a.png");
    assert_eq!(served.json()["data"].as_array().unwrap().len(), 1);
}

#[test]
fn a_call_timeout_under_a_second_is_refused_before_any_call() {
    let h = Harness::long();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","timeout":{"call_timeout":10}}"#, vec![]);
    assert_eq!((served.status, served.json()["error"]["param"].as_str()), (400, Some("timeout.call_timeout")));
}

#[test]
fn what_the_gateway_reads_to_check_an_answer_counts_against_the_byte_budget() {
    let mut h = Harness::long();
    h.config.max_upstream_bytes = 1 << 20;
    let padding = format!(r#"{{"created":1,"padding":"{}"#, "A".repeat((1 << 20) + 10));
    let large = Script { chunks: vec![padding.into_bytes()], declared_length: Some(4 << 20), ..answer(200, "") };
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":2}}"#, vec![large]);
    assert_eq!((served.status, served.calls.len()), (502, 1));
    assert_eq!(served.json()["error"]["code"], "upstream_answer_too_large");
}
