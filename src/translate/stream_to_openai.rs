//! Anthropic Messages stream → OpenAI Chat Completions stream, one event at a time.
//!
//! | Anthropic event | OpenAI output |
//! |-----------------|---------------|
//! | `message_start` | first chunk, `delta: {role: "assistant", content: ""}` |
//! | `content_block_start` text | nothing (its text, if any, as `delta.content`) |
//! | `content_block_start` tool_use | `delta.tool_calls[{index, id, type, function: {name, arguments: ""}}]` |
//! | `content_block_delta` text_delta | `delta.content` |
//! | `content_block_delta` input_json_delta | `delta.tool_calls[{index, function: {arguments}}]` |
//! | `message_delta` with `stop_reason` | chunk with `finish_reason` |
//! | `message_stop` | usage chunk (`choices: []`) if the client asked `include_usage`; `data: [DONE]` |
//! | `error` | `data: {"error": {…}}`, which the OpenAI SDK raises as `APIError`; the stream ends |
//! | `ping`, `content_block_stop`, thinking and server-tool blocks, unknown events | nothing |
//! | a text delta whose block never started | `delta.content` (a note says so) |
//! | a tool input delta whose block never started, an unparseable event | an error event; the stream ends |
//!
//! Tool calls are numbered 0, 1, … in the order their blocks start, whatever the Anthropic
//! block index (text blocks take indexes there, not in OpenAI's `tool_calls`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::error::openai_error_body;
use super::json::note;
use super::shared::{
    cut_short, finish_reason, openai_id, openai_usage, write_openai_event, MID_STREAM_ERROR, OPENAI_USAGE_LEFT_OUT,
};
use super::{EventTranslator, Unreadable};
use crate::sse::SseEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// The OpenAI tool-call index of this `tool_use` block.
    ToolCall(u64),
    /// Thinking, server tools, unknown blocks: OpenAI Chat has nowhere to put them.
    Dropped,
}

#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    model_for_client: Option<String>,
    created: u64,
    include_usage: bool,
    id: String,
    model: String,
    started: bool,
    blocks: BTreeMap<u64, Block>,
    next_tool_call: u64,
    /// Anthropic usage fields as last reported (`message_start`, then cumulative deltas).
    usage: Map<String, Value>,
    stop_reason: Option<String>,
    finish_sent: bool,
    done: bool,
    notes: Vec<String>,
}

impl AnthropicToOpenAiStream {
    /// `model_for_client` replaces the upstream's model name when given; `created` is the Unix
    /// time every chunk reports; `include_usage` is whether the client asked for OpenAI's final
    /// usage chunk (`stream_options.include_usage`).
    pub fn new(model_for_client: Option<&str>, created: u64, include_usage: bool) -> Self {
        AnthropicToOpenAiStream {
            model_for_client: model_for_client.map(str::to_string),
            created,
            include_usage,
            id: String::new(),
            model: String::new(),
            started: false,
            blocks: BTreeMap::new(),
            next_tool_call: 0,
            usage: Map::new(),
            stop_reason: None,
            finish_sent: false,
            done: false,
            notes: Vec::new(),
        }
    }

    fn chunk(&self, choices: Value) -> Value {
        let mut chunk = Map::new();
        chunk.insert("id".into(), json!(self.id));
        chunk.insert("object".into(), json!("chat.completion.chunk"));
        chunk.insert("created".into(), json!(self.created));
        chunk.insert("model".into(), json!(self.model));
        chunk.insert("choices".into(), choices);
        if self.include_usage {
            // OpenAI sends `usage: null` on every chunk but the last when usage is on.
            chunk.insert("usage".into(), Value::Null);
        }
        Value::Object(chunk)
    }

    fn emit_delta(&self, delta: Value, out: &mut Vec<u8>) {
        let choices = json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": null }]);
        write_openai_event(out, &self.chunk(choices));
    }

    /// The role chunk. Normally from `message_start`; if an upstream skipped it, the first
    /// content event opens the stream with an id derived from that event.
    fn start(&mut self, message: Option<&Value>, seed: &[u8], out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let upstream_id = message.and_then(|m| m.get("id")).and_then(Value::as_str);
        self.id = openai_id(upstream_id, seed);
        let upstream_model = message.and_then(|m| m.get("model")).and_then(Value::as_str).unwrap_or_default();
        self.model = self.model_for_client.clone().unwrap_or_else(|| upstream_model.to_string());
        self.emit_delta(json!({ "role": "assistant", "content": "" }), out);
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(usage) = usage.and_then(Value::as_object) {
            for (key, value) in usage {
                self.usage.insert(key.clone(), value.clone());
            }
        }
    }

    fn emit_finish(&mut self, out: &mut Vec<u8>) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        let reason = finish_reason(self.stop_reason.as_deref());
        let choices = json!([{ "index": 0, "delta": {}, "logprobs": null, "finish_reason": reason }]);
        write_openai_event(out, &self.chunk(choices));
    }

    /// A block opens. A start without its block cannot be placed: unreadable.
    fn block_start(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), Unreadable> {
        let block = value.get("content_block").ok_or(Unreadable)?;
        // A start without its index still opens its text or tool call; its deltas are placed by
        // their own index (see `block_delta`).
        let index = value.get("index").and_then(Value::as_u64);
        let kind = match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.emit_delta(json!({ "content": text }), out);
                }
                Block::Text
            }
            Some("tool_use") => {
                let call = self.next_tool_call;
                self.next_tool_call = call.saturating_add(1);
                // Streams start tool input as `{}` and send it in deltas; an upstream that puts
                // the whole input here is honoured too.
                let arguments = match block.get("input") {
                    Some(Value::Object(input)) if !input.is_empty() => Value::Object(input.clone()).to_string(),
                    _ => String::new(),
                };
                let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
                let name = block.get("name").and_then(Value::as_str).unwrap_or_default();
                let tool_call = json!({ "index": call, "id": id, "type": "function",
                    "function": { "name": name, "arguments": arguments } });
                self.emit_delta(json!({ "tool_calls": [tool_call] }), out);
                Block::ToolCall(call)
            }
            _ => Block::Dropped,
        };
        if let Some(index) = index {
            self.blocks.insert(index, kind);
        }
        Ok(())
    }

    /// A block's delta. One whose block never started (an upstream that skipped or garbled its
    /// `content_block_start`) is still carried when it is text; tool input without its tool
    /// call's id and name cannot be, and is unreadable (the stream ends with an error there).
    fn block_delta(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), Unreadable> {
        let index = value.get("index").and_then(Value::as_u64);
        let delta = value.get("delta");
        let kind = delta.and_then(|d| d.get("type")).and_then(Value::as_str);
        let block = match (index.and_then(|i| self.blocks.get(&i)).copied(), kind) {
            (Some(block), _) => block,
            (None, Some("text_delta")) => {
                note(
                    &mut self.notes,
                    "content_block_delta without its content_block_start: read as a text block".into(),
                );
                Block::Text
            }
            (None, Some("input_json_delta")) => {
                let message = "A tool call's input arrived without its content_block_start (no id or name) and could not be translated.";
                self.end_with_error("api_error", message, out);
                return Err(Unreadable);
            }
            (None, _) => Block::Dropped,
        };
        let field = |key: &str| delta.and_then(|d| d.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty());
        match (block, kind) {
            // Text is text whatever started its block (only text blocks send it; an upstream's
            // unknown or garbled block type does not make it less of the answer).
            (Block::Text | Block::Dropped, Some("text_delta")) => {
                if let Some(text) = field("text") {
                    self.emit_delta(json!({ "content": text }), out);
                }
            }
            (Block::ToolCall(call), Some("input_json_delta")) => {
                if let Some(fragment) = field("partial_json") {
                    let tool_call = json!({ "index": call, "function": { "arguments": fragment } });
                    self.emit_delta(json!({ "tool_calls": [tool_call] }), out);
                }
            }
            // Citations, thinking and signatures have no Chat Completions field.
            _ => {}
        }
        Ok(())
    }
}

impl EventTranslator for AnthropicToOpenAiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> Result<(), Unreadable> {
        if self.done {
            return Ok(());
        }
        let value = serde_json::from_slice::<Value>(&event.data).map_err(|_| Unreadable)?;
        let kind = value.get("type").and_then(Value::as_str).unwrap_or(event.event.as_str());
        match kind {
            "message_start" => {
                let message = value.get("message");
                self.merge_usage(message.and_then(|m| m.get("usage")));
                self.start(message, &event.data, out);
            }
            "content_block_start" => {
                self.start(None, &event.data, out);
                self.block_start(&value, out)?;
            }
            "content_block_delta" => {
                self.start(None, &event.data, out);
                self.block_delta(&value, out)?;
            }
            "message_delta" => {
                self.start(None, &event.data, out);
                self.merge_usage(value.get("usage"));
                if let Some(reason) = value.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_string());
                    self.emit_finish(out);
                }
            }
            "message_stop" => {
                self.start(None, &event.data, out);
                self.emit_finish(out);
                if self.include_usage {
                    // Without usable counts the usage chunk is left out: never a chunk of zeros.
                    match openai_usage(&Value::Object(self.usage.clone())) {
                        Some(usage) => {
                            let mut chunk = self.chunk(json!([]));
                            if let Some(object) = chunk.as_object_mut() {
                                object.insert("usage".into(), usage);
                            }
                            write_openai_event(out, &chunk);
                        }
                        None => note(&mut self.notes, OPENAI_USAGE_LEFT_OUT.into()),
                    }
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            "error" => {
                let error = value.get("error");
                let said = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
                let message = said("message").unwrap_or(MID_STREAM_ERROR);
                self.end_with_error(said("type").unwrap_or("api_error"), message, out);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.end_with_error("api_error", &cut_short("message_stop"), out);
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }

    fn end_with_error(&mut self, error_type: &str, message: &str, out: &mut Vec<u8>) {
        write_openai_event(out, &openai_error_body(error_type, message));
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseFramer;

    /// Feeds events through the translator and returns what the client gets, each `data:` as
    /// JSON (`[DONE]` as the string "[DONE]").
    fn run(events: &[Value], include_usage: bool, finish: bool) -> Vec<Value> {
        run_noted(events, include_usage, finish).0
    }

    /// [`run`], and the translator's notes.
    fn run_noted(events: &[Value], include_usage: bool, finish: bool) -> (Vec<Value>, Vec<String>) {
        let mut translator = AnthropicToOpenAiStream::new(None, 7, include_usage);
        let mut out = Vec::new();
        for data in events {
            let kind = data["type"].as_str().unwrap_or_default().to_string();
            let event = SseEvent { event: kind, data: data.to_string().into_bytes(), start: 0, end: 0 };
            translator.on_event(&event, &mut out).unwrap();
        }
        if finish {
            translator.finish(&mut out);
        }
        let (mut framed, mut issues) = (Vec::new(), Vec::new());
        SseFramer::new(1 << 20).feed(&out, &mut framed, &mut issues);
        let chunks =
            framed.iter().map(|e| serde_json::from_slice(&e.data).unwrap_or_else(|_| json!("[DONE]"))).collect();
        (chunks, translator.notes().to_vec())
    }

    fn start() -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-haiku-4-5", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 1}}})
    }

    fn stop(reason: &str, output_tokens: u64) -> [Value; 2] {
        [
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
            json!({"type": "message_stop"}),
        ]
    }

    fn deltas(chunks: &[Value]) -> Vec<Value> {
        chunks.iter().filter_map(|c| c.get("choices")?.get(0)?.get("delta").cloned()).collect()
    }

    #[test]
    fn a_text_stream_becomes_role_content_and_finish_chunks_then_done() {
        let mut events = vec![
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            json!({"type": "content_block_stop", "index": 0}),
        ];
        events.extend(stop("end_turn", 2));
        let chunks = run(&events, false, true);
        assert_eq!(chunks.len(), 5);
        assert_eq!(
            chunks[0],
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "claude-haiku-4-5",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]})
        );
        assert_eq!(deltas(&chunks[1..3]), [json!({"content": "Hel"}), json!({"content": "lo"})]);
        assert_eq!(
            chunks[3]["choices"][0],
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})
        );
        assert_eq!(chunks[4], "[DONE]");
    }

    #[test]
    fn tool_use_blocks_become_tool_calls_numbered_from_zero() {
        let mut events = vec![
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
        ];
        events.extend(stop("tool_use", 30));
        let chunks = run(&events, false, true);
        assert_eq!(
            deltas(&chunks[2..5]),
            [
                json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            ]
        );
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn the_usage_chunk_comes_only_when_the_client_asked_for_it() {
        let mut events = vec![start()];
        events.extend(stop("end_turn", 9));
        let chunks = run(&events, true, true);
        assert_eq!(chunks[0]["usage"], Value::Null);
        assert_eq!(chunks[2]["choices"], json!([]));
        assert_eq!(
            chunks[2]["usage"],
            json!({"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34, "prompt_tokens_details": {"cached_tokens": 20}})
        );
        assert_eq!(chunks[3], "[DONE]");
        assert!(run(&events, false, true).iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn without_usable_counts_the_usage_chunk_is_left_out_with_a_note_never_zeros() {
        // The upstream skipped message_start, so no input count was ever reported.
        let mut events =
            vec![json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "x"}})];
        events.extend(stop("end_turn", 9));
        let (chunks, notes) = run_noted(&events, true, true);
        assert!(chunks.iter().all(|c| c["choices"] != json!([])), "no usage chunk: {chunks:?}");
        assert_eq!(chunks.last().unwrap(), "[DONE]");
        assert_eq!(notes, [OPENAI_USAGE_LEFT_OUT]);
        let mut events = vec![start()];
        events.extend(stop("end_turn", 9));
        assert_eq!(run_noted(&events, true, true).1, Vec::<String>::new(), "whole usage: no note");
    }

    #[test]
    fn a_text_delta_whose_block_never_started_is_relayed_with_a_note_never_dropped() {
        let mut events = vec![
            start(),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
        ];
        events.extend(stop("end_turn", 2));
        let (chunks, notes) = run_noted(&events, false, true);
        assert_eq!(deltas(&chunks[1..3]), [json!({"content": "Hel"}), json!({"content": "lo"})]);
        assert_eq!(notes, ["content_block_delta without its content_block_start: read as a text block"]);
    }

    #[test]
    fn a_tool_input_delta_whose_block_never_started_ends_the_stream_with_an_error() {
        let mut translator = AnthropicToOpenAiStream::new(None, 7, false);
        let mut out = Vec::new();
        let delta = r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#;
        let event = SseEvent { event: "content_block_delta".into(), data: delta.into(), start: 0, end: 0 };
        assert_eq!(translator.on_event(&event, &mut out), Err(Unreadable), "counted by the caller");
        assert!(translator.is_done());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("without its content_block_start"), "{text}");
    }

    #[test]
    fn an_error_event_becomes_an_openai_error_and_ends_the_stream() {
        let events = [
            start(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            json!({"type": "message_stop"}),
        ];
        let chunks = run(&events, false, true);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[1],
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
        );
    }

    #[test]
    fn a_stream_cut_before_message_stop_ends_with_an_error() {
        let chunks = run(&[start()], false, true);
        assert_eq!(chunks[1]["error"]["message"], "The upstream stream ended before its final event (message_stop).");
        assert_eq!(run(&[start()], false, false).len(), 1, "nothing is said before the end");
    }

    #[test]
    fn thinking_unknown_and_unparseable_events_produce_nothing_but_text_is_carried() {
        let mut translator = AnthropicToOpenAiStream::new(Some("gpt-4o"), 0, false);
        let mut out = Vec::new();
        for (kind, data) in [
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#,
            ),
            ("mystery", r#"{"type":"mystery"}"#),
        ] {
            let read =
                translator.on_event(&SseEvent { event: kind.into(), data: data.into(), start: 0, end: 0 }, &mut out);
            assert_eq!(read, Ok(()));
        }
        // An event that cannot be read is said to be so: the caller ends the stream there.
        let unreadable = SseEvent { event: "message_start".into(), data: b"{not json".to_vec(), start: 0, end: 0 };
        assert_eq!(translator.on_event(&unreadable, &mut out), Err(Unreadable));
        // Only the role chunk that the first content event opened the stream with.
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.matches("data: ").count(), 1, "{text}");
        assert!(text.contains(r#""model":"gpt-4o""#));
        // Text whose block never started is still the answer's text; tool input without its
        // call cannot be placed.
        let orphan = r#"{"type":"content_block_delta","index":9,"delta":{"type":"text_delta","text":"?"}}"#;
        let event = SseEvent { event: "content_block_delta".into(), data: orphan.into(), start: 0, end: 0 };
        assert_eq!(translator.on_event(&event, &mut out), Ok(()));
        assert!(String::from_utf8(out.clone()).unwrap().contains(r#""content":"?""#));
        let input =
            r#"{"type":"content_block_delta","index":8,"delta":{"type":"input_json_delta","partial_json":"{"}}"#;
        let event = SseEvent { event: "content_block_delta".into(), data: input.into(), start: 0, end: 0 };
        assert_eq!(translator.on_event(&event, &mut out), Err(Unreadable));
    }
}
