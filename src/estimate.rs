//! Token estimates for when the provider reports no usage (a cut stream, an old upstream).
//! Every number from here is marked `estimated` in the usage record.
//!
//! Interim rule until the exact tokenizer is wired in: about four bytes of text per token,
//! the usual rule of thumb for English under OpenAI's encodings.

/// Tokens in generated text.
pub fn text_tokens(text_bytes: u64) -> u64 {
    text_bytes.div_ceil(4)
}

/// Prompt tokens of a request body (JSON syntax included, so this leans high).
pub fn request_tokens(body_bytes: usize) -> u64 {
    (body_bytes as u64).div_ceil(4)
}
