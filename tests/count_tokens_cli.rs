//! `tollgate count-tokens`, run as a user would: the built binary, text or a request on stdin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn counting_text_prints_the_count_whether_exact_and_the_tokenizer() {
    assert_eq!(
        run(&["count-tokens", "--model", "gpt-4o"], "hello world"),
        (0, "2 exact o200k_base\n".into(), "".into())
    );
    let (code, out, _) = run(&["count-tokens", "--model", "gpt-4"], "<|endoftext|>");
    assert_eq!((code, out.as_str()), (0, "7 exact cl100k_base\n"));
    let (code, out, _) = run(&["count-tokens", "--model", "claude-sonnet-4-5"], "hello world");
    assert_eq!(code, 0);
    assert!(out.ends_with(" approximate approximate:anthropic\n"), "{out}");
}

#[test]
fn counting_a_corpus_file_through_the_cli_matches_tiktoken() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(dir.join("corpus/cjk.txt")).unwrap();
    let (_, out, _) = run(&["count-tokens", "--model", "gpt-4o-mini"], &text);
    assert_eq!(out, format!("{} exact o200k_base\n", expected["files"]["cjk.txt"]["o200k_base"]["total"]));
}

#[test]
fn messages_mode_prints_the_request_estimate_as_json() {
    let request = r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}]}"#;
    let (code, out, _) = run(&["count-tokens", "--messages"], request);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["prompt_tokens"], 9);
    assert_eq!(report["exactness"], "exact");
    assert_eq!(report["tokenizer"], "o200k_base");

    let (_, out, _) = run(&["count-tokens", "--messages", "--model", "gpt-4"], request);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tokenizer"], "cl100k_base", "--model overrides the body's model");
}

#[test]
fn bad_input_and_bad_usage_fail_with_a_message() {
    let (code, _, err) = run(&["count-tokens", "--messages"], "not json");
    assert_eq!(code, 1);
    assert!(err.contains("not JSON"), "{err}");
    let (code, _, err) = run(&["count-tokens"], "");
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
}
