//! OpenAI Chat Completions request → Anthropic Messages request.
//!
//! Anthropic keeps the system prompt outside `messages`, wants user and assistant turns to
//! alternate, carries tool results as `tool_result` blocks in a user turn, and requires
//! `max_tokens`. So: system and developer messages (wherever they appear) join the top-level
//! `system` in order; consecutive messages of one role merge into one turn; `tool` messages
//! become `tool_result` blocks of a user turn (consecutive ones merge, and they go first in the
//! turn, as Anthropic requires).

use serde_json::{json, Map, Value};

use super::json::{
    at, field, invalid, join, note, opt_array, opt_bool, opt_object, opt_str, opt_u64, parse_object, req_str,
    string_array, type_name, unsupported, Object,
};
use super::sampling::{copy_sampling, MaxTemperature};
use super::{TranslateError, Translated};

/// Fields with no Anthropic counterpart that only tune sampling, billing or storage: dropped
/// with a note, because the answer is still an answer to the same request.
const DROPPED: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "seed",
    "service_tier",
    "store",
    "metadata",
    "reasoning_effort",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_retention",
    "top_logprobs",
    "prediction",
];

/// `model` is the upstream model to ask for; `default_max_tokens` is used when the client set
/// neither `max_completion_tokens` nor `max_tokens` (Anthropic requires one).
pub fn openai_chat_to_anthropic(
    body: &[u8],
    model: &str,
    default_max_tokens: u32,
) -> Result<Translated, TranslateError> {
    let request = parse_object(body, "request body")?;
    let mut notes = Vec::new();
    let mut out = Map::new();
    out.insert("model".into(), json!(model));

    let max_tokens = match opt_u64(&request, "max_completion_tokens", "")? {
        Some(n) => n,
        None => opt_u64(&request, "max_tokens", "")?.unwrap_or(u64::from(default_max_tokens)),
    };
    out.insert("max_tokens".into(), json!(max_tokens));

    let messages = opt_array(&request, "messages", "")?.ok_or_else(|| invalid("messages", "missing"))?;
    let conversation = convert_messages(messages, &mut notes)?;
    if let Some(system) = conversation.system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(conversation.turns));

    if let Some(stop) = stop_sequences(&request)? {
        out.insert("stop_sequences".into(), stop);
    }
    // OpenAI accepts temperatures of 0–2, Anthropic 0–1: above 1 would be refused by Anthropic.
    // `stream_options` is OpenAI's; the stream translator produces the usage chunk itself.
    let max_temperature = MaxTemperature { value: 1.0, api: "Anthropic" };
    copy_sampling(&request, &mut out, Some(max_temperature), &mut notes)?;
    let user = match opt_str(&request, "user", "")? {
        Some(user) => Some(user),
        None => opt_str(&request, "safety_identifier", "")?,
    };
    if let Some(user) = user {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }

    let tools = match opt_array(&request, "tools", "")? {
        Some(tools) => tools
            .iter()
            .enumerate()
            .map(|(i, tool)| convert_tool(tool, &at("tools", i)))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let parallel = opt_bool(&request, "parallel_tool_calls", "")?;
    if let Some(choice) = tool_choice(&request, parallel, !tools.is_empty())? {
        out.insert("tool_choice".into(), choice);
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(format) = output_format(&request)? {
        out.insert("output_config".into(), json!({ "format": format }));
    }

    refuse_or_drop_the_rest(&request, &mut notes)?;
    let body = serde_json::to_vec(&Value::Object(out)).map_err(|e| invalid("", e.to_string()))?;
    Ok(Translated { body, notes })
}

/// Checks every field not translated above: refuses those whose loss would change the answer,
/// drops the rest with a note.
fn refuse_or_drop_the_rest(request: &Object, notes: &mut Vec<String>) -> Result<(), TranslateError> {
    const TRANSLATED: &[&str] = &[
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
    ];
    for (key, value) in request {
        if TRANSLATED.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        match key.as_str() {
            "n" if value.as_u64() == Some(1) => {}
            "n" => {
                return Err(unsupported("n", "Anthropic returns one choice per request; only n = 1 can be translated"))
            }
            "logprobs" if value == &Value::Bool(false) => {}
            "logprobs" => return Err(unsupported("logprobs", "Anthropic does not return log probabilities")),
            "modalities" if value == &json!(["text"]) => {}
            "modalities" | "audio" => return Err(unsupported(key, "Anthropic does not generate audio")),
            "functions" | "function_call" => {
                return Err(unsupported(key, "the legacy function-calling fields are not translated; use `tools`"))
            }
            "web_search_options" => {
                return Err(unsupported(key, "OpenAI's built-in web search has no Anthropic counterpart here"))
            }
            _ if DROPPED.contains(&key.as_str()) => {
                note(notes, format!("{key}: dropped (Anthropic has no counterpart)"))
            }
            _ => note(notes, format!("{key}: dropped (not a known Chat Completions field)")),
        }
    }
    Ok(())
}

struct Conversation {
    system: Option<Value>,
    turns: Vec<Value>,
}

fn convert_messages(messages: &[Value], notes: &mut Vec<String>) -> Result<Conversation, TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let path = at("messages", i);
        let message = super::json::as_object(message, &path)?;
        let role = req_str(message, "role", &path)?;
        let (turn_role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_parts(message, &path)?);
                continue;
            }
            "user" => ("user", user_content(message, &path, notes)?),
            "assistant" => ("assistant", assistant_content(message, &path, notes)?),
            "tool" => ("user", vec![tool_result(message, &path)?]),
            "function" => {
                return Err(unsupported(
                    &join(&path, "role"),
                    "the legacy `function` role is not translated; use `tool`",
                ))
            }
            other => return Err(invalid(&join(&path, "role"), format!("unknown role `{other}`"))),
        };
        if turn_role == "assistant" && blocks.is_empty() {
            // Anthropic refuses empty turns; an assistant message that said nothing adds nothing.
            note(notes, "messages[]: empty assistant message dropped (Anthropic refuses empty turns)".into());
            continue;
        }
        if opt_str(message, "name", &path)?.is_some() {
            note(notes, "messages[].name: dropped (Anthropic has no participant names)".into());
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == turn_role => last_blocks.extend(blocks),
            _ => turns.push((turn_role, blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, blocks)| json!({ "role": role, "content": content_value(role, blocks) }))
        .collect();
    let system = match system.len() {
        0 => None,
        1 => system.pop().and_then(|block| block.get("text").cloned()),
        _ => Some(Value::Array(system)),
    };
    Ok(Conversation { system, turns })
}

/// A turn's content: a plain string when it is one text block (what a person would write),
/// blocks otherwise. In user turns, `tool_result` blocks go first, as Anthropic requires.
fn content_value(role: &str, mut blocks: Vec<Value>) -> Value {
    if role == "user" {
        // A stable partition: tool results keep their order, and so does the rest.
        let (mut results, rest): (Vec<Value>, Vec<Value>) =
            blocks.into_iter().partition(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
        results.extend(rest);
        blocks = results;
    }
    match blocks.as_slice() {
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => {
            only.get("text").cloned().unwrap_or_default()
        }
        _ => Value::Array(blocks),
    }
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

/// Content that may only be text: a string, or an array of `text` parts.
fn text_parts(message: &Object, path: &str) -> Result<Vec<Value>, TranslateError> {
    let content_path = join(path, "content");
    match field(message, "content") {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text_block(text)]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let part_path = at(&content_path, j);
                let part = super::json::as_object(part, &part_path)?;
                match req_str(part, "type", &part_path)? {
                    "text" => {
                        let text = req_str(part, "text", &part_path)?;
                        if !text.is_empty() {
                            blocks.push(text_block(text));
                        }
                    }
                    other => {
                        return Err(unsupported(
                            &join(&part_path, "type"),
                            format!("a `{other}` part cannot go here; only text"),
                        ))
                    }
                }
            }
            Ok(blocks)
        }
        Some(other) => Err(invalid(&content_path, format!("expected a string or an array, got {}", type_name(other)))),
    }
}

fn user_content(message: &Object, path: &str, notes: &mut Vec<String>) -> Result<Vec<Value>, TranslateError> {
    let content_path = join(path, "content");
    let parts = match field(message, "content") {
        Some(Value::String(text)) => return Ok(vec![text_block(text)]),
        Some(Value::Array(parts)) => parts,
        None => return Err(invalid(&content_path, "missing")),
        Some(other) => {
            return Err(invalid(&content_path, format!("expected a string or an array, got {}", type_name(other))))
        }
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let part_path = at(&content_path, j);
        let part = super::json::as_object(part, &part_path)?;
        match req_str(part, "type", &part_path)? {
            "text" => blocks.push(text_block(req_str(part, "text", &part_path)?)),
            "image_url" => blocks.push(image_block(part, &part_path, notes)?),
            "file" => blocks.push(file_block(part, &part_path)?),
            "input_audio" => return Err(unsupported(&join(&part_path, "type"), "Anthropic does not take audio input")),
            other => {
                return Err(unsupported(&join(&part_path, "type"), format!("unknown content part type `{other}`")))
            }
        }
    }
    Ok(blocks)
}

/// `image_url` parts: a `data:` URL becomes a base64 source, anything else a URL source.
fn image_block(part: &Object, path: &str, notes: &mut Vec<String>) -> Result<Value, TranslateError> {
    let url_path = join(path, "image_url");
    // The spec nests `{url, detail}`; a bare string is accepted too, as many servers do.
    let url = match field(part, "image_url") {
        Some(Value::String(url)) => url.as_str(),
        Some(Value::Object(image)) => {
            if image.get("detail").is_some_and(|d| !d.is_null()) {
                note(notes, "image_url.detail: dropped (Anthropic has no detail setting)".into());
            }
            req_str(image, "url", &url_path)?
        }
        None => return Err(invalid(&url_path, "missing")),
        Some(other) => return Err(invalid(&url_path, format!("expected an object, got {}", type_name(other)))),
    };
    let source = match parse_data_url(url) {
        Some((media_type, data)) => json!({ "type": "base64", "media_type": media_type, "data": data }),
        None if url.starts_with("data:") => {
            return Err(invalid(&join(&url_path, "url"), "a data URL must be `data:<media type>;base64,<data>`"))
        }
        None => json!({ "type": "url", "url": url }),
    };
    Ok(json!({ "type": "image", "source": source }))
}

/// `file` parts with inline data (a PDF as a `data:` URL) become `document` blocks; file ids
/// refer to OpenAI's file store, which Anthropic cannot read.
fn file_block(part: &Object, path: &str) -> Result<Value, TranslateError> {
    let file_path = join(path, "file");
    let file = opt_object(part, "file", path)?.ok_or_else(|| invalid(&file_path, "missing"))?;
    if field(file, "file_id").is_some() {
        return Err(unsupported(
            &join(&file_path, "file_id"),
            "OpenAI file ids cannot be read by Anthropic; send file_data",
        ));
    }
    let data_path = join(&file_path, "file_data");
    let data = req_str(file, "file_data", &file_path)?;
    let (media_type, data) =
        parse_data_url(data).ok_or_else(|| invalid(&data_path, "expected a `data:<media type>;base64,<data>` URL"))?;
    let mut block =
        json!({ "type": "document", "source": { "type": "base64", "media_type": media_type, "data": data } });
    if let (Some(name), Some(object)) = (opt_str(file, "filename", &file_path)?, block.as_object_mut()) {
        object.insert("title".into(), json!(name));
    }
    Ok(block)
}

/// `data:image/png;base64,AAAA` → (`image/png`, `AAAA`).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let media_type = header.strip_suffix(";base64")?;
    Some((media_type, data))
}

fn assistant_content(message: &Object, path: &str, notes: &mut Vec<String>) -> Result<Vec<Value>, TranslateError> {
    let content_path = join(path, "content");
    let mut blocks = Vec::new();
    match field(message, "content") {
        None => {}
        // Anthropic refuses empty text blocks; clients send `""` next to tool calls.
        Some(Value::String(text)) if text.is_empty() => {}
        Some(Value::String(text)) => blocks.push(text_block(text)),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_path = at(&content_path, j);
                let part = super::json::as_object(part, &part_path)?;
                let text = match req_str(part, "type", &part_path)? {
                    "text" => req_str(part, "text", &part_path)?,
                    "refusal" => req_str(part, "refusal", &part_path)?,
                    other => {
                        return Err(unsupported(
                            &join(&part_path, "type"),
                            format!("unknown assistant part type `{other}`"),
                        ))
                    }
                };
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
            }
        }
        Some(other) => {
            return Err(invalid(&content_path, format!("expected a string or an array, got {}", type_name(other))))
        }
    }
    if field(message, "refusal").is_some() {
        note(notes, "messages[].refusal: dropped (Anthropic has no refusal field)".into());
    }
    for key in ["function_call", "audio"] {
        if field(message, key).is_some() {
            return Err(unsupported(&join(path, key), "not translated"));
        }
    }
    for (j, call) in opt_array(message, "tool_calls", path)?.unwrap_or_default().iter().enumerate() {
        blocks.push(tool_use(call, &at(&join(path, "tool_calls"), j))?);
    }
    Ok(blocks)
}

/// An assistant tool call → a `tool_use` block. Anthropic's `input` is an object while
/// OpenAI's `arguments` is a string of JSON: empty arguments are `{}`; arguments that are not
/// a JSON object are refused, because any object made up from them would misquote the call.
fn tool_use(call: &Value, path: &str) -> Result<Value, TranslateError> {
    let call = super::json::as_object(call, path)?;
    match opt_str(call, "type", path)? {
        None | Some("function") => {}
        Some(other) => {
            return Err(unsupported(&join(path, "type"), format!("`{other}` tool calls are not translated")))
        }
    }
    let id = req_str(call, "id", path)?;
    let function_path = join(path, "function");
    let function = opt_object(call, "function", path)?.ok_or_else(|| invalid(&function_path, "missing"))?;
    let name = req_str(function, "name", &function_path)?;
    let arguments = opt_str(function, "arguments", &function_path)?.unwrap_or("");
    let input = if arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(arguments) {
            Ok(object @ Value::Object(_)) => object,
            Ok(other) => {
                return Err(invalid(
                    &join(&function_path, "arguments"),
                    format!("expected a JSON object (Anthropic's tool input), got {}", type_name(&other)),
                ))
            }
            Err(e) => return Err(invalid(&join(&function_path, "arguments"), format!("not valid JSON ({e})"))),
        }
    };
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// A `tool` message → a `tool_result` block (text only: OpenAI tool messages carry no images).
fn tool_result(message: &Object, path: &str) -> Result<Value, TranslateError> {
    let id = req_str(message, "tool_call_id", path)?;
    let blocks = text_parts(message, path)?;
    let content = match blocks.as_slice() {
        [] => json!(""),
        [only] => only.get("text").cloned().unwrap_or_default(),
        _ => Value::Array(blocks),
    };
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": content }))
}

fn stop_sequences(request: &Object) -> Result<Option<Value>, TranslateError> {
    match field(request, "stop") {
        None => Ok(None),
        Some(Value::String(stop)) => Ok(Some(json!([stop]))),
        Some(Value::Array(stops)) => string_array(stops, "stop").map(Some),
        Some(other) => Err(invalid("stop", format!("expected a string or an array, got {}", type_name(other)))),
    }
}

/// `tools[].function {name, description, parameters, strict}` → `{name, description,
/// input_schema, strict}`. A function without parameters takes an empty object.
fn convert_tool(tool: &Value, path: &str) -> Result<Value, TranslateError> {
    let tool = super::json::as_object(tool, path)?;
    match opt_str(tool, "type", path)? {
        None | Some("function") => {}
        Some(other) => return Err(unsupported(&join(path, "type"), format!("`{other}` tools are not translated"))),
    }
    let function_path = join(path, "function");
    let function = opt_object(tool, "function", path)?.ok_or_else(|| invalid(&function_path, "missing"))?;
    let mut out = Map::new();
    out.insert("name".into(), json!(req_str(function, "name", &function_path)?));
    if let Some(description) = opt_str(function, "description", &function_path)? {
        out.insert("description".into(), json!(description));
    }
    let schema = match opt_object(function, "parameters", &function_path)? {
        Some(schema) => Value::Object(schema.clone()),
        None => json!({ "type": "object", "properties": {} }),
    };
    out.insert("input_schema".into(), schema);
    if let Some(strict) = opt_bool(function, "strict", &function_path)? {
        out.insert("strict".into(), json!(strict));
    }
    Ok(Value::Object(out))
}

/// `tool_choice` and `parallel_tool_calls: false` → Anthropic's `tool_choice` with
/// `disable_parallel_tool_use`. Without tools, parallelism means nothing and is left out.
fn tool_choice(request: &Object, parallel: Option<bool>, has_tools: bool) -> Result<Option<Value>, TranslateError> {
    let mut choice = match field(request, "tool_choice") {
        None => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({ "type": "auto" })),
            "none" => Some(json!({ "type": "none" })),
            "required" => Some(json!({ "type": "any" })),
            other => return Err(invalid("tool_choice", format!("unknown mode `{other}`"))),
        },
        Some(Value::Object(named)) => match opt_str(named, "type", "tool_choice")? {
            Some("function") => {
                let function = opt_object(named, "function", "tool_choice")?
                    .ok_or_else(|| invalid("tool_choice.function", "missing"))?;
                Some(json!({ "type": "tool", "name": req_str(function, "name", "tool_choice.function")? }))
            }
            Some(other) => return Err(unsupported("tool_choice.type", format!("`{other}` is not translated"))),
            None => return Err(invalid("tool_choice.type", "missing")),
        },
        Some(other) => {
            return Err(invalid("tool_choice", format!("expected a string or an object, got {}", type_name(other))))
        }
    };
    if parallel == Some(false) && has_tools {
        let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if let Some(object) = choice.as_object_mut().filter(|c| c.get("type") != Some(&json!("none"))) {
            object.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    Ok(choice)
}

/// `response_format`: plain text needs nothing; a JSON schema becomes Anthropic's structured
/// output format. JSON mode without a schema has no counterpart and is refused, since dropping
/// it would return prose to a client that parses JSON.
fn output_format(request: &Object) -> Result<Option<Value>, TranslateError> {
    let Some(format) = opt_object(request, "response_format", "")? else { return Ok(None) };
    match opt_str(format, "type", "response_format")? {
        Some("text") => Ok(None),
        Some("json_schema") => {
            let spec = opt_object(format, "json_schema", "response_format")?
                .ok_or_else(|| invalid("response_format.json_schema", "missing"))?;
            let schema = opt_object(spec, "schema", "response_format.json_schema")?
                .ok_or_else(|| invalid("response_format.json_schema.schema", "missing"))?;
            Ok(Some(json!({ "type": "json_schema", "schema": schema })))
        }
        Some("json_object") => Err(unsupported(
            "response_format.type",
            "JSON mode without a schema has no Anthropic counterpart; send a json_schema",
        )),
        Some(other) => Err(invalid("response_format.type", format!("unknown type `{other}`"))),
        None => Err(invalid("response_format.type", "missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::TranslateErrorKind;

    fn translate(request: Value) -> Value {
        let translated = openai_chat_to_anthropic(request.to_string().as_bytes(), "claude-sonnet-4-5", 4096).unwrap();
        serde_json::from_slice(&translated.body).unwrap()
    }

    fn notes(request: Value) -> Vec<String> {
        openai_chat_to_anthropic(request.to_string().as_bytes(), "m", 1).unwrap().notes
    }

    fn error(request: Value) -> TranslateError {
        openai_chat_to_anthropic(request.to_string().as_bytes(), "m", 1).unwrap_err()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn system_and_developer_messages_become_the_top_level_system_in_order() {
        let out = translate(json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        ]}));
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}])
        );
        assert_eq!(out["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(out["model"], "claude-sonnet-4-5");
    }

    #[test]
    fn a_single_system_message_stays_a_plain_string() {
        let out = translate(json!({"messages": [{"role": "system", "content": "Be brief."}, user("Hi")]}));
        assert_eq!(out["system"], "Be brief.");
    }

    #[test]
    fn max_tokens_falls_back_to_the_configured_default_and_prefers_max_completion_tokens() {
        assert_eq!(translate(json!({"messages": [user("Hi")]}))["max_tokens"], 4096);
        assert_eq!(translate(json!({"messages": [user("Hi")], "max_tokens": 10}))["max_tokens"], 10);
        assert_eq!(
            translate(json!({"messages": [user("Hi")], "max_tokens": 10, "max_completion_tokens": 20}))["max_tokens"],
            20
        );
    }

    #[test]
    fn images_by_url_and_by_data_url_become_image_blocks() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Compare"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            ])
        );
    }

    #[test]
    fn a_data_url_that_is_not_base64_is_refused_with_its_path() {
        let e = error(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url.url"));
    }

    #[test]
    fn pdf_files_sent_inline_become_document_blocks() {
        let out = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}}]}]}));
        assert_eq!(
            out["messages"][0]["content"][0],
            json!({"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}})
        );
    }

    #[test]
    fn tools_and_a_named_tool_choice_map_to_anthropic_shapes() {
        let out = translate(json!({"messages": [user("Weather?")],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false}));
        assert_eq!(
            out["tools"],
            json!([
                {"name": "get_weather", "description": "Weather now",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_choice_modes_map_and_parallel_false_alone_means_auto_without_parallel_use() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (mode, expected) in
            [("auto", json!({"type": "auto"})), ("none", json!({"type": "none"})), ("required", json!({"type": "any"}))]
        {
            let out = translate(json!({"messages": [user("x")], "tools": tools, "tool_choice": mode}));
            assert_eq!(out["tool_choice"], expected, "{mode}");
        }
        let out = translate(json!({"messages": [user("x")], "tools": tools, "parallel_tool_calls": false}));
        assert_eq!(out["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
        let out = translate(
            json!({"messages": [user("x")], "tools": tools, "tool_choice": "none", "parallel_tool_calls": false}),
        );
        assert_eq!(out["tool_choice"], json!({"type": "none"}));
        let out = translate(json!({"messages": [user("x")], "parallel_tool_calls": false}));
        assert!(out.get("tool_choice").is_none());
    }

    #[test]
    fn assistant_tool_calls_and_consecutive_tool_results_become_one_turn_each() {
        let out = translate(json!({"messages": [
            user("Weather in Paris and Rome?"),
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            user("Thanks"),
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"},
                    {"type": "text", "text": "Thanks"}]},
            ])
        );
    }

    #[test]
    fn consecutive_messages_of_one_role_merge_so_roles_alternate() {
        let out = translate(json!({"messages": [user("a"), user("b"),
            {"role": "assistant", "content": "c"}, {"role": "assistant", "content": [{"type": "text", "text": "d"}]}]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
            ])
        );
    }

    #[test]
    fn an_empty_assistant_message_is_dropped_so_its_neighbours_merge() {
        let request = json!({"messages": [user("a"), {"role": "assistant", "content": ""}, user("b")]});
        assert_eq!(
            translate(request.clone())["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
        );
        assert_eq!(notes(request), ["messages[]: empty assistant message dropped (Anthropic refuses empty turns)"]);
    }

    #[test]
    fn empty_tool_arguments_are_an_empty_input_and_invalid_ones_are_refused() {
        let call = |arguments: &str| {
            json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]})
        };
        assert_eq!(translate(call(""))["messages"][0]["content"][0]["input"], json!({}));
        let e = error(call("{\"city\": \"Par"));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_calls[0].function.arguments"));
        assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
        let e = error(call("[1, 2]"));
        assert_eq!(e.message, "expected a JSON object (Anthropic's tool input), got an array");
    }

    #[test]
    fn stop_strings_and_arrays_become_stop_sequences() {
        assert_eq!(translate(json!({"messages": [user("x")], "stop": "END"}))["stop_sequences"], json!(["END"]));
        assert_eq!(
            translate(json!({"messages": [user("x")], "stop": ["a", "b"]}))["stop_sequences"],
            json!(["a", "b"])
        );
        assert_eq!(error(json!({"messages": [user("x")], "stop": [1]})).param.as_deref(), Some("stop[0]"));
    }

    #[test]
    fn sampling_stream_and_user_pass_and_stream_options_do_not() {
        let out = translate(json!({"messages": [user("x")], "temperature": 0.3, "top_p": 0.9, "stream": true,
            "stream_options": {"include_usage": true}, "user": "u-1"}));
        assert_eq!(out["temperature"], 0.3);
        assert_eq!(out["top_p"], 0.9);
        assert_eq!(out["stream"], true);
        assert!(out.get("stream_options").is_none());
        assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
    }

    #[test]
    fn a_temperature_above_anthropics_maximum_is_lowered_with_a_note() {
        let request = json!({"messages": [user("x")], "temperature": 1.6});
        assert_eq!(translate(request.clone())["temperature"], 1.0);
        assert_eq!(notes(request), ["temperature: lowered to 1 (Anthropic's maximum)"]);
    }

    #[test]
    fn a_json_schema_response_format_becomes_an_output_format() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        let out = translate(json!({"messages": [user("x")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}}));
        assert_eq!(out["output_config"], json!({"format": {"type": "json_schema", "schema": schema}}));
        let e = error(json!({"messages": [user("x")], "response_format": {"type": "json_object"}}));
        assert_eq!((e.kind, e.param.as_deref()), (TranslateErrorKind::Unsupported, Some("response_format.type")));
    }

    #[test]
    fn fields_without_a_counterpart_are_dropped_with_a_note_each() {
        let notes = notes(json!({"messages": [user("x")], "seed": 7, "logit_bias": {}, "n": 1, "logprobs": false,
            "something_new": true, "stream_options": null}));
        assert_eq!(
            notes,
            [
                "logit_bias: dropped (Anthropic has no counterpart)",
                "seed: dropped (Anthropic has no counterpart)",
                "something_new: dropped (not a known Chat Completions field)",
            ]
        );
    }

    #[test]
    fn requests_that_cannot_be_honoured_are_refused_naming_the_field() {
        for (extra, param) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (json!({"functions": []}), "functions"),
            (json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}), "tools[0].type"),
        ] {
            let mut request = json!({"messages": [user("x")]});
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let e = error(request);
            assert_eq!(e.kind, TranslateErrorKind::Unsupported, "{param}");
            assert_eq!(e.param.as_deref(), Some(param));
        }
    }

    #[test]
    fn malformed_messages_are_errors_that_name_where() {
        for (messages, param) in [
            (json!("hi"), "messages"),
            (json!([{"content": "x"}]), "messages[0].role"),
            (json!([{"role": "robot", "content": "x"}]), "messages[0].role"),
            (json!([{"role": "user", "content": 5}]), "messages[0].content"),
            (json!([{"role": "user", "content": [{"type": "input_audio"}]}]), "messages[0].content[0].type"),
            (json!([{"role": "user", "content": [{"type": "mystery"}]}]), "messages[0].content[0].type"),
            (json!([{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
            (json!([{"role": "assistant", "tool_calls": [{"id": "c"}]}]), "messages[0].tool_calls[0].function"),
        ] {
            let e = error(json!({ "messages": messages }));
            assert_eq!(e.param.as_deref(), Some(param), "{messages}: {e}");
        }
        assert_eq!(error(json!({})).param.as_deref(), Some("messages"));
    }
}
