//! Deterministic reply text, token arithmetic and ids.
//!
//! Everything the mock says is a pure function of the request, so tests can
//! predict exact bytes and token counts without a tokenizer:
//!
//! * reply text: the words of [`REPLY_WORDS`], cycled; one word = one token;
//! * reply length: `min(client max (or 16 without one), 64)` words, "truncated"
//!   (`length` / `max_tokens`) exactly when the client's max was the limit;
//! * prompt tokens: `ceil(text bytes / 4) + 3 per message + 3`;
//! * ids: derived from an FNV-1a hash of the request body;
//! * with `reply=echo`: the text of the last user message, one token per
//!   whitespace-separated word.

use serde_json::Value;

/// The sentence the mock "generates", repeated as often as needed.
const REPLY_WORDS: [&str; 16] = [
    "This",
    "is",
    "a",
    "deterministic",
    "reply",
    "from",
    "tollgate-mock",
    "that",
    "repeats",
    "plain",
    "words",
    "so",
    "every",
    "token",
    "is",
    "predictable",
];

/// Reply length when the client sets no maximum.
pub const DEFAULT_REPLY_WORDS: u64 = 16;
/// The mock never says more than this, whatever the client allows.
pub const MAX_REPLY_WORDS: u64 = 64;

/// Fixed `created` timestamp (2025-01-01T00:00:00Z): real time would break
/// byte-for-byte determinism.
pub const CREATED_AT: u64 = 1_735_689_600;

/// How long the text reply is and whether the client's limit cut it short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLength {
    pub words: usize,
    /// True when the client's max was the binding limit, so the reply ends
    /// with `length` (OpenAI) / `max_tokens` (Anthropic).
    pub truncated: bool,
}

pub fn reply_length(client_max: Option<u64>) -> ReplyLength {
    let limit = client_max.unwrap_or(DEFAULT_REPLY_WORDS).min(MAX_REPLY_WORDS);
    ReplyLength {
        // limit <= 64, so this conversion cannot actually fail.
        words: usize::try_from(limit).unwrap_or(0),
        truncated: client_max.is_some_and(|max| max <= MAX_REPLY_WORDS),
    }
}

fn reply_word(index: usize) -> &'static str {
    REPLY_WORDS.get(index % REPLY_WORDS.len()).copied().unwrap_or("mock")
}

/// The streaming pieces of a reply: words after the first carry their leading
/// space, like real tokenizer output, so concatenating them gives the text.
pub fn reply_pieces(words: usize) -> impl Iterator<Item = String> {
    (0..words).map(|index| {
        let word = reply_word(index);
        if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        }
    })
}

pub fn reply_text(words: usize) -> String {
    reply_pieces(words).collect()
}

/// The text of the last `role: "user"` message: its `content` string, or the
/// concatenated `text` of its `type: "text"` parts (OpenAI content parts and
/// Anthropic text blocks alike; images, `tool_result` blocks and the rest do
/// not count). Empty when there is no user message or it holds no text.
pub fn last_user_text(messages: &[Value]) -> String {
    let last_user = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    match last_user.and_then(|m| m.get("content")) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Output tokens of an echoed text: one per whitespace-separated word.
pub fn word_count(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

/// Streaming pieces of an echoed text: one per word, each with the whitespace
/// that follows it (leading whitespace goes with the first), so the pieces
/// concatenate to the text. Empty text has no pieces.
pub fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    let mut previous_was_space = false;
    for (index, c) in text.char_indices() {
        let is_space = c.is_whitespace();
        if !is_space && previous_was_space && seen_word {
            pieces.extend(text.get(start..index));
            start = index;
        }
        seen_word |= !is_space;
        previous_was_space = is_space;
    }
    pieces.extend(text.get(start..).filter(|rest| !rest.is_empty()));
    pieces
}

/// `text` cut into pieces of at most `max_bytes` bytes, never inside a UTF-8
/// character: a piece ends at the last character boundary that fits, and a
/// character wider than `max_bytes` travels alone. Empty text has no pieces.
pub fn byte_pieces(text: &str, max_bytes: usize) -> Vec<&str> {
    let max_bytes = max_bytes.max(1);
    let mut pieces = Vec::with_capacity(text.len().div_ceil(max_bytes));
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = max_bytes.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        if cut == 0 {
            // The first character alone is wider than max_bytes.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces
}

/// `ceil(bytes / 4)`: the usual rule of thumb, good enough to be plausible.
pub fn tokens_for_bytes(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX)
}

/// Prompt tokens for `message_count` messages holding `text_bytes` bytes of text.
pub fn prompt_tokens(text_bytes: usize, message_count: usize) -> u64 {
    let per_message = u64::try_from(message_count).unwrap_or(u64::MAX).saturating_mul(3);
    tokens_for_bytes(text_bytes).saturating_add(per_message).saturating_add(3)
}

/// Bytes of text in a message `content` (or Anthropic `system`): a string, or
/// an array of parts whose `text` fields count and whose nested `content`
/// (Anthropic `tool_result`) is counted the same way. Images, tool-call
/// arguments and other non-text parts do not count.
pub fn text_bytes(content: &Value) -> usize {
    match content {
        Value::String(text) => text.len(),
        Value::Array(parts) => parts
            .iter()
            .map(|part| {
                let own = part.get("text").and_then(Value::as_str).map_or(0, str::len);
                let nested = part.get("content").map_or(0, text_bytes);
                own.saturating_add(nested)
            })
            .fold(0, usize::saturating_add),
        _ => 0,
    }
}

/// 64-bit FNV-1a: tiny, dependency-free and stable across runs and platforms.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` followed by `len` base62 characters derived from `seed`, so ids
/// look like the real ones (`chatcmpl-…`, `msg_01…`) yet repeat exactly.
pub fn make_id(prefix: &str, seed: u64, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len().saturating_add(len));
    id.push_str(prefix);
    let mut state = seed;
    for _ in 0..len {
        state = splitmix64(state);
        let digit = usize::try_from(state % 62).unwrap_or(0);
        id.push(char::from(BASE62.get(digit).copied().unwrap_or(b'0')));
    }
    id
}

/// One step of SplitMix64: spreads the FNV hash so consecutive characters differ.
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reply_length_defaults_to_sixteen_words_and_is_not_truncated() {
        assert_eq!(reply_length(None), ReplyLength { words: 16, truncated: false });
    }

    #[test]
    fn reply_length_is_truncated_when_the_client_max_binds() {
        assert_eq!(reply_length(Some(5)), ReplyLength { words: 5, truncated: true });
        assert_eq!(reply_length(Some(64)), ReplyLength { words: 64, truncated: true });
        assert_eq!(reply_length(Some(1000)), ReplyLength { words: 64, truncated: false });
    }

    #[test]
    fn reply_pieces_concatenate_to_the_reply_text() {
        let pieces: Vec<String> = reply_pieces(3).collect();
        assert_eq!(pieces, ["This", " is", " a"]);
        assert_eq!(reply_text(3), "This is a");
        assert_eq!(reply_text(17).split(' ').count(), 17);
    }

    #[test]
    fn text_bytes_counts_strings_parts_and_tool_results() {
        assert_eq!(text_bytes(&json!("hello")), 5);
        let parts = json!([
            {"type": "text", "text": "abc"},
            {"type": "image_url", "image_url": {"url": "http://x"}},
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "de"}]},
            {"type": "tool_result", "tool_use_id": "t", "content": "fgh"}
        ]);
        assert_eq!(text_bytes(&parts), 8);
    }

    #[test]
    fn prompt_tokens_follow_the_documented_formula() {
        // ceil(9 / 4) = 3, plus 3 per message for 2 messages, plus 3.
        assert_eq!(prompt_tokens(9, 2), 12);
        assert_eq!(prompt_tokens(0, 0), 3);
    }

    #[test]
    fn ids_are_stable_and_have_the_requested_shape() {
        let id = make_id("msg_01", fnv1a64(b"body"), 22);
        assert_eq!(id, make_id("msg_01", fnv1a64(b"body"), 22));
        assert_ne!(id, make_id("msg_01", fnv1a64(b"other"), 22));
        assert_eq!(id.len(), 28);
        assert!(id.chars().skip(6).all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn last_user_text_takes_the_last_user_message_string_or_text_parts() {
        let messages = [
            json!({"role": "user", "content": "first"}),
            json!({"role": "assistant", "content": "ignored"}),
            json!({"role": "user", "content": [
                {"type": "text", "text": "my key is "},
                {"type": "image_url", "image_url": {"url": "http://x"}},
                {"type": "tool_result", "tool_use_id": "t", "content": "not this"},
                {"type": "text", "text": "sk-123"}
            ]}),
            json!({"role": "tool", "tool_call_id": "c", "content": "nor this"}),
        ];
        assert_eq!(last_user_text(&messages), "my key is sk-123");
        assert_eq!(last_user_text(messages.get(..2).unwrap()), "first");
        let only_results = [json!({"role": "user", "content": [{"type": "tool_result", "content": "x"}]})];
        assert_eq!(last_user_text(&only_results), "");
        assert_eq!(last_user_text(&[json!({"role": "system", "content": "s"})]), "");
        assert_eq!(last_user_text(&[]), "");
    }

    #[test]
    fn word_pieces_keep_the_whitespace_after_each_word() {
        assert_eq!(word_pieces("mail a@b.c now"), ["mail ", "a@b.c ", "now"]);
        assert_eq!(word_pieces("  two\n\nlines "), ["  two\n\n", "lines "]);
        assert_eq!(word_pieces("   "), ["   "]);
        assert!(word_pieces("").is_empty());
        assert_eq!(word_count("  two\n\nlines "), 2);
        assert_eq!(word_count("   "), 0);
        assert_eq!(word_count(""), 0);
    }

    #[test]
    fn byte_pieces_never_cut_inside_a_character() {
        assert_eq!(byte_pieces("héllo", 3), ["hé", "llo"]);
        assert_eq!(byte_pieces("héllo", 2), ["h", "é", "ll", "o"]);
        assert_eq!(byte_pieces("[EMAIL_1]", 4), ["[EMA", "IL_1", "]"]);
        // A character wider than the limit goes alone rather than being cut.
        assert_eq!(byte_pieces("a€b", 1), ["a", "€", "b"]);
        assert!(byte_pieces("", 3).is_empty());
        for text in ["héllo wörld 🎉 ok", "ünïcödé"] {
            for max in 1..8 {
                let pieces = byte_pieces(text, max);
                assert_eq!(pieces.concat(), text);
                assert!(pieces.iter().all(|p| p.len() <= max || p.chars().count() == 1), "{max}: {pieces:?}");
            }
        }
    }
}
