//! Provider errors in the client's dialect, so its SDK raises its usual exception.
//!
//! Status codes pass through, so SDK retry logic keeps working (both SDKs retry 408, 409, 429
//! and 5xx), with one exception each way: Anthropic's non-standard 529 (overloaded) is 503 for
//! OpenAI clients, and OpenAI's 503 is 529 with `overloaded_error` for Anthropic clients. The
//! message is kept verbatim.
//!
//! For OpenAI clients, `type` is Anthropic's error type verbatim (`rate_limit_error`,
//! `overloaded_error`, …: nothing is lost) and `code` is OpenAI's own code where OpenAI has one
//! for the same condition (`invalid_api_key`, `insufficient_quota`, `rate_limit_exceeded`).
//! For Anthropic clients, `type` comes from OpenAI's `insufficient_quota` or else from the
//! status, as in Anthropic's documented table.

use serde_json::{json, Value};

use super::json::{excerpt, field};
use crate::reply::{anthropic_error_type, Reply};

/// Quoted from a non-JSON error body (an HTML page from a load balancer, say).
const MAX_EXCERPT_BYTES: usize = 200;

/// An Anthropic error response (`{"type":"error","error":{"type","message"}}`) → an OpenAI
/// error response (`{"error":{"message","type","param","code"}}`). Any other body (not JSON,
/// another shape) gives an error of the type the status implies, quoting the body's start.
pub fn anthropic_error_to_openai(status: u16, body: &[u8]) -> Reply {
    let (error_type, message) = match anthropic_error_object(body) {
        Some((error_type, message)) if message.is_empty() => {
            let message = format!("The upstream provider answered HTTP {status} ({error_type}).");
            (error_type, message)
        }
        Some(error) => error,
        None => (anthropic_error_type(status).to_string(), non_json_message(status, body)),
    };
    let status = if status == 529 { 503 } else { status };
    Reply { status, body: openai_error_body(&error_type, &message).to_string().into_bytes() }
}

/// An OpenAI error response → an Anthropic error response.
pub fn openai_error_to_anthropic(status: u16, body: &[u8]) -> Reply {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = match error {
        Some(Value::String(message)) if !message.is_empty() => message.clone(),
        Some(error) => match error.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            Some(message) => message.to_string(),
            None => format!("The upstream provider answered HTTP {status}."),
        },
        None => non_json_message(status, body),
    };
    let error_type = match error {
        Some(error) if is_quota_error(error) => "billing_error",
        _ => anthropic_error_type(status),
    };
    let status = if status == 503 { 529 } else { status };
    Reply { status, body: anthropic_error_body(error_type, &message).to_string().into_bytes() }
}

/// `{"type":"error","error":{…}}` (or a bare `{"error":{…}}`) → (type, message).
fn anthropic_error_object(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?.as_object()?;
    let error_type = field(error, "type").and_then(Value::as_str).unwrap_or("api_error");
    let message = field(error, "message").and_then(Value::as_str).unwrap_or_default();
    Some((error_type.to_string(), message.to_string()))
}

fn non_json_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = excerpt(text.trim(), MAX_EXCERPT_BYTES);
    if text.is_empty() {
        format!("The upstream provider answered HTTP {status} without an error body.")
    } else {
        format!("The upstream provider answered HTTP {status}: {text}")
    }
}

fn is_quota_error(error: &Value) -> bool {
    ["code", "type"].iter().any(|key| error.get(key).and_then(Value::as_str) == Some("insufficient_quota"))
}

/// The OpenAI error body for an Anthropic error type.
pub(super) fn openai_error_body(anthropic_type: &str, message: &str) -> Value {
    let code = match anthropic_type {
        "authentication_error" => Some("invalid_api_key"),
        "billing_error" => Some("insufficient_quota"),
        "rate_limit_error" => Some("rate_limit_exceeded"),
        _ => None,
    };
    json!({ "error": { "message": message, "type": anthropic_type, "param": null, "code": code } })
}

pub(super) fn anthropic_error_body(anthropic_type: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": anthropic_type, "message": message } })
}

/// The Anthropic error type for an OpenAI error object seen mid-stream, where the HTTP status
/// was already 200 and only the error's own `type` and `code` say what happened.
pub(super) fn anthropic_type_for_openai_error(error: &Value) -> &'static str {
    if is_quota_error(error) {
        return "billing_error";
    }
    let said = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default();
    match (said("type"), said("code")) {
        (_, "rate_limit_exceeded") | ("rate_limit_error" | "tokens" | "requests", _) => "rate_limit_error",
        (_, "invalid_api_key") | ("authentication_error", _) => "authentication_error",
        ("invalid_request_error", _) => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn an_anthropic_overload_is_a_503_for_openai_clients_with_the_type_kept() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        let reply = anthropic_error_to_openai(529, body);
        assert_eq!(reply.status, 503);
        assert_eq!(
            json_of(&reply),
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
        );
    }

    #[test]
    fn rate_limits_stay_429_with_openais_code() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}"#;
        let reply = anthropic_error_to_openai(429, body);
        assert_eq!(reply.status, 429);
        assert_eq!(json_of(&reply)["error"]["code"], "rate_limit_exceeded");
        assert_eq!(json_of(&reply)["error"]["message"], "Slow down");
    }

    #[test]
    fn every_anthropic_status_keeps_its_status_but_529() {
        for (status, anthropic_type, code) in [
            (400, "invalid_request_error", Value::Null),
            (401, "authentication_error", json!("invalid_api_key")),
            (402, "billing_error", json!("insufficient_quota")),
            (403, "permission_error", Value::Null),
            (404, "not_found_error", Value::Null),
            (413, "request_too_large", Value::Null),
            (500, "api_error", Value::Null),
            (504, "timeout_error", Value::Null),
        ] {
            let body = anthropic_error_body(anthropic_type, "m").to_string();
            let reply = anthropic_error_to_openai(status, body.as_bytes());
            assert_eq!(reply.status, status);
            assert_eq!(json_of(&reply)["error"]["type"], anthropic_type);
            assert_eq!(json_of(&reply)["error"]["code"], code, "{anthropic_type}");
        }
    }

    #[test]
    fn an_openai_503_is_an_anthropic_529_overloaded_error() {
        let body = br#"{"error":{"message":"The engine is currently overloaded","type":"server_error","param":null,"code":null}}"#;
        let reply = openai_error_to_anthropic(503, body);
        assert_eq!(reply.status, 529);
        assert_eq!(
            json_of(&reply),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "The engine is currently overloaded"}})
        );
    }

    #[test]
    fn openai_errors_get_anthropics_type_for_their_status() {
        for (status, expected) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (504, "timeout_error"),
        ] {
            let reply = openai_error_to_anthropic(status, br#"{"error":{"message":"m","type":"x"}}"#);
            assert_eq!(reply.status, status);
            assert_eq!(json_of(&reply)["error"]["type"], expected, "{status}");
        }
    }

    #[test]
    fn an_exhausted_openai_quota_is_a_billing_error_with_its_429_kept() {
        let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let reply = openai_error_to_anthropic(429, body);
        assert_eq!(reply.status, 429);
        assert_eq!(json_of(&reply)["error"]["type"], "billing_error");
    }

    #[test]
    fn non_json_error_bodies_are_quoted_briefly_by_status() {
        let page = format!("<html>{}</html>", "x".repeat(1000));
        let reply = anthropic_error_to_openai(502, page.as_bytes());
        let message = json_of(&reply)["error"]["message"].as_str().unwrap().to_string();
        assert!(message.starts_with("The upstream provider answered HTTP 502: <html>"), "{message}");
        assert!(message.len() < 300);
        assert_eq!(json_of(&reply)["error"]["type"], "api_error");
        let reply = openai_error_to_anthropic(429, b"\xff\xfe");
        assert_eq!(json_of(&reply)["error"]["type"], "rate_limit_error");
        assert!(json_of(&openai_error_to_anthropic(500, b"")).to_string().contains("without an error body"));
    }

    #[test]
    fn an_error_without_a_message_still_says_what_happened() {
        let reply = anthropic_error_to_openai(500, br#"{"type":"error","error":{"type":"api_error"}}"#);
        assert_eq!(json_of(&reply)["error"]["message"], "The upstream provider answered HTTP 500 (api_error).");
        let reply = openai_error_to_anthropic(502, br#"{"error":{"message":""}}"#);
        assert_eq!(json_of(&reply)["error"]["message"], "The upstream provider answered HTTP 502.");
    }

    #[test]
    fn stream_errors_are_typed_from_the_openai_error_itself() {
        assert_eq!(
            anthropic_type_for_openai_error(&json!({"type": "tokens", "code": "rate_limit_exceeded"})),
            "rate_limit_error"
        );
        assert_eq!(anthropic_type_for_openai_error(&json!({"type": "server_error"})), "api_error");
        assert_eq!(anthropic_type_for_openai_error(&json!({"code": "insufficient_quota"})), "billing_error");
    }
}
