//! The OpenAI Embeddings dialect: `POST …/embeddings`.
//!
//! `input` is a string, an array of strings, an array of token ids or an array of such arrays,
//! as the real API takes it. Each input gets a deterministic vector that depends only on its
//! content (the same text gets the same vector wherever it stands): float32 values of unit
//! length, the model's native size (3072 for `text-embedding-3-large`, else 1536) or
//! `dimensions` long, the shortened vector being the native one's prefix scaled back to unit
//! length (as `text-embedding-3-*` shorten). `encoding_format: "base64"` sends the same float32
//! values as little-endian bytes in base64. Usage: `prompt_tokens` = ceil(bytes / 4) per string,
//! or the number of token ids; `total_tokens` the same (nothing is generated).

use serde::Serialize;
use serde_json::Value;

use crate::dialect::ApiCall;
use crate::http_response::{Reply, Response};
use crate::openai::{common_headers, error_response, invalid_type, json_body, required_model, to_json, Invalid};
use crate::text::{fnv1a64, splitmix64, tokens_for_bytes};

struct EmbeddingsRequest {
    model: String,
    inputs: Vec<Input>,
    dimensions: usize,
    base64: bool,
}

/// One input, as the bytes that seed its vector and its token count.
struct Input {
    seed: u64,
    tokens: u64,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    /// float32 values, written as the f64 that holds each exactly.
    Floats(Vec<f64>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

pub fn embeddings(call: &ApiCall<'_>) -> Reply {
    let request = match parse_request(call.body) {
        Ok(request) => request,
        Err(invalid) => {
            return Reply::Full(error_response(400, &invalid.message, invalid.param, invalid.code, call));
        }
    };
    let model = call.controls.served_model.as_deref().unwrap_or(&request.model);
    let prompt_tokens = request.inputs.iter().map(|input| input.tokens).fold(0, u64::saturating_add);
    let usage = (!call.controls.omit_usage).then_some(Usage { prompt_tokens, total_tokens: prompt_tokens });
    if usage.is_some() {
        crate::tally::note(model, prompt_tokens, 0);
    }
    let native = native_dimensions(&request.model);
    let data = request
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let values = vector(input.seed, native, request.dimensions);
            let embedding =
                if request.base64 { Vector::Base64(base64_le(&values)) } else { Vector::Floats(floats(&values)) };
            Embedding { object: "embedding", index, embedding }
        })
        .collect();
    let list = EmbeddingList { object: "list", data, model, usage };
    let mut response = Response::json(200, to_json(&list));
    response.headers = common_headers(call);
    Reply::Full(response)
}

fn native_dimensions(model: &str) -> usize {
    if model.contains("text-embedding-3-large") {
        3072
    } else {
        1536
    }
}

fn parse_request(body: &[u8]) -> Result<EmbeddingsRequest, Invalid> {
    let body = json_body(body)?;
    let model = required_model(&body)?.to_owned();
    let inputs = match body.get("input") {
        None | Some(Value::Null) => {
            let message = "Missing required parameter: 'input'.";
            return Err(Invalid::new(message, Some("input"), Some("missing_required_parameter")));
        }
        Some(input) => inputs(input)?,
    };
    let native = native_dimensions(&model);
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => native,
        Some(_) if model.contains("ada-002") => {
            return Err(Invalid::new("This model does not support specifying dimensions.", Some("dimensions"), None));
        }
        Some(value) => match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=native).contains(&n) => n,
            _ => return Err(invalid_type("dimensions", &format!("an integer from 1 to {native}"))),
        },
    };
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(format)) if format == "float" => false,
        Some(Value::String(format)) if format == "base64" => true,
        Some(_) => return Err(invalid_type("encoding_format", "'float' or 'base64'")),
    };
    Ok(EmbeddingsRequest { model, inputs, dimensions, base64 })
}

/// The inputs of `input`; an empty string or array is refused, as the real API refuses it.
fn inputs(input: &Value) -> Result<Vec<Input>, Invalid> {
    let empty = || Invalid::new("'input' must not be empty.", Some("input"), None);
    let wrong = || invalid_type("input", "a string, an array of strings, or an array of token arrays");
    match input {
        Value::String(text) if text.is_empty() => Err(empty()),
        Value::String(text) => Ok(vec![text_input(text)]),
        Value::Array(items) if items.is_empty() => Err(empty()),
        Value::Array(items) if items.iter().all(Value::is_u64) => Ok(vec![token_input(items)]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) if text.is_empty() => Err(empty()),
                Value::String(text) => Ok(text_input(text)),
                Value::Array(tokens) if !tokens.is_empty() && tokens.iter().all(Value::is_u64) => {
                    Ok(token_input(tokens))
                }
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}

fn text_input(text: &str) -> Input {
    Input { seed: fnv1a64(text.as_bytes()), tokens: tokens_for_bytes(text.len()) }
}

/// Token ids seed their vector through their JSON text, marked so `[1]` and `"[1]"` differ.
fn token_input(tokens: &[Value]) -> Input {
    let text = format!("tokens:{}", Value::from(tokens.to_vec()));
    Input { seed: fnv1a64(text.as_bytes()), tokens: u64::try_from(tokens.len()).unwrap_or(u64::MAX) }
}

/// The first `dimensions` of the native vector for `seed`, scaled to unit length, as float32.
fn vector(seed: u64, native: usize, dimensions: usize) -> Vec<f32> {
    let mut state = seed;
    let raw: Vec<f64> = (0..native.min(dimensions))
        .map(|_| {
            state = splitmix64(state);
            // The top 53 bits, as a uniform value in [-1, 1).
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            unit * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt();
    let norm = if norm > 0.0 { norm } else { 1.0 };
    raw.iter().map(|v| (v / norm) as f32).collect()
}

fn floats(values: &[f32]) -> Vec<f64> {
    values.iter().copied().map(f64::from).collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The values as little-endian float32 bytes, in standard base64 with padding.
fn base64_le(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group.first().copied().unwrap_or(0),
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let triple = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for position in 0..4 {
            if position <= group.len() {
                let digit = (triple >> (18 - 6 * position)) & 0x3f;
                out.push(char::from(BASE64.get(digit as usize).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_le(&[]), "");
        assert_eq!(base64_le(&[1.0, -2.0, 0.5]), "AACAPwAAAMAAAAA/");
    }

    #[test]
    fn vectors_have_unit_length_and_shorten_to_a_scaled_prefix() {
        let full = vector(42, 1536, 1536);
        let short = vector(42, 1536, 8);
        assert_eq!(full.len(), 1536);
        assert_eq!(short.len(), 8);
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm(&full) - 1.0).abs() < 1e-6);
        assert!((norm(&short) - 1.0).abs() < 1e-6);
        let scale = f64::from(short[0]) / f64::from(full[0]);
        for (s, f) in short.iter().zip(&full) {
            assert!((f64::from(*s) - f64::from(*f) * scale).abs() < 1e-5);
        }
        assert_ne!(vector(43, 1536, 8), short);
    }

    #[test]
    fn inputs_take_every_shape_the_api_takes_and_refuse_the_rest() {
        let ok = |v: Value| inputs(&v).map(|i| i.iter().map(|i| i.tokens).collect::<Vec<_>>()).ok();
        assert_eq!(ok(Value::from("abcde")), Some(vec![2]));
        assert_eq!(ok(serde_json::json!(["abcd", "e"])), Some(vec![1, 1]));
        assert_eq!(ok(serde_json::json!([1, 2, 3])), Some(vec![3]));
        assert_eq!(ok(serde_json::json!([[1, 2], [3]])), Some(vec![2, 1]));
        for bad in [serde_json::json!(""), serde_json::json!([]), serde_json::json!([1, "a"]), serde_json::json!(5)] {
            assert_eq!(ok(bad.clone()), None, "{bad}");
        }
    }
}
