//! HTTP/1.1 request reading: head, then a Content-Length or chunked body.
//!
//! Parsing borrows from per-connection buffers that are reused across
//! keep-alive requests, so a request costs no allocation beyond the header
//! index. Anything that is not clean HTTP/1.x is rejected: the caller answers
//! 400 and closes, since the byte stream can no longer be trusted.

use std::io::{self, BufRead, Read};

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between requests: not an error.
    Closed,
    /// The socket failed; there is nobody left to answer.
    Io,
    /// Not valid HTTP/1.x; the message is sent back in the 400 response.
    Malformed(&'static str),
    /// Head or body over our limits (431 / 413).
    TooLarge(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(usize),
    Chunked,
}

#[derive(Debug)]
pub struct Head<'a> {
    pub method: &'a str,
    /// The request target as sent, query included.
    pub target: &'a str,
    /// The target without its query string.
    pub path: &'a str,
    pub http10: bool,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl Head<'_> {
    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| *value)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 is always
    /// closed after one response, which keeps framing simple (no chunking).
    pub fn keep_alive(&self) -> bool {
        !self.http10 && !self.has_token("connection", "close")
    }

    pub fn expects_continue(&self) -> bool {
        self.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    pub fn framing(&self) -> Result<BodyFraming, ReadError> {
        let length = self.header("content-length");
        if let Some(coding) = self.header("transfer-encoding") {
            // Both headers at once is a request-smuggling shape: refuse it.
            if length.is_some() {
                return Err(ReadError::Malformed("both Content-Length and Transfer-Encoding"));
            }
            if !coding.trim().eq_ignore_ascii_case("chunked") {
                return Err(ReadError::Malformed("unsupported Transfer-Encoding"));
            }
            return Ok(BodyFraming::Chunked);
        }
        let Some(length) = length else {
            return Ok(BodyFraming::None);
        };
        let conflicting = self
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case("content-length"))
            .any(|(_, value)| *value != length);
        if conflicting {
            return Err(ReadError::Malformed("conflicting Content-Length headers"));
        }
        let length = parse_decimal(length).ok_or(ReadError::Malformed("invalid Content-Length"))?;
        if length > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge(413, "request body too large"));
        }
        Ok(if length == 0 { BodyFraming::None } else { BodyFraming::Length(length) })
    }
}

fn parse_decimal(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads one line (up to and including `\n`) into `buf`, failing once the
/// line would push `buf` past `limit` bytes. Returns the bytes read.
fn read_line_limited(stream: &mut impl BufRead, buf: &mut Vec<u8>, limit: usize) -> Result<usize, ReadError> {
    let start = buf.len();
    loop {
        let available = stream.fill_buf()?;
        if available.is_empty() {
            return Ok(buf.len().saturating_sub(start));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (available.get(..=end).unwrap_or(available), true),
            None => (available, false),
        };
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge(431, "request head too large"));
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len();
        stream.consume(used);
        if done {
            return Ok(buf.len().saturating_sub(start));
        }
    }
}

fn is_blank_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// Reads the request head (request line and headers, through the blank line)
/// into `buf`. Blank lines before the request line are skipped, as RFC 9112
/// recommends.
pub fn read_head(stream: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    loop {
        let before = buf.len();
        let read = read_line_limited(stream, buf, MAX_HEAD_BYTES)?;
        if read == 0 {
            return Err(if before == 0 {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside the request head")
            });
        }
        let line = buf.get(before..).unwrap_or_default();
        if !line.ends_with(b"\n") {
            return Err(ReadError::Malformed("connection closed inside the request head"));
        }
        if is_blank_line(line) {
            if before == 0 {
                buf.clear();
                continue;
            }
            return Ok(());
        }
    }
}

/// Parses a head read by [`read_head`].
pub fn parse_head(raw: &[u8]) -> Result<Head<'_>, ReadError> {
    let text = std::str::from_utf8(raw).map_err(|_| ReadError::Malformed("request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().ok_or(ReadError::Malformed("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Malformed("request target must be an absolute path"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Malformed("unsupported HTTP version")),
    };
    let mut headers = Vec::with_capacity(16);
    for line in lines.take_while(|line| !line.is_empty()) {
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::TooLarge(431, "too many headers"));
        }
        headers.push(parse_header_line(line)?);
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok(Head { method, target, path, http10, headers })
}

fn parse_header_line(line: &str) -> Result<(&str, &str), ReadError> {
    let (name, value) = line.split_once(':').ok_or(ReadError::Malformed("header line without colon"))?;
    let valid_name =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'(' && b != b')' && b != b'"');
    if !valid_name {
        // Also catches obsolete line folding (a line starting with whitespace).
        return Err(ReadError::Malformed("invalid header name"));
    }
    Ok((name, value.trim_matches([' ', '\t'])))
}

/// Reads the body described by `framing` into `buf` (which should be empty).
pub fn read_body(stream: &mut impl BufRead, framing: BodyFraming, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    match framing {
        BodyFraming::None => Ok(()),
        BodyFraming::Length(length) => read_exactly(stream, length, buf),
        BodyFraming::Chunked => read_chunked(stream, buf),
    }
}

fn read_exactly(stream: &mut impl BufRead, length: usize, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    let wanted = u64::try_from(length).unwrap_or(u64::MAX);
    buf.reserve(length);
    let read = stream.take(wanted).read_to_end(buf)?;
    if read != length {
        return Err(ReadError::Malformed("connection closed inside the request body"));
    }
    Ok(())
}

fn read_chunked(stream: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    let mut line = Vec::with_capacity(32);
    loop {
        line.clear();
        read_line_limited(stream, &mut line, 1024).map_err(too_long_is_malformed)?;
        let text = std::str::from_utf8(&line).map_err(|_| ReadError::Malformed("bad chunk size"))?;
        let size_text = text.trim_end_matches(['\r', '\n']);
        // Chunk extensions (";name=value") are allowed and ignored.
        let size_text = size_text.split_once(';').map_or(size_text, |(size, _)| size).trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Malformed("bad chunk size"))?;
        if size == 0 {
            return skip_trailers(stream);
        }
        if buf.len().saturating_add(size) > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge(413, "request body too large"));
        }
        read_exactly(stream, size, buf)?;
        line.clear();
        read_line_limited(stream, &mut line, 2).map_err(too_long_is_malformed)?;
        if !is_blank_line(&line) {
            return Err(ReadError::Malformed("chunk data not followed by CRLF"));
        }
    }
}

/// Inside a chunked body an over-long line is bad framing, not a big head.
fn too_long_is_malformed(error: ReadError) -> ReadError {
    match error {
        ReadError::TooLarge(..) => ReadError::Malformed("bad chunked framing"),
        other => other,
    }
}

fn skip_trailers(stream: &mut impl BufRead) -> Result<(), ReadError> {
    let mut line = Vec::with_capacity(32);
    loop {
        line.clear();
        if read_line_limited(stream, &mut line, MAX_HEAD_BYTES)? == 0 {
            return Err(ReadError::Malformed("connection closed inside chunked trailers"));
        }
        if is_blank_line(&line) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_request(raw: &[u8]) -> Result<(String, Vec<u8>), ReadError> {
        let mut stream = Cursor::new(raw.to_vec());
        let mut head_buf = Vec::new();
        read_head(&mut stream, &mut head_buf)?;
        let head = parse_head(&head_buf)?;
        let mut body = Vec::new();
        read_body(&mut stream, head.framing()?, &mut body)?;
        Ok((head.path.to_owned(), body))
    }

    #[test]
    fn content_length_bodies_are_read_exactly() {
        let raw = b"POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let (path, body) = read_request(raw).unwrap();
        assert_eq!(path, "/v1/x");
        assert_eq!(body, b"hello");
    }

    #[test]
    fn chunked_bodies_are_reassembled() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(read_request(raw).unwrap().1, b"hello");
    }

    #[test]
    fn malformed_requests_are_rejected() {
        let cases: [&[u8]; 6] = [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ];
        for raw in cases {
            assert!(matches!(read_request(raw), Err(ReadError::Malformed(_))), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_clean_close_between_requests_is_not_an_error() {
        assert!(matches!(read_request(b""), Err(ReadError::Closed)));
        assert!(matches!(read_request(b"GET / HT"), Err(ReadError::Malformed(_))));
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let head = parse_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap();
        assert!(!head.keep_alive());
        let head = parse_head(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(head.keep_alive());
        let head = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!head.keep_alive());
    }
}
