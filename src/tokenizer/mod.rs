//! Token counting, pure (no proxy-wasm): exact for OpenAI's encodings, a measured approximation
//! for other providers, and the request-side estimate of a chat request.
//!
//! Tables are built once per process (per Wasm VM): [`warm_up`] builds them, and the host calls
//! it at VM start so that no request ever pays for it.

mod approx;
mod bpe;
mod chat;
mod encoding;
mod image;
mod models;
mod pretokenize;
mod vocab;

pub use approx::Family;
pub use chat::{chat_request_at_most, estimate_chat_request, ChatEstimate};
pub use encoding::Encoding;

use models::Tokenizer;

/// Builds every encoding's tables unless already built. Idempotent and cheap after the first call.
/// Returns false if a table could not be built (counts then fall back to bytes / 4).
pub fn warm_up() -> bool {
    Encoding::ALL.iter().all(|encoding| encoding.warm_up())
}

/// Whether a number is the provider's own count or an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exactness {
    /// What the provider's tokenizer produces (OpenAI's encodings).
    Exact,
    /// An estimate; the README states each family's measured error.
    Approximate,
}

impl Exactness {
    pub fn name(self) -> &'static str {
        match self {
            Exactness::Exact => "exact",
            Exactness::Approximate => "approximate",
        }
    }

    /// Exact only if both are.
    pub fn and(self, other: Exactness) -> Exactness {
        if self == Exactness::Exact && other == Exactness::Exact {
            Exactness::Exact
        } else {
            Exactness::Approximate
        }
    }
}

/// Counts tokens the way one model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounter {
    tokenizer: Tokenizer,
}

/// The counter for `model`: exact for OpenAI models, the family's approximation otherwise.
pub fn for_model(model: &str) -> TokenCounter {
    TokenCounter { tokenizer: models::tokenizer_for(model) }
}

impl TokenCounter {
    pub fn exact(encoding: Encoding) -> TokenCounter {
        TokenCounter { tokenizer: Tokenizer::Exact(encoding) }
    }

    pub fn count(&self, text: &str) -> u64 {
        match self.tokenizer {
            Tokenizer::Exact(encoding) => encoding.count(text),
            Tokenizer::Approximate(family) => family.count(text),
        }
    }

    /// The most tokens a text of `bytes` bytes can be for this counter, without counting: a
    /// token of every encoding here is at least one byte, and an approximation scales such a count.
    pub fn at_most(&self, bytes: usize) -> u64 {
        let bytes = bytes as u64;
        match self.tokenizer {
            Tokenizer::Exact(_) => bytes,
            Tokenizer::Approximate(family) => family.scale(bytes),
        }
    }

    pub fn exactness(&self) -> Exactness {
        match self.tokenizer {
            Tokenizer::Exact(_) => Exactness::Exact,
            Tokenizer::Approximate(_) => Exactness::Approximate,
        }
    }

    /// The exact encoding, if this counter is exact.
    pub fn encoding(&self) -> Option<Encoding> {
        match self.tokenizer {
            Tokenizer::Exact(encoding) => Some(encoding),
            Tokenizer::Approximate(_) => None,
        }
    }

    /// What counts: `o200k_base`, `cl100k_base`, or `approximate:<family>`.
    pub fn describe(&self) -> String {
        match self.tokenizer {
            Tokenizer::Exact(encoding) => encoding.name().to_string(),
            Tokenizer::Approximate(family) => format!("approximate:{}", family.name()),
        }
    }
}
