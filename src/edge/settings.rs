//! The deployment's settings, read from the environment once per isolate.

use std::cell::OnceCell;
use std::rc::Rc;

use wasm_bindgen::JsValue;
use worker::{console_warn, Env};

use crate::auth::KeySet;
use crate::config::Config;

/// What every request of this isolate is served with.
pub struct Settings {
    pub config: Config,
    pub keys: KeySet,
}

/// Why the deployment cannot serve, and its gateway keys when those could still be read (a
/// caller with a valid key is told the problem; anyone else only that there is one).
pub struct Broken {
    pub problem: String,
    pub keys: Option<KeySet>,
}

thread_local! {
    static SETTINGS: OnceCell<Rc<Result<Settings, Broken>>> = const { OnceCell::new() };
}

/// The settings, parsed and validated on the isolate's first request and shared after that.
/// An invalid configuration is kept as its error so every request reports it.
pub fn load(env: &Env) -> Rc<Result<Settings, Broken>> {
    SETTINGS.with(|cell| cell.get_or_init(|| Rc::new(read(env))).clone())
}

fn read(env: &Env) -> Result<Settings, Broken> {
    let keys = read_keys(env);
    match (read_config(env), keys) {
        (Ok(config), Ok(keys)) => Ok(Settings { config, keys }),
        (Err(problem), keys) => Err(Broken { problem, keys: keys.ok() }),
        (Ok(_), Err(problem)) => Err(Broken { problem, keys: None }),
    }
}

fn read_config(env: &Env) -> Result<Config, String> {
    // IMAGEGATE_CONFIG may be a JSON string or a table in wrangler.toml's [vars]; only when it
    // is not set at all does the embedded default apply.
    let binding = js_sys::Reflect::get(env, &JsValue::from_str("IMAGEGATE_CONFIG")).unwrap_or(JsValue::UNDEFINED);
    let config = if binding.is_undefined() {
        Config::embedded_default()
    } else if let Some(text) = binding.as_string() {
        Config::from_json(&text)?
    } else if binding.is_object() && !js_sys::Array::is_array(&binding) {
        let text = js_sys::JSON::stringify(&binding).map(String::from).unwrap_or_default();
        Config::from_json(&text)?
    } else {
        return Err("IMAGEGATE_CONFIG must be a JSON string or a table of settings".to_owned());
    };
    Ok(config)
}

fn read_keys(env: &Env) -> Result<KeySet, String> {
    let keys = env.secret("IMAGEGATE_KEYS").map(|s| s.to_string()).or_else(|_| env.var("IMAGEGATE_KEYS").map(|v| v.to_string())).unwrap_or_default();
    let keys = KeySet::parse(&keys)?;
    if keys.is_empty() {
        console_warn!("IMAGEGATE_KEYS is not set: every request will be refused with 401");
    }
    Ok(keys)
}
