//! The answer's half of a translated exchange: a provider's stream, complete response or error,
//! turned into what the client's SDK expects. Streams go event by event as chunks arrive.

use crate::provider_request::Translation;
use crate::reply::Reply;
use crate::translate::{
    self, AnthropicToOpenAiStream, OpenAiToAnthropicStream, SseTranslator, TranslateError, Translated,
};

/// A provider's stream being turned into the client's.
#[derive(Debug)]
pub enum StreamTranslation {
    ToOpenAi(Box<SseTranslator<AnthropicToOpenAiStream>>),
    ToAnthropic(Box<SseTranslator<OpenAiToAnthropicStream>>),
}

impl StreamTranslation {
    /// `include_usage`: the OpenAI client asked for the final usage chunk. `created`: seconds
    /// since the epoch, for OpenAI chunks.
    pub fn new(translation: Translation, include_usage: bool, created: u64, max_event_bytes: usize) -> Self {
        match translation {
            Translation::OpenAiToAnthropic => StreamTranslation::ToOpenAi(Box::new(SseTranslator::new(
                AnthropicToOpenAiStream::new(None, created, include_usage),
                max_event_bytes,
            ))),
            Translation::AnthropicToOpenAi => StreamTranslation::ToAnthropic(Box::new(SseTranslator::new(
                OpenAiToAnthropicStream::new(None),
                max_event_bytes,
            ))),
        }
    }

    /// The client's bytes for this provider chunk (often empty while an event is incomplete).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self {
            StreamTranslation::ToOpenAi(t) => t.feed(chunk),
            StreamTranslation::ToAnthropic(t) => t.feed(chunk),
        }
    }

    /// End of the provider's stream: the client's closing bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        match self {
            StreamTranslation::ToOpenAi(t) => t.finish(),
            StreamTranslation::ToAnthropic(t) => t.finish(),
        }
    }

    /// Ends the client's stream now with an error event in its dialect.
    pub fn end_with_error(&mut self, message: &str) -> Vec<u8> {
        match self {
            StreamTranslation::ToOpenAi(t) => t.end_with_error(message),
            StreamTranslation::ToAnthropic(t) => t.end_with_error(message),
        }
    }

    /// What the translation dropped or changed so far, one line each (never any text).
    pub fn notes(&self) -> &[String] {
        match self {
            StreamTranslation::ToOpenAi(t) => t.notes(),
            StreamTranslation::ToAnthropic(t) => t.notes(),
        }
    }

    /// Provider events that could not be read: the first ended the client's stream with an error.
    pub fn unreadable(&self) -> u32 {
        match self {
            StreamTranslation::ToOpenAi(t) => t.unreadable(),
            StreamTranslation::ToAnthropic(t) => t.unreadable(),
        }
    }
}

/// A complete (non-streaming) provider answer in the client's dialect.
pub fn translate_body(translation: Translation, body: &[u8], created: u64) -> Result<Vec<u8>, TranslateError> {
    translate_answer(translation, body, created).map(|translated| translated.body)
}

/// [`translate_body`] with the notes of what was dropped or changed on the way, for the log.
pub fn translate_answer(translation: Translation, body: &[u8], created: u64) -> Result<Translated, TranslateError> {
    match translation {
        Translation::OpenAiToAnthropic => translate::anthropic_response_to_openai_chat(body, None, created),
        Translation::AnthropicToOpenAi => translate::openai_chat_response_to_anthropic(body, None),
    }
}

/// A provider's error answer in the client's dialect (status may change, e.g. Anthropic's 529
/// becomes 503 for OpenAI clients).
pub fn translate_error(translation: Translation, status: u16, body: &[u8]) -> Reply {
    match translation {
        Translation::OpenAiToAnthropic => translate::anthropic_error_to_openai(status, body),
        Translation::AnthropicToOpenAi => translate::openai_error_to_anthropic(status, body),
    }
}
