//! The OpenAI Chat Completions dialect: `POST …/chat/completions`,
//! `GET …/models`, and OpenAI-shaped errors.
//!
//! Usage semantics follow OpenAI: `cached_tokens` is a subset of
//! `prompt_tokens` (clamped to it), `reasoning_tokens` a subset of
//! `completion_tokens` (which therefore grows by them).

use serde_json::Value;

use crate::answer::Answer;
use crate::dialect::{with_retry_after, ApiCall};
use crate::http_request::Head;
use crate::http_response::{EventStream, Headers, Reply, Response};
use crate::openai_stream::StreamedCompletion;
use crate::openai_wire::{
    Choice, Completion, CompletionTokensDetails, ErrorBody, ErrorObject, Function, Message, Model, ModelList,
    PromptTokensDetails, ToolCall, Usage,
};
use crate::text::{last_user_text, make_id, prompt_tokens, reply_length, text_bytes, CREATED_AT};
use crate::tools::{choose_call, OfferedTool};

pub const SYSTEM_FINGERPRINT: &str = "fp_7b1d6c3e2a";
pub const SERVICE_TIER: &str = "default";

/// What the mock needs from a chat completion request.
struct ChatRequest {
    model: String,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
    answer: Answer,
}

/// A 400 the way OpenAI words validation failures (shared by every OpenAI endpoint).
pub struct Invalid {
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl Invalid {
    pub fn new(message: impl Into<String>, param: Option<&'static str>, code: Option<&'static str>) -> Self {
        Invalid { message: message.into(), param, code }
    }
}

pub fn chat_completions(call: &ApiCall<'_>) -> Reply {
    let request = match parse_request(call.body, call.controls.echo) {
        Ok(request) => request,
        Err(invalid) => {
            return Reply::Full(error_response(400, &invalid.message, invalid.param, invalid.code, call));
        }
    };
    let model = match &call.controls.served_model {
        Some(model) => model.as_str(),
        None => dated_snapshot(&request.model),
    };
    let id = make_id("chatcmpl-", call.body_hash, 29);
    let usage = (!call.controls.omit_usage).then(|| usage(&request, call));
    if let Some(usage) = usage.as_ref().filter(|_| !request.stream || request.include_usage) {
        crate::tally::note(model, usage.prompt_tokens, usage.completion_tokens);
    }
    if request.stream {
        let stream =
            StreamedCompletion { id: &id, model, call_id: tool_call_id(call), delta_bytes: call.controls.delta_bytes };
        let events = stream.events(&request.answer, usage.as_ref(), request.include_usage);
        Reply::Stream(EventStream { headers: common_headers(call), events })
    } else {
        Reply::Full(complete(&id, model, &request.answer, usage.as_ref(), call))
    }
}

/// Like the real API, some aliases are answered by a dated snapshot.
pub fn dated_snapshot(model: &str) -> &str {
    match model {
        "gpt-4o-mini" => "gpt-4o-mini-2024-07-18",
        "gpt-4o" => "gpt-4o-2024-08-06",
        other => other,
    }
}

/// With `echo`, the answer is the last user message's text, even when tools
/// are offered and whatever the max tokens (which are still validated).
fn parse_request(body: &[u8], echo: bool) -> Result<ChatRequest, Invalid> {
    let body = json_body(body)?;
    let model = required_model(&body)?;
    let messages = match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => return Err(Invalid::new("[] is too short - 'messages'", Some("messages"), None)),
        Some(_) => return Err(invalid_type("messages", "an array")),
        None => {
            let message = "Missing required parameter: 'messages'.";
            return Err(Invalid::new(message, Some("messages"), Some("missing_required_parameter")));
        }
    };
    let max_tokens = match optional_count(&body, "max_completion_tokens")? {
        Some(max) => Some(max),
        None => optional_count(&body, "max_tokens")?,
    };
    let content_bytes =
        messages.iter().map(|message| message.get("content").map_or(0, text_bytes)).fold(0, usize::saturating_add);
    let answer = if echo {
        Answer::Echo(last_user_text(messages))
    } else {
        match tool_call(&body, messages) {
            Some(call) => Answer::Tool(call),
            None => Answer::Text(reply_length(max_tokens)),
        }
    };
    Ok(ChatRequest {
        model: model.to_owned(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true),
        prompt_tokens: prompt_tokens(content_bytes, messages.len()),
        answer,
    })
}

/// The request body as JSON, or the 400 OpenAI sends for a body that is not.
pub fn json_body(body: &[u8]) -> Result<Value, Invalid> {
    serde_json::from_slice(body).map_err(|error| {
        Invalid::new(format!("We could not parse the JSON body of your request. ({error})"), None, None)
    })
}

pub fn required_model(body: &Value) -> Result<&str, Invalid> {
    let model = body.get("model").and_then(Value::as_str).filter(|m| !m.is_empty());
    model.ok_or_else(|| Invalid::new("you must provide a model parameter", None, None))
}

pub fn invalid_type(param: &'static str, expected: &str) -> Invalid {
    let message = format!("Invalid type for '{param}': expected {expected}.");
    Invalid::new(message, Some(param), Some("invalid_type"))
}

pub fn optional_count(body: &Value, param: &'static str) -> Result<Option<u64>, Invalid> {
    match body.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| invalid_type(param, "a non-negative integer")),
    }
}

/// A call of the forced or first function tool, unless tools are off
/// (`tool_choice: "none"`) or the conversation ends with a tool result, which
/// the model answers in text.
fn tool_call(body: &Value, messages: &[Value]) -> Option<crate::tools::ToolCall> {
    let tool_choice = body.get("tool_choice");
    if tool_choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_role = messages.last().and_then(|m| m.get("role")).and_then(Value::as_str);
    if matches!(last_role, Some("tool" | "function")) {
        return None;
    }
    let offered: Vec<OfferedTool<'_>> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| tool.get("function"))
        .filter_map(|function| {
            let name = function.get("name").and_then(Value::as_str)?;
            Some(OfferedTool { name, schema: function.get("parameters") })
        })
        .collect();
    let forced = tool_choice.and_then(|c| c.pointer("/function/name")).and_then(Value::as_str);
    choose_call(&offered, forced)
}

fn usage(request: &ChatRequest, call: &ApiCall<'_>) -> Usage {
    let controls = &call.controls;
    let completion_tokens = request.answer.output_tokens().saturating_add(controls.reasoning_tokens);
    Usage {
        prompt_tokens: request.prompt_tokens,
        completion_tokens,
        total_tokens: request.prompt_tokens.saturating_add(completion_tokens),
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: controls.cached_tokens.min(request.prompt_tokens),
            audio_tokens: 0,
        },
        completion_tokens_details: CompletionTokensDetails {
            reasoning_tokens: controls.reasoning_tokens,
            audio_tokens: 0,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
        },
    }
}

pub fn finish_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Tool(_) => "tool_calls",
        Answer::Text(length) if length.truncated => "length",
        Answer::Text(_) | Answer::Echo(_) => "stop",
    }
}

fn tool_call_id(call: &ApiCall<'_>) -> String {
    make_id("call_", call.body_hash ^ 0x7001, 24)
}

fn complete(id: &str, model: &str, answer: &Answer, usage: Option<&Usage>, call: &ApiCall<'_>) -> Response {
    let text = answer.text();
    let tool = match answer {
        Answer::Tool(tool) => Some((tool_call_id(call), tool.arguments_json(), &tool.name)),
        Answer::Text(_) | Answer::Echo(_) => None,
    };
    let message = Message {
        role: "assistant",
        content: text.as_deref(),
        tool_calls: tool.as_ref().map(|(call_id, arguments, name)| {
            [ToolCall { id: call_id, kind: "function", function: Function { name, arguments } }]
        }),
        refusal: (),
        annotations: [],
    };
    let completion = Completion {
        id,
        object: "chat.completion",
        created: CREATED_AT,
        model,
        choices: [Choice { index: 0, message, logprobs: (), finish_reason: finish_reason(answer) }],
        usage,
        service_tier: SERVICE_TIER,
        system_fingerprint: SYSTEM_FINGERPRINT,
    };
    let mut response = Response::json(200, to_json(&completion));
    response.headers = common_headers(call);
    response
}

/// Serializing these plain structs cannot fail; an empty body would show it did.
pub fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn common_headers(call: &ApiCall<'_>) -> Headers {
    vec![("x-request-id", call.request_id.clone().into())]
}

const MODELS: [Model; 4] = [
    Model { id: "gpt-4o-mini", object: "model", created: 1_721_172_741, owned_by: "system" },
    Model { id: "gpt-4o", object: "model", created: 1_715_367_049, owned_by: "system" },
    Model { id: "gpt-4.1", object: "model", created: 1_744_316_542, owned_by: "system" },
    Model { id: "o3-mini", object: "model", created: 1_737_146_383, owned_by: "system" },
];

pub fn models(call: &ApiCall<'_>) -> Response {
    let mut response = Response::json(200, to_json(&ModelList { object: "list", data: &MODELS }));
    response.headers = common_headers(call);
    response
}

/// 401 unless `Authorization: Bearer KEY`, worded like the real API.
pub fn authorize(head: &Head<'_>, key: &str, call: &ApiCall<'_>) -> Option<Response> {
    let Some(header) = head.header("authorization") else {
        let message = "You didn't provide an API key. You need to provide your API key in an Authorization \
                       header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
        return Some(error_response(401, message, None, None, call));
    };
    let token = header.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    let token = token.map_or(header, |(_, token)| token.trim());
    if token == key {
        return None;
    }
    let visible: String = token.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    let message = format!("Incorrect API key provided: ****{visible}. You can find your API key at https://platform.openai.com/account/api-keys.");
    Some(error_response(401, &message, None, Some("invalid_api_key"), call))
}

/// The error the real API sends for `status`, for `x-mock-status`.
pub fn injected_error(status: u16, call: &ApiCall<'_>) -> Response {
    let retry = call.controls.retry_after();
    let (message, code) = match status {
        429 => (
            format!(
                "Rate limit reached for tollgate-mock in organization org-mock on requests per min (RPM): \
                 Limit 60, Used 60, Requested 1. Please try again in {retry}s. \
                 Visit https://platform.openai.com/account/rate-limits to learn more."
            ),
            Some("rate_limit_exceeded"),
        ),
        401 => ("Incorrect API key provided.".to_owned(), Some("invalid_api_key")),
        404 => ("The model does not exist or you do not have access to it.".to_owned(), Some("model_not_found")),
        500 => ("The server had an error while processing your request. Sorry about that!".to_owned(), None),
        503 => ("The server is overloaded or not ready yet.".to_owned(), None),
        _ => (format!("Injected error {status} from tollgate-mock."), None),
    };
    error_response(status, &message, None, code, call)
}

/// `{"error": {"message", "type", "param", "code"}}`, the type following the status.
pub fn error_response(
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
    call: &ApiCall<'_>,
) -> Response {
    let mut response = plain_error(status, message, code).with_header("x-request-id", call.request_id.clone());
    if let Some(param) = param {
        let body = ErrorBody { error: ErrorObject { message, kind: error_type(status), param: Some(param), code } };
        response.body = to_json(&body);
    }
    with_retry_after(response, &call.controls)
}

/// An OpenAI-shaped error outside any API call (bad framing, unknown URL).
pub fn plain_error(status: u16, message: &str, code: Option<&str>) -> Response {
    let body = ErrorBody { error: ErrorObject { message, kind: error_type(status), param: None, code } };
    Response::json(status, to_json(&body))
}

fn error_type(status: u16) -> &'static str {
    match status {
        429 => "requests",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_calls::full;
    use serde_json::json;

    fn answer(body: &Value, headers: &[(&str, &str)]) -> Reply {
        crate::test_calls::answer(chat_completions, body, headers)
    }

    /// The JSON chunks of a stream, without the closing `[DONE]`.
    fn chunks(reply: Reply) -> Vec<Value> {
        let Reply::Stream(stream) = reply else { panic!("expected a stream") };
        let (done, chunks) = stream.events.split_last().unwrap();
        assert_eq!(done, b"data: [DONE]\n\n");
        chunks
            .iter()
            .map(|event| {
                let text = std::str::from_utf8(event).unwrap();
                serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap()
            })
            .collect()
    }

    fn content_deltas(chunks: &[Value]) -> Vec<String> {
        chunks.iter().skip(1).filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).map(str::to_owned).collect()
    }

    const ECHO: [(&str, &str); 1] = [("x-mock-reply", "echo")];

    #[test]
    fn echo_answers_with_the_last_user_text_ignoring_max_tokens_and_tools() {
        let body = json!({
            "model": "gpt-4o-mini",
            "max_tokens": 2,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "user", "content": "not this one"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Contact [EMAIL_1] "},
                    {"type": "image_url", "image_url": {"url": "http://x"}},
                    {"type": "text", "text": "about key sk-abc123, please."}
                ]}
            ]
        });
        let completion = full(answer(&body, &ECHO));
        let choice = &completion["choices"][0];
        assert_eq!(choice["message"]["content"], "Contact [EMAIL_1] about key sk-abc123, please.");
        assert!(choice["message"].get("tool_calls").is_none_or(Value::is_null));
        assert_eq!(choice["finish_reason"], "stop");
        let usage = &completion["usage"];
        assert_eq!(usage["completion_tokens"], 6);
        assert_eq!(usage["total_tokens"].as_u64(), usage["prompt_tokens"].as_u64().map(|p| p + 6));
    }

    #[test]
    fn echo_without_user_text_is_an_empty_reply_with_no_output_tokens() {
        let body = json!({"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]});
        let completion = full(answer(&body, &ECHO));
        assert_eq!(completion["choices"][0]["message"]["content"], "");
        assert_eq!(completion["usage"]["completion_tokens"], 0);
        assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn streamed_echo_sends_one_delta_per_word_and_the_usage_chunk() {
        let body = json!({
            "model": "gpt-4.1",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "echo  me\nback"}]
        });
        let chunks = chunks(answer(&body, &ECHO));
        assert_eq!(content_deltas(&chunks), ["echo  ", "me\n", "back"]);
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn delta_bytes_splits_the_echo_on_character_boundaries() {
        let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "héllo"}]});
        let chunks = chunks(answer(&body, &[("x-mock-reply", "echo"), ("x-mock-delta-bytes", "3")]));
        assert_eq!(content_deltas(&chunks), ["hé", "llo"]);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn delta_bytes_also_cuts_the_deterministic_sentence() {
        let body =
            json!({"model": "m", "stream": true, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
        let chunks = chunks(answer(&body, &[("x-mock-delta-bytes", "4")]));
        assert_eq!(content_deltas(&chunks), ["This", " is ", "a"]);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    }
}
