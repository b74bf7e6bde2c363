//! The record of one generation (an action): what the history keeps, `GET /v1/actions/{id}`
//! answers and `GET /v1/actions` lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::files::StoredImage;
use crate::request::ImageRequest;

/// One attempt on one target, as `x-imagegate-attempts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The model's public id.
    pub model: String,
    /// The provider's id.
    pub provider: String,
    /// The upstream's status; 524 for a timeout, 502 for a failed connection or an unusable 200.
    pub status: u16,
    /// How long the attempt took.
    pub ms: u64,
}

/// One generation, as the history keeps it and `GET /v1/actions/{id}` answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// `act_` and 32 hex digits (those of the request's id).
    pub id: String,
    pub object: String,
    pub request_id: String,
    /// The label of the gateway key that asked; only that key may read the action.
    pub key: Option<String>,
    /// The id of the route the generation was made through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id: Option<String>,
    /// The model that answered, or was tried last.
    pub model: Option<String>,
    /// `success`, `error` or `timed-out`.
    pub status: String,
    /// The status the client got.
    pub http_status: u16,
    /// The last attempt's upstream status.
    pub upstream_status_code: Option<u16>,
    pub attempts: Vec<AttemptRecord>,
    pub cost_usd: Option<f64>,
    /// `HIT`, `MISS`, `REFRESH` or `BYPASS` for a cache-enabled request.
    pub cache: Option<String>,
    /// Unix milliseconds: when the request came, when its first attempt began (absent when
    /// none did: refused, a cache hit), when it was answered (`null` while it runs).
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    pub latency_ms: u64,
    pub name: Option<String>,
    pub identity: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// What went wrong, for an action that did not succeed: the message its client was (or
    /// would have been) told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many images came of how many asked, once the request was read.
    pub images: Option<ImageCount>,
    /// The request's image fields as the gateway read them, with the model asked for; the
    /// prompt and negative prompt only where the deployment logs prompts.
    pub request: Option<Map<String, Value>>,
    /// The answer, with its images as references to stored files (never inlined); absent when
    /// nothing was stored (a failure, a cache hit, a deployment without a file store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ActionResponse>,
}

/// An action's answer: OpenAI's images answer, its images in the gateway's file store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResponse {
    /// Unix seconds, as in the answer the client got.
    pub created: u64,
    pub data: Vec<StoredImage>,
}

/// Images delivered and asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCount {
    /// `None` for an upstream answer relayed as it streamed: the gateway checked that it holds
    /// an image, and did not count them.
    pub got: Option<usize>,
    pub asked: u8,
}

/// The record's `request`: `request`'s fields, the prompts only when `with_prompts`.
pub fn request_fields(request: &ImageRequest, with_prompts: bool) -> Map<String, Value> {
    let Ok(Value::Object(mut fields)) = serde_json::to_value(request) else { unreachable!("an image request serialises to an object") };
    if !with_prompts {
        fields.remove("prompt");
        fields.remove("negative_prompt");
    }
    if let Some(model) = &request.model {
        fields.insert("model".to_owned(), Value::String(model.clone()));
    }
    if let Some(inputs) = &request.inputs {
        // What was sent in, never its bytes.
        fields.insert("operation".to_owned(), Value::from(inputs.operation.path()));
        if let Value::Object(described) = inputs.describe() {
            fields.extend(described);
        }
        if let Some(fidelity) = &inputs.input_fidelity {
            fields.insert("input_fidelity".to_owned(), Value::from(fidelity.as_str()));
        }
    }
    fields
}
