//! LLM API dialects: which API a request speaks, and what the filter reads from its requests
//! (the [`CanonicalRequest`], and on demand their [`text`]), responses and stream events. Only
//! what a decision needs is deserialised; the original bytes go upstream untouched unless a
//! feature rewrites them.

pub mod anthropic;
mod canonical;
mod chat_usage;
pub mod openai;
mod strict;
pub mod text;

pub use canonical::{parse_request, BodyError, CanonicalRequest, OutputLimit, Sampling, Tool, ToolChoice};

use serde::Deserialize;

use crate::reply::{self, Reply};
use crate::routing::Dialect;
use crate::sse::SseEvent;
use crate::usage::TokenCounts;
use chat_usage::ChatUsage;

/// An LLM API the filter understands, detected from the method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions (`POST …/chat/completions`), also spoken by Azure OpenAI,
    /// vLLM, Ollama, Groq, Mistral, DeepSeek and most self-hosted servers.
    OpenAiChat,
    /// OpenAI Responses (`POST …/responses`).
    OpenAiResponses,
    /// OpenAI Embeddings (`POST …/embeddings`).
    OpenAiEmbeddings,
    /// Anthropic Messages (`POST …/messages`).
    AnthropicMessages,
}

impl Api {
    /// `None` for anything the filter does not inspect (those requests pass through untouched).
    /// The query string is ignored, so Azure's `?api-version=` paths are recognised.
    pub fn detect(method: &str, path: &str) -> Option<Api> {
        Api::detect_path(path).filter(|_| Api::is_api_method(method))
    }

    /// Every API call is a POST (see [`Api::detect`]).
    pub fn is_api_method(method: &str) -> bool {
        method.eq_ignore_ascii_case("POST")
    }

    /// The API whose path this is, whatever the method (see [`Api::detect`]). Anthropic's
    /// `…/messages/count_tokens` takes a Messages request: it is the Messages API (see
    /// [`is_count_tokens`]).
    pub fn detect_path(path: &str) -> Option<Api> {
        let path = path_only(path);
        let (_, last) = path.rsplit_once('/')?;
        match last {
            "completions" if path.ends_with("/chat/completions") => Some(Api::OpenAiChat),
            "responses" => Some(Api::OpenAiResponses),
            "embeddings" => Some(Api::OpenAiEmbeddings),
            "messages" => Some(Api::AnthropicMessages),
            "count_tokens" if path.ends_with("/messages/count_tokens") => Some(Api::AnthropicMessages),
            _ => None,
        }
    }

    /// The name used in usage records and logs.
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAiChat => "openai.chat",
            Api::OpenAiResponses => "openai.responses",
            Api::OpenAiEmbeddings => "openai.embeddings",
            Api::AnthropicMessages => "anthropic.messages",
        }
    }

    /// An error the client's SDK parses as its own API's error. `code` is OpenAI's `code`
    /// (`invalid_json`, `model_not_allowed`, …); Anthropic errors carry the type its SDK maps
    /// from the status instead.
    pub fn error_reply(self, status: u16, code: &str, param: Option<&str>, message: &str) -> Reply {
        match self {
            Api::AnthropicMessages => reply::anthropic_error(status, reply::anthropic_error_type(status), message),
            _ => {
                let error_type = match status {
                    429 => "rate_limit_error",
                    500..=599 => "server_error",
                    _ => "invalid_request_error",
                };
                reply::openai_error(status, error_type, code, param, message)
            }
        }
    }

    /// The path suffix that names this API after a provider's path prefix.
    pub fn path_suffix(self) -> &'static str {
        match self {
            Api::OpenAiChat => "/chat/completions",
            Api::OpenAiResponses => "/responses",
            Api::OpenAiEmbeddings => "/embeddings",
            Api::AnthropicMessages => "/messages",
        }
    }

    /// Whether a provider of `dialect` speaks this API natively.
    pub fn native_to(self, dialect: Dialect) -> bool {
        matches!(
            (self, dialect),
            (Api::AnthropicMessages, Dialect::Anthropic)
                | (Api::OpenAiChat | Api::OpenAiResponses | Api::OpenAiEmbeddings, Dialect::OpenAi)
        )
    }

    /// Model and usage of a complete (non-streaming) response body; `None` when the body is not
    /// a JSON object at all.
    pub fn read_response(self, body: &[u8]) -> Option<ResponseFacts> {
        let (model, tokens) = match self {
            Api::OpenAiChat | Api::OpenAiEmbeddings => {
                let head = ResponseHead::<ChatUsage>::read(body)?;
                (head.model_name(), head.usage.map(|usage| usage.tokens()).unwrap_or_default())
            }
            Api::AnthropicMessages | Api::OpenAiResponses => {
                let head = ResponseHead::<serde_json::Value>::read(body)?;
                let tokens = match (self, head.usage.as_ref()) {
                    (_, None) => TokenCounts::default(),
                    (Api::AnthropicMessages, Some(usage)) => anthropic::usage(usage),
                    (_, Some(usage)) => openai::responses_usage(usage),
                };
                (head.model_name(), tokens)
            }
        };
        Some(ResponseFacts { model, tokens })
    }

    /// What one stream event says about model, usage, generated text and the end of the stream.
    pub fn read_event(self, event: &SseEvent) -> EventFacts {
        match self {
            Api::AnthropicMessages => anthropic::read_event(event),
            Api::OpenAiResponses => openai::read_responses_event(event),
            Api::OpenAiChat | Api::OpenAiEmbeddings => openai::read_chat_event(event),
        }
    }
}

/// The two members of a response body the filter reads. Everything else (the answer itself) is
/// skipped without being built: a tree of the whole answer cost more than the rest of the
/// response side together.
///
/// `usage` is read as `U`: the Chat Completions counts directly ([`ChatUsage`]), the other
/// APIs' usage as a tree.
#[derive(Deserialize)]
struct ResponseHead<U> {
    model: Option<serde_json::Value>,
    usage: Option<U>,
}

impl<U: serde::de::DeserializeOwned> ResponseHead<U> {
    /// `None` when the body is not a JSON object. A body the typed read refuses (a member
    /// repeated) is read as a tree, which keeps the last copy, as it always has.
    fn read(body: &[u8]) -> Option<ResponseHead<U>> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        serde_json::from_slice(body).ok().or_else(|| {
            let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
            let object = value.as_object_mut()?;
            let usage = object.remove("usage").map(U::deserialize).transpose().ok()?;
            Some(ResponseHead { model: object.remove("model"), usage })
        })
    }

    fn model_name(&self) -> Option<String> {
        self.model.as_ref().and_then(|m| m.as_str()).map(str::to_string)
    }
}

/// What a complete response body says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub model: Option<String>,
    pub tokens: TokenCounts,
}

/// What one stream event says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFacts {
    pub model: Option<String>,
    pub tokens: TokenCounts,
    /// Generated text (content, tool-call arguments, reasoning) carried by this event, for
    /// estimating output when the provider reports no usage.
    pub text: String,
    /// The provider's last event: `[DONE]`, `message_stop`, `response.completed`.
    pub terminal: bool,
    /// OpenAI's extra final chunk that carries only usage (`choices: []`).
    pub usage_only: bool,
}

/// Anthropic's token counting endpoint, `POST …/messages/count_tokens`: a Messages request
/// (without `max_tokens`) answered with `{"input_tokens": N}`, nothing generated.
pub fn is_count_tokens(path: &str) -> bool {
    path_only(path).ends_with("/messages/count_tokens")
}

/// A request path without its query, fragment and trailing slashes. (A byte search: a
/// `split` on a set of chars costs every request a few hundred instructions more.)
fn path_only(path: &str) -> &str {
    let end = path.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(path.len());
    path.get(..end).unwrap_or(path).trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_recognised_with_any_prefix_and_query() {
        let cases = [
            ("/v1/chat/completions", Api::OpenAiChat),
            ("/v1/chat/completions/", Api::OpenAiChat),
            ("/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", Api::OpenAiChat),
            ("/api/v1/chat/completions", Api::OpenAiChat),
            ("/v1/responses", Api::OpenAiResponses),
            ("/v1/embeddings", Api::OpenAiEmbeddings),
            ("/openai/deployments/emb/embeddings?api-version=1", Api::OpenAiEmbeddings),
            ("/v1/messages", Api::AnthropicMessages),
            ("/anthropic/v1/messages", Api::AnthropicMessages),
            ("/v1/messages/count_tokens", Api::AnthropicMessages),
            ("/v1/messages/count_tokens?beta=true", Api::AnthropicMessages),
        ];
        for (path, api) in cases {
            assert_eq!(Api::detect("POST", path), Some(api), "{path}");
            assert_eq!(is_count_tokens(path), path.contains("count_tokens"), "{path}");
        }
    }

    #[test]
    fn other_methods_and_paths_pass_through() {
        assert_eq!(Api::detect("GET", "/v1/chat/completions"), None);
        assert_eq!(Api::detect("POST", "/v1/completions"), None);
        assert_eq!(Api::detect("POST", "/v1/chat/completions/abc"), None);
        assert_eq!(Api::detect("POST", "/v1/models"), None);
        assert_eq!(Api::detect("POST", "/v1/count_tokens"), None);
        assert_eq!(Api::detect("POST", "/v1/messages/batches"), None);
        assert_eq!(Api::detect("GET", "/v1/responses/resp_123"), None);
        assert_eq!(Api::detect("POST", "messages"), None);
    }

    #[test]
    fn errors_take_the_shape_of_the_clients_api() {
        let openai = Api::OpenAiChat.error_reply(400, "invalid_json", None, "bad");
        let value: serde_json::Value = serde_json::from_slice(&openai.body).unwrap();
        assert_eq!(value["error"]["code"], "invalid_json");
        let anthropic = Api::AnthropicMessages.error_reply(413, "request_too_large", None, "big");
        let value: serde_json::Value = serde_json::from_slice(&anthropic.body).unwrap();
        assert_eq!(value["type"], "error");
        assert_eq!(value["error"]["type"], "request_too_large");
        assert_eq!(value["error"]["message"], "big");
    }

    #[test]
    fn a_response_is_read_for_its_model_and_usage_only() {
        let body = br#" {"id": "x", "choices": [{"message": {"content": "hi"}}], "model": "gpt-4o",
                        "usage": {"prompt_tokens": 7, "completion_tokens": 2}}"#;
        let facts = Api::OpenAiChat.read_response(body).unwrap();
        assert_eq!(facts.model.as_deref(), Some("gpt-4o"));
        assert_eq!(facts.tokens.input.map(|c| c.tokens), Some(7));
        assert_eq!(facts.tokens.output.map(|c| c.tokens), Some(2));
        let repeated = br#"{"model": "a", "model": "b", "usage": null}"#;
        assert_eq!(Api::OpenAiChat.read_response(repeated).unwrap().model.as_deref(), Some("b"), "last copy");
        let odd = br#"{"model": 42, "usage": "none"}"#;
        assert_eq!(Api::AnthropicMessages.read_response(odd), Some(ResponseFacts::default()));
        for not_an_object in [&b"[1, 2]"[..], b"\"s\"", b"", b"  ", b"{\"model\": \"a\"", b"{} x"] {
            assert_eq!(Api::OpenAiChat.read_response(not_an_object), None);
        }
    }
}
