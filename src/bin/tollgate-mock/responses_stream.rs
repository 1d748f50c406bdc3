//! Streamed Responses: `event: TYPE` / `data: {…}` pairs, each numbered by `sequence_number`
//! from 0, in the real API's order:
//!
//! `response.created`, `response.in_progress`, `response.output_item.added`, then for text
//! `response.content_part.added`, one `response.output_text.delta` per word (or `delta-bytes`
//! piece), `response.output_text.done`, `response.content_part.done`; for a tool call
//! `response.function_call_arguments.delta` fragments and `.done`; then
//! `response.output_item.done` and `response.completed` (`response.incomplete` when
//! `max_output_tokens` cut the reply), which carries the usage. No `[DONE]`: the API sends none.

use serde::Serialize;

use crate::openai::to_json;
use crate::responses::{Generated, Status};
use crate::responses_wire::{Event, OutputText, Usage};
use crate::tools::fragments;

/// An event with its place in the stream.
#[derive(Serialize)]
struct Sequenced<'a> {
    #[serde(flatten)]
    event: &'a Event<'a>,
    sequence_number: u64,
}

/// The SSE events of `generated`. `usage` is `None` under the omit-usage fault.
pub fn events(generated: &Generated<'_>, usage: Option<&Usage>, delta_bytes: Option<usize>) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    let mut push = |event: &Event<'_>| {
        let sequence_number = u64::try_from(events.len()).unwrap_or(u64::MAX);
        events.push(sse_event(event.name(), &to_json(&Sequenced { event, sequence_number })));
    };
    let opening = generated.object(Status::InProgress, &[], None);
    push(&Event::Created { response: &opening });
    push(&Event::InProgress { response: &opening });
    let added = generated.item(Status::InProgress, &[], "");
    push(&Event::OutputItemAdded { output_index: 0, item: &added });
    let item_id = generated.item_id.as_str();
    let whole = OutputText::new(&generated.text);
    match generated.tool() {
        None => {
            let part = OutputText::new("");
            push(&Event::ContentPartAdded { item_id, output_index: 0, content_index: 0, part: &part });
            for piece in generated.request.answer.text_pieces(delta_bytes) {
                let delta =
                    Event::OutputTextDelta { item_id, output_index: 0, content_index: 0, delta: &piece, logprobs: [] };
                push(&delta);
            }
            let text = &generated.text;
            push(&Event::OutputTextDone { item_id, output_index: 0, content_index: 0, text, logprobs: [] });
            push(&Event::ContentPartDone { item_id, output_index: 0, content_index: 0, part: &whole });
        }
        Some(tool) => {
            for delta in fragments(&generated.text, 3) {
                push(&Event::FunctionCallArgumentsDelta { item_id, output_index: 0, delta });
            }
            let arguments = &generated.text;
            push(&Event::FunctionCallArgumentsDone { item_id, output_index: 0, name: &tool.name, arguments });
        }
    }
    let status = generated.final_status();
    let parts = [whole];
    let output = [generated.item(status, &parts, &generated.text)];
    for item in &output {
        push(&Event::OutputItemDone { output_index: 0, item });
    }
    let finished = generated.object(status, &output, usage);
    if status == Status::Incomplete {
        push(&Event::Incomplete { response: &finished });
    } else {
        push(&Event::Completed { response: &finished });
    }
    events
}

/// `event: NAME\ndata: JSON\n\n`.
fn sse_event(name: &str, data: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(data.len().saturating_add(name.len()).saturating_add(16));
    framed.extend_from_slice(b"event: ");
    framed.extend_from_slice(name.as_bytes());
    framed.extend_from_slice(b"\ndata: ");
    framed.extend_from_slice(data);
    framed.extend_from_slice(b"\n\n");
    framed
}
