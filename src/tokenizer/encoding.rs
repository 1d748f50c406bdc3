//! Exact token counts for OpenAI's `o200k_base` and `cl100k_base`, the same as tiktoken's
//! `encode_ordinary`: special-token text such as `<|endoftext|>` in user content is ordinary text
//! (7 tokens in both encodings), because that is how user content reaches the model and how
//! OpenAI counts it; a client cannot inject control tokens through the API.

use std::sync::OnceLock;

use super::bpe;
use super::pretokenize::{self, Pretokenizer};
use super::vocab::{self, Ranks};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200k,
    Cl100k,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::O200k, Encoding::Cl100k];

    /// tiktoken's name for the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        }
    }

    /// Exact number of tokens of `text` (as `encode_ordinary` would produce). If the tables could
    /// not be built (impossible with the embedded vocabularies), falls back to bytes / 4.
    pub fn count(self, text: &str) -> u64 {
        match self.tables() {
            Some(tables) => tables.count(text),
            None => (text.len() as u64).div_ceil(4),
        }
    }

    /// Builds this encoding's tables now unless already built; see [`super::warm_up`].
    pub fn warm_up(self) -> bool {
        self.tables().is_some()
    }

    fn tables(self) -> Option<&'static Tables> {
        static O200K: OnceLock<Option<Tables>> = OnceLock::new();
        static CL100K: OnceLock<Option<Tables>> = OnceLock::new();
        match self {
            Encoding::O200k => O200K.get_or_init(|| Tables::new(vocab::O200K_BASE, &pretokenize::o200k_patterns())),
            Encoding::Cl100k => CL100K.get_or_init(|| Tables::new(vocab::CL100K_BASE, &pretokenize::cl100k_patterns())),
        }
        .as_ref()
    }
}

struct Tables {
    ranks: Ranks,
    pretokenizer: Pretokenizer,
}

impl Tables {
    fn new(vocabulary: &'static [u8], patterns: &[String; 3]) -> Option<Tables> {
        Some(Tables { ranks: vocab::ranks(vocabulary)?, pretokenizer: Pretokenizer::new(patterns)? })
    }

    fn count(&self, text: &str) -> u64 {
        let mut total = 0;
        self.pretokenizer.split(text, |piece| total += bpe::count(&self.ranks, piece.as_bytes()));
        total
    }
}
