//! OpenAI Chat Completions stream → Anthropic Messages stream, one chunk at a time.
//!
//! | OpenAI chunk | Anthropic events |
//! |--------------|------------------|
//! | the first chunk | `message_start` (usage input from the chunk if it has one, else 0) |
//! | `delta.content` / `delta.refusal` | `content_block_start` text (once), `content_block_delta` text_delta |
//! | `delta.tool_calls[i]` with a new index | `content_block_stop` of the open block, `content_block_start` tool_use |
//! | `delta.tool_calls[i].function.arguments` | `content_block_delta` input_json_delta |
//! | `finish_reason` | `content_block_stop` of the open block; the reason is kept |
//! | the usage chunk | kept for `message_delta` |
//! | `data: [DONE]` | `message_delta` (stop_reason, usage), `message_stop` |
//! | `{"error": …}` | `event: error`, which the Anthropic SDK raises; the stream ends |
//!
//! Tool-call fragments without `index` (sent by some OpenAI-compatible servers) continue the
//! open call unless they carry a new `id`.
//!
//! `message_delta` waits for `[DONE]` because OpenAI's usage chunk comes after the
//! `finish_reason` chunk; nothing else is held. Anthropic blocks cannot be reopened, so an
//! argument fragment for a tool call whose block was already closed (OpenAI does not interleave
//! calls; a compatible server might) ends the stream with an error event rather than being
//! dropped, which would hand the client a tool input cut short. `arguments` sent as an object
//! (some compatible servers) are serialised; any other type ends the stream with an error event.

use serde_json::{json, Value};

use super::error::{anthropic_error_body, anthropic_type_for_openai_error};
use super::json::note;
use super::shared::{
    anthropic_id, anthropic_usage, cut_short, openai_usage_complete, stop_reason, write_anthropic_event,
    ANTHROPIC_USAGE_ZEROS, MID_STREAM_ERROR,
};
use super::{EventTranslator, Unreadable};
use crate::sse::SseEvent;

/// Indexes given to tool calls that arrive without one, far above any real index.
const UNINDEXED_CALLS: u64 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text { block: u64 },
    ToolCall { block: u64, call: u64 },
}

#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    model_for_client: Option<String>,
    started: bool,
    open: Option<Open>,
    next_block: u64,
    closed_calls: Vec<u64>,
    open_call_id: Option<String>,
    unindexed_calls: u64,
    finish_reason: Option<String>,
    refused: bool,
    usage: Option<Value>,
    done: bool,
    notes: Vec<String>,
}

impl OpenAiToAnthropicStream {
    /// `model_for_client` replaces the upstream's model name when given.
    pub fn new(model_for_client: Option<&str>) -> Self {
        OpenAiToAnthropicStream {
            model_for_client: model_for_client.map(str::to_string),
            started: false,
            open: None,
            next_block: 0,
            closed_calls: Vec::new(),
            open_call_id: None,
            unindexed_calls: 0,
            finish_reason: None,
            refused: false,
            usage: None,
            done: false,
            notes: Vec::new(),
        }
    }

    fn start(&mut self, chunk: Option<&Value>, seed: &[u8], out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let said = |key: &str| chunk.and_then(|c| c.get(key)).and_then(Value::as_str);
        let model = self.model_for_client.as_deref().or(said("model")).unwrap_or_default();
        let input = chunk.and_then(|c| c.get("usage")).filter(|u| u.is_object()).map(anthropic_usage);
        let input_tokens = input.as_ref().and_then(|u| u.get("input_tokens")).cloned().unwrap_or_else(|| json!(0));
        let message = json!({
            "id": anthropic_id(said("id"), seed),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": { "input_tokens": input_tokens, "output_tokens": 0 },
        });
        write_anthropic_event(out, &json!({ "type": "message_start", "message": message }));
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let (block, call) = match self.open.take() {
            None => return,
            Some(Open::Text { block }) => (block, None),
            Some(Open::ToolCall { block, call }) => (block, Some(call)),
        };
        if let Some(call) = call {
            self.closed_calls.push(call);
        }
        write_anthropic_event(out, &json!({ "type": "content_block_stop", "index": block }));
    }

    fn take_block_index(&mut self) -> u64 {
        let block = self.next_block;
        self.next_block = block.saturating_add(1);
        block
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let block = match self.open {
            Some(Open::Text { block }) => block,
            _ => {
                self.close_block(out);
                let block = self.take_block_index();
                self.open = Some(Open::Text { block });
                write_anthropic_event(
                    out,
                    &json!({ "type": "content_block_start", "index": block, "content_block": { "type": "text", "text": "" } }),
                );
                block
            }
        };
        let delta =
            json!({ "type": "content_block_delta", "index": block, "delta": { "type": "text_delta", "text": text } });
        write_anthropic_event(out, &delta);
    }

    /// The tool-call index a fragment belongs to. OpenAI always says; some compatible servers
    /// send each whole call without `index`: then a fragment with a new `id` starts a call, and
    /// one without an id continues the open call.
    fn call_index(&mut self, fragment: &Value) -> u64 {
        if let Some(index) = fragment.get("index").and_then(Value::as_u64) {
            return index;
        }
        let id = fragment.get("id").and_then(Value::as_str);
        match self.open {
            Some(Open::ToolCall { call, .. }) if id.is_none() || id == self.open_call_id.as_deref() => call,
            _ => {
                let index = UNINDEXED_CALLS.saturating_add(self.unindexed_calls);
                self.unindexed_calls = self.unindexed_calls.saturating_add(1);
                index
            }
        }
    }

    fn tool_call(&mut self, fragment: &Value, out: &mut Vec<u8>) -> Result<(), Unreadable> {
        let index = self.call_index(fragment);
        let function = fragment.get("function");
        let arguments = match function.and_then(|f| f.get("arguments")) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(arguments)) => arguments.clone(),
            Some(object @ Value::Object(_)) => {
                note(&mut self.notes, "tool_calls[].function.arguments: sent as an object; serialised".into());
                object.to_string()
            }
            Some(other) => {
                let kind = json_kind(other);
                let message = format!(
                    "A tool call's arguments were sent as {kind}, which Anthropic's tool_use input cannot hold."
                );
                self.end_with_error("api_error", &message, out);
                return Err(Unreadable);
            }
        };
        let block = match self.open {
            Some(Open::ToolCall { block, call }) if call == index => block,
            _ if self.closed_calls.contains(&index) => {
                if arguments.is_empty() {
                    return Ok(());
                }
                let message = "A tool call's arguments arrived after its block was closed (calls interleaved); \
                               Anthropic's stream cannot reopen a block.";
                self.end_with_error("api_error", message, out);
                return Err(Unreadable);
            }
            _ => {
                self.close_block(out);
                let block = self.take_block_index();
                self.open = Some(Open::ToolCall { block, call: index });
                let id = match fragment.get("id").and_then(Value::as_str) {
                    Some(id) => id.to_string(),
                    None => format!("call_{block}"),
                };
                self.open_call_id = Some(id.clone());
                let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
                let start = json!({ "type": "content_block_start", "index": block,
                    "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } });
                write_anthropic_event(out, &start);
                block
            }
        };
        if !arguments.is_empty() {
            let delta = json!({ "type": "content_block_delta", "index": block,
                "delta": { "type": "input_json_delta", "partial_json": arguments } });
            write_anthropic_event(out, &delta);
        }
        Ok(())
    }

    fn choice(&mut self, choice: &Value, out: &mut Vec<u8>) -> Result<(), Unreadable> {
        let delta = choice.get("delta");
        let said = |key: &str| delta.and_then(|d| d.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
        if let Some(text) = said("content") {
            self.text(text, out);
        }
        if let Some(refusal) = said("refusal") {
            self.refused = true;
            self.text(refusal, out);
        }
        let calls = delta.and_then(|d| d.get("tool_calls")).and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            self.tool_call(call, out)?;
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
            self.close_block(out);
        }
        Ok(())
    }

    fn end_message(&mut self, out: &mut Vec<u8>) {
        self.start(None, b"", out);
        self.close_block(out);
        let reason = if self.refused { "refusal" } else { stop_reason(self.finish_reason.as_deref()) };
        let reported = self.usage.as_ref().unwrap_or(&Value::Null);
        if !openai_usage_complete(reported) {
            note(&mut self.notes, ANTHROPIC_USAGE_ZEROS.into());
        }
        let usage = anthropic_usage(reported);
        write_anthropic_event(
            out,
            &json!({ "type": "message_delta", "delta": { "stop_reason": reason, "stop_sequence": null }, "usage": usage }),
        );
        write_anthropic_event(out, &json!({ "type": "message_stop" }));
        self.done = true;
    }
}

impl EventTranslator for OpenAiToAnthropicStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> Result<(), Unreadable> {
        if self.done {
            return Ok(());
        }
        if event.data == b"[DONE]" {
            self.end_message(out);
            return Ok(());
        }
        let chunk = serde_json::from_slice::<Value>(&event.data).map_err(|_| Unreadable)?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = match error {
                Value::String(message) => message.as_str(),
                _ => error.get("message").and_then(Value::as_str).unwrap_or(MID_STREAM_ERROR),
            };
            self.end_with_error(anthropic_type_for_openai_error(error), message, out);
            return Ok(());
        }
        self.start(Some(&chunk), &event.data, out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        // Translated requests ask for one choice; others (n > 1 upstream) are not relayed.
        let choices = chunk.get("choices").and_then(Value::as_array);
        let first = choices.into_iter().flatten().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
        match first {
            Some(choice) => self.choice(choice, out),
            None => Ok(()),
        }
    }

    /// An upstream that ended after its `finish_reason` but without `[DONE]` still gave a whole
    /// answer; one that ended before it was cut.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.finish_reason.is_some() {
            self.end_message(out);
        } else {
            self.end_with_error("api_error", &cut_short("[DONE]"), out);
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }

    fn end_with_error(&mut self, error_type: &str, message: &str, out: &mut Vec<u8>) {
        write_anthropic_event(out, &anthropic_error_body(error_type, message));
        self.done = true;
    }
}

/// What kind of JSON value this is, for error messages (never the value itself).
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseFramer;

    /// The Anthropic events the client gets, as (event name, data).
    fn run(chunks: &[&str], finish: bool) -> Vec<(String, Value)> {
        run_noted(chunks, finish).0
    }

    /// [`run`], and the translator's notes.
    fn run_noted(chunks: &[&str], finish: bool) -> (Vec<(String, Value)>, Vec<String>) {
        let mut translator = OpenAiToAnthropicStream::new(None);
        let mut out = Vec::new();
        for data in chunks {
            let event = SseEvent { event: String::new(), data: data.as_bytes().to_vec(), start: 0, end: 0 };
            let _ = translator.on_event(&event, &mut out);
        }
        if finish {
            translator.finish(&mut out);
        }
        let (mut framed, mut issues) = (Vec::new(), Vec::new());
        SseFramer::new(1 << 20).feed(&out, &mut framed, &mut issues);
        let events = framed.iter().map(|e| (e.event.clone(), serde_json::from_slice(&e.data).unwrap())).collect();
        (events, translator.notes().to_vec())
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events
            .iter()
            .map(|(name, data)| {
                assert_eq!(data["type"], name.as_str(), "the event line names the data's type");
                name.as_str()
            })
            .collect()
    }

    const HEAD: &str = r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    const USAGE: &str = r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":12,"total_tokens":62,"prompt_tokens_details":{"cached_tokens":10}}}"#;

    fn delta(delta: Value, finish_reason: Option<&str>) -> String {
        json!({"id": "chatcmpl-A1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
        .to_string()
    }

    #[test]
    fn a_text_stream_becomes_one_text_block_between_message_start_and_stop() {
        let (a, b, end) = (
            delta(json!({"content": "Hel"}), None),
            delta(json!({"content": "lo"}), None),
            delta(json!({}), Some("stop")),
        );
        let events = run(&[HEAD, &a, &b, &end, USAGE, "[DONE]"], true);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            events[0].1["message"],
            json!({"id": "msg_A1", "type": "message", "role": "assistant", "model": "gpt-4o-mini", "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}})
        );
        assert_eq!(
            events[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(events[3].1["delta"], json!({"type": "text_delta", "text": "lo"}));
        assert_eq!(
            events[5].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"input_tokens": 40, "cache_read_input_tokens": 10, "output_tokens": 12}})
        );
    }

    #[test]
    fn each_new_tool_call_index_closes_the_previous_block() {
        let call = |index: u64, id: Option<&str>, name: Option<&str>, arguments: &str| {
            let mut call = json!({"index": index, "function": {"arguments": arguments}});
            if let (Some(id), Some(name)) = (id, name) {
                call = json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
            }
            delta(json!({"tool_calls": [call]}), None)
        };
        let chunks = [
            HEAD.to_string(),
            delta(json!({"content": "Checking."}), None),
            call(0, Some("call_a"), Some("get_weather"), ""),
            call(0, None, None, "{\"city\":"),
            call(0, None, None, "\"Paris\"}"),
            call(1, Some("call_b"), Some("get_time"), "{}"),
            call(0, None, None, ""),
            delta(json!({}), Some("tool_calls")),
            USAGE.to_string(),
            "[DONE]".to_string(),
        ];
        let events = run(&chunks.iter().map(String::as_str).collect::<Vec<_>>(), true);
        let blocks: Vec<_> =
            events.iter().filter(|(n, _)| n.starts_with("content_block")).map(|(_, d)| d.clone()).collect();
        assert_eq!(
            blocks,
            [
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2,
                    "content_block": {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                json!({"type": "content_block_stop", "index": 2}),
            ],
            "an empty fragment for the closed call 0 carries nothing"
        );
        assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn arguments_for_a_call_whose_block_was_closed_end_the_stream_with_an_error_never_dropped() {
        let call = |index: u64, id: Option<&str>, arguments: &str| {
            let mut call = json!({"index": index, "function": {"arguments": arguments}});
            if let Some(id) = id {
                call = json!({"index": index, "id": id, "type": "function", "function": {"name": "f", "arguments": arguments}});
            }
            delta(json!({"tool_calls": [call]}), None)
        };
        // A server interleaving two parallel calls: call 0 gets a fragment after call 1 opened.
        let chunks = [call(0, Some("a"), "{\"x\":"), call(1, Some("b"), "{}"), call(0, None, "1}")];
        let finish = delta(json!({}), Some("tool_calls"));
        let mut all = vec![HEAD];
        all.extend(chunks.iter().map(String::as_str));
        all.extend([finish.as_str(), "[DONE]"]);
        let mut translator = OpenAiToAnthropicStream::new(None);
        let mut out = Vec::new();
        let results: Vec<_> = all
            .iter()
            .map(|data| {
                let event = SseEvent { event: String::new(), data: data.as_bytes().to_vec(), start: 0, end: 0 };
                translator.on_event(&event, &mut out)
            })
            .collect();
        assert_eq!(results[3], Err(Unreadable), "counted by the caller as untranslatable");
        let (mut framed, mut issues) = (Vec::new(), Vec::new());
        SseFramer::new(1 << 20).feed(&out, &mut framed, &mut issues);
        let last = framed.last().unwrap();
        assert_eq!(last.event, "error");
        let error: Value = serde_json::from_slice(&last.data).unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains("after its block was closed"), "{error}");
        assert!(framed.iter().all(|e| e.event != "message_stop"), "the stream did not pretend to end well");
    }

    #[test]
    fn arguments_sent_as_an_object_are_serialised_and_other_types_end_the_stream() {
        let call = |arguments: Value| {
            delta(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": arguments}}]}),
                None,
            )
        };
        let (events, notes) = run_noted(
            &[HEAD, &call(json!({"city": "Paris"})), &delta(json!({}), Some("tool_calls")), USAGE, "[DONE]"],
            true,
        );
        let input: Vec<_> = events
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
            .map(|(_, d)| d["delta"]["partial_json"].clone())
            .collect();
        assert_eq!(input, [json!("{\"city\":\"Paris\"}")]);
        assert_eq!(notes, ["tool_calls[].function.arguments: sent as an object; serialised"]);
        for other in [json!(5), json!(true), json!([1])] {
            let events = run(&[HEAD, &call(other.clone()), "[DONE]"], true);
            assert_eq!(names(&events).last(), Some(&"error"), "{other}");
            assert!(events.last().unwrap().1["error"]["message"].as_str().unwrap().contains("arguments were sent as"));
        }
        let events = run(&[HEAD, &call(Value::Null), &delta(json!({}), Some("tool_calls")), "[DONE]"], true);
        assert_eq!(names(&events).last(), Some(&"message_stop"), "null arguments are no arguments");
    }

    #[test]
    fn whole_tool_calls_sent_without_an_index_each_get_their_own_block() {
        let call = |id: &str, name: &str, arguments: &str| {
            delta(
                json!({"tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}),
                None,
            )
        };
        let (a, b) = (call("call_a", "f", "{\"x\":1}"), call("call_b", "g", "{}"));
        let events = run(&[HEAD, &a, &b, &delta(json!({}), Some("tool_calls")), "[DONE]"], true);
        let starts: Vec<_> = events
            .iter()
            .filter(|(name, _)| name == "content_block_start")
            .map(|(_, data)| (data["index"].clone(), data["content_block"]["id"].clone()))
            .collect();
        assert_eq!(starts, [(json!(0), json!("call_a")), (json!(1), json!("call_b"))]);
    }

    #[test]
    fn a_refusal_streams_as_text_and_stops_with_refusal() {
        let events =
            run(&[HEAD, &delta(json!({"refusal": "No."}), None), &delta(json!({}), Some("stop")), "[DONE]"], true);
        assert_eq!(events[2].1["delta"]["text"], "No.");
        assert_eq!(events[4].1["delta"]["stop_reason"], "refusal");
    }

    #[test]
    fn an_error_chunk_becomes_an_error_event_and_ends_the_stream() {
        let error =
            r#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let events = run(&[HEAD, error, "[DONE]"], true);
        assert_eq!(names(&events), ["message_start", "error"]);
        assert_eq!(
            events[1].1,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
        );
    }

    #[test]
    fn a_stream_that_ends_after_its_finish_reason_without_done_is_still_complete() {
        let events = run(&[HEAD, &delta(json!({"content": "x"}), Some("length"))], true);
        assert_eq!(names(&events).last(), Some(&"message_stop"));
        assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn a_stream_cut_before_its_finish_reason_ends_with_an_error_event() {
        let events = run(&[HEAD, &delta(json!({"content": "x"}), None)], true);
        assert_eq!(names(&events).last(), Some(&"error"));
        assert_eq!(
            events.last().unwrap().1["error"]["message"],
            "The upstream stream ended before its final event ([DONE])."
        );
    }

    #[test]
    fn a_stream_without_usage_reports_zeros_to_anthropic_clients_with_a_note() {
        let (events, notes) = run_noted(&[HEAD, &delta(json!({"content": "x"}), Some("stop")), "[DONE]"], true);
        assert_eq!(
            events[events.len() - 2].1["usage"],
            json!({"input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}),
            "Anthropic's usage is required"
        );
        assert_eq!(notes, [ANTHROPIC_USAGE_ZEROS]);
        let (_, notes) = run_noted(&[HEAD, &delta(json!({"content": "x"}), Some("stop")), USAGE, "[DONE]"], true);
        assert_eq!(notes, Vec::<String>::new());
    }

    #[test]
    fn an_empty_stream_is_still_a_whole_message() {
        assert_eq!(names(&run(&["[DONE]"], true)), ["message_start", "message_delta", "message_stop"]);
    }
}
