//! OpenAI Chat Completions, Responses and Embeddings: usage objects and stream events.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::chat_usage::ChatUsage;
use super::EventFacts;
use crate::json_edit;
use crate::sse::SseEvent;
use crate::usage::{token_field, Count, TokenCounts};

fn provider(usage: &Value, path: &[&str]) -> Option<Count> {
    token_field(usage, path).map(Count::provider)
}

/// Chat Completions and Embeddings `usage`: `prompt_tokens` include cached and audio tokens,
/// `completion_tokens` include reasoning and audio tokens. Read from a tree: the reference that
/// the filter's direct reader (`dialect::chat_usage`) is tested and fuzzed against.
pub fn chat_usage(usage: &Value) -> TokenCounts {
    TokenCounts {
        input: provider(usage, &["prompt_tokens"]),
        cache_read: provider(usage, &["prompt_tokens_details", "cached_tokens"]),
        audio_input: provider(usage, &["prompt_tokens_details", "audio_tokens"]),
        output: provider(usage, &["completion_tokens"]),
        reasoning: provider(usage, &["completion_tokens_details", "reasoning_tokens"]),
        audio_output: provider(usage, &["completion_tokens_details", "audio_tokens"]),
        ..TokenCounts::default()
    }
}

/// Responses `usage`: `input_tokens` include cached tokens, `output_tokens` reasoning tokens.
pub fn responses_usage(usage: &Value) -> TokenCounts {
    TokenCounts {
        input: provider(usage, &["input_tokens"]),
        cache_read: provider(usage, &["input_tokens_details", "cached_tokens"]),
        output: provider(usage, &["output_tokens"]),
        reasoning: provider(usage, &["output_tokens_details", "reasoning_tokens"]),
        ..TokenCounts::default()
    }
}

/// The request with `stream_options.include_usage: true`, or `None` if it cannot be added. Every
/// other byte stays what the client sent: the common case (no `stream_options`) is one insertion
/// after the opening brace; an existing `stream_options` object gets `include_usage` set inside it
/// (its other members, and every other member of the body, untouched), and `null` is replaced.
/// The body was validated by the strict read, so `stream_options` is an object, `null` or absent.
pub fn with_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    json_edit::set_in_member(body, "stream_options", "include_usage", "true")
}

/// A Chat Completions chunk: `data: {chunk}` events, then `data: [DONE]`. Read into borrowed,
/// typed fields (unknown ones skipped without building them): this runs for every chunk of every
/// stream, so it must cost a few microseconds at most.
pub fn read_chat_event(event: &SseEvent) -> EventFacts {
    if event.data == b"[DONE]" {
        return EventFacts { terminal: true, ..EventFacts::default() };
    }
    let Ok(chunk) = serde_json::from_slice::<ChatChunk>(&event.data) else {
        return read_chat_event_tree(&event.data);
    };
    let mut facts = EventFacts { model: chunk.model.map(Cow::into_owned), ..EventFacts::default() };
    if let Some(usage) = chunk.usage.filter(|usage| usage.object) {
        facts.tokens = usage.tokens();
        facts.usage_only = chunk.choices.as_ref().is_some_and(Vec::is_empty);
    }
    for delta in chunk.choices.iter().flatten().filter_map(|c| c.delta.as_ref()) {
        for text in [&delta.content, &delta.refusal, &delta.reasoning_content].into_iter().flatten() {
            facts.text.push_str(text);
        }
        for function in delta.tool_calls.iter().flatten().filter_map(|c| c.function.as_ref()) {
            for text in [&function.name, &function.arguments].into_iter().flatten() {
                facts.text.push_str(text);
            }
        }
    }
    facts
}

/// [`read_chat_event`] for a chunk the typed read refused because a member has another type than
/// OpenAI's (compatible servers send `delta.content` as an array of parts, or tool-call
/// `arguments` as an object): each fact is read on its own from a tree, so one odd member never
/// costs the chunk's usage, its model or the rest of its text, and a usage-only chunk is still
/// recognised. Only a chunk that is not JSON at all says nothing.
fn read_chat_event_tree(data: &[u8]) -> EventFacts {
    let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
        return EventFacts::default();
    };
    let mut facts =
        EventFacts { model: chunk.get("model").and_then(Value::as_str).map(str::to_string), ..EventFacts::default() };
    let choices = chunk.get("choices").and_then(Value::as_array);
    if let Some(usage) = chunk.get("usage").and_then(|u| ChatUsage::deserialize(u).ok()).filter(|u| u.object) {
        facts.tokens = usage.tokens();
        facts.usage_only = choices.is_some_and(Vec::is_empty);
    }
    for delta in choices.into_iter().flatten().filter_map(|c| c.get("delta")) {
        for key in ["content", "refusal", "reasoning_content"] {
            push_text(&mut facts.text, delta.get(key));
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for function in calls.into_iter().flatten().filter_map(|c| c.get("function")) {
            for key in ["name", "arguments"] {
                push_text(&mut facts.text, function.get(key));
            }
        }
    }
    facts
}

/// The generated text in a member: a string, the `text` of an array of parts, an object's JSON.
fn push_text(out: &mut String, value: Option<&Value>) {
    match value {
        Some(Value::String(text)) => out.push_str(text),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part {
                    Value::String(text) => out.push_str(text),
                    _ => push_text(out, part.get("text")),
                }
            }
        }
        Some(object @ Value::Object(_)) => out.push_str(&object.to_string()),
        _ => {}
    }
}

#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(borrow, default)]
    delta: Option<ChunkDelta<'a>>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// A Responses stream event: typed events; usage arrives with the final response object.
pub fn read_responses_event(event: &SseEvent) -> EventFacts {
    let Ok(value) = serde_json::from_slice::<Value>(&event.data) else {
        return EventFacts::default();
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or(event.event.as_str());
    let response = value.get("response");
    let mut facts = EventFacts {
        model: response.and_then(|r| r.get("model")).and_then(Value::as_str).map(str::to_string),
        ..EventFacts::default()
    };
    match kind {
        "response.completed" | "response.incomplete" | "response.failed" => {
            facts.terminal = true;
            if let Some(usage) = response.and_then(|r| r.get("usage")).filter(|u| u.is_object()) {
                facts.tokens = responses_usage(usage);
            }
        }
        "response.output_text.delta"
        | "response.refusal.delta"
        | "response.function_call_arguments.delta"
        | "response.reasoning_summary_text.delta"
        | "response.reasoning_text.delta" => {
            if let Some(text) = value.get("delta").and_then(Value::as_str) {
                facts.text.push_str(text);
            }
        }
        _ => {}
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: &str) -> SseEvent {
        SseEvent { event: String::new(), data: data.as_bytes().to_vec(), start: 0, end: 0 }
    }

    #[test]
    fn include_usage_is_inserted_without_touching_the_rest() {
        let body = br#" {"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let out = with_include_usage(body).unwrap();
        assert_eq!(
            out,
            br#" {"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
        assert_eq!(with_include_usage(b"{}").unwrap(), br#"{"stream_options":{"include_usage":true}}"#);
    }

    #[test]
    fn include_usage_is_set_inside_existing_stream_options_byte_for_byte() {
        // Numbers, escapes and key order a re-serialisation would change (the audit's probe).
        let body = r#"{"temperature":0.70,"seed":1e2,"n":123456789012345678901234567890,"messages":[{"role":"user","content":"caf\u00e9"}],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let expected = body.replace(r#""include_usage":false"#, r#""include_usage":true"#);
        assert_eq!(String::from_utf8(with_include_usage(body.as_bytes()).unwrap()).unwrap(), expected);
        let body = r#"{"stream":true, "stream_options": {}, "z": 0.10}"#;
        assert_eq!(
            with_include_usage(body.as_bytes()).unwrap(),
            br#"{"stream":true, "stream_options": {"include_usage":true}, "z": 0.10}"#
        );
        let body = r#"{"stream":true, "stream_options": null, "z": 0.10}"#;
        assert_eq!(
            with_include_usage(body.as_bytes()).unwrap(),
            br#"{"stream":true, "stream_options": {"include_usage":true}, "z": 0.10}"#
        );
        let body = r#"{"stream_options": {"include_usage": null}}"#;
        assert_eq!(with_include_usage(body.as_bytes()).unwrap(), br#"{"stream_options": {"include_usage": true}}"#);
        assert_eq!(with_include_usage(br#"{"stream_options":"odd"}"#), None);
        assert_eq!(with_include_usage(b"[]"), None);
    }

    #[test]
    fn chat_usage_reads_every_detail() {
        let usage = json!({"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 1}});
        let counts = chat_usage(&usage);
        assert_eq!(counts.input, Some(Count::provider(20)));
        assert_eq!(counts.cache_read, Some(Count::provider(8)));
        assert_eq!(counts.audio_input, Some(Count::provider(2)));
        assert_eq!(counts.output, Some(Count::provider(9)));
        assert_eq!(counts.reasoning, Some(Count::provider(4)));
        assert_eq!(counts.audio_output, Some(Count::provider(1)));
    }

    #[test]
    fn chat_chunks_give_text_and_the_final_usage_chunk() {
        let facts = read_chat_event(&event(
            r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}"#,
        ));
        assert_eq!(facts.text, "Hel");
        assert!(facts.tokens.is_empty());
        let facts = read_chat_event(&event(
            r#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ));
        assert!(facts.usage_only);
        assert_eq!(facts.tokens.output, Some(Count::provider(2)));
        assert!(read_chat_event(&event("[DONE]")).terminal);
    }

    #[test]
    fn tool_call_arguments_count_as_generated_text() {
        let facts = read_chat_event(&event(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
        ));
        assert_eq!(facts.text, "get{\"a\"");
    }

    #[test]
    fn a_member_of_another_type_costs_the_chunk_none_of_its_usage_text_or_model() {
        // Content as an array of parts (some compatible servers), usage on the same chunk.
        let facts = read_chat_event(&event(
            r#"{"model":"mistral-small","choices":[{"delta":{"content":[{"type":"text","text":"Hel"},{"type":"text","text":"lo"}]}}],
                "usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ));
        assert_eq!(facts.model.as_deref(), Some("mistral-small"));
        assert_eq!(facts.text, "Hello");
        assert_eq!(facts.tokens.output, Some(Count::provider(2)));
        assert!(!facts.usage_only);
        // Tool-call arguments as an object still count as generated text.
        let facts = read_chat_event(&event(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"get","arguments":{"a":1}}}]}}]}"#,
        ));
        assert_eq!(facts.text, "get{\"a\":1}");
        // A usage-only chunk with an odd member is still the usage chunk Tollgate may remove.
        let facts =
            read_chat_event(&event(r#"{"model":7,"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#));
        assert!(facts.usage_only);
        assert_eq!(facts.tokens.input, Some(Count::provider(3)));
        assert_eq!(facts.model, None);
    }

    #[test]
    fn garbage_events_say_nothing() {
        assert_eq!(read_chat_event(&event("{not json")), EventFacts::default());
        assert_eq!(read_chat_event(&event(r#"{"choices":"x","usage":5}"#)), EventFacts::default());
    }

    #[test]
    fn responses_completed_carries_usage() {
        let facts = read_responses_event(&event(
            r#"{"type":"response.completed","response":{"model":"gpt-4.1","usage":{"input_tokens":30,
            "input_tokens_details":{"cached_tokens":10},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":2}}}}"#,
        ));
        assert!(facts.terminal);
        assert_eq!(facts.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(facts.tokens.input, Some(Count::provider(30)));
        assert_eq!(facts.tokens.cache_read, Some(Count::provider(10)));
        assert_eq!(facts.tokens.reasoning, Some(Count::provider(2)));
        let delta = read_responses_event(&event(r#"{"type":"response.output_text.delta","delta":"Hi"}"#));
        assert_eq!(delta.text, "Hi");
    }
}
