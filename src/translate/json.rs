//! Reading untrusted JSON with errors that name the field: every accessor takes the path of
//! what it reads, so a wrong type deep in `messages` says exactly where.

use serde_json::{Map, Value};

use super::{TranslateError, TranslateErrorKind};

pub type Object = Map<String, Value>;

/// Parses a body that must be one JSON object. serde_json rejects invalid UTF-8 and nesting
/// deeper than 128, so neither can exhaust the stack.
pub fn parse_object(body: &[u8], what: &str) -> Result<Object, TranslateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_json(format!("the {what} is empty")));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid_json(format!("the {what} must be a JSON object"))),
        // serde_json's messages give a position and never quote the input.
        Err(e) => Err(invalid_json(format!("the {what} is not valid JSON ({e})"))),
    }
}

fn invalid_json(message: String) -> TranslateError {
    TranslateError { kind: TranslateErrorKind::InvalidJson, param: None, message }
}

pub fn invalid(path: &str, message: impl Into<String>) -> TranslateError {
    TranslateError { kind: TranslateErrorKind::InvalidField, param: Some(path.to_string()), message: message.into() }
}

pub fn unsupported(path: &str, message: impl Into<String>) -> TranslateError {
    TranslateError { kind: TranslateErrorKind::Unsupported, param: Some(path.to_string()), message: message.into() }
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub fn at(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A value's JSON type, for messages.
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

fn wrong_type(path: &str, expected: &str, value: &Value) -> TranslateError {
    invalid(path, format!("expected {expected}, got {}", type_name(value)))
}

/// The field, treating an explicit `null` as absent (both APIs do).
pub fn field<'a>(object: &'a Object, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

pub fn opt_str<'a>(object: &'a Object, key: &str, path: &str) -> Result<Option<&'a str>, TranslateError> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(&join(path, key), "a string", other)),
    }
}

pub fn req_str<'a>(object: &'a Object, key: &str, path: &str) -> Result<&'a str, TranslateError> {
    opt_str(object, key, path)?.ok_or_else(|| invalid(&join(path, key), "missing"))
}

pub fn opt_bool(object: &Object, key: &str, path: &str) -> Result<Option<bool>, TranslateError> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(&join(path, key), "a boolean", other)),
    }
}

pub fn opt_u64(object: &Object, key: &str, path: &str) -> Result<Option<u64>, TranslateError> {
    match field(object, key) {
        None => Ok(None),
        Some(value) => {
            value.as_u64().map(Some).ok_or_else(|| wrong_type(&join(path, key), "a non-negative integer", value))
        }
    }
}

pub fn opt_number<'a>(object: &'a Object, key: &str, path: &str) -> Result<Option<&'a Value>, TranslateError> {
    match field(object, key) {
        None => Ok(None),
        Some(value @ Value::Number(_)) => Ok(Some(value)),
        Some(other) => Err(wrong_type(&join(path, key), "a number", other)),
    }
}

pub fn opt_object<'a>(object: &'a Object, key: &str, path: &str) -> Result<Option<&'a Object>, TranslateError> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(wrong_type(&join(path, key), "an object", other)),
    }
}

pub fn opt_array<'a>(object: &'a Object, key: &str, path: &str) -> Result<Option<&'a [Value]>, TranslateError> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(wrong_type(&join(path, key), "an array", other)),
    }
}

/// An array of strings (stop sequences): each element checked, `path` naming the array.
pub fn string_array(values: &[Value], path: &str) -> Result<Value, TranslateError> {
    for (i, value) in values.iter().enumerate() {
        if !value.is_string() {
            return Err(wrong_type(&at(path, i), "a string", value));
        }
    }
    Ok(Value::Array(values.to_vec()))
}

pub fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Object, TranslateError> {
    value.as_object().ok_or_else(|| wrong_type(path, "an object", value))
}

/// Appends a note once: the same field dropped in many messages is one note.
pub fn note(notes: &mut Vec<String>, text: String) {
    if !notes.contains(&text) {
        notes.push(text);
    }
}

/// The first `max` bytes of `text` (cut on a character boundary), for error messages that
/// quote an upstream's non-JSON answer.
pub fn excerpt(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_that_are_not_one_json_object_are_named_as_such() {
        for (body, says) in [
            (&b"  "[..], "is empty"),
            (b"[1]", "must be a JSON object"),
            (b"{\"a\": ", "not valid JSON"),
            (b"{\"a\": \"\xff\"}", "not valid JSON"),
        ] {
            let error = parse_object(body, "request body").unwrap_err();
            assert_eq!(error.kind, TranslateErrorKind::InvalidJson);
            assert!(error.message.contains(says), "{}", error.message);
        }
    }

    #[test]
    fn nesting_deeper_than_serde_jsons_limit_is_an_error_not_a_stack_overflow() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_object(deep.as_bytes(), "body").unwrap_err().kind, TranslateErrorKind::InvalidJson);
    }

    #[test]
    fn a_wrong_type_names_the_full_path() {
        let object = json!({"n": "two"});
        let error = opt_u64(object.as_object().unwrap(), "n", "messages[1]").unwrap_err();
        assert_eq!(error.param.as_deref(), Some("messages[1].n"));
        assert_eq!(error.message, "expected a non-negative integer, got a string");
    }

    #[test]
    fn null_is_treated_as_absent() {
        let object = json!({"stop": null});
        assert_eq!(opt_str(object.as_object().unwrap(), "stop", "").unwrap(), None);
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("café", 4), "caf");
        assert_eq!(excerpt("ok", 10), "ok");
    }
}
