//! Watches a streamed (SSE) response as it flows: model, usage and generated text from each
//! event, and whether the provider's final event arrived. Bytes pass on as they come; the only
//! edit it can make is dropping OpenAI's extra usage-only chunk when Tollgate asked for it and
//! the client did not. Only while that edit is on are the bytes of a not-yet-complete event held
//! back (the event might be the one to drop); they are released the moment it completes.

use crate::dialect::Api;
use crate::sse::{SseEvent, SseFramer, SseIssue};
use crate::usage::TokenCounts;

/// Generated text kept for estimating output when the provider reports none. Enough for any
/// realistic completion; past it the estimate scales by bytes.
const MAX_GENERATED_TEXT: usize = 1 << 20;

/// What to do with the chunk just fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkEdit {
    Unchanged,
    Replace(Vec<u8>),
}

#[derive(Debug)]
pub struct StreamMeter {
    api: Api,
    framer: SseFramer,
    strip_usage_only: bool,
    tokens: TokenCounts,
    model: Option<String>,
    generated: String,
    generated_bytes: u64,
    terminal_seen: bool,
    oversized_events: u32,
    /// Stream bytes not yet released to the client (only while editing), from `held_start`.
    held: Vec<u8>,
    held_start: u64,
    events: Vec<SseEvent>,
    issues: Vec<SseIssue>,
}

impl StreamMeter {
    pub fn new(api: Api, strip_usage_only: bool, max_event_bytes: usize) -> Self {
        StreamMeter {
            api,
            framer: SseFramer::new(max_event_bytes),
            strip_usage_only,
            tokens: TokenCounts::default(),
            model: None,
            generated: String::new(),
            generated_bytes: 0,
            terminal_seen: false,
            oversized_events: 0,
            held: Vec::new(),
            held_start: 0,
            events: Vec::new(),
            issues: Vec::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> ChunkEdit {
        self.events.clear();
        self.issues.clear();
        self.framer.feed(chunk, &mut self.events, &mut self.issues);
        let dropped = self.observe();
        if !self.strip_usage_only {
            return ChunkEdit::Unchanged;
        }
        self.held.extend_from_slice(chunk);
        let release_until = self.framer.pending_start();
        let released = self.release(release_until, &dropped);
        // Unchanged only if exactly this chunk goes out: bytes held from an earlier chunk and
        // released now may add up to the same length and still be other bytes.
        if released == chunk {
            ChunkEdit::Unchanged
        } else {
            ChunkEdit::Replace(released)
        }
    }

    /// End of the stream: whatever is still held goes to the client as it is.
    pub fn finish(&mut self) -> ChunkEdit {
        self.events.clear();
        self.framer.finish(&mut self.events);
        let _ = self.observe();
        if self.held.is_empty() {
            return ChunkEdit::Unchanged;
        }
        ChunkEdit::Replace(std::mem::take(&mut self.held))
    }

    /// Reads the new events; returns the byte ranges of usage-only chunks to drop (if editing).
    fn observe(&mut self) -> Vec<(u64, u64)> {
        self.oversized_events += self.issues.len() as u32;
        let mut dropped = Vec::new();
        for event in &self.events {
            let facts = self.api.read_event(event);
            if self.strip_usage_only && facts.usage_only {
                dropped.push((event.start, event.end));
            }
            if self.model.is_none() {
                self.model = facts.model;
            }
            self.tokens.merge(facts.tokens);
            self.terminal_seen |= facts.terminal;
            self.generated_bytes += facts.text.len() as u64;
            if self.generated.len() + facts.text.len() <= MAX_GENERATED_TEXT {
                self.generated.push_str(&facts.text);
            }
        }
        dropped
    }

    /// Releases held bytes before `until`, minus the dropped event ranges.
    fn release(&mut self, until: u64, dropped: &[(u64, u64)]) -> Vec<u8> {
        let index = |offset: u64| usize::try_from(offset.saturating_sub(self.held_start)).unwrap_or(usize::MAX);
        let until_index = index(until).min(self.held.len());
        let mut out = Vec::with_capacity(until_index);
        let mut from = 0;
        for &(start, end) in dropped {
            out.extend_from_slice(self.held.get(from..index(start).min(until_index)).unwrap_or_default());
            from = index(end).min(until_index);
        }
        out.extend_from_slice(self.held.get(from..until_index).unwrap_or_default());
        self.held.drain(..until_index);
        self.held_start = until;
        out
    }

    pub fn tokens(&self) -> TokenCounts {
        self.tokens
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Generated text seen so far (at most 1 MiB) and the total bytes of it.
    pub fn generated(&self) -> (&str, u64) {
        (&self.generated, self.generated_bytes)
    }

    /// The provider's final event arrived: the stream was not cut short.
    pub fn completed(&self) -> bool {
        self.terminal_seen
    }

    pub fn oversized_events(&self) -> u32 {
        self.oversized_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Count;

    const STREAM: &[u8] =
        b"data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n\
data: [DONE]\n\n";

    fn run(meter: &mut StreamMeter, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            match meter.feed(chunk) {
                ChunkEdit::Unchanged => out.extend_from_slice(chunk),
                ChunkEdit::Replace(bytes) => out.extend_from_slice(&bytes),
            }
        }
        if let ChunkEdit::Replace(bytes) = meter.finish() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn without_usage_chunk() -> Vec<u8> {
        let text = String::from_utf8(STREAM.to_vec()).unwrap();
        let cut_from = text.find("data: {\"model\":\"gpt-4o\",\"choices\":[],").unwrap();
        let cut_to = text.find("data: [DONE]").unwrap();
        format!("{}{}", &text[..cut_from], &text[cut_to..]).into_bytes()
    }

    #[test]
    fn observing_never_changes_a_byte() {
        let mut meter = StreamMeter::new(Api::OpenAiChat, false, 1 << 16);
        assert_eq!(run(&mut meter, &[&STREAM[..10], &STREAM[10..]]), STREAM);
        assert_eq!(meter.tokens().output, Some(Count::provider(1)));
        assert_eq!(meter.model(), Some("gpt-4o"));
        assert_eq!(meter.generated(), ("Hi", 2));
        assert!(meter.completed());
    }

    #[test]
    fn the_usage_only_chunk_is_dropped_at_every_split() {
        let expected = without_usage_chunk();
        for at in 0..=STREAM.len() {
            let mut meter = StreamMeter::new(Api::OpenAiChat, true, 1 << 16);
            let out = run(&mut meter, &[&STREAM[..at], &STREAM[at..]]);
            assert_eq!(out, expected, "split at {at}");
            assert_eq!(meter.tokens().input, Some(Count::provider(5)), "usage still counted");
        }
    }

    #[test]
    fn only_an_incomplete_event_is_held_while_editing() {
        let mut meter = StreamMeter::new(Api::OpenAiChat, true, 1 << 16);
        let first_event_end = STREAM.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        let edit = meter.feed(&STREAM[..first_event_end + 5]);
        assert_eq!(edit, ChunkEdit::Replace(STREAM[..first_event_end].to_vec()));
    }

    #[test]
    fn held_bytes_released_with_a_chunk_of_the_same_length_are_not_mistaken_for_it() {
        let mut meter = StreamMeter::new(Api::OpenAiChat, true, 1 << 16);
        let event = b"data: {\"choices\":[{}]}\n\n";
        // The event's last byte comes with as many bytes of the next event as were held.
        let (first, rest) = event.split_at(event.len() - 1);
        assert_eq!(meter.feed(first), ChunkEdit::Replace(Vec::new()));
        let mut second = rest.to_vec();
        second.extend_from_slice(b"data: ");
        second.resize(event.len(), b'x');
        assert_eq!(second.len(), event.len());
        let out = run(&mut meter, &[&second]);
        assert_eq!(out, [&event[..], &second[1..]].concat());
    }

    #[test]
    fn a_cut_stream_is_not_completed_and_its_tail_is_released() {
        let cut = &STREAM[..STREAM.len() - 20];
        let mut meter = StreamMeter::new(Api::OpenAiChat, true, 1 << 16);
        let out = run(&mut meter, &[cut]);
        assert!(!meter.completed());
        // The cut falls inside the usage chunk: incomplete, so not recognised, so relayed as is.
        assert_eq!(out, cut);
    }
}
