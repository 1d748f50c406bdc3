//! Anthropic Messages request → OpenAI Chat Completions request.
//!
//! The top-level `system` becomes the first message; `tool_result` blocks of a user turn become
//! `tool` messages placed before the rest of that turn; `tool_use` blocks become the assistant's
//! `tool_calls`. Streams always ask for `stream_options.include_usage`, because Anthropic's
//! stream carries usage and the stream translator needs OpenAI's usage chunk to report it.

use serde_json::{json, Map, Value};

use super::json::{
    as_object, at, field, invalid, join, note, opt_array, opt_bool, opt_object, opt_str, opt_u64, parse_object,
    req_str, string_array, type_name, unsupported, Object,
};
use super::sampling::copy_sampling;
use super::{TranslateError, Translated};

/// Fields with no OpenAI counterpart that tune sampling, caching or routing: dropped with a note.
const DROPPED: &[&str] = &["top_k", "thinking", "service_tier", "inference_geo", "speed", "context_management"];

/// `model` is the upstream model to ask for.
pub fn anthropic_to_openai_chat(body: &[u8], model: &str) -> Result<Translated, TranslateError> {
    let request = parse_object(body, "request body")?;
    let mut notes = Vec::new();
    let mut out = Map::new();
    out.insert("model".into(), json!(model));

    let mut messages = Vec::new();
    if let Some(system) = system_message(&request, &mut notes)? {
        messages.push(system);
    }
    let turns = opt_array(&request, "messages", "")?.ok_or_else(|| invalid("messages", "missing"))?;
    for (i, turn) in turns.iter().enumerate() {
        convert_turn(turn, &at("messages", i), &mut messages, &mut notes)?;
    }
    out.insert("messages".into(), Value::Array(messages));

    // `max_completion_tokens` is what OpenAI documents (and reasoning models require);
    // `max_tokens` is deprecated there.
    if let Some(max_tokens) = opt_u64(&request, "max_tokens", "")? {
        out.insert("max_completion_tokens".into(), json!(max_tokens));
    }
    if let Some(stops) = opt_array(&request, "stop_sequences", "")? {
        out.insert("stop".into(), string_array(stops, "stop_sequences")?);
    }
    if copy_sampling(&request, &mut out, None, &mut notes)? == Some(true) {
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if let Some(metadata) = opt_object(&request, "metadata", "")? {
        if let Some(user) = opt_str(metadata, "user_id", "metadata")? {
            out.insert("user".into(), json!(user));
        }
    }

    let tools = match opt_array(&request, "tools", "")? {
        Some(tools) => {
            tools.iter().enumerate().map(|(i, t)| convert_tool(t, &at("tools", i))).collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    if let Some(choice) = opt_object(&request, "tool_choice", "")? {
        let (choice, parallel) = tool_choice(choice)?;
        out.insert("tool_choice".into(), choice);
        // OpenAI refuses `parallel_tool_calls` on a request without tools.
        if parallel == Some(false) && !tools.is_empty() {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(config) = opt_object(&request, "output_config", "")? {
        output_config(config, &mut out, &mut notes)?;
    }

    refuse_or_drop_the_rest(&request, &mut notes)?;
    let body = serde_json::to_vec(&Value::Object(out)).map_err(|e| invalid("", e.to_string()))?;
    Ok(Translated { body, notes })
}

fn refuse_or_drop_the_rest(request: &Object, notes: &mut Vec<String>) -> Result<(), TranslateError> {
    const TRANSLATED: &[&str] = &[
        "model",
        "system",
        "messages",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "output_config",
    ];
    for (key, value) in request {
        if TRANSLATED.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        match key.as_str() {
            "container" | "mcp_servers" => {
                return Err(unsupported(key, "Anthropic-hosted tools and servers have no OpenAI Chat counterpart"))
            }
            _ if DROPPED.contains(&key.as_str()) => {
                note(notes, format!("{key}: dropped (OpenAI Chat has no counterpart)"))
            }
            _ => note(notes, format!("{key}: dropped (not a known Messages field)")),
        }
    }
    Ok(())
}

/// `system`: a string, or text blocks (one system message with a part per block, so block
/// boundaries survive). `cache_control` has no OpenAI counterpart: OpenAI caches by itself.
fn system_message(request: &Object, notes: &mut Vec<String>) -> Result<Option<Value>, TranslateError> {
    match field(request, "system") {
        None => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(json!({ "role": "system", "content": text }))),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let path = at("system", i);
                let block = as_object(block, &path)?;
                match req_str(block, "type", &path)? {
                    "text" => parts.push(text_part(req_str(block, "text", &path)?)),
                    other => {
                        return Err(unsupported(
                            &join(&path, "type"),
                            format!("a `{other}` block cannot go in the system prompt"),
                        ))
                    }
                }
                note_cache_control(block, notes);
            }
            Ok(collapse(parts).map(|content| json!({ "role": "system", "content": content })))
        }
        Some(other) => Err(invalid("system", format!("expected a string or an array, got {}", type_name(other)))),
    }
}

fn note_cache_control(block: &Object, notes: &mut Vec<String>) {
    if field(block, "cache_control").is_some() {
        note(notes, "cache_control: dropped (OpenAI caches prompts automatically)".into());
    }
}

fn text_part(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

/// Content parts → a plain string when there is one text part, the parts otherwise; `None`
/// when there are none.
fn collapse(mut parts: Vec<Value>) -> Option<Value> {
    match parts.as_slice() {
        [] => None,
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => only.get("text").cloned(),
        _ => Some(Value::Array(std::mem::take(&mut parts))),
    }
}

fn convert_turn(
    turn: &Value,
    path: &str,
    messages: &mut Vec<Value>,
    notes: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let turn = as_object(turn, path)?;
    let role = req_str(turn, "role", path)?;
    let content_path = join(path, "content");
    let blocks = match field(turn, "content") {
        Some(Value::String(text)) => {
            messages.push(json!({ "role": role_checked(role, path)?, "content": text }));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        None => return Err(invalid(&content_path, "missing")),
        Some(other) => {
            return Err(invalid(&content_path, format!("expected a string or an array, got {}", type_name(other))))
        }
    };
    match role_checked(role, path)? {
        "user" => user_turn(blocks, &content_path, messages, notes),
        _ => assistant_turn(blocks, &content_path, messages, notes),
    }
}

fn role_checked<'a>(role: &'a str, path: &str) -> Result<&'a str, TranslateError> {
    match role {
        "user" | "assistant" => Ok(role),
        other => Err(invalid(&join(path, "role"), format!("unknown role `{other}`"))),
    }
}

/// A user turn: its `tool_result` blocks become `tool` messages, in order, and the rest one
/// user message after them (OpenAI wants tool results right after the assistant's calls).
fn user_turn(
    blocks: &[Value],
    path: &str,
    messages: &mut Vec<Value>,
    notes: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let block_path = at(path, j);
        let block = as_object(block, &block_path)?;
        note_cache_control(block, notes);
        match req_str(block, "type", &block_path)? {
            "text" => parts.push(text_part(req_str(block, "text", &block_path)?)),
            "image" => parts.push(image_part(block, &block_path)?),
            "tool_result" => messages.push(tool_message(block, &block_path, notes)?),
            other => {
                return Err(unsupported(&join(&block_path, "type"), format!("`{other}` blocks are not translated")))
            }
        }
    }
    if let Some(content) = collapse(parts) {
        messages.push(json!({ "role": "user", "content": content }));
    }
    Ok(())
}

/// `image` blocks: base64 sources become `data:` URLs, URL sources stay URLs. Anthropic's file
/// ids refer to its own file store, which OpenAI cannot read.
fn image_part(block: &Object, path: &str) -> Result<Value, TranslateError> {
    let source_path = join(path, "source");
    let source = opt_object(block, "source", path)?.ok_or_else(|| invalid(&source_path, "missing"))?;
    let url = match req_str(source, "type", &source_path)? {
        "base64" => format!(
            "data:{};base64,{}",
            req_str(source, "media_type", &source_path)?,
            req_str(source, "data", &source_path)?
        ),
        "url" => req_str(source, "url", &source_path)?.to_string(),
        other => {
            return Err(unsupported(&join(&source_path, "type"), format!("`{other}` image sources are not translated")))
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// A `tool_result` → a `tool` message. OpenAI tool messages hold text only, so an image in a
/// result is refused rather than lost; `is_error` has no counterpart and is dropped.
fn tool_message(block: &Object, path: &str, notes: &mut Vec<String>) -> Result<Value, TranslateError> {
    let id = req_str(block, "tool_use_id", path)?;
    if opt_bool(block, "is_error", path)? == Some(true) {
        note(notes, "tool_result.is_error: dropped (OpenAI tool messages have no error flag)".into());
    }
    let content_path = join(path, "content");
    let content = match field(block, "content") {
        None => json!(""),
        Some(text @ Value::String(_)) => text.clone(),
        Some(Value::Array(items)) => {
            let mut parts = Vec::new();
            for (k, item) in items.iter().enumerate() {
                let item_path = at(&content_path, k);
                let item = as_object(item, &item_path)?;
                match req_str(item, "type", &item_path)? {
                    "text" => parts.push(text_part(req_str(item, "text", &item_path)?)),
                    other => {
                        return Err(unsupported(
                            &join(&item_path, "type"),
                            format!("OpenAI tool messages hold only text, not `{other}`"),
                        ))
                    }
                }
            }
            collapse(parts).unwrap_or_else(|| json!(""))
        }
        Some(other) => {
            return Err(invalid(&content_path, format!("expected a string or an array, got {}", type_name(other))))
        }
    };
    Ok(json!({ "role": "tool", "tool_call_id": id, "content": content }))
}

/// An assistant turn: text blocks join into `content`, `tool_use` blocks become `tool_calls`.
/// Thinking blocks are the model's own scratch work; OpenAI Chat has no field for them.
fn assistant_turn(
    blocks: &[Value],
    path: &str,
    messages: &mut Vec<Value>,
    notes: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let block_path = at(path, j);
        let block = as_object(block, &block_path)?;
        match req_str(block, "type", &block_path)? {
            "text" => text.push_str(req_str(block, "text", &block_path)?),
            "tool_use" => {
                let input = field(block, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": req_str(block, "id", &block_path)?,
                    "type": "function",
                    "function": { "name": req_str(block, "name", &block_path)?, "arguments": input.to_string() },
                }));
            }
            "thinking" | "redacted_thinking" => {
                note(notes, "thinking blocks: dropped (OpenAI Chat has no place for them)".into());
            }
            other => {
                return Err(unsupported(&join(&block_path, "type"), format!("`{other}` blocks are not translated")))
            }
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    // OpenAI wants `content: null` beside tool calls with no text.
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    messages.push(Value::Object(message));
    Ok(())
}

/// Client tools (`type` absent or `custom`) → function tools. Anthropic's server tools (web
/// search, code execution, bash, …) run at Anthropic and have no OpenAI Chat counterpart.
fn convert_tool(tool: &Value, path: &str) -> Result<Value, TranslateError> {
    let tool = as_object(tool, path)?;
    match opt_str(tool, "type", path)? {
        None | Some("custom") => {}
        Some(other) => {
            return Err(unsupported(
                &join(path, "type"),
                format!("`{other}` is an Anthropic server tool; OpenAI Chat cannot run it"),
            ))
        }
    }
    let mut function = Map::new();
    function.insert("name".into(), json!(req_str(tool, "name", path)?));
    if let Some(description) = opt_str(tool, "description", path)? {
        function.insert("description".into(), json!(description));
    }
    let schema =
        opt_object(tool, "input_schema", path)?.ok_or_else(|| invalid(&join(path, "input_schema"), "missing"))?;
    function.insert("parameters".into(), Value::Object(schema.clone()));
    if let Some(strict) = opt_bool(tool, "strict", path)? {
        function.insert("strict".into(), json!(strict));
    }
    Ok(json!({ "type": "function", "function": function }))
}

/// Anthropic `tool_choice` → OpenAI `tool_choice`, and whether parallel calls are allowed.
fn tool_choice(choice: &Object) -> Result<(Value, Option<bool>), TranslateError> {
    let parallel = opt_bool(choice, "disable_parallel_tool_use", "tool_choice")?.map(|disabled| !disabled);
    let openai = match req_str(choice, "type", "tool_choice")? {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({ "type": "function", "function": { "name": req_str(choice, "name", "tool_choice")? } }),
        other => return Err(invalid("tool_choice.type", format!("unknown type `{other}`"))),
    };
    Ok((openai, parallel))
}

/// `output_config.format` (a JSON schema) → `response_format`. Anthropic's structured outputs
/// always follow the schema, which is OpenAI's strict mode. `effort` is model-specific on both
/// sides and is dropped.
fn output_config(config: &Object, out: &mut Map<String, Value>, notes: &mut Vec<String>) -> Result<(), TranslateError> {
    if let Some(format) = opt_object(config, "format", "output_config")? {
        match req_str(format, "type", "output_config.format")? {
            "json_schema" => {
                let schema = opt_object(format, "schema", "output_config.format")?
                    .ok_or_else(|| invalid("output_config.format.schema", "missing"))?;
                out.insert(
                    "response_format".into(),
                    json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": schema, "strict": true } }),
                );
            }
            other => return Err(invalid("output_config.format.type", format!("unknown type `{other}`"))),
        }
    }
    if field(config, "effort").is_some() {
        note(notes, "output_config.effort: dropped (model-specific; not translated)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::TranslateErrorKind;

    fn translated(request: Value) -> Translated {
        anthropic_to_openai_chat(request.to_string().as_bytes(), "gpt-4o").unwrap()
    }

    fn translate(request: Value) -> Value {
        serde_json::from_slice(&translated(request).body).unwrap()
    }

    fn error(request: Value) -> TranslateError {
        anthropic_to_openai_chat(request.to_string().as_bytes(), "gpt-4o").unwrap_err()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn the_system_prompt_becomes_the_first_message() {
        let out =
            translate(json!({"model": "claude", "max_tokens": 100, "system": "Be brief.", "messages": [user("Hi")]}));
        assert_eq!(
            out["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        );
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["max_completion_tokens"], 100);
    }

    #[test]
    fn system_blocks_keep_their_boundaries_as_parts_and_cache_control_is_noted() {
        let request = json!({"system": [{"type": "text", "text": "A"},
            {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}], "messages": [user("Hi")]});
        assert_eq!(
            translate(request.clone())["messages"][0],
            json!({"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]})
        );
        assert_eq!(translated(request).notes, ["cache_control: dropped (OpenAI caches prompts automatically)"]);
    }

    #[test]
    fn images_become_image_url_parts_with_data_urls_for_base64() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            {"type": "text", "text": "Same?"}]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                {"type": "text", "text": "Same?"},
            ])
        );
    }

    #[test]
    fn tool_use_becomes_tool_calls_and_tool_results_become_tool_messages_before_the_turns_text() {
        let out = translate(json!({"messages": [
            user("Weather?"),
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "text", "text": "And tomorrow?"}]},
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "user", "content": "And tomorrow?"},
            ])
        );
    }

    #[test]
    fn an_assistant_turn_of_only_tool_calls_has_null_content_and_thinking_is_dropped() {
        let request = json!({"messages": [user("x"), {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]});
        let out = translate(request.clone());
        assert_eq!(out["messages"][1]["content"], Value::Null);
        assert_eq!(out["messages"][1]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(translated(request).notes, ["thinking blocks: dropped (OpenAI Chat has no place for them)"]);
    }

    #[test]
    fn images_inside_tool_results_are_refused_rather_than_lost() {
        let e = error(json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].content[0].type"));
        assert_eq!(e.kind, TranslateErrorKind::Unsupported);
    }

    #[test]
    fn tools_and_tool_choice_map_to_functions() {
        let out = translate(json!({"messages": [user("x")],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}}));
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {}}}}])
        );
        assert_eq!(out["tool_choice"], json!({"type": "function", "function": {"name": "get_weather"}}));
        assert_eq!(out["parallel_tool_calls"], false);
        for (anthropic, openai) in [("auto", "auto"), ("any", "required"), ("none", "none")] {
            let out = translate(json!({"messages": [user("x")], "tool_choice": {"type": anthropic}}));
            assert_eq!(out["tool_choice"], openai);
            assert!(out.get("parallel_tool_calls").is_none());
        }
    }

    #[test]
    fn server_tools_are_refused_naming_their_type() {
        let e =
            error(json!({"messages": [user("x")], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
        assert!(e.message.contains("web_search_20250305"));
    }

    #[test]
    fn streams_ask_openai_for_usage() {
        let out = translate(json!({"messages": [user("x")], "stream": true}));
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        assert!(translate(json!({"messages": [user("x")], "stream": false})).get("stream_options").is_none());
    }

    #[test]
    fn stop_sequences_sampling_and_user_map_and_top_k_is_dropped() {
        let request = json!({"messages": [user("x")], "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.8,
            "top_k": 40, "metadata": {"user_id": "u-1"}});
        let out = translate(request.clone());
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!((out["temperature"].clone(), out["top_p"].clone()), (json!(0.5), json!(0.8)));
        assert_eq!(out["user"], "u-1");
        assert_eq!(translated(request).notes, ["top_k: dropped (OpenAI Chat has no counterpart)"]);
    }

    #[test]
    fn an_output_format_becomes_a_strict_json_schema() {
        let out = translate(json!({"messages": [user("x")],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}));
        assert_eq!(
            out["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": true}})
        );
    }

    #[test]
    fn malformed_turns_are_errors_that_name_where() {
        for (messages, param) in [
            (json!([{"role": "user"}]), "messages[0].content"),
            (json!([{"role": "system", "content": "x"}]), "messages[0].role"),
            (json!([{"role": "user", "content": [{"type": "document"}]}]), "messages[0].content[0].type"),
            (
                json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
                "messages[0].content[0].source.type",
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]),
                "messages[0].content[0].id",
            ),
        ] {
            let e = error(json!({ "messages": messages }));
            assert_eq!(e.param.as_deref(), Some(param), "{messages}: {e}");
        }
        assert_eq!(error(json!({"messages": [], "container": "c"})).param.as_deref(), Some("container"));
    }
}
