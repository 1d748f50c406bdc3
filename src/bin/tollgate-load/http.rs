//! The client side of HTTP/1.1, as much as the benchmark needs: one request written in one
//! go, a response read with Content-Length or chunked framing, SSE events timed as they land.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Where requests go: `http://host:port/path`.
pub struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("only http:// URLs: {url}"))?;
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| format!("the URL needs a port: {url}"))?;
        let port = port.parse().map_err(|_| format!("bad port in {url}"))?;
        Ok(Target { host: host.to_string(), port, path })
    }

    /// The whole request, built once and sent as is every time: a POST of `body`, or a GET.
    pub fn request(&self, headers: &[String], body: Option<&[u8]>) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}:{}\r\n",
            if body.is_some() { "POST" } else { "GET" },
            self.path,
            self.host,
            self.port
        );
        if let Some(body) = body {
            head.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
        }
        for header in headers {
            head.push_str(header.trim());
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        bytes
    }
}

/// What one request/response measured.
pub struct Exchange {
    pub status: u16,
    /// Lowercase response header names.
    pub header_names: Vec<String>,
    /// From the first byte written to the last byte of the response read.
    pub latency_ns: u64,
    /// For SSE: when the first event with a non-empty `content` arrived.
    pub first_token_ns: Option<u64>,
    /// For SSE: when each event was complete, from the start of the request.
    pub event_times_ns: Vec<u64>,
    /// The server will close the connection after this response.
    pub close: bool,
}

pub struct Connection {
    stream: TcpStream,
    /// Allocated and zeroed once; `pos..end` holds read but unconsumed bytes.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

const READ_SIZE: usize = 64 * 1024;

impl Connection {
    pub fn open(target: &Target, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Connection { stream, buf: vec![0; READ_SIZE], pos: 0, end: 0 })
    }

    pub fn exchange(&mut self, request: &[u8]) -> Result<Exchange, String> {
        let started = Instant::now();
        self.stream.write_all(request).map_err(|e| format!("write: {}", e.kind()))?;
        let head_end = self.read_until(b"\r\n\r\n")?;
        let head = self.buf.get(self.pos..head_end).unwrap_or_default();
        let head = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {status_line:.60}"))?;
        let mut header_names = Vec::new();
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        let mut sse = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            match name.as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "content-type" => sse = value.to_ascii_lowercase().starts_with("text/event-stream"),
                _ => {}
            }
            header_names.push(name);
        }
        self.pos = head_end + 4;
        let mut events = EventClock::new(started, sse);
        if chunked {
            self.read_chunked(&mut events)?;
        } else if let Some(length) = length {
            self.read_exact_body(length, &mut events)?;
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            // Neither framing: the body runs to the end of the connection.
            self.read_to_close(&mut events)?;
            close = true;
        }
        let latency_ns = nanos(started);
        self.compact();
        Ok(Exchange {
            status,
            header_names,
            latency_ns,
            first_token_ns: events.first_token_ns,
            event_times_ns: events.times_ns,
            close,
        })
    }

    /// Reads more bytes; an orderly close in the middle of a response is an error.
    fn fill(&mut self) -> Result<(), String> {
        if self.end == self.buf.len() {
            if self.pos == 0 {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                self.compact();
            }
        }
        match self.stream.read(self.buf.get_mut(self.end..).unwrap_or_default()) {
            Ok(0) => Err("connection closed mid-response".into()),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => Err(format!("read: {}", e.kind())),
        }
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// Index in `buf` where `needle` starts, reading until it is there.
    fn read_until(&mut self, needle: &[u8]) -> Result<usize, String> {
        let mut searched = 0;
        loop {
            let window = self.available();
            if let Some(at) = find(window.get(searched..).unwrap_or_default(), needle) {
                return Ok(self.pos + searched + at);
            }
            searched = window.len().saturating_sub(needle.len() - 1);
            self.fill()?;
        }
    }

    fn read_exact_body(&mut self, length: usize, events: &mut EventClock) -> Result<(), String> {
        let mut remaining = length;
        loop {
            let take = remaining.min(self.available().len());
            events.feed(self.buf.get(self.pos..self.pos + take).unwrap_or_default());
            self.pos += take;
            remaining -= take;
            if remaining == 0 {
                return Ok(());
            }
            self.fill()?;
        }
    }

    fn read_chunked(&mut self, events: &mut EventClock) -> Result<(), String> {
        loop {
            let line_end = self.read_until(b"\r\n")?;
            let line = self.buf.get(self.pos..line_end).unwrap_or_default();
            let size_text = std::str::from_utf8(line).unwrap_or_default();
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size: {size_text:.20}"))?;
            self.pos = line_end + 2;
            if size == 0 {
                // Trailers (usually none), then the empty line.
                loop {
                    let end = self.read_until(b"\r\n")?;
                    let empty = end == self.pos;
                    self.pos = end + 2;
                    if empty {
                        return Ok(());
                    }
                }
            }
            self.read_exact_body(size, events)?;
            let crlf = self.read_until(b"\r\n")?;
            self.pos = crlf + 2;
        }
    }

    fn read_to_close(&mut self, events: &mut EventClock) -> Result<(), String> {
        loop {
            events.feed(self.available());
            self.pos = self.end;
            if self.fill().is_err() {
                return Ok(());
            }
        }
    }

    /// Moves unconsumed bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Splits an event stream into events (a blank line ends one) and notes when each ended.
struct EventClock {
    started: Instant,
    enabled: bool,
    event: Vec<u8>,
    times_ns: Vec<u64>,
    first_token_ns: Option<u64>,
}

impl EventClock {
    fn new(started: Instant, enabled: bool) -> Self {
        EventClock { started, enabled, event: Vec::new(), times_ns: Vec::new(), first_token_ns: None }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if !self.enabled {
            return;
        }
        for &byte in bytes {
            if byte == b'\r' {
                continue;
            }
            if byte == b'\n' && self.event.last() == Some(&b'\n') {
                let now = nanos(self.started);
                self.times_ns.push(now);
                if self.first_token_ns.is_none() && has_content(&self.event) {
                    self.first_token_ns = Some(now);
                }
                self.event.clear();
            } else {
                self.event.push(byte);
            }
        }
    }
}

/// True when the event carries `"content": "<at least one character>"`.
fn has_content(event: &[u8]) -> bool {
    let key = b"\"content\"";
    let mut from = 0;
    while let Some(at) = find(event.get(from..).unwrap_or_default(), key) {
        from += at + key.len();
        let rest = event.get(from..).unwrap_or_default();
        let mut after = rest.iter().skip_while(|b| b.is_ascii_whitespace());
        if after.next() != Some(&b':') {
            continue;
        }
        let mut value = after.skip_while(|b| b.is_ascii_whitespace());
        if value.next() == Some(&b'"') && value.next().is_some_and(|b| *b != b'"') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_detection_skips_empty_and_null_deltas() {
        assert!(!has_content(br#"data: {"delta":{"role":"assistant","content":""}}"#));
        assert!(!has_content(br#"data: {"delta":{"content":null}}"#));
        assert!(has_content(br#"data: {"delta":{"content":"Hi"}}"#));
        assert!(has_content(br#"data: {"delta": {"content": " there"}}"#));
    }

    #[test]
    fn events_end_at_blank_lines() {
        let mut clock = EventClock::new(Instant::now(), true);
        clock.feed(b"data: {\"content\":\"\"}\n\ndata: {\"content\":\"a\"}\r\n\r\ndata: [DO");
        clock.feed(b"NE]\n\n");
        assert_eq!(clock.times_ns.len(), 3);
        assert!(clock.first_token_ns.is_some());
    }

    #[test]
    fn urls_need_a_port() {
        assert!(Target::parse("http://127.0.0.1:8080/v1/chat/completions").is_ok());
        assert!(Target::parse("http://127.0.0.1/v1").is_err());
        assert!(Target::parse("https://127.0.0.1:1/").is_err());
    }
}
