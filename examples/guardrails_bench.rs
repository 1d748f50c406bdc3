//! Guardrail throughput, native or in Wasm (WASI): `scripts/guardrails-bench.sh` builds it for
//! both and runs the Wasm build under V8 (Node's WASI) and Cranelift (wasmtime).
//!
//! `guardrails_bench ENGLISH CODE` where ENGLISH and CODE are text files. Prints
//! `workload: MB/s` lines (the fastest of many single passes, after a warm-up).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a tool, not the filter

use std::rc::Rc;
use std::time::Instant;

use tollgate::dialect::{self, Api};
use tollgate::guardrails::scan::{Found, Matcher};
use tollgate::guardrails::stream::TextGuard;
use tollgate::guardrails::{parse, Guardrails, RequestInput};

const SIZE: usize = 4 << 20;

fn grow(seed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIZE + seed.len());
    while out.len() < SIZE {
        out.extend_from_slice(seed);
    }
    out.truncate(SIZE);
    // Keep UTF-8 whole.
    while std::str::from_utf8(&out).is_err() {
        out.pop();
    }
    out
}

/// Throughput in MB/s (10^6 bytes) of `work` over `bytes` bytes: the fastest of many single
/// passes after a warm-up (the shared machine preempts; the minimum is the pass that was not).
fn measure(bytes: usize, mut work: impl FnMut() -> usize) -> f64 {
    let mut sink = 0usize;
    let warm_up = Instant::now();
    while warm_up.elapsed().as_secs_f64() < 0.3 {
        sink = sink.wrapping_add(work());
    }
    let mut best = f64::MAX;
    let started = Instant::now();
    let mut passes = 0;
    while passes < 15 || (started.elapsed().as_secs_f64() < 2.0 && passes < 200) {
        let pass = Instant::now();
        sink = sink.wrapping_add(work());
        best = best.min(pass.elapsed().as_secs_f64());
        passes += 1;
    }
    if sink == usize::MAX {
        println!("(unlikely)");
    }
    bytes as f64 / best / 1e6
}

fn matcher_of(g: &Guardrails) -> &Matcher {
    match &g.policies[0].checks[0].kind {
        tollgate::guardrails::CheckKind::Text(t) => &t.matchers[0],
        _ => panic!("text check"),
    }
}

fn scan(matcher: &Matcher, text: &[u8]) -> usize {
    let mut found: Vec<Found> = Vec::new();
    matcher.find_all(text, 0, &mut found);
    found.len()
}

fn check(json: serde_json::Value) -> Rc<Guardrails> {
    Rc::new(parse(serde_json::json!({"policies": [{"name": "bench", "checks": [json]}]})).unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let english = grow(&std::fs::read(&args[1]).expect("english text"));
    let code = grow(&std::fs::read(&args[2]).expect("code text"));
    let default = check(serde_json::json!({"name": "d", "detectors": ["pii", "secrets"], "action": "mask"}));
    let detectors = matcher_of(&default);

    // Text dense with personal data: one value every ~80 bytes.
    let pii_line = "Contact jane.doe@example.com or (415) 555-0132 about card 4111 1111 1111 1111 today. \
        Server 10.0.0.12 uses key sk-proj-AbCdEf1234567890GhIjKlMn; IBAN DE89 3704 0044 0532 0130 00. ";
    let dense = grow(pii_line.as_bytes());

    println!("engine: {}", if cfg!(target_arch = "wasm32") { "wasm32" } else { "native" });
    if let Some(which) = args.get(3).and_then(|a| a.strip_prefix("once-")) {
        // One pass over one workload, for instruction counts (`valgrind --tool=callgrind`).
        let text = if which == "english" { &english } else { &code };
        println!("{}", scan(detectors, text));
        return;
    }
    if args.get(3).is_some_and(|a| a == "none") {
        return; // the cost of setup alone
    }
    for (name, text) in [("english", &english), ("code", &code), ("pii-dense", &dense)] {
        let rate = measure(text.len(), || scan(detectors, text));
        println!("default detectors (pii+secrets), {name}: {rate:.0} MB/s ({} findings)", scan(detectors, text));
    }

    let injection = check(serde_json::json!({"name": "i", "detectors": ["prompt_injection"], "action": "block"}));
    let phrases = matcher_of(&injection);
    println!("prompt_injection phrases, english: {:.0} MB/s", measure(english.len(), || scan(phrases, &english)));

    let words: Vec<String> = std::str::from_utf8(&english)
        .unwrap()
        .split_whitespace()
        .filter(|w| w.len() > 6 && w.bytes().all(|b| b.is_ascii_alphabetic()))
        .take(200)
        .map(|w| format!("{w}zq"))
        .collect();
    let keywords = check(serde_json::json!({"name": "k", "keywords": words, "action": "block"}));
    let ac = matcher_of(&keywords);
    println!("keywords (200, aho-corasick), english: {:.0} MB/s", measure(english.len(), || scan(ac, &english)));

    // A whole request: a chat body of 1 KB messages, JSON walk, scan, masks, rewrite.
    let text = std::str::from_utf8(&english[..1 << 20]).unwrap_or("x");
    let messages: Vec<serde_json::Value> = text
        .as_bytes()
        .chunks(1024)
        .enumerate()
        .map(|(i, c)| {
            let mut content = String::from_utf8_lossy(c).into_owned();
            if i % 10 == 0 {
                content.push_str(" reach me at someone@example.com");
            }
            serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": content})
        })
        .collect();
    let body = serde_json::json!({"model": "gpt-4o", "messages": messages}).to_string().into_bytes();
    let request = dialect::parse_request(Api::OpenAiChat, &body).unwrap();
    let rate = measure(body.len(), || {
        let text = request.text(&body).ok();
        let out = default.check_request(&RequestInput::new(&request, text.as_ref()));
        out.body.map_or(0, |b| b.len())
    });
    println!("check_request, 1 MB chat body, mask pii+secrets: {rate:.0} MB/s");

    // Streaming: the same detectors over 16-byte deltas.
    let empty = br#"{"messages":[]}"#;
    let request = dialect::parse_request(Api::OpenAiChat, empty).unwrap();
    let text = request.text(empty).ok();
    let response = default.check_request(&RequestInput::new(&request, text.as_ref())).response.unwrap();
    let stream_text = &english[..1 << 20];
    let deltas: Vec<&str> = std::str::from_utf8(stream_text)
        .unwrap()
        .as_bytes()
        .chunks(16)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    let rate = measure(stream_text.len(), || {
        let mut guard = TextGuard::new(&response, false);
        let mut n = 0;
        for d in &deltas {
            n += guard.push(d).0.len();
        }
        n + guard.finish().0.len()
    });
    println!("stream, 16-byte deltas, mask pii+secrets, english: {rate:.0} MB/s");
}
