//! The request pipeline: every stage by name, and the one function that drives them.
//!
//! ```text
//! route -> authenticate -> read body -> parse (OpenAI fields, routing fields) -> plan (policy)
//!       -> fallback loop (fallback.rs): pick target -> attempt (attempt.rs): build upstream
//!          request -> send with time limit -> classify (failure.rs) -> check answer | poll
//!          (poll.rs) -> deliver (deliver.rs) -> retry / fall back
//!       -> respond (or render the error) -> finish headers -> log
//! ```
//!
//! Nothing here touches the runtime: the network, the clock, chance and the secrets come in
//! through [`Upstream`], [`Clock`], [`Random`] and [`Secrets`], so every stage runs natively in
//! tests.

mod admission;
mod attempt;
mod caching;
mod context;
mod deliver;
mod failure;
mod fallback;
mod files;
mod keys;
mod named;
mod poll;
mod run;
mod stream;

pub use crate::cache::entry::{FlightEnd, Store};
pub use crate::state::AttemptRecord;
pub use context::{CacheStatus, RequestContext};
pub use files::Kept;
pub use keys::KeyVerb;
pub use stream::{Finished, Unfinished};

use std::cell::{Cell, OnceCell};

use crate::action;
use crate::action_list::{Cursor, ListQuery, Page};
use crate::answer::Shape;
use crate::auth::{authenticate, is_management, Caller, KeySet, Reader, ADMIN_KEY_SECRET, MANAGEMENT_LABEL};
use crate::catalogue;
use crate::clock::{Clock, Random};
use crate::config::routes::ExecutionMode;
use crate::config::Config;
use crate::cors;
use crate::error::{ErrorKind, GatewayError};
use crate::files::NewFile;
use crate::http::{IncomingBody, Reply, ReplyBody, RequestHead};
use crate::image_stream::StreamOf;
use crate::inputs::{Inputs, Operation};
use crate::jobs;
use crate::jobs::Runner;
use crate::log::RequestLog;
use crate::openrouter_generation;
use crate::policy::take_router_fields;
use crate::request::{parse_body, request_for};
use crate::routes::{self, Verb};
use crate::secret::Secret;
use crate::secret::Secrets;
use crate::state::{Action, Cache, Coalescer, Files, History, KeyStore, Limiter, Off};
use crate::upstream::{ByteBudget, Upstream};

use attempt::Answering;

/// Everything one request is served with. Built per request by the edge; borrowed, never cloned.
pub struct Gateway<'a, U, S> {
    pub config: &'a Config,
    pub keys: &'a KeySet,
    pub upstream: &'a U,
    pub secrets: &'a S,
    pub clock: &'a dyn Clock,
    pub random: &'a dyn Random,
    /// Upstream requests sent for this request so far (calls, polls, cancels, downloads),
    /// counted against the configuration's `max_subrequests`.
    pub subrequests: Cell<u32>,
    /// What is left of the configuration's `max_upstream_bytes` for this request.
    pub upstream_bytes: ByteBudget,
    /// The response cache, the history and the limits ([`crate::state`]); [`Off`] by default.
    pub cache: &'a dyn Cache,
    pub history: &'a dyn History,
    pub limiter: &'a dyn Limiter,
    /// Where recorded generations keep their images; [`Off`] by default.
    pub files: &'a dyn Files,
    /// The secret file URLs are signed with (without it no image is kept), looked up the first
    /// time a request needs it.
    files_secret: OnceCell<Option<Secret>>,
    /// Where identical cache-enabled requests are coalesced; [`Off`] by default.
    pub coalescer: &'a dyn Coalescer,
    /// Where generations run apart from their clients; [`Off`] by default.
    pub runner: &'a dyn Runner,
    /// The managed keys; [`Off`] by default (only `IMAGEGATE_KEYS`).
    pub key_store: &'a dyn KeyStore,
}

/// The state a gateway keeps when it is given none.
static OFF: Off = Off;

impl<'a, U, S> Gateway<'a, U, S> {
    /// The gateway for one request, with the request's budgets full.
    pub fn new(config: &'a Config, keys: &'a KeySet, upstream: &'a U, secrets: &'a S, clock: &'a dyn Clock, random: &'a dyn Random) -> Self {
        Gateway {
            config,
            keys,
            upstream,
            secrets,
            clock,
            random,
            subrequests: Cell::new(0),
            upstream_bytes: ByteBudget::new(config.max_upstream_bytes),
            cache: &OFF,
            history: &OFF,
            limiter: &OFF,
            coalescer: &OFF,
            files: &OFF,
            files_secret: OnceCell::new(),
            runner: &OFF,
            key_store: &OFF,
        }
    }

    /// This gateway with managed keys, their exact counters in `limiter`.
    pub fn with_managed_keys(self, key_store: &'a dyn KeyStore, limiter: &'a dyn Limiter) -> Self {
        Gateway { key_store, limiter, ..self }
    }

    /// This gateway with a place to run generations apart from their clients.
    pub fn with_runner(self, runner: &'a dyn Runner) -> Self {
        Gateway { runner, ..self }
    }

    /// This gateway with a store for the images of recorded generations, signing their URLs with
    /// the secret [`crate::files::SECRET_NAME`].
    pub fn with_files(self, files: &'a dyn Files) -> Self {
        Gateway { files, ..self }
    }

    /// This gateway with a place to coalesce identical cache-enabled requests.
    pub fn with_coalescer(self, coalescer: &'a dyn Coalescer) -> Self {
        Gateway { coalescer, ..self }
    }

    /// This gateway with state: a response cache and a history.
    pub fn with_state(self, cache: &'a dyn Cache, history: &'a dyn History) -> Self {
        Gateway { cache, history, ..self }
    }
}

/// A served request: the reply to send, the line to log, and what the edge does after the answer
/// has gone: record a generation's action in the history, store a cache-enabled success.
pub struct Handled<B> {
    pub reply: Reply<B>,
    /// `None` while a relayed stream ([`ReplyBody::Events`]) is still to come: its line, its
    /// action and its files come from [`Gateway::finish_stream`] with `unfinished`.
    pub log: Option<RequestLog>,
    pub action: Option<Action>,
    pub store: Option<Store>,
    /// The images the edge stores after the answer, before it records the action.
    pub files: Vec<NewFile>,
    /// How a generation this request led for identical waiting requests ended.
    pub flight: Option<FlightEnd>,
    /// The request, for [`Gateway::finish_stream`] once its relayed stream has ended.
    pub unfinished: Option<Unfinished>,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'p> {
    Preflight,
    Health,
    /// `GET /console`: to the console at `/`.
    Console,
    /// `GET /v1/models`: the OpenAI model list.
    Models,
    /// `GET /api/v1/images/models`: OpenRouter's image model catalogue.
    ImageModels,
    /// `GET /api/v1/images/models/{author}/{slug}/endpoints`.
    Endpoints {
        author: &'p str,
        slug: &'p str,
    },
    /// `GET /v1/actions`: the caller's history, a page at a time.
    Actions,
    /// `GET /v1/actions/{id}`: one recorded generation.
    Action {
        id: &'p str,
    },
    /// `POST /v1/actions/{id}/cancel`: ends an unfinished one.
    Cancel {
        id: &'p str,
    },
    /// `GET /api/v1/generation?id=`: one recorded generation, in OpenRouter's shape.
    OpenRouterGeneration,
    /// `GET /v1/files/{id}`: a stored image.
    File {
        id: &'p str,
    },
    /// `GET /v1/routes`: the routes the caller may use.
    Routes,
    /// A route's description, use, history or statistics, by id or `owner/name`.
    Named {
        selector: &'p str,
        verb: Verb,
    },
    /// A generation, an edit or a variation, answered in the caller's shape.
    Generations(Shape, Operation),
    /// `GET /api/v1/key`: the calling key, with its usage and limits.
    CurrentKey,
    /// `GET /api/v1/keys` (a page) and `POST /api/v1/keys` (a new key): management keys only.
    Keys {
        create: bool,
    },
    /// `GET`, `PATCH` or `DELETE /api/v1/keys/{hash}`: management keys only.
    Key {
        hash: &'p str,
        verb: KeyVerb,
    },
    /// `GET /v1/usage`: spend and outcomes, grouped.
    Usage,
    /// A known path, another method; carries the methods the path allows.
    WrongMethod(&'static str),
    Unknown,
}

/// The route stage: method and path to a [`Route`].
fn route<'p>(method: &str, path: &'p str) -> Route<'p> {
    let path = path.trim_end_matches('/');
    let endpoints = path
        .strip_prefix("/api/v1/images/models/")
        .and_then(|rest| rest.strip_suffix("/endpoints"))
        .and_then(|model| model.split_once('/'))
        // Model ids may have more than two segments (`replicate/black-forest-labs/flux-schnell`).
        .filter(|(author, slug)| !author.is_empty() && !slug.is_empty());
    match (method, path) {
        ("OPTIONS", _) => Route::Preflight,
        ("GET", "/healthz") => Route::Health,
        // The console is static files at `/`; its other name leads there.
        ("GET", "/console") => Route::Console,
        ("GET", "/v1/models") => Route::Models,
        ("GET", "/api/v1/images/models") => Route::ImageModels,
        ("POST", "/v1/images/generations" | "/v2/router/images/generations") => Route::Generations(Shape::OpenAi, Operation::Generate),
        ("POST", "/v1/images/edits" | "/v2/router/images/edits") => Route::Generations(Shape::OpenAi, Operation::Edit),
        ("POST", "/v1/images/variations" | "/v2/router/images/variations") => Route::Generations(Shape::OpenAi, Operation::Variation),
        ("POST", "/api/v1/images") => Route::Generations(Shape::OpenRouter, Operation::Generate),
        ("GET", "/v1/actions") => Route::Actions,
        ("GET", "/v1/usage") => Route::Usage,
        ("GET", "/api/v1/key") => Route::CurrentKey,
        ("GET", "/api/v1/keys") => Route::Keys { create: false },
        ("POST", "/api/v1/keys") => Route::Keys { create: true },
        (_, _) if path.starts_with("/api/v1/keys/") && !path["/api/v1/keys/".len()..].is_empty() && !path["/api/v1/keys/".len()..].contains('/') => {
            let hash = &path["/api/v1/keys/".len()..];
            match method {
                "GET" => Route::Key { hash, verb: KeyVerb::Read },
                "PATCH" => Route::Key { hash, verb: KeyVerb::Update },
                "DELETE" => Route::Key { hash, verb: KeyVerb::Delete },
                _ => Route::WrongMethod("GET, PATCH, DELETE, OPTIONS"),
            }
        }
        (_, "/api/v1/keys") => Route::WrongMethod("GET, POST, OPTIONS"),
        ("GET", "/api/v1/generation") => Route::OpenRouterGeneration,
        ("POST", _) if path.starts_with("/v1/actions/") && path.ends_with("/cancel") && path.len() > "/v1/actions//cancel".len() => {
            Route::Cancel { id: &path["/v1/actions/".len()..path.len() - "/cancel".len()] }
        }
        (_, _) if path.starts_with("/v1/actions/") && path.ends_with("/cancel") => Route::WrongMethod("POST, OPTIONS"),
        ("GET", _) if path.starts_with("/v1/actions/") && path.len() > "/v1/actions/".len() => Route::Action { id: &path["/v1/actions/".len()..] },
        ("GET", _) if path.starts_with("/v1/files/") && path.len() > "/v1/files/".len() => Route::File { id: &path["/v1/files/".len()..] },
        ("GET", "/v1/routes") => Route::Routes,
        (method, _) if path.starts_with("/v1/routes/") => match routes::parse_path(&path["/v1/routes/".len()..]) {
            Some((selector, Verb::Use)) if method == "POST" => Route::Named { selector, verb: Verb::Use },
            Some((_, Verb::Use)) => Route::WrongMethod("POST, OPTIONS"),
            Some((selector, verb)) if method == "GET" => Route::Named { selector, verb },
            Some(_) => Route::WrongMethod("GET, OPTIONS"),
            None => Route::Unknown,
        },
        ("GET", _) if endpoints.is_some() => {
            let (author, slug) = endpoints.expect("checked");
            Route::Endpoints { author, slug }
        }
        (_, "/healthz" | "/v1/models" | "/api/v1/images/models" | "/v1/actions" | "/api/v1/generation" | "/v1/routes" | "/v1/usage" | "/api/v1/key") => {
            Route::WrongMethod("GET, OPTIONS")
        }
        (_, _) if path.starts_with("/v1/actions/") || path.starts_with("/v1/files/") => Route::WrongMethod("GET, OPTIONS"),
        (_, _) if endpoints.is_some() => Route::WrongMethod("GET, OPTIONS"),
        (
            _,
            "/v1/images/generations"
            | "/v2/router/images/generations"
            | "/api/v1/images"
            | "/v1/images/edits"
            | "/v2/router/images/edits"
            | "/v1/images/variations"
            | "/v2/router/images/variations",
        ) => Route::WrongMethod("POST, OPTIONS"),
        _ => Route::Unknown,
    }
}

/// The shape errors on `path` are written in: OpenRouter's under `/api/v1`, else OpenAI's.
fn error_shape(path: &str) -> Shape {
    if path.starts_with("/api/v1/") || path == "/api/v1" {
        Shape::OpenRouter
    } else {
        Shape::OpenAi
    }
}

impl<'a, U: Upstream, S: Secrets> Gateway<'a, U, S> {
    /// Serves one request from start to finish. Never fails: every error becomes its reply.
    pub async fn handle<I: IncomingBody>(&self, request_id: String, head: &RequestHead, body: I) -> Handled<U::Body> {
        let mut cx = RequestContext::new(request_id, head, self.clock.now_ms(), self.config.deadline_ms);
        cx.recorded = self.history.keeps();
        // A job's run settles what the request that handed it over admitted, however it ends.
        self.hold_admitted(head, &mut cx);
        let outcome = match route(&head.method, &head.path) {
            Route::Preflight => cors::preflight(&self.config.cors, head.origin.as_deref(), head.access_control_request_headers.as_deref())
                .map(|headers| Reply { status: 204, headers, body: ReplyBody::Empty }),
            Route::Health => Ok(Reply::json(200, br#"{"status":"ok"}"#.to_vec())),
            Route::Console => Ok(Reply { status: 308, headers: vec![("location", "/".to_owned())], body: ReplyBody::Empty }),
            Route::Models => self.catalogue(head, &mut cx, |config| Ok(catalogue::openai_models(config))).await,
            Route::ImageModels => self.catalogue(head, &mut cx, |config| Ok(catalogue::image_models(config))).await,
            Route::Endpoints { author, slug } => self.catalogue(head, &mut cx, |config| catalogue::endpoints(config, author, slug)).await,
            Route::Actions => self.actions(head, &mut cx).await,
            Route::Action { id } => self.action(head, id, &mut cx).await,
            Route::Cancel { id } => self.cancel(head, id, &mut cx).await,
            Route::OpenRouterGeneration => self.openrouter_generation(head, &mut cx).await,
            Route::File { id } => self.file(head, id, &mut cx).await,
            Route::Routes => self.routes(head, &mut cx).await,
            Route::Named { selector, verb: Verb::Use } => self.generate(head, body, Shape::OpenAi, Some(selector), Operation::Generate, &mut cx).await,
            Route::Named { selector, verb } => self.named_route(head, selector, verb, &mut cx).await,
            Route::Generations(shape, operation) => self.generate(head, body, shape, None, operation, &mut cx).await,
            Route::CurrentKey => self.current_key(head, &mut cx).await,
            Route::Keys { create: false } => self.list_keys(head, &mut cx).await,
            Route::Keys { create: true } => self.create_key(head, body, &mut cx).await,
            Route::Key { hash, verb } => self.key(head, hash, verb, body, &mut cx).await,
            Route::Usage => self.usage(head, &mut cx).await,
            Route::WrongMethod(allow) => Err(GatewayError::method_not_allowed(&head.method, &head.path, allow)),
            Route::Unknown => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!(
                    "Unknown route: {} {}. This gateway serves POST /v1/images/generations, GET /v1/models, POST /api/v1/images, GET /api/v1/images/models, GET /v1/actions, GET /v1/routes, GET /v1/usage and /api/v1/keys.",
                    head.method, head.path
                ),
            )
            .with_code("unknown_route")),
        };
        let (mut reply, error) = match outcome {
            Ok(reply) => (reply, None),
            Err(error) => (Reply::error_in(&error, error_shape(&head.path)), Some(error)),
        };
        if head.method != "OPTIONS" {
            reply.headers.extend(cors::response_headers(&self.config.cors, head.origin.as_deref()));
        }
        if let ReplyBody::Events(_) = &reply.body {
            // The stream is the answer from here; the rest waits for its end.
            cx.write_headers(&mut reply, self.clock.now_ms());
            let unfinished = Some(Unfinished { cx });
            return Handled { reply, log: None, action: None, store: None, files: Vec::new(), flight: None, unfinished };
        }
        let body = match &reply.body {
            ReplyBody::Bytes(bytes) => Some(bytes.as_slice()),
            _ => None,
        };
        let flight = Self::flight_end(&mut cx, &reply, body);
        if cx.generation && (200..300).contains(&reply.status) && cx.cost_usd.is_none() {
            cx.unpriced.get_or_insert_with(|| "its model has no price for this answer".to_owned());
        }
        let timed_out = error.as_ref().is_some_and(|error| error.kind == ErrorKind::UpstreamTimeout) && !cx.attempts.is_empty();
        let unknown_cost = (200..300).contains(&reply.status) || timed_out;
        self.settle(&mut cx, unknown_cost).await;
        let store = cx.store.take();
        let files = cx.kept.as_mut().map(|kept| std::mem::take(&mut kept.pending)).unwrap_or_default();
        let (log, action) = cx.finish(&mut reply, error.as_ref(), self.clock.now_ms());
        Handled { reply, log: Some(log), action, store, files, flight, unfinished: None }
    }

    /// `GET /v1/actions/{id}`: the recorded generation, to the key that made it only (any other
    /// key, like an unknown id, gets a 404).
    async fn action(&self, head: &RequestHead, id: &str, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let action = self.with_urls(head, self.found_action(&reader, id).await?);
        let mut reply = Reply::json(200, serde_json::to_vec(&action).expect("an action always serialises"));
        if run::unfinished(&action) {
            reply.headers.push(("retry-after", self.retry_after_secs(&action).await.to_string()));
        }
        Ok(reply)
    }

    /// `GET /api/v1/generation?id=`: the same record in OpenRouter's generation shape.
    async fn openrouter_generation(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let id = openrouter_generation::requested_id(head.query.as_deref())?;
        let action = self.found_action(&reader, &id).await?;
        Ok(Reply::json(200, openrouter_generation::body(&action)))
    }

    /// The gateway key `head` authenticates with, noted as the request's caller. A management
    /// key is refused here (a 403): it reads and manages, and never generates.
    async fn caller(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Caller, GatewayError> {
        match self.reader(head, cx).await? {
            Reader::Key(caller) => Ok(caller),
            Reader::Management(_) => Err(GatewayError::new(
                ErrorKind::Forbidden,
                "A management key reads actions, files, routes and usage, and manages keys; it cannot generate or cancel. Use a gateway key.",
            )
            .with_code("management_key")),
        }
    }

    /// Who calls, noted as the request's caller: a gateway key, which sees its own records, or
    /// a management key (the secret [`ADMIN_KEY_SECRET`], or a managed key made one), which sees
    /// everyone's. Keys of `IMAGEGATE_KEYS` are checked first, without a lookup; then the key
    /// store. Where a job runs, its kept owner stands for the key (a key gone since is refused).
    async fn reader(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reader, GatewayError> {
        let reader = match (head.in_runner, &head.caller_label) {
            (true, Some(owner)) => self.job_owner(owner).await?,
            _ => self.authenticate(head).await?,
        };
        cx.key = Some(reader.caller().owner.clone());
        Ok(reader)
    }

    async fn authenticate(&self, head: &RequestHead) -> Result<Reader, GatewayError> {
        let token = crate::auth::token(head.authorization.as_deref())?;
        if let Some(label) = self.keys.check(token) {
            return Ok(Reader::Key(Caller::fixed(label)));
        }
        if self.is_management(head) {
            return Ok(Reader::Management(Caller::fixed(MANAGEMENT_LABEL)));
        }
        if self.key_store.available() && token.starts_with(crate::keys::KEY_PREFIX) {
            if let Some(record) = self.managed_key(&crate::auth::key_digest_hex(token)).await? {
                return Ok(match record.management {
                    true => Reader::Management(Caller::managed(record)),
                    false => Reader::Key(Caller::managed(record)),
                });
            }
        }
        // No static key and no management key: a managed key found above is the only way in.
        if self.keys.is_empty() && self.secrets.get(ADMIN_KEY_SECRET).is_none() {
            return Err(crate::auth::no_keys());
        }
        Err(crate::auth::unauthorized("Incorrect API key provided."))
    }

    /// The managed key `hash`, if it exists; a disabled or expired one is a 401 saying so.
    async fn managed_key(&self, hash: &str) -> Result<Option<crate::keys::KeyRecord>, GatewayError> {
        let record = self.key_store.find(hash).await.map_err(|detail| storage_unavailable("The key store", detail))?;
        match record {
            Some(record) => match record.refused(self.clock.now_ms()) {
                Some(why) => Err(crate::auth::unauthorized(why)),
                None => Ok(Some(record)),
            },
            None => Ok(None),
        }
    }

    /// The gateway key a job was asked with, by its kept owner.
    async fn job_owner(&self, owner: &str) -> Result<Reader, GatewayError> {
        if let Some(label) = self.keys.label(owner) {
            return Ok(Reader::Key(Caller::fixed(label)));
        }
        if crate::keys::is_hash(owner) {
            if let Some(record) = self.managed_key(owner).await?.filter(|record| !record.management) {
                return Ok(Reader::Key(Caller::managed(record)));
            }
        }
        Err(crate::auth::unauthorized("The gateway key that asked for this generation is no longer accepted."))
    }

    /// Whether the request carries the management key (looked up only when a gateway key failed).
    fn is_management(&self, head: &RequestHead) -> bool {
        self.secrets.get(ADMIN_KEY_SECRET).is_some_and(|management| is_management(head.authorization.as_deref(), &management))
    }

    /// The action `id` if `reader` may see it: `Ok(None)` whether it is another key's or none
    /// at all (the caller answers both alike), `Err` (a 503) when the history could not be read.
    async fn own_action(&self, reader: &Reader, id: &str) -> Result<Option<Action>, GatewayError> {
        let action = self.history.read(id).await.map_err(history_unavailable)?;
        Ok(action.filter(|action| reader.key().is_none_or(|key| action.key.as_deref() == Some(key))))
    }

    /// [`own_action`](Self::own_action), with a missing one as the 404 `action_not_found`.
    async fn found_action(&self, reader: &Reader, id: &str) -> Result<Action, GatewayError> {
        let not_found = || GatewayError::new(ErrorKind::NotFound, format!("No action '{id}' for this key.")).with_code("action_not_found");
        self.own_action(reader, id).await?.ok_or_else(not_found)
    }

    /// `GET /v1/actions`: a page of the caller's history, newest first, in OpenAI's list
    /// convention. The cursor `after` must be one of the caller's own actions.
    async fn actions(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let mut query = ListQuery::parse(head.query.as_deref())?;
        if let Some(route) = &query.route {
            let route = routes::find(self.config, route, reader.key())
                .map_err(|_| GatewayError::invalid_param("route", format!("'route' is '{route}', which is no route this key may use.")))?;
            query.route_id = Some(route.id.clone());
        }
        self.list_actions(head, &reader, query).await
    }

    /// A page of the history `reader` may see, for `query`.
    async fn list_actions(&self, head: &RequestHead, reader: &Reader, query: ListQuery) -> Result<Reply<U::Body>, GatewayError> {
        if !self.history.keeps() {
            return Err(not_recorded());
        }
        let cursor = match &query.after {
            None => None,
            Some(after) => {
                let action = self.own_action(reader, after).await?;
                let action = action.ok_or_else(|| GatewayError::invalid_param("after", format!("'after' is '{after}', which is no action of this key.")))?;
                Some(Cursor { created_at: action.created_at, id: action.id })
            }
        };
        let actions = self.history.list(reader.key(), &query, cursor.as_ref()).await.map_err(history_unavailable)?;
        let actions = actions.into_iter().map(|action| self.with_urls(head, action)).collect();
        Ok(Reply::json(200, serde_json::to_vec(&Page::new(actions, query.limit)).expect("a page always serialises")))
    }

    /// A catalogue route: authenticate, then answer what `list` writes from the configuration.
    async fn catalogue(
        &self,
        head: &RequestHead,
        cx: &mut RequestContext,
        list: impl FnOnce(&Config) -> Result<Vec<u8>, GatewayError>,
    ) -> Result<Reply<U::Body>, GatewayError> {
        self.caller(head, cx).await?;
        Ok(Reply::json(200, list(self.config)?))
    }

    /// `POST /v1/images/generations` (and orq's `/v2/router/images/generations`), or
    /// OpenRouter's `POST /api/v1/images`: authenticate, read, parse, plan the policy, then run
    /// the attempt loop; the answer comes in `shape`.
    ///
    /// `via` is the route `POST /v1/routes/{…}/use` names; its answer also names the action.
    /// An edit or a variation (`operation`) reads its images from a form and runs the same way,
    /// answered in place (its images are not kept for a run apart).
    async fn generate<I: IncomingBody>(
        &self,
        head: &RequestHead,
        body: I,
        shape: Shape,
        via: Option<&str>,
        operation: Operation,
        cx: &mut RequestContext,
    ) -> Result<Reply<U::Body>, GatewayError> {
        let caller = self.caller(head, cx).await?;
        let key = caller.owner.as_str();

        cx.generation = true;
        let route = via.map(|selector| routes::find(self.config, selector, Some(key))).transpose()?;
        let (raw, mut fields, inputs) = match operation {
            Operation::Generate => {
                // OpenRouter's request may carry reference images: an edit's limit.
                let max = if shape == Shape::OpenRouter { self.config.max_edit_body_bytes.max(self.config.max_body_bytes) } else { self.config.max_body_bytes };
                let raw = body.read(max).await?;
                let fields = parse_body(head.content_type.as_deref(), &raw, max)?;
                (raw, fields, None)
            }
            _ => {
                let raw = body.read(self.config.max_edit_body_bytes).await?;
                let (fields, inputs) = self.read_inputs(head.content_type.as_deref(), raw, operation)?;
                (Vec::new(), fields, Some(std::rc::Rc::new(inputs)))
            }
        };
        let mut inputs = inputs;
        if shape == Shape::OpenRouter {
            if let Some(references) = take_openrouter_fields(&mut fields)? {
                inputs = Some(std::rc::Rc::new(crate::inputs::from_references(references)?));
            }
        }
        let operation = inputs.as_ref().map_or(operation, |inputs| inputs.operation);
        let route = match route {
            Some(route) => Some(route),
            None => self.route_in_model(&mut fields, key)?,
        };
        if let Some(route) = route {
            admission::permit_route(&caller, route)?;
            routes::apply(route, &mut fields, head.imagegate_config.as_deref())?;
            cx.route_id = Some(route.id.clone());
        }
        let callback = match self.callback(head, &mut fields)? {
            None => self.route_webhook(head, route)?,
            given => given,
        };
        let router_fields = take_router_fields(&mut fields, head.imagegate_config.as_deref())?;
        if let Some(count) = router_fields.retry_count.filter(|c| *c > self.config.max_retry_count) {
            let max = self.config.max_retry_count;
            return Err(GatewayError::invalid_param("retry.count", format!("'retry.count' is {count}; this gateway allows at most {max}.")));
        }
        cx.name = router_fields.name.clone();
        cx.identity = router_fields.identity.as_ref().map(|i| i.id.clone());
        cx.metadata = router_fields.metadata.clone();
        // OpenRouter's answers carry base64 only; the request keeps the provider's default
        // format (some models take no `response_format`) and delivery downloads any URLs.
        let mut request = request_for(fields, operation)?;
        request.inputs = inputs;
        if request.stream && shape == Shape::OpenRouter {
            return Err(GatewayError::invalid_param(
                "stream",
                "OpenRouter's image API answers whole; streamed answers are for /v1/images/generations and /v1/images/edits.",
            )
            .with_code("unsupported_parameter"));
        }
        if self.config.log_prompts {
            cx.prompt = Some(request.prompt.clone());
        }
        cx.asked_images = Some(request.n);
        if cx.recorded {
            cx.request_fields = Some(action::request_fields(&request, self.config.log_prompts));
        }
        // A load-balanced request may leave `model` out: its first weighted model stands in.
        let balanced = router_fields.load_balancer.as_ref().and_then(|models| models.first()).map(|(m, _)| m.as_str());
        let (model, _) = self.config.resolve_model(request.model.as_deref().or(balanced))?;
        let policy = match route {
            Some(route) => self.config.policy_for(model).with_request(&route.policy),
            None => self.config.policy_for(model),
        }
        .with_request(&router_fields);
        self.config.check_targets(&policy)?;
        let most_usd = self.permit(&caller, &request, model, &policy)?;

        // A callback makes a request asynchronous; a preference for it is followed where a
        // runner is, else the request is answered in place (RFC 7240 lets a server ignore it).
        let asynchronous =
            callback.is_some() || jobs::prefers_async(head.prefer.as_deref()) || route.is_some_and(|route| route.execution_mode == ExecutionMode::Async);
        if asynchronous && request.stream {
            return Err(GatewayError::invalid_param(
                "stream",
                "A streamed answer is the answer to this request; it cannot also be asynchronous (Prefer: respond-async, a webhook, or an asynchronous route).",
            )
            .with_code("unsupported_parameter"));
        }
        if asynchronous && request.inputs.is_some() && callback.is_some() {
            // A job keeps its request as text: an edit's images are not kept for a run apart.
            return Err(
                GatewayError::invalid_param("webhook", "Edits and variations are answered in place; they cannot call back.").with_code("unsupported_parameter")
            );
        }
        if asynchronous && !head.in_runner && request.inputs.is_none() {
            if self.runner.available() && cx.recorded {
                self.admit(&caller, most_usd, cx).await?;
                return self.hand_off(head, utf8(raw), &model.id, callback, cx).await;
            }
            if callback.is_some() {
                return Err(GatewayError::invalid_param(
                    if head.ouro_action_id.is_some() { "ouro-webhook-url" } else { "webhook" },
                    "This deployment cannot run a generation apart from its client (it has no runner or no history), so it cannot call back.",
                ));
            }
        }
        let request_id = cx.request_id.clone();
        let named = via.is_some() && cx.recorded;
        let caching = self.cache_plan(head, shape, &request, &policy, model, cx);
        if let Some(plan) = &caching {
            if let Some(mut hit) = self.lookup(plan, shape, cx).await {
                if let (true, ReplyBody::Bytes(body)) = (named, &mut hit.body) {
                    crate::answer::name_action(body, &context::action_id(&request_id));
                }
                return Ok(hit);
            }
        }
        if !head.in_runner {
            self.admit(&caller, most_usd, cx).await?;
        }
        if caching.is_none() && !head.in_runner && self.runner.available() && cx.recorded && request.inputs.is_none() && !request.stream {
            // Generated in its action's place, so that a client who hangs up loses nothing (a
            // streamed answer is generated here: its client holds the stream).
            if let Some(reply) = self.run_apart(head, utf8(raw), &model.id, cx).await? {
                return Ok(reply);
            }
        }
        let files = self.filing(head, &request_id, key, cx.recorded);
        // Where a job runs, its answer goes back whole to the request that waits for it.
        let stream = request.stream.then_some(match operation {
            Operation::Generate => StreamOf::Generation,
            Operation::Edit | Operation::Variation => StreamOf::Edit,
        });
        let answering = Answering { shape, for_cache: caching.is_some(), files, whole: named || head.in_runner, stream };
        let mut result = self.try_targets(&request, &policy, &model.id, answering, cx).await;
        if named {
            // A route's answer names its action (read whole above, so never a relay).
            if let Ok(Reply { body: ReplyBody::Bytes(body), .. }) = &mut result {
                crate::answer::name_action(body, &context::action_id(&request_id));
            }
        }
        if let Some(plan) = caching {
            let answer_bytes = result.as_ref().ok().and_then(|reply| match &reply.body {
                ReplyBody::Bytes(bytes) => Some(bytes.len()),
                _ => None,
            });
            self.after_generation(plan, answer_bytes, cx);
        }
        result
    }
}

impl<U, S> Gateway<'_, U, S> {
    /// An edit's or a variation's fields and images: from a multipart form, or (an edit) from
    /// OpenAI's JSON form with the images as data: URLs; any other body is a 415.
    fn read_inputs(
        &self,
        content_type: Option<&str>,
        raw: Vec<u8>,
        operation: Operation,
    ) -> Result<(serde_json::Map<String, serde_json::Value>, Inputs), GatewayError> {
        if crate::multipart::is_form(content_type) {
            return crate::inputs::read_form(content_type.expect("a form has a content type"), std::rc::Rc::new(raw), operation);
        }
        let json = crate::media_type::is(content_type, "application/json");
        if !json || operation == Operation::Variation {
            return Err(crate::inputs::not_a_form(content_type, operation));
        }
        let mut fields = parse_body(content_type, &raw, self.config.max_edit_body_bytes)?;
        drop(raw);
        let inputs = crate::inputs::from_json(&mut fields, operation)?;
        Ok((fields, inputs))
    }
}

/// Takes out the OpenRouter request fields that steer OpenRouter itself and mean nothing to a
/// self-hosted gateway (`provider`, `session_id`, `trace`); gives its reference images
/// (`input_references`), which make the request an edit.
fn take_openrouter_fields(fields: &mut serde_json::Map<String, serde_json::Value>) -> Result<Option<serde_json::Value>, GatewayError> {
    for ignored in ["provider", "session_id", "trace"] {
        fields.remove(ignored);
    }
    Ok(crate::fields::take(fields, "input_references"))
}

/// A request body that parsed as JSON, as text (JSON is UTF-8, so nothing is lost or copied).
fn utf8(body: Vec<u8>) -> String {
    String::from_utf8(body).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// The 404 for a history read on a deployment that records none.
fn not_recorded() -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, "This deployment records no actions: it has no history binding (IMAGEGATE_DB).").with_code("actions_not_recorded")
}

/// The 503 for a history that could not be read.
fn history_unavailable(detail: String) -> GatewayError {
    storage_unavailable("The history", detail)
}

/// The 503 for storage (`what`) that could not be read; what it said goes to the log only.
fn storage_unavailable(what: &str, detail: String) -> GatewayError {
    GatewayError::new(ErrorKind::Unavailable, format!("{what} could not be read; try again.")).with_log_detail(detail)
}

/// The error when the request's deadline passed before any attempt could be made.
fn deadline_error(deadline_ms: u64) -> GatewayError {
    GatewayError::new(ErrorKind::UpstreamTimeout, format!("The request's {deadline_ms} ms deadline passed before an upstream answered."))
}

/// The reply when the deployment itself is broken (its configuration or keys are invalid): a 500
/// for every request until the deployment is fixed. The problem goes to the log line, and to
/// callers whose gateway key `keys` accepts; anyone else learns only that the configuration is
/// invalid (a configuration's mistakes can show what it holds).
pub fn broken_deployment<B>(request_id: String, head: &RequestHead, problem: &str, keys: Option<&KeySet>) -> Handled<B> {
    let trusted = keys.is_some_and(|keys| authenticate(head.authorization.as_deref(), keys).is_ok());
    let message = if trusted { problem } else { "This gateway's configuration is invalid; its operator will find why in the gateway's log." };
    let error = GatewayError::new(ErrorKind::Internal, message).with_code("invalid_configuration").with_log_detail(problem);
    let mut reply = Reply::error_in(&error, error_shape(&head.path));
    let (log, action) = RequestContext::new(request_id, head, 0, 0).finish(&mut reply, Some(&error), 0);
    Handled { reply, log: Some(log), action, store: None, files: Vec::new(), flight: None, unfinished: None }
}
