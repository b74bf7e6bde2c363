//! The respond stage for answers the gateway writes itself: generated images in the caller's
//! shape, OpenAI's (`/v1/images/generations`) or OpenRouter's (`/api/v1/images`).

use serde::Serialize;

use crate::providers::{Image, ImageData};

/// The answer shape the caller speaks, decided by the route it called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"created","data":[{"b64_json"|"url","revised_prompt"}]}`; errors in OpenAI's envelope.
    OpenAi,
    /// `{"created","data":[{"b64_json","media_type"}],"usage":{…,"cost"}}`; errors in
    /// OpenRouter's envelope `{"error":{"code","message","metadata"}}`.
    OpenRouter,
}

#[derive(Serialize)]
struct Answer<'a> {
    created: u64,
    data: Vec<Entry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_prompt: Option<&'a str>,
}

/// OpenRouter's usage block: the token counts its clients require (image APIs report none
/// here, so zero) and the cost.
#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cost: f64,
}

/// The answer body for `images` in `shape`. In OpenRouter's shape every image must already be
/// base64 (its clients read only `b64_json`); `cost` goes into `usage.cost` there.
pub fn render(shape: Shape, created: u64, images: &[Image], cost: Option<f64>) -> Vec<u8> {
    let data = images
        .iter()
        .map(|image| {
            let (b64_json, url) = match &image.data {
                ImageData::Base64(b64) => (Some(b64.as_str()), None),
                ImageData::Url(url) => (None, Some(url.as_str())),
            };
            match shape {
                Shape::OpenAi => Entry { b64_json, url, media_type: None, revised_prompt: image.revised_prompt.as_deref() },
                Shape::OpenRouter => Entry { b64_json, url: None, media_type: image.media_type.as_deref(), revised_prompt: None },
            }
        })
        .collect();
    let usage = match shape {
        Shape::OpenRouter => cost.map(|cost| Usage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost }),
        Shape::OpenAi => None,
    };
    serde_json::to_vec(&Answer { created, data, usage }).expect("the answer is always serialisable")
}

/// An OpenRouter-shaped answer from [`render`] with its `usage.cost` set to 0 (a cache hit costs
/// nothing), rewritten in place: `usage` is the answer's last field, and nothing before it can
/// contain its name (base64 and media types have no quotes).
pub fn with_zero_cost(mut body: Vec<u8>) -> Vec<u8> {
    const USAGE: &[u8] = b",\"usage\":";
    match body.windows(USAGE.len()).rposition(|window| window == USAGE) {
        Some(at) => body.truncate(at),
        // Rendered without a cost: drop the closing brace.
        None => body.truncate(body.len().saturating_sub(1)),
    }
    body.extend_from_slice(USAGE);
    let usage = Usage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost: 0.0 };
    body.extend_from_slice(&serde_json::to_vec(&usage).expect("usage always serialises"));
    body.push(b'}');
    body
}

/// Adds `"action_id"` to an answer `body` rendered here (a JSON object), as its first field.
pub fn name_action(body: &mut Vec<u8>, action_id: &str) {
    if body.first() != Some(&b'{') {
        return;
    }
    let empty = body.get(1) == Some(&b'}');
    let field = format!("\"action_id\":{}{}", serde_json::Value::from(action_id), if empty { "" } else { "," });
    body.splice(1..1, field.into_bytes());
}

/// `image` as a `data:` URL (for a client that asked for URLs from a provider that sent bytes).
pub fn data_url(b64: &str, media_type: Option<&str>) -> String {
    format!("data:{};base64,{b64}", media_type.unwrap_or("image/png"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn images() -> Vec<Image> {
        vec![
            Image { data: ImageData::Base64("aGk=".into()), media_type: Some("image/png".into()), revised_prompt: Some("r".into()) },
            Image { data: ImageData::Url("https://x/y.png".into()), media_type: None, revised_prompt: None },
        ]
    }

    #[test]
    fn openai_shape_has_b64_or_url_and_revised_prompt_but_no_usage() {
        let body: Value = serde_json::from_slice(&render(Shape::OpenAi, 7, &images(), Some(0.04))).unwrap();
        assert_eq!(body, json!({"created": 7, "data": [{"b64_json": "aGk=", "revised_prompt": "r"}, {"url": "https://x/y.png"}]}));
    }

    #[test]
    fn openrouter_shape_has_media_type_and_usage_cost() {
        let body: Value = serde_json::from_slice(&render(Shape::OpenRouter, 7, &images()[..1], Some(0.04))).unwrap();
        assert_eq!(
            body,
            json!({"created": 7, "data": [{"b64_json": "aGk=", "media_type": "image/png"}],
                   "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.04}})
        );
        let without: Value = serde_json::from_slice(&render(Shape::OpenRouter, 7, &images()[..1], None)).unwrap();
        assert!(without.get("usage").is_none());
    }

    #[test]
    fn an_answer_names_its_action_first() {
        let mut body = render(Shape::OpenAi, 7, &images()[..1], None);
        name_action(&mut body, "act_1");
        let named: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(named, json!({"action_id": "act_1", "created": 7, "data": [{"b64_json": "aGk=", "revised_prompt": "r"}]}));
        let mut empty = b"{}".to_vec();
        name_action(&mut empty, "act_2");
        assert_eq!(empty, br#"{"action_id":"act_2"}"#);
    }

    #[test]
    fn a_hit_rewrites_only_the_cost() {
        for cost in [Some(0.04), None] {
            let rendered = render(Shape::OpenRouter, 7, &images()[..1], cost);
            let hit: Value = serde_json::from_slice(&with_zero_cost(rendered)).unwrap();
            assert_eq!(
                hit,
                json!({"created": 7, "data": [{"b64_json": "aGk=", "media_type": "image/png"}],
                       "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}})
            );
        }
    }
}
