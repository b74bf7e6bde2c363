//! An action in OpenRouter's generation shape: what `GET /api/v1/generation?id=` answers, so
//! that `@openrouter/sdk`'s `generations.getGeneration` reads the gateway's records. Every field
//! the SDK requires is present; what the gateway does not know (tokens, apps, regions it does not
//! track) is `null`, as OpenRouter sends it for image generations.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use url::form_urlencoded;

use crate::action::Action;
use crate::error::GatewayError;

/// The id asked for in `GET /api/v1/generation`'s query: its one parameter, `id`.
pub fn requested_id(query: Option<&str>) -> Result<String, GatewayError> {
    let mut id = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "id" if id.is_none() && !value.is_empty() => id = Some(value.into_owned()),
            "id" => return Err(GatewayError::invalid_param("id", "'id' must be given once, and not empty.")),
            other => return Err(GatewayError::invalid_param(other, format!("Unknown query parameter '{other}'. GET /api/v1/generation takes id."))),
        }
    }
    id.ok_or_else(|| GatewayError::invalid_param("id", "GET /api/v1/generation needs the query parameter 'id' (an action id, act_…)."))
}

/// `{"data": {…}}`: `action` as OpenRouter describes a generation.
pub fn body(action: &Action) -> Vec<u8> {
    serde_json::to_vec(&Envelope { data: Generation::of(action) }).expect("a generation always serialises")
}

#[derive(Serialize)]
struct Envelope<'a> {
    data: Generation<'a>,
}

/// One provider attempt, as OpenRouter lists them in `provider_responses`.
#[derive(Serialize)]
struct ProviderResponse<'a> {
    model_permaslug: &'a str,
    status: u16,
    latency: u64,
}

#[derive(Serialize)]
struct Generation<'a> {
    id: &'a str,
    request_id: &'a str,
    upstream_id: Option<&'a str>,
    total_cost: f64,
    usage: f64,
    upstream_inference_cost: Option<f64>,
    cache_discount: Option<f64>,
    created_at: String,
    model: &'a str,
    api_type: &'static str,
    origin: &'static str,
    data_region: &'static str,
    is_byok: bool,
    /// Milliseconds from the request's start to its answer.
    latency: u64,
    /// Milliseconds the answering (or last) attempt took.
    generation_time: Option<u64>,
    moderation_latency: Option<u64>,
    provider_name: Option<&'a str>,
    provider_responses: Vec<ProviderResponse<'a>>,
    finish_reason: &'a str,
    native_finish_reason: Option<&'a str>,
    cancelled: bool,
    streamed: bool,
    response_cache_source_id: Option<&'a str>,
    external_user: Option<&'a str>,
    app_id: Option<u64>,
    http_referer: Option<&'a str>,
    user_agent: Option<&'a str>,
    preset_id: Option<&'a str>,
    router: Option<&'a str>,
    service_tier: Option<&'a str>,
    session_id: Option<&'a str>,
    workspace_id: Option<&'a str>,
    web_search_engine: Option<&'a str>,
    tokens_prompt: Option<u64>,
    tokens_completion: Option<u64>,
    native_tokens_prompt: Option<u64>,
    native_tokens_completion: Option<u64>,
    native_tokens_completion_images: Option<u64>,
    native_tokens_reasoning: Option<u64>,
    native_tokens_cached: Option<u64>,
    num_media_prompt: Option<u64>,
    num_media_completion: Option<u64>,
    num_input_audio_prompt: Option<u64>,
    num_search_results: Option<u64>,
    num_fetches: Option<u64>,
}

impl<'a> Generation<'a> {
    fn of(action: &'a Action) -> Self {
        let last = action.attempts.last();
        let cost = action.cost_usd.unwrap_or(0.0);
        Generation {
            id: &action.id,
            request_id: &action.request_id,
            upstream_id: None,
            total_cost: cost,
            usage: cost,
            upstream_inference_cost: None,
            cache_discount: None,
            created_at: humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(action.created_at)).to_string(),
            model: action.model.as_deref().unwrap_or(""),
            api_type: "image",
            origin: "imagegate",
            data_region: "global",
            is_byok: false,
            latency: action.latency_ms,
            generation_time: last.map(|attempt| attempt.ms),
            moderation_latency: None,
            provider_name: last.map(|attempt| attempt.provider.as_str()),
            provider_responses: action.attempts.iter().map(|a| ProviderResponse { model_permaslug: &a.model, status: a.status, latency: a.ms }).collect(),
            finish_reason: &action.status,
            native_finish_reason: None,
            cancelled: false,
            streamed: false,
            response_cache_source_id: (action.cache.as_deref() == Some("HIT")).then_some(action.id.as_str()),
            external_user: action.identity.as_deref(),
            app_id: None,
            http_referer: None,
            user_agent: None,
            preset_id: None,
            router: None,
            service_tier: None,
            session_id: None,
            workspace_id: None,
            web_search_engine: None,
            tokens_prompt: None,
            tokens_completion: None,
            native_tokens_prompt: None,
            native_tokens_completion: None,
            native_tokens_completion_images: None,
            native_tokens_reasoning: None,
            native_tokens_cached: None,
            num_media_prompt: None,
            num_media_completion: None,
            num_input_audio_prompt: None,
            num_search_results: None,
            num_fetches: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::AttemptRecord;
    use serde_json::Value;

    #[test]
    fn an_action_reads_as_an_openrouter_image_generation() {
        let attempt = |status, ms| AttemptRecord { model: "mock/gpt-image-1".into(), provider: "mock".into(), status, ms };
        let action = Action {
            id: "act_1".into(),
            request_id: "req_1".into(),
            model: Some("mock/gpt-image-1".into()),
            status: "success".into(),
            attempts: vec![attempt(429, 30), attempt(200, 900)],
            cost_usd: Some(0.04),
            created_at: 1_700_000_000_123,
            latency_ms: 1200,
            identity: Some("user-7".into()),
            ..Action::default()
        };
        let generation: Value = serde_json::from_slice(&body(&action)).unwrap();
        let data = &generation["data"];
        assert_eq!((data["id"].as_str(), data["api_type"].as_str(), data["model"].as_str()), (Some("act_1"), Some("image"), Some("mock/gpt-image-1")));
        assert_eq!((data["total_cost"].as_f64(), data["usage"].as_f64()), (Some(0.04), Some(0.04)));
        assert_eq!(data["created_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!((data["latency"].as_u64(), data["generation_time"].as_u64(), data["provider_name"].as_str()), (Some(1200), Some(900), Some("mock")));
        assert_eq!(data["provider_responses"][0]["status"], 429);
        assert_eq!((data["external_user"].as_str(), data["tokens_prompt"].clone()), (Some("user-7"), Value::Null));
    }

    #[test]
    fn the_query_takes_exactly_one_id() {
        assert_eq!(requested_id(Some("id=act_1")).unwrap(), "act_1");
        for (query, param) in [(None, "id"), (Some("id="), "id"), (Some("id=a&id=b"), "id"), (Some("id=a&x=1"), "x")] {
            assert_eq!(requested_id(query).unwrap_err().param.as_deref(), Some(param), "{query:?}");
        }
    }
}
