//! Where each dialect's events carry generated text, and which events end a text.

use super::{Key, StreamGuard};
use crate::json_tree::{self, JsonError, Kind, Tree};
use crate::sse::SseEvent;

impl StreamGuard {
    /// An event's JSON; `None` when it is not JSON (passed as it is, like any unknown event).
    /// JSON nested too deep to read is text the guard cannot check: counted as unreadable.
    fn parse<'d>(&mut self, data: &'d [u8]) -> Option<Tree<'d>> {
        match Tree::parse(data) {
            Ok(tree) => Some(tree),
            Err(JsonError::Syntax) => None,
            Err(JsonError::TooDeep) => {
                self.unreadable_text();
                None
            }
        }
    }

    /// Checks a tool call's name; one that cannot be read cannot be allowed.
    fn tool_name(&mut self, tree: &Tree<'_>, node: Option<usize>) {
        let Some(node) = string_node(tree, node) else { return };
        match tree.str(node) {
            Some(name) => self.check_tool_name(&name),
            None => self.check_tool_name_unreadable(),
        }
    }

    /// OpenAI Chat: each choice's content, refusal and tool-call arguments; a `finish_reason`
    /// or `[DONE]` ends them.
    pub(super) fn chat_event(&mut self, event: &SseEvent) {
        if event.data == b"[DONE]" {
            self.flush_all();
            return;
        }
        let Some(tree) = self.parse(&event.data) else { return };
        if let Some(choices) = tree.get(Tree::ROOT, "choices") {
            self.template = Some(event.data.clone());
            for (position, choice) in tree.children(choices).enumerate() {
                let index = uint(&tree, tree.get(choice, "index")).unwrap_or(position as u64);
                if !self.choices_seen.contains(&index) {
                    self.choices_seen.push(index);
                }
                let finishing = string_node(&tree, tree.get(choice, "finish_reason")).is_some();
                let mut present = Vec::new();
                if let Some(delta) = tree.get(choice, "delta") {
                    for (field, key) in
                        [("content", Key::Chat(index, None)), ("refusal", Key::Chat(index, Some(u64::MAX)))]
                    {
                        if let Some(node) = string_node(&tree, tree.get(delta, field)) {
                            present.push(key);
                            self.text_field(&tree, node, key, false, finishing);
                        } else if let Some(parts) =
                            tree.get(delta, field).filter(|n| tree.kind(*n) == Some(Kind::Array))
                        {
                            // Some compatible servers stream content as text parts.
                            present.push(key);
                            let texts: Vec<usize> =
                                tree.children(parts).filter_map(|p| string_node(&tree, tree.get(p, "text"))).collect();
                            let last = texts.len().saturating_sub(1);
                            for (i, node) in texts.into_iter().enumerate() {
                                self.text_field(&tree, node, key, false, finishing && i == last);
                            }
                        }
                    }
                    if let Some(calls) = tree.get(delta, "tool_calls") {
                        for (k, call) in tree.children(calls).enumerate() {
                            let k = uint(&tree, tree.get(call, "index")).unwrap_or(k as u64);
                            let function = tree.get(call, "function");
                            self.tool_name(&tree, function.and_then(|f| tree.get(f, "name")));
                            if let Some(node) = string_node(&tree, function.and_then(|f| tree.get(f, "arguments"))) {
                                let key = Key::Chat(index, Some(k));
                                present.push(key);
                                self.text_field(&tree, node, key, true, finishing);
                            }
                        }
                    }
                }
                if finishing {
                    let ending: Vec<usize> = (0..self.channels.len())
                        .filter(|i| {
                            self.channels.get(*i).is_some_and(|c| {
                                !c.ended
                                    && matches!(c.key, Key::Chat(ch, _) if ch == index)
                                    && !present.contains(&c.key)
                            })
                        })
                        .collect();
                    for i in ending {
                        self.flush_channel(i);
                    }
                }
                if self.block.is_some() {
                    return;
                }
            }
        }
    }

    /// Anthropic Messages: each content block's text or tool input; its `content_block_stop`
    /// (or the message's end) ends it.
    pub(super) fn anthropic_event(&mut self, event: &SseEvent) {
        let Some(tree) = self.parse(&event.data) else { return };
        let kind = tree.get_str(Tree::ROOT, "type").map(|k| k.into_owned()).unwrap_or_else(|| event.event.clone());
        let index = uint(&tree, tree.get(Tree::ROOT, "index"));
        match kind.as_str() {
            "content_block_start" => {
                if let Some(i) = index {
                    self.open_blocks.push(i);
                }
                let block = tree.get(Tree::ROOT, "content_block");
                if block
                    .and_then(|b| tree.get_str(b, "type"))
                    .is_some_and(|t| t == "tool_use" || t == "server_tool_use")
                {
                    self.tool_name(&tree, block.and_then(|b| tree.get(b, "name")));
                }
            }
            "content_block_delta" => {
                let delta = tree.get(Tree::ROOT, "delta");
                let delta_type = delta.and_then(|d| tree.get_str(d, "type"));
                let field = match delta_type.as_deref() {
                    Some("text_delta") => Some(("text", false)),
                    Some("input_json_delta") => Some(("partial_json", true)),
                    _ => None, // thinking and signatures pass untouched
                };
                if let (Some((field, json_text)), Some(i), Some(d)) = (field, index, delta) {
                    if let Some(node) = string_node(&tree, tree.get(d, field)) {
                        self.text_field(&tree, node, Key::Block(i), json_text, false);
                    }
                }
            }
            "content_block_stop" => {
                if let Some(i) = index {
                    self.open_blocks.retain(|b| *b != i);
                    if let Some(c) = self.channels.iter().position(|c| c.key == Key::Block(i) && !c.ended) {
                        self.flush_channel(c);
                    }
                }
            }
            "message_delta" | "message_stop" => self.flush_all(),
            _ => {}
        }
    }

    /// OpenAI Responses: each output item's text parts and function-call arguments; their
    /// `.done` events end them, and every later copy of a text (`.done`, `content_part.done`,
    /// `output_item.done`, `response.completed`) is rewritten to what the deltas carried.
    pub(super) fn responses_event(&mut self, event: &SseEvent, edits: &mut Vec<(usize, usize, Vec<u8>)>) {
        let Some(tree) = self.parse(&event.data) else { return };
        let kind = tree.get_str(Tree::ROOT, "type").map(|k| k.into_owned()).unwrap_or_else(|| event.event.clone());
        if let Some(n) = uint(&tree, tree.get(Tree::ROOT, "sequence_number")) {
            self.sequence = Some(n);
        }
        let output = uint(&tree, tree.get(Tree::ROOT, "output_index")).unwrap_or(0);
        let content = uint(&tree, tree.get(Tree::ROOT, "content_index")).unwrap_or(0);
        let mut copies = Vec::new();
        match kind.as_str() {
            "response.created" | "response.in_progress" => {
                if let Some(response) = tree.get(Tree::ROOT, "response").and_then(|r| tree.raw(r)) {
                    self.template = Some(response.to_vec());
                }
            }
            "response.output_item.added" => {
                let item = tree.get(Tree::ROOT, "item");
                if let Some(id) = item.and_then(|i| tree.get_str(i, "id")) {
                    self.item_ids.push((output, id.into_owned()));
                }
                if item.and_then(|i| tree.get_str(i, "type")).is_some_and(|t| t == "function_call") {
                    self.tool_name(&tree, item.and_then(|i| tree.get(i, "name")));
                }
            }
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                let json_text = kind == "response.function_call_arguments.delta";
                let key = Key::Output(output, if json_text { u64::MAX } else { content });
                if let Some(node) = string_node(&tree, tree.get(Tree::ROOT, "delta")) {
                    self.text_field(&tree, node, key, json_text, false);
                }
            }
            "response.output_text.done" | "response.function_call_arguments.done" => {
                let json_text = kind == "response.function_call_arguments.done";
                let key = Key::Output(output, if json_text { u64::MAX } else { content });
                if let Some(c) = self.channels.iter().position(|c| c.key == key && !c.ended) {
                    self.flush_channel(c);
                }
                let field = if json_text { "arguments" } else { "text" };
                copies.extend(string_node(&tree, tree.get(Tree::ROOT, field)).map(|n| (n, key)));
            }
            "response.content_part.done" => {
                let part = tree.get(Tree::ROOT, "part");
                let text = string_node(&tree, part.and_then(|p| tree.get(p, "text")));
                copies.extend(text.map(|n| (n, Key::Output(output, content))));
            }
            "response.output_item.done" => {
                if let Some(item) = tree.get(Tree::ROOT, "item") {
                    item_copies(&tree, item, output, &mut copies);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.flush_all();
                if let Some(items) = tree.get(Tree::ROOT, "response").and_then(|r| tree.get(r, "output")) {
                    for (o, item) in tree.children(items).enumerate() {
                        item_copies(&tree, item, o as u64, &mut copies);
                    }
                }
            }
            _ => {}
        }
        let mut unseen = false;
        for (node, key) in copies {
            match self.copy_of(&tree, node, key) {
                Copy::Keep => {}
                Copy::Rewrite(text) => {
                    if let Some(n) = tree.node(node) {
                        edits.push((n.start, n.end, json_tree::encode_string(&text).into_bytes()));
                    }
                }
                Copy::Unseen => unseen = true,
            }
        }
        if unseen {
            self.unreadable_text();
        }
    }

    /// A later copy of a text (Responses repeats each text whole when it is done): rewritten as
    /// its deltas were when it is the text they carried, kept as sent when nothing in them
    /// changed. A copy that is not what the deltas carried holds text the guard never read.
    fn copy_of(&self, tree: &Tree<'_>, node: usize, key: Key) -> Copy {
        let Some(current) = tree.str(node) else { return Copy::Unseen };
        let Some(channel) = self.channels.iter().rev().find(|c| c.key == key) else {
            return if current.is_empty() { Copy::Keep } else { Copy::Unseen };
        };
        if channel.unreadable {
            // Counted at the delta the guard could not read; the copies go as sent, like it.
            return Copy::Keep;
        }
        if *current != channel.original {
            return Copy::Unseen;
        }
        if channel.all == channel.original {
            Copy::Keep
        } else {
            Copy::Rewrite(channel.all.clone())
        }
    }
}

/// What becomes of a later copy of a text.
enum Copy {
    Keep,
    Rewrite(String),
    Unseen,
}

/// The texts a Responses output item repeats: function-call arguments, message text parts.
fn item_copies(tree: &Tree<'_>, item: usize, output: u64, copies: &mut Vec<(usize, Key)>) {
    if let Some(node) = string_node(tree, tree.get(item, "arguments")) {
        copies.push((node, Key::Output(output, u64::MAX)));
    }
    if let Some(parts) = tree.get(item, "content") {
        for (j, part) in tree.children(parts).enumerate() {
            if let Some(node) = string_node(tree, tree.get(part, "text")) {
                copies.push((node, Key::Output(output, j as u64)));
            }
        }
    }
}

pub(super) fn uint(tree: &Tree<'_>, node: Option<usize>) -> Option<u64> {
    let node = node?;
    if tree.kind(node)? != Kind::Number {
        return None;
    }
    std::str::from_utf8(tree.raw(node)?).ok()?.parse().ok()
}

fn string_node(tree: &Tree<'_>, node: Option<usize>) -> Option<usize> {
    node.filter(|n| tree.kind(*n) == Some(Kind::String))
}
