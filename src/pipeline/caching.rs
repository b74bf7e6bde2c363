//! The cache stage: for a request whose policy turns the exact-match cache on, the answer is
//! looked up before the fallback loop, and a complete success is handed to the edge to store
//! after the answer has gone (see [`crate::cache`] for the key and the directives).
//!
//! A stored entry is the answer exactly as its client got it (the shape is in the key): a hit is
//! served as stored, with its original `created`, and in OpenRouter's shape with a cost of 0. Only complete successes are stored: never an
//! error, an answer with fewer images than asked, or one whose images are URLs (they expire).

use super::context::{CacheStatus, RequestContext};
use super::Gateway;
use crate::answer::{self, Shape};
use crate::cache::entry::{FlightEnd, Store, MAX_ENTRY_BYTES};
use crate::cache::key::{key, Targets};
use crate::cache::Directive;
use crate::config::ModelConfig;
use crate::http::{Reply, RequestHead};
use crate::policy::Policy;
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::state::Claim;
use crate::upstream::Upstream;

/// How a cache-enabled request uses the cache.
pub(super) struct CachePlan {
    pub key: String,
    pub ttl_secs: u64,
    pub directive: Directive,
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// How `request` uses the cache: `None` when its policy leaves the cache off, when it asked
    /// for `no-store`, or when the deployment has no store (the last two say BYPASS).
    pub(super) fn cache_plan(
        &self,
        head: &RequestHead,
        shape: Shape,
        request: &ImageRequest,
        policy: &Policy,
        model: &ModelConfig,
        cx: &mut RequestContext,
    ) -> Option<CachePlan> {
        let ttl_secs = policy.cache_ttl_secs?;
        let directive = Directive::of(head.imagegate_cache.as_deref(), head.cache_control.as_deref());
        if directive == Directive::NoStore {
            cx.cache = Some(CacheStatus::Bypass("no-store"));
            return None;
        }
        if !self.cache.available() {
            cx.cache = Some(CacheStatus::Bypass("store unavailable"));
            return None;
        }
        let resolved = |name: &str| self.config.resolve_model(Some(name)).map_or("", |(m, _)| m.id.as_str());
        let targets = Targets {
            model: &model.id,
            balanced: policy.load_balancer.iter().map(|(name, weight)| (resolved(name), *weight)).collect(),
            fallbacks: policy.fallbacks.iter().map(|name| resolved(name)).collect(),
        };
        let key = key(cx.key.as_deref().unwrap_or(""), &targets, shape, request);
        Some(CachePlan { key, ttl_secs, directive })
    }

    /// The stored answer for `plan`, in `shape`, when there is one and the request did not ask
    /// to refresh it: a hit costs nothing and makes no upstream call.
    pub(super) async fn lookup(&self, plan: &CachePlan, shape: Shape, cx: &mut RequestContext) -> Option<Reply<U::Body>> {
        if plan.directive == Directive::Refresh {
            cx.cache = Some(CacheStatus::Refresh);
            return None;
        }
        let now_ms = self.clock.now_ms();
        cx.cache = Some(CacheStatus::Miss);
        match self.cache.get(&plan.key, now_ms).await {
            Some(stored) => self.served(stored.value, stored.stored_ms, shape, cx),
            None => self.wait_or_lead(plan, shape, cx).await,
        }
    }

    /// After a miss: lead the generation for identical requests, or wait for the one already
    /// running and answer with its entry (or its error), without a second paid call.
    async fn wait_or_lead(&self, plan: &CachePlan, shape: Shape, cx: &mut RequestContext) -> Option<Reply<U::Body>> {
        match self.coalescer.claim(&plan.key, cx.deadline.at_ms()).await {
            Claim::Lead => {
                cx.leading = Some(plan.key.clone());
                None
            }
            Claim::Answer(answer) => {
                cx.coalesced = true;
                self.served(answer, self.clock.now_ms(), shape, cx)
            }
            Claim::Failed { status, body } => {
                cx.coalesced = true;
                cx.cache = Some(CacheStatus::Bypass("not a success"));
                let mut reply = Reply::json(status, body);
                reply.headers.push(("x-should-retry", "false".to_owned()));
                Some(reply)
            }
            Claim::Unavailable => None,
        }
    }

    /// A hit: the stored answer, stored at `stored_ms`, as it was (in `shape`; the shape is part
    /// of the key), at no cost.
    fn served(&self, value: Vec<u8>, stored_ms: u64, shape: Shape, cx: &mut RequestContext) -> Option<Reply<U::Body>> {
        // A streamed answer was stored as its events (its key is apart from the JSON answer's).
        let streamed = value.starts_with(b"event:");
        // A value that is not an answer (written by another version) is a miss.
        if value.first() != Some(&b'{') && !streamed {
            return None;
        }
        let body = match shape {
            Shape::OpenRouter if !streamed => answer::with_zero_cost(value),
            _ => value,
        };
        cx.cache = Some(CacheStatus::Hit { age_secs: self.clock.now_ms().saturating_sub(stored_ms) / 1000 });
        cx.cost_usd = Some(0.0);
        Some(if streamed { Reply::event_stream(200, body) } else { Reply::json(200, body) })
    }

    /// After the fallback loop: whether to store the answer for `plan`, given the length of the
    /// successful answer's body (`None` for a failure) and whether it may be stored.
    pub(super) fn after_generation(&self, plan: CachePlan, answer_bytes: Option<usize>, cx: &mut RequestContext) {
        let storable = cx.cache_entry.take();
        match (answer_bytes, storable) {
            (Some(bytes), Some(Ok(()))) if bytes <= MAX_ENTRY_BYTES => cx.store = Some(Store { key: plan.key, ttl_secs: plan.ttl_secs }),
            (Some(_), Some(Ok(()))) => cx.cache = Some(CacheStatus::Bypass("too large")),
            (Some(_), Some(Err(reason))) => cx.cache = Some(CacheStatus::Bypass(reason)),
            _ => cx.cache = Some(CacheStatus::Bypass("not a success")),
        }
    }

    /// How the generation this request led ended, for the requests that waited: stored, failed
    /// with `reply`'s error, or released to generate for themselves.
    pub(super) fn flight_end<B>(cx: &mut RequestContext, reply: &Reply<B>, body: Option<&[u8]>) -> Option<FlightEnd> {
        let key = cx.leading.take()?;
        Some(match (&cx.store, body) {
            (Some(_), _) => FlightEnd::Stored { key },
            (None, Some(body)) if reply.status >= 400 => FlightEnd::Failed { key, status: reply.status, body: body.to_vec() },
            _ => FlightEnd::Released { key },
        })
    }
}
