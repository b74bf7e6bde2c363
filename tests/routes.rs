//! Routes: named endpoints with their own defaults, locked fields, visibility and policy; their
//! description, history and statistics.

mod support;

use serde_json::{json, Value};
use support::*;

const THUMBS: &str = "6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6";
const ROUTES: &str = r#"[
  {"id": "6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6", "identifier": "acme/thumbs", "name": "Thumbnails",
   "description": "Small squares", "metadata": {"team": "web"}, "model": "imagegate/test-pattern",
   "defaults": {"size": "256x256", "n": 2}, "overridable": ["prompt", "user"]},
  {"id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "identifier": "acme/secret", "visibility": "private", "keys": ["other"],
   "model": "imagegate/test-pattern"},
  {"id": "11111111-2222-4333-8444-555555555555", "identifier": "acme/resilient", "model": "mock/gpt-image-1",
   "policy": {"retry": {"count": 0}, "fallbacks": [{"model": "backup/m"}]}, "overridable": ["prompt", "retry"]}
]"#;

/// The standard configuration with `routes`, and a 60 s deadline (for a retry that waits).
fn with_routes(routes: &str) -> String {
    let config = CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#);
    format!("{}, \"routes\": {routes}}}", config.trim_end().strip_suffix('}').unwrap())
}

fn harness() -> Harness {
    Harness::with_config(&with_routes(ROUTES))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn use_route(h: &Harness, key: &str, selector: &str, body: &str, script: Vec<Script>) -> Served {
    h.serve("POST", &format!("/v1/routes/{selector}/use"), Some(&bearer(key)), body, script)
}

fn get(h: &Harness, key: &str, path: &str) -> Served {
    h.serve("GET", path, Some(&bearer(key)), "", vec![])
}

#[test]
fn a_routes_defaults_apply_and_its_answer_names_the_action() {
    let h = harness();
    let served = use_route(&h, GATEWAY_KEY, "acme/thumbs", r#"{"prompt": "a lighthouse"}"#, vec![]);
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    let answer = served.json();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2, "n from the defaults");
    let action_id = served.header("x-imagegate-action-id").unwrap();
    assert_eq!(answer["action_id"].as_str(), Some(action_id));
    let action = h.history.actions.borrow()[0].clone();
    assert_eq!((action.route_id.as_deref(), action.model.as_deref()), (Some(THUMBS), Some("imagegate/test-pattern")));
    assert_eq!(action.request.unwrap()["size"], "256x256");

    // By id too, and a field the route lets callers set.
    let by_id = use_route(&h, GATEWAY_KEY, THUMBS, r#"{"prompt": "a lighthouse", "user": "u-7"}"#, vec![]);
    assert_eq!(by_id.status, 200, "{}", String::from_utf8_lossy(&by_id.body));
    // Through the generations endpoint: the plain answer, recorded with the route.
    let plain = h.generate(r#"{"prompt": "a lighthouse", "model": "route:acme/thumbs"}"#, vec![]);
    assert_eq!((plain.status, plain.json().get("action_id")), (200, None));
    assert_eq!(h.history.actions.borrow()[2].route_id.as_deref(), Some(THUMBS));
}

#[test]
fn a_locked_field_is_a_400_naming_it_before_any_call() {
    let h = harness();
    for (body, param) in [
        (r#"{"prompt": "p", "size": "1024x1024"}"#, "size"),
        (r#"{"prompt": "p", "model": "mock/gpt-image-1"}"#, "model"),
        (r#"{"prompt": "p", "cache": {"type": "exact_match"}}"#, "cache"),
    ] {
        let refused = use_route(&h, GATEWAY_KEY, "acme/thumbs", body, vec![]);
        let error = refused.json()["error"].clone();
        assert_eq!((refused.status, error["code"].as_str(), error["param"].as_str()), (400, Some("locked_parameter"), Some(param)), "{body}");
        assert!(error["message"].as_str().unwrap().contains("callers may set only 'prompt', 'user'"), "{error}");
    }
    let header = imagegate::http::RequestHead {
        method: "POST".into(),
        path: "/v1/routes/acme/thumbs/use".into(),
        content_type: Some("application/json".into()),
        authorization: Some(bearer(GATEWAY_KEY)),
        imagegate_config: Some(r#"{"retry": {"count": 3}}"#.into()),
        ..Default::default()
    };
    assert_eq!(h.serve_head(header, r#"{"prompt": "p"}"#, vec![]).json()["error"]["param"], "retry", "the header's fields count too");
    let generations = h.generate(r#"{"prompt": "p", "model": "route:acme/thumbs", "n": 1}"#, vec![]);
    assert_eq!((generations.status, generations.json()["error"]["param"].as_str()), (400, Some("n")));
}

#[test]
fn a_private_route_is_404_to_an_unlisted_key_and_listed_only_to_its_keys() {
    let h = harness();
    for path in ["/v1/routes/acme/secret", "/v1/routes/acme/secret/actions", "/v1/routes/acme/secret/stats"] {
        let hidden = get(&h, GATEWAY_KEY, path);
        assert_eq!((hidden.status, hidden.json()["error"]["code"].as_str()), (404, Some("route_not_found")), "{path}");
    }
    assert_eq!(use_route(&h, GATEWAY_KEY, "acme/secret", r#"{"prompt": "p"}"#, vec![]).status, 404);
    let via_model = h.generate(r#"{"prompt": "p", "model": "route:acme/secret"}"#, vec![]);
    assert_eq!((via_model.status, via_model.json()["error"]["param"].as_str()), (404, Some("model")));
    assert_eq!(use_route(&h, OTHER_GATEWAY_KEY, "acme/secret", r#"{"prompt": "p"}"#, vec![]).status, 200);

    let listed =
        |key| get(&h, key, "/v1/routes").json()["data"].as_array().unwrap().iter().map(|r| r["identifier"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(listed(GATEWAY_KEY), ["acme/thumbs", "acme/resilient"]);
    assert_eq!(listed(OTHER_GATEWAY_KEY), ["acme/thumbs", "acme/secret", "acme/resilient"]);
    assert_eq!(listed(MANAGEMENT_KEY), ["acme/thumbs", "acme/secret", "acme/resilient"], "the management key sees every route");
    assert_eq!(h.serve("GET", "/v1/routes", None, "", vec![]).status, 401);
}

#[test]
fn a_route_describes_its_request_as_json_schema_and_tells_no_secret() {
    let h = harness();
    let route = get(&h, GATEWAY_KEY, "/v1/routes/acme/thumbs").json();
    assert_eq!((route["id"].as_str(), route["object"].as_str(), route["name"].as_str()), (Some(THUMBS), Some("route"), Some("Thumbnails")));
    assert_eq!((route["method"].as_str(), route["path"].as_str()), (Some("POST"), Some("/v1/routes/acme/thumbs/use")));
    assert_eq!(route["fixed"], json!({"size": "256x256", "n": 2}));
    let schema = &route["request_schema"];
    assert_eq!(schema["properties"]["prompt"], json!({"type": "string", "minLength": 1, "maxLength": 32000}));
    assert_eq!(schema["properties"]["user"]["type"], "string");
    assert_eq!((schema["required"].clone(), schema["additionalProperties"].clone()), (json!(["prompt"]), json!(false)));
    assert!(schema["properties"].get("size").is_none(), "a fixed field is not the caller's to set");

    let secret = get(&h, OTHER_GATEWAY_KEY, "/v1/routes/acme/secret");
    let text = String::from_utf8_lossy(&secret.body);
    assert!(!text.contains("\"keys\"") && !text.contains("other"), "no key labels: {text}");
    let resilient = get(&h, GATEWAY_KEY, "/v1/routes/11111111-2222-4333-8444-555555555555").json();
    assert_eq!(resilient["models"], json!(["mock/gpt-image-1", "backup/m"]));
    assert!(!String::from_utf8_lossy(&get(&h, GATEWAY_KEY, "/v1/routes").body).contains("MOCK_KEY"));
}

#[test]
fn a_routes_policy_sits_over_the_models_and_under_what_the_caller_may_set() {
    let h = harness();
    let served = use_route(&h, GATEWAY_KEY, "acme/resilient", r#"{"prompt": "p"}"#, vec![answer(500, "{}"), answer(200, OK)]);
    assert_eq!(served.status, 200);
    assert_eq!(providers_called(&served), ["mock", "backup"], "no retry, then the route's fallback");
    let retried =
        use_route(&h, GATEWAY_KEY, "acme/resilient", r#"{"prompt": "p", "retry": {"count": 1, "on_codes": [500]}}"#, vec![answer(500, "{}"), answer(200, OK)]);
    assert_eq!(providers_called(&retried), ["mock", "mock"], "the caller's retry, which the route allows");
}

#[test]
fn a_routes_history_and_stats_hold_the_callers_generations_through_it() {
    let h = harness();
    for _ in 0..3 {
        use_route(&h, GATEWAY_KEY, "acme/thumbs", r#"{"prompt": "p"}"#, vec![]);
    }
    h.generate(r#"{"prompt": "p", "model": "imagegate/test-pattern"}"#, vec![]);
    use_route(&h, OTHER_GATEWAY_KEY, "acme/thumbs", r#"{"prompt": "p"}"#, vec![]);
    let route_actions = get(&h, GATEWAY_KEY, "/v1/routes/acme/thumbs/actions").json();
    assert_eq!(route_actions["data"].as_array().unwrap().len(), 3, "the route's, the caller's");
    let filtered = get(&h, GATEWAY_KEY, &format!("/v1/actions?route={THUMBS}")).json();
    assert_eq!(filtered["data"].as_array().unwrap().len(), 3);
    assert_eq!(get(&h, GATEWAY_KEY, "/v1/actions?route=acme/secret").json()["error"]["param"], "route");
    assert_eq!(get(&h, GATEWAY_KEY, "/v1/routes/acme/thumbs/actions?route=x").status, 400);

    let stats = get(&h, GATEWAY_KEY, "/v1/routes/acme/thumbs/stats?interval=hour").json();
    let data = stats["data"].as_array().unwrap();
    assert_eq!((stats["object"].as_str(), stats["interval"].as_str(), data.len()), (Some("route.stats"), Some("hour"), 24));
    let sum = |field: &str| data.iter().map(|b| b[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("requests"), sum("successes"), sum("images")), (3, 3, 6), "three generations of two images");
    let last: &Value = data.last().unwrap();
    assert_eq!(last["requests"], 3);
    assert_eq!(get(&h, GATEWAY_KEY, "/v1/routes/acme/thumbs/stats?interval=week").json()["error"]["param"], "interval");
    let everyone = get(&h, MANAGEMENT_KEY, "/v1/routes/acme/thumbs/stats?interval=hour").json();
    let total: u64 = everyone["data"].as_array().unwrap().iter().map(|b| b["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, 4, "the management key's stats count every key's use");
    assert_eq!(get(&h, MANAGEMENT_KEY, "/v1/routes/acme/thumbs/actions").json()["data"].as_array().unwrap().len(), 4);
}

#[test]
fn routes_are_checked_when_the_configuration_loads() {
    let bad = r#"[{"id": "not-a-uuid", "identifier": "Acme", "model": "nope", "visibility": "private", "execution_mode": "async",
                   "defaults": {"size": "huge", "retry": {}}, "overridable": ["prompt", "colour"]}]"#;
    let error = imagegate::config::Config::from_json(&with_routes(bad)).unwrap_err();
    for expected in ["routes[0].id", "routes[0].identifier", "routes[0].keys", "routes[0].model", "routes[0].overridable[1]", "routes[0].defaults.retry"] {
        assert!(error.contains(expected), "{expected} in {error}");
    }
    let size = r#"[{"id": "6f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6", "identifier": "a/b", "model": "imagegate/test-pattern", "defaults": {"size": "huge"}}]"#;
    let error = imagegate::config::Config::from_json(&with_routes(size)).unwrap_err();
    assert!(error.contains("routes[0].defaults.size"), "{error}");
}
