//! The Anthropic Messages dialect: `POST …/messages`, `POST …/messages/count_tokens` and
//! Anthropic-shaped errors.
//!
//! Usage semantics follow Anthropic: `cache_read_input_tokens` and
//! `cache_creation_input_tokens` are additive to `input_tokens`, not subsets.
//! `message_start` carries the input side (and `output_tokens: 1`, as the real
//! API does); `message_delta` carries cumulative totals. Under the
//! `omit-usage` fault the `usage` keys are dropped from the message and from
//! `message_delta`, although the real API always sends them.

use serde_json::Value;

use crate::answer::Answer;
use crate::anthropic_wire::{
    Block, BlockDelta, CacheCreation, DeltaUsage, ErrorBody, ErrorObject, Event, Message, StopDelta, Usage,
};
use crate::dialect::{with_retry_after, ApiCall};
use crate::http_request::Head;
use crate::http_response::{EventStream, Headers, Reply, Response};
use crate::text::{last_user_text, make_id, prompt_tokens, reply_length, text_bytes};
use crate::tools::{choose_call, fragments, OfferedTool, ToolCall};

struct MessagesRequest {
    model: String,
    stream: bool,
    input_tokens: u64,
    answer: Answer,
}

pub fn messages(call: &ApiCall<'_>) -> Reply {
    let request = match parse_request(call.body, call.controls.echo) {
        Ok(request) => request,
        Err(message) => return Reply::Full(error_response(400, &message, call)),
    };
    let model = call.controls.served_model.as_deref().unwrap_or(&request.model);
    let id = make_id("msg_01", call.body_hash, 22);
    let usage = (!call.controls.omit_usage).then(|| usage(&request, call));
    if let Some(usage) = &usage {
        let input = usage
            .input_tokens
            .saturating_add(usage.cache_read_input_tokens)
            .saturating_add(usage.cache_creation_input_tokens);
        crate::tally::note(model, input, usage.output_tokens);
    }
    if request.stream {
        let events = stream_events(&id, model, &request, usage.as_ref(), call);
        Reply::Stream(EventStream { headers: common_headers(call), events })
    } else {
        Reply::Full(complete(&id, model, &request.answer, usage.as_ref(), call))
    }
}

/// `POST …/messages/count_tokens`: `{"input_tokens": N}`, N the input a Messages request with
/// these messages, system prompt and tools reports (without cache knobs). As the real API does,
/// it refuses what only generation takes (`max_tokens`, `stream`: "Extra inputs are not
/// permitted"), so a gateway that adds them is caught. Nothing is tallied: counting is free.
pub fn count_tokens(call: &ApiCall<'_>) -> Reply {
    let counted = (|| -> Result<u64, String> {
        let body: Value =
            serde_json::from_slice(call.body).map_err(|error| format!("Invalid JSON in request body: {error}"))?;
        let object = body.as_object().ok_or("Input should be a valid dictionary")?;
        for extra in ["max_tokens", "stream"] {
            if object.contains_key(extra) {
                return Err(format!("{extra}: Extra inputs are not permitted"));
            }
        }
        match body.get("model") {
            Some(Value::String(_)) => {}
            Some(_) => return Err("model: Input should be a valid string".to_owned()),
            None => return Err("model: Field required".to_owned()),
        }
        let messages = match body.get("messages") {
            Some(Value::Array(messages)) => messages,
            Some(_) => return Err("messages: Input should be a valid list".to_owned()),
            None => return Err("messages: Field required".to_owned()),
        };
        Ok(prompt_tokens(prompt_text_bytes(&body, messages), messages.len()))
    })();
    match counted {
        Ok(input_tokens) => {
            let mut response = Response::json(200, to_json(&serde_json::json!({ "input_tokens": input_tokens })));
            response.headers = common_headers(call);
            Reply::Full(response)
        }
        Err(message) => Reply::Full(error_response(400, &message, call)),
    }
}

/// Bytes of prompt text: every message's content and the system prompt.
fn prompt_text_bytes(body: &Value, messages: &[Value]) -> usize {
    let text =
        messages.iter().map(|message| message.get("content").map_or(0, text_bytes)).fold(0, usize::saturating_add);
    text.saturating_add(body.get("system").map_or(0, text_bytes))
}

/// Validation messages use the API's `field: problem` wording. With `echo`, the
/// answer is the last user message's text, even when tools are offered and
/// whatever `max_tokens` says (it is still required and validated).
fn parse_request(body: &[u8], echo: bool) -> Result<MessagesRequest, String> {
    let body: Value = serde_json::from_slice(body).map_err(|error| format!("Invalid JSON in request body: {error}"))?;
    if !body.is_object() {
        return Err("Input should be a valid dictionary".to_owned());
    }
    let model = match body.get("model") {
        Some(Value::String(model)) => model,
        Some(_) => return Err("model: Input should be a valid string".to_owned()),
        None => return Err("model: Field required".to_owned()),
    };
    let messages = match body.get("messages") {
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err("messages: Input should be a valid list".to_owned()),
        None => return Err("messages: Field required".to_owned()),
    };
    let max_tokens = match body.get("max_tokens") {
        Some(value) => value.as_u64().ok_or("max_tokens: Input should be a valid integer")?,
        None => return Err("max_tokens: Field required".to_owned()),
    };
    let answer = if echo {
        Answer::Echo(last_user_text(messages))
    } else {
        match tool_call(&body, messages) {
            Some(call) => Answer::Tool(call),
            None => Answer::Text(reply_length(Some(max_tokens))),
        }
    };
    Ok(MessagesRequest {
        model: model.clone(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        input_tokens: prompt_tokens(prompt_text_bytes(&body, messages), messages.len()),
        answer,
    })
}

/// A call of the forced or first client tool, unless tools are off
/// (`tool_choice: {"type": "none"}`) or the last turn hands back a
/// `tool_result`, which the model answers in text. Server tools (no
/// `input_schema`) are never called.
fn tool_call(body: &Value, messages: &[Value]) -> Option<ToolCall> {
    let tool_choice = body.get("tool_choice");
    if tool_choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_blocks = messages.last().and_then(|m| m.get("content")).and_then(Value::as_array);
    let ends_with_tool_result =
        last_blocks.into_iter().flatten().any(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"));
    if ends_with_tool_result {
        return None;
    }
    let offered: Vec<OfferedTool<'_>> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| {
            let schema = tool.get("input_schema")?;
            let name = tool.get("name").and_then(Value::as_str)?;
            Some(OfferedTool { name, schema: Some(schema) })
        })
        .collect();
    let forced = tool_choice
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("tool"))
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str);
    choose_call(&offered, forced)
}

fn usage(request: &MessagesRequest, call: &ApiCall<'_>) -> Usage {
    let controls = &call.controls;
    Usage {
        input_tokens: request.input_tokens,
        cache_creation_input_tokens: controls.cache_write_tokens,
        cache_read_input_tokens: controls.cache_read_tokens,
        cache_creation: CacheCreation {
            ephemeral_5m_input_tokens: controls.cache_write_tokens,
            ephemeral_1h_input_tokens: 0,
        },
        output_tokens: request.answer.output_tokens(),
        service_tier: "standard",
    }
}

fn stop_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Tool(_) => "tool_use",
        Answer::Text(length) if length.truncated => "max_tokens",
        Answer::Text(_) | Answer::Echo(_) => "end_turn",
    }
}

fn tool_use_id(call: &ApiCall<'_>) -> String {
    make_id("toolu_01", call.body_hash ^ 0x7001, 22)
}

fn complete(id: &str, model: &str, answer: &Answer, usage: Option<&Usage>, call: &ApiCall<'_>) -> Response {
    let text;
    let tool_id;
    let block = match answer {
        Answer::Text(_) | Answer::Echo(_) => {
            text = answer.text().unwrap_or_default();
            Block::Text { text: &text }
        }
        Answer::Tool(tool) => {
            tool_id = tool_use_id(call);
            Block::ToolUse { id: &tool_id, name: &tool.name, input: &tool.arguments }
        }
    };
    let message = Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content: &[block],
        stop_reason: Some(stop_reason(answer)),
        stop_sequence: (),
        usage,
    };
    let mut response = Response::json(200, to_json(&message));
    response.headers = common_headers(call);
    response
}

fn stream_events(
    id: &str,
    model: &str,
    request: &MessagesRequest,
    usage: Option<&Usage>,
    call: &ApiCall<'_>,
) -> Vec<Vec<u8>> {
    // The opening usage knows the input side; output so far is one token.
    let opening_usage = usage.map(|usage| Usage { output_tokens: 1, ..usage.clone() });
    let message = Message {
        id,
        kind: "message",
        role: "assistant",
        model,
        content: &[],
        stop_reason: None,
        stop_sequence: (),
        usage: opening_usage.as_ref(),
    };
    let mut events = vec![sse_event(&Event::MessageStart { message })];
    match &request.answer {
        Answer::Text(_) | Answer::Echo(_) => {
            let content_block = Block::Text { text: "" };
            events.push(sse_event(&Event::ContentBlockStart { index: 0, content_block }));
            events.push(sse_event(&Event::Ping));
            for piece in request.answer.text_pieces(call.controls.delta_bytes) {
                let delta = BlockDelta::TextDelta { text: &piece };
                events.push(sse_event(&Event::ContentBlockDelta { index: 0, delta }));
            }
        }
        Answer::Tool(tool) => {
            let tool_id = tool_use_id(call);
            let empty_input = Value::Object(serde_json::Map::new());
            let content_block = Block::ToolUse { id: &tool_id, name: &tool.name, input: &empty_input };
            events.push(sse_event(&Event::ContentBlockStart { index: 0, content_block }));
            events.push(sse_event(&Event::Ping));
            let arguments = tool.arguments_json();
            // The real API opens with an empty fragment before the JSON itself.
            for partial_json in std::iter::once("").chain(fragments(&arguments, 3)) {
                let delta = BlockDelta::InputJsonDelta { partial_json };
                events.push(sse_event(&Event::ContentBlockDelta { index: 0, delta }));
            }
        }
    }
    events.push(sse_event(&Event::ContentBlockStop { index: 0 }));
    let delta_usage = usage.map(|usage| DeltaUsage {
        input_tokens: usage.input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        output_tokens: usage.output_tokens,
    });
    let delta = StopDelta { stop_reason: stop_reason(&request.answer), stop_sequence: () };
    events.push(sse_event(&Event::MessageDelta { delta, usage: delta_usage }));
    events.push(sse_event(&Event::MessageStop));
    events
}

/// `event: NAME\ndata: JSON\n\n`.
fn sse_event(event: &Event<'_>) -> Vec<u8> {
    let mut framed = Vec::with_capacity(160);
    framed.extend_from_slice(b"event: ");
    framed.extend_from_slice(event.name().as_bytes());
    framed.extend_from_slice(b"\ndata: ");
    framed.extend_from_slice(&to_json(event));
    framed.extend_from_slice(b"\n\n");
    framed
}

/// Serializing these plain structs cannot fail; an empty body would show it did.
fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn common_headers(call: &ApiCall<'_>) -> Headers {
    vec![("request-id", call.request_id.clone().into())]
}

/// 401 unless `x-api-key: KEY` or `Authorization: Bearer KEY`: recent
/// official SDKs (anthropic-python 2.x) send the API key as a bearer token.
pub fn authorize(head: &Head<'_>, key: &str, call: &ApiCall<'_>) -> Option<Response> {
    let bearer = head
        .header("authorization")
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let presented = [head.header("x-api-key"), bearer];
    if presented.contains(&Some(key)) {
        return None;
    }
    let message =
        if presented.iter().all(Option::is_none) { "x-api-key header is required" } else { "invalid x-api-key" };
    Some(error_response(401, message, call))
}

/// The error the real API sends for `status`, for `x-mock-status`.
pub fn injected_error(status: u16, call: &ApiCall<'_>) -> Response {
    let message = match status {
        429 => "Number of request tokens has exceeded your per-minute rate limit",
        529 | 503 => "Overloaded",
        500 => "Internal server error",
        401 => "invalid x-api-key",
        _ => "Injected error from tollgate-mock",
    };
    error_response(status, message, call)
}

/// `{"type": "error", "error": {"type", "message"}, "request_id"}`.
pub fn error_response(status: u16, message: &str, call: &ApiCall<'_>) -> Response {
    let kind = match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    let body = ErrorBody { kind: "error", error: ErrorObject { kind, message }, request_id: &call.request_id };
    let mut response = Response::json(status, to_json(&body));
    response.headers = common_headers(call);
    with_retry_after(response, &call.controls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_calls::full;
    use serde_json::json;

    fn answer(body: &Value, headers: &[(&str, &str)]) -> Reply {
        crate::test_calls::answer(messages, body, headers)
    }

    /// `(event name, data)` of every event of a stream.
    fn events(reply: Reply) -> Vec<(String, Value)> {
        let Reply::Stream(stream) = reply else { panic!("expected a stream") };
        stream
            .events
            .iter()
            .map(|event| {
                let text = std::str::from_utf8(event).unwrap();
                let (name, data) = text.trim_end().split_once("\ndata: ").unwrap();
                (name.strip_prefix("event: ").unwrap().to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    fn text_deltas(events: &[(String, Value)]) -> Vec<String> {
        events
            .iter()
            .filter(|(name, _)| name == "content_block_delta")
            .map(|(_, data)| {
                assert_eq!(data["delta"]["type"], "text_delta");
                data["delta"]["text"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    const ECHO: [(&str, &str); 1] = [("x-mock-reply", "echo")];

    #[test]
    fn echo_answers_with_the_last_user_text_blocks_ignoring_tool_results_max_tokens_and_tools() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1,
            "system": "not this",
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "nor this"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": "Mail [EMAIL_1]"},
                    {"type": "text", "text": " the forecast."}
                ]}
            ]
        });
        let message = full(answer(&body, &ECHO));
        assert_eq!(message["content"], json!([{"type": "text", "text": "Mail [EMAIL_1] the forecast."}]));
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["usage"]["output_tokens"], 4);
    }

    #[test]
    fn echo_of_a_tool_result_only_turn_is_empty() {
        let body = json!({
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]
        });
        let message = full(answer(&body, &ECHO));
        assert_eq!(message["content"][0]["text"], "");
        assert_eq!(message["usage"]["output_tokens"], 0);
    }

    #[test]
    fn streamed_echo_sends_text_deltas_per_word_with_usage_in_message_delta() {
        let body = json!({
            "model": "m",
            "max_tokens": 1,
            "stream": true,
            "messages": [{"role": "user", "content": "one two three"}]
        });
        let events = events(answer(&body, &ECHO));
        assert_eq!(text_deltas(&events), ["one ", "two ", "three"]);
        let (_, delta) = events.iter().find(|(name, _)| name == "message_delta").unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 3);
    }

    #[test]
    fn delta_bytes_splits_the_echo_on_character_boundaries() {
        let body =
            json!({"model": "m", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "héllo"}]});
        let events = events(answer(&body, &[("x-mock-reply", "echo"), ("x-mock-delta-bytes", "3")]));
        assert_eq!(text_deltas(&events), ["hé", "llo"]);
        let (_, delta) = events.iter().find(|(name, _)| name == "message_delta").unwrap();
        assert_eq!(delta["usage"]["output_tokens"], 1);
    }
}
