//! What the mock "decides" to answer, independent of the wire dialect.

use crate::text::ReplyLength;
use crate::tools::ToolCall;

pub enum Answer {
    /// Plain text of `words` deterministic words.
    Text(ReplyLength),
    /// A single call of one of the offered tools.
    Tool(ToolCall),
}

impl Answer {
    /// Visible output tokens: one per word, or the tool call's estimate.
    pub fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text(length) => u64::try_from(length.words).unwrap_or(u64::MAX),
            Answer::Tool(call) => call.output_tokens(),
        }
    }
}
