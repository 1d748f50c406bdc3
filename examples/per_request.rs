//! The filter's per-request work without a proxy, for `make bench` and `make bench-gate`.
//!
//! `per_request time BODY.json...` times each case below on each body and prints one JSON
//! object. `make bench` runs it twice: natively, and compiled to wasm32-wasip1 under Wasmtime
//! (Cranelift), the closest engine we can embed here to the V8 that Envoy runs.
//!
//! `per_request count CASE N BODY.json` runs one case N times without timing anything, for
//! `valgrind --tool=callgrind`: instruction counts are the benchmark's regression gate
//! (bench/gate.py), because wall-clock time on a shared machine is too noisy to gate on.
//!
//! Whole exchanges are driven through the fake Envoy of the lifecycle tests (tests/support),
//! so they include that fake host's own bookkeeping; the `parse_*` cases are the bare functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a bench may fail loudly

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use support::{policy, FakeHost, Profile};
use tollgate::config::Policy;
use tollgate::dialect::{self, Api};
use tollgate::exchange::Exchange;

const CHAT_REQUEST: &[u8] = include_bytes!("../tests/fixtures/openai/chat_request.json");
const CHAT_RESPONSE: &[u8] = include_bytes!("../tests/fixtures/openai/chat_response.json");
const CHAT_STREAM: &[u8] = include_bytes!("../tests/fixtures/openai/chat_stream.sse");
const CHAT_HEADERS: &[(&str, &str)] =
    &[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream; charset=utf-8")];

/// One measured piece of per-request work: what it does with a request body, and how many
/// units (requests or chunks) one call covers.
struct Case {
    name: &'static str,
    what: &'static str,
    run: fn(&[u8]) -> usize,
    /// False when the case ignores the request body (it is then timed once, not per body).
    per_body: bool,
}

/// Per-request work measured today, in report order. Features add their case here when they
/// land; `PENDING` names the places kept for them.
const CASES: &[Case] = &[
    Case {
        name: "parse_request",
        what: "parse the chat request JSON (model, stream)",
        run: parse_request,
        per_body: true,
    },
    Case {
        name: "parse_response",
        what: "parse a non-streaming chat response (tests/fixtures) and price its usage",
        run: parse_response,
        per_body: false,
    },
    Case {
        name: "exchange",
        what: "a whole request and non-streaming response through Exchange on the fake Envoy",
        run: exchange,
        per_body: true,
    },
    Case {
        name: "stream_chunk",
        what:
            "one SSE event of a streamed response through Exchange (per chunk; the fixture request, then 1,000 events)",
        run: stream_chunks,
        per_body: false,
    },
];

/// Work the roadmap adds to every request, not implemented yet. Each becomes a `Case` above.
const PENDING: &[(&str, &str)] = &[
    ("count_tokens", "exact o200k token count of the prompt (the tokenizer being added on the `tokenizer` branch)"),
    ("scan_guardrails", "guardrail scanning of the prompt (PII patterns, keyword lists)"),
    ("select_model", "model selection rules"),
];

thread_local! {
    /// Compiled once, as the filter does at configuration time, and shared by every request.
    static POLICY: Rc<Policy> = policy("{}");
}

fn shared_policy() -> Rc<Policy> {
    POLICY.with(Rc::clone)
}

fn parse_request(body: &[u8]) -> usize {
    let parsed = dialect::parse_request(black_box(body)).expect("bench bodies are valid chat requests");
    black_box(parsed);
    1
}

fn parse_response(_body: &[u8]) -> usize {
    let parsed = Api::OpenAiChat.read_response(black_box(CHAT_RESPONSE)).expect("fixture is a chat response");
    assert!(parsed.tokens.input.is_some(), "fixture has usage");
    black_box(shared_policy().prices.cost("gpt-4o-mini-2024-07-18", &parsed.tokens));
    1
}

fn exchange(body: &[u8]) -> usize {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, shared_policy());
    host.request(&mut ex, CHAT_HEADERS, &[body]);
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    assert!(host.client_header("x-tollgate-cost-usd").is_some(), "the exchange was priced");
    black_box(host);
    1
}

/// Events per streamed response in `stream_chunk`: enough that the request it starts with
/// (one chat request, parsed) adds well under 1% to the cost per chunk.
const STREAM_EVENTS: usize = 1000;

/// The fixture's SSE events, its content events repeated to `STREAM_EVENTS`.
fn stream_events() -> &'static [&'static [u8]] {
    static EVENTS: std::sync::OnceLock<Vec<&'static [u8]>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut events: Vec<&[u8]> = Vec::new();
        let mut rest = CHAT_STREAM;
        while let Some(at) = rest.windows(2).position(|w| w == b"\n\n") {
            let (event, tail) = rest.split_at(at + 2);
            events.push(event);
            rest = tail;
        }
        let (first, rest) = events.split_first().expect("fixture has events");
        let (last, middle) = rest.split_last().expect("fixture has events");
        let mut out = vec![*first];
        out.extend(middle.iter().cycle().take(STREAM_EVENTS - 2));
        out.push(*last);
        out
    })
}

/// The fixture's chat request, then a streamed response of `STREAM_EVENTS` events, one body
/// callback each.
fn stream_chunks(_body: &[u8]) -> usize {
    let events = stream_events();
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, shared_policy());
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, SSE_OK, events);
    black_box(host);
    events.len()
}

/// Median and best of `samples` timings, each long enough to dwarf the clock's resolution.
fn time_case(case: &Case, body: &[u8], budget: Duration) -> serde_json::Value {
    let units = (case.run)(body);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget / 10 || calls < 3 {
        (case.run)(body);
        calls += 1;
    }
    let per_sample = calls.max(1);
    let mut samples: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_sample {
                (case.run)(body);
            }
            start.elapsed().as_nanos() as f64 / (per_sample as f64 * units as f64)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    serde_json::json!({
        "case": case.name,
        "ns_median": samples[samples.len() / 2],
        "ns_best": samples[0],
        "units_per_call": units,
        "bytes": body.len(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("time") => {
            let budget = Duration::from_millis(
                std::env::var("BENCH_BUDGET_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
            );
            let mut results = Vec::new();
            for (index, path) in args[1..].iter().enumerate() {
                let body = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
                for case in CASES.iter().filter(|c| c.per_body || index == 0) {
                    let mut result = time_case(case, &body, budget);
                    let name = path.rsplit('/').next().unwrap_or(path);
                    result["body"] = if case.per_body { name.into() } else { "fixture".into() };
                    results.push(result);
                }
            }
            let cases: Vec<_> = CASES.iter().map(|c| serde_json::json!({"case": c.name, "what": c.what})).collect();
            let pending: Vec<_> = PENDING.iter().map(|(n, w)| serde_json::json!({"case": n, "what": w})).collect();
            let target = if cfg!(target_arch = "wasm32") { "wasm32-wasip1" } else { std::env::consts::ARCH };
            let out = serde_json::json!({"target": target, "cases": cases, "pending": pending, "results": results});
            println!("{out}");
        }
        Some("count") if args.len() == 4 => {
            let case = CASES.iter().find(|c| c.name == args[1]).unwrap_or_else(|| panic!("no case {}", args[1]));
            let n: u64 = args[2].parse().expect("N is a number");
            let body = std::fs::read(&args[3]).expect("body file");
            let mut units = 0;
            for _ in 0..n {
                units = black_box((case.run)(&body));
            }
            println!("{units}");
        }
        _ => {
            eprintln!("usage: per_request time BODY.json... | per_request count CASE N BODY.json");
            std::process::exit(2);
        }
    }
}
