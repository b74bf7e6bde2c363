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

thread_local! {
    static SETTINGS: OnceCell<Rc<Result<Settings, String>>> = const { OnceCell::new() };
}

/// The settings, parsed and validated on the isolate's first request and shared after that.
/// An invalid configuration is kept as its error so every request reports it.
pub fn load(env: &Env) -> Rc<Result<Settings, String>> {
    SETTINGS.with(|cell| cell.get_or_init(|| Rc::new(read(env))).clone())
}

fn read(env: &Env) -> Result<Settings, String> {
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
    let keys = env.secret("IMAGEGATE_KEYS").map(|s| s.to_string()).or_else(|_| env.var("IMAGEGATE_KEYS").map(|v| v.to_string())).unwrap_or_default();
    let keys = KeySet::parse(&keys)?;
    if keys.is_empty() {
        console_warn!("IMAGEGATE_KEYS is not set: every request will be refused with 401");
    }
    Ok(Settings { config, keys })
}
