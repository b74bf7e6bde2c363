//! The wasm glue: the Workers `fetch` event, the runtime behind the core's traits, and the
//! conversion of a [`Reply`](crate::http::Reply) into a runtime response. Decides nothing.

mod cache;
mod fetch;
mod respond;
mod runtime;
mod settings;

use worker::{console_log, event, Context, Env};

use crate::pipeline::{broken_deployment, Gateway};
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
            let gateway =
                Gateway::new(&settings.config, &settings.keys, &fetch::WorkerUpstream, &secrets, &clock, &runtime::WorkerRandom).with_state(&cache, &Off, &Off);
            gateway.handle(request_id, &head, runtime::IncomingWorkerBody::new(&req)).await
        }
        Err(broken) => broken_deployment(request_id, &head, &broken.problem, broken.keys.as_ref()),
    };
    console_log!("{}", handled.log.to_line());
    let response = respond::into_response(handled.reply, &ctx)?;
    if let Some(store) = handled.store {
        cache::store_after(&env, &ctx, store);
    }
    Ok(response)
}
