//! The exact encodings against OpenAI's tiktoken: every corpus file, whole and line by line, must
//! count the same as `tests/fixtures/tokenizer/expected.json`, which `generate.py` in that folder
//! wrote with Python tiktoken (and `make test` re-checks against a live tiktoken).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::path::Path;

use serde_json::Value;
use tollgate::tokenizer::{self, Encoding};

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn every_corpus_file_counts_exactly_as_tiktoken_whole_and_line_by_line() {
    let expected = expected();
    let files = expected["files"].as_object().unwrap();
    assert!(files.len() >= 10, "the corpus is there");
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (name, by_encoding) in files {
        let text = std::fs::read_to_string(fixture_dir().join("corpus").join(name)).unwrap();
        for encoding in Encoding::ALL {
            let want = &by_encoding[encoding.name()];
            let total = encoding.count(&text);
            if total != want["total"].as_u64().unwrap() {
                mismatches.push(format!("{name} {}: {total} tokens, tiktoken {}", encoding.name(), want["total"]));
            }
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let want_lines = want["lines"].as_array().unwrap();
            assert_eq!(lines.len(), want_lines.len(), "{name}: same line split as generate.py");
            for (number, (line, want)) in lines.iter().zip(want_lines).enumerate() {
                checked += 1;
                let got = encoding.count(line);
                if got != want.as_u64().unwrap() {
                    mismatches.push(format!(
                        "{name}:{} {}: {got}, tiktoken {want}: {line:?}",
                        number + 1,
                        encoding.name()
                    ));
                }
            }
        }
    }
    assert!(checked >= 700, "checked {checked} lines");
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn special_token_text_in_user_content_is_ordinary_text() {
    // encode_ordinary: <, |, endoftext, |, > and so on, never the single control token.
    assert_eq!(Encoding::O200k.count("<|endoftext|>"), 7);
    assert_eq!(Encoding::Cl100k.count("<|endoftext|>"), 7);
}

#[test]
fn empty_text_is_zero_tokens() {
    assert_eq!(Encoding::O200k.count(""), 0);
    assert_eq!(Encoding::Cl100k.count(""), 0);
}

#[test]
fn warm_up_is_idempotent() {
    assert!(tokenizer::warm_up());
    assert!(tokenizer::warm_up());
    assert_eq!(Encoding::O200k.count("hello world"), 2);
}
