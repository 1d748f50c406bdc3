//! Ends a stream that runs past the output it may have: the last stage of a streamed answer,
//! reading what the client is about to get (its dialect, after translation and guardrails).
//!
//! Every event passes byte for byte until the one whose text would take the output past its
//! allowance; the allowance is asked to grow first (a budget may give more), and when it cannot,
//! that event and everything after it are dropped and the stream ends the way the provider ends
//! one that reached its output limit: OpenAI Chat `finish_reason: "length"` then `[DONE]`,
//! Anthropic `stop_reason: "max_tokens"` then `message_stop`, Responses `response.incomplete`
//! with `incomplete_details.reason: "max_output_tokens"`. The client's SDK sees an ordinary
//! truncated answer, never a reset.
//!
//! The provider goes on generating after the cut (it cannot be stopped without resetting the
//! client too) and its usage comes at its end, so the client's stream must not close before:
//! OpenAI's Python SDK closes the connection at Chat's `[DONE]` (without reading on), Envoy then
//! resets the provider's stream and its usage is never read. Chat's `[DONE]` (after the usage
//! chunk the client asked for) is therefore held until the provider's end
//! ([`StreamCut::at_the_providers_end`]). Anthropic's and Responses' SDKs read to the end of the
//! response whatever it holds, so their ending goes out at once.
//!
//! Output is counted per event with the model's tokenizer: a provider sends about one token per
//! event, so the sum of the events' counts is the provider's count, give or take one per event
//! where a word was split.

use crate::dialect::Api;
use crate::json_tree::{Kind, Tree};
use crate::sse::{SseEvent, SseFramer, SseIssue};
use crate::sse_write::{chat_chunk, write_event};
use crate::tokenizer::{self, TokenCounter};

/// The reason a cut stream's ending gives, per dialect.
const CHAT_REASON: &str = "length";
const ANTHROPIC_REASON: &str = "max_tokens";
const RESPONSES_REASON: &str = "max_output_tokens";

pub struct StreamCut {
    api: Api,
    tokenizer: TokenCounter,
    framer: SseFramer,
    events: Vec<SseEvent>,
    issues: Vec<SseIssue>,
    /// Client-bound bytes not released yet (an event not complete), from stream offset `held_start`.
    held: Vec<u8>,
    held_start: u64,
    output_tokens: u64,
    allowed: u64,
    cut: bool,
    /// Chat: the last chunk with choices (its id, created and model go into the ending) and
    /// the choices seen. Responses: the response object of `response.created`.
    template: Option<Vec<u8>>,
    choices_seen: Vec<u64>,
    /// Anthropic: content blocks started and not stopped.
    open_blocks: Vec<u64>,
    /// Responses: the last `sequence_number`, the output items started and not done (with
    /// their text so far), and those done.
    sequence: Option<u64>,
    open_items: Vec<OpenItem>,
    done_items: Vec<(u64, serde_json::Value)>,
    /// Chat: the client asked for the usage chunk (`stream_options.include_usage`): it goes out
    /// at the provider's end, with its figures ([`StreamCut::at_the_providers_end`]).
    usage_chunk: bool,
}

/// A Responses output item the stream started.
#[derive(Debug)]
struct OpenItem {
    output_index: u64,
    item: serde_json::Value,
    /// Content parts: index, text so far, whether `output_text.done` and `content_part.done` came.
    parts: Vec<(u64, String, bool, bool)>,
    /// Function-call arguments so far, and whether their `.done` came.
    arguments: String,
    arguments_done: bool,
}

impl std::fmt::Debug for StreamCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCut")
            .field("api", &self.api)
            .field("output_tokens", &self.output_tokens)
            .field("allowed", &self.allowed)
            .field("cut", &self.cut)
            .finish_non_exhaustive()
    }
}

impl StreamCut {
    /// A cutter for a stream in `api`'s dialect from `model`, which may write `allowed` tokens.
    pub fn new(api: Api, model: &str, allowed: u64, max_event_bytes: usize, usage_chunk: bool) -> Self {
        StreamCut {
            api,
            tokenizer: tokenizer::for_model(model),
            framer: SseFramer::new(max_event_bytes),
            events: Vec::new(),
            issues: Vec::new(),
            held: Vec::new(),
            held_start: 0,
            output_tokens: 0,
            allowed,
            cut: false,
            template: None,
            choices_seen: Vec::new(),
            open_blocks: Vec::new(),
            sequence: None,
            open_items: Vec::new(),
            done_items: Vec::new(),
            usage_chunk,
        }
    }

    /// Whether the stream was ended here.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Output tokens released to the client so far.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }

    pub fn allowed(&self) -> u64 {
        self.allowed
    }

    /// The next client-bound chunk; returns what goes out instead. `more(needed)` is asked when
    /// an event would take the output to `needed` tokens, past the allowance: it returns the new
    /// allowance (at least `needed`), or `None` to end the stream before that event.
    pub fn feed(&mut self, chunk: &[u8], more: &mut dyn FnMut(u64) -> Option<u64>) -> Vec<u8> {
        if self.cut {
            return Vec::new();
        }
        self.events.clear();
        self.issues.clear();
        self.held.extend_from_slice(chunk);
        self.framer.feed(chunk, &mut self.events, &mut self.issues);
        let events = std::mem::take(&mut self.events);
        let mut out = Vec::with_capacity(self.held.len());
        for event in &events {
            let tokens = self.count(event);
            let needed = self.output_tokens.saturating_add(tokens);
            if needed > self.allowed {
                match more(needed) {
                    Some(allowed) if allowed >= needed => self.allowed = allowed,
                    _ => {
                        self.release(event.start, &mut out);
                        self.end(&mut out);
                        self.cut = true;
                        self.held.clear();
                        self.events = events;
                        return out;
                    }
                }
            }
            self.output_tokens = needed;
            self.observe(event);
        }
        self.events = events;
        self.release(self.framer.pending_start(), &mut out);
        out
    }

    /// The stream's end: what is still held (an event never completed) goes out as it is.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.cut {
            return Vec::new();
        }
        self.held_start += self.held.len() as u64;
        std::mem::take(&mut self.held)
    }

    /// Moves held bytes before stream offset `until` to `out`.
    fn release(&mut self, until: u64, out: &mut Vec<u8>) {
        let count = usize::try_from(until.saturating_sub(self.held_start)).unwrap_or(usize::MAX).min(self.held.len());
        out.extend(self.held.drain(..count));
        self.held_start += count as u64;
    }

    fn count(&self, event: &SseEvent) -> u64 {
        let text = self.api.read_event(event).text;
        if text.is_empty() {
            0
        } else {
            self.tokenizer.count(&text)
        }
    }

    /// Keeps what the ending needs: Chat's chunk template and choices, Anthropic's open blocks,
    /// Responses' response object and sequence.
    fn observe(&mut self, event: &SseEvent) {
        let Ok(tree) = Tree::parse(&event.data) else { return };
        match self.api {
            Api::OpenAiChat | Api::OpenAiEmbeddings => {
                if let Some(choices) = tree.get(Tree::ROOT, "choices") {
                    self.template = Some(event.data.clone());
                    for (position, choice) in tree.children(choices).enumerate() {
                        let index = uint(&tree, tree.get(choice, "index")).unwrap_or(position as u64);
                        if !self.choices_seen.contains(&index) {
                            self.choices_seen.push(index);
                        }
                    }
                }
            }
            Api::AnthropicMessages => {
                let kind =
                    tree.get_str(Tree::ROOT, "type").map(|k| k.into_owned()).unwrap_or_else(|| event.event.clone());
                let index = uint(&tree, tree.get(Tree::ROOT, "index"));
                match (kind.as_str(), index) {
                    ("content_block_start", Some(i)) => self.open_blocks.push(i),
                    ("content_block_stop", Some(i)) => self.open_blocks.retain(|b| *b != i),
                    _ => {}
                }
            }
            Api::OpenAiResponses => self.observe_responses(&tree),
        }
    }

    /// Responses: what the ending must close (items, their parts and text) and re-send whole.
    fn observe_responses(&mut self, tree: &Tree<'_>) {
        if let Some(n) = uint(tree, tree.get(Tree::ROOT, "sequence_number")) {
            self.sequence = Some(n);
        }
        let Some(kind) = tree.get_str(Tree::ROOT, "type") else { return };
        let output = uint(tree, tree.get(Tree::ROOT, "output_index")).unwrap_or(0);
        let content = uint(tree, tree.get(Tree::ROOT, "content_index")).unwrap_or(0);
        let text = |member: &str| tree.get_str(Tree::ROOT, member).map(|t| t.into_owned()).unwrap_or_default();
        let json = |member: &str| -> serde_json::Value {
            tree.get(Tree::ROOT, member)
                .and_then(|node| tree.raw(node))
                .and_then(|raw| serde_json::from_slice(raw).ok())
                .unwrap_or_default()
        };
        let item = self.open_items.iter_mut().find(|i| i.output_index == output);
        match (kind.as_ref(), item) {
            ("response.created" | "response.in_progress", _) => {
                if let Some(response) = tree.get(Tree::ROOT, "response").and_then(|r| tree.raw(r)) {
                    self.template = Some(response.to_vec());
                }
            }
            ("response.output_item.added", _) => self.open_items.push(OpenItem {
                output_index: output,
                item: json("item"),
                parts: Vec::new(),
                arguments: String::new(),
                arguments_done: false,
            }),
            ("response.content_part.added", Some(item)) => item.parts.push((content, String::new(), false, false)),
            ("response.output_text.delta", Some(item)) => match item.parts.iter_mut().find(|p| p.0 == content) {
                Some(part) => part.1.push_str(&text("delta")),
                // A stream that skipped `content_part.added`: the part starts with its text.
                None => item.parts.push((content, text("delta"), false, false)),
            },
            ("response.output_text.done", Some(item)) => {
                if let Some(part) = item.parts.iter_mut().find(|p| p.0 == content) {
                    part.2 = true;
                }
            }
            ("response.content_part.done", Some(item)) => {
                if let Some(part) = item.parts.iter_mut().find(|p| p.0 == content) {
                    part.3 = true;
                }
            }
            ("response.function_call_arguments.delta", Some(item)) => item.arguments.push_str(&text("delta")),
            ("response.function_call_arguments.done", Some(item)) => item.arguments_done = true,
            ("response.output_item.done", _) => {
                self.open_items.retain(|i| i.output_index != output);
                self.done_items.push((output, json("item")));
            }
            _ => {}
        }
    }

    /// What a cut stream still sends when the provider's stream ends (nothing for a stream not
    /// cut): Chat's usage chunk if the client asked for it (the provider's figures, which it
    /// bills: what it generated, the cut part included), then `[DONE]`.
    pub fn at_the_providers_end(&self, prompt_tokens: u64, completion_tokens: u64) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.cut || !matches!(self.api, Api::OpenAiChat) {
            return out;
        }
        if self.usage_chunk {
            let mut chunk = chat_chunk(self.template.as_deref().unwrap_or_default(), &serde_json::json!([]), true);
            chunk.pop();
            let usage = serde_json::json!({
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens.saturating_add(completion_tokens),
            });
            chunk.extend_from_slice(b",\"usage\":");
            chunk.extend_from_slice(usage.to_string().as_bytes());
            chunk.push(b'}');
            write_event(&mut out, "", &chunk);
        }
        write_event(&mut out, "", b"[DONE]");
        out
    }

    /// The events that end a stream at its output limit, in the client's dialect.
    fn end(&mut self, out: &mut Vec<u8>) {
        match self.api {
            Api::OpenAiChat | Api::OpenAiEmbeddings => {
                let mut choices = self.choices_seen.clone();
                if choices.is_empty() {
                    choices.push(0);
                }
                let template = self.template.as_deref().unwrap_or_default();
                for index in choices {
                    let choices = serde_json::json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": CHAT_REASON}]);
                    write_event(out, "", &chat_chunk(template, &choices, false));
                }
                // `[DONE]` waits for the provider's end: see the module's comment.
            }
            Api::AnthropicMessages => {
                for index in std::mem::take(&mut self.open_blocks) {
                    let stop = serde_json::json!({"type": "content_block_stop", "index": index});
                    write_event(out, "content_block_stop", stop.to_string().as_bytes());
                }
                let delta = serde_json::json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": ANTHROPIC_REASON, "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens},
                });
                write_event(out, "message_delta", delta.to_string().as_bytes());
                write_event(out, "message_stop", br#"{"type":"message_stop"}"#);
            }
            Api::OpenAiResponses => self.end_responses(out),
        }
    }
}

impl StreamCut {
    /// Responses: every open item closed the way the API closes one (its text's `.done`, the
    /// part's, the item's, with the text so far and `status: "incomplete"`), then
    /// `response.incomplete` carrying every item, as OpenAI ends a response at its
    /// `max_output_tokens`.
    fn end_responses(&mut self, out: &mut Vec<u8>) {
        let mut sequence = self.sequence.map_or(0, |n| n + 1);
        let mut emit = |out: &mut Vec<u8>, name: &str, mut event: serde_json::Value| {
            if let Some(object) = event.as_object_mut() {
                object.insert("type".into(), name.into());
                object.insert("sequence_number".into(), sequence.into());
            }
            sequence += 1;
            write_event(out, name, event.to_string().as_bytes());
        };
        let mut output = std::mem::take(&mut self.done_items);
        for open in std::mem::take(&mut self.open_items) {
            let OpenItem { output_index, mut item, parts, arguments, arguments_done } = open;
            let item_id = item.get("id").cloned().unwrap_or_default();
            let kind = item.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
            let ids = serde_json::json!({"item_id": item_id, "output_index": output_index});
            let with = |extra: serde_json::Value| {
                let mut event = ids.clone();
                if let (Some(event), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
                    event.extend(extra.clone());
                }
                event
            };
            if kind == "message" {
                let mut content = Vec::new();
                for (index, text, text_done, part_done) in parts {
                    let part =
                        serde_json::json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
                    if !text_done {
                        emit(
                            out,
                            "response.output_text.done",
                            with(serde_json::json!({"content_index": index, "text": text, "logprobs": []})),
                        );
                    }
                    if !part_done {
                        emit(
                            out,
                            "response.content_part.done",
                            with(serde_json::json!({"content_index": index, "part": part})),
                        );
                    }
                    content.push(part);
                }
                if let Some(object) = item.as_object_mut() {
                    object.insert("content".into(), content.into());
                }
            } else if kind == "function_call" {
                if !arguments_done {
                    emit(
                        out,
                        "response.function_call_arguments.done",
                        with(serde_json::json!({"arguments": arguments})),
                    );
                }
                if let Some(object) = item.as_object_mut() {
                    object.insert("arguments".into(), arguments.into());
                }
            }
            if let Some(object) = item.as_object_mut() {
                object.insert("status".into(), "incomplete".into());
            }
            emit(out, "response.output_item.done", serde_json::json!({"output_index": output_index, "item": item}));
            output.push((output_index, item));
        }
        output.sort_by_key(|(index, _)| *index);
        let mut response: serde_json::Value =
            self.template.as_deref().and_then(|t| serde_json::from_slice(t).ok()).unwrap_or_default();
        if !response.is_object() {
            response = serde_json::json!({"id": "resp_cut", "object": "response"});
        }
        if let Some(object) = response.as_object_mut() {
            object.insert("status".into(), "incomplete".into());
            object.insert("incomplete_details".into(), serde_json::json!({"reason": RESPONSES_REASON}));
            object.insert("output".into(), output.into_iter().map(|(_, item)| item).collect());
        }
        emit(out, "response.incomplete", serde_json::json!({"response": response}));
    }
}

fn uint(tree: &Tree<'_>, node: Option<usize>) -> Option<u64> {
    let node = node?;
    if tree.kind(node)? != Kind::Number {
        return None;
    }
    std::str::from_utf8(tree.raw(node)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
