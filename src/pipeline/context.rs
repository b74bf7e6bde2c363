//! One typed record per request, filled by the stages as they learn things (who called, which
//! attempts were made, what the answer cost), and rendered once at the end: into the response's
//! `x-imagegate-*` headers and into the log line. Nothing is read back from a header, and the
//! cost is a number until it is rendered.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::action::ImageCount;
use crate::cache::entry::Store;
use crate::clock::Deadline;
use crate::error::GatewayError;
use crate::http::{Reply, ReplyBody, RequestHead};
use crate::log::RequestLog;
use crate::pricing;
use crate::state::{Action, AttemptRecord};

use super::files::Kept;

/// What the response cache did for a cache-enabled request (`x-imagegate-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the cache, stored `age_secs` ago.
    Hit { age_secs: u64 },
    /// Not found: generated, and stored.
    Miss,
    /// The request skipped the lookup: generated, and stored.
    Refresh,
    /// Neither read nor stored, for the reason given (in the log).
    Bypass(&'static str),
}

impl CacheStatus {
    /// The `x-imagegate-cache` value.
    pub fn name(self) -> &'static str {
        match self {
            CacheStatus::Hit { .. } => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Refresh => "REFRESH",
            CacheStatus::Bypass(_) => "BYPASS",
        }
    }
}

/// What the stages know about one request.
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub started_ms: u64,
    /// When the whole request must be answered.
    pub deadline: Deadline,
    /// The label of the gateway key that authenticated the request.
    pub key: Option<String>,
    /// The request's `name`, `orq.identity.id` and `metadata`, as sent.
    pub name: Option<String>,
    pub identity: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// The prompt, only when the deployment logs prompts.
    pub prompt: Option<String>,
    /// Every attempt, in order; the last is the one that answered (or failed last).
    pub attempts: Vec<AttemptRecord>,
    /// What the answer cost, in US dollars, when known.
    pub cost_usd: Option<f64>,
    /// `(delivered, asked)` when an answer has fewer images than the request asked for.
    pub short_of_images: Option<(usize, u8)>,
    pub cache: Option<CacheStatus>,
    /// Whether a cache-enabled success may be stored, or why not.
    pub cache_entry: Option<Result<(), &'static str>>,
    /// What the edge stores in the cache after the answer.
    pub store: Option<Store>,
    /// The cache key of the generation this request leads for identical waiting requests.
    pub leading: Option<String>,
    /// Whether the answer is another identical request's (`x-imagegate-coalesced`).
    pub coalesced: bool,
    /// Whether the request is a generation (recorded in the history).
    pub generation: bool,
    /// Whether the deployment records actions (the answer then names its action).
    pub recorded: bool,
    /// How many images the request asked for, once it was read.
    pub asked_images: Option<u8>,
    /// The request's fields for its action (only where actions are recorded).
    pub request_fields: Option<Map<String, Value>>,
    /// The answer's images, kept in the file store (only where files are kept).
    pub kept: Option<Kept>,
    /// The id of the route the request was made through.
    pub route_id: Option<String>,
    /// When the first attempt began (Unix milliseconds).
    pub started_at: Option<u64>,
    /// Whether the generation was handed to the runner, which records its action.
    pub handed_off: bool,
    /// The admitted generation whose counters this request settles when it ends.
    pub ticket: Option<Ticket>,
    /// Why the model that answered has no price (its cost is unknown, never 0), for the log.
    pub unpriced: Option<String>,
    /// What went amiss with the key's counters (a settlement above its hold, or none), for the log.
    pub budget_note: Option<String>,
    /// For a provider's stream being relayed: what pricing and keeping its images need once it
    /// has ended.
    pub streamed: Option<Box<StreamTerms>>,
}

/// What a relayed stream's end is priced and kept with.
#[derive(Debug)]
pub struct StreamTerms {
    /// The model that answered.
    pub model_id: String,
    /// The request as it went to that model (without its input images).
    pub request: crate::request::ImageRequest,
    /// Where its final images are kept: request id, owner, base URL.
    pub filing: Option<(String, String, String)>,
}

/// What a request's headers and its log line both show, rendered once.
struct Shown {
    trail: Vec<String>,
    cost: Option<String>,
    images: Option<String>,
}

/// An admitted generation of a managed key: settled, when it ends, with what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The key's hash.
    pub key: String,
    /// The request's id.
    pub id: String,
}

/// `path` as the log keeps it: a key pasted where the key API wants a hash is left out.
fn logged_path(path: &str) -> String {
    match path.strip_prefix("/api/v1/keys/") {
        Some(rest) if !crate::keys::is_hash(rest) => "/api/v1/keys/[not a hash]".to_owned(),
        _ => path.to_owned(),
    }
}

/// The id of the action a request with `request_id` is recorded as: `act_` and its digits.
pub fn action_id(request_id: &str) -> String {
    format!("act_{}", request_id.strip_prefix("req_").unwrap_or(request_id))
}

impl RequestContext {
    /// The context of a request that started at `started_ms` with `deadline_ms` to run.
    pub fn new(request_id: String, head: &RequestHead, started_ms: u64, deadline_ms: u64) -> Self {
        RequestContext {
            request_id,
            method: head.method.clone(),
            path: logged_path(&head.path),
            started_ms,
            deadline: Deadline::after(started_ms, deadline_ms),
            key: None,
            name: None,
            identity: None,
            metadata: None,
            prompt: None,
            attempts: Vec::new(),
            cost_usd: None,
            short_of_images: None,
            cache: None,
            cache_entry: None,
            store: None,
            leading: None,
            coalesced: false,
            generation: false,
            recorded: false,
            asked_images: None,
            request_fields: None,
            kept: None,
            route_id: None,
            started_at: None,
            handed_off: false,
            ticket: None,
            unpriced: None,
            budget_note: None,
            streamed: None,
        }
    }

    /// The attempts as `x-imagegate-attempts` writes them: `model;status;ms, …`.
    pub fn trail(&self) -> Vec<String> {
        self.attempts.iter().map(|a| format!("{};{};{}", a.model, a.status, a.ms)).collect()
    }

    /// What the headers and the log line both show, rendered once.
    fn shown(&self) -> Shown {
        Shown { trail: self.trail(), cost: self.cost_usd.map(pricing::header_value), images: self.short_of_images.map(|(got, asked)| format!("{got}/{asked}")) }
    }

    /// Renders what was learnt into `reply`'s headers, and returns the log line's record for a
    /// reply that failed with `error` (if it did), at `now_ms`, and for a generation its action.
    pub fn finish<B>(self, reply: &mut Reply<B>, error: Option<&GatewayError>, now_ms: u64) -> (RequestLog, Option<Action>) {
        let shown = self.shown();
        self.put_headers(&shown, reply, now_ms);
        let relayed = matches!(reply.body, ReplyBody::Relay(_));
        self.record_shown(shown, reply.status, error, relayed, now_ms)
    }

    /// Renders what is known by `now_ms` into `reply`'s headers (for a relayed stream, when its
    /// first events are ready: its cost is known only at its end, in the log and the action).
    pub fn write_headers<B>(&self, reply: &mut Reply<B>, now_ms: u64) {
        self.put_headers(&self.shown(), reply, now_ms);
    }

    fn put_headers<B>(&self, shown: &Shown, reply: &mut Reply<B>, now_ms: u64) {
        if !shown.trail.is_empty() {
            reply.headers.push(("x-imagegate-attempts", shown.trail.join(", ")));
        }
        if let Some(last) = self.attempts.last() {
            reply.headers.push(("x-imagegate-model", last.model.clone()));
        }
        if let Some(cost) = &shown.cost {
            reply.headers.push(("x-imagegate-cost-usd", cost.clone()));
        }
        if let Some(images) = &shown.images {
            reply.headers.push(("x-imagegate-images", images.clone()));
        }
        if let Some(cache) = self.cache {
            reply.headers.push(("x-imagegate-cache", cache.name().to_owned()));
            if let CacheStatus::Hit { age_secs } = cache {
                reply.headers.push(("age", age_secs.to_string()));
            }
        }
        if self.coalesced {
            reply.headers.push(("x-imagegate-coalesced", "true".to_owned()));
        }
        if self.generation && self.recorded {
            reply.headers.push(("x-imagegate-action-id", action_id(&self.request_id)));
        }
        reply.headers.push(("x-request-id", self.request_id.clone()));
        reply.headers.push(("openai-processing-ms", now_ms.saturating_sub(self.started_ms).to_string()));
    }

    /// The log line's record and, for a generation, its action: answered with `status`, failed
    /// with `error` (a stream may fail after its 200), at `now_ms`. With `relayed`, how many
    /// images a success has is not known (they went on unread).
    pub fn record(self, status: u16, error: Option<&GatewayError>, relayed: bool, now_ms: u64) -> (RequestLog, Option<Action>) {
        let shown = self.shown();
        self.record_shown(shown, status, error, relayed, now_ms)
    }

    fn record_shown(self, shown: Shown, status: u16, error: Option<&GatewayError>, relayed: bool, now_ms: u64) -> (RequestLog, Option<Action>) {
        let Shown { trail, cost, images } = shown;
        let last = self.attempts.last();
        let latency_ms = now_ms.saturating_sub(self.started_ms);
        let action = (self.generation && self.recorded && !self.handed_off).then(|| Action {
            id: action_id(&self.request_id),
            object: "action".to_owned(),
            request_id: self.request_id.clone(),
            key: self.key.clone(),
            route_id: self.route_id.clone(),
            model: last.map(|a| a.model.clone()),
            status: match (status, error) {
                (_, Some(e)) if e.kind == crate::error::ErrorKind::UpstreamTimeout => "timed-out",
                (200..=299, None) => "success",
                _ => "error",
            }
            .to_owned(),
            http_status: status,
            upstream_status_code: last.map(|a| a.status),
            attempts: self.attempts.clone(),
            cost_usd: self.cost_usd,
            cache: self.cache.map(|c| c.name().to_owned()),
            created_at: self.started_ms,
            started_at: self.started_at,
            finished_at: Some(now_ms),
            latency_ms,
            name: self.name.clone(),
            identity: self.identity.clone(),
            metadata: self.metadata.clone(),
            images: self.asked_images.map(|asked| ImageCount {
                got: match (status, self.short_of_images, relayed) {
                    (200..=299, Some((got, _)), _) => Some(got),
                    (200..=299, None, true) => None,
                    (200..=299, None, false) => Some(usize::from(asked)),
                    _ => Some(0),
                },
                asked,
            }),
            error: error.map(|e| e.message.clone()),
            request: self.request_fields,
            response: self.kept.as_ref().filter(|kept| !kept.response.data.is_empty()).map(|kept| kept.response.clone()),
        });
        let log = RequestLog {
            request_id: self.request_id,
            method: self.method,
            path: self.path,
            status,
            latency_ms,
            key: self.key,
            model: last.map(|a| a.model.clone()),
            provider: last.map(|a| a.provider.clone()),
            attempts: trail.len() as u32,
            trail,
            cost_usd: cost,
            images,
            error_type: error.map(|e| e.kind.error_type()),
            error: error.map(|e| e.message.clone()),
            error_detail: error.and_then(|e| e.log_detail.as_deref().map(str::to_owned)),
            prompt: self.prompt,
            name: self.name,
            identity: self.identity,
            metadata: self.metadata,
            cache: self.cache.map(CacheStatus::name),
            ran_apart: self.handed_off,
            unpriced: self.unpriced,
            budget: self.budget_note,
            files_error: self.kept.and_then(|kept| kept.failure),
            cache_bypass: match self.cache {
                Some(CacheStatus::Bypass(reason)) => Some(reason),
                _ => None,
            },
            client_left: false,
        };
        (log, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn headers_and_the_log_line_are_rendered_from_the_same_record() {
        let head = RequestHead { method: "POST".into(), path: "/v1/images/generations".into(), ..RequestHead::default() };
        let mut cx = RequestContext::new("req_1".into(), &head, 1_000, 150_000);
        cx.key = Some("prod".into());
        cx.attempts.push(AttemptRecord { model: "a/m".into(), provider: "a".into(), status: 429, ms: 12 });
        cx.attempts.push(AttemptRecord { model: "b/m".into(), provider: "b".into(), status: 200, ms: 900 });
        cx.cost_usd = Some(0.08);
        cx.short_of_images = Some((1, 2));
        let mut reply: Reply<()> = Reply::json(200, b"{}".to_vec());
        cx.generation = true;
        cx.recorded = true;
        let (log, action) = cx.finish(&mut reply, None, 1_950);
        let action = action.expect("a generation is recorded");
        assert_eq!((action.model.as_deref(), action.attempts.len(), action.cost_usd, action.latency_ms), (Some("b/m"), 2, Some(0.08), 950));
        assert_eq!((action.id.as_str(), action.status.as_str(), action.upstream_status_code), ("act_1", "success", Some(200)));
        assert_eq!(reply.header("x-imagegate-attempts"), Some("a/m;429;12, b/m;200;900"));
        assert_eq!(reply.header("x-imagegate-model"), Some("b/m"));
        assert_eq!(reply.header("x-imagegate-cost-usd"), Some("0.08"));
        assert_eq!(reply.header("x-imagegate-images"), Some("1/2"));
        assert_eq!(reply.header("openai-processing-ms"), Some("950"));
        assert_eq!((log.attempts, log.model.as_deref(), log.provider.as_deref()), (2, Some("b/m"), Some("b")));
        assert_eq!((log.cost_usd.as_deref(), log.images.as_deref(), log.latency_ms), (Some("0.08"), Some("1/2"), 950));
        let error = GatewayError::new(ErrorKind::Internal, "no key").with_log_detail("the secret 'K' is not set");
        let mut failed: Reply<()> = Reply::error(&error);
        let (log, action) = RequestContext::new("req_2".into(), &head, 0, 1).finish(&mut failed, Some(&error), 5);
        assert!(action.is_none(), "not a generation");
        assert_eq!((log.error.as_deref(), log.error_detail.as_deref()), (Some("no key"), Some("the secret 'K' is not set")));
        assert!(failed.header("x-imagegate-attempts").is_none());
    }
}
