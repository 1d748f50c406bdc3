//! Accept loop, per-connection keep-alive loop, routing and request log.
//!
//! One thread per connection: blocking std I/O is the simplest thing that
//! sustains benchmark rates on loopback, and streams with delays simply sleep.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::Config;
use crate::controls::Controls;
use crate::dialect::{self, ApiEndpoint};
use crate::http_request::{parse_head, read_body, read_head, BodyFraming, Head, ReadError};
use crate::http_response::{deliver, Delivered, Delivery, Reply, Response};
use crate::openai;

/// Deep enough for serde_json's 128-level recursion limit even in debug
/// builds; only the pages actually touched cost memory.
const CONNECTION_STACK_BYTES: usize = 1024 * 1024;

struct Shared {
    config: Config,
    /// The last non-`/_mock` request, raw, for `/_mock/last`. Kept raw so the
    /// hot path only copies bytes; it is parsed again when asked for.
    last_request: Mutex<Option<RecordedRequest>>,
}

struct RecordedRequest {
    raw_head: Vec<u8>,
    body: Vec<u8>,
}

pub fn serve(listener: TcpListener, config: Config) {
    let shared = Arc::new(Shared { config, last_request: Mutex::new(None) });
    for connection in listener.incoming() {
        let stream = match connection {
            Ok(stream) => stream,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                log_line(&shared.config, format_args!("accept failed: {error}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Small requests and SSE events must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let for_thread = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("tollgate-mock-conn".to_owned())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || handle_connection(stream, &for_thread));
        if let Err(error) = spawned {
            log_line(&shared.config, format_args!("cannot spawn a connection thread: {error}"));
        }
    }
}

fn handle_connection(stream: TcpStream, shared: &Shared) {
    // No read timeout: closing idle keep-alive connections races with a proxy
    // reusing them and shows up as spurious upstream resets in tests.
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut head_buf = Vec::with_capacity(1024);
    let mut body_buf = Vec::new();
    loop {
        head_buf.clear();
        body_buf.clear();
        if !serve_one_request(&mut reader, &mut head_buf, &mut body_buf, shared) {
            return;
        }
    }
}

/// Reads, answers and logs one request; false when the connection is done.
fn serve_one_request(
    reader: &mut BufReader<TcpStream>,
    head_buf: &mut Vec<u8>,
    body_buf: &mut Vec<u8>,
    shared: &Shared,
) -> bool {
    if let Err(error) = read_head(reader, head_buf) {
        reject(reader.get_ref(), error, &shared.config);
        return false;
    }
    let started = Instant::now();
    let head = match parse_head(head_buf).and_then(|head| head.framing().map(|framing| (head, framing))) {
        Ok(parsed) => parsed,
        Err(error) => {
            reject(reader.get_ref(), error, &shared.config);
            return false;
        }
    };
    let (head, framing) = head;
    if head.expects_continue() && framing != BodyFraming::None {
        let mut stream = reader.get_ref();
        if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return false;
        }
    }
    if let Err(error) = read_body(reader, framing, body_buf) {
        reject(reader.get_ref(), error, &shared.config);
        return false;
    }
    let (reply, controls) = route(&head, head_buf, body_buf, shared);
    let delivery = Delivery {
        mock_name: shared.config.name.as_deref(),
        keep_alive: head.keep_alive(),
        chunked: !head.http10,
        first_byte_delay: controls.first_byte_delay(),
        chunk_delay: controls.chunk_delay(),
        reset_after_events: controls.reset_after_events,
        reset_mid_event: controls.reset_mid_event,
    };
    let outcome = deliver(reader.get_ref(), &reply, &delivery);
    log_request(&shared.config, &head, &outcome, started);
    matches!(outcome, Ok(Delivered { close: false, .. }))
}

/// Answers an unreadable request (400, 413 or 431) and gives up on the
/// connection: after bad framing the byte stream cannot be trusted.
fn reject(stream: &TcpStream, error: ReadError, config: &Config) {
    let (status, message) = match error {
        ReadError::Closed | ReadError::Io => return,
        ReadError::Malformed(message) => (400, message),
        ReadError::TooLarge(status, message) => (status, message),
    };
    let response = openai::plain_error(status, message, None);
    let delivery = Delivery {
        mock_name: config.name.as_deref(),
        keep_alive: false,
        chunked: true,
        first_byte_delay: None,
        chunk_delay: None,
        reset_after_events: None,
        reset_mid_event: false,
    };
    let _ = deliver(stream, &Reply::Full(response), &delivery);
    log_line(config, format_args!("rejected a malformed request: {status} {message}"));
}

fn route(head: &Head<'_>, raw_head: &[u8], body: &[u8], shared: &Shared) -> (Reply, Controls) {
    let internal = head.path.starts_with("/_mock/");
    if !internal {
        let recorded = RecordedRequest { raw_head: raw_head.to_vec(), body: body.to_vec() };
        *shared.last_request.lock().unwrap_or_else(PoisonError::into_inner) = Some(recorded);
    }
    let endpoint = match (head.method, head.path) {
        ("POST", path) if path.ends_with("/chat/completions") => Some(ApiEndpoint::ChatCompletions),
        ("POST", path) if path.ends_with("/responses") => Some(ApiEndpoint::Responses),
        ("POST", path) if path.ends_with("/embeddings") => Some(ApiEndpoint::Embeddings),
        ("POST", path) if path.ends_with("/messages") => Some(ApiEndpoint::Messages),
        ("POST", path) if path.ends_with("/messages/count_tokens") => Some(ApiEndpoint::CountTokens),
        ("GET", path) if !internal && path.ends_with("/models") => Some(ApiEndpoint::Models),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return dialect::serve(endpoint, head, body, &shared.config);
    }
    let response = match (head.method, head.path) {
        ("GET", "/_mock/health") => Response::new(200, "text/plain", b"ok".to_vec()),
        ("GET", "/_mock/last") => last_request(shared),
        ("GET", "/_mock/usage") => Response::json(200, crate::tally::to_json()),
        ("DELETE", "/_mock/usage") => {
            crate::tally::reset();
            Response::json(200, crate::tally::to_json())
        }
        (method, _) => {
            let message = format!("Invalid URL ({method} {})", head.path);
            openai::plain_error(404, &message, None)
        }
    };
    (Reply::Full(response), Controls::default())
}

#[derive(Serialize)]
struct LastRequestView<'a> {
    method: &'a str,
    path: &'a str,
    /// Lowercase names; repeated headers joined with ", ".
    headers: BTreeMap<String, String>,
    body: String,
}

fn last_request(shared: &Shared) -> Response {
    let guard = shared.last_request.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(recorded) = guard.as_ref() else {
        return openai::plain_error(404, "no request has been received yet", None);
    };
    // It parsed when it arrived, so this only fails if memory is corrupt.
    let Ok(head) = parse_head(&recorded.raw_head) else {
        return openai::plain_error(500, "the recorded request no longer parses", None);
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &head.headers {
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| (*value).to_owned());
    }
    let view = LastRequestView {
        method: head.method,
        path: head.target,
        headers,
        body: String::from_utf8_lossy(&recorded.body).into_owned(),
    };
    Response::json(200, serde_json::to_vec(&view).unwrap_or_default())
}

fn log_request(config: &Config, head: &Head<'_>, outcome: &io::Result<Delivered>, started: Instant) {
    if config.quiet {
        return;
    }
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    let (method, target) = (head.method, head.target);
    match outcome {
        Ok(delivered) => {
            let events = delivered.events.map(|n| format!(" ({n} SSE events)")).unwrap_or_default();
            let status = delivered.status;
            log_line(config, format_args!("{method} {target} -> {status}{events} in {millis:.2} ms"));
        }
        Err(error) => log_line(config, format_args!("{method} {target} -> write failed: {error}")),
    }
}

/// One line on stderr. Write errors are ignored: `eprintln!` would panic if
/// stderr were closed, taking the server down with it.
fn log_line(config: &Config, line: std::fmt::Arguments<'_>) {
    if config.quiet {
        return;
    }
    let _ = writeln!(io::stderr().lock(), "tollgate-mock: {line}");
}
