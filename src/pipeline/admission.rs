//! The admit stage, for managed keys: what a key may use (its models and routes, and with a
//! budget only priced models), and whether it may start a generation now (its rate, its
//! generations in flight, its budget with the request's most held), then, when the generation
//! ends, its ticket settled with the real cost. Keys of `IMAGEGATE_KEYS` have no limits and pass.

use crate::auth::Caller;
use crate::config::{ModelConfig, RouteConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::http::RequestHead;
use crate::limits::{micros, usd, Ask, Refusal};
use crate::policy::Policy;
use crate::pricing::{self, header_value};
use crate::request::ImageRequest;
use crate::secret::Secrets;
use crate::upstream::Upstream;

use super::context::Ticket;
use super::{storage_unavailable, Gateway, RequestContext};

/// How long past the deadline an unsettled hold lasts (a settlement that never came).
const HOLD_GRACE_MS: u64 = 600_000;

/// The 403 for a model or route a key may not use.
fn not_permitted(message: String) -> GatewayError {
    GatewayError::new(ErrorKind::Forbidden, message).with_code("permission_error")
}

/// Whether `caller` may use `route`.
pub(super) fn permit_route(caller: &Caller, route: &RouteConfig) -> Result<(), GatewayError> {
    match &caller.record {
        Some(record) if !record.allows_route(&route.id) => {
            Err(not_permitted(format!("This key may not use the route '{}'.", route.identifier)).with_param("model"))
        }
        _ => Ok(()),
    }
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Checks that `caller` may use every model `policy` may call for `request` (asked on
    /// `model`), and, for a key with a budget, that each is priced; gives the most the request
    /// can cost (the dearest target's), `None` when some target has no price.
    pub(super) fn permit(&self, caller: &Caller, request: &ImageRequest, model: &ModelConfig, policy: &Policy) -> Result<Option<f64>, GatewayError> {
        // A key of IMAGEGATE_KEYS has no lists and no counters: nothing to check or hold.
        let Some(record) = &caller.record else { return Ok(None) };
        let others = policy.fallbacks.iter().chain(policy.load_balancer.iter().map(|(m, _)| m));
        let mut targets: Vec<&ModelConfig> = vec![model];
        for name in others {
            let (target, _) = self.config.resolve_model(Some(name))?;
            if !targets.iter().any(|t| t.id == target.id) {
                targets.push(target);
            }
        }
        if let Some(denied) = targets.iter().find(|t| !record.allows_model(&t.id)) {
            let how = if denied.id == model.id { "" } else { " (a fallback or load-balanced target of this request)" };
            return Err(not_permitted(format!("This key may not use the model '{}'{how}.", denied.id)).with_param("model"));
        }
        let mut most: Option<f64> = Some(0.0);
        for target in &targets {
            match pricing::most(target, request) {
                Ok(amount) => most = most.map(|m| m.max(amount)),
                Err(why) if record.limit.is_some() => {
                    return Err(
                        not_permitted(format!("This key has a budget, and {why}: its cost could not be held against the budget.")).with_code("unpriced_model")
                    );
                }
                Err(_) => most = None,
            }
        }
        Ok(most)
    }

    /// Admits a generation of `caller` that may cost up to `most_usd`: a managed key's counters
    /// note it (a 429 over its rate or its generations in flight, a 402 past its budget) and
    /// hold its most until [`settle`](Self::settle). Counters that cannot be reached refuse a
    /// key with limits (a 503), and pass one without.
    pub(super) async fn admit(&self, caller: &Caller, most_usd: Option<f64>, cx: &mut RequestContext) -> Result<(), GatewayError> {
        let Some(record) = &caller.record else { return Ok(()) };
        let limits = record.limits();
        let limited = limits != crate::limits::Limits::default();
        if !self.limiter.available() {
            return match limited {
                true => Err(storage_unavailable("This key's limits", "no counters binding (IMAGEGATE_LIMITS)".to_owned())),
                false => Ok(()),
            };
        }
        let now_ms = self.clock.now_ms();
        let ask = Ask {
            ticket: cx.request_id.clone(),
            limits,
            hold_micros: micros(most_usd.unwrap_or(0.0)),
            now_ms,
            until_ms: now_ms + self.config.deadline_ms + HOLD_GRACE_MS,
        };
        match self.limiter.admit(&caller.owner, &ask).await {
            Ok(Ok(())) => {
                cx.ticket = Some(Ticket { key: caller.owner.clone(), id: cx.request_id.clone() });
                Ok(())
            }
            Ok(Err(refusal)) => Err(refused(refusal)),
            Err(detail) if limited => Err(storage_unavailable("This key's limits", detail)),
            // Spend is then not counted for this one: the log says why.
            Err(detail) => {
                cx.unpriced.get_or_insert(format!("its key's counters could not be reached: {detail}"));
                Ok(())
            }
        }
    }

    /// Where a job runs: the generation was admitted by the request that handed it over (the
    /// job keeps its managed key's hash as its owner), and this run settles it, however it ends.
    pub(super) fn hold_admitted(&self, head: &RequestHead, cx: &mut RequestContext) {
        if let Some(owner) = head.caller_label.as_deref().filter(|owner| head.in_runner && crate::keys::is_hash(owner)) {
            cx.ticket = Some(Ticket { key: owner.to_owned(), id: cx.request_id.clone() });
        }
    }

    /// Settles the request's ticket, if it holds one, with what its answer cost: nothing for a
    /// failure or a cache hit; what it held when the cost is unknown (an answer without a price,
    /// an upstream that timed out after it may have started).
    pub(super) async fn settle(&self, cx: &mut RequestContext, unknown_cost: bool) {
        let Some(ticket) = cx.ticket.take() else { return };
        let cost = match (cx.cost_usd, unknown_cost) {
            (Some(cost), _) => Some(micros(cost)),
            (None, true) => None,
            (None, false) => Some(0),
        };
        match self.limiter.settle(&ticket.key, &ticket.id, cost, self.clock.now_ms()).await {
            Ok(settled) => {
                if let Some(held) = settled.held.filter(|held| settled.spent > *held) {
                    // The price's bound was wrong (a provider's own cost, more tokens than
                    // `max_tokens_per_image`): the budget may pass its limit by the difference.
                    cx.budget_note = Some(format!("the cost ${} passed the ${} held", header_value(usd(settled.spent)), header_value(usd(held))));
                }
            }
            // The hold lapses, and is spent in full; the action has the cost.
            Err(detail) => cx.budget_note = Some(format!("its key's counters could not be settled: {detail}")),
        }
    }
}

/// The client's error for a refusal.
fn refused(refusal: Refusal) -> GatewayError {
    match refusal {
        Refusal::Rate { rpm, retry_after_secs } => {
            GatewayError::new(ErrorKind::RateLimited, format!("This key may start {rpm} generations a minute; try again in {retry_after_secs} s."))
                .with_code("rate_limit_exceeded")
                .with_retry_after(Some(retry_after_secs.to_string()))
        }
        Refusal::Parallel { max_parallel } => {
            GatewayError::new(ErrorKind::RateLimited, format!("This key may have {max_parallel} generations in flight at once; try again when one has ended."))
                .with_code("too_many_in_flight")
                .with_retry_after(Some("1".to_owned()))
        }
        Refusal::Budget { limit, spent, held, asked, resets_at_ms } => {
            let resets = match resets_at_ms {
                Some(at) => format!("; it resets at {}", humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at))),
                None => "; it does not reset".to_owned(),
            };
            let dollars = |m: u64| header_value(usd(m));
            GatewayError::new(
                ErrorKind::PaymentRequired,
                format!(
                    "This key's budget cannot cover this request: its limit is ${}, ${} is spent and ${} is held by generations in flight, and this request may cost up to ${}{resets}.",
                    dollars(limit),
                    dollars(spent),
                    dollars(held),
                    dollars(asked)
                ),
            )
            .with_code("insufficient_quota")
        }
    }
}
