//! Anthropic Messages response → OpenAI Chat Completions response (non-streaming).

use serde_json::{json, Map, Value};

use super::json::{as_object, at, field, invalid, note, opt_array, opt_object, opt_str, parse_object, req_str};
use super::shared::{finish_reason, openai_id, openai_usage, OPENAI_USAGE_LEFT_OUT};
use super::{TranslateError, Translated};

/// `model_for_client` replaces the upstream's `model` when given (e.g. the name the client
/// asked for); `created` is the Unix time to report (pure code reads no clock).
pub fn anthropic_response_to_openai_chat(
    body: &[u8],
    model_for_client: Option<&str>,
    created: u64,
) -> Result<Translated, TranslateError> {
    let response = parse_object(body, "response body")?;
    let mut notes = Vec::new();
    let blocks = opt_array(&response, "content", "")?.ok_or_else(|| invalid("content", "missing"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let path = at("content", i);
        let block = as_object(block, &path)?;
        match req_str(block, "type", &path)? {
            // Text blocks are consecutive parts of one answer (split around citations or tool
            // calls): they join without a separator, as Anthropic's own clients show them.
            "text" => text.push_str(req_str(block, "text", &path)?),
            "tool_use" => calls.push(tool_call(block, &path)?),
            other => note(&mut notes, format!("content[].type {other}: dropped (OpenAI Chat has no place for it)")),
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) });
    message.insert("refusal".into(), Value::Null);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let model = match model_for_client {
        Some(model) => model,
        None => opt_str(&response, "model", "")?.unwrap_or_default(),
    };
    let mut out = json!({
        "id": openai_id(opt_str(&response, "id", "")?, body),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(opt_str(&response, "stop_reason", "")?),
        }],
    });
    let usage = opt_object(&response, "usage", "")?.and_then(|usage| openai_usage(&Value::Object(usage.clone())));
    match (usage, out.as_object_mut()) {
        (Some(usage), Some(object)) => {
            object.insert("usage".into(), usage);
        }
        _ => note(&mut notes, OPENAI_USAGE_LEFT_OUT.into()),
    }
    let body = serde_json::to_vec(&out).map_err(|e| invalid("", e.to_string()))?;
    Ok(Translated { body, notes })
}

/// A `tool_use` block → an OpenAI tool call; the input object is serialised as the arguments
/// string. Ids pass unchanged, so the client's tool results find their call on the way back.
fn tool_call(block: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let input = field(block, "input").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "id": req_str(block, "id", path)?,
        "type": "function",
        "function": { "name": req_str(block, "name", path)?, "arguments": input.to_string() },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(response: Value, model: Option<&str>) -> Value {
        let out = anthropic_response_to_openai_chat(response.to_string().as_bytes(), model, 1_753_982_400).unwrap();
        serde_json::from_slice(&out.body).unwrap()
    }

    #[test]
    fn text_tool_use_stop_reason_usage_and_id_map_to_a_chat_completion() {
        let out = translate(
            json!({"id": "msg_01A", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 20}}),
            None,
        );
        assert_eq!(
            out,
            json!({"id": "chatcmpl-01A", "object": "chat.completion", "created": 1_753_982_400,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Let me check.", "refusal": null,
                    "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
                "usage": {"prompt_tokens": 115, "completion_tokens": 20, "total_tokens": 135,
                    "prompt_tokens_details": {"cached_tokens": 100}}})
        );
    }

    #[test]
    fn the_clients_model_name_replaces_the_upstreams_when_given() {
        let response = json!({"id": "msg_1", "model": "claude-x", "content": [], "stop_reason": "end_turn"});
        assert_eq!(translate(response, Some("gpt-4o"))["model"], "gpt-4o");
    }

    #[test]
    fn thinking_blocks_are_dropped_with_a_note_and_text_blocks_join() {
        let response = json!({"content": [{"type": "thinking", "thinking": "…", "signature": "s"},
            {"type": "text", "text": "A"}, {"type": "text", "text": "B"}], "stop_reason": "max_tokens"});
        let out = anthropic_response_to_openai_chat(response.to_string().as_bytes(), None, 0).unwrap();
        let value: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(value["choices"][0]["message"]["content"], "AB");
        assert_eq!(value["choices"][0]["finish_reason"], "length");
        assert_eq!(
            out.notes,
            ["content[].type thinking: dropped (OpenAI Chat has no place for it)", OPENAI_USAGE_LEFT_OUT]
        );
        assert!(value.get("usage").is_none(), "no usage reported: none made up");
        assert!(value["id"].as_str().unwrap().starts_with("chatcmpl-tollgate"));
    }

    #[test]
    fn usage_with_a_count_missing_is_left_out_never_zeros() {
        for usage in [json!({"input_tokens": 10}), json!({"input_tokens": 10, "output_tokens": "3"}), json!(null)] {
            let response =
                json!({"content": [{"type": "text", "text": "A"}], "stop_reason": "end_turn", "usage": usage});
            let out = anthropic_response_to_openai_chat(response.to_string().as_bytes(), None, 0).unwrap();
            let value: Value = serde_json::from_slice(&out.body).unwrap();
            assert!(value.get("usage").is_none(), "{usage}");
            assert_eq!(out.notes, [OPENAI_USAGE_LEFT_OUT], "{usage}");
        }
    }

    #[test]
    fn a_response_without_content_is_an_error_naming_it() {
        let e = anthropic_response_to_openai_chat(br#"{"id":"msg_1"}"#, None, 0).unwrap_err();
        assert_eq!(e.to_string(), "content: missing");
        let e =
            anthropic_response_to_openai_chat(br#"{"content":[{"type":"tool_use","id":"t"}]}"#, None, 0).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("content[0].name"));
    }
}
