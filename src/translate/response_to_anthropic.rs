//! OpenAI Chat Completions response → Anthropic Messages response (non-streaming).

use serde_json::{json, Map, Value};

use super::json::{as_object, at, field, invalid, join, note, opt_array, opt_object, opt_str, parse_object, req_str};
use super::shared::{anthropic_id, anthropic_usage, openai_usage_complete, stop_reason, ANTHROPIC_USAGE_ZEROS};
use super::{TranslateError, Translated};

/// `model_for_client` replaces the upstream's `model` when given.
pub fn openai_chat_response_to_anthropic(
    body: &[u8],
    model_for_client: Option<&str>,
) -> Result<Translated, TranslateError> {
    let response = parse_object(body, "response body")?;
    let mut notes = Vec::new();
    let choices = opt_array(&response, "choices", "")?.ok_or_else(|| invalid("choices", "missing"))?;
    // Translated requests never ask for more than one choice; any others are not the answer.
    let choice = choices.first().ok_or_else(|| invalid("choices", "empty"))?;
    let choice = as_object(choice, "choices[0]")?;
    if choices.len() > 1 {
        note(&mut notes, "choices[1..]: dropped (Anthropic has one answer per message)".into());
    }
    let message =
        opt_object(choice, "message", "choices[0]")?.ok_or_else(|| invalid("choices[0].message", "missing"))?;

    let mut content = Vec::new();
    let text = opt_str(message, "content", "choices[0].message")?.unwrap_or_default();
    let refusal = opt_str(message, "refusal", "choices[0].message")?;
    // A refusal is what the model said instead of an answer: Anthropic shows it as text.
    for text in [text, refusal.unwrap_or_default()] {
        if !text.is_empty() {
            content.push(json!({ "type": "text", "text": text }));
        }
    }
    let calls_path = "choices[0].message.tool_calls";
    for (j, call) in opt_array(message, "tool_calls", "choices[0].message")?.unwrap_or_default().iter().enumerate() {
        content.push(tool_use(call, &at(calls_path, j), &mut notes)?);
    }

    let finish = opt_str(choice, "finish_reason", "choices[0]")?;
    let stop = if refusal.is_some() { "refusal" } else { stop_reason(finish) };
    let model = match model_for_client {
        Some(model) => model,
        None => opt_str(&response, "model", "")?.unwrap_or_default(),
    };
    let reported = field(&response, "usage").unwrap_or(&Value::Null);
    if !openai_usage_complete(reported) {
        note(&mut notes, ANTHROPIC_USAGE_ZEROS.into());
    }
    let usage = anthropic_usage(reported);
    let out = json!({
        "id": anthropic_id(opt_str(&response, "id", "")?, body),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage,
    });
    let body = serde_json::to_vec(&out).map_err(|e| invalid("", e.to_string()))?;
    Ok(Translated { body, notes })
}

/// An OpenAI tool call → a `tool_use` block. Anthropic's `input` must be an object: arguments
/// that are not a JSON object (typically cut short by `length`) become `{}` with a note, so
/// the rest of the answer still reaches the client.
fn tool_use(call: &Value, path: &str, notes: &mut Vec<String>) -> Result<Value, TranslateError> {
    let call = as_object(call, path)?;
    let function_path = join(path, "function");
    let function = opt_object(call, "function", path)?.ok_or_else(|| invalid(&function_path, "missing"))?;
    let arguments = opt_str(function, "arguments", &function_path)?.unwrap_or_default();
    let input = match serde_json::from_str::<Value>(arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => {
            if !arguments.trim().is_empty() {
                note(notes, format!("{function_path}.arguments: not a JSON object; sent as input {{}}"));
            }
            Value::Object(Map::new())
        }
    };
    Ok(json!({
        "type": "tool_use",
        "id": req_str(call, "id", path)?,
        "name": req_str(function, "name", &function_path)?,
        "input": input,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(response: Value) -> Translated {
        openai_chat_response_to_anthropic(response.to_string().as_bytes(), None).unwrap()
    }

    fn translate(response: Value) -> Value {
        serde_json::from_slice(&translated(response).body).unwrap()
    }

    fn completion(message: Value, finish_reason: &str) -> Value {
        json!({"id": "chatcmpl-B1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109,
                "prompt_tokens_details": {"cached_tokens": 64}}})
    }

    #[test]
    fn content_tool_calls_finish_reason_usage_and_id_map_to_a_message() {
        let out = translate(completion(
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
            "tool_calls",
        ));
        assert_eq!(
            out,
            json!({"id": "msg_B1", "type": "message", "role": "assistant", "model": "gpt-4o-2024-08-06",
                "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 36, "cache_read_input_tokens": 64, "output_tokens": 9}})
        );
    }

    #[test]
    fn a_refusal_is_text_with_the_refusal_stop_reason() {
        let out = translate(completion(
            json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
            "stop",
        ));
        assert_eq!(out["content"], json!([{"type": "text", "text": "I can't help with that."}]));
        assert_eq!(out["stop_reason"], "refusal");
    }

    #[test]
    fn arguments_cut_short_become_an_empty_input_with_a_note() {
        let out = translated(completion(
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{\"city\": \"Par"}}]}),
            "length",
        ));
        let value: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(value["content"][0]["input"], json!({}));
        assert_eq!(value["stop_reason"], "max_tokens");
        assert_eq!(
            out.notes,
            ["choices[0].message.tool_calls[0].function.arguments: not a JSON object; sent as input {}"]
        );
    }

    #[test]
    fn a_response_without_usage_reports_zero_tokens_with_a_note() {
        let mut response = completion(json!({"role": "assistant", "content": "x"}), "stop");
        response.as_object_mut().unwrap().remove("usage");
        assert_eq!(
            translate(response.clone())["usage"],
            json!({"input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0})
        );
        let out = openai_chat_response_to_anthropic(response.to_string().as_bytes(), None).unwrap();
        assert_eq!(out.notes, [ANTHROPIC_USAGE_ZEROS]);
    }

    #[test]
    fn responses_without_a_choice_are_errors_naming_it() {
        let e = openai_chat_response_to_anthropic(br#"{"choices": []}"#, None).unwrap_err();
        assert_eq!(e.to_string(), "choices: empty");
        let e = openai_chat_response_to_anthropic(br#"{"choices": [{"index": 0}]}"#, None).unwrap_err();
        assert_eq!(e.to_string(), "choices[0].message: missing");
    }
}
