//! The fakes every pipeline test drives the gateway through: a scripted upstream, a fake clock
//! that only moves when the fakes say so, fixed secrets and draws, and a harness that serves one
//! request and returns what the client and the log got, with every upstream call made.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use futures_executor::block_on;
use imagegate::auth::{key_digest_hex, KeySet};
use imagegate::clock::{Clock, Random};
use imagegate::config::Config;
use imagegate::error::GatewayError;
use imagegate::http::{IncomingBody, ReplyBody, RequestHead};
use imagegate::jobs::{Journal, Journaled, MemoryRunner};
use imagegate::pipeline::FlightEnd;
use imagegate::pipeline::{Gateway, Handled};
use imagegate::secret::{Secret, Secrets};
use imagegate::state::{Cache, Files, History, MemoryCache, MemoryFiles, MemoryHistory, MemoryKeys, MemoryLimiter, Pending, ScriptedCoalescer};
use imagegate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamReply, UpstreamRequest};
use serde_json::Value;

pub const GATEWAY_KEY: &str = "sk-gateway-test";
/// A second tenant's key (labelled `other`).
pub const OTHER_GATEWAY_KEY: &str = "sk-gateway-other-tenant";
pub const PROVIDER_KEY: &str = "sk-provider-secret-value";

/// A clock that only moves when the fakes say so; sleeps are recorded and pass instantly.
pub struct FakeClock(pub Cell<u64>, pub RefCell<Vec<u64>>);
impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
    fn sleep(&self, ms: u64) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        self.1.borrow_mut().push(ms);
        self.0.set(self.0.get() + ms);
        Box::pin(async {})
    }
}

/// A random source that always draws the same number (0.5 gives exact backoffs).
pub struct FixedDraw(pub f64);
impl Random for FixedDraw {
    fn unit(&self) -> f64 {
        self.0
    }

    /// Distinct bytes on every call (new keys differ), the same in every run.
    fn fill(&self, bytes: &mut [u8]) {
        static DRAWN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let draw = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = draw.wrapping_mul(31).wrapping_add(i as u8);
        }
    }
}

/// One scripted upstream answer.
pub struct Script {
    pub latency_ms: u64,
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub content_type: &'static str,
    pub location: Option<&'static str>,
    /// The declared length; by default a one-chunk body's own length, none for a chunked one.
    pub declared_length: Option<u64>,
    pub chunks: Vec<Vec<u8>>,
    pub cut_off: bool,
    /// The body stops sending after its last chunk, and never ends.
    pub stall: bool,
}

pub fn answer(status: u16, body: &str) -> Script {
    Script {
        latency_ms: 10,
        status,
        retry_after: None,
        content_type: "application/json",
        location: None,
        declared_length: None,
        chunks: vec![body.as_bytes().to_vec()],
        cut_off: false,
        stall: false,
    }
}

/// A 200 event stream of `events` (whole events, each its own chunk).
pub fn event_stream(events: Vec<Vec<u8>>) -> Script {
    Script { content_type: "text/event-stream", chunks: events, ..answer(200, "") }
}

/// A connection that breaks after the head of a 200, before any of its body.
pub fn cut_off_after_head() -> Script {
    Script { chunks: Vec::new(), cut_off: true, ..answer(200, "") }
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &'static str) -> Script {
    Script { location: Some(location), ..answer(status, "") }
}

/// A request the runtime refuses to make: it never leaves the gateway.
pub fn not_sent() -> Script {
    answer(1, "")
}

/// A call that is made and never answered (for a run killed mid-call).
pub fn hang() -> Script {
    answer(2, "")
}

/// A connection that fails before any answer.
pub fn connection_refused() -> Script {
    answer(0, "")
}

/// Raw image bytes, as an image host serves them.
pub fn image_bytes(bytes: &[u8], content_type: &'static str) -> Script {
    Script { content_type, chunks: vec![bytes.to_vec()], ..answer(200, "") }
}

pub struct FakeUpstream<'c> {
    pub clock: &'c FakeClock,
    pub script: RefCell<VecDeque<Script>>,
    pub calls: RefCell<Vec<UpstreamRequest>>,
    /// The time each call was given.
    pub limits: RefCell<Vec<u64>>,
}

/// Replays what was read when relayed, as the real body does.
pub struct FakeBody<'c> {
    pub clock: &'c FakeClock,
    pub chunks: VecDeque<Vec<u8>>,
    pub read: Vec<Vec<u8>>,
    /// The time the rest may take once relayed, as the core set it.
    pub relay_limit_ms: Option<u64>,
    /// The connection breaks after the last chunk instead of ending the body.
    pub cut_off: bool,
    /// Nothing more comes after the last chunk: each read waits its whole limit.
    pub stall: bool,
}

impl FakeBody<'_> {
    /// The whole answer as the edge would deliver it.
    pub fn deliver(self) -> Vec<u8> {
        self.read.into_iter().chain(self.chunks).flatten().collect()
    }
}

impl<'c> FakeUpstream<'c> {
    /// An upstream that answers with `script`, in order, on `clock`'s time.
    pub fn new(clock: &'c FakeClock, script: Vec<Script>) -> Self {
        FakeUpstream { clock, script: RefCell::new(script.into()), calls: RefCell::new(Vec::new()), limits: RefCell::new(Vec::new()) }
    }
}

impl<'c> Upstream for FakeUpstream<'c> {
    type Body = FakeBody<'c>;
    async fn send(&self, request: UpstreamRequest, limit_ms: u64) -> Result<UpstreamReply<FakeBody<'c>>, TransportError> {
        self.calls.borrow_mut().push(request);
        self.limits.borrow_mut().push(limit_ms);
        let script = self.script.borrow_mut().pop_front().expect("an upstream call nobody scripted");
        if script.latency_ms > limit_ms {
            self.clock.0.set(self.clock.0.get() + limit_ms);
            return Err(TransportError::Timeout);
        }
        self.clock.0.set(self.clock.0.get() + script.latency_ms);
        if script.status == 0 {
            return Err(TransportError::Failed("connection refused".to_owned()));
        }
        if script.status == 1 {
            return Err(TransportError::NotSent("the header 'x-key' is not valid".to_owned()));
        }
        if script.status == 2 {
            // The call left and no answer ever comes: the run is killed while it waits.
            std::future::pending::<()>().await;
        }
        let length = script.declared_length.or_else(|| (script.chunks.len() == 1).then(|| script.chunks[0].len() as u64));
        Ok(UpstreamReply {
            status: script.status,
            retry_after: script.retry_after.map(str::to_owned),
            retry_after_ms: None,
            content_type: Some(script.content_type.to_owned()),
            location: script.location.map(str::to_owned),
            length,
            body: FakeBody {
                clock: self.clock,
                chunks: script.chunks.into(),
                read: Vec::new(),
                relay_limit_ms: None,
                cut_off: script.cut_off,
                stall: script.stall,
            },
        })
    }
}

impl UpstreamBody for FakeBody<'_> {
    async fn next_chunk(&mut self, limit_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        self.clock.0.set(self.clock.0.get() + 1);
        let chunk = self.chunks.pop_front();
        if chunk.is_none() && self.cut_off {
            return Err(TransportError::Failed("Network connection lost.".to_owned()));
        }
        if chunk.is_none() && self.stall {
            self.clock.0.set(self.clock.0.get() + limit_ms);
            return Err(TransportError::Timeout);
        }
        self.read.extend(chunk.clone());
        Ok(chunk)
    }

    fn relay_within(&mut self, limit_ms: u64) {
        self.relay_limit_ms = Some(limit_ms);
    }
}

/// The management key (the secret `IMAGEGATE_ADMIN_KEY`): reads everyone's records.
pub const MANAGEMENT_KEY: &str = "sk-imagegate-management";
/// The secret file URLs are signed with.
pub const FILES_SECRET: &str = "files-secret-for-tests";
/// Where the harness's gateway is reached (what its own URLs start with).
pub const BASE: &str = "http://gateway.test";

/// The id every request the harness serves gets (the edge draws one per request).
pub const REQUEST_ID: &str = "req_0123456789abcdef0123456789abcdef";

/// A journal in memory: the paid calls noted, shared by a run and its reruns.
#[derive(Default)]
pub struct MemoryJournal(pub Cell<u32>);

impl Journal for MemoryJournal {
    fn paid_calls(&self) -> Pending<'_, Result<u32, String>> {
        let calls = self.0.get();
        Box::pin(async move { Ok(calls) })
    }

    fn note_paid_call(&self) -> Pending<'_, Result<(), String>> {
        self.0.set(self.0.get() + 1);
        Box::pin(async { Ok(()) })
    }
}

pub struct FixedSecrets;
impl Secrets for FixedSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        match name {
            "MOCK_KEY" => Some(Secret::new(PROVIDER_KEY)),
            imagegate::files::SECRET_NAME => Some(Secret::new(FILES_SECRET)),
            imagegate::auth::ADMIN_KEY_SECRET => Some(Secret::new(MANAGEMENT_KEY)),
            _ => None,
        }
    }
}

pub struct Body(pub Vec<u8>);
impl IncomingBody for Body {
    async fn read(self, max_bytes: usize) -> Result<Vec<u8>, GatewayError> {
        if self.0.len() > max_bytes {
            return Err(imagegate::request::body_too_large(max_bytes));
        }
        Ok(self.0)
    }
}

pub const CONFIG: &str = r#"{
  "deadline_ms": 1000,
  "cors": {"allowed_origins": ["https://app.example"]},
  "providers": [
    {"id": "imagegate", "kind": "test_pattern"},
    {"id": "mock", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key_secret": "MOCK_KEY"},
    {"id": "backup", "kind": "openai", "base_url": "http://127.0.0.1:10/v1", "api_key_secret": "MOCK_KEY"},
    {"id": "keyless", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key_secret": "UNSET"},
    {"id": "bfl", "kind": "bfl", "api_key_secret": "MOCK_KEY"},
    {"id": "replicate", "kind": "replicate", "api_key_secret": "MOCK_KEY"}
  ],
  "models": [
    {"id": "imagegate/test-pattern", "provider": "imagegate"},
    {"id": "mock/gpt-image-1", "provider": "mock", "aliases": ["gpt-image-1"], "pricing": [{"cost_usd": 0.04, "unit": "image"}]},
    {"id": "mock/lenient", "provider": "mock", "upstream_model": "gpt-image-1", "drop_params": ["style", "steps"]},
    {"id": "backup/m", "provider": "backup", "supports": {"sizes": ["1024x1024", "auto"]}},
    {"id": "keyless/m", "provider": "keyless"},
    {"id": "bfl/flux", "provider": "bfl", "upstream_model": "flux-pro-1.1", "aliases": ["flux"]},
    {"id": "replicate/flux", "provider": "replicate", "upstream_model": "black-forest-labs/flux-schnell"}
  ]
}"#;

pub struct Harness {
    pub config: Config,
    pub keys: KeySet,
    pub clock: FakeClock,
    pub draw: FixedDraw,
    /// The response cache; answers are stored after they are served, as the edge does.
    pub cache: MemoryCache,
    /// Every generation's action, recorded after its answer as the edge does.
    pub history: MemoryHistory,
    /// The images of recorded generations, kept only with `keep_files` (set by
    /// [`Harness::keeping_files`]); those kept after the answer are stored as the edge does.
    pub files: MemoryFiles,
    pub keep_files: bool,
    /// The managed keys' counters.
    pub limiter: MemoryLimiter,
    /// The managed keys ([`Harness::managed_key`] adds one).
    pub key_store: MemoryKeys,
    /// Leads every claim unless a test queues other outcomes.
    pub coalescer: ScriptedCoalescer,
    /// Keeps the jobs of asynchronous requests for [`Harness::run_job`].
    pub runner: MemoryRunner,
    /// How many writes of a relayed stream the client takes before it leaves (all, unset).
    pub client_stays: Cell<Option<usize>>,
}

impl Harness {
    pub fn new() -> Self {
        Harness::with_config(CONFIG)
    }

    /// The standard harness with a file store: recorded generations keep their images.
    pub fn keeping_files() -> Self {
        Harness { keep_files: true, ..Harness::new() }
    }

    /// The standard configuration with a 60 s deadline, for retries and polls that wait.
    pub fn long() -> Self {
        Harness::with_config(&CONFIG.replace(r#""deadline_ms": 1000"#, r#""deadline_ms": 60000"#))
    }

    pub fn with_config(config: &str) -> Self {
        Harness {
            config: Config::from_json(config).unwrap(),
            keys: KeySet::parse(&format!("{} other:{}", key_digest_hex(GATEWAY_KEY), key_digest_hex(OTHER_GATEWAY_KEY))).unwrap(),
            clock: FakeClock(Cell::new(1_700_000_000_000), RefCell::new(Vec::new())),
            draw: FixedDraw(0.5),
            cache: MemoryCache::default(),
            history: MemoryHistory::default(),
            files: MemoryFiles::default(),
            keep_files: false,
            limiter: MemoryLimiter::default(),
            key_store: MemoryKeys::default(),
            coalescer: ScriptedCoalescer::default(),
            runner: MemoryRunner::default(),
            client_stays: Cell::new(None),
        }
    }

    /// Creates a managed key with `fields` (the key API's, e.g. `{"rpm": 1}`) through
    /// `POST /api/v1/keys` with the management key; returns the key and its hash.
    pub fn managed_key(&self, fields: Value) -> (String, String) {
        let mut body = fields;
        body["name"] = Value::from("test key");
        let created = self.serve("POST", "/api/v1/keys", Some(&format!("Bearer {MANAGEMENT_KEY}")), &body.to_string(), vec![]);
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        let json = created.json();
        (json["key"].as_str().unwrap().to_owned(), json["data"]["hash"].as_str().unwrap().to_owned())
    }

    /// Serves one request against `script`; returns the status, headers, body and upstream calls.
    pub fn serve(&self, method: &str, path: &str, auth: Option<&str>, body: &str, script: Vec<Script>) -> Served {
        self.serve_with(method, path, auth, None, body, script)
    }

    pub fn serve_with(&self, method: &str, path: &str, auth: Option<&str>, config_header: Option<&str>, body: &str, script: Vec<Script>) -> Served {
        let (path, query) = path.split_once('?').map_or((path, None), |(path, query)| (path, Some(query.to_owned())));
        let head = RequestHead {
            method: method.into(),
            path: path.into(),
            query,
            content_type: Some("application/json".into()),
            authorization: auth.map(str::to_owned),
            origin: Some("https://app.example".into()),
            access_control_request_headers: None,
            imagegate_config: config_header.map(str::to_owned),
            ..RequestHead::default()
        };
        self.serve_head(head, body, script)
    }

    /// A generation on `path` with gateway key `key` and the cache headers given.
    pub fn generate_with(&self, path: &str, key: &str, cache: Option<&str>, cache_control: Option<&str>, body: &str, script: Vec<Script>) -> Served {
        let head = RequestHead {
            method: "POST".into(),
            path: path.into(),
            content_type: Some("application/json".into()),
            authorization: Some(format!("Bearer {key}")),
            imagegate_cache: cache.map(str::to_owned),
            cache_control: cache_control.map(str::to_owned),
            ..RequestHead::default()
        };
        self.serve_head(head, body, script)
    }

    /// Serves a request with `head`: the edge's part after the answer (history, cache store)
    /// included.
    pub fn serve_head(&self, head: RequestHead, body: &str, script: Vec<Script>) -> Served {
        self.serve_bytes(head, body.as_bytes().to_vec(), script)
    }

    /// [`Harness::serve_head`] with a body of any bytes (a multipart form).
    pub fn serve_bytes(&self, mut head: RequestHead, body: Vec<u8>, script: Vec<Script>) -> Served {
        head.base.get_or_insert_with(|| BASE.to_owned());
        let upstream = FakeUpstream::new(&self.clock, script);
        let gateway = Gateway::new(&self.config, &self.keys, &upstream, &FixedSecrets, &self.clock, &self.draw)
            .with_state(&self.cache, &self.history)
            .with_managed_keys(&self.key_store, &self.limiter)
            .with_coalescer(&self.coalescer)
            .with_runner(&self.runner);
        let gateway = if self.keep_files { gateway.with_files(&self.files) } else { gateway };
        let jobs_before = self.runner.jobs.borrow().len();
        let Handled { mut reply, log, action, store, files, flight, unfinished } = block_on(gateway.handle(REQUEST_ID.into(), &head, Body(body)));
        // A relayed stream goes to the client, then the request finishes, as the edge does.
        let mut streamed = None;
        let (log, action, files) = match (std::mem::replace(&mut reply.body, ReplyBody::Empty), unfinished) {
            (ReplyBody::Events(relay), Some(unfinished)) => {
                let mut client = Client { stay: self.client_stays.get(), ..Client::default() };
                let end = block_on(relay.pump(&mut client, &self.clock));
                assert!(client.refused <= 1, "nothing is sent once the client has gone");
                let finished = block_on(gateway.finish_stream(unfinished, end));
                streamed = Some(client);
                (finished.log, finished.action, finished.files)
            }
            (body, _) => {
                reply.body = body;
                (log.expect("a finished request's line"), action, files)
            }
        };
        // The runner writes the queued action of a job it accepts, as the edge's does.
        for job in self.runner.jobs.borrow().iter().skip(jobs_before) {
            block_on(self.history.record(job.queued.clone()));
        }
        for file in files {
            block_on(self.files.put(file)).unwrap();
        }
        if let Some(action) = action {
            block_on(self.history.record(action));
        }
        let body = match reply.body {
            ReplyBody::Empty => streamed.as_ref().map(|client| client.sent.concat()).unwrap_or_default(),
            ReplyBody::Bytes(bytes) => bytes,
            ReplyBody::Relay(body) => body.deliver(),
            ReplyBody::Stored(id) => self.files.files.borrow()[&id].bytes.clone(),
            ReplyBody::Events(_) => unreachable!("relayed above"),
        };
        // The edge stores the answer's own body.
        if let Some(store) = store {
            block_on(self.cache.put(&store.key, body.clone(), self.clock.now_ms(), store.ttl_secs));
        }
        let calls = upstream.calls.into_inner();
        let limits = upstream.limits.into_inner();
        let leftover = upstream.script.into_inner().len();
        assert_eq!(leftover, 0, "every scripted upstream answer is used");
        let writes = streamed.map(|client| client.sent).unwrap_or_default();
        Served { status: reply.status, headers: reply.headers, body, calls, limits, log_line: log.to_line(), attempts: log.attempts, flight, writes }
    }

    /// Runs the oldest job the runner holds as the edge's runner does, against `script`, with
    /// `journal` (which a rerun shares with the run it follows): its upstream journaled, its
    /// images and action recorded. The job stays with the runner (to be run again).
    pub fn run_job(&self, journal: &MemoryJournal, script: Vec<Script>) -> Served {
        let job = self.runner.jobs.borrow().first().cloned().expect("a job to run");
        let upstream = FakeUpstream::new(&self.clock, script);
        let journaled = Journaled { inner: &upstream, journal };
        let gateway = Gateway::new(&self.config, &self.keys, &journaled, &FixedSecrets, &self.clock, &self.draw)
            .with_state(&self.cache, &self.history)
            .with_managed_keys(&self.key_store, &self.limiter)
            .with_runner(&self.runner);
        let gateway = if self.keep_files { gateway.with_files(&self.files) } else { gateway };
        let Handled { reply, log, action, files, .. } = block_on(gateway.run(&job, journal));
        let log = log.expect("a job's run is never a relayed stream");
        for file in files {
            block_on(self.files.put(file)).unwrap();
        }
        if let Some(action) = action {
            // The runner's write replaces the queued action.
            self.history.actions.borrow_mut().retain(|a| a.id != action.id);
            block_on(self.history.record(action));
        }
        let body = match reply.body {
            ReplyBody::Bytes(bytes) => bytes,
            ReplyBody::Relay(body) => body.deliver(),
            _ => Vec::new(),
        };
        let calls = upstream.calls.into_inner();
        Served {
            status: reply.status,
            headers: reply.headers,
            body,
            calls,
            limits: Vec::new(),
            log_line: log.to_line(),
            attempts: log.attempts,
            flight: None,
            writes: Vec::new(),
        }
    }

    /// Serves a generation by a caller with the gateway key, returning the reply as the edge
    /// would get it (a relayed body still unread), for tests of how an answer is relayed.
    pub fn handle_generation(&self, body: &str, script: Vec<Script>) -> Handled<FakeBody<'_>> {
        let upstream = FakeUpstream::new(&self.clock, script);
        let gateway = Gateway::new(&self.config, &self.keys, &upstream, &FixedSecrets, &self.clock, &self.draw);
        let head = RequestHead {
            method: "POST".into(),
            path: "/v1/images/generations".into(),
            content_type: Some("application/json".into()),
            authorization: Some(format!("Bearer {GATEWAY_KEY}")),
            ..RequestHead::default()
        };
        block_on(gateway.handle("req_test".into(), &head, Body(body.as_bytes().to_vec())))
    }

    /// `POST /api/v1/images`: an OpenRouter caller, who is always answered in base64.
    pub fn openrouter(&self, body: &str, script: Vec<Script>) -> Served {
        self.serve("POST", "/api/v1/images", Some(&format!("Bearer {GATEWAY_KEY}")), body, script)
    }

    pub fn generate(&self, body: &str, script: Vec<Script>) -> Served {
        self.serve("POST", "/v1/images/generations", Some(&format!("Bearer {GATEWAY_KEY}")), body, script)
    }
}

pub struct Served {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub calls: Vec<UpstreamRequest>,
    pub limits: Vec<u64>,
    pub log_line: String,
    pub attempts: u32,
    /// How a generation the request led for identical waiting ones ended.
    pub flight: Option<FlightEnd>,
    /// A relayed stream's writes to the client, in order (each whole events).
    pub writes: Vec<Vec<u8>>,
}

/// The client of a relayed stream: keeps what it was sent, and may leave after `stay` writes
/// (counting the writes tried after that in `refused`).
#[derive(Default)]
pub struct Client {
    pub sent: Vec<Vec<u8>>,
    pub stay: Option<usize>,
    pub refused: usize,
}

impl imagegate::event_relay::EventSink for Client {
    async fn send(&mut self, events: Vec<u8>, limit_ms: u64) -> bool {
        assert!(limit_ms >= imagegate::event_relay::MIN_SEND_MS, "a client always has time to take an event");
        if self.stay.is_some_and(|stay| self.sent.len() >= stay) {
            self.refused += 1;
            return false;
        }
        self.sent.push(events);
        true
    }
}

impl Served {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
    pub fn everything_sent(&self) -> String {
        format!("{:?} {} {}", self.headers, String::from_utf8_lossy(&self.body), self.log_line)
    }
}

pub const OK: &str = r#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}],"usage":{"total_tokens":5}}"#;

/// The upstream each call went to: `mock` or `backup`, from its URL.
pub fn providers_called(served: &Served) -> Vec<&'static str> {
    served.calls.iter().map(|c| if c.url.contains(":10/") { "backup" } else { "mock" }).collect()
}

pub fn trail(served: &Served) -> Vec<String> {
    // Statuses only: durations depend on the script.
    served.header("x-imagegate-attempts").unwrap_or("").split(", ").map(|a| a.rsplit_once(';').unwrap().0.to_owned()).collect()
}
