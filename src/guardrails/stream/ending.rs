//! What the guard writes itself: the events that end a blocked stream the way the client's
//! SDK expects, and text cut out of an event the finding was in.

use super::{Key, StreamGuard};
use crate::dialect::Api;

impl StreamGuard {
    /// Ends the stream after a block with the events the client's SDK expects.
    pub(super) fn terminate(&mut self, out: &mut Vec<u8>) {
        self.finished = true;
        match self.api {
            Api::OpenAiChat => {
                let template = self.template();
                let mut choices = self.choices_seen.clone();
                if choices.is_empty() {
                    choices.push(0);
                }
                for index in choices {
                    let chunk = serde_json::json!({
                        "id": template.get("id").cloned().unwrap_or(serde_json::Value::from("chatcmpl-blocked")),
                        "object": "chat.completion.chunk",
                        "created": template.get("created").cloned().unwrap_or(serde_json::Value::from(0)),
                        "model": template.get("model").cloned().unwrap_or(serde_json::Value::from("")),
                        "choices": [{"index": index, "delta": {}, "logprobs": null, "finish_reason": "content_filter"}],
                    });
                    write_event(out, "", chunk.to_string().as_bytes());
                }
                write_event(out, "", b"[DONE]");
            }
            Api::AnthropicMessages => {
                for index in std::mem::take(&mut self.open_blocks) {
                    let stop = serde_json::json!({"type": "content_block_stop", "index": index});
                    write_event(out, "content_block_stop", stop.to_string().as_bytes());
                }
                let released: u64 = self.channels.iter().map(|c| c.released_bytes).sum();
                // Output tokens: four bytes per token of the text released (the provider's count never came).
                let delta = serde_json::json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": "refusal", "stop_sequence": null},
                    "usage": {"output_tokens": released.div_ceil(4)},
                });
                write_event(out, "message_delta", delta.to_string().as_bytes());
                write_event(out, "message_stop", br#"{"type":"message_stop"}"#);
            }
            Api::OpenAiResponses => {
                let mut response = self.template();
                if !response.is_object() {
                    response = serde_json::json!({"id": "resp_blocked", "object": "response", "output": []});
                }
                if let Some(object) = response.as_object_mut() {
                    object.insert("status".into(), "incomplete".into());
                    object.insert("incomplete_details".into(), serde_json::json!({"reason": "content_filter"}));
                }
                let event = serde_json::json!({
                    "type": "response.incomplete",
                    "sequence_number": self.sequence.map_or(0, |n| n + 1),
                    "response": response,
                });
                write_event(out, "response.incomplete", event.to_string().as_bytes());
            }
            Api::OpenAiEmbeddings => {}
        }
    }

    /// Writes `text` of one channel in an event of its own, shaped like the provider's.
    pub(super) fn write_text_event(&self, key: Key, json_text: bool, text: &str, out: &mut Vec<u8>) {
        match key {
            Key::Chat(choice, field) => {
                let template = self.template();
                let delta = match field {
                    None => serde_json::json!({"content": text}),
                    Some(u64::MAX) => serde_json::json!({"refusal": text}),
                    Some(k) => serde_json::json!({"tool_calls": [{"index": k, "function": {"arguments": text}}]}),
                };
                let mut chunk = serde_json::json!({
                    "id": template.get("id").cloned().unwrap_or_default(),
                    "object": "chat.completion.chunk",
                    "created": template.get("created").cloned().unwrap_or_default(),
                    "model": template.get("model").cloned().unwrap_or_default(),
                    "choices": [{"index": choice, "delta": delta, "logprobs": null, "finish_reason": null}],
                });
                if let (Some(object), Some(fp)) = (chunk.as_object_mut(), template.get("system_fingerprint")) {
                    object.insert("system_fingerprint".into(), fp.clone());
                }
                write_event(out, "", chunk.to_string().as_bytes());
            }
            Key::Block(block) => {
                let delta = if json_text {
                    serde_json::json!({"type": "input_json_delta", "partial_json": text})
                } else {
                    serde_json::json!({"type": "text_delta", "text": text})
                };
                let event = serde_json::json!({"type": "content_block_delta", "index": block, "delta": delta});
                write_event(out, "content_block_delta", event.to_string().as_bytes());
            }
            Key::Output(output, content) => {
                let (kind, mut event) = if content == u64::MAX {
                    (
                        "response.function_call_arguments.delta",
                        serde_json::json!({"type": "response.function_call_arguments.delta", "output_index": output, "delta": text}),
                    )
                } else {
                    (
                        "response.output_text.delta",
                        serde_json::json!({"type": "response.output_text.delta", "output_index": output, "content_index": content, "delta": text}),
                    )
                };
                if let Some(object) = event.as_object_mut() {
                    object.insert(
                        "item_id".into(),
                        self.item_ids
                            .iter()
                            .find(|(o, _)| *o == output)
                            .map(|(_, id)| id.clone())
                            .unwrap_or_default()
                            .into(),
                    );
                }
                write_event(out, kind, event.to_string().as_bytes());
            }
        }
    }

    fn template(&self) -> serde_json::Value {
        self.template.as_deref().and_then(|t| serde_json::from_slice(t).ok()).unwrap_or_default()
    }
}

/// Writes one SSE event: `event:` line when named, `data:` lines, blank line.
pub(super) fn write_event(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    if !name.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}
