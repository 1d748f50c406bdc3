//! One stream of generated text (a choice's content, a tool call's arguments, an Anthropic
//! content block): text deltas in; how far the text is decided, and what changes in it, out.
//!
//! The text is kept as the provider wrote it (`String`s: deltas are whole characters, as JSON
//! strings are) and never decoded again. What is released is a prefix of the original text plus
//! the rewrites (masks, restored placeholders) inside it; the caller puts those into the events
//! that carried the text. The decisions are those of scanning the whole text at once.

use super::hold::{Holds, Shape, ShapeCache};
use crate::guardrails::scan::Found;
use crate::guardrails::{block_for, merged, rewritten, Action, Block, Guardrails, Hit, Phase, Rewrite, Tally, Vault};

/// Original text kept before the held text, for `\b`, look-behind and validators (at least this
/// many bytes, widened to a character boundary).
const CONTEXT: usize = 16;

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
    /// Whether the caller reads the released text itself (else only its length is given).
    pub want_text: bool,
}

/// A change to a text stream: bytes `start..end` of the whole original text become `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub start: u64,
    pub end: u64,
    pub with: String,
}

/// What one push decided.
#[derive(Debug, Default)]
pub struct Released {
    /// The newly decided text, rewritten (what the client gets of it); empty unless the engine
    /// wants it.
    pub text: String,
    /// Bytes of that text.
    pub len: usize,
    /// Everything of the original text before this offset is decided.
    pub settled: u64,
    /// The changes inside the newly decided text, in order.
    pub(crate) changes: Vec<Change>,
    /// A blocking finding starts at `settled`: nothing from there on may be released.
    pub block: Option<Block>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct TextStream {
    /// Text not decided yet, from offset `base` of the whole text.
    pending: String,
    /// The decided original text just before `pending`.
    context: String,
    base: u64,
    holds: Holds,
    json_text: bool,
}

impl TextStream {
    pub fn new(json_text: bool) -> Self {
        TextStream { json_text, ..TextStream::default() }
    }

    /// Bytes of text not decided yet.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Offset in the whole text up to which everything is decided.
    pub fn settled(&self) -> u64 {
        self.base
    }

    /// Adds `delta`; `finished`: the text is complete, decide everything.
    pub(crate) fn push(
        &mut self,
        engine: &Engine<'_>,
        shapes: &[Shape],
        caches: &mut [ShapeCache],
        tally: &mut Tally,
        delta: &str,
        finished: bool,
    ) -> Released {
        self.pending.push_str(delta);
        let mut hay = String::with_capacity(self.context.len() + self.pending.len());
        hay.push_str(&self.context);
        hay.push_str(&self.pending);
        let from = self.context.len();
        let len = hay.len();
        let mut finished = finished;
        let mut alive_at = if finished {
            len
        } else {
            self.holds.first_alive(engine.shapes, shapes, caches, hay.as_bytes(), from, self.base)
        };
        if !finished && len - from.max(alive_at.min(len)) > engine.max_hold {
            // Held text would outgrow the cap: treat it as ended here (documented).
            finished = true;
            alive_at = len;
        }
        let mut hits: Vec<Hit> = Vec::new();
        engine.guardrails.hits(engine.checks, hay.as_bytes(), from, &mut hits);
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
        // ASCII-mode patterns may stop inside a character: release whole characters only.
        let boundary = floor_char_boundary(&hay, boundary).max(from);
        let counted =
            hits.iter().filter(|h| h.found.order < boundary || (block.is_some() && h.found.order == boundary));
        for hit in counted {
            let Some((policy, check)) = engine.guardrails.check_at(hit.policy, hit.check) else { continue };
            let detector = engine.guardrails.label_of(hit).map(|l| l.name.clone()).unwrap_or_default();
            tally.add(policy, check, &detector, Phase::Response, 1);
        }
        // `from` and `boundary` are character boundaries of `hay`, so this split always succeeds;
        // were it ever to fail, everything is decided rather than anything lost.
        let (out, rest) = self.pending.split_at_checked(boundary - from).unwrap_or((&self.pending, ""));
        let emitted_hits: Vec<Hit> = hits
            .iter()
            .filter(|h| h.found.order < boundary && h.found.end <= boundary)
            .map(|h| Hit { found: shifted(h.found, from), ..*h })
            .collect();
        let masks = engine.guardrails.masks(&emitted_hits, out, None);
        let restores = engine.vault.map(|v| v.restores(out, self.json_text, &masks)).unwrap_or_default();
        let rewrites: Vec<Rewrite> = merged(masks, restores);
        let len = rewrites.iter().fold(out.len(), |len, r| len + r.with.len() - (r.end - r.start));
        let text = match (engine.want_text, rewrites.is_empty()) {
            (false, _) => String::new(),
            (true, true) => out.to_string(),
            (true, false) => rewritten(out, &rewrites),
        };
        let base = self.base;
        let changes = rewrites
            .into_iter()
            .map(|r| Change { start: base + r.start as u64, end: base + r.end as u64, with: r.with })
            .collect();
        self.base += out.len() as u64;
        // Keep the rest; remember the decided text before it as context, from a character start.
        let decided = [self.context.as_str(), out].concat();
        let keep_from = ceil_char_boundary(&decided, decided.len().saturating_sub(CONTEXT));
        let (rest, context) = (rest.to_string(), decided.get(keep_from..).unwrap_or_default().to_string());
        self.pending = rest;
        self.context = context;
        self.holds.forget_before(self.base);
        Released { text, len, settled: self.base, changes, block }
    }
}

/// `found` with its offsets moved `by` bytes to the left.
fn shifted(found: Found, by: usize) -> Found {
    let left = |at: usize| at.saturating_sub(by);
    Found { start: left(found.start), end: left(found.end), order: left(found.order), label: found.label }
}

/// The largest character boundary of `text` at or before `i`.
pub(crate) fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest character boundary of `text` at or after `i`.
pub(crate) fn ceil_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}
