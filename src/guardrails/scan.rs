//! Matchers: what finds text for one check. Every matcher has the same *local* semantics, so
//! that scanning a text in one piece and scanning it as a stream give the same findings:
//! starting at a position, take the next finding (leftmost; the longest when several start
//! together; then the higher-priority detector), continue right after it.
//!
//! Built-in detectors skip most text: a table-driven pass splits the text into words and
//! keeps only runs of "interesting" words (with a digit, an upper-case letter, `@`, `:`, `-`,
//! `_`, `+`, `/`, `=`); a detector's regular expression only runs on a run that meets its
//! trigger (enough digits, its literal prefix, …). Prose is mostly lower-case words, so most
//! bytes are looked at once, by a table lookup.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::cell::RefCell;

use memchr::memmem;

use regex_automata::hybrid;
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use super::detect::{self, Builtin, Value, Window, CLASS, DIGIT, INTERESTING, WS};
use super::validate;

/// One finding: `start..end` is the value (what a mask replaces); `order` is where the match
/// began (before `start` only for `Bearer <token>`), which decides precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub order: usize,
    /// Index into the matcher's labels.
    pub label: u16,
}

/// What a finding is called in decisions and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Detector name (`email`) or the check's own name for custom patterns.
    pub name: String,
    /// Placeholder text without brackets: `EMAIL`.
    pub placeholder: String,
}

/// Regular-expression syntax used everywhere: ASCII mode (no Unicode tables, no Unicode `\b`
/// cliff), matching bytes, case-insensitivity on ASCII letters only.
pub fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

/// Compiled regular expressions (one or several patterns): a lazy DFA forward and one in
/// reverse, linear in the text whatever the pattern, with their search cache. ASCII mode never
/// makes the DFA quit, and the cache is cleared as often as needed (never gives up), so a search
/// always answers. The filter runs single-threaded; a re-entrant use gets a fresh cache.
pub struct Pattern {
    regex: hybrid::regex::Regex,
    cache: RefCell<hybrid::regex::Cache>,
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pattern")
    }
}

impl Pattern {
    pub fn search(&self, input: &Input<'_>) -> Option<regex_automata::Match> {
        match self.cache.try_borrow_mut() {
            Ok(mut cache) => self.regex.try_search(&mut cache, input).ok().flatten(),
            Err(_) => self.regex.try_search(&mut self.regex.create_cache(), input).ok().flatten(),
        }
    }
}

/// Builds the patterns into one [`Pattern`] (leftmost-first across them).
pub fn build_regexes(patterns: &[String]) -> Result<Box<Pattern>, String> {
    let regex = hybrid::regex::Regex::builder()
        .syntax(syntax_config())
        .thompson(thompson::Config::new().utf8(false).nfa_size_limit(Some(4 << 20)))
        .dfa(hybrid::dfa::Config::new().cache_capacity(1 << 20).skip_cache_capacity_check(true))
        .build_many(patterns)
        .map_err(|e| {
            // The innermost cause says what is wrong ("unclosed group"), without the pattern drawing.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            let text = cause.to_string();
            text.lines().last().unwrap_or("invalid pattern").trim().to_string()
        })?;
    let cache = RefCell::new(regex.create_cache());
    Ok(Box::new(Pattern { regex, cache }))
}

#[derive(Debug)]
struct Detector {
    builtin: &'static Builtin,
    regex: Pattern,
    /// Literal prefixes one of which a run must hold (`NEEDLE_*` bits; 0: none needed).
    needles: u32,
    /// The searcher for a [`Window::FromLiteral`] literal, built once: building one costs more
    /// than searching a message.
    literal: Option<memmem::Finder<'static>>,
}

/// The most detectors a set holds: every built-in once (a run's `mask` has a bit for each).
const MAX_DETECTORS: usize = 16;
const _: () = assert!(detect::BUILTINS.len() <= MAX_DETECTORS);

/// A set of built-in detectors, compiled.
#[derive(Debug)]
pub struct Detectors {
    list: Vec<Detector>,
    labels: Vec<Label>,
    /// Some detector can match without a strong byte (look for its literal prefixes).
    weak_starts: bool,
    /// Some detector needs one of the literal prefixes in a run (or can start at one).
    literals: bool,
    /// The detectors whose window starts at a literal: index and `NEEDLE_*` bits.
    literal_windows: Vec<(usize, u32)>,
    /// The run-window detectors' triggers, side by side (a detector itself is large: its
    /// regex), and the shortest run any of them takes.
    gates: Vec<Gate>,
    shortest_run: usize,
}

/// What a run must hold for detector `bit` to search it: its [`detect::Trigger`] and literal prefixes.
#[derive(Debug, Clone, Copy)]
struct Gate {
    bit: u32,
    trigger: detect::Trigger,
    needles: u32,
    lookback: usize,
}

#[derive(Debug)]
pub enum Matcher {
    Detectors(Detectors),
    /// Custom regular expressions; each pattern has its own label.
    Patterns {
        regex: Box<Pattern>,
        labels: Vec<Label>,
    },
    /// Word lists (aho-corasick), case-insensitive unless configured otherwise.
    Keywords {
        ac: AhoCorasick,
        whole_words: bool,
        labels: Vec<Label>,
    },
}

/// What a run holds, for the triggers.
#[derive(Debug, Clone, Copy)]
struct RunStats {
    start: usize,
    end: usize,
    flags: u16,
    digits: u32,
    /// Most digits in consecutive words that all hold digits.
    streak: u32,
}

/// A run of interesting words and the detectors whose triggers it meets.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    mask: u32,
}

impl Detectors {
    /// `names` are built-in detector names, already expanded and checked.
    pub fn new(names: &[&str]) -> Result<Detectors, String> {
        let mut list = Vec::new();
        // Keep the built-in priority order whatever order the configuration lists them in.
        for builtin in detect::BUILTINS.iter().filter(|b| names.contains(&b.name)) {
            let regex = build_regexes(&[builtin.pattern.to_string()])?;
            let literal = match builtin.window {
                Window::FromLiteral(literal) => Some(memmem::Finder::new(literal)),
                Window::Runs { .. } => None,
            };
            list.push(Detector { builtin, regex: *regex, needles: needle_bits(builtin), literal });
        }
        let labels = list
            .iter()
            .map(|d| Label { name: d.builtin.name.to_string(), placeholder: d.builtin.label.to_string() })
            .collect();
        let weak_starts =
            list.iter().any(|d| matches!(d.builtin.name, "aws_access_key" | "google_api_key" | "jwt" | "bearer_token"));
        let literals = weak_starts || list.iter().any(|d| d.needles != 0);
        let literal_windows = list
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d.builtin.window, Window::FromLiteral(_)))
            .map(|(k, d)| (k, d.needles))
            .collect();
        let gates: Vec<Gate> = list
            .iter()
            .enumerate()
            .filter_map(|(k, d)| {
                let Window::Runs { lookback } = d.builtin.window else { return None };
                Some(Gate { bit: 1 << k, trigger: d.builtin.trigger, needles: d.needles, lookback })
            })
            .collect();
        let shortest_run = gates.iter().map(|g| g.trigger.min_len).min().unwrap_or(usize::MAX);
        Ok(Detectors { list, labels, weak_starts, literals, literal_windows, gates, shortest_run })
    }

    pub fn patterns(&self) -> Vec<String> {
        self.list.iter().map(|d| d.builtin.pattern.to_string()).collect()
    }

    /// Whether the text must also be split at the literal prefixes of findings that need no
    /// strong byte (see [`split_runs`]).
    pub fn needs_weak_starts(&self) -> bool {
        self.weak_starts
    }

    /// The runs of `hay[from..]` some detector of this set may use, and which.
    /// The runs some detector of this set may use, and the literal prefixes (`NEEDLE_*`) that
    /// begin at or after `from`.
    fn runs(&self, hay: &[u8], from: usize, words: &mut Words) -> (Vec<Run>, u32) {
        let (split, literals) = words.prepare(hay, from, self.weak_starts, self.literals);
        let mut runs = Vec::new();
        for stats in split {
            self.close_run(&mut runs, hay, *stats, literals);
        }
        let present = literals.iter().filter(|(at, _)| *at >= from).fold(0, |bits, (_, b)| bits | b);
        (runs, present)
    }

    fn close_run(&self, runs: &mut Vec<Run>, hay: &[u8], stats: RunStats, literals: &[Literal]) {
        let RunStats { start, end, flags, digits, streak } = stats;
        let len = end - start;
        if len < self.shortest_run {
            return;
        }
        let mut mask = 0u32;
        let mut present: Option<u32> = None;
        for gate in &self.gates {
            let trigger = &gate.trigger;
            if flags & trigger.classes != trigger.classes
                || (trigger.any_of != 0 && flags & trigger.any_of == 0)
                || (if trigger.digits_in_a_row { streak } else { digits }) < trigger.min_digits
                || len < trigger.min_len
                || !trigger.shape.holds(hay, start..end)
            {
                continue;
            }
            if gate.needles != 0 {
                // The literal prefixes that begin in the run or the `Bearer` look-back before it.
                let found = *present.get_or_insert_with(|| {
                    let from = start.saturating_sub(gate.lookback.max(BEARER_LOOKBACK));
                    let first = literals.partition_point(|(at, _)| *at < from);
                    literals.iter().skip(first).take_while(|(at, _)| *at < end).fold(0, |bits, (_, b)| bits | b)
                });
                if found & gate.needles == 0 {
                    continue;
                }
            }
            mask |= gate.bit;
        }
        if mask != 0 {
            runs.push(Run { start, end, mask });
        }
    }

    /// The next valid finding of detector `k` starting at or after `pos`, searching `from..`.
    fn next_in_window(&self, k: usize, hay: &[u8], pos: usize, window_end: usize) -> Option<Found> {
        let detector = self.list.get(k)?;
        let builtin = detector.builtin;
        let mut at = pos;
        while at < window_end {
            let input = Input::new(hay).span(at..window_end);
            let m = detector.regex.search(&input)?;
            let (mut start, end) = (m.start(), m.end());
            let mut order = m.start();
            match builtin.value {
                Value::Whole => {}
                Value::AfterSpace => {
                    let text = hay.get(start..end).unwrap_or_default();
                    let skip = text.iter().position(|b| *b == b' ' || *b == b'\t').unwrap_or(0);
                    let token = text.get(skip..).unwrap_or_default();
                    start += skip + token.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
                }
                Value::Address => {
                    // Text run into an address is not part of it, nor of the finding.
                    start += validate::email_start(hay.get(start..end).unwrap_or_default());
                    order = start;
                }
            }
            let value = hay.get(start..end).unwrap_or_default();
            let before = hay.get(..start).unwrap_or_default();
            let after = hay.get(end..).unwrap_or_default();
            if end > start && (builtin.validate)(value, before, after) {
                return Some(Found { start, end, order, label: k as u16 });
            }
            at = m.start() + 1;
        }
        None
    }

    fn next_from_literal(&self, k: usize, hay: &[u8], pos: usize) -> Option<Found> {
        let detector = self.list.get(k)?;
        let literal = detector.literal.as_ref()?;
        let mut at = pos;
        loop {
            let offset = literal.find(hay.get(at..)?)?;
            let p = at + offset;
            let input = Input::new(hay).span(p..hay.len()).anchored(Anchored::Yes);
            if let Some(m) = detector.regex.search(&input) {
                let value = hay.get(m.start()..m.end()).unwrap_or_default();
                let before = hay.get(..m.start()).unwrap_or_default();
                let after = hay.get(m.end()..).unwrap_or_default();
                if m.end() > m.start() && (detector.builtin.validate)(value, before, after) {
                    return Some(Found { start: m.start(), end: m.end(), order: m.start(), label: k as u16 });
                }
            }
            at = p + 1;
        }
    }

    fn find_all(&self, hay: &[u8], from: usize, out: &mut Vec<Found>, words: &mut Words) {
        let (runs, present) = self.runs(hay, from, words);
        // Per detector: index of the next run to search, its pending finding, and whether it
        // has no more (from the start when no run triggers it). Arrays, not vectors: this runs
        // for every message, and most messages hold no finding.
        // The detectors a run triggers, and those whose window starts at a literal found here.
        let mut live = runs.iter().fold(0u32, |mask, run| mask | run.mask);
        for &(k, needles) in &self.literal_windows {
            if present & needles != 0 {
                live |= 1 << k;
            }
        }
        if live == 0 {
            return;
        }
        let mut done = [true; MAX_DETECTORS];
        for (k, done) in done.iter_mut().enumerate() {
            *done = live & (1 << k) == 0;
        }
        let mut cursor = [0usize; MAX_DETECTORS];
        let mut next: [Option<Found>; MAX_DETECTORS] = [None; MAX_DETECTORS];
        let mut pos = from;
        loop {
            let mut best: Option<Found> = None;
            for (k, ((cursor, next), done)) in cursor.iter_mut().zip(next.iter_mut()).zip(done.iter_mut()).enumerate() {
                if *done {
                    continue;
                }
                if next.is_none_or(|f| f.order < pos) {
                    *next = self.next_for(k, hay, from, pos, &runs, cursor);
                    *done = next.is_none();
                }
                let Some(candidate) = *next else { continue };
                best = match best {
                    None => Some(candidate),
                    Some(b) => Some(if better(&candidate, &b) { candidate } else { b }),
                };
            }
            let Some(found) = best else { break };
            out.push(found);
            pos = found.end.max(found.order + 1);
        }
    }

    fn next_for(
        &self,
        k: usize,
        hay: &[u8],
        from: usize,
        pos: usize,
        runs: &[Run],
        cursor: &mut usize,
    ) -> Option<Found> {
        let detector = self.list.get(k)?;
        match detector.builtin.window {
            Window::FromLiteral(_) => self.next_from_literal(k, hay, pos),
            Window::Runs { lookback } => {
                while let Some(run) = runs.get(*cursor) {
                    if run.mask & (1 << k) == 0 || run.end <= pos {
                        *cursor += 1;
                        continue;
                    }
                    let start = run.start.saturating_sub(lookback).max(from).max(pos);
                    if let Some(found) = self.next_in_window(k, hay, start, run.end) {
                        return Some(found);
                    }
                    *cursor += 1;
                }
                None
            }
        }
    }
}

impl Detectors {
    /// The same findings as [`Matcher::find_all`], computed the slow way: every detector's regular
    /// expression over the whole text, no prefilter. The reference the prefilter is tested against.
    pub fn find_all_without_prefilter(&self, hay: &[u8]) -> Vec<Found> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut next: Vec<Option<Option<Found>>> = vec![None; self.list.len()];
        loop {
            let mut best: Option<Found> = None;
            for (k, slot) in next.iter_mut().enumerate() {
                if slot.is_none() || slot.is_some_and(|f| f.is_some_and(|f| f.order < pos)) {
                    *slot = Some(self.next_in_window(k, hay, pos, hay.len()));
                }
                if let Some(Some(candidate)) = *slot {
                    best = match best {
                        Some(b) if !better(&candidate, &b) => Some(b),
                        _ => Some(candidate),
                    };
                }
            }
            let Some(found) = best else { break };
            out.push(found);
            pos = found.end.max(found.order + 1);
        }
        out
    }
}

/// The split of one text into runs of interesting words and the literal prefixes in it, made
/// once and shared by every detector set that scans the text (a policy's PII check and its
/// secrets check each used to split it).
#[derive(Debug, Default)]
pub struct Words {
    /// Split at weak starts too: some set that will use this split needs them.
    weak_starts: bool,
    /// The text (address, length) and `from` the split is for.
    made_for: Option<(usize, usize, usize)>,
    literals: Option<Vec<Literal>>,
    runs: Option<Vec<RunStats>>,
}

impl Words {
    /// `weak_starts`: whether any detector set that will use the split needs them. A set that
    /// does not is served as well by a split that has them (see [`split_runs`]).
    pub fn new(weak_starts: bool) -> Words {
        Words { weak_starts, ..Words::default() }
    }

    /// The runs of `hay[from..]` and, when asked for (or needed for weak starts), its literal
    /// prefixes.
    fn prepare(&mut self, hay: &[u8], from: usize, weak_starts: bool, literals: bool) -> (&[RunStats], &[Literal]) {
        let key = (hay.as_ptr() as usize, hay.len(), from);
        if self.made_for != Some(key) {
            *self = Words { weak_starts: self.weak_starts, made_for: Some(key), ..Words::default() };
        }
        if weak_starts && !self.weak_starts {
            self.weak_starts = true;
            self.runs = None;
        }
        if (literals || self.weak_starts) && self.literals.is_none() {
            self.literals = Some(find_literals(hay, from));
        }
        let found = self.literals.as_deref().unwrap_or_default();
        if self.runs.is_none() {
            let starts: Vec<usize> = if self.weak_starts {
                found.iter().filter(|(_, bits)| bits & WEAK_STARTS != 0).map(|(at, _)| *at).collect()
            } else {
                Vec::new()
            };
            self.runs = Some(split_runs(hay, from, &starts));
        }
        (self.runs.as_deref().unwrap_or_default(), found)
    }
}

/// Splits `hay[from..]` into runs of interesting words.
///
/// A run starts at a word with a "strong" byte (a digit or one of `@:-_+/=`), found eight bytes
/// at a time, or at one of `weak_starts` (sorted): the few literal prefixes of findings that
/// need none (`AKIA`, `AIza`, `eyJ`, `Bearer`). It goes on over the following words while they
/// are interesting (upper-case letters count there: IBAN groups).
///
/// Weak starts only add runs or lengthen them to the left (a run they start runs on over any
/// strong word after it), so every run of a split without them lies inside a run of the split
/// with them. Triggers only ask a run for at least something, and a window that holds a match
/// finds it, so a detector set that needs no weak starts finds the same with either split.
fn split_runs(hay: &[u8], from: usize, weak_starts: &[usize]) -> Vec<RunStats> {
    let mut runs = Vec::new();
    let n = hay.len();
    let mut extra = weak_starts.iter().copied().peekable();
    let mut i = from;
    loop {
        while extra.next_if(|p| *p < i).is_some() {}
        let strong = next_strong(hay, i);
        let p = match (strong, extra.peek().copied()) {
            (Some(s), Some(e)) => s.min(e),
            (Some(s), None) => s,
            (None, Some(e)) => e,
            (None, None) => break,
        };
        // The word holding `p` starts after the last whitespace before it (not before `i`).
        let start = hay.get(i..p).and_then(|before| before.iter().rposition(is_ws_byte)).map_or(i, |ws| i + ws + 1);
        let mut run = RunStats { start, end: start, flags: 0, digits: 0, streak: 0 };
        let mut streak = 0u32;
        let mut j = start;
        let mut first = true;
        loop {
            let (end, flags, digits) = scan_word(hay, j);
            if flags & INTERESTING == 0 && !first {
                i = end;
                break;
            }
            first = false;
            run.end = end;
            run.flags |= flags | detect::word_marks(flags);
            run.digits += digits;
            streak = if digits > 0 { streak + digits } else { 0 };
            run.streak = run.streak.max(streak);
            let gap = hay.get(end..).unwrap_or_default();
            let k = end + gap.iter().position(|b| !is_ws_byte(b)).unwrap_or(gap.len());
            j = k;
            if k >= n {
                i = n;
                break;
            }
        }
        runs.push(run);
        if i >= n {
            break;
        }
    }
    runs
}

/// Classes that start a run on their own: everything interesting but upper-case letters.
const STRONG: u16 = INTERESTING & !detect::UPPER;

/// A literal prefix in a text: where it begins and which it is (`NEEDLE_*`).
type Literal = (usize, u32);

/// The literal prefixes of `hay[from..]` and of the `Bearer` look-back before it, in order.
/// Each has a byte memchr finds quickly: `-` (`sk-`, `xoxb-`), `_` (`ghp_`, `github_pat_`), `A`
/// (`AKIA`, `AIza`), `J` (`eyJ`), `B`/`b` (`Bearer`, `bearer`, `BEARER`).
fn find_literals(hay: &[u8], from: usize) -> Vec<Literal> {
    let start = from.saturating_sub(BEARER_LOOKBACK);
    let tail = hay.get(start..).unwrap_or_default();
    let before = |at: usize, n: usize| at.checked_sub(n).and_then(|from| hay.get(from..at)).unwrap_or_default();
    let mut out = Vec::new();
    let mut note = |at: Option<usize>, bits: u32| {
        if let (Some(at), true) = (at, bits != 0) {
            out.push((at, bits));
        }
    };
    for at in memchr::memchr3_iter(b'-', b'_', b'A', tail).map(|at| start + at) {
        let rest = hay.get(at..).unwrap_or_default();
        match rest.first() {
            Some(b'-') => {
                if rest.starts_with(b"-----BEGIN ") {
                    note(Some(at), NEEDLE_PEM);
                }
                if before(at, 2) == b"sk" {
                    let ant = if rest.starts_with(b"-ant-") { NEEDLE_SK_ANT } else { 0 };
                    note(at.checked_sub(2), NEEDLE_SK | ant);
                }
                if before(at, 4).starts_with(b"xox") {
                    note(at.checked_sub(4), NEEDLE_XOX);
                }
            }
            Some(b'_') => {
                let gh = before(at, 3);
                if gh.starts_with(b"gh") && gh.get(2).is_some_and(|c| b"opusr".contains(c)) {
                    note(at.checked_sub(3), NEEDLE_GITHUB);
                } else if before(at, 6) == b"github" {
                    note(at.checked_sub(6), NEEDLE_GITHUB);
                }
            }
            _ => match rest.get(1..4) {
                Some(b"Iza") => note(Some(at), NEEDLE_AIZA),
                Some(b"KIA" | b"SIA" | b"BIA" | b"CCA") => note(Some(at), NEEDLE_AWS),
                _ => {}
            },
        }
    }
    for at in memchr::memchr3_iter(b'J', b'B', b'b', tail).map(|at| start + at) {
        let rest = hay.get(at..).unwrap_or_default();
        if rest.first() == Some(&b'J') {
            if before(at, 2) == b"ey" {
                note(at.checked_sub(2), NEEDLE_EYJ);
            }
        } else if bearer_after(rest) {
            note(Some(at), NEEDLE_BEARER);
        }
    }
    out.sort_unstable();
    out
}

/// Whether `text` (at a `B` or `b`) goes on with `earer` or `EARER`.
fn bearer_after(text: &[u8]) -> bool {
    matches!(text.get(1..6), Some(b"earer" | b"EARER"))
}

fn is_ws_byte(b: &u8) -> bool {
    CLASS.get(usize::from(*b)).is_some_and(|c| *c == WS)
}

/// One word from `at`: its end (first whitespace or the end), its classes and digit count.
fn scan_word(hay: &[u8], at: usize) -> (usize, u16, u32) {
    let (mut flags, mut digits) = (0u16, 0u32);
    let mut end = at;
    for &b in hay.get(at..).unwrap_or_default() {
        let c = CLASS.get(usize::from(b)).copied().unwrap_or(0);
        if c == WS {
            break;
        }
        flags |= c;
        digits += u32::from(c & DIGIT);
        end += 1;
    }
    (end, flags, digits)
}

/// The first strong byte (a digit or one of `@:-_+/=`) at or after `at`.
fn next_strong(hay: &[u8], at: usize) -> Option<usize> {
    let rest = hay.get(at..)?;
    let strong = |b: &u8| CLASS.get(usize::from(*b)).is_some_and(|c| c & STRONG != 0);
    let mut chunks = rest.chunks_exact(8);
    for (index, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        if detect::may_be_strong(word) {
            if let Some(offset) = chunk.iter().position(strong) {
                return Some(at + index * 8 + offset);
            }
        }
    }
    let tail = chunks.remainder();
    tail.iter().position(strong).map(|o| at + rest.len() - tail.len() + o)
}

const NEEDLE_SK: u32 = 1;
const NEEDLE_SK_ANT: u32 = 2;
const NEEDLE_AWS: u32 = 4;
const NEEDLE_GITHUB: u32 = 8;
const NEEDLE_XOX: u32 = 16;
const NEEDLE_AIZA: u32 = 32;
const NEEDLE_EYJ: u32 = 64;
const NEEDLE_BEARER: u32 = 128;
/// `-----BEGIN ` (a PEM block: the private-key window starts there).
const NEEDLE_PEM: u32 = 256;
const BEARER_LOOKBACK: usize = 14;
/// The literal prefixes that begin findings without a strong byte: runs also start there.
const WEAK_STARTS: u32 = NEEDLE_AWS | NEEDLE_AIZA | NEEDLE_EYJ | NEEDLE_BEARER;

/// The `NEEDLE_*` bits of a detector's literal prefixes.
fn needle_bits(builtin: &Builtin) -> u32 {
    if builtin.name == "bearer_token" {
        return NEEDLE_BEARER;
    }
    builtin.trigger.needles.iter().fold(0, |bits, needle| {
        bits | match needle.first() {
            Some(b's') if needle.starts_with(b"sk-ant-") => NEEDLE_SK_ANT,
            Some(b's') => NEEDLE_SK,
            Some(b'A') if needle.starts_with(b"AIza") => NEEDLE_AIZA,
            Some(b'A') => NEEDLE_AWS,
            Some(b'g') => NEEDLE_GITHUB,
            Some(b'x') => NEEDLE_XOX,
            Some(b'e') => NEEDLE_EYJ,
            Some(b'-') if needle.starts_with(b"-----BEGIN ") => NEEDLE_PEM,
            _ => 0,
        }
    })
}

/// Precedence between two findings: earlier start, then longer, then the higher priority
/// (lower label index: built-ins are listed by priority).
fn better(a: &Found, b: &Found) -> bool {
    (a.order, std::cmp::Reverse(a.end), a.label) < (b.order, std::cmp::Reverse(b.end), b.label)
}

impl Matcher {
    pub fn keywords(
        words: &[String],
        case_sensitive: bool,
        whole_words: bool,
        label: Label,
    ) -> Result<Matcher, String> {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(!case_sensitive)
            .kind(Some(AhoCorasickKind::DFA))
            .build(words)
            .map_err(|e| e.to_string())?;
        Ok(Matcher::Keywords { ac, whole_words, labels: vec![label] })
    }

    /// Whether scanning needs the text split at weak starts (see [`split_runs`]).
    pub fn needs_weak_starts(&self) -> bool {
        matches!(self, Matcher::Detectors(d) if d.needs_weak_starts())
    }

    pub fn labels(&self) -> &[Label] {
        match self {
            Matcher::Detectors(d) => &d.labels,
            Matcher::Patterns { labels, .. } | Matcher::Keywords { labels, .. } => labels,
        }
    }

    /// Every finding in `hay[from..]` (bytes before `from` are context only).
    pub fn find_all(&self, hay: &[u8], from: usize, out: &mut Vec<Found>) {
        self.find_all_in(hay, from, out, &mut Words::new(self.needs_weak_starts()));
    }

    /// [`Matcher::find_all`] with the text's split into words shared with the other matchers
    /// that scan the same text.
    pub fn find_all_in(&self, hay: &[u8], from: usize, out: &mut Vec<Found>, words: &mut Words) {
        match self {
            Matcher::Detectors(d) => d.find_all(hay, from, out, words),
            Matcher::Patterns { regex, .. } => {
                let mut at = from;
                while at <= hay.len() {
                    let Some(m) = regex.search(&Input::new(hay).span(at..hay.len())) else { break };
                    if m.is_empty() {
                        at = m.end() + 1; // empty matches are ignored
                        continue;
                    }
                    out.push(Found {
                        start: m.start(),
                        end: m.end(),
                        order: m.start(),
                        label: m.pattern().as_usize() as u16,
                    });
                    at = m.end();
                }
            }
            Matcher::Keywords { ac, whole_words, .. } => {
                let mut at = from;
                while at < hay.len() {
                    let input = aho_corasick::Input::new(hay).span(at..hay.len());
                    let Some(m) = ac.find(input) else { break };
                    let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
                    let edge_ok = |first: Option<&u8>, outside: Option<&u8>| !(word(first) && word(outside));
                    let ok = !whole_words
                        || (edge_ok(hay.get(m.start()), m.start().checked_sub(1).and_then(|i| hay.get(i)))
                            && edge_ok(m.end().checked_sub(1).and_then(|i| hay.get(i)), hay.get(m.end())));
                    if ok && !m.is_empty() {
                        out.push(Found { start: m.start(), end: m.end(), order: m.start(), label: 0 });
                        at = m.end();
                    } else {
                        at = m.start() + 1;
                    }
                }
            }
        }
    }

    /// Patterns describing this matcher for the streaming hold-back automaton.
    pub fn shape_patterns(&self, keywords_source: &[String], case_sensitive: bool) -> Vec<String> {
        match self {
            Matcher::Detectors(d) => d.patterns(),
            Matcher::Patterns { .. } => keywords_source.to_vec(),
            Matcher::Keywords { .. } => {
                let words: Vec<String> = keywords_source.iter().map(|w| escape(w)).collect();
                let flags = if case_sensitive { "" } else { "(?i)" };
                vec![format!("{flags}(?:{})", words.join("|"))]
            }
        }
    }

    /// Bytes after a finding its validity depends on.
    pub fn lookahead(&self) -> usize {
        match self {
            Matcher::Detectors(_) => detect::LOOKAHEAD,
            Matcher::Patterns { .. } => 0,
            Matcher::Keywords { whole_words, .. } => usize::from(*whole_words),
        }
    }
}

/// Escapes regex metacharacters in a literal (whitespace becomes `\s+`-free exact bytes).
pub fn escape(text: &str) -> String {
    regex_syntax::escape(text)
}

fn is_word_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A phrase list as one regular expression: whole words, any run of whitespace between words,
/// ASCII case-insensitive.
pub fn phrases_pattern(phrases: &[String]) -> String {
    let alternatives: Vec<String> = phrases
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let body = p.split_whitespace().map(escape).collect::<Vec<_>>().join(r"\s+");
            let open = if is_word_char(p.trim().chars().next()) { r"\b" } else { "" };
            let close = if is_word_char(p.trim().chars().last()) { r"\b" } else { "" };
            format!("{open}{body}{close}")
        })
        .collect();
    format!("(?i)(?:{})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detectors(names: &[&str]) -> Matcher {
        Matcher::Detectors(Detectors::new(names).unwrap())
    }

    fn found(m: &Matcher, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        m.find_all(text.as_bytes(), 0, &mut out);
        out.iter().map(|f| (m.labels()[f.label as usize].name.clone(), text[f.start..f.end].to_string())).collect()
    }

    #[test]
    fn finds_each_builtin() {
        let all: Vec<&str> = detect::BUILTINS.iter().map(|b| b.name).collect();
        let m = detectors(&all);
        let text = "Mail jane.doe@example.com or call (415) 555-0132, card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, host 10.0.0.12 and 2001:db8::7334. \
                    Key sk-proj-AbCdEf1234567890GhIjKlMn and Authorization: Bearer abcDEF1234567890ghiJKL.";
        let names: Vec<String> = found(&m, text).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["email", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "openai_key", "bearer_token"]);
        let bearer = found(&m, text).pop().unwrap();
        assert_eq!(bearer.1, "abcDEF1234567890ghiJKL");
    }

    #[test]
    fn anthropic_keys_win_over_openai_keys() {
        let m = detectors(&["openai_key", "anthropic_key"]);
        let key = "sk-ant-api03-AbCdEf1234567890GhIjKlMnOpQrStUvWx";
        assert_eq!(found(&m, &format!("key {key} end")), [("anthropic_key".to_string(), key.to_string())]);
    }

    #[test]
    fn private_key_blocks_are_found_whole() {
        let m = detectors(&["private_key", "email"]);
        let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow IBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(&m, &format!("x {block} y")), [("private_key".to_string(), block.to_string())]);
    }

    #[test]
    fn every_literal_prefix_is_found_where_it_begins() {
        // A detector looks only where its literal prefixes were found: each must be noted.
        for builtin in detect::BUILTINS {
            let bits = needle_bits(builtin);
            let has_prefix = !builtin.trigger.needles.is_empty() || builtin.name == "bearer_token";
            assert_eq!(bits != 0, has_prefix, "{}", builtin.name);
            let prefixes: Vec<&[u8]> = match builtin.window {
                Window::FromLiteral(literal) => vec![literal],
                Window::Runs { .. } if builtin.name == "bearer_token" => vec![b"Bearer", b"bearer", b"BEARER"],
                Window::Runs { .. } => builtin.trigger.needles.to_vec(),
            };
            for prefix in prefixes {
                // Slack's prefix is known by the dash after its type letter (`xoxb-`).
                let rest: &[u8] = if prefix == b"xox" { b"b-Z" } else { b"Z" };
                let text = [&b"x "[..], prefix, rest].concat();
                let found = find_literals(&text, 0);
                assert!(found.iter().any(|(at, b)| *at == 2 && b & bits != 0), "{}: {found:?}", builtin.name);
            }
        }
    }

    #[test]
    fn every_match_has_its_detectors_shape() {
        // A shape skips a run only where the detector's expression cannot match, valid or not.
        let tokens: [&[u8]; 20] = [
            b"DE", b"GB82", b"4111 ", b"1111-", b"0532", b"123-", b"45-", b"6789", b"12", b"7", b"-", b" ", b" ", b"T",
            b":", b"\n", b"Z", b".", b"x", b"3704 ",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for builtin in detect::BUILTINS.iter().filter(|b| b.trigger.shape != detect::Shape::Any) {
            let regex = build_regexes(&[builtin.pattern.to_string()]).unwrap();
            let mut matches = 0;
            for _ in 0..100_000 {
                let count = 4 + next() % 16;
                let text: Vec<u8> = (0..count).flat_map(|_| tokens[(next() % 20) as usize].iter().copied()).collect();
                let mut at = 0;
                while let Some(m) = regex.search(&Input::new(&text).span(at..text.len())) {
                    let shown = String::from_utf8_lossy(&text);
                    assert!(builtin.trigger.shape.holds(&text, m.range()), "{}: {shown:?}", builtin.name);
                    matches += 1;
                    at = m.start() + 1;
                }
            }
            assert!(matches > 200, "{}: only {matches} matches to check", builtin.name);
        }
    }

    #[test]
    fn a_timestamp_is_not_a_card_an_ssn_or_an_iban() {
        let d = Detectors::new(&["card", "ssn", "iban"]).unwrap();
        let text = b"gateway:\n2026-11-21T10:00:00Z level=warn upstream=\"api.example\" latency_ms=30012";
        let (runs, _) = d.runs(text, 0, &mut Words::new(false));
        assert!(runs.is_empty(), "{runs:?}");
        let (runs, _) =
            d.runs(b"card 4111 1111 1111 1111, SSN 123-45-6789, IBAN DE89 3704 0044", 0, &mut Words::new(false));
        assert_eq!(runs.iter().fold(0, |mask, run| mask | run.mask), 0b111, "{runs:?}");
    }

    #[test]
    fn the_word_skip_never_misses_an_interesting_byte() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            let exact = bytes.iter().any(|b| CLASS[usize::from(*b)] & STRONG != 0);
            assert!(!exact || detect::may_be_strong(seed), "{bytes:?}");
        }
        for b in 0..=255u8 {
            let word = u64::from_le_bytes([b' ', b' ', b' ', b, b'a', b'a', b'a', b'a']);
            let exact = CLASS[usize::from(b)] & STRONG != 0;
            assert!(!exact || detect::may_be_strong(word), "{b}");
        }
    }

    #[test]
    fn keywords_respect_whole_words() {
        let m = Matcher::keywords(&["acme".into()], false, true, Label { name: "k".into(), placeholder: "K".into() })
            .unwrap();
        assert_eq!(found(&m, "ACME corp, acmeish, the acme.").len(), 2);
    }

    #[test]
    fn phrases_allow_any_whitespace() {
        let regex = build_regexes(&[phrases_pattern(&["ignore previous instructions".into()])]).unwrap();
        let m = Matcher::Patterns { regex, labels: vec![Label { name: "p".into(), placeholder: "P".into() }] };
        assert_eq!(found(&m, "Please IGNORE   previous\ninstructions now").len(), 1);
    }
}
