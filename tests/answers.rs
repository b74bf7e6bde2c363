//! What the client is told holds to the README's error table: an upstream's own timeout or 404 is
//! a 502 that says so, a relayed answer streams until the request's deadline, and a broken
//! deployment tells only trusted callers why.

mod support;

use imagegate::auth::{key_digest_hex, KeySet};
use imagegate::http::{ReplyBody, RequestHead};
use imagegate::pipeline::broken_deployment;
use serde_json::Value;
use support::*;

#[test]
fn an_upstream_timeout_is_a_502_not_the_gateways_524() {
    let h = Harness::long();
    for status in [504, 408] {
        let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":0},"fallback_on_codes":[]}"#, vec![answer(status, "{}")]);
        assert_eq!(served.status, 502, "{status}");
        let error = &served.json()["error"];
        assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("upstream_error"), Some("upstream_timeout")), "{status}");
        assert_eq!(trail(&served), [format!("mock/gpt-image-1;{status}")], "the attempt keeps the upstream's status");
    }
    let retried = h.generate(r#"{"prompt":"p","model":"gpt-image-1","retry":{"count":1}}"#, vec![answer(504, "{}"), answer(200, OK)]);
    assert_eq!(retried.status, 200, "a 504 is still retried by default");
}

#[test]
fn an_upstream_404_names_the_providers_path_not_the_clients_model() {
    let h = Harness::long();
    let served = h.generate(r#"{"prompt":"p","model":"gpt-image-1"}"#, vec![answer(404, r#"{"error":{"message":"Not found"}}"#)]);
    assert_eq!(served.status, 502);
    let error = &served.json()["error"];
    assert_eq!((error["code"].as_str(), error["param"].as_str()), (Some("upstream_not_found"), None));
    assert!(error["message"].as_str().unwrap().contains("answered 404 for /v1/images/generations: Not found"), "{error}");
}

#[test]
fn a_relayed_answer_streams_until_the_requests_deadline_not_the_attempts() {
    let h = Harness::long();
    let head = br#"{"created":1,"data":[{"b64_json":"iVBORw0KGgo"#.to_vec();
    let script = Script { chunks: vec![head, vec![b'A'; 1 << 20], br#""}]}"#.to_vec()], declared_length: Some(2 << 20), ..answer(200, "") };
    let handled = h.handle_generation(r#"{"prompt":"p","model":"gpt-image-1","timeout":{"call_timeout":2000}}"#, vec![script]);
    let ReplyBody::Relay(body) = handled.reply.body else { panic!("a 200 answer is relayed") };
    // 10 ms to the head and 1 ms to read the first chunk, of the request's 60 s.
    assert_eq!(body.relay_limit_ms, Some(60_000 - 11), "not the 2 s call_timeout");
}

fn head(authorization: Option<&str>) -> RequestHead {
    RequestHead { method: "GET".into(), path: "/healthz".into(), authorization: authorization.map(str::to_owned), ..RequestHead::default() }
}

#[test]
fn a_broken_deployment_tells_its_problem_only_to_a_caller_with_a_valid_key() {
    let keys = KeySet::parse(&key_digest_hex(GATEWAY_KEY)).unwrap();
    let problem = "IMAGEGATE_CONFIG is not valid: providers[0].headers.X-Team contains a control character";
    let body = |handled: imagegate::pipeline::Handled<()>| match handled.reply.body {
        ReplyBody::Bytes(bytes) => (handled.reply.status, serde_json::from_slice::<Value>(&bytes).unwrap(), handled.log.expect("a line")),
        _ => panic!("an error body"),
    };
    for authorization in [None, Some("Bearer sk-wrong".to_owned())] {
        let (status, json, log) = body(broken_deployment("r".into(), &head(authorization.as_deref()), problem, Some(&keys)));
        let message = json["error"]["message"].as_str().unwrap();
        assert_eq!((status, json["error"]["code"].as_str()), (500, Some("invalid_configuration")));
        assert!(!message.contains("X-Team") && message.contains("configuration is invalid"), "{message}");
        assert_eq!(log.error_detail.as_deref(), Some(problem), "the operator's log has the detail");
    }
    let (_, json, _) = body(broken_deployment("r".into(), &head(Some(&format!("Bearer {GATEWAY_KEY}"))), problem, Some(&keys)));
    assert_eq!(json["error"]["message"], problem, "a caller with a valid key is told");
    let (_, json, _) = body(broken_deployment("r".into(), &head(Some(&format!("Bearer {GATEWAY_KEY}"))), problem, None));
    assert!(!json["error"]["message"].as_str().unwrap().contains("X-Team"), "with no readable keys nobody is trusted");
}

#[test]
fn request_fields_that_reach_the_log_are_bounded() {
    let h = Harness::long();
    let long_name = "n".repeat(257);
    let served = h.generate(&format!(r#"{{"prompt":"p","model":"gpt-image-1","name":"{long_name}"}}"#), vec![]);
    assert_eq!((served.status, served.json()["error"]["param"].as_str()), (400, Some("name")));
    assert!(!served.log_line.contains(&long_name));
}
