//! The wasm glue: the Workers `fetch` event, the runtime behind the core's traits, and the
//! conversion of a [`Reply`](crate::http::Reply) into a runtime response. Decides nothing.

mod cache;
mod coalescer;
mod fetch;
mod history;
mod respond;
mod runtime;
mod settings;

use worker::{console_log, console_warn, event, Context, Env, ScheduleContext, ScheduledEvent};

use crate::clock::Clock;
use crate::pipeline::{broken_deployment, Gateway};
use crate::retention;
use crate::state::History;
use crate::state::Off;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let clock = runtime::WorkerClock;
    let request_id = runtime::request_id();
    let head = runtime::head(&req);
    let handled = match &*settings::load(&env) {
        Ok(settings) => {
            let secrets = runtime::EnvSecrets(&env);
            let cache = cache::EdgeCache::new(&env);
            let coalescer = coalescer::EdgeCoalescer::new(&env);
            let history = history::D1History::new(&env);
            let gateway = Gateway::new(&settings.config, &settings.keys, &fetch::WorkerUpstream, &secrets, &clock, &runtime::WorkerRandom)
                .with_state(&cache, &history, &Off)
                .with_coalescer(&coalescer);
            gateway.handle(request_id, &head, runtime::IncomingWorkerBody::new(&req)).await
        }
        Err(broken) => broken_deployment(request_id, &head, &broken.problem, broken.keys.as_ref()),
    };
    console_log!("{}", handled.log.to_line());
    if let Some(action) = handled.action {
        // Recorded after the answer; `action` is only made where a history keeps it.
        ctx.wait_until(history::record(env.clone(), action));
    }
    let (store, flight) = (handled.store, handled.flight);
    let (response, body) = respond::into_response(handled.reply, &ctx, store.is_some())?;
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
    let days = settings.config.retention_days;
    match retention::sweep(&history, runtime::WorkerClock.now_ms(), days).await {
        Ok(swept) => console_log!(
            "{{\"retention\":{{\"retention_days\":{days},\"cutoff_ms\":{},\"deleted\":{},\"more\":{}}}}}",
            swept.cutoff_ms,
            swept.deleted,
            swept.more
        ),
        Err(error) => console_warn!("{{\"warning\":\"retention failed\",\"error\":{:?}}}", error),
    }
}
