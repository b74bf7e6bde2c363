//! The request pipeline: every stage by name, and the one function that drives them.
//!
//! ```text
//! route -> authenticate -> read body -> parse -> plan (model, provider)
//!       -> attempt: build upstream request -> send with deadline -> classify -> check answer
//!       -> respond (or render the error) -> finish headers -> log
//! ```
//!
//! Nothing here touches the runtime: the network, the clock and the secrets come in through
//! [`Upstream`], [`Clock`] and [`Secrets`], so every stage runs natively in tests.

use serde::Serialize;

use crate::answer_scan::{AnswerScan, Verdict};
use crate::auth::{authenticate, KeySet};
use crate::clock::{Clock, Deadline};
use crate::config::{Config, ModelConfig, ProviderConfig, ProviderKind};
use crate::cors;
use crate::error::{ErrorKind, GatewayError};
use crate::http::{IncomingBody, Reply, ReplyBody, RequestHead};
use crate::log::RequestLog;
use crate::providers::{openai, test_pattern};
use crate::request::{parse_generation, ImageRequest};
use crate::secret::Secrets;
use crate::upstream::{TransportError, Upstream, UpstreamBody};

/// The most of an upstream error body read to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The most of a 200 answer held while deciding whether it carries images.
const MAX_UNDECIDED_BYTES: usize = 1 << 20;

/// Everything one request is served with. Built per request by the edge; borrowed, never cloned.
pub struct Gateway<'a, U, S> {
    pub config: &'a Config,
    pub keys: &'a KeySet,
    pub upstream: &'a U,
    pub secrets: &'a S,
    pub clock: &'a dyn Clock,
}

/// A served request: the reply to send and the line to log.
pub struct Handled<B> {
    pub reply: Reply<B>,
    pub log: RequestLog,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Preflight,
    Health,
    Models,
    Generations,
    /// A known path, another method; carries the methods the path allows.
    WrongMethod(&'static str),
    Unknown,
}

/// The route stage: method and path to a [`Route`].
fn route(method: &str, path: &str) -> Route {
    let path = path.trim_end_matches('/');
    match (method, path) {
        ("OPTIONS", _) => Route::Preflight,
        ("GET", "/healthz") => Route::Health,
        ("GET", "/v1/models") => Route::Models,
        ("POST", "/v1/images/generations") => Route::Generations,
        (_, "/healthz" | "/v1/models") => Route::WrongMethod("GET, OPTIONS"),
        (_, "/v1/images/generations") => Route::WrongMethod("POST, OPTIONS"),
        _ => Route::Unknown,
    }
}

impl<U: Upstream, S: Secrets> Gateway<'_, U, S> {
    /// Serves one request from start to finish. Never fails: every error becomes its reply.
    pub async fn handle<I: IncomingBody>(&self, request_id: String, head: &RequestHead, body: I) -> Handled<U::Body> {
        let started_ms = self.clock.now_ms();
        let mut log = RequestLog {
            request_id: request_id.clone(),
            method: head.method.clone(),
            path: head.path.clone(),
            ..RequestLog::default()
        };
        let deadline = Deadline::after(started_ms, self.config.deadline_ms);
        let outcome = match route(&head.method, &head.path) {
            Route::Preflight => cors::preflight(
                &self.config.cors,
                head.origin.as_deref(),
                head.access_control_request_headers.as_deref(),
            )
            .map(|headers| Reply { status: 204, headers, body: ReplyBody::Empty }),
            Route::Health => Ok(Reply::json(200, br#"{"status":"ok"}"#.to_vec())),
            Route::Models => self.models(head, &mut log),
            Route::Generations => self.generate(head, body, deadline, &mut log).await,
            Route::WrongMethod(allow) => Err(GatewayError::method_not_allowed(&head.method, &head.path, allow)),
            Route::Unknown => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("Unknown route: {} {}. This gateway serves POST /v1/images/generations and GET /v1/models.", head.method, head.path),
            )
            .with_code("unknown_route")),
        };
        let mut reply = outcome.unwrap_or_else(|error| {
            log.error_type = Some(error.kind.error_type());
            log.error = Some(error.message.clone());
            Reply::error(&error)
        });
        let now_ms = self.clock.now_ms();
        reply.headers.push(("x-request-id", request_id));
        reply.headers.push(("openai-processing-ms", now_ms.saturating_sub(started_ms).to_string()));
        if head.method != "OPTIONS" {
            reply.headers.extend(cors::response_headers(&self.config.cors, head.origin.as_deref()));
        }
        log.status = reply.status;
        log.latency_ms = now_ms.saturating_sub(started_ms);
        Handled { reply, log }
    }

    /// `GET /v1/models`: every model id and alias, in the OpenAI list shape.
    fn models(&self, head: &RequestHead, log: &mut RequestLog) -> Result<Reply<U::Body>, GatewayError> {
        log.key = Some(authenticate(head.authorization.as_deref(), self.keys)?.to_owned());
        #[derive(Serialize)]
        struct Model<'a> {
            id: &'a str,
            object: &'static str,
            created: u64,
            owned_by: &'a str,
        }
        let data: Vec<Model> = self
            .config
            .models
            .iter()
            .flat_map(|m| std::iter::once(&m.id).chain(&m.aliases).map(move |id| (id, &m.provider)))
            .map(|(id, provider)| Model { id, object: "model", created: 0, owned_by: provider })
            .collect();
        let body = serde_json::json!({ "object": "list", "data": data });
        Ok(Reply::json(200, body.to_string().into_bytes()))
    }

    /// `POST /v1/images/generations`: authenticate, read, parse, plan, then generate.
    async fn generate<I: IncomingBody>(
        &self,
        head: &RequestHead,
        body: I,
        deadline: Deadline,
        log: &mut RequestLog,
    ) -> Result<Reply<U::Body>, GatewayError> {
        log.key = Some(authenticate(head.authorization.as_deref(), self.keys)?.to_owned());
        let raw = body.read(self.config.max_body_bytes).await?;
        let request = parse_generation(head.content_type.as_deref(), &raw, self.config.max_body_bytes)?;
        if self.config.log_prompts {
            log.prompt = Some(request.prompt.clone());
        }
        let (model, provider) = self.config.resolve_model(request.model.as_deref())?;
        log.model = Some(model.id.clone());
        log.provider = Some(provider.id.clone());
        log.attempts += 1;
        match provider.kind {
            ProviderKind::TestPattern => {
                let answer = test_pattern::generate(&request, self.clock.now_ms() / 1000)?;
                Ok(Reply::json(200, answer))
            }
            ProviderKind::Openai => self.attempt(provider, model, &request, deadline).await,
        }
    }

    /// One upstream attempt: build, send within the deadline, classify, check the answer.
    async fn attempt(
        &self,
        provider: &ProviderConfig,
        model: &ModelConfig,
        request: &ImageRequest,
        deadline: Deadline,
    ) -> Result<Reply<U::Body>, GatewayError> {
        let secret_name = provider.api_key_secret.as_deref().expect("validated: openai providers name a secret");
        let key = self.secrets.get(secret_name).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Internal,
                format!("The provider '{}' has no API key: the secret '{secret_name}' is not set.", provider.id),
            )
            .with_code("provider_key_missing")
        })?;
        let upstream_request = openai::build_request(provider, model, request, key.clone());
        let remaining = deadline.remaining_ms(self.clock);
        if remaining == 0 {
            return Err(timeout_error(&provider.id, self.config.deadline_ms));
        }
        let mut reply = self
            .upstream
            .send(upstream_request, remaining)
            .await
            .map_err(|e| transport_error(e, &provider.id, self.config.deadline_ms))?;
        if !(200..300).contains(&reply.status) {
            let body = self.read_error_body(&mut reply.body, deadline).await;
            return Err(openai::error_from_answer(&provider.id, reply.status, reply.retry_after, &body, &key));
        }
        self.check_answer(&mut reply.body, deadline, &provider.id).await?;
        Ok(Reply {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: ReplyBody::Relay(reply.body),
        })
    }

    /// Reads an upstream error body (capped); a body that fails to arrive counts as empty.
    async fn read_error_body(&self, body: &mut U::Body, deadline: Deadline) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < MAX_ERROR_BODY_BYTES {
            let remaining = deadline.remaining_ms(self.clock);
            match body.next_chunk(remaining.max(1)).await {
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        out.truncate(MAX_ERROR_BODY_BYTES);
        out
    }

    /// Reads the start of a 200 answer until [`AnswerScan`] decides; a 502 when it has no images.
    async fn check_answer(&self, body: &mut U::Body, deadline: Deadline, provider_id: &str) -> Result<(), GatewayError> {
        let mut scan = AnswerScan::new();
        let mut read = 0usize;
        let verdict = loop {
            let remaining = deadline.remaining_ms(self.clock);
            if remaining == 0 {
                return Err(timeout_error(provider_id, self.config.deadline_ms));
            }
            match body.next_chunk(remaining).await {
                Ok(Some(chunk)) => {
                    let verdict = scan.feed(&chunk);
                    read += chunk.len();
                    if verdict != Verdict::NeedMore {
                        break verdict;
                    }
                    if read > MAX_UNDECIDED_BYTES {
                        break Verdict::Malformed;
                    }
                }
                Ok(None) => break scan.finish(),
                Err(e) => return Err(transport_error(e, provider_id, self.config.deadline_ms)),
            }
        };
        match verdict {
            Verdict::HasImages => Ok(()),
            Verdict::NoImages => Err(GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' answered 200 without any image in 'data'."),
            )
            .with_code("empty_upstream_answer")),
            Verdict::NeedMore | Verdict::Malformed => Err(GatewayError::new(
                ErrorKind::BadUpstream,
                format!("The upstream provider '{provider_id}' answered 200 with a body that is not an OpenAI Images answer."),
            )),
        }
    }
}

fn timeout_error(provider_id: &str, deadline_ms: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamTimeout,
        format!("The upstream provider '{provider_id}' did not answer within the {deadline_ms} ms deadline; the request was cancelled."),
    )
}

fn transport_error(error: TransportError, provider_id: &str, deadline_ms: u64) -> GatewayError {
    match error {
        TransportError::Timeout => timeout_error(provider_id, deadline_ms),
        TransportError::Failed(why) => GatewayError::new(
            ErrorKind::BadUpstream,
            format!("The gateway could not reach the upstream provider '{provider_id}': {why}"),
        )
        .with_code("upstream_unreachable"),
    }
}

/// The reply when the deployment itself is broken (its configuration or keys are invalid): a 500
/// naming the problem, for every request, until the deployment is fixed.
pub fn broken_deployment<B>(request_id: String, head: &RequestHead, problem: &str) -> Handled<B> {
    let error = GatewayError::new(ErrorKind::Internal, problem).with_code("invalid_configuration");
    let mut reply = Reply::error(&error);
    reply.headers.push(("x-request-id", request_id.clone()));
    reply.headers.push(("openai-processing-ms", "0".to_owned()));
    let log = RequestLog {
        request_id,
        method: head.method.clone(),
        path: head.path.clone(),
        status: reply.status,
        error_type: Some(error.kind.error_type()),
        error: Some(error.message),
        ..RequestLog::default()
    };
    Handled { reply, log }
}
