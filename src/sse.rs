//! An incremental Server-Sent Events framer, exact to the WHATWG "event stream" parsing rules:
//! lines end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next
//! are one line end); `data:` lines of one event are joined with LF; `:` starts a comment; one
//! space after the colon is dropped; a field without a colon has an empty value; a blank line
//! ends an event, and an event with no data is not dispatched; a leading UTF-8 BOM is ignored.
//!
//! Chunks may split the stream anywhere. The framer only observes: it reports each event with
//! its byte range in the whole stream so that a caller can pass, hold or drop exact bytes.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, empty when absent (the spec's default type is "message").
    pub event: String,
    /// The `data:` lines joined with LF.
    pub data: Vec<u8>,
    /// Stream offset of the event's first byte (after the previous event's blank line).
    pub start: u64,
    /// Stream offset just after the blank line that ended it.
    pub end: u64,
}

/// Why part of a stream was not dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseIssue {
    /// An event grew past the size cap; its bytes are skipped up to the next blank line.
    /// `start`: the stream offset where that event began.
    EventTooLarge { start: u64 },
}

#[derive(Debug, Clone)]
pub struct SseFramer {
    max_event_bytes: usize,
    /// Bytes consumed so far, i.e. the stream offset of the next input byte.
    offset: u64,
    at_stream_start: bool,
    bom_probe: Vec<u8>,
    /// The previous chunk ended with CR: an LF opening this one belongs to that line end.
    after_cr: bool,
    line: Vec<u8>,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    event_start: u64,
    /// Bytes of the event being built, to enforce the cap.
    event_bytes: usize,
    skipping_oversized: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseFramer {
    pub fn new(max_event_bytes: usize) -> Self {
        SseFramer {
            max_event_bytes,
            offset: 0,
            at_stream_start: true,
            bom_probe: Vec::new(),
            after_cr: false,
            line: Vec::new(),
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
            event_start: 0,
            event_bytes: 0,
            skipping_oversized: false,
        }
    }

    /// Stream offset where the event being built (if any) started: everything before it belongs
    /// to events already reported.
    pub fn pending_start(&self) -> u64 {
        self.event_start
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True while bytes of an event that has not ended yet are pending.
    pub fn has_partial_event(&self) -> bool {
        self.event_start < self.offset
    }

    /// Feeds the next chunk; complete events are appended to `events`, problems to `issues`.
    pub fn feed(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>, issues: &mut Vec<SseIssue>) {
        if !self.at_stream_start {
            return self.scan(chunk, events, issues);
        }
        // The BOM may itself be split across chunks: hold up to three bytes until it is decided.
        let wanted = BOM.len() - self.bom_probe.len();
        let (head, rest) = chunk.split_at(wanted.min(chunk.len()));
        self.bom_probe.extend_from_slice(head);
        if self.bom_probe.len() < BOM.len() && BOM.starts_with(&self.bom_probe) {
            return;
        }
        self.at_stream_start = false;
        let probe = std::mem::take(&mut self.bom_probe);
        if probe == BOM {
            self.offset = BOM.len() as u64;
            self.event_start = self.offset;
        } else {
            self.scan(&probe, events, issues);
        }
        self.scan(rest, events, issues);
    }

    fn scan(&mut self, mut bytes: &[u8], events: &mut Vec<SseEvent>, issues: &mut Vec<SseIssue>) {
        if self.after_cr && !bytes.is_empty() {
            // The line ended with the CR that closed the previous chunk; an LF here is part of
            // that line end. The line was held back until now so byte ranges do not depend on
            // where chunks split.
            self.after_cr = false;
            if let Some((&b'\n', tail)) = bytes.split_first() {
                self.offset += 1;
                self.note_event_bytes(1, issues);
                bytes = tail;
            }
            self.end_line(events);
        }
        while !bytes.is_empty() {
            let Some(at) = memchr::memchr2(b'\n', b'\r', bytes) else {
                self.push_line_bytes(bytes, issues);
                self.offset += bytes.len() as u64;
                return;
            };
            let (content, tail) = bytes.split_at(at);
            self.push_line_bytes(content, issues);
            let (ending, rest) = match tail {
                [b'\r', b'\n', rest @ ..] => (2, rest),
                [b'\r'] => (1, &[][..]),
                [_, rest @ ..] => (1, rest),
                [] => (0, &[][..]),
            };
            self.offset += (content.len() + ending) as u64;
            self.note_event_bytes(ending, issues);
            if tail == b"\r" {
                self.after_cr = true;
                return;
            }
            self.end_line(events);
            bytes = rest;
        }
    }

    /// End of stream: completes a line whose CR was the very last byte. An event that never
    /// got its blank line is not dispatched (the stream was cut); see `has_partial_event`.
    pub fn finish(&mut self, events: &mut Vec<SseEvent>) {
        if self.at_stream_start {
            // The stream ended inside what could have been a BOM: those bytes were content.
            self.at_stream_start = false;
            let probe = std::mem::take(&mut self.bom_probe);
            self.scan(&probe, events, &mut Vec::new());
        }
        if std::mem::take(&mut self.after_cr) {
            self.end_line(events);
        }
    }

    fn note_event_bytes(&mut self, count: usize, issues: &mut Vec<SseIssue>) {
        self.event_bytes = self.event_bytes.saturating_add(count);
        if !self.skipping_oversized && self.event_bytes > self.max_event_bytes {
            self.skipping_oversized = true;
            self.line.clear();
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            issues.push(SseIssue::EventTooLarge { start: self.event_start });
        }
    }

    fn push_line_bytes(&mut self, bytes: &[u8], issues: &mut Vec<SseIssue>) {
        self.note_event_bytes(bytes.len(), issues);
        if !self.skipping_oversized {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if self.skipping_oversized {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // comment
            Some(colon) => {
                let (field, rest) = line.split_at(colon);
                let value = rest.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line.as_slice(), &[][..]),
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // `id` and `retry` steer browser reconnection; a proxy has no use for them.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let oversized = std::mem::replace(&mut self.skipping_oversized, false);
        if self.has_data && !oversized {
            self.data.pop(); // the LF after the last data line
            events.push(SseEvent {
                event: String::from_utf8_lossy(&self.event).into_owned(),
                data: std::mem::take(&mut self.data),
                start: self.event_start,
                end: self.offset,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        self.event_bytes = 0;
        self.event_start = self.offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, Vec<SseIssue>) {
        let mut framer = SseFramer::new(1 << 20);
        let (mut events, mut issues) = (Vec::new(), Vec::new());
        for chunk in chunks {
            framer.feed(chunk, &mut events, &mut issues);
        }
        framer.finish(&mut events);
        (events, issues)
    }

    fn frame(stream: &[u8]) -> Vec<SseEvent> {
        frame_chunks(&[stream]).0
    }

    fn datas(events: &[SseEvent]) -> Vec<String> {
        events.iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect()
    }

    #[test]
    fn lf_crlf_and_cr_line_endings_are_equivalent() {
        for stream in [&b"data: a\n\ndata: b\n\n"[..], b"data: a\r\n\r\ndata: b\r\n\r\n", b"data: a\r\rdata: b\r\r"] {
            assert_eq!(datas(&frame(stream)), ["a", "b"], "{stream:?}");
        }
    }

    #[test]
    fn multi_line_data_is_joined_with_lf() {
        assert_eq!(datas(&frame(b"data: one\ndata:two\ndata\n\n")), ["one\ntwo\n"]);
    }

    #[test]
    fn comments_ids_and_retry_are_ignored_and_event_names_kept() {
        let events = frame(b": keep-alive\nid: 7\nretry: 100\nevent: message_start\ndata: {}\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "message_start");
        assert_eq!(events[0].data, b"{}");
    }

    #[test]
    fn only_one_space_after_the_colon_is_dropped() {
        assert_eq!(datas(&frame(b"data:  two spaces\n\n")), [" two spaces"]);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert!(frame(b"event: ping\n\n: comment\n\n").is_empty());
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        let mut framer = SseFramer::new(1024);
        let (mut events, mut issues) = (Vec::new(), Vec::new());
        framer.feed(b"data: done\n\ndata: cut", &mut events, &mut issues);
        assert_eq!(datas(&events), ["done"]);
        assert!(framer.has_partial_event());
        assert_eq!(framer.pending_start(), 12);
    }

    #[test]
    fn byte_ranges_cover_each_event_exactly() {
        let stream = b"data: a\n\nevent: x\r\ndata: b\r\n\r\n";
        let events = frame(stream);
        assert_eq!((events[0].start, events[0].end), (0, 9));
        assert_eq!((events[1].start, events[1].end), (9, stream.len() as u64));
    }

    #[test]
    fn a_leading_bom_is_skipped_even_when_split() {
        let stream = b"\xEF\xBB\xBFdata: a\n\n";
        for at in 0..stream.len() {
            let (events, _) = frame_chunks(&[&stream[..at], &stream[at..]]);
            assert_eq!(datas(&events), ["a"], "split at {at}");
            assert_eq!(events[0].start, 3);
        }
    }

    #[test]
    fn a_stream_ending_inside_a_bom_prefix_counts_its_bytes() {
        let mut framer = SseFramer::new(1024);
        let (mut events, mut issues) = (Vec::new(), Vec::new());
        framer.feed(b"\xEF\xBB", &mut events, &mut issues);
        framer.finish(&mut events);
        assert_eq!(framer.offset(), 2);
        assert!(events.is_empty() && framer.has_partial_event());
    }

    #[test]
    fn cr_then_lf_split_across_chunks_is_one_line_end() {
        let (events, _) = frame_chunks(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(datas(&events), ["a\nb"]);
    }

    #[test]
    fn oversized_events_are_skipped_and_reported() {
        let mut framer = SseFramer::new(16);
        let (mut events, mut issues) = (Vec::new(), Vec::new());
        framer.feed(b"data: this event is far too long\n\ndata: ok\n\n", &mut events, &mut issues);
        assert_eq!(datas(&events), ["ok"]);
        assert_eq!(issues, [SseIssue::EventTooLarge { start: 0 }]);
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let stream: &[u8] = b"\xEF\xBB\xBFevent: a\r\ndata: 1\r\n\r\n: c\rdata: 2\rdata: 3\r\rdata: 4\n\n";
        let whole = frame(stream);
        assert_eq!(whole.len(), 3);
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let (events, _) = frame_chunks(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(events, whole, "split at {i} and {j}");
            }
        }
    }
}
