//! `tollgate count-tokens`: the filter's own tokenizer and request-side estimate.

use std::io::Read;
use std::process::ExitCode;

use tollgate::tokenizer;

fn stdin_text() -> Result<String, ExitCode> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map(|_| text).map_err(|err| {
        eprintln!("stdin: {err} (the input must be UTF-8)");
        ExitCode::from(2)
    })
}

pub fn count_text(model: &str) -> ExitCode {
    let text = match stdin_text() {
        Ok(text) => text,
        Err(code) => return code,
    };
    let counter = tokenizer::for_model(model);
    println!("{} {} {}", counter.count(&text), counter.exactness().name(), counter.describe());
    ExitCode::SUCCESS
}

pub fn count_messages(model: Option<&str>) -> ExitCode {
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
