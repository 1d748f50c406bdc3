//! Turns the published tiktoken vocabularies in `vocab/` into compact tables that the tokenizer
//! embeds, so that a VM start only builds a hash map and never parses base64.
//!
//! Output per encoding (`$OUT_DIR/<name>.vocab`): the token count as a little-endian u32, then one
//! length byte per token in rank order, then every token's bytes concatenated in rank order.

use std::path::Path;
use std::{env, fs};

const ENCODINGS: [&str; 2] = ["o200k_base", "cl100k_base"];

fn main() {
    let out_dir = env::var("OUT_DIR").unwrap_or_else(|_| fail("cargo sets OUT_DIR"));
    for name in ENCODINGS {
        let source = format!("vocab/{name}.tiktoken");
        println!("cargo::rerun-if-changed={source}");
        let text = fs::read_to_string(&source).unwrap_or_else(|err| fail(&format!("{source}: {err}")));
        let tokens = parse(&text).unwrap_or_else(|err| fail(&format!("{source}: {err}")));
        let mut table = (tokens.len() as u32).to_le_bytes().to_vec();
        for token in &tokens {
            // No tiktoken token is longer than 128 bytes, so a length byte is enough.
            let len = u8::try_from(token.len()).unwrap_or_else(|_| fail(&format!("{source}: a token over 255 bytes")));
            table.push(len);
        }
        tokens.iter().for_each(|token| table.extend_from_slice(token));
        let target = Path::new(&out_dir).join(format!("{name}.vocab"));
        fs::write(&target, table).unwrap_or_else(|err| fail(&format!("{}: {err}", target.display())));
    }
    println!("cargo::rerun-if-changed=build.rs");
}

/// Lines are `<base64 token> <rank>`; ranks must run 0, 1, 2, … so that a token's rank is its index.
fn parse(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut tokens = Vec::new();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let (token, rank) = line.split_once(' ').ok_or(format!("line {}: no rank", line_no + 1))?;
        if rank.parse::<usize>().ok() != Some(tokens.len()) {
            return Err(format!("line {}: rank {rank} out of order", line_no + 1));
        }
        tokens.push(base64(token).ok_or(format!("line {}: bad base64", line_no + 1))?);
    }
    Ok(tokens)
}

/// Standard base64 with padding; small enough to keep a build dependency out.
fn base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn fail(message: &str) -> ! {
    eprintln!("build.rs: {message}");
    std::process::exit(1)
}
