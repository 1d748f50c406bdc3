//! Splits text into pre-tokens with tiktoken's patterns, run by `regex-automata`'s lazy DFA.
//!
//! tiktoken's patterns end with `\s+(?!\S)|\s+`; a look-ahead is beyond a DFA. As in GitHub's
//! `bpe-openai`, the look-ahead alternative becomes two patterns: `\s+$` (whitespace that ends the
//! text) joins the main pattern, and `\s+\s` matches one character too many, which the splitter
//! gives back. Both are exactly `\s+(?!\S)`: a whitespace run followed by a non-space loses its
//! last character to the next pre-token. Patterns keep their order, and the leftmost-first
//! match semantics of the meta regex equal the backtracking engine tiktoken uses.

use std::sync::Mutex;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::{Anchored, Input};

const CONTRACTIONS: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";

/// cl100k_base: tiktoken's `pat_str` with the look-ahead rewritten.
pub fn cl100k_patterns() -> [String; 3] {
    let main = [
        CONTRACTIONS,
        r"[^\r\n\p{L}\p{N}]?\p{L}+",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n]*",
        r"\s*[\r\n]+",
        r"\s+$",
    ];
    [main.join("|"), r"\s+\s".into(), r"\s+".into()]
}

/// o200k_base: tiktoken's `pat_str` with the look-ahead rewritten.
pub fn o200k_patterns() -> [String; 3] {
    let upper = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]";
    let lower = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]";
    let main = [
        format!(r"[^\r\n\p{{L}}\p{{N}}]?{upper}*{lower}+{CONTRACTIONS}?"),
        format!(r"[^\r\n\p{{L}}\p{{N}}]?{upper}+{lower}*{CONTRACTIONS}?"),
        r"\p{N}{1,3}".into(),
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*".into(),
        r"\s*[\r\n]+".into(),
        r"\s+$".into(),
    ];
    [main.join("|"), r"\s+\s".into(), r"\s+".into()]
}

/// Index of the pattern whose match includes one look-ahead character.
const LOOKAHEAD_PATTERN: usize = 1;

/// Only the end of each match is needed and every search is anchored at the previous end, so a
/// forward lazy DFA does the whole job; the meta regex's per-search dispatch cost ~40% more here.
pub struct Pretokenizer {
    dfa: DFA,
    /// DFA caches (the lazily built states) kept between calls; one per concurrent caller.
    caches: Mutex<Vec<Cache>>,
}

impl Pretokenizer {
    pub fn new(patterns: &[String; 3]) -> Option<Self> {
        let dfa = DFA::builder().build_many(patterns).ok()?;
        let cache = dfa.create_cache();
        Some(Pretokenizer { dfa, caches: Mutex::new(vec![cache]) })
    }

    /// Calls `each` with every pre-token of `text`, in order; together they cover `text` exactly.
    pub fn split(&self, text: &str, mut each: impl FnMut(&str)) {
        let taken = self.caches.lock().ok().and_then(|mut caches| caches.pop());
        let mut cache = taken.unwrap_or_else(|| self.dfa.create_cache());
        let mut rest = text;
        while !rest.is_empty() {
            let end = self.next_end(&mut cache, rest);
            let (piece, tail) = rest.split_at_checked(end).unwrap_or((rest, ""));
            each(piece);
            rest = tail;
        }
        if let Ok(mut caches) = self.caches.lock() {
            caches.push(cache);
        }
    }

    /// Length of the pre-token at the start of `text` (never 0 for non-empty text).
    fn next_end(&self, cache: &mut Cache, text: &str) -> usize {
        let first_char = text.chars().next().map_or(text.len(), char::len_utf8);
        let Ok(Some(found)) = self.dfa.try_search_fwd(cache, &Input::new(text).anchored(Anchored::Yes)) else {
            // The patterns match any character (each is \s, \p{L}, \p{N} or none of these), so
            // this is unreachable; a lone character keeps the count going rather than stopping.
            return first_char;
        };
        let mut end = found.offset();
        if found.pattern().as_usize() == LOOKAHEAD_PATTERN {
            end -= text.get(..end).and_then(|m| m.chars().next_back()).map_or(0, char::len_utf8);
        }
        if end == 0 {
            first_char
        } else {
            end
        }
    }
}
