//! Error responses the filter sends itself, shaped like the API the client speaks so its SDK
//! raises a normal, readable error.

use serde_json::json;

/// A local reply: status and JSON body. Sent with `content-type: application/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// For the rare case where the proxy refused a hostcall Tollgate needs to enforce policy:
    /// failing closed beats letting an unchecked request through.
    pub fn internal_error() -> Reply {
        openai_error(500, "server_error", "gateway_error", None, "The gateway could not process this request.")
    }
}

/// An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}`.
pub fn openai_error(status: u16, error_type: &str, code: &str, param: Option<&str>, message: &str) -> Reply {
    let body = json!({
        "error": { "message": message, "type": error_type, "param": param, "code": code }
    });
    Reply { status, body: body.to_string().into_bytes() }
}

/// An Anthropic-shaped error: `{"type": "error", "error": {"type", "message"}}`.
pub fn anthropic_error(status: u16, error_type: &str, message: &str) -> Reply {
    let body = json!({ "type": "error", "error": { "type": error_type, "message": message } });
    Reply { status, body: body.to_string().into_bytes() }
}

/// Anthropic's documented status → error type table (what its SDK maps statuses to).
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_errors_have_the_sdk_shape() {
        let reply = openai_error(400, "invalid_request_error", "invalid_json", Some("model"), "bad \"x\"");
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(value["error"]["message"], "bad \"x\"");
        assert_eq!(value["error"]["type"], "invalid_request_error");
        assert_eq!(value["error"]["param"], "model");
        assert_eq!(value["error"]["code"], "invalid_json");
        assert_eq!(reply.status, 400);
    }
}
