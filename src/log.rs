//! The one structured log line written per request.

use serde::Serialize;

/// What happened to one request. Never holds a key; holds the prompt only when configured.
#[derive(Debug, Default, Serialize)]
pub struct RequestLog {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: u64,
    /// The label of the gateway key used, not the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The model that answered (the last one tried when none succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Attempts made (a local provider's render counts as one).
    pub attempts: u32,
    /// Each attempt as `model;status;ms`, in order (also the `x-imagegate-attempts` header).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trail: Vec<String>,
    /// The answer's cost in US dollars, as in `x-imagegate-cost-usd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    /// `delivered/asked` when the answer has fewer images than the request asked for, as in
    /// `x-imagegate-images`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the operator needs to know that the client was not told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The request's `name`, `orq.identity.id` and `metadata`, as the client sent them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// What the response cache did (`HIT`, `MISS`, `REFRESH`, `BYPASS`), for cache-enabled requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// Whether the generation ran in its action's place (the runner), which logs its own line.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ran_apart: bool,
    /// Why the answer's model has no price: its cost is unknown (never counted as 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<String>,
    /// What went amiss with a managed key's counters (a cost above its hold, a settlement lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// Why an image the client got as a URL could not be stored (it got the image inline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_error: Option<String>,
    /// Why the cache was bypassed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_bypass: Option<&'static str>,
    /// A relayed stream's client went away before its end (the gateway read on, for a while).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_left: bool,
}

impl RequestLog {
    /// The JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("the log record is always serialisable")
    }
}
