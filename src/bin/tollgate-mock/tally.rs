//! What the mock reported: the usage of every answer it sent, for `GET /_mock/usage`, so a load
//! test can check that a gateway's token and cost totals match exactly what the provider said.
//! Counted when an answer is built (with `reset-after-events` its usage may never arrive).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// Answers by (model, input tokens, output tokens). `input` is every prompt token, as gateways
/// count them: OpenAI's `prompt_tokens`; Anthropic's `input_tokens` plus cache reads and writes.
static ANSWERS: Mutex<BTreeMap<(String, u64, u64), u64>> = Mutex::new(BTreeMap::new());

pub fn note(model: &str, input: u64, output: u64) {
    let mut answers = ANSWERS.lock().unwrap_or_else(PoisonError::into_inner);
    *answers.entry((model.to_owned(), input, output)).or_insert(0) += 1;
}

#[derive(Serialize)]
struct Row<'a> {
    model: &'a str,
    input_tokens: u64,
    output_tokens: u64,
    answers: u64,
}

#[derive(Serialize)]
struct View<'a> {
    answers: u64,
    input_tokens: u64,
    output_tokens: u64,
    by_usage: Vec<Row<'a>>,
}

/// The tally as JSON: totals, and the answers grouped by model and usage.
pub fn to_json() -> Vec<u8> {
    let answers = ANSWERS.lock().unwrap_or_else(PoisonError::into_inner);
    let by_usage: Vec<Row<'_>> = answers
        .iter()
        .map(|((model, input, output), count)| Row {
            model,
            input_tokens: *input,
            output_tokens: *output,
            answers: *count,
        })
        .collect();
    let view = View {
        answers: by_usage.iter().map(|r| r.answers).sum(),
        input_tokens: by_usage.iter().map(|r| r.input_tokens.saturating_mul(r.answers)).sum(),
        output_tokens: by_usage.iter().map(|r| r.output_tokens.saturating_mul(r.answers)).sum(),
        by_usage,
    };
    serde_json::to_vec(&view).unwrap_or_default()
}

pub fn reset() {
    ANSWERS.lock().unwrap_or_else(PoisonError::into_inner).clear();
}
