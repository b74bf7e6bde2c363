//! The management key (the secret `IMAGEGATE_ADMIN_KEY`) reads every key's actions, files and
//! routes, and cannot generate.

mod support;

use support::*;

fn get(h: &Harness, key: &str, path: &str) -> Served {
    h.serve("GET", path, Some(&format!("Bearer {key}")), "", vec![])
}

#[test]
fn the_management_key_reads_every_keys_actions_and_files() {
    let h = Harness::keeping_files();
    let served = h.generate(r#"{"prompt": "p", "model": "imagegate/test-pattern"}"#, vec![]);
    let id = served.header("x-imagegate-action-id").unwrap().to_owned();
    assert_eq!(get(&h, OTHER_GATEWAY_KEY, &format!("/v1/actions/{id}")).status, 404, "another gateway key");

    let read = get(&h, MANAGEMENT_KEY, &format!("/v1/actions/{id}"));
    assert_eq!((read.status, read.json()["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(get(&h, MANAGEMENT_KEY, &format!("/api/v1/generation?id={id}")).status, 200);
    let listed = get(&h, MANAGEMENT_KEY, "/v1/actions").json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let file = get(&h, MANAGEMENT_KEY, "/v1/files/file_0123456789abcdef0123456789abcdef_0");
    assert_eq!(file.status, 200);
    let log: serde_json::Value = serde_json::from_str(&read.log_line).unwrap();
    assert_eq!(log["key"], "management");
}

#[test]
fn the_management_key_cannot_generate_and_a_wrong_one_is_401() {
    let h = Harness::new();
    let refused = h.serve("POST", "/v1/images/generations", Some(&format!("Bearer {MANAGEMENT_KEY}")), r#"{"prompt": "p"}"#, vec![]);
    assert_eq!((refused.status, refused.json()["error"]["code"].as_str()), (403, Some("management_key")));
    assert_eq!(get(&h, "sk-not-the-management-key", "/v1/actions").status, 401);
}
