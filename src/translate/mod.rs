//! Translation between OpenAI Chat Completions and Anthropic Messages: requests, complete
//! responses, streams (event by event, never buffered) and provider errors.
//!
//! Pure code: bytes in, bytes out, no host calls and no clock (`created` timestamps are passed
//! in). Nothing here panics on any input; what cannot be translated is a [`TranslateError`]
//! naming the field, and what the target API has no place for is dropped and listed in
//! [`Translated::notes`], so the caller can log it. The README's "Translation" section is the
//! user-facing table of what maps to what.
//!
//! | direction | function or type |
//! |-----------|------------------|
//! | OpenAI Chat request → Anthropic request | [`openai_chat_to_anthropic`] |
//! | Anthropic request → OpenAI Chat request | [`anthropic_to_openai_chat`] |
//! | Anthropic response → OpenAI Chat response | [`anthropic_response_to_openai_chat`] |
//! | OpenAI Chat response → Anthropic response | [`openai_chat_response_to_anthropic`] |
//! | Anthropic stream → OpenAI Chat stream | [`AnthropicToOpenAiStream`] |
//! | OpenAI Chat stream → Anthropic stream | [`OpenAiToAnthropicStream`] |
//! | either stream, fed raw bytes | [`SseTranslator`] |
//! | provider error → client error | [`anthropic_error_to_openai`], [`openai_error_to_anthropic`] |

mod error;
mod json;
mod request_to_anthropic;
mod request_to_openai;
mod response_to_anthropic;
mod response_to_openai;
mod sampling;
mod shared;
mod stream_to_anthropic;
mod stream_to_openai;

pub use error::{anthropic_error_to_openai, openai_error_to_anthropic};
pub use request_to_anthropic::openai_chat_to_anthropic;
pub use request_to_openai::anthropic_to_openai_chat;
pub use response_to_anthropic::openai_chat_response_to_anthropic;
pub use response_to_openai::anthropic_response_to_openai_chat;
pub use stream_to_anthropic::OpenAiToAnthropicStream;
pub use stream_to_openai::AnthropicToOpenAiStream;

use crate::sse::{SseEvent, SseFramer, SseIssue};

/// A translated body, and what was dropped or changed on the way because the target API has no
/// counterpart (one line each, field path first, e.g. `seed: dropped (Anthropic has no
/// counterpart)`). Notes never quote prompt or completion text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub body: Vec<u8>,
    pub notes: Vec<String>,
}

/// Why a body could not be translated. `message` is safe to show the client (it never quotes
/// the body); `param` is the field at fault as a path (`messages[2].content[0].type`), for
/// OpenAI's `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub kind: TranslateErrorKind,
    pub param: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslateErrorKind {
    /// The body is empty, not JSON (invalid UTF-8 included), too deeply nested, or not an object.
    InvalidJson,
    /// A field is missing or has the wrong type or value.
    InvalidField,
    /// A valid field that the other API cannot express without changing the meaning of the
    /// request (e.g. `n > 1`, audio input, server-side tools).
    Unsupported,
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(param) => write!(f, "{param}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TranslateError {}

/// An upstream event that could not be read (its data is not JSON, or holds a string that is
/// not UTF-8), or whose content the client's API cannot carry (tool-call arguments that are
/// neither a string nor an object, a fragment for a block that is gone): nothing of it can be
/// carried over faithfully. A translator that says why ends the stream with its own error event
/// before returning it; otherwise the caller ends it with [`UNREADABLE_EVENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// The message of the error event that ends a translated stream at an unreadable event.
pub const UNREADABLE_EVENT: &str =
    "An upstream stream event could not be read (not JSON, or not UTF-8) and could not be translated.";

/// One direction of stream translation: each upstream event in, the client's SSE bytes out.
pub trait EventTranslator {
    /// Translates one complete upstream event, appending what the client should get now.
    /// `Err(Unreadable)`: the event could not be read; the caller ends the stream there.
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<u8>) -> Result<(), Unreadable>;
    /// The upstream stream ended. Appends the closing events if the upstream's final event was
    /// seen, or an error event saying the stream was cut if it was not.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The upstream's final event (or an error) was translated; later events are ignored.
    fn is_done(&self) -> bool;
    /// Ends the stream with an error event in the client's dialect (`error_type` is an
    /// Anthropic error type, which the OpenAI side maps to its own); later events are ignored.
    fn end_with_error(&mut self, error_type: &str, message: &str, out: &mut Vec<u8>);
    /// What was dropped or changed on the way because the client's API has no place for it, or
    /// the provider left it out (one line each, as [`Translated::notes`]; never any text).
    fn notes(&self) -> &[String] {
        &[]
    }
    /// An upstream event could not be read whole (larger than the framer's cap): the stream
    /// cannot be translated faithfully past it, so an error event ends it.
    fn on_oversized_event(&mut self, max_bytes: usize, out: &mut Vec<u8>) {
        if !self.is_done() {
            let message =
                format!("An upstream stream event was larger than {max_bytes} bytes and could not be translated.");
            self.end_with_error("api_error", &message, out);
        }
    }
}

/// A stream translator fed raw upstream bytes in chunks of any size: frames them into events
/// with [`SseFramer`] and translates each event as soon as it is complete. Bytes of an event
/// still arriving are the only thing held.
#[derive(Debug)]
pub struct SseTranslator<T> {
    framer: SseFramer,
    max_event_bytes: usize,
    /// Upstream events that could not be read (the stream was ended with an error at the first).
    unreadable: u32,
    inner: T,
    events: Vec<SseEvent>,
    issues: Vec<SseIssue>,
}

impl<T: EventTranslator> SseTranslator<T> {
    /// `max_event_bytes` caps one upstream event (the filter's `max_stream_event_bytes`).
    pub fn new(inner: T, max_event_bytes: usize) -> Self {
        SseTranslator {
            framer: SseFramer::new(max_event_bytes),
            max_event_bytes,
            unreadable: 0,
            inner,
            events: Vec::new(),
            issues: Vec::new(),
        }
    }

    /// The client's bytes for this upstream chunk (often empty: an event is not complete yet).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.framer.feed(chunk, &mut self.events, &mut self.issues);
        self.drain(&mut out);
        out
    }

    /// End of the upstream stream: the client's last bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.framer.finish(&mut self.events);
        self.drain(&mut out);
        self.inner.finish(&mut out);
        out
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Ends the client's stream now with an error event (nothing if it already ended).
    pub fn end_with_error(&mut self, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.inner.is_done() {
            self.inner.end_with_error("api_error", message, &mut out);
        }
        out
    }

    /// The translator's notes so far (see [`EventTranslator::notes`]).
    pub fn notes(&self) -> &[String] {
        self.inner.notes()
    }

    /// Upstream events that could not be read: the first ended the client's stream with an
    /// error, rather than its text being dropped without a word.
    pub fn unreadable(&self) -> u32 {
        self.unreadable
    }

    /// Translates the events just framed, in order, and ends the stream with an error where an
    /// oversized event was skipped: events before it are translated, events after it are not.
    fn drain(&mut self, out: &mut Vec<u8>) {
        let oversized_at = self.issues.drain(..).map(|SseIssue::EventTooLarge { start }| start).min();
        for event in self.events.drain(..) {
            if oversized_at.is_some_and(|at| event.start >= at) {
                break;
            }
            if self.inner.is_done() {
                continue;
            }
            if self.inner.on_event(&event, out).is_err() {
                self.unreadable += 1;
                // A translator that said why (in its own error event) has already ended.
                if !self.inner.is_done() {
                    self.inner.end_with_error("api_error", UNREADABLE_EVENT, out);
                }
            }
        }
        self.events.clear();
        if oversized_at.is_some() {
            self.inner.on_oversized_event(self.max_event_bytes, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the data of each event it is given, and how the stream ended.
    #[derive(Default)]
    struct Recorder {
        seen: Vec<String>,
        ended: Option<String>,
    }

    impl EventTranslator for Recorder {
        fn on_event(&mut self, event: &SseEvent, _: &mut Vec<u8>) -> Result<(), Unreadable> {
            if self.ended.is_none() {
                self.seen.push(String::from_utf8(event.data.clone()).map_err(|_| Unreadable)?);
            }
            Ok(())
        }
        fn finish(&mut self, _: &mut Vec<u8>) {
            self.ended.get_or_insert_with(|| "finished".into());
        }
        fn is_done(&self) -> bool {
            self.ended.is_some()
        }
        fn end_with_error(&mut self, error_type: &str, _: &str, _: &mut Vec<u8>) {
            self.ended.get_or_insert_with(|| error_type.into());
        }
        fn on_oversized_event(&mut self, max_bytes: usize, _: &mut Vec<u8>) {
            self.ended.get_or_insert_with(|| format!("oversized {max_bytes}"));
        }
    }

    #[test]
    fn events_before_an_oversized_one_are_translated_and_those_after_it_are_not() {
        let stream = format!("data: a\n\n: keep-alive\n\ndata: {}\n\ndata: b\n\n", "x".repeat(64));
        for split in 0..=stream.len() {
            let mut translator = SseTranslator::new(Recorder::default(), 32);
            let (head, tail) = stream.as_bytes().split_at(split);
            translator.feed(head);
            translator.feed(tail);
            translator.finish();
            assert_eq!(translator.inner().seen, ["a"], "split at {split}");
            assert_eq!(translator.inner().ended.as_deref(), Some("oversized 32"), "split at {split}");
        }
    }

    #[test]
    fn comments_and_data_less_events_between_events_are_not_mistaken_for_an_oversized_one() {
        let mut translator = SseTranslator::new(Recorder::default(), 32);
        translator.feed(b"data: a\n\n: ping\n\nevent: x\n\ndata: b\n\n");
        translator.finish();
        assert_eq!(translator.inner().seen, ["a", "b"]);
        assert_eq!(translator.inner().ended.as_deref(), Some("finished"));
    }

    #[test]
    fn data_less_events_adding_up_past_the_cap_are_not_mistaken_for_the_oversized_one() {
        let pings = ": ping\n\n".repeat(8);
        let stream = format!("{pings}data: a\n\ndata: {}\n\ndata: b\n\n", "x".repeat(64));
        let mut translator = SseTranslator::new(Recorder::default(), 32);
        translator.feed(stream.as_bytes());
        translator.finish();
        assert_eq!(translator.inner().seen, ["a"]);
        assert_eq!(translator.inner().ended.as_deref(), Some("oversized 32"));
    }

    #[test]
    fn errors_name_their_field_first() {
        let error =
            TranslateError { kind: TranslateErrorKind::Unsupported, param: Some("n".into()), message: "no".into() };
        assert_eq!(error.to_string(), "n: no");
    }
}
