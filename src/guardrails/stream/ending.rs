//! What the guard writes itself: the events that end a blocked stream the way the client's
//! SDK expects, and text cut out of an event the finding was in.

use super::{Key, StreamGuard};
use crate::dialect::Api;

use crate::sse_write;

impl StreamGuard {
    /// Ends the stream after a block with the events the client's SDK expects.
    pub(super) fn terminate(&mut self, out: &mut Vec<u8>) {
        self.finished = true;
        match self.api {
            Api::OpenAiChat => {
                let mut choices = self.choices_seen.clone();
                if choices.is_empty() {
                    choices.push(0);
                }
                for index in choices {
                    let choices = serde_json::json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": "content_filter"}]);
                    write_event(out, "", &self.chat_chunk(&choices, false));
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
                let delta = match field {
                    None => serde_json::json!({"content": text}),
                    Some(u64::MAX) => serde_json::json!({"refusal": text}),
                    Some(k) => serde_json::json!({"tool_calls": [{"index": k, "function": {"arguments": text}}]}),
                };
                let choices =
                    serde_json::json!([{"index": choice, "delta": delta, "logprobs": null, "finish_reason": null}]);
                write_event(out, "", &self.chat_chunk(&choices, true));
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

    /// An OpenAI chunk with `choices`, shaped like the provider's own (see [`sse_write::chat_chunk`]).
    fn chat_chunk(&self, choices: &serde_json::Value, fingerprint: bool) -> Vec<u8> {
        sse_write::chat_chunk(self.template.as_deref().unwrap_or_default(), choices, fingerprint)
    }

    fn template(&self) -> serde_json::Value {
        self.template.as_deref().and_then(|t| serde_json::from_slice(t).ok()).unwrap_or_default()
    }
}

/// Writes the event `raw` with `data` in place of its data: every other line (`event:`, `id:`,
/// `retry:`, comments) and every line end stays as the provider wrote it; the data goes where
/// its first `data:` line was, with that line's spelling of the field.
pub(super) fn rewrite_event(out: &mut Vec<u8>, raw: &[u8], data: &[u8]) {
    let mut written = false;
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest.iter().position(|b| *b == b'\n' || *b == b'\r').unwrap_or(rest.len());
        let next = match (rest.get(end), rest.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => end + 2,
            (Some(_), _) => end + 1,
            (None, _) => end,
        };
        let (line, ending) = (rest.get(..end).unwrap_or_default(), rest.get(end..next).unwrap_or_default());
        let is_data = line == b"data" || line.starts_with(b"data:");
        if !is_data {
            out.extend_from_slice(line);
            out.extend_from_slice(ending);
        } else if !written {
            written = true;
            let field: &[u8] = if line.starts_with(b"data: ") { b"data: " } else { b"data:" };
            let ending = if ending.is_empty() { &b"\n"[..] } else { ending };
            for piece in data.split(|b| *b == b'\n') {
                out.extend_from_slice(field);
                out.extend_from_slice(piece);
                out.extend_from_slice(ending);
            }
        }
        rest = rest.get(next..).unwrap_or_default();
    }
}

pub(super) use crate::sse_write::write_event;
