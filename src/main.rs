//! `tollgate`: the command-line companion of the filter. It runs the filter's own code, so what
//! it accepts is exactly what the filter accepts, and what it counts is what the filter counts.

use std::io::Read;
use std::process::ExitCode;

use tollgate::tokenizer;

const USAGE: &str = "usage: tollgate check-config FILE
       tollgate count-tokens --model MODEL < TEXT
       tollgate count-tokens --messages [--model MODEL] < CHAT_REQUEST_JSON

commands:
  check-config FILE   validate a filter configuration (JSON) exactly as the filter does at load
  count-tokens        count the tokens of the text on stdin for MODEL and print
                      `<count> <exact|approximate> <tokenizer>`; with --messages, read an OpenAI
                      Chat Completions request and print its prompt-token estimate as JSON
                      (--model overrides the request's model)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check-config", path] => check_config(path),
        ["count-tokens", "--model", model] => count_text(model),
        ["count-tokens", "--messages"] => count_messages(None),
        ["count-tokens", "--messages", "--model", model] | ["count-tokens", "--model", model, "--messages"] => {
            count_messages(Some(model))
        }
        ["-h"] | ["--help"] | ["help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(path: &str) -> ExitCode {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("{path}: cannot read: {err}");
            return ExitCode::from(2);
        }
    };
    match tollgate::config::compile(&bytes) {
        Ok(_) => {
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{path}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn stdin_text() -> Result<String, ExitCode> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map(|_| text).map_err(|err| {
        eprintln!("stdin: {err} (the input must be UTF-8)");
        ExitCode::from(2)
    })
}

fn count_text(model: &str) -> ExitCode {
    let text = match stdin_text() {
        Ok(text) => text,
        Err(code) => return code,
    };
    let counter = tokenizer::for_model(model);
    println!("{} {} {}", counter.count(&text), counter.exactness().name(), counter.describe());
    ExitCode::SUCCESS
}

fn count_messages(model: Option<&str>) -> ExitCode {
    let text = match stdin_text() {
        Ok(text) => text,
        Err(code) => return code,
    };
    let mut request: serde_json::Value = match serde_json::from_str(&text) {
        Ok(request) => request,
        Err(err) => {
            eprintln!("stdin: not JSON: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(model), Some(fields)) = (model, request.as_object_mut()) {
        fields.insert("model".into(), model.into());
    }
    let estimate = tokenizer::estimate_chat_request(&request);
    let report = serde_json::json!({
        "prompt_tokens": estimate.total,
        "exactness": estimate.exactness.name(),
        "tokenizer": estimate.counter.describe(),
        "messages": estimate.messages,
        "tools": estimate.tools,
        "images": estimate.images,
    });
    println!("{report}");
    ExitCode::SUCCESS
}
