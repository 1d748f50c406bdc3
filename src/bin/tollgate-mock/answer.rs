//! What the mock "decides" to answer, independent of the wire dialect.

use crate::text::{byte_pieces, reply_pieces, reply_text, word_count, word_pieces, ReplyLength};
use crate::tools::ToolCall;

pub enum Answer {
    /// Plain text of `words` deterministic words.
    Text(ReplyLength),
    /// `reply=echo`: the text of the last user message, whatever max_tokens
    /// and tools say. It always ends naturally (`stop` / `end_turn`).
    Echo(String),
    /// A single call of one of the offered tools.
    Tool(ToolCall),
}

impl Answer {
    /// Visible output tokens: one per word, or the tool call's estimate.
    pub fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text(length) => u64::try_from(length.words).unwrap_or(u64::MAX),
            Answer::Echo(text) => word_count(text),
            Answer::Tool(call) => call.output_tokens(),
        }
    }

    /// The whole text of a text answer; `None` for a tool call.
    pub fn text(&self) -> Option<String> {
        match self {
            Answer::Text(length) => Some(reply_text(length.words)),
            Answer::Echo(text) => Some(text.clone()),
            Answer::Tool(_) => None,
        }
    }

    /// The streamed deltas of a text answer, which concatenate to [`Answer::text`]:
    /// pieces of at most `delta_bytes` bytes when set, else one per word (the
    /// sentence's words carry their leading space, echoed words the whitespace
    /// that follows them). Empty for a tool call.
    pub fn text_pieces(&self, delta_bytes: Option<usize>) -> Vec<String> {
        match (self, delta_bytes) {
            (Answer::Tool(_), _) => Vec::new(),
            (Answer::Text(length), None) => reply_pieces(length.words).collect(),
            (Answer::Echo(text), None) => word_pieces(text).into_iter().map(str::to_owned).collect(),
            (answer, Some(max_bytes)) => {
                let text = answer.text().unwrap_or_default();
                byte_pieces(&text, max_bytes).into_iter().map(str::to_owned).collect()
            }
        }
    }
}
