//! The wasm glue: the Workers `fetch` event, the runtime behind the core's traits, and the
//! conversion of a [`Reply`](crate::http::Reply) into a runtime response. Decides nothing.

mod cache;
mod coalescer;
mod events;
mod fetch;
mod files;
mod history;
mod keys;
mod limits;
mod plumbing;
mod respond;
mod runner;
mod runtime;
mod settings;

use wasm_bindgen::JsValue;
use worker::{console_log, console_warn, event, Context, Env, ScheduleContext, ScheduledEvent};

use crate::clock::Clock;
use crate::http::{Reply, ReplyBody};
use crate::pipeline::{broken_deployment, Gateway, Handled};
use crate::retention;
use crate::state::History;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let clock = runtime::WorkerClock;
    let request_id = runtime::request_id();
    let (head, declared_length) = runtime::head(&req);
    let loaded = settings::load(&env);
    let handled = match &*loaded {
        Ok(settings) => {
            let secrets = runtime::EnvSecrets(&env);
            let cache = cache::EdgeCache::new(&env);
            let coalescer = coalescer::EdgeCoalescer::new(&env);
            let history = history::D1History::new(&env);
            let files = files::R2Files::new(&env);
            let runner = runner::EdgeRunner::new(&env);
            let key_store = keys::D1Keys::new(&env);
            let limiter = limits::EdgeLimiter::new(&env);
            let gateway = Gateway::new(&settings.config, &settings.keys, &fetch::PLAIN, &secrets, &clock, &runtime::WorkerRandom)
                .with_state(&cache, &history)
                .with_managed_keys(&key_store, &limiter)
                .with_files(&files)
                .with_coalescer(&coalescer)
                .with_runner(&runner);
            gateway.handle(request_id, &head, runtime::IncomingWorkerBody::new(&req, declared_length)).await
        }
        Err(broken) => broken_deployment(request_id, &head, &broken.problem, broken.keys.as_ref()),
    };
    if let ReplyBody::Events(_) = &handled.reply.body {
        return respond_streamed(handled, env, loaded, &ctx);
    }
    if let Some(log) = &handled.log {
        web_sys::console::log_1(&JsValue::from_str(&log.to_line()));
    }
    if let Some(action) = handled.action {
        // After the answer; `action` is only made where a history keeps it.
        ctx.wait_until(record_with_files(env.clone(), handled.files, action));
    }
    let (store, flight) = (handled.store, handled.flight);
    let mut reply = handled.reply;
    let stored = match &reply.body {
        ReplyBody::Stored(id) => match files::stream(&env, id).await {
            Some(stream) => Some(stream),
            // Deleted between the core's look and now (retention ran in between).
            None => {
                reply = Reply::error(&crate::files::not_found(id));
                None
            }
        },
        _ => None,
    };
    let (response, body) = respond::into_response(reply, &ctx, store.is_some(), stored)?;
    // After the answer: the requests waiting for this one's generation first, then the store,
    // both from the buffer the answer was sent from.
    if store.is_some() || flight.is_some() {
        ctx.wait_until(async move {
            if let Some(flight) = flight {
                coalescer::end(&env, flight, body.as_ref()).await;
            }
            if let (Some(store), Some(body)) = (store, &body) {
                cache::store(&env, store, body).await;
            }
        });
    }
    Ok(response)
}

/// Stores a generation's images, then records its action: an action never names a file not
/// yet there.
async fn record_with_files(env: Env, new_files: Vec<crate::files::NewFile>, action: crate::state::Action) {
    files::store(&env, new_files).await;
    history::record(env, action).await;
}

/// The response for a relayed stream: its events are written after it is returned, and the
/// request finished once the stream has ended (`waitUntil`).
fn respond_streamed(
    handled: Handled<fetch::WorkerBody>,
    env: Env,
    loaded: std::rc::Rc<Result<settings::Settings, settings::Broken>>,
    ctx: &Context,
) -> worker::Result<web_sys::Response> {
    let Handled { mut reply, unfinished, .. } = handled;
    let (ReplyBody::Events(relay), Some(unfinished)) = (std::mem::replace(&mut reply.body, ReplyBody::Empty), unfinished) else {
        unreachable!("a relayed stream comes with its unfinished request");
    };
    let responded = events::pipe().and_then(|(readable, client)| Ok((respond::streamed(reply, &readable)?, client)));
    match responded {
        Ok((response, client)) => {
            ctx.wait_until(async move {
                if let Ok(settings) = &*loaded {
                    events::relay_and_finish(env, settings, *relay, client, unfinished).await;
                }
            });
            Ok(response)
        }
        Err(why) => {
            // The upstream's stream had begun (and is paid for): the request still ends in the
            // log, the action and the key's counters.
            let error = crate::error::GatewayError::new(crate::error::ErrorKind::Internal, "The gateway could not make the stream's response.")
                .with_log_detail(format!("{why:?}"));
            drop(relay);
            ctx.wait_until(async move {
                if let Ok(settings) = &*loaded {
                    events::finish(env, settings, unfinished, crate::event_relay::StreamEnd::undelivered(error)).await;
                }
            });
            Err(why.into())
        }
    }
}

/// The cron trigger (`wrangler.toml`'s `[triggers]`): deletes the actions older than
/// `retention_days`, and logs one line saying what went.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let Ok(settings) = &*settings::load(&env) else {
        console_warn!("{{\"warning\":\"retention skipped: the configuration is invalid\"}}");
        return;
    };
    let history = history::D1History::new(&env);
    if !history.keeps() {
        return;
    }
    let files = files::R2Files::new(&env);
    let days = settings.config.retention_days;
    match retention::sweep(&history, &files, runtime::WorkerClock.now_ms(), days).await {
        Ok(swept) => console_log!(
            "{{\"retention\":{{\"retention_days\":{days},\"cutoff_ms\":{},\"deleted\":{},\"files\":{},\"more\":{}}}}}",
            swept.cutoff_ms,
            swept.deleted,
            swept.files,
            swept.more
        ),
        Err(error) => console_warn!("{{\"warning\":\"retention failed\",\"error\":{:?}}}", error),
    }
}
