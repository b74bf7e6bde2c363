//! The deployment's settings, read from the environment once per isolate.

use std::cell::OnceCell;
use std::rc::Rc;

use worker::{console_warn, Env};

use crate::auth::KeySet;
use crate::config::Config;

/// What every request of this isolate is served with.
pub struct Settings {
    pub config: Config,
    pub keys: KeySet,
}

thread_local! {
    static SETTINGS: OnceCell<Rc<Result<Settings, String>>> = const { OnceCell::new() };
}

/// The settings, parsed and validated on the isolate's first request and shared after that.
/// An invalid configuration is kept as its error so every request reports it.
pub fn load(env: &Env) -> Rc<Result<Settings, String>> {
    SETTINGS.with(|cell| cell.get_or_init(|| Rc::new(read(env))).clone())
}

fn read(env: &Env) -> Result<Settings, String> {
    // IMAGEGATE_CONFIG may be a JSON string or a TOML table in wrangler.toml's [vars].
    let config = match env.var("IMAGEGATE_CONFIG") {
        Ok(text) => Config::from_json(&text.to_string())?,
        Err(_) => match env.object_var::<serde_json::Value>("IMAGEGATE_CONFIG") {
            Ok(table) => Config::from_json(&table.to_string())?,
            Err(_) => Config::embedded_default(),
        },
    };
    let keys = env
        .secret("IMAGEGATE_KEYS")
        .map(|s| s.to_string())
        .or_else(|_| env.var("IMAGEGATE_KEYS").map(|v| v.to_string()))
        .unwrap_or_default();
    let keys = KeySet::parse(&keys)?;
    if keys.is_empty() {
        console_warn!("IMAGEGATE_KEYS is not set: every request will be refused with 401");
    }
    Ok(Settings { config, keys })
}
