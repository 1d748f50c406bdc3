//! Guardrails on streamed responses, with the least hold-back, and nothing else changed.
//!
//! Two layers:
//! - [`text::TextStream`]: one stream of generated text (a choice's content, a tool call's
//!   arguments, an Anthropic content block). Text deltas go in; out comes how far the text is
//!   decided and what changes inside it (masks, restored placeholders). A byte is undecided only
//!   while it may still be part of a finding: an anchored automaton of every pattern of the
//!   enforcing checks is run from each position of the undecided text ([`hold`]); a position
//!   whose automaton is not dead may begin a finding that more text would complete. The
//!   decisions are exactly those of scanning the whole text at once.
//! - [`StreamGuard`]: the SSE layer. Frames events and hands each text delta to its text stream.
//!   An event whose text is not decided yet is **held whole**, with everything after it, and
//!   released as soon as its text is decided: unchanged events go out byte for byte (so a stream
//!   in which nothing is found reaches the client exactly as the provider sent it, only later),
//!   and only the strings a change falls in are rewritten (a change is written where it begins;
//!   the events it spans into lose its text). A block ends the stream right before the finding,
//!   with the events the client's SDK expects ([`ending`]).

mod ending;
mod events;
mod hold;
mod text;

use std::collections::VecDeque;
use std::rc::Rc;

pub use hold::Shape;
use hold::ShapeCache;
pub use text::Released;
use text::{Change, Engine, TextStream};

use super::{block_for, tool_refused, Action, Block, CheckKind, Decision, Guardrails, Phase, Tally, Vault};
use crate::dialect::Api;
use crate::json_tree::{self, Tree};
use crate::routing::glob::Glob;
use crate::sse::{SseEvent, SseFramer, SseIssue};

/// Which stream of text within a response an event's text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// OpenAI Chat: choice index, and `None` for content, `Some(k)` for tool call k's arguments,
    /// `Some(u64::MAX)` for `refusal`.
    Chat(u64, Option<u64>),
    /// Anthropic content block index.
    Block(u64),
    /// Responses: output index and content index (`u64::MAX`: function-call arguments).
    Output(u64, u64),
}

#[derive(Debug)]
struct Channel {
    key: Key,
    enforce: TextStream,
    observe: TextStream,
    /// Everything decided so far, rewritten (kept for Responses' `.done` events and tool-argument
    /// checks).
    all: String,
    /// Everything its deltas carried, as sent (kept alongside `all`).
    original: String,
    /// Changes to text of held events (dropped once every event they touch is released).
    changes: Vec<Change>,
    released_bytes: u64,
    json_text: bool,
    ended: bool,
    /// A delta of it could not be read: its later copies (Responses' `.done` events) are not
    /// rewritten either, they pass as sent like that delta.
    unreadable: bool,
}

/// A text string inside a held event: its node's bytes in the event's data, and where its text
/// lies in its channel.
#[derive(Debug)]
struct Field {
    channel: usize,
    node: (usize, usize),
    /// Offset of `text` in the channel's whole text.
    start: u64,
    text: String,
}

impl Field {
    fn end(&self) -> u64 {
        self.start + self.text.len() as u64
    }
}

/// Stream bytes waiting behind an event whose text is not decided yet, in stream order.
#[derive(Debug)]
enum Pending {
    /// Bytes outside events (comments, data-less blocks) and events the guard does not read.
    Bytes(Vec<u8>),
    Event(HeldEvent),
}

impl HeldEvent {
    /// Where a stream ends that was blocked at something no event carries.
    fn stop() -> HeldEvent {
        HeldEvent { raw: Vec::new(), data: Vec::new(), fields: Vec::new(), edits: Vec::new(), stop: true }
    }
}

#[derive(Debug)]
struct HeldEvent {
    raw: Vec<u8>,
    data: Vec<u8>,
    fields: Vec<Field>,
    /// Other strings of the event to rewrite (Responses' `.done` events repeat the whole text).
    edits: Vec<(usize, usize, Vec<u8>)>,
    /// A block was decided while reading this event: it never goes out whole.
    stop: bool,
}

/// The SSE layer: see the module documentation.
pub struct StreamGuard {
    guardrails: Rc<Guardrails>,
    api: Api,
    vault: Vault,
    enforce: Vec<(usize, usize)>,
    observe: Vec<(usize, usize)>,
    enforce_shapes: Vec<usize>,
    observe_shapes: Vec<usize>,
    shapes: Vec<Shape>,
    caches: Vec<ShapeCache>,
    lookahead: usize,
    framer: SseFramer,
    /// Stream bytes from `raw_start` not yet released or queued.
    raw: Vec<u8>,
    raw_start: u64,
    queue: VecDeque<Pending>,
    /// Text fields of the event being read.
    fields: Vec<Field>,
    channels: Vec<Channel>,
    tally: Tally,
    block: Option<Block>,
    /// The text a finding ended the stream in (none for tool names and unreadable text).
    blocked_channel: Option<usize>,
    /// Text strings the guard could not read (invalid UTF-8, a lone surrogate escape).
    unreadable: u32,
    /// Such a string ends the stream (the route's `failure_mode: closed`) rather than going on
    /// as sent.
    pub(super) fail_closed: bool,
    /// Every response check (tool names and arguments are checked here too).
    checks: Vec<(usize, usize)>,
    /// The last OpenAI chunk (Chat) or the `response.created` response (Responses), raw.
    template: Option<Vec<u8>>,
    /// Responses: output index → item id.
    item_ids: Vec<(u64, String)>,
    choices_seen: Vec<u64>,
    /// Responses: the last `sequence_number` seen.
    sequence: Option<u64>,
    open_blocks: Vec<u64>,
    keep_all: bool,
    finished: bool,
    events: Vec<SseEvent>,
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGuard").field("api", &self.api).field("block", &self.block).finish()
    }
}

/// Largest SSE event the guard reads; larger ones pass as they are.
const MAX_EVENT: usize = 4 << 20;

impl StreamGuard {
    pub fn new(guardrails: Rc<Guardrails>, api: Api, checks: Vec<(usize, usize)>, vault: Vault) -> Self {
        let mut shapes = Vec::new();
        let (mut enforce, mut observe) = (Vec::new(), Vec::new());
        let (mut enforce_shapes, mut observe_shapes) = (Vec::new(), Vec::new());
        let mut lookahead = 0;
        let mut keep_all = api == Api::OpenAiResponses;
        for &(p, c) in &checks {
            let Some((_, check)) = guardrails.check_at(p, c) else { continue };
            if matches!(check.kind, CheckKind::ToolArgumentsJson) {
                keep_all = true;
            }
            let Some(text) = check.text() else { continue };
            if text.matchers.is_empty() {
                continue;
            }
            lookahead = lookahead.max(text.lookahead);
            let enforcing = check.enforcing();
            if enforcing {
                enforce.push((p, c))
            } else {
                observe.push((p, c))
            }
            if let Some(shape) = &text.shape {
                shapes.push(shape.clone());
                if enforcing {
                    enforce_shapes.push(shapes.len() - 1)
                } else {
                    observe_shapes.push(shapes.len() - 1)
                }
            }
        }
        if !vault.is_empty() {
            if let Ok(shape) = Shape::new(&[super::PLACEHOLDER_PATTERN.to_string()]) {
                shapes.push(shape);
                enforce_shapes.push(shapes.len() - 1);
            }
        }
        let caches = shapes.iter().map(ShapeCache::new).collect();
        StreamGuard {
            guardrails,
            api,
            vault,
            enforce,
            observe,
            enforce_shapes,
            observe_shapes,
            shapes,
            caches,
            lookahead,
            framer: SseFramer::new(MAX_EVENT),
            raw: Vec::new(),
            raw_start: 0,
            queue: VecDeque::new(),
            fields: Vec::new(),
            channels: Vec::new(),
            tally: Tally::default(),
            block: None,
            blocked_channel: None,
            unreadable: 0,
            fail_closed: false,
            checks,
            template: None,
            item_ids: Vec::new(),
            choices_seen: Vec::new(),
            sequence: None,
            open_blocks: Vec::new(),
            keep_all,
            finished: false,
            events: Vec::new(),
        }
    }

    /// The block that ended the stream, if one did.
    pub fn block(&self) -> Option<&Block> {
        self.block.as_ref()
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.tally.decisions.clone()
    }

    /// Whether a check can change what the client gets (mask, restore, block), not only record.
    pub fn enforces(&self) -> bool {
        !self.enforce.is_empty() || !self.vault.is_empty()
    }

    /// Ends the stream now as `block` says: decided events go out, then the blocked ending.
    pub fn end_with(&mut self, block: Block) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.block = Some(block);
        self.blocked_channel = None;
        self.end_blocked(&mut out);
        out
    }

    /// Text strings the guard could not read (not UTF-8, a lone surrogate escape): they ended
    /// the stream (failing closed) or went to the client unchecked, as the provider sent them.
    pub fn unreadable(&self) -> u32 {
        self.unreadable
    }

    /// Bytes of text not decided yet (all text streams).
    pub fn held_text(&self) -> usize {
        self.channels.iter().map(|c| c.enforce.held()).sum()
    }

    /// The next chunk of the response body; returns the bytes to send now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        let mut issues = Vec::new();
        self.events.clear();
        self.framer.feed(chunk, &mut self.events, &mut issues);
        self.raw.extend_from_slice(chunk);
        let events = std::mem::take(&mut self.events);
        let mut out = Vec::with_capacity(chunk.len() + 64);
        // An event over the cap is not read: its text is unreadable to the guard.
        let oversized = issues.iter().map(|SseIssue::EventTooLarge { start }| *start).min();
        for event in &events {
            if oversized.is_some_and(|at| event.start > at) {
                break;
            }
            self.read_event(event, &mut out);
            if self.finished {
                self.raw.clear();
                return out;
            }
        }
        if let Some(at) = oversized {
            self.unreadable_text();
            if self.block.is_some() {
                // Nothing of it goes out: what came before it, then the blocked ending.
                self.queue_raw(at);
                self.raw.clear();
                self.queue.push_back(Pending::Event(HeldEvent::stop()));
                self.end_blocked(&mut out);
                return out;
            }
            for event in events.iter().filter(|e| e.start > at) {
                self.read_event(event, &mut out);
                if self.finished {
                    self.raw.clear();
                    return out;
                }
            }
        }
        // Bytes before the event still arriving (comments, data-less blocks) wait their turn.
        let until = self.framer.pending_start();
        self.queue_raw(until);
        self.release(&mut out);
        self.events = events;
        out
    }

    /// End of the response: every text is decided (and checked), the rest of the bytes pass.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut events = Vec::new();
        self.framer.finish(&mut events);
        for event in &events {
            self.read_event(event, &mut out);
            if self.finished {
                return out;
            }
        }
        // A stream cut before its end: every text ends where it was cut.
        self.flush_all();
        if self.block.is_some() {
            self.end_blocked(&mut out);
            return out;
        }
        self.queue_raw(u64::MAX);
        self.release(&mut out);
        self.finished = true;
        out
    }

    /// Reads one complete event and queues it (with the bytes before it).
    fn read_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        self.queue_raw(event.start);
        let raw = self.take_raw(event.end);
        self.fields.clear();
        let mut edits = Vec::new();
        let blocked_before = self.block.is_some();
        match self.api {
            Api::OpenAiChat => self.chat_event(event),
            Api::AnthropicMessages => self.anthropic_event(event),
            Api::OpenAiResponses => self.responses_event(event, &mut edits),
            Api::OpenAiEmbeddings => {}
        }
        let fields = std::mem::take(&mut self.fields);
        let stop = self.block.is_some() && !blocked_before;
        if stop {
            let data = event.data.clone();
            self.queue.push_back(Pending::Event(HeldEvent { raw, data, fields, edits, stop }));
            self.end_blocked(out);
        } else if self.queue.is_empty() && self.decided(&fields) {
            // The usual case: nothing is waiting and this event's text is decided.
            self.write_parts(&raw, &event.data, &fields, edits, out);
            self.fields = fields;
        } else if fields.is_empty() && edits.is_empty() {
            self.queue.push_back(Pending::Bytes(raw));
            self.release(out);
        } else {
            let data = event.data.clone();
            self.queue.push_back(Pending::Event(HeldEvent { raw, data, fields, edits, stop }));
            self.release(out);
        }
    }

    fn queue_raw(&mut self, until: u64) {
        let bytes = self.take_raw(until);
        if !bytes.is_empty() {
            self.queue.push_back(Pending::Bytes(bytes));
        }
    }

    fn take_raw(&mut self, until: u64) -> Vec<u8> {
        let n = usize::try_from(until.saturating_sub(self.raw_start)).unwrap_or(usize::MAX).min(self.raw.len());
        self.raw_start += n as u64;
        self.raw.drain(..n).collect()
    }

    /// Whether every one of these texts is decided.
    fn decided(&self, fields: &[Field]) -> bool {
        fields.iter().all(|f| self.channels.get(f.channel).is_some_and(|c| c.enforce.settled() >= f.end()))
    }

    /// Sends the queued bytes and events whose text is decided, in order, up to the first that
    /// is not.
    fn release(&mut self, out: &mut Vec<u8>) {
        while let Some(front) = self.queue.front() {
            if let Pending::Event(event) = front {
                if !self.decided(&event.fields) {
                    return;
                }
            }
            match self.queue.pop_front() {
                Some(Pending::Bytes(bytes)) => out.extend_from_slice(&bytes),
                Some(Pending::Event(event)) => self.write_held(event, out),
                None => return,
            }
        }
    }

    fn write_held(&mut self, event: HeldEvent, out: &mut Vec<u8>) {
        self.write_parts(&event.raw, &event.data, &event.fields, event.edits, out);
    }

    /// Writes a decided event: byte for byte when nothing in it changes.
    fn write_parts(
        &mut self,
        raw: &[u8],
        data: &[u8],
        fields: &[Field],
        mut edits: Vec<(usize, usize, Vec<u8>)>,
        out: &mut Vec<u8>,
    ) {
        for field in fields {
            let Some(channel) = self.channels.get_mut(field.channel) else { continue };
            if channel.changes.is_empty() {
                continue;
            }
            if let Some(text) = changed_text(&field.text, field.start, &channel.changes) {
                edits.push((field.node.0, field.node.1, json_tree::encode_string(&text).into_bytes()));
            }
            // Later fields of this channel start at or after this one's end.
            let end = field.end();
            channel.changes.retain(|c| c.end > end);
        }
        if edits.is_empty() {
            out.extend_from_slice(raw);
        } else {
            edits.sort_by_key(|e| e.0);
            ending::rewrite_event(out, raw, &json_tree::splice(data, &edits));
        }
    }

    /// A block was decided: what comes before the finding goes out, then the stream ends.
    fn end_blocked(&mut self, out: &mut Vec<u8>) {
        while let Some(front) = self.queue.pop_front() {
            match front {
                Pending::Bytes(bytes) => out.extend_from_slice(&bytes),
                Pending::Event(event) if !event.stop && self.decided(&event.fields) => self.write_held(event, out),
                Pending::Event(event) => {
                    // The event the finding is in: the decided part of that text, on its own.
                    for field in event.fields.iter().filter(|f| Some(f.channel) == self.blocked_channel) {
                        let Some(channel) = self.channels.get(field.channel) else { continue };
                        let decided = channel.enforce.settled().saturating_sub(field.start);
                        let decided = usize::try_from(decided).unwrap_or(usize::MAX).min(field.text.len());
                        let kept = changed_prefix(&field.text, field.start, decided, &channel.changes);
                        if !kept.is_empty() {
                            let (key, json_text) = (channel.key, channel.json_text);
                            self.write_text_event(key, json_text, &kept, out);
                        }
                    }
                    break;
                }
            }
        }
        self.queue.clear();
        self.terminate(out);
    }

    fn channel_index(&mut self, key: Key, json_text: bool) -> usize {
        if let Some(i) = self.channels.iter().position(|c| c.key == key && !c.ended) {
            return i;
        }
        self.channels.push(Channel {
            key,
            enforce: TextStream::new(json_text),
            observe: TextStream::new(json_text),
            all: String::new(),
            original: String::new(),
            changes: Vec::new(),
            released_bytes: 0,
            json_text,
            ended: false,
            unreadable: false,
        });
        self.channels.len() - 1
    }

    /// Pushes text into a channel; returns what was decided.
    fn push(&mut self, index: usize, delta: &str, finished: bool) -> Released {
        let g = Rc::clone(&self.guardrails);
        let Some(channel) = self.channels.get_mut(index) else {
            return Released { text: delta.to_string(), ..Released::default() };
        };
        let max_hold = g.max_hold;
        if !self.observe.is_empty() {
            let engine = Engine {
                guardrails: &g,
                checks: &self.observe,
                shapes: &self.observe_shapes,
                lookahead: self.lookahead,
                vault: None,
                max_hold,
                want_text: false,
            };
            let _ = channel.observe.push(&engine, &self.shapes, &mut self.caches, &mut self.tally, delta, finished);
        }
        let engine = Engine {
            guardrails: &g,
            checks: &self.enforce,
            shapes: &self.enforce_shapes,
            lookahead: self.lookahead,
            vault: (!self.vault.is_empty()).then_some(&self.vault),
            max_hold,
            want_text: self.keep_all,
        };
        let mut released =
            channel.enforce.push(&engine, &self.shapes, &mut self.caches, &mut self.tally, delta, finished);
        channel.released_bytes += released.len as u64;
        channel.changes.append(&mut released.changes);
        if self.keep_all {
            channel.all.push_str(&released.text);
        }
        if finished {
            channel.ended = true;
            let (all, json_text) = (channel.all.clone(), channel.json_text);
            if json_text {
                self.check_arguments(&all);
            }
        }
        if let Some(block) = released.block.take() {
            if self.block.is_none() {
                self.block = Some(block);
                self.blocked_channel = Some(index);
            }
        }
        released
    }

    /// Reads a text string of the event being read into its channel (`finished`: the event ends
    /// that text).
    fn text_field(&mut self, tree: &Tree<'_>, node: usize, key: Key, json_text: bool, finished: bool) {
        let index = self.channel_index(key, json_text);
        let (Some(text), Some(span)) = (tree.str(node), tree.node(node)) else {
            if let Some(channel) = self.channels.get_mut(index) {
                channel.unreadable = true;
            }
            self.unreadable_text();
            return;
        };
        let start = self.channels.get(index).map_or(0, |c| c.enforce.settled() + c.enforce.held() as u64);
        if self.keep_all {
            if let Some(channel) = self.channels.get_mut(index) {
                channel.original.push_str(&text);
            }
        }
        self.push(index, &text, finished);
        self.fields.push(Field { channel: index, node: (span.start, span.end), start, text: text.into_owned() });
    }

    /// Text the guard cannot read: counted; it ends the stream when the route fails closed and a
    /// check could change the text, else it goes on as sent.
    fn unreadable_text(&mut self) {
        self.unreadable += 1;
        if self.fail_closed && self.enforces() && self.block.is_none() {
            self.block = Some(super::unreadable_block());
        }
    }

    fn check_arguments(&mut self, arguments: &str) {
        if serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_ok() {
            return;
        }
        let g = Rc::clone(&self.guardrails);
        for &(p, c) in &self.checks {
            let Some((policy, check)) = g.check_at(p, c) else { continue };
            if !matches!(check.kind, CheckKind::ToolArgumentsJson) {
                continue;
            }
            self.tally.add(policy, check, "tool_arguments", Phase::Response, 1);
            if self.block.is_none() && check.action == Action::Block && !check.shadow {
                self.block = Some(block_for(policy, check, Phase::Response, "tool_arguments"));
            }
        }
    }

    fn check_tool_name(&mut self, name: &str) {
        self.check_tool(|allow, deny| tool_refused(name, allow, deny));
    }

    fn check_tool_name_unreadable(&mut self) {
        self.check_tool(|_, _| true);
    }

    /// Runs the `tools` checks on one tool call: `refused` says whether a check's lists refuse it.
    fn check_tool(&mut self, refused: impl Fn(Option<&[Glob]>, &[Glob]) -> bool) {
        let g = Rc::clone(&self.guardrails);
        for &(p, c) in &self.checks {
            let Some((policy, check)) = g.check_at(p, c) else { continue };
            let CheckKind::Tools { allow, deny } = &check.kind else { continue };
            if !refused(allow.as_deref(), deny) {
                continue;
            }
            self.tally.add(policy, check, "tool_name", Phase::Response, 1);
            if self.block.is_none() && check.action == Action::Block && !check.shadow {
                self.block = Some(block_for(policy, check, Phase::Response, "tool_name"));
            }
        }
    }

    /// Ends every open text: all of it is decided (up to a block, if one is found).
    fn flush_all(&mut self) {
        let open: Vec<usize> =
            (0..self.channels.len()).filter(|i| self.channels.get(*i).is_some_and(|c| !c.ended)).collect();
        for index in open {
            self.flush_channel(index);
            if self.block.is_some() {
                return;
            }
        }
    }

    /// Ends one text: what was held of it is decided, and goes out in the events that carried it.
    fn flush_channel(&mut self, index: usize) {
        self.push(index, "", true);
    }
}

/// `text` (at `start` of its channel) with the changes that fall in it applied; `None` when
/// none does. A change is written where it begins; the text it spans into later fields is
/// dropped there.
fn changed_text(text: &str, start: u64, changes: &[Change]) -> Option<String> {
    let end = start + text.len() as u64;
    let mut out = String::new();
    let mut at = 0usize;
    let mut changed = false;
    for change in changes.iter().filter(|c| c.end > start && c.start < end) {
        let from = usize::try_from(change.start.saturating_sub(start)).unwrap_or(usize::MAX);
        let to = usize::try_from(change.end.min(end) - start).unwrap_or(usize::MAX);
        if change.start >= start {
            out.push_str(text.get(at..from)?);
            out.push_str(&change.with);
        }
        at = at.max(to);
        changed = true;
    }
    if !changed {
        return None;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

/// The first `before` bytes of `text` (at `start` of its channel), with the changes that fall in
/// them applied.
fn changed_prefix(text: &str, start: u64, before: usize, changes: &[Change]) -> String {
    let before = text::floor_char_boundary(text, before);
    let head = text.get(..before).unwrap_or_default();
    changed_text(head, start, changes).unwrap_or_else(|| head.to_string())
}

/// One stream of text on its own (the layer under [`StreamGuard`]): text deltas in, text to
/// send now out. For callers that frame events themselves, and for tests.
pub struct TextGuard {
    guard: StreamGuard,
    index: usize,
}

impl TextGuard {
    /// `json_text`: the text is JSON (tool-call arguments): restored values are escaped.
    pub fn new(response: &super::ResponseGuard, json_text: bool) -> TextGuard {
        let mut guard = response.stream();
        guard.keep_all = true;
        let index = guard.channel_index(Key::Block(0), json_text);
        TextGuard { guard, index }
    }

    /// The next delta; returns the text to send now, and the block if one was decided.
    pub fn push(&mut self, delta: &str) -> (String, Option<Block>) {
        let text = self.guard.push(self.index, delta, false).text;
        (text, self.guard.block.clone())
    }

    /// End of the text: everything still held, checked.
    pub fn finish(&mut self) -> (String, Option<Block>) {
        let text = self.guard.push(self.index, "", true).text;
        (text, self.guard.block.clone())
    }

    pub fn held(&self) -> usize {
        self.guard.held_text()
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.guard.decisions()
    }
}

#[cfg(test)]
mod tests;
