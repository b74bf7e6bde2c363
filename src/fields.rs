//! Reading JSON request fields with errors that name the field: shared by the request and the
//! routing policy parsers.

use serde_json::{Map, Value};

use crate::error::GatewayError;

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn wrong_type(param: &str, expected: &str, got: &Value) -> GatewayError {
    GatewayError::invalid_param(param, format!("Invalid type for '{param}': expected {expected}, but got {}.", type_name(got))).with_code("invalid_type")
}

/// Removes `param` from the body; JSON `null` counts as absent, as in the OpenAI API.
pub fn take(fields: &mut Map<String, Value>, param: &str) -> Option<Value> {
    fields.remove(param).filter(|v| !v.is_null())
}

pub fn optional_string(fields: &mut Map<String, Value>, param: &str) -> Result<Option<String>, GatewayError> {
    take(fields, param).map(|value| as_string(value, param)).transpose()
}

pub fn one_of(fields: &mut Map<String, Value>, param: &str, allowed: &[&str]) -> Result<Option<String>, GatewayError> {
    let Some(value) = optional_string(fields, param)? else { return Ok(None) };
    if allowed.contains(&value.as_str()) {
        Ok(Some(value))
    } else {
        Err(GatewayError::invalid_param(param, format!("Invalid value for '{param}': '{value}'. Supported values are: '{}'.", allowed.join("', '"))))
    }
}

/// An integer in `min..=max`; integral floats such as `2.0` are accepted.
pub fn optional_int(fields: &mut Map<String, Value>, param: &str, min: i64, max: i64) -> Result<Option<i64>, GatewayError> {
    take(fields, param).map(|value| as_int(&value, param, min, max)).transpose()
}

/// `value` as an integer in `min..=max`. Whole numbers may arrive as floats (`2.0`, as orq's
/// Python client sends them); a fraction is a type error, a huge whole number a range error.
pub fn as_int(value: &Value, param: &str, min: i64, max: i64) -> Result<i64, GatewayError> {
    let Value::Number(number) = value else { return Err(wrong_type(param, "an integer", value)) };
    let whole = number.as_i64().map(|i| i as f64).or_else(|| number.as_f64()).filter(|f| f.fract() == 0.0);
    match whole {
        Some(f) if f >= min as f64 && f <= max as f64 => Ok(f as i64),
        Some(_) => Err(GatewayError::invalid_param(param, format!("Invalid value for '{param}': {number}. It must be between {min} and {max}."))),
        None => Err(GatewayError::invalid_param(param, format!("Invalid value for '{param}': {number}. It must be a whole number.")).with_code("invalid_type")),
    }
}

/// `value` as a string.
pub fn as_string(value: Value, param: &str) -> Result<String, GatewayError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(wrong_type(param, "a string", &other)),
    }
}

/// `value` as a string of at most `max_chars` characters; longer is a 400 naming the limit.
pub fn as_short_string(value: Value, param: &str, max_chars: usize) -> Result<String, GatewayError> {
    let text = as_string(value, param)?;
    if text.chars().count() > max_chars {
        return Err(GatewayError::invalid_param(param, format!("'{param}' is longer than {max_chars} characters.")).with_code("string_above_max_length"));
    }
    Ok(text)
}
