//! `tollgate-tokenizer-bench ENCODING ROUNDS FILE...`: builds the tables, counts each file ROUNDS
//! times and prints one JSON line per file (best round) plus one for start-up. Run through
//! `bench/tokenizer/run.py`, which builds it natively and for wasm32-wasip1 and runs the .wasm
//! under V8 (Node, the engine Envoy embeds) and Wasmtime (Cranelift).

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [encoding, rounds, files @ ..] = args.as_slice() else {
        eprintln!("usage: tollgate-tokenizer-bench o200k|cl100k ROUNDS FILE...");
        std::process::exit(2);
    };
    let rounds: usize = rounds.parse().unwrap_or(5);
    let o200k = encoding == "o200k";

    let start = Instant::now();
    let count = counter(o200k);
    count("warm up");
    let init_ms = start.elapsed().as_secs_f64() * 1e3;
    println!("{{\"impl\": \"{}\", \"init_ms\": {init_ms:.1}, \"memory_bytes\": {}}}", IMPL, memory_bytes());

    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|err| panic!("{file}: {err}"));
        let (mut best, mut tokens) = (f64::MAX, 0);
        for _ in 0..rounds {
            let t = Instant::now();
            tokens = count(&text);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let mb_s = text.len() as f64 / best / 1e6;
        println!("{{\"file\": \"{file}\", \"bytes\": {}, \"tokens\": {tokens}, \"best_ms\": {:.2}, \"mb_per_s\": {mb_s:.1}}}", text.len(), best * 1e3);
    }
}

#[cfg(feature = "bpe-openai")]
const IMPL: &str = "bpe-openai";
#[cfg(feature = "bpe-openai")]
fn counter(o200k: bool) -> impl Fn(&str) -> u64 {
    let tokenizer = if o200k { bpe_openai::o200k_base() } else { bpe_openai::cl100k_base() };
    move |text| tokenizer.count(text) as u64
}

#[cfg(feature = "tiktoken-rs")]
const IMPL: &str = "tiktoken-rs";
#[cfg(feature = "tiktoken-rs")]
fn counter(o200k: bool) -> impl Fn(&str) -> u64 {
    let bpe = if o200k { tiktoken_rs::o200k_base() } else { tiktoken_rs::cl100k_base() };
    let bpe = bpe.unwrap_or_else(|err| panic!("{err}"));
    move |text| bpe.encode_ordinary(text).len() as u64
}

#[cfg(not(any(feature = "bpe-openai", feature = "tiktoken-rs")))]
const IMPL: &str = "tollgate";
#[cfg(not(any(feature = "bpe-openai", feature = "tiktoken-rs")))]
fn counter(o200k: bool) -> impl Fn(&str) -> u64 {
    use tollgate::tokenizer::Encoding;
    let encoding = if o200k { Encoding::O200k } else { Encoding::Cl100k };
    encoding.warm_up();
    move |text| encoding.count(text)
}

/// Linear memory in wasm (what one Envoy VM holds); peak resident set natively.
fn memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<usize>().unwrap_or(0) * 1024)
        })
        .unwrap_or(0)
}
