//! The OpenAI Responses dialect: `POST …/responses`, answered whole or streamed
//! (`responses_stream`).
//!
//! Usage semantics follow OpenAI: `cached_tokens` is a subset of `input_tokens` (clamped to
//! it), `reasoning_tokens` a subset of `output_tokens` (which therefore grows by them). A reply
//! cut by `max_output_tokens` ends `incomplete`, as the real API's does.

use serde_json::Value;

use crate::answer::Answer;
use crate::dialect::ApiCall;
use crate::http_response::{EventStream, Reply, Response};
use crate::openai::{
    common_headers, dated_snapshot, error_response, invalid_type, json_body, optional_count, required_model, to_json,
    Invalid,
};
use crate::responses_wire::{
    EmptyObject, IncompleteDetails, InputTokensDetails, OutputItem, OutputText, OutputTokensDetails, Reasoning,
    ResponseObject, TextConfig, TextFormat, Usage,
};
use crate::text::{make_id, prompt_tokens, reply_length, text_bytes, CREATED_AT};
use crate::tools::{choose_call, OfferedTool, ToolCall};

/// What the mock needs from a Responses request, and what the response object echoes of it.
pub struct ResponsesRequest {
    model: String,
    stream: bool,
    input_tokens: u64,
    pub answer: Answer,
    instructions: Option<Value>,
    max_output_tokens: Option<u64>,
    temperature: f64,
    top_p: f64,
    tool_choice: Value,
    tools: Value,
}

pub fn responses(call: &ApiCall<'_>) -> Reply {
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
    let generated = Generated::new(&request, model, call);
    let usage = (!call.controls.omit_usage).then(|| usage(&request, call));
    if let Some(usage) = &usage {
        crate::tally::note(model, usage.input_tokens, usage.output_tokens);
    }
    if request.stream {
        let events = crate::responses_stream::events(&generated, usage.as_ref(), call.controls.delta_bytes);
        Reply::Stream(EventStream { headers: common_headers(call), events })
    } else {
        let status = generated.final_status();
        let part = [OutputText::new(&generated.text)];
        let output = [generated.item(status, &part, &generated.text)];
        let object = generated.object(status, &output, usage.as_ref());
        let mut response = Response::json(200, to_json(&object));
        response.headers = common_headers(call);
        Reply::Full(response)
    }
}

/// With `echo`, the answer is the last user input's text, even when tools are offered and
/// whatever `max_output_tokens` says (which is still validated).
fn parse_request(body: &[u8], echo: bool) -> Result<ResponsesRequest, Invalid> {
    let body = json_body(body)?;
    let model = required_model(&body)?.to_owned();
    // `input` may be left out (a stored prompt or `previous_response_id` supplies it).
    let input = match body.get("input") {
        None | Some(Value::Null) => None,
        Some(input @ (Value::String(_) | Value::Array(_))) => Some(input),
        Some(_) => return Err(invalid_type("input", "a string or an array of input items")),
    };
    let max_output_tokens = optional_count(&body, "max_output_tokens")?;
    let instructions = body.get("instructions").filter(|v| !v.is_null()).cloned();
    let text = instructions.as_ref().map_or(0, text_bytes).saturating_add(input.map_or(0, input_text_bytes));
    let items = match input {
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
        None => 0,
    };
    let answer = if echo {
        Answer::Echo(last_user_input_text(input))
    } else {
        match tool_call(&body, input) {
            Some(call) => Answer::Tool(call),
            None => Answer::Text(reply_length(max_output_tokens)),
        }
    };
    let number = |name: &str| body.get(name).and_then(Value::as_f64).unwrap_or(1.0);
    Ok(ResponsesRequest {
        model,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        input_tokens: prompt_tokens(text, items),
        answer,
        instructions,
        max_output_tokens,
        temperature: number("temperature"),
        top_p: number("top_p"),
        tool_choice: body.get("tool_choice").cloned().unwrap_or_else(|| Value::from("auto")),
        tools: body.get("tools").cloned().unwrap_or_else(|| Value::Array(Vec::new())),
    })
}

/// Bytes of text in `input`: the string, or each item's `content` (string or parts) and a
/// function call's `output`. Tool-call arguments and images do not count.
fn input_text_bytes(input: &Value) -> usize {
    match input {
        Value::String(text) => text.len(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let content = item.get("content").map_or(0, text_bytes);
                let output = item.get("output").and_then(Value::as_str).map_or(0, str::len);
                content.saturating_add(output)
            })
            .fold(0, usize::saturating_add),
        _ => 0,
    }
}

/// The text the client last said: a string `input`, or the last user message's content string
/// or `input_text` parts (images, files and the rest do not count). Empty when there is none.
pub fn last_user_input_text(input: Option<&Value>) -> String {
    let items = match input {
        Some(Value::String(text)) => return text.clone(),
        Some(Value::Array(items)) => items,
        _ => return String::new(),
    };
    let is_user_message = |item: &&Value| {
        item.get("role").and_then(Value::as_str) == Some("user")
            && item.get("type").and_then(Value::as_str).is_none_or(|kind| kind == "message")
    };
    match items.iter().rev().find(is_user_message).and_then(|item| item.get("content")) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("input_text"))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A call of the forced or first function tool, unless tools are off (`tool_choice: "none"`)
/// or the input ends with a `function_call_output`, which the model answers in text. Built-in
/// tools (web search, file search, …) have no name and are never called.
fn tool_call(body: &Value, input: Option<&Value>) -> Option<ToolCall> {
    let tool_choice = body.get("tool_choice");
    if tool_choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_item = input.and_then(Value::as_array).and_then(|items| items.last());
    if last_item.and_then(|item| item.get("type")).and_then(Value::as_str) == Some("function_call_output") {
        return None;
    }
    let offered: Vec<OfferedTool<'_>> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|tool| tool.get("type").and_then(Value::as_str) == Some("function"))
        .filter_map(|tool| {
            let name = tool.get("name").and_then(Value::as_str)?;
            Some(OfferedTool { name, schema: tool.get("parameters") })
        })
        .collect();
    let forced = tool_choice
        .filter(|choice| choice.get("type").and_then(Value::as_str) == Some("function"))
        .and_then(|choice| choice.get("name"))
        .and_then(Value::as_str);
    choose_call(&offered, forced)
}

fn usage(request: &ResponsesRequest, call: &ApiCall<'_>) -> Usage {
    let controls = &call.controls;
    let output_tokens = request.answer.output_tokens().saturating_add(controls.reasoning_tokens);
    Usage {
        input_tokens: request.input_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: controls.cached_tokens.min(request.input_tokens),
            cache_write_tokens: 0,
        },
        output_tokens,
        output_tokens_details: OutputTokensDetails { reasoning_tokens: controls.reasoning_tokens },
        total_tokens: request.input_tokens.saturating_add(output_tokens),
    }
}

/// How a response ends: `completed`, or `incomplete` with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    /// `max_output_tokens` cut the reply.
    Incomplete,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
        }
    }
}

/// One answer to one request: the ids and text every part of the response shares, whole or
/// streamed, so the two agree byte for byte.
pub struct Generated<'a> {
    pub request: &'a ResponsesRequest,
    pub id: String,
    pub model: &'a str,
    /// `msg_…` for a text answer, `fc_…` for a tool call.
    pub item_id: String,
    pub call_id: String,
    /// The whole text of a text answer; the arguments JSON of a tool call.
    pub text: String,
}

impl<'a> Generated<'a> {
    fn new(request: &'a ResponsesRequest, model: &'a str, call: &ApiCall<'_>) -> Self {
        let (item_id, text) = match &request.answer {
            Answer::Tool(tool) => (make_id("fc_", call.body_hash ^ 0xfc, 48), tool.arguments_json()),
            answer => (make_id("msg_", call.body_hash ^ 0x3e55, 48), answer.text().unwrap_or_default()),
        };
        Generated {
            request,
            id: make_id("resp_", call.body_hash, 48),
            model,
            item_id,
            call_id: make_id("call_", call.body_hash ^ 0x7001, 24),
            text,
        }
    }

    pub fn final_status(&self) -> Status {
        match self.request.answer {
            Answer::Text(length) if length.truncated => Status::Incomplete,
            _ => Status::Completed,
        }
    }

    pub fn tool(&self) -> Option<&ToolCall> {
        match &self.request.answer {
            Answer::Tool(tool) => Some(tool),
            Answer::Text(_) | Answer::Echo(_) => None,
        }
    }

    /// The one output item, holding `text` (`parts` for a message) and in `status`.
    pub fn item<'s>(&'s self, status: Status, parts: &'s [OutputText<'s>], arguments: &'s str) -> OutputItem<'s> {
        match self.tool() {
            Some(tool) => OutputItem::FunctionCall {
                id: &self.item_id,
                status: status.name(),
                arguments,
                call_id: &self.call_id,
                name: &tool.name,
            },
            None => OutputItem::Message { id: &self.item_id, status: status.name(), role: "assistant", content: parts },
        }
    }

    pub fn object<'s>(
        &'s self,
        status: Status,
        output: &'s [OutputItem<'s>],
        usage: Option<&'s Usage>,
    ) -> ResponseObject<'s> {
        let request = self.request;
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: CREATED_AT,
            status: status.name(),
            error: (),
            incomplete_details: (status == Status::Incomplete)
                .then_some(IncompleteDetails { reason: "max_output_tokens" }),
            instructions: request.instructions.as_ref(),
            max_output_tokens: request.max_output_tokens,
            model: self.model,
            output,
            parallel_tool_calls: true,
            previous_response_id: (),
            reasoning: Reasoning { effort: (), summary: () },
            store: true,
            temperature: request.temperature,
            text: TextConfig { format: TextFormat { kind: "text" } },
            tool_choice: &request.tool_choice,
            tools: &request.tools,
            top_p: request.top_p,
            truncation: "disabled",
            usage,
            user: (),
            metadata: EmptyObject {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_calls::full;
    use serde_json::json;

    fn answer(body: &Value, headers: &[(&str, &str)]) -> Reply {
        crate::test_calls::answer(responses, body, headers)
    }

    const ECHO: [(&str, &str); 1] = [("x-mock-reply", "echo")];

    #[test]
    fn echo_takes_a_string_input_or_the_last_user_messages_input_text_parts() {
        assert_eq!(last_user_input_text(Some(&json!("just this"))), "just this");
        let input = json!([
            {"role": "user", "content": "not this one"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Mail [EMAIL_1] "},
                {"type": "input_image", "image_url": "http://x"},
                {"type": "input_text", "text": "today."}
            ]},
            {"role": "assistant", "content": "ok"},
            {"type": "function_call_output", "call_id": "call_1", "output": "nor this"}
        ]);
        assert_eq!(last_user_input_text(Some(&input)), "Mail [EMAIL_1] today.");
        assert_eq!(last_user_input_text(Some(&json!([{"role": "system", "content": "s"}]))), "");
        assert_eq!(last_user_input_text(None), "");
    }

    #[test]
    fn echo_ignores_tools_and_max_output_tokens_and_completes() {
        let body = json!({
            "model": "gpt-4.1",
            "max_output_tokens": 1,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "input": "three plain words"
        });
        let response = full(answer(&body, &ECHO));
        assert_eq!(response["status"], "completed");
        assert_eq!(response["output"][0]["content"][0]["text"], "three plain words");
        assert_eq!(response["usage"]["output_tokens"], 3);
    }

    #[test]
    fn a_function_call_output_is_answered_in_text_and_tool_choice_none_turns_tools_off() {
        let tools = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]);
        let called = full(answer(&json!({"model": "m", "input": "go", "tools": tools}), &[]));
        assert_eq!(called["output"][0]["type"], "function_call");
        let input = json!([
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "done"}
        ]);
        let answered = full(answer(&json!({"model": "m", "input": input, "tools": tools}), &[]));
        assert_eq!(answered["output"][0]["type"], "message");
        let off = full(answer(&json!({"model": "m", "input": "go", "tools": tools, "tool_choice": "none"}), &[]));
        assert_eq!(off["output"][0]["type"], "message");
        let web_only = json!([{"type": "web_search"}]);
        let builtin = full(answer(&json!({"model": "m", "input": "go", "tools": web_only}), &[]));
        assert_eq!(builtin["output"][0]["type"], "message", "built-in tools are never called");
    }

    #[test]
    fn prompt_tokens_count_instructions_and_every_items_text() {
        // "Be brief." 9 + "Say hello" 9 + "done" 4 = 22 bytes: ceil(22 / 4) = 6, plus 3 per item, plus 3.
        let input = json!([
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]},
            {"type": "function_call_output", "call_id": "c", "output": "done"}
        ]);
        let response = full(answer(&json!({"model": "m", "instructions": "Be brief.", "input": input}), &[]));
        assert_eq!(response["usage"]["input_tokens"], 6 + 3 * 2 + 3);
        assert_eq!(response["instructions"], "Be brief.");
    }
}
