//! HTTP/1.1 response writing.
//!
//! A complete response goes out in ONE write (head and body together): with
//! two writes, Nagle plus the peer's delayed ACK can stall the second by
//! 40 ms. Event streams are sent as one HTTP chunk per SSE event, each its own
//! write, so a proxy sees exactly the event boundaries a real API produces.

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

pub type Headers = Vec<(&'static str, Cow<'static, str>)>;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response { status, content_type, headers: Vec::new(), body }
    }

    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response::new(status, "application/json", body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A `200 text/event-stream` response: the SSE events, each already framed
/// (`data: …\n\n` or `event: …\ndata: …\n\n`).
pub struct EventStream {
    pub headers: Headers,
    pub events: Vec<Vec<u8>>,
}

pub enum Reply {
    Full(Response),
    Stream(EventStream),
}

/// How to deliver a reply on this connection.
pub struct Delivery<'a> {
    /// Echoed as `x-mock-name` on every response.
    pub mock_name: Option<&'a str>,
    pub keep_alive: bool,
    /// HTTP/1.0 peers cannot take chunked encoding: stream raw, then close.
    pub chunked: bool,
    pub first_byte_delay: Option<Duration>,
    pub chunk_delay: Option<Duration>,
    pub reset_after_events: Option<usize>,
    /// Cut inside the next event (its first half goes out before the reset).
    pub reset_mid_event: bool,
}

/// What happened, for the connection loop and the request log.
pub struct Delivered {
    pub status: u16,
    pub events: Option<usize>,
    /// The connection must not be reused (closed, reset, or failed).
    pub close: bool,
}

pub fn deliver(stream: &TcpStream, reply: &Reply, delivery: &Delivery<'_>) -> io::Result<Delivered> {
    if let Some(delay) = delivery.first_byte_delay {
        std::thread::sleep(delay);
    }
    match reply {
        Reply::Full(response) => deliver_full(stream, response, delivery),
        Reply::Stream(events) => deliver_stream(stream, events, delivery),
    }
}

fn deliver_full(mut stream: &TcpStream, response: &Response, delivery: &Delivery<'_>) -> io::Result<Delivered> {
    let mut out = Vec::with_capacity(256 + response.body.len());
    let length = Framing::Length(response.body.len());
    write_head(&mut out, response.status, response.content_type, &response.headers, length, delivery);
    if delivery.reset_after_events.is_some() {
        // "Reset mid-body": the head and half the body, then RST.
        let half = response.body.len() / 2;
        out.extend_from_slice(response.body.get(..half).unwrap_or_default());
        stream.write_all(&out)?;
        reset(stream);
        return Ok(Delivered { status: response.status, events: None, close: true });
    }
    out.extend_from_slice(&response.body);
    stream.write_all(&out)?;
    Ok(Delivered { status: response.status, events: None, close: !delivery.keep_alive })
}

fn deliver_stream(mut stream: &TcpStream, reply: &EventStream, delivery: &Delivery<'_>) -> io::Result<Delivered> {
    let framing = if delivery.chunked { Framing::Chunked } else { Framing::UntilClose };
    let mut head = Vec::with_capacity(256);
    write_head(&mut head, 200, "text/event-stream; charset=utf-8", &reply.headers, framing, delivery);
    stream.write_all(&head)?;

    // Reset only when it cuts the stream short; N >= the event count means the
    // stream completes normally.
    let reset_at = delivery.reset_after_events.filter(|n| *n < reply.events.len());
    let mut frame = Vec::with_capacity(512);
    for (index, event) in reply.events.iter().enumerate() {
        if index > 0 {
            if let Some(delay) = delivery.chunk_delay {
                std::thread::sleep(delay);
            }
        }
        if reset_at == Some(index) {
            if delivery.reset_mid_event {
                frame.clear();
                let half = event.get(..event.len() / 2).unwrap_or_default();
                if delivery.chunked {
                    let _ = write!(frame, "{:x}\r\n", half.len());
                    frame.extend_from_slice(half);
                    frame.extend_from_slice(b"\r\n");
                } else {
                    frame.extend_from_slice(half);
                }
                stream.write_all(&frame)?;
            }
            reset(stream);
            return Ok(Delivered { status: 200, events: Some(index), close: true });
        }
        frame.clear();
        if delivery.chunked {
            // Writing to a Vec cannot fail.
            let _ = write!(frame, "{:x}\r\n", event.len());
            frame.extend_from_slice(event);
            frame.extend_from_slice(b"\r\n");
        } else {
            frame.extend_from_slice(event);
        }
        stream.write_all(&frame)?;
    }
    if delivery.chunked {
        stream.write_all(b"0\r\n\r\n")?;
    }
    let close = !delivery.keep_alive || !delivery.chunked;
    Ok(Delivered { status: 200, events: Some(reply.events.len()), close })
}

#[derive(Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    /// HTTP/1.0 streaming: the body ends when the connection does.
    UntilClose,
}

fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    headers: &Headers,
    framing: Framing,
    delivery: &Delivery<'_>,
) {
    // Writing to a Vec cannot fail, so the results are ignored throughout.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\n", reason_phrase(status));
    match framing {
        Framing::Length(length) => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::UntilClose => {}
    }
    let closing = !delivery.keep_alive || matches!(framing, Framing::UntilClose);
    if closing {
        out.extend_from_slice(b"connection: close\r\n");
    }
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(name) = delivery.mock_name {
        let _ = write!(out, "x-mock-name: {name}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

/// Aborts the connection so the peer sees a TCP RST rather than a clean FIN:
/// SO_LINGER with a zero timeout makes close() discard unsent data and reset.
/// The caller must drop its last handle to the socket right after.
fn reset(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    linger::set_zero_linger(stream);
    // Elsewhere the connection is merely closed: still an abrupt end mid-body.
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// `TcpStream::set_linger` is unstable, and the crate may not use `libc`, so
/// the one setsockopt call is declared by hand (Linux constants).
#[cfg(target_os = "linux")]
mod linger {
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_void};

    const SOL_SOCKET: c_int = 1;
    const SO_LINGER: c_int = 13;

    #[repr(C)]
    struct Linger {
        l_onoff: c_int,
        l_linger: c_int,
    }

    extern "C" {
        fn setsockopt(socket: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    }

    pub fn set_zero_linger(stream: &TcpStream) {
        let option = Linger { l_onoff: 1, l_linger: 0 };
        let len = u32::try_from(std::mem::size_of::<Linger>()).unwrap_or(8);
        // SAFETY: the fd is open for the lifetime of `stream`, and `option`
        // is a live, correctly laid out `struct linger` of `len` bytes.
        // Failure only means a FIN instead of an RST, so the result is ignored.
        let _ = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_LINGER, (&raw const option).cast(), len) };
    }
}
