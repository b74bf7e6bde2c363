//! Routes: `GET /v1/routes`, a route described, its history and its statistics, and a route named
//! by a generation's `model` (`route:owner/name`). Using a route is a generation
//! ([`Gateway::generate`](super::Gateway) with the route).

use serde_json::{json, Map, Value};

use crate::action_list::ListQuery;
use crate::auth::Reader;
use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::http::{Reply, RequestHead};
use crate::route_stats::{self, StatsQuery};
use crate::routes::{self, Verb, MODEL_PREFIX};
use crate::secret::Secrets;
use crate::upstream::Upstream;

use super::{Gateway, RequestContext};

impl<'a, U: Upstream, S: Secrets> Gateway<'a, U, S> {
    /// `GET /v1/routes`: the routes the caller may use (all of them for the management key),
    /// described, in OpenAI's list shape.
    pub(super) async fn routes(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let record = reader.caller().record.as_ref();
        let data: Vec<Value> = routes::usable(self.config, reader.key())
            .filter(|route| record.is_none_or(|record| record.allows_route(&route.id)))
            .map(|route| routes::describe(self.config, route))
            .collect();
        Ok(Reply::json(200, serde_json::to_vec(&json!({"object": "list", "data": data})).expect("a list serialises")))
    }

    /// A route's description, history or statistics; a route the caller may not use is a 404,
    /// as one that does not exist.
    pub(super) async fn named_route(&self, head: &RequestHead, selector: &str, verb: Verb, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let route = routes::find(self.config, selector, reader.key())?;
        match verb {
            Verb::Describe => Ok(Reply::json(200, serde_json::to_vec(&routes::describe(self.config, route)).expect("a route serialises"))),
            Verb::Actions => {
                let mut query = ListQuery::parse(head.query.as_deref())?;
                if query.route.is_some() {
                    return Err(GatewayError::invalid_param("route", "'route' is given by the path here; leave it out of the query."));
                }
                query.route_id = Some(route.id.clone());
                self.list_actions(head, &reader, query).await
            }
            Verb::Stats => self.route_stats(head, &reader, route).await,
            Verb::Use => unreachable!("a route's use is a generation"),
        }
    }

    /// `GET /v1/routes/{…}/stats`: the caller's generations through `route` (everyone's for the
    /// management key), bucket by bucket,
    /// computed where the history is kept.
    async fn route_stats(&self, head: &RequestHead, reader: &Reader, route: &RouteConfig) -> Result<Reply<U::Body>, GatewayError> {
        let query = StatsQuery::parse(head.query.as_deref(), self.clock.now_ms())?;
        if !self.history.keeps() {
            return Err(super::not_recorded());
        }
        let found = self.history.stats(reader.key(), &route.id, &query).await.map_err(super::history_unavailable)?;
        Ok(Reply::json(200, serde_json::to_vec(&route_stats::answer(&route.id, &query, found)).expect("stats serialise")))
    }

    /// `GET /v1/usage`: the caller's generations (everyone's for a management key) over a range,
    /// grouped, computed where the history is kept.
    pub(super) async fn usage(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let query = crate::usage::UsageQuery::parse(head.query.as_deref(), self.clock.now_ms())?;
        if !self.history.keeps() {
            return Err(super::not_recorded());
        }
        let rows = self.history.usage(reader.key(), &query).await.map_err(super::history_unavailable)?;
        Ok(Reply::json(200, serde_json::to_vec(&crate::usage::answer(&query, rows)).expect("usage serialises")))
    }

    /// The route a generation's `model` names (`route:owner/name` or `route:<id>`), taken out of
    /// `fields`; `None` for a plain model.
    pub(super) fn route_in_model(&self, fields: &mut Map<String, Value>, key: &str) -> Result<Option<&'a RouteConfig>, GatewayError> {
        let Some(selector) = fields.get("model").and_then(Value::as_str).and_then(|model| model.strip_prefix(MODEL_PREFIX)) else { return Ok(None) };
        let route = routes::find(self.config, selector, Some(key)).map_err(|error| error.with_param("model"))?;
        fields.remove("model");
        Ok(Some(route))
    }
}
