//! Streamed chat completions: `data: {chunk}` events, then `data: [DONE]`.
//!
//! The framing matches the real API: a first chunk with the role (and, for a
//! tool call, its id and name), one chunk per word (or `delta-bytes` piece)
//! or argument fragment, a chunk with an empty delta and the finish reason,
//! then with `stream_options.include_usage` a usage-only chunk with
//! `choices: []`. Under include_usage every earlier chunk carries
//! `"usage": null`.

use crate::answer::Answer;
use crate::openai::{finish_reason, to_json, SERVICE_TIER, SYSTEM_FINGERPRINT};
use crate::openai_wire::{Chunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta, Usage};
use crate::text::CREATED_AT;
use crate::tools::fragments;

/// What every chunk of one completion shares.
pub struct StreamedCompletion<'a> {
    pub id: &'a str,
    pub model: &'a str,
    /// The `call_…` id, used when the answer is a tool call.
    pub call_id: String,
    /// `delta-bytes`: text deltas of at most this many bytes instead of one per word.
    pub delta_bytes: Option<usize>,
}

impl StreamedCompletion<'_> {
    /// The SSE events. `usage` is `None` under the omit-usage fault.
    pub fn events(&self, answer: &Answer, usage: Option<&Usage>, include_usage: bool) -> Vec<Vec<u8>> {
        let usage = usage.filter(|_| include_usage);
        // `Some(None)` writes `"usage": null`; `None` leaves the key out.
        let usage_slot = usage.map(|_| None);
        let delta_event = |delta: Delta<'_>, finish_reason: Option<&'static str>| {
            let choices = [ChunkChoice { index: 0, delta, logprobs: (), finish_reason }];
            self.chunk_event(&choices, usage_slot)
        };
        let mut events = Vec::new();
        match answer {
            Answer::Text(_) | Answer::Echo(_) => {
                let opening =
                    Delta { role: Some("assistant"), content: Some(Some("")), refusal: Some(()), ..Delta::default() };
                events.push(delta_event(opening, None));
                for piece in answer.text_pieces(self.delta_bytes) {
                    events.push(delta_event(Delta { content: Some(Some(&piece)), ..Delta::default() }, None));
                }
            }
            Answer::Tool(tool) => {
                let opening = ToolCallDelta {
                    index: 0,
                    id: Some(&self.call_id),
                    kind: Some("function"),
                    function: FunctionDelta { name: Some(&tool.name), arguments: "" },
                };
                let role = Some("assistant");
                let delta = Delta { role, content: Some(None), tool_calls: Some([opening]), refusal: Some(()) };
                events.push(delta_event(delta, None));
                let arguments = tool.arguments_json();
                for fragment in fragments(&arguments, 3) {
                    let function = FunctionDelta { name: None, arguments: fragment };
                    let piece = ToolCallDelta { index: 0, id: None, kind: None, function };
                    events.push(delta_event(Delta { tool_calls: Some([piece]), ..Delta::default() }, None));
                }
            }
        }
        events.push(delta_event(Delta::default(), Some(finish_reason(answer))));
        if let Some(usage) = usage {
            events.push(self.chunk_event(&[], Some(Some(usage))));
        }
        events.push(sse_data(b"[DONE]"));
        events
    }

    fn chunk_event(&self, choices: &[ChunkChoice<'_>], usage: Option<Option<&Usage>>) -> Vec<u8> {
        let chunk = Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: CREATED_AT,
            model: self.model,
            service_tier: SERVICE_TIER,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        };
        sse_data(&to_json(&chunk))
    }
}

fn sse_data(payload: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(payload.len().saturating_add(8));
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(payload);
    event.extend_from_slice(b"\n\n");
    event
}
