//! Token counting, pure (no proxy-wasm): exact for OpenAI's encodings.
//!
//! Tables are built once per process (per Wasm VM): [`warm_up`] builds them, and the host calls
//! it at VM start so that no request ever pays for it.

mod bpe;
mod encoding;
mod pretokenize;
mod vocab;

pub use encoding::Encoding;

/// Builds every encoding's tables unless already built. Idempotent and cheap after the first call.
/// Returns false if a table could not be built (counts then fall back to bytes / 4).
pub fn warm_up() -> bool {
    Encoding::ALL.iter().all(|encoding| encoding.warm_up())
}
