//! OpenAI Chat Completions: the fields the filter reads from requests and responses.
//! Only what a decision needs is deserialised; everything else is skipped, and the original
//! bytes always go upstream untouched.

use serde::Deserialize;

use crate::pricing::TokenUsage;

/// What the filter needs from a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// Absent on Azure OpenAI, where the deployment in the path names the model.
    pub model: Option<String>,
    pub stream: bool,
}

#[derive(Deserialize)]
struct RawChatRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Why a request body could not be read. The message is safe to show the client: it never
/// quotes the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub message: String,
    /// The request field at fault, when there is one (OpenAI's `param`).
    pub param: Option<&'static str>,
}

pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError {
            message: "The request body is empty: send a JSON object with `model` and `messages`.".to_string(),
            param: None,
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| BodyError {
        message: format!("The request body is not valid JSON ({}).", describe_json_error(&e)),
        param: None,
    })?;
    if !value.is_object() {
        return Err(BodyError { message: "The request body must be a JSON object.".to_string(), param: None });
    }
    let raw: RawChatRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let param = match e.path().to_string().as_str() {
            "model" => Some("model"),
            "stream" => Some("stream"),
            _ => None,
        };
        let field = param.unwrap_or("body");
        BodyError { message: format!("Invalid type for `{field}`: {}.", e.into_inner()), param }
    })?;
    Ok(ChatRequest { model: raw.model, stream: raw.stream.unwrap_or(false) })
}

/// serde_json's message without the offending text; position only.
fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// What the filter reads from a non-streaming chat response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    pub model: Option<String>,
    pub usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct RawUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<RawPromptDetails>,
}

#[derive(Deserialize)]
struct RawPromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// `None` when the body is not a chat completion object at all. A body that is one but
/// carries no (or a malformed) `usage` gives `usage: None`.
pub fn parse_chat_response(body: &[u8]) -> Option<ChatResponse> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let model = object.get("model").and_then(|m| m.as_str()).map(str::to_string);
    let usage = object.get("usage").and_then(|u| RawUsage::deserialize(u).ok()).map(|u| TokenUsage {
        input: u.prompt_tokens,
        cached_input: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        output: u.completion_tokens,
    });
    Some(ChatResponse { model, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream_flag() {
        let req = parse_chat_request(br#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#).unwrap();
        assert_eq!(req, ChatRequest { model: Some("gpt-4o-mini".into()), stream: true });
        let req = parse_chat_request(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(req, ChatRequest { model: None, stream: false });
    }

    #[test]
    fn empty_and_invalid_bodies_are_errors_that_do_not_quote_the_body() {
        assert!(parse_chat_request(b"").unwrap_err().message.contains("empty"));
        assert!(parse_chat_request(b"  \n").unwrap_err().message.contains("empty"));
        let err = parse_chat_request(b"{\"model\": \"secret-prompt").unwrap_err();
        assert!(err.message.contains("not valid JSON"));
        assert!(!err.message.contains("secret-prompt"));
        assert!(parse_chat_request(b"[1]").unwrap_err().message.contains("JSON object"));
        assert!(parse_chat_request(b"{} trailing").unwrap_err().message.contains("not valid JSON"));
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        let err = parse_chat_request(br#"{"model": 42}"#).unwrap_err();
        assert_eq!(err.param, Some("model"));
        let err = parse_chat_request(br#"{"model": "m", "stream": "yes"}"#).unwrap_err();
        assert_eq!(err.param, Some("stream"));
    }

    #[test]
    fn invalid_utf8_inside_strings_is_rejected() {
        let err = parse_chat_request(b"{\"model\": \"\xff\"}").unwrap_err();
        assert!(err.message.contains("not valid JSON"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_chat_request(body.as_bytes()).is_err());
    }

    #[test]
    fn reads_usage_with_cached_tokens() {
        let body = br#"{"id":"x","model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":20,"completion_tokens":5,
            "total_tokens":25,"prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0}}}"#;
        let resp = parse_chat_response(body).unwrap();
        assert_eq!(resp.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(resp.usage, Some(TokenUsage { input: 20, cached_input: 8, output: 5 }));
    }

    #[test]
    fn missing_or_malformed_usage_is_none() {
        assert_eq!(parse_chat_response(br#"{"model":"m"}"#).unwrap().usage, None);
        assert_eq!(parse_chat_response(br#"{"model":"m","usage":null}"#).unwrap().usage, None);
        assert_eq!(
            parse_chat_response(br#"{"model":"m","usage":{"prompt_tokens":-3,"completion_tokens":1}}"#).unwrap().usage,
            None
        );
        assert_eq!(parse_chat_response(b"<html>bad gateway</html>"), None);
    }
}
