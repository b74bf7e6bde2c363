//! Edits and variations: images in through a multipart form (or an edit's JSON with data: URLs),
//! relayed to OpenAI-shaped upstreams as a form with the same bytes on every attempt, made by
//! the test pattern in the worker, refused precisely where a provider cannot take them.

mod support;

use imagegate::http::RequestHead;
use imagegate::multipart;
use imagegate::png::{encode_palette4, Row};
use serde_json::json;
use support::*;

fn png(width: u32, height: u32, shade: u8) -> Vec<u8> {
    let row = vec![shade; width.div_ceil(2) as usize];
    encode_palette4(width, height, &[[0, 0, 0], [200, 10, 10]], (0..height).map(|_| Row::Pixels(&row)))
}

/// A form of text fields and files, as the OpenAI clients send it.
fn form(texts: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend_from_slice(format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--B--\r\n");
    ("multipart/form-data; boundary=B".to_owned(), body)
}

fn send(h: &Harness, path: &str, (content_type, body): (String, Vec<u8>), script: Vec<Script>) -> Served {
    let head = RequestHead {
        method: "POST".into(),
        path: path.into(),
        content_type: Some(content_type),
        authorization: Some(format!("Bearer {GATEWAY_KEY}")),
        ..RequestHead::default()
    };
    h.serve_bytes(head, body, script)
}

/// The fields and files of an upstream call's form: `(name, bytes)`.
fn sent_form(call: &imagegate::upstream::UpstreamRequest) -> Vec<(String, Vec<u8>)> {
    let content_type = call.headers.iter().find(|(n, _)| n == "content-type").unwrap().1.expose().to_owned();
    multipart::parse(&content_type, &call.body).unwrap().into_iter().map(|part| (part.name, call.body[part.range].to_vec())).collect()
}

fn field<'a>(form: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()))
}

fn decoded(served: &Served, index: usize) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(served.json()["data"][index]["b64_json"].as_str().unwrap()).unwrap()
}

#[test]
fn the_test_pattern_edits_at_the_images_size_and_its_picture_depends_on_the_input() {
    let h = Harness::long();
    let edit =
        |shade| send(&h, "/v1/images/edits", form(&[("prompt", "a hat"), ("model", "imagegate/test-pattern")], &[("image", &png(48, 32, shade))]), vec![]);
    let first = edit(0x11);
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    let image = decoded(&first, 0);
    assert_eq!(png_size(&image), (48, 32), "the first image's size");
    assert_ne!(decoded(&edit(0x10), 0), image, "other input bytes, another picture");
    assert_eq!(decoded(&edit(0x11), 0), image, "the same input, the same picture");
    let variation = send(&h, "/v1/images/variations", form(&[("model", "imagegate/test-pattern"), ("n", "2")], &[("image", &png(20, 20, 1))]), vec![]);
    assert_eq!((variation.status, variation.json()["data"].as_array().unwrap().len()), (200, 2));
}

#[test]
fn an_edit_is_relayed_as_a_form_with_the_same_bytes_and_fields() {
    let h = Harness::long();
    let (one, two, mask) = (png(16, 16, 1), png(16, 16, 2), png(16, 16, 0));
    let texts = [("prompt", "a hat"), ("model", "gpt-image-1"), ("n", "2"), ("size", "1024x1024"), ("input_fidelity", "high"), ("metadata[team]", "art")];
    let served = send(&h, "/v1/images/edits", form(&texts, &[("image[]", &one), ("image[]", &two), ("mask", &mask)]), vec![answer(200, OK)]);
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    assert_eq!(served.calls.len(), 1);
    let call = &served.calls[0];
    assert_eq!(call.url, "http://127.0.0.1:9/v1/images/edits");
    let sent = sent_form(call);
    assert_eq!(field(&sent, "model"), Some(&b"gpt-image-1"[..]), "the upstream's model name");
    assert_eq!(field(&sent, "prompt"), Some(&b"a hat"[..]));
    assert_eq!(field(&sent, "n"), Some(&b"2"[..]));
    assert_eq!(field(&sent, "input_fidelity"), Some(&b"high"[..]));
    assert_eq!(field(&sent, "metadata"), None, "routing fields stay in the gateway");
    let images: Vec<&[u8]> = sent.iter().filter(|(n, _)| n == "image[]").map(|(_, v)| v.as_slice()).collect();
    assert_eq!(images, [&one[..], &two[..]]);
    assert_eq!(field(&sent, "mask"), Some(&mask[..]));
    let action = h.history.actions.borrow()[0].clone();
    let request = action.request.unwrap();
    assert_eq!(
        (request["operation"].as_str(), request["images"][1]["width"].as_u64(), request["mask"]["media_type"].as_str()),
        (Some("edits"), Some(16), Some("image/png"))
    );
    assert!(!serde_json::to_string(&request).unwrap().contains("PNG"), "never the bytes");
}

#[test]
fn a_retry_and_a_fallback_send_the_same_image_bytes() {
    let h = Harness::long();
    let image = png(16, 16, 3);
    let texts = [("prompt", "p"), ("model", "gpt-image-1"), ("retry[count]", "1"), ("fallbacks[][model]", "backup/m")];
    let served = send(&h, "/v1/images/edits", form(&texts, &[("image", &image)]), vec![answer(500, "{}"), answer(500, "{}"), answer(200, OK)]);
    assert_eq!((served.status, served.calls.len()), (200, 3), "{}", String::from_utf8_lossy(&served.body));
    for call in &served.calls {
        assert_eq!(field(&sent_form(call), "image"), Some(&image[..]));
    }
    assert!(std::rc::Rc::ptr_eq(&served.calls[0].body, &served.calls[1].body), "a retry sends the very form it wrote");
    assert_eq!(served.calls[2].url, "http://127.0.0.1:10/v1/images/edits", "the fallback's upstream");
}

#[test]
fn a_variation_takes_one_image_and_no_prompt() {
    let h = Harness::long();
    let image = png(16, 16, 3);
    let served = send(&h, "/v1/images/variations", form(&[("model", "gpt-image-1"), ("size", "256x256")], &[("image", &image)]), vec![answer(200, OK)]);
    assert_eq!(served.status, 200);
    assert!(served.calls[0].url.ends_with("/images/variations"));
    assert_eq!(field(&sent_form(&served.calls[0]), "prompt"), None);
    let prompted = send(&h, "/v1/images/variations", form(&[("model", "gpt-image-1"), ("prompt", "p")], &[("image", &image)]), vec![]);
    assert_eq!((prompted.status, prompted.json()["error"]["param"].as_str()), (400, Some("prompt")));
    let styled = send(&h, "/v1/images/variations", form(&[("model", "gpt-image-1"), ("quality", "high")], &[("image", &image)]), vec![]);
    assert_eq!((styled.status, styled.json()["error"]["param"].as_str()), (400, Some("quality")), "variations take no quality");
}

#[test]
fn a_model_that_cannot_edit_is_refused_and_skipped_as_a_fallback() {
    let h = Harness::long();
    let image = png(16, 16, 3);
    let refused = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "flux")], &[("image", &image)]), vec![]);
    assert_eq!(
        (refused.status, refused.json()["error"]["code"].as_str(), refused.json()["error"]["param"].as_str()),
        (400, Some("unsupported_parameter"), Some("image"))
    );
    let texts = [("prompt", "p"), ("model", "gpt-image-1"), ("retry[count]", "0"), ("fallbacks[][model]", "flux")];
    let skipped = send(&h, "/v1/images/edits", form(&texts, &[("image", &image)]), vec![answer(500, "{}")]);
    assert_eq!(skipped.calls.len(), 1, "the fallback that cannot edit is never called");
}

#[test]
fn an_edit_may_come_as_json_with_data_urls() {
    use base64::Engine as _;
    let h = Harness::long();
    let image = png(16, 16, 3);
    let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&image));
    let body = json!({"prompt": "p", "model": "gpt-image-1", "images": [{"image_url": url}]}).to_string();
    let served = send(&h, "/v1/images/edits", ("application/json".to_owned(), body.into_bytes()), vec![answer(200, OK)]);
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    assert_eq!(field(&sent_form(&served.calls[0]), "image"), Some(&image[..]));
    let remote = json!({"prompt": "p", "images": [{"image_url": "https://example.com/a.png"}]}).to_string();
    let refused = send(&h, "/v1/images/edits", ("application/json".to_owned(), remote.into_bytes()), vec![]);
    assert_eq!((refused.status, refused.json()["error"]["param"].as_str()), (400, Some("images[0].image_url")));
}

#[test]
fn bad_bodies_are_precise_errors_before_any_call() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 1000, "max_edit_body_bytes": 4096"#));
    let image = png(16, 16, 3);
    let big = vec![0u8; 8192];
    let too_large = send(&h, "/v1/images/edits", form(&[("prompt", "p")], &[("image", &big)]), vec![]);
    assert_eq!(too_large.status, 413);
    let text = send(&h, "/v1/images/edits", ("text/plain".to_owned(), b"hi".to_vec()), vec![]);
    assert_eq!(text.status, 415);
    let truncated = send(
        &h,
        "/v1/images/edits",
        ("multipart/form-data; boundary=B".to_owned(), b"--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np".to_vec()),
        vec![],
    );
    assert_eq!((truncated.status, truncated.json()["error"]["code"].as_str()), (400, Some("invalid_multipart")));
    let no_boundary = send(&h, "/v1/images/edits", ("multipart/form-data".to_owned(), b"--B--\r\n".to_vec()), vec![]);
    assert_eq!(no_boundary.status, 400);
    let no_image = send(&h, "/v1/images/edits", form(&[("prompt", "p")], &[]), vec![]);
    assert_eq!((no_image.status, no_image.json()["error"]["param"].as_str()), (400, Some("image")));
    let no_prompt = send(&h, "/v1/images/edits", form(&[], &[("image", &image)]), vec![]);
    assert_eq!((no_prompt.status, no_prompt.json()["error"]["param"].as_str()), (400, Some("prompt")));
    let webhook = send(
        &h,
        "/v1/images/edits",
        form(&[("prompt", "p"), ("model", "gpt-image-1"), ("webhook", r#"{"url":"https://x.example/h","secret":"s"}"#)], &[("image", &image)]),
        vec![],
    );
    assert_eq!(webhook.status, 400);
    assert_eq!(h.serve("GET", "/v1/images/edits", Some(&format!("Bearer {GATEWAY_KEY}")), "", vec![]).status, 405);
}

#[test]
fn the_cache_key_holds_every_image() {
    let h = Harness::long();
    let edit = |shade| {
        let texts = [("prompt", "p"), ("model", "gpt-image-1"), ("cache[type]", "exact_match")];
        send(&h, "/v1/images/edits", form(&texts, &[("image", &png(16, 16, shade))]), vec![answer(200, OK)])
    };
    assert_eq!(edit(1).header("x-imagegate-cache"), Some("MISS"));
    let again =
        send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "gpt-image-1"), ("cache[type]", "exact_match")], &[("image", &png(16, 16, 1))]), vec![]);
    assert_eq!((again.header("x-imagegate-cache"), again.calls.len()), (Some("HIT"), 0));
    assert_eq!(edit(2).header("x-imagegate-cache"), Some("MISS"), "another image, another key");
}

#[test]
fn openrouters_input_references_make_an_edit_and_reach_an_openrouter_upstream_as_references() {
    use base64::Engine as _;
    let config = CONFIG
        .replace(
            r#""providers": ["#,
            r#""providers": [{"id": "or", "kind": "openrouter", "base_url": "http://127.0.0.1:11/api/v1", "api_key_secret": "MOCK_KEY"},"#,
        )
        .replace(r#""models": ["#, r#""models": [{"id": "or/gpt-5-image", "provider": "or", "upstream_model": "openai/gpt-5-image"},"#);
    let h = Harness::with_config(&config);
    let image = png(40, 24, 5);
    let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&image));
    let references = json!([{"type": "image_url", "image_url": {"url": url}}]);
    let pattern = h.openrouter(&json!({"model": "imagegate/test-pattern", "prompt": "p", "input_references": references}).to_string(), vec![]);
    assert_eq!(pattern.status, 200, "{}", String::from_utf8_lossy(&pattern.body));
    assert_eq!(png_size(&decoded(&pattern, 0)), (40, 24), "an edit at the reference's size");

    let answer_body = r#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}]}"#;
    let relayed = h.openrouter(&json!({"model": "or/gpt-5-image", "prompt": "p", "input_references": references}).to_string(), vec![answer(200, answer_body)]);
    assert_eq!(relayed.status, 200, "{}", String::from_utf8_lossy(&relayed.body));
    let sent: serde_json::Value = serde_json::from_slice(&relayed.calls[0].body).unwrap();
    assert_eq!(sent["input_references"][0]["image_url"]["url"].as_str(), Some(url.as_str()));

    let remote = json!([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]);
    let refused = h.openrouter(&json!({"model": "or/gpt-5-image", "prompt": "p", "input_references": remote}).to_string(), vec![]);
    assert_eq!((refused.status, refused.json()["error"]["metadata"]["param"].as_str()), (400, Some("input_references[0].image_url.url")));
}

/// The standard configuration with a Stability, a Google and more BFL and Replicate models.
fn providers_config() -> String {
    CONFIG
        .replace(
            r#""providers": ["#,
            r#""providers": [{"id": "stability", "kind": "stability", "base_url": "http://127.0.0.1:12", "api_key_secret": "MOCK_KEY"},
                {"id": "google", "kind": "google_imagen", "base_url": "http://127.0.0.1:13/v1beta", "api_key_secret": "MOCK_KEY"},"#,
        )
        .replace(
            r#""models": ["#,
            r#""models": [{"id": "stability/ultra", "provider": "stability", "upstream_model": "ultra"},
                {"id": "stability/core", "provider": "stability", "upstream_model": "core"},
                {"id": "stability/sd3", "provider": "stability", "upstream_model": "sd3.5-large"},
                {"id": "google/imagen", "provider": "google", "upstream_model": "imagen-4.0-generate-001"},
                {"id": "bfl/kontext", "provider": "bfl", "upstream_model": "flux-kontext-pro"},
                {"id": "replicate/kontext", "provider": "replicate", "upstream_model": "black-forest-labs/flux-kontext-pro"},
                {"id": "replicate/inpaint", "provider": "replicate", "upstream_model": "stability-ai/stable-diffusion-inpainting", "supports": {"edits": true}},"#,
        )
}

/// The first upstream call of an edit on `model` (its create refused, so nothing is polled).
fn first_call(h: &Harness, model: &str, images: &[(&str, &[u8])]) -> Served {
    send(h, "/v1/images/edits", form(&[("prompt", "a hat"), ("model", model), ("retry[count]", "0")], images), vec![answer(400, r#"{"error":"refused"}"#)])
}

fn json_body(call: &imagegate::upstream::UpstreamRequest) -> serde_json::Value {
    serde_json::from_slice(&call.body).unwrap()
}

#[test]
fn bfl_kontext_gets_the_images_as_input_image_and_other_flux_models_cannot_edit() {
    use base64::Engine as _;
    let h = Harness::with_config(&providers_config());
    let (one, two) = (png(16, 16, 1), png(16, 16, 2));
    let served = first_call(&h, "bfl/kontext", &[("image[]", &one), ("image[]", &two)]);
    let body = json_body(&served.calls[0]);
    assert!(served.calls[0].url.ends_with("/flux-kontext-pro"));
    assert_eq!(body["input_image"].as_str(), Some(base64::engine::general_purpose::STANDARD.encode(&one).as_str()));
    assert_eq!(body["input_image_2"].as_str(), Some(base64::engine::general_purpose::STANDARD.encode(&two).as_str()));
    assert_eq!(body["prompt"], "a hat");
    let masked = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "bfl/kontext")], &[("image", &one), ("mask", &one)]), vec![]);
    assert_eq!((masked.status, masked.json()["error"]["param"].as_str(), masked.calls.len()), (400, Some("mask"), 0));
    let flux = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "flux")], &[("image", &one)]), vec![]);
    assert_eq!((flux.status, flux.json()["error"]["param"].as_str(), flux.calls.len()), (400, Some("image"), 0));
}

#[test]
fn replicate_gets_the_image_as_a_data_url_in_the_models_image_input() {
    use base64::Engine as _;
    let h = Harness::with_config(&providers_config());
    let (image, mask) = (png(16, 16, 1), png(16, 16, 0));
    let url = |bytes: &[u8]| format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    let kontext = json_body(&first_call(&h, "replicate/kontext", &[("image", &image)]).calls[0]);
    assert_eq!((kontext["input"]["input_image"].as_str(), kontext["input"].get("image")), (Some(url(&image).as_str()), None));
    let generic = json_body(&first_call(&h, "replicate/inpaint", &[("image", &image), ("mask", &mask)]).calls[0]);
    assert_eq!((generic["input"]["image"].as_str(), generic["input"]["mask"].as_str()), (Some(url(&image).as_str()), Some(url(&mask).as_str())));
    let two = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "replicate/inpaint")], &[("image[]", &image), ("image[]", &image)]), vec![]);
    assert_eq!((two.status, two.calls.len()), (400, 0));
    // A model not known to take an image would ignore it and bill a generation: refused.
    let unknown = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "replicate/flux")], &[("image", &image)]), vec![]);
    assert_eq!((unknown.status, unknown.json()["error"]["param"].as_str(), unknown.calls.len()), (400, Some("image"), 0));
}

#[test]
fn stability_inpaints_with_a_mask_and_edits_image_to_image_without() {
    let h = Harness::with_config(&providers_config());
    let (image, mask) = (png(64, 64, 1), png(64, 64, 0));
    let ultra = &first_call(&h, "stability/ultra", &[("image", &image)]).calls[0];
    assert!(ultra.url.ends_with("/v2beta/stable-image/generate/ultra"), "{}", ultra.url);
    let sent = sent_form(ultra);
    assert_eq!((field(&sent, "strength"), field(&sent, "image"), field(&sent, "aspect_ratio")), (Some(&b"0.6"[..]), Some(&image[..]), None));
    let sd3 = sent_form(&first_call(&h, "stability/sd3", &[("image", &image)]).calls[0]);
    assert_eq!((field(&sd3, "mode"), field(&sd3, "model")), (Some(&b"image-to-image"[..]), Some(&b"sd3.5-large"[..])));
    let inpaint = &first_call(&h, "stability/core", &[("image", &image), ("mask", &mask)]).calls[0];
    assert!(inpaint.url.ends_with("/v2beta/stable-image/edit/inpaint"), "{}", inpaint.url);
    let sent = sent_form(inpaint);
    assert_eq!((field(&sent, "mask"), field(&sent, "strength"), field(&sent, "model")), (Some(&mask[..]), None, None));
    let core = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "stability/core")], &[("image", &image)]), vec![]);
    assert_eq!((core.status, core.json()["error"]["param"].as_str(), core.calls.len()), (400, Some("image"), 0));
}

#[test]
fn google_imagen_cannot_edit_on_the_gemini_api() {
    let h = Harness::with_config(&providers_config());
    let refused = send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "google/imagen")], &[("image", &png(16, 16, 1))]), vec![]);
    assert_eq!((refused.status, refused.json()["error"]["code"].as_str(), refused.calls.len()), (400, Some("unsupported_parameter"), 0));
}

/// An upstream call as the golden files write it: method, URL, headers (secrets as `<key>`, a
/// form's content type without its boundary) and body: JSON with the image's base64 as
/// `<image base64>`, or a form's fields and files (each file by name, file name, type and SHA-256).
fn described(call: &imagegate::upstream::UpstreamRequest, image: &[u8], mask: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    use sha2::Digest as _;
    let headers: serde_json::Map<String, serde_json::Value> = call
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = match value.expose() {
                v if v.contains("sk-provider-secret-value") => "<key>".to_owned(),
                v if v.starts_with("multipart/form-data") => "multipart/form-data".to_owned(),
                v => v.to_owned(),
            };
            (name.clone(), json!(shown))
        })
        .collect();
    let content_type = headers.get("content-type").and_then(|v| v.as_str()).unwrap_or("");
    let body = if content_type.starts_with("multipart/form-data") {
        let real_type = call.headers.iter().find(|(n, _)| n == "content-type").unwrap().1.expose().to_owned();
        let parts = multipart::parse(&real_type, &call.body).unwrap();
        let fields: serde_json::Map<String, serde_json::Value> =
            parts.iter().filter(|p| !p.is_file()).map(|p| (p.name.clone(), json!(String::from_utf8_lossy(&call.body[p.range.clone()])))).collect();
        let files: Vec<serde_json::Value> = parts
            .iter()
            .filter(|p| p.is_file())
            .map(|p| json!({"name": p.name, "filename": p.filename, "content_type": p.content_type, "sha256": hex::encode(sha2::Sha256::digest(&call.body[p.range.clone()]))}))
            .collect();
        json!({"fields": fields, "files": files})
    } else {
        let text = String::from_utf8(call.body.to_vec())
            .unwrap()
            .replace(&base64::engine::general_purpose::STANDARD.encode(image), "<image base64>")
            .replace(&base64::engine::general_purpose::STANDARD.encode(mask), "<mask base64>");
        serde_json::from_str(&text).unwrap()
    };
    json!({"method": call.method.as_str(), "url": call.url, "headers": headers, "body": body})
}

#[test]
fn each_kinds_edit_request_matches_its_golden_file() {
    let config = providers_config()
        .replace(
            r#""providers": ["#,
            r#""providers": [{"id": "azure", "kind": "azure_openai", "base_url": "https://myres.openai.azure.com", "api_key_secret": "MOCK_KEY"},
            {"id": "together", "kind": "openai_compatible", "base_url": "https://api.together.xyz/v1", "api_key_secret": "MOCK_KEY"},
            {"id": "or", "kind": "openrouter", "api_key_secret": "MOCK_KEY"},"#,
        )
        .replace(
            r#""models": ["#,
            r#""models": [{"id": "azure/gpt-image-1", "provider": "azure", "upstream_model": "gpt-image-1"},
            {"id": "together/kontext", "provider": "together", "upstream_model": "black-forest-labs/FLUX.1-kontext-pro"},
            {"id": "or/image", "provider": "or", "upstream_model": "google/gemini-2.5-flash-image"},"#,
        );
    let h = Harness::with_config(&config);
    let (image, mask) = (png(16, 16, 1), png(16, 16, 0));
    let cases = [
        ("openai", "gpt-image-1", true),
        ("azure_openai", "azure/gpt-image-1", true),
        ("openai_compatible", "together/kontext", false),
        ("openrouter", "or/image", false),
        ("stability", "stability/core", true),
        ("bfl", "bfl/kontext", false),
        ("replicate", "replicate/inpaint", true),
    ];
    for (kind, model, masked) in cases {
        let files: Vec<(&str, &[u8])> = if masked { vec![("image", &image), ("mask", &mask)] } else { vec![("image", &image)] };
        let texts = [("prompt", "add a red hat"), ("model", model), ("n", "1"), ("retry[count]", "0")];
        let served = send(&h, "/v1/images/edits", form(&texts, &files), vec![answer(400, r#"{"error":"refused"}"#)]);
        assert_eq!(served.calls.len(), 1, "{kind}: {}", String::from_utf8_lossy(&served.body));
        let got = described(&served.calls[0], &image, &mask);
        let path = format!("{}/tests/golden/{kind}/edit-request.json", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path} is missing"))).unwrap();
        assert_eq!(got, golden, "{kind}");
    }
}

#[test]
fn an_openai_edit_wants_the_mask_the_size_of_the_image() {
    let h = Harness::long();
    let served =
        send(&h, "/v1/images/edits", form(&[("prompt", "p"), ("model", "gpt-image-1")], &[("image", &png(32, 32, 1)), ("mask", &png(16, 16, 0))]), vec![]);
    assert_eq!((served.status, served.json()["error"]["param"].as_str(), served.calls.len()), (400, Some("mask"), 0));
    assert!(served.json()["error"]["message"].as_str().unwrap().contains("16x16"));
}

#[test]
fn a_fallback_on_the_same_upstream_gets_its_own_form() {
    // Two configured models on one upstream model: the second drops `user`.
    let config =
        CONFIG.replace(r#""models": ["#, r#""models": [{"id": "mock/nouser", "provider": "mock", "upstream_model": "gpt-image-1", "drop_params": ["user"]},"#);
    let h = Harness::with_config(&config);
    let texts = [("prompt", "p"), ("model", "gpt-image-1"), ("user", "alice"), ("retry[count]", "0"), ("fallbacks[][model]", "mock/nouser")];
    let served = send(&h, "/v1/images/edits", form(&texts, &[("image", &png(16, 16, 1))]), vec![answer(500, "{}"), answer(200, OK)]);
    assert_eq!((served.status, served.calls.len()), (200, 2));
    assert_eq!(field(&sent_form(&served.calls[0]), "user"), Some(&b"alice"[..]));
    assert_eq!(field(&sent_form(&served.calls[1]), "user"), None, "the fallback's own form, without the dropped field");
}

#[test]
fn form_names_and_numbers_are_read_strictly() {
    let h = Harness::long();
    let image = png(16, 16, 1);
    // A model named by digits stays text; a weight is a number.
    let texts =
        [("prompt", "p"), ("load_balancer[type]", "weight_based"), ("load_balancer[models][][model]", "gpt-image-1"), ("load_balancer[models][][weight]", "1")];
    let served = send(&h, "/v1/images/edits", form(&texts, &[("image", &image)]), vec![answer(200, OK)]);
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    for name in ["[x]", "retry[count", "retry[count]x"] {
        let refused = send(&h, "/v1/images/edits", form(&[("prompt", "p"), (name, "1")], &[("image", &image)]), vec![]);
        assert_eq!(refused.status, 400, "{name}");
    }
    let mut json_part = form(&[("prompt", "p"), ("model", "gpt-image-1")], &[("image", &image)]);
    let retry = b"--B\r\nContent-Disposition: form-data; name=\"retry\"\r\nContent-Type: application/json\r\n\r\n{\"count\":0}\r\n";
    json_part.1.splice(0..0, retry.iter().copied());
    assert_eq!(send(&h, "/v1/images/edits", json_part, vec![answer(200, OK)]).status, 200, "a JSON part with its content type is a field");
}

#[test]
fn an_image_larger_than_a_part_may_be_is_a_400_naming_it() {
    let h = Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 1000, "max_edit_body_bytes": 41943040"#));
    let mut huge = png(16, 16, 1);
    huge.resize(imagegate::inputs::MAX_IMAGE_BYTES + 1, 0);
    let served = send(&h, "/v1/images/edits", form(&[("prompt", "p")], &[("image", &huge)]), vec![]);
    assert_eq!(
        (served.status, served.json()["error"]["param"].as_str(), served.json()["error"]["code"].as_str()),
        (400, Some("image"), Some("image_too_large"))
    );
}

#[test]
fn a_streamed_edit_is_relayed_as_image_edit_events() {
    let h = Harness::new();
    let texts = [("prompt", "a hat"), ("model", "gpt-image-1"), ("stream", "true"), ("partial_images", "1")];
    let partial = imagegate::sse::write("image_edit.partial_image", r#"{"type":"image_edit.partial_image","b64_json":"UA==","partial_image_index":0}"#);
    let completed =
        imagegate::sse::write("image_edit.completed", r#"{"type":"image_edit.completed","b64_json":"RklOQUw=","usage":{"input_tokens":5,"output_tokens":9}}"#);
    let served = send(&h, "/v1/images/edits", form(&texts, &[("image", &png(16, 16, 1))]), vec![event_stream(vec![partial.clone(), completed.clone()])]);
    assert_eq!((served.status, served.header("content-type")), (200, Some("text/event-stream; charset=utf-8")), "{}", String::from_utf8_lossy(&served.body));
    assert_eq!(served.body, [partial, completed].concat());
    let sent = sent_form(&served.calls[0]);
    assert_eq!((field(&sent, "stream"), field(&sent, "partial_images")), (Some(&b"true"[..]), Some(&b"1"[..])), "the upstream is asked to stream");
    // A whole answer to a streamed edit is written as image_edit events.
    let whole = send(&h, "/v1/images/edits", form(&texts, &[("image", &png(16, 16, 1))]), vec![answer(200, OK)]);
    assert!(String::from_utf8_lossy(&whole.body).starts_with("event: image_edit.completed\n"), "{}", String::from_utf8_lossy(&whole.body));
}
