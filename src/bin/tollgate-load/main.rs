//! `tollgate-load`: the load generator of `make bench` (bench/run.py).
//!
//! One closed-loop HTTP/1.1 client for every target, so the mock, bare Envoy, Envoy with
//! Tollgate and the peers all see the same connections, requests and timing code. It exists
//! because `wrk` cannot time the first token of a stream, and its percentiles come from a
//! histogram: this tool keeps every sample and reports exact percentiles.
//!
//! Each connection is a thread doing blocking I/O with TCP_NODELAY: send the whole request,
//! read the whole response (Content-Length or chunked), repeat. For `text/event-stream`
//! answers it also records when each SSE event arrived and when the first event carrying a
//! non-empty `content` delta (the first token) arrived. Results are one JSON object on stdout.

mod http;
mod stats;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use http::{Connection, Exchange, Target};

const USAGE: &str = "\
tollgate-load: closed-loop HTTP/1.1 load generator for the Tollgate benchmarks

USAGE:
    tollgate-load --url http://HOST:PORT/PATH --body FILE [OPTIONS]

OPTIONS:
    --url URL              plain-http URL to POST to
    --body FILE            request body (sent with content-type: application/json)
    --method GET           send GETs without a body instead (no --body)
    --header 'NAME: VALUE' extra request header; repeatable
    --connections N        concurrent keep-alive connections, one thread each (default 1)
    --requests N           stop after N measured requests in total
    --duration SECS        stop issuing requests after SECS (with --requests: whichever first)
    --warmup N             unmeasured requests per connection before the clock starts (default 0)
    --expect-header NAME   count 2xx responses without this header as errors
    --raw                  include every latency (and time to first token) in the output
    --timeout SECS         per-read timeout (default 60)
";

struct Options {
    target: Target,
    /// `None` sends GETs.
    body: Option<Vec<u8>>,
    headers: Vec<String>,
    connections: usize,
    requests: Option<u64>,
    duration: Option<Duration>,
    warmup: u64,
    expect_header: Option<String>,
    raw: bool,
    timeout: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut url = None;
    let mut body_path = None;
    let mut get = false;
    let mut headers = Vec::new();
    let mut connections = 1usize;
    let mut requests = None;
    let mut duration = None;
    let mut warmup = 0u64;
    let mut expect_header = None;
    let mut raw = false;
    let mut timeout = Duration::from_secs(60);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value("--url")?),
            "--body" => body_path = Some(value("--body")?),
            "--method" => {
                let method = value("--method")?;
                get = match method.as_str() {
                    "GET" => true,
                    "POST" => false,
                    _ => return Err(format!("--method: GET or POST, not {method}")),
                };
            }
            "--header" => headers.push(value("--header")?),
            "--connections" => connections = number(&value("--connections")?, "--connections")?,
            "--requests" => requests = Some(number(&value("--requests")?, "--requests")?),
            "--duration" => duration = Some(seconds(&value("--duration")?)?),
            "--warmup" => warmup = number(&value("--warmup")?, "--warmup")?,
            "--expect-header" => expect_header = Some(value("--expect-header")?.to_ascii_lowercase()),
            "--raw" => raw = true,
            "--timeout" => timeout = seconds(&value("--timeout")?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let target = Target::parse(&url.ok_or("--url is required")?)?;
    let body = match (get, body_path) {
        (true, None) => None,
        (true, Some(_)) => return Err("a GET has no --body".into()),
        (false, None) => return Err("--body is required".into()),
        (false, Some(path)) => Some(std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?),
    };
    if connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if requests.is_none() && duration.is_none() {
        return Err("give --requests, --duration or both".into());
    }
    Ok(Options { target, body, headers, connections, requests, duration, warmup, expect_header, raw, timeout })
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{name}: not a number: {text}"))
}

fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("not a number of seconds: {text}"))?;
    Duration::try_from_secs_f64(value).map_err(|_| format!("not a duration: {text}"))
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    ttft_ns: Vec<u64>,
    /// Gaps between consecutive SSE events of one response.
    gaps_ns: Vec<u64>,
    events: u64,
    streams: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: std::collections::BTreeMap<String, u64>,
    missing_header: u64,
    finished: Option<Instant>,
}

impl Tally {
    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    fn record(&mut self, exchange: &Exchange, options: &Options) {
        *self.statuses.entry(exchange.status).or_insert(0) += 1;
        if !(200..300).contains(&exchange.status) {
            self.error(format!("status {}", exchange.status));
            return;
        }
        if options.expect_header.as_ref().is_some_and(|h| !exchange.header_names.contains(h)) {
            self.missing_header += 1;
            self.error("missing expected header");
            return;
        }
        self.latencies_ns.push(exchange.latency_ns);
        if let Some(ttft) = exchange.first_token_ns {
            self.ttft_ns.push(ttft);
        }
        if !exchange.event_times_ns.is_empty() {
            self.streams += 1;
            self.events += exchange.event_times_ns.len() as u64;
            self.gaps_ns.extend(exchange.event_times_ns.windows(2).filter_map(|w| Some(w.get(1)? - w.first()?)));
        }
    }
}

fn run_connection(
    options: &Options,
    request: &[u8],
    barrier: &Barrier,
    issued: &AtomicU64,
    start: &std::sync::OnceLock<Instant>,
) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<Connection> = None;
    for _ in 0..options.warmup {
        if let Err(e) = exchange(&mut connection, options, request) {
            tally.error(format!("warmup: {e}"));
        }
    }
    // Twice: once when every connection has warmed up, once after the clock has started.
    barrier.wait();
    barrier.wait();
    let Some(&start) = start.get() else {
        return tally;
    };
    let deadline = options.duration.map(|d| start + d);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(limit) = options.requests {
            if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
        }
        match exchange(&mut connection, options, request) {
            Ok(done) => tally.record(&done, options),
            Err(e) => tally.error(e),
        }
    }
    tally.finished = Some(Instant::now());
    tally
}

/// One request on the connection, reconnecting first when there is none.
fn exchange(slot: &mut Option<Connection>, options: &Options, request: &[u8]) -> Result<Exchange, String> {
    let connection = match slot {
        Some(c) => c,
        None => slot.insert(Connection::open(&options.target, options.timeout).map_err(|e| format!("connect: {e}"))?),
    };
    match connection.exchange(request) {
        Ok(done) => {
            if done.close {
                *slot = None;
            }
            Ok(done)
        }
        Err(e) => {
            *slot = None;
            Err(e)
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            let _ = write!(std::io::stderr(), "{}{USAGE}", if message.is_empty() { message } else { message + "\n\n" });
            return ExitCode::from(2);
        }
    };
    let options = Arc::new(options);
    let request = Arc::new(options.target.request(&options.headers, options.body.as_deref()));
    let barrier = Arc::new(Barrier::new(options.connections + 1));
    let issued = Arc::new(AtomicU64::new(0));
    let start = Arc::new(std::sync::OnceLock::new());
    let mut threads = Vec::new();
    for _ in 0..options.connections {
        let (options, request, barrier, issued, start) =
            (options.clone(), request.clone(), barrier.clone(), issued.clone(), start.clone());
        let spawned = std::thread::Builder::new()
            .name("tollgate-load".into())
            .spawn(move || run_connection(&options, &request, &barrier, &issued, &start));
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "tollgate-load: cannot start a thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Every connection has done its warmup; the clock starts for all at once.
    barrier.wait();
    let _ = start.set(Instant::now());
    barrier.wait();
    let started = start.get().copied().unwrap_or_else(Instant::now);
    let mut total = Tally::default();
    let mut finished = started;
    for thread in threads {
        let Ok(tally) = thread.join() else {
            total.error("thread panicked");
            continue;
        };
        finished = finished.max(tally.finished.unwrap_or(started));
        total.latencies_ns.extend(tally.latencies_ns);
        total.ttft_ns.extend(tally.ttft_ns);
        total.gaps_ns.extend(tally.gaps_ns);
        total.events += tally.events;
        total.streams += tally.streams;
        total.missing_header += tally.missing_header;
        for (status, n) in tally.statuses {
            *total.statuses.entry(status).or_insert(0) += n;
        }
        for (kind, n) in tally.errors {
            *total.errors.entry(kind).or_insert(0) += n;
        }
    }
    let elapsed = finished.duration_since(started).as_secs_f64();
    let report = stats::report(&total, elapsed, options.connections, options.raw);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{report}");
    ExitCode::SUCCESS
}
