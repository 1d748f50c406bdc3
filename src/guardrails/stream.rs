//! Guardrails on streamed responses, with the least hold-back.
//!
//! Two layers:
//! - [`TextStream`]: one stream of generated text (a choice's content, a tool call's arguments,
//!   an Anthropic content block). Text deltas go in; the text that can be released now comes
//!   out, masked and with placeholders restored. A byte is held only while it may still be part
//!   of a finding: an anchored automaton of every pattern of the enforcing checks is run from
//!   each position of the held text; a position whose automaton is not dead may begin a finding
//!   that more text would complete, so it and what follows wait. Findings that are complete
//!   (their automaton died) are released, masked. The output is exactly what scanning the whole
//!   text at once gives (tests replay streams split at every byte offset).
//! - [`StreamGuard`]: the SSE layer. Frames events, hands each text delta to its text stream,
//!   writes the released text back into the event (only the string changes; every other byte of
//!   the event is kept), adds an event carrying held text when its stream ends, and on a block
//!   ends the stream with the events the client's SDK expects.

use std::rc::Rc;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::start;
use regex_automata::Anchored;

use super::{block_for, tool_refused, Action, Block, CheckKind, Decision, Guardrails, Hit, Phase, Tally, Vault};
use crate::dialect::Api;
use crate::json_tree::{self, Kind, Tree};
use crate::sse::{SseEvent, SseFramer};

/// Original bytes kept before the held text, for `\b` and validators.
const CONTEXT: usize = 16;
/// Cache of the lazy automaton per stream and shape.
const CACHE_BYTES: usize = 256 * 1024;

/// The hold-back automaton: every pattern of a check, anchored.
#[derive(Debug, Clone)]
pub struct Shape {
    dfa: DFA,
}

impl Shape {
    pub fn new(patterns: &[String]) -> Result<Shape, String> {
        let dfa = DFA::builder()
            .syntax(super::scan::syntax_config())
            .thompson(regex_automata::nfa::thompson::Config::new().utf8(false).nfa_size_limit(Some(8 << 20)))
            .configure(DFA::config().cache_capacity(CACHE_BYTES).skip_cache_capacity_check(true))
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        Ok(Shape { dfa })
    }

    fn cache(&self) -> Cache {
        self.dfa.create_cache()
    }
}

/// Positions of one text stream from which one shape is still alive.
#[derive(Debug, Default, Clone)]
struct Alive {
    clear_count: usize,
    /// (absolute start, state after consuming everything up to `advanced_to`)
    states: Vec<(u64, LazyStateID)>,
    advanced_to: u64,
}

enum Step {
    Alive(LazyStateID),
    Dead,
    /// The cache was cleared: every stored state is invalid.
    Cleared,
}

/// A lazy automaton's cache for one stream, and which of its states are known to be final
/// (nothing longer can match from them).
pub(crate) struct ShapeCache {
    cache: Cache,
    finals: std::collections::HashMap<LazyStateID, bool>,
    epoch: usize,
}

impl ShapeCache {
    fn new(shape: &Shape) -> ShapeCache {
        ShapeCache { cache: shape.cache(), finals: std::collections::HashMap::new(), epoch: 0 }
    }

    fn clear_count(&self) -> usize {
        self.cache.clear_count()
    }
}

fn advance(dfa: &DFA, shape_cache: &mut ShapeCache, mut sid: LazyStateID, bytes: &[u8]) -> Step {
    let cache = &mut shape_cache.cache;
    let clears = cache.clear_count();
    for &b in bytes {
        sid = match dfa.next_state(cache, sid, b) {
            Ok(s) => s,
            Err(_) => return Step::Alive(sid),
        };
        if cache.clear_count() != clears {
            return Step::Cleared;
        }
        if sid.is_dead() {
            return Step::Dead;
        }
    }
    match is_final(dfa, shape_cache, sid) {
        None => Step::Cleared,
        Some(true) => Step::Dead,
        Some(false) => Step::Alive(sid),
    }
}

/// Whether no continuation can make a longer match from `sid`: every byte leads to the dead
/// state, or to a (delayed) match state from which every byte leads to the dead state. `None`
/// when the cache was cleared meanwhile.
fn is_final(dfa: &DFA, shape_cache: &mut ShapeCache, sid: LazyStateID) -> Option<bool> {
    if shape_cache.epoch != shape_cache.cache.clear_count() {
        shape_cache.finals.clear();
        shape_cache.epoch = shape_cache.cache.clear_count();
    }
    if let Some(known) = shape_cache.finals.get(&sid) {
        return Some(*known);
    }
    let clears = shape_cache.cache.clear_count();
    let cache = &mut shape_cache.cache;
    let dead_after = |cache: &mut Cache, from: LazyStateID| -> Option<bool> {
        for unit in dfa.byte_classes().representatives(..) {
            let Some(b) = unit.as_u8() else { continue };
            let next = dfa.next_state(cache, from, b).ok()?;
            if cache.clear_count() != clears {
                return None;
            }
            if !next.is_dead() {
                return Some(false);
            }
        }
        Some(true)
    };
    let mut result = true;
    for unit in dfa.byte_classes().representatives(..) {
        let Some(b) = unit.as_u8() else { continue };
        let next = dfa.next_state(cache, sid, b).ok()?;
        if cache.clear_count() != clears {
            return None;
        }
        if next.is_dead() {
            continue;
        }
        if !next.is_match() || !dead_after(cache, next)? {
            result = false;
            break;
        }
    }
    if shape_cache.cache.clear_count() != clears {
        return None;
    }
    shape_cache.finals.insert(sid, result);
    Some(result)
}

/// What the checks of one text stream share.
pub(crate) struct Engine<'g> {
    pub guardrails: &'g Guardrails,
    pub checks: &'g [(usize, usize)],
    /// Shapes (index into `StreamGuard::shapes`) whose hold-back applies.
    pub shapes: &'g [usize],
    pub lookahead: usize,
    /// Restore placeholders (enforcing streams only).
    pub vault: Option<&'g Vault>,
    pub max_hold: usize,
}

/// One stream of generated text.
#[derive(Debug, Default, Clone)]
pub(crate) struct TextStream {
    pending: Vec<u8>,
    context: Vec<u8>,
    /// Absolute offset of `pending[0]` in this stream's text.
    base: u64,
    alive: Vec<Alive>,
    json_text: bool,
}

/// What one push released.
#[derive(Debug, Default)]
pub struct Released {
    pub text: String,
    pub block: Option<Block>,
}

impl TextStream {
    pub fn new(json_text: bool) -> Self {
        TextStream { json_text, ..TextStream::default() }
    }

    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Adds `delta`; `finished`: the text is complete, release everything.
    pub(crate) fn push(
        &mut self,
        engine: &Engine<'_>,
        shapes: &[Shape],
        caches: &mut [ShapeCache],
        tally: &mut Tally,
        delta: &str,
        finished: bool,
    ) -> Released {
        self.pending.extend_from_slice(delta.as_bytes());
        let hay: Vec<u8> = [self.context.as_slice(), self.pending.as_slice()].concat();
        let from = self.context.len();
        let len = hay.len();
        let mut finished = finished;
        let mut alive_at = if finished { len } else { self.first_alive(engine, shapes, caches, &hay, from) };
        if !finished && len - from.max(alive_at.min(len)) > engine.max_hold {
            // Held text would outgrow the cap: treat it as ended here (documented).
            finished = true;
            alive_at = len;
        }
        let mut hits: Vec<Hit> = Vec::new();
        engine.guardrails.hits(engine.checks, &hay, from, &mut hits);
        hits.sort_by_key(|h| (h.found.order, std::cmp::Reverse(h.found.end)));
        let mut boundary = alive_at;
        for hit in &hits {
            if hit.found.order >= boundary {
                break;
            }
            let settled = hit.found.order < alive_at && (finished || hit.found.end + engine.lookahead <= len);
            if !settled {
                boundary = hit.found.order;
                break;
            }
            boundary = boundary.max(hit.found.end);
        }
        // A settled finding of a blocking check stops the text right before it.
        let mut block = None;
        for hit in hits.iter().filter(|h| h.found.order < boundary) {
            let Some((policy, check)) = engine.guardrails.check_at(hit.policy, hit.check) else { continue };
            if check.action == Action::Block && !check.shadow {
                let detector = engine.guardrails.label_of(hit).map(|l| l.name.clone()).unwrap_or_default();
                block = Some(block_for(policy, check, Phase::Response, &detector));
                boundary = hit.found.order;
                break;
            }
        }
        let text = std::str::from_utf8(&hay).unwrap_or_default();
        while boundary > from && !text.is_char_boundary(boundary) {
            boundary -= 1;
        }
        let emitted_hits: Vec<Hit> = hits
            .iter()
            .filter(|h| h.found.order < boundary && h.found.end <= boundary)
            .map(|h| Hit {
                found: super::scan::Found {
                    start: h.found.start - from,
                    end: h.found.end - from,
                    order: h.found.order - from,
                    label: h.found.label,
                },
                ..*h
            })
            .collect();
        let mut released = Released { block, ..Released::default() };
        let counted =
            hits.iter().filter(|h| h.found.order < boundary || (released.block.is_some() && h.found.order == boundary));
        for hit in counted {
            let Some((policy, check)) = engine.guardrails.check_at(hit.policy, hit.check) else { continue };
            let detector = engine.guardrails.label_of(hit).map(|l| l.name.clone()).unwrap_or_default();
            tally.add(policy, check, &detector, Phase::Response, 1);
        }
        let out = text.get(from..boundary).unwrap_or_default();
        let masked = engine.guardrails.apply_masks(&emitted_hits, out, None);
        let current = masked.as_deref().unwrap_or(out);
        let restored = engine.vault.and_then(|v| v.restore(current, self.json_text));
        released.text = restored.or(masked).unwrap_or_else(|| out.to_string());
        // Keep the rest; remember the original bytes before it as context.
        let context_from = boundary.saturating_sub(CONTEXT);
        self.context = hay.get(context_from..boundary).unwrap_or_default().to_vec();
        self.pending = hay.get(boundary..).unwrap_or_default().to_vec();
        self.base += (boundary - from) as u64;
        let base = self.base;
        for alive in &mut self.alive {
            alive.states.retain(|(start, _)| *start >= base);
            alive.advanced_to = alive.advanced_to.max(base);
        }
        released
    }

    /// The earliest position of `hay[from..]` where some shape is alive (`len` if none).
    fn first_alive(
        &mut self,
        engine: &Engine<'_>,
        shapes: &[Shape],
        caches: &mut [ShapeCache],
        hay: &[u8],
        from: usize,
    ) -> usize {
        if self.alive.len() < engine.shapes.len() {
            self.alive.resize(engine.shapes.len(), Alive { advanced_to: self.base, ..Alive::default() });
        }
        let len = hay.len();
        let to_index = |abs: u64, base: u64| from + (abs.saturating_sub(base)) as usize;
        let mut earliest = len;
        for (slot, &shape_index) in engine.shapes.iter().enumerate() {
            let (Some(shape), Some(cache), Some(alive)) =
                (shapes.get(shape_index), caches.get_mut(shape_index), self.alive.get_mut(slot))
            else {
                continue;
            };
            let mut attempts = 0;
            loop {
                attempts += 1;
                if attempts > 3 {
                    // The automaton keeps outgrowing its cache: hold everything (the cap still applies).
                    return from;
                }
                if cache.clear_count() != alive.clear_count {
                    alive.states.clear();
                    alive.advanced_to = self.base;
                    alive.clear_count = cache.clear_count();
                }
                let new_from = to_index(alive.advanced_to, self.base).min(len);
                let new_bytes = hay.get(new_from..).unwrap_or_default();
                let mut cleared = false;
                let mut kept = Vec::with_capacity(alive.states.len());
                for &(start, sid) in &alive.states {
                    match advance(&shape.dfa, cache, sid, new_bytes) {
                        Step::Alive(s) => kept.push((start, s)),
                        Step::Dead => {}
                        Step::Cleared => {
                            cleared = true;
                            break;
                        }
                    }
                }
                if !cleared {
                    for p in new_from..len {
                        let look_behind = p.checked_sub(1).and_then(|i| hay.get(i)).copied();
                        let config = start::Config::new().anchored(Anchored::Yes).look_behind(look_behind);
                        let clears = cache.clear_count();
                        let Ok(sid) = shape.dfa.start_state(&mut cache.cache, &config) else {
                            // Cannot start here (never happens in ASCII mode): hold from here.
                            return p;
                        };
                        if cache.clear_count() != clears {
                            cleared = true;
                            break;
                        }
                        match advance(&shape.dfa, cache, sid, hay.get(p..).unwrap_or_default()) {
                            Step::Alive(s) => kept.push((self.base + (p - from) as u64, s)),
                            Step::Dead => {}
                            Step::Cleared => {
                                cleared = true;
                                break;
                            }
                        }
                    }
                }
                if cleared {
                    alive.clear_count = usize::MAX; // force a restart from scratch
                    continue;
                }
                alive.states = kept;
                alive.advanced_to = self.base + (len - from) as u64;
                alive.clear_count = cache.clear_count();
                break;
            }
            if let Some(&(start, _)) = alive.states.iter().min_by_key(|(s, _)| *s) {
                earliest = earliest.min(to_index(start, self.base));
            }
        }
        earliest.max(from)
    }
}

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
    /// Everything released so far (kept for Responses' `.done` events and tool-argument checks).
    all: String,
    released_bytes: u64,
    json_text: bool,
    ended: bool,
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
    held: Vec<u8>,
    held_start: u64,
    channels: Vec<Channel>,
    tally: Tally,
    block: Option<Block>,
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
            held: Vec::new(),
            held_start: 0,
            channels: Vec::new(),
            tally: Tally::default(),
            block: None,
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

    /// Bytes of text currently held back (all text streams).
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
        self.held.extend_from_slice(chunk);
        let events = std::mem::take(&mut self.events);
        let mut out = Vec::with_capacity(chunk.len() + 64);
        for event in &events {
            // Bytes before the event (comments, data-less blocks) pass as they are.
            self.release_raw(event.start, &mut out);
            let raw = self.take_raw(event.end);
            self.on_event(event, &raw, &mut out);
            if self.finished {
                self.held.clear();
                return out;
            }
        }
        let until = self.framer.pending_start();
        self.release_raw(until, &mut out);
        self.events = events;
        out
    }

    /// End of the response: held text is released (and checked), the rest of the bytes pass.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut events = Vec::new();
        self.framer.finish(&mut events);
        for event in &events {
            self.release_raw(event.start, &mut out);
            let raw = self.take_raw(event.end);
            self.on_event(event, &raw, &mut out);
            if self.finished {
                return out;
            }
        }
        // A stream cut before its end: flush every text stream in events of its own.
        self.flush_all(&mut out);
        if !self.finished {
            out.append(&mut self.held);
            self.finished = true;
        }
        out
    }

    fn release_raw(&mut self, until: u64, out: &mut Vec<u8>) {
        let n = usize::try_from(until.saturating_sub(self.held_start)).unwrap_or(usize::MAX).min(self.held.len());
        out.extend(self.held.drain(..n));
        self.held_start += n as u64;
    }

    fn take_raw(&mut self, until: u64) -> Vec<u8> {
        let n = usize::try_from(until.saturating_sub(self.held_start)).unwrap_or(usize::MAX).min(self.held.len());
        self.held_start += n as u64;
        self.held.drain(..n).collect()
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
            released_bytes: 0,
            json_text,
            ended: false,
        });
        self.channels.len() - 1
    }

    /// Pushes text into a channel; returns the text to send now.
    fn push(&mut self, index: usize, delta: &str, finished: bool) -> String {
        let g = Rc::clone(&self.guardrails);
        let Some(channel) = self.channels.get_mut(index) else { return delta.to_string() };
        let max_hold = g.max_hold;
        if !self.observe.is_empty() {
            let engine = Engine {
                guardrails: &g,
                checks: &self.observe,
                shapes: &self.observe_shapes,
                lookahead: self.lookahead,
                vault: None,
                max_hold,
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
        };
        let released = channel.enforce.push(&engine, &self.shapes, &mut self.caches, &mut self.tally, delta, finished);
        channel.released_bytes += released.text.len() as u64;
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
        if let Some(block) = released.block {
            if self.block.is_none() {
                self.block = Some(block);
            }
        }
        released.text
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
        let g = Rc::clone(&self.guardrails);
        for &(p, c) in &self.checks {
            let Some((policy, check)) = g.check_at(p, c) else { continue };
            let CheckKind::Tools { allow, deny } = &check.kind else { continue };
            if !tool_refused(name, allow.as_deref(), deny) {
                continue;
            }
            self.tally.add(policy, check, "tool_name", Phase::Response, 1);
            if self.block.is_none() && check.action == Action::Block && !check.shadow {
                self.block = Some(block_for(policy, check, Phase::Response, "tool_name"));
            }
        }
    }

    fn template(&self) -> serde_json::Value {
        self.template.as_deref().and_then(|t| serde_json::from_slice(t).ok()).unwrap_or_default()
    }

    /// Released text of the latest channel with this key.
    fn channel_text(&self, key: Key) -> Option<String> {
        self.channels.iter().rev().find(|c| c.key == key).map(|c| c.all.clone())
    }

    /// Runs a text field of an event through its channel; returns the edit if the text changed.
    fn text_field(
        &mut self,
        tree: &Tree<'_>,
        node: usize,
        key: Key,
        json_text: bool,
        finished: bool,
    ) -> Option<(usize, usize, Vec<u8>)> {
        let text = tree.str(node)?;
        let index = self.channel_index(key, json_text);
        let released = self.push(index, &text, finished);
        if released == *text {
            return None;
        }
        let n = tree.node(node)?;
        Some((n.start, n.end, json_tree::encode_string(&released).into_bytes()))
    }

    fn emit(out: &mut Vec<u8>, event: &SseEvent, raw: &[u8], edits: &mut [(usize, usize, Vec<u8>)]) {
        if edits.is_empty() {
            out.extend_from_slice(raw);
        } else {
            edits.sort_by_key(|e| e.0);
            write_event(out, &event.event, &json_tree::splice(&event.data, edits));
        }
    }

    fn chat_event(&mut self, event: &SseEvent, raw: &[u8], out: &mut Vec<u8>) {
        if event.data == b"[DONE]" {
            self.flush_all(out);
            if !self.finished {
                out.extend_from_slice(raw);
            }
            return;
        }
        let Ok(tree) = Tree::parse(&event.data) else {
            out.extend_from_slice(raw);
            return;
        };
        let mut edits = Vec::new();
        let mut before = Vec::new();
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
                            edits.extend(self.text_field(&tree, node, key, false, finishing));
                        }
                    }
                    if let Some(calls) = tree.get(delta, "tool_calls") {
                        for (k, call) in tree.children(calls).enumerate() {
                            let k = uint(&tree, tree.get(call, "index")).unwrap_or(k as u64);
                            let function = tree.get(call, "function");
                            if let Some(name) = function.and_then(|f| tree.get_str(f, "name")) {
                                self.check_tool_name(&name);
                            }
                            if let Some(node) = string_node(&tree, function.and_then(|f| tree.get(f, "arguments"))) {
                                let key = Key::Chat(index, Some(k));
                                present.push(key);
                                edits.extend(self.text_field(&tree, node, key, true, finishing));
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
                        self.flush_channel(i, &mut before);
                    }
                }
                if self.block.is_some() {
                    return;
                }
            }
        }
        out.append(&mut before);
        Self::emit(out, event, raw, &mut edits);
    }

    fn anthropic_event(&mut self, event: &SseEvent, raw: &[u8], out: &mut Vec<u8>) {
        let Ok(tree) = Tree::parse(&event.data) else {
            out.extend_from_slice(raw);
            return;
        };
        let kind = tree.get_str(Tree::ROOT, "type").map(|k| k.into_owned()).unwrap_or_else(|| event.event.clone());
        let index = uint(&tree, tree.get(Tree::ROOT, "index"));
        let mut edits = Vec::new();
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
                    if let Some(name) = block.and_then(|b| tree.get_str(b, "name")) {
                        self.check_tool_name(&name);
                    }
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
                        edits.extend(self.text_field(&tree, node, Key::Block(i), json_text, false));
                    }
                }
            }
            "content_block_stop" => {
                if let Some(i) = index {
                    self.open_blocks.retain(|b| *b != i);
                    if let Some(c) = self.channels.iter().position(|c| c.key == Key::Block(i) && !c.ended) {
                        self.flush_channel(c, out);
                    }
                }
            }
            "message_delta" | "message_stop" => self.flush_all(out),
            _ => {}
        }
        if self.block.is_some() {
            return;
        }
        Self::emit(out, event, raw, &mut edits);
    }

    fn responses_event(&mut self, event: &SseEvent, raw: &[u8], out: &mut Vec<u8>) {
        let Ok(tree) = Tree::parse(&event.data) else {
            out.extend_from_slice(raw);
            return;
        };
        let kind = tree.get_str(Tree::ROOT, "type").map(|k| k.into_owned()).unwrap_or_else(|| event.event.clone());
        if let Some(n) = uint(&tree, tree.get(Tree::ROOT, "sequence_number")) {
            self.sequence = Some(n);
        }
        let output = uint(&tree, tree.get(Tree::ROOT, "output_index")).unwrap_or(0);
        let content = uint(&tree, tree.get(Tree::ROOT, "content_index")).unwrap_or(0);
        let mut edits = Vec::new();
        let replace = |this: &Self, node: Option<usize>, key: Key, edits: &mut Vec<(usize, usize, Vec<u8>)>| {
            let (Some(node), Some(text)) = (string_node(&tree, node), this.channel_text(key)) else { return };
            if tree.str(node).is_some_and(|current| *current != text) {
                if let Some(n) = tree.node(node) {
                    edits.push((n.start, n.end, json_tree::encode_string(&text).into_bytes()));
                }
            }
        };
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
                    if let Some(name) = item.and_then(|i| tree.get_str(i, "name")) {
                        self.check_tool_name(&name);
                    }
                }
            }
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                let json_text = kind == "response.function_call_arguments.delta";
                let key = Key::Output(output, if json_text { u64::MAX } else { content });
                if let Some(node) = string_node(&tree, tree.get(Tree::ROOT, "delta")) {
                    edits.extend(self.text_field(&tree, node, key, json_text, false));
                }
            }
            "response.output_text.done" | "response.function_call_arguments.done" => {
                let json_text = kind == "response.function_call_arguments.done";
                let key = Key::Output(output, if json_text { u64::MAX } else { content });
                if let Some(c) = self.channels.iter().position(|c| c.key == key && !c.ended) {
                    self.flush_channel(c, out);
                }
                let field = if json_text { "arguments" } else { "text" };
                replace(self, tree.get(Tree::ROOT, field), key, &mut edits);
            }
            "response.content_part.done" => {
                let part = tree.get(Tree::ROOT, "part");
                replace(self, part.and_then(|p| tree.get(p, "text")), Key::Output(output, content), &mut edits);
            }
            "response.output_item.done" => {
                if let Some(item) = tree.get(Tree::ROOT, "item") {
                    self.replace_item(&tree, item, output, &mut edits);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.flush_all(out);
                if let Some(items) = tree.get(Tree::ROOT, "response").and_then(|r| tree.get(r, "output")) {
                    for (o, item) in tree.children(items).enumerate() {
                        self.replace_item(&tree, item, o as u64, &mut edits);
                    }
                }
            }
            _ => {}
        }
        if self.block.is_some() {
            return;
        }
        Self::emit(out, event, raw, &mut edits);
    }

    /// Rewrites a Responses output item's texts to what was released for them.
    fn replace_item(&self, tree: &Tree<'_>, item: usize, output: u64, edits: &mut Vec<(usize, usize, Vec<u8>)>) {
        let mut targets = Vec::new();
        if let Some(node) = string_node(tree, tree.get(item, "arguments")) {
            targets.push((node, Key::Output(output, u64::MAX)));
        }
        if let Some(parts) = tree.get(item, "content") {
            for (j, part) in tree.children(parts).enumerate() {
                if let Some(node) = string_node(tree, tree.get(part, "text")) {
                    targets.push((node, Key::Output(output, j as u64)));
                }
            }
        }
        for (node, key) in targets {
            let Some(text) = self.channel_text(key) else { continue };
            if tree.str(node).is_some_and(|current| *current != text) {
                if let Some(n) = tree.node(node) {
                    edits.push((n.start, n.end, json_tree::encode_string(&text).into_bytes()));
                }
            }
        }
    }

    fn on_event(&mut self, event: &SseEvent, raw: &[u8], out: &mut Vec<u8>) {
        match self.api {
            Api::OpenAiChat => self.chat_event(event, raw, out),
            Api::AnthropicMessages => self.anthropic_event(event, raw, out),
            Api::OpenAiResponses => self.responses_event(event, raw, out),
            Api::OpenAiEmbeddings => out.extend_from_slice(raw),
        }
        if self.block.is_some() && !self.finished {
            self.terminate(out);
        }
    }

    /// Ends the stream after a block with the events the client's SDK expects.
    fn terminate(&mut self, out: &mut Vec<u8>) {
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

    fn flush_all(&mut self, out: &mut Vec<u8>) {
        let open: Vec<usize> =
            (0..self.channels.len()).filter(|i| self.channels.get(*i).is_some_and(|c| !c.ended)).collect();
        for index in open {
            self.flush_channel(index, out);
            if self.block.is_some() {
                self.terminate(out);
                return;
            }
        }
    }

    /// Ends a channel; held text goes out in an event of its own, before the one that ended it.
    fn flush_channel(&mut self, index: usize, out: &mut Vec<u8>) {
        let Some(key) = self.channels.get(index).map(|c| c.key) else { return };
        let text = self.push(index, "", true);
        if text.is_empty() || self.block.is_some() {
            return;
        }
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
                let json_text = self.channels.get(index).is_some_and(|c| c.json_text);
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
        let text = self.guard.push(self.index, delta, false);
        (text, self.guard.block.clone())
    }

    /// End of the text: everything still held, checked.
    pub fn finish(&mut self) -> (String, Option<Block>) {
        let text = self.guard.push(self.index, "", true);
        (text, self.guard.block.clone())
    }

    pub fn held(&self) -> usize {
        self.guard.held_text()
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.guard.decisions()
    }
}

/// Writes one SSE event: `event:` line when named, `data:` lines, blank line.
fn write_event(out: &mut Vec<u8>, name: &str, data: &[u8]) {
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

fn uint(tree: &Tree<'_>, node: Option<usize>) -> Option<u64> {
    let node = node?;
    if tree.kind(node)? != Kind::Number {
        return None;
    }
    std::str::from_utf8(tree.raw(node)?).ok()?.parse().ok()
}

fn string_node(tree: &Tree<'_>, node: Option<usize>) -> Option<usize> {
    node.filter(|n| tree.kind(*n) == Some(Kind::String))
}

#[cfg(test)]
mod tests;
