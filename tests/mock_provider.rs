//! End-to-end tests of the `tollgate-mock` binary over real sockets.
//!
//! Each test starts its own mock on a free port and talks raw HTTP/1.1, so
//! what is checked is exactly what a proxy in front of the mock would see.

// Test helpers fail by panicking: that is how a test reports a broken expectation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running mock, killed when dropped.
struct Mock {
    child: Child,
    address: String,
}

impl Mock {
    fn start(extra_args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the mock binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("tollgate-mock listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Mock { child, address }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }

    /// One request on a fresh connection.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut stream = self.connect();
        stream.write_all(&request_bytes(method, path, headers, body)).unwrap();
        read_reply(&mut BufReader::new(stream))
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        self.send("POST", path, headers, &body.to_string())
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// `(event name, data)` for each SSE event; the name is empty for
    /// OpenAI-style `data:`-only events.
    fn events(&self) -> Vec<(String, String)> {
        sse_events(&self.text())
    }
}

fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = value.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data)
        })
        .collect()
}

/// Reads one response: head, then a Content-Length or chunked body.
fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        panic!("bad status line {status_line:?}");
    });
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(": ").unwrap();
        headers.push((name.to_owned(), value.to_owned()));
    }
    let mut reply = Reply { status, headers, body: Vec::new() };
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = read_chunked(reader);
    } else {
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        reply.body = vec![0; length];
        reader.read_exact(&mut reply.body).unwrap();
    }
    reply
}

fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).unwrap();
        let size = usize::from_str_radix(size_line.trim_end(), 16).unwrap();
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        assert!(chunk.ends_with(b"\r\n"), "chunk not followed by CRLF");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the gateway."}
        ]
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn claude(extra: Value) -> Value {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello to the gateway."}]
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

const WEATHER_SCHEMA: &str = r#"{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"metric":{"type":"boolean"},"note":{"type":"string"}},"required":["city","days","metric"]}"#;

fn weather_schema() -> Value {
    serde_json::from_str(WEATHER_SCHEMA).unwrap()
}

// "Be brief." (9 bytes) + "Say hello to the gateway." (25 bytes) = 34 bytes:
// ceil(34 / 4) = 9, plus 3 per message.
const CHAT_PROMPT_TOKENS: u64 = 9 + 3 * 2 + 3;
const CLAUDE_INPUT_TOKENS: u64 = 9 + 3 + 3;

#[test]
fn openai_completion_has_the_real_shape_and_predictable_usage() {
    let mock = Mock::start(&["--name", "upstream-a"]);
    let reply = mock.post("/v1/chat/completions", &[], &chat(json!({"max_tokens": 5})));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-mock-name"), Some("upstream-a"));
    let body = reply.json();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "This is a deterministic reply");
    assert_eq!(body["choices"][0]["message"]["refusal"], Value::Null);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], CHAT_PROMPT_TOKENS);
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(usage["total_tokens"], CHAT_PROMPT_TOKENS + 5);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
}

#[test]
fn openai_reply_stops_naturally_without_a_client_limit() {
    let mock = Mock::start(&[]);
    let body = mock.post("/v1/chat/completions", &[], &chat(json!({"model": "gpt-4.1"}))).json();
    assert_eq!(body["model"], "gpt-4.1");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 16);
    let words = body["choices"][0]["message"]["content"].as_str().unwrap().split(' ').count();
    assert_eq!(words, 16);
}

#[test]
fn usage_headers_set_cached_and_reasoning_tokens_as_openai_subsets() {
    let mock = Mock::start(&[]);
    let headers = [("x-mock-cached-tokens", "7"), ("x-mock-reasoning-tokens", "10"), ("x-mock-served-model", "gpt-x")];
    let body = mock.post("/v1/chat/completions", &headers, &chat(json!({"max_completion_tokens": 4}))).json();
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(body["usage"]["prompt_tokens"], CHAT_PROMPT_TOKENS);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 7);
    assert_eq!(body["usage"]["completion_tokens"], 4 + 10);
    assert_eq!(body["usage"]["completion_tokens_details"]["reasoning_tokens"], 10);
    assert_eq!(body["usage"]["total_tokens"], CHAT_PROMPT_TOKENS + 14);
}

#[test]
fn openai_stream_without_include_usage_has_no_usage_and_ends_with_done() {
    let mock = Mock::start(&[]);
    let reply = mock.post("/v1/chat/completions", &[], &chat(json!({"stream": true, "max_tokens": 3})));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream; charset=utf-8"));
    let events = reply.events();
    // role chunk, 3 words, finish chunk, [DONE]
    assert_eq!(events.len(), 6);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..5].iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "", "refusal": null}));
    let text: String = chunks[1..4].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, "This is a");
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c.get("usage").is_none() && c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
}

#[test]
fn openai_stream_with_include_usage_ends_with_a_usage_only_chunk() {
    let mock = Mock::start(&[]);
    let body = chat(json!({"stream": true, "max_tokens": 2, "stream_options": {"include_usage": true}}));
    let events = mock.post("/v1/chat/completions", &[], &body).events();
    // role chunk, 2 words, finish chunk, usage chunk, [DONE]
    assert_eq!(events.len(), 6);
    assert_eq!(events[5].1, "[DONE]");
    let chunks: Vec<Value> = events[..5].iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect();
    assert!(chunks[..4].iter().all(|c| c["usage"].is_null() && c.get("usage").is_some()));
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["prompt_tokens"], CHAT_PROMPT_TOKENS);
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 2);
}

#[test]
fn omit_usage_removes_usage_even_when_the_client_asks_for_it() {
    let mock = Mock::start(&[]);
    let omit = [("x-mock-omit-usage", "1")];
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let events = mock.post("/v1/chat/completions", &omit, &body).events();
    assert!(events.iter().all(|(_, data)| !data.contains("usage")));
    assert!(mock.post("/v1/chat/completions", &omit, &chat(json!({}))).json().get("usage").is_none());
    assert!(mock.post("/v1/messages", &omit, &claude(json!({}))).json().get("usage").is_none());
}

#[test]
fn anthropic_message_has_the_real_shape_and_additive_cache_usage() {
    let mock = Mock::start(&[]);
    let headers = [("x-mock-cache-read-tokens", "100"), ("x-mock-cache-write-tokens", "20")];
    let reply = mock.post("/v1/messages", &headers, &claude(json!({})));
    assert_eq!(reply.status, 200);
    assert!(reply.header("request-id").unwrap().starts_with("req_"));
    let body = reply.json();
    assert!(body["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["content"][0]["type"], "text");
    // max_tokens 1024 is above the mock's 64-word ceiling, so the reply ends on its own.
    assert_eq!(body["content"][0]["text"].as_str().unwrap().split(' ').count(), 64);
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    let usage = &body["usage"];
    assert_eq!(usage["input_tokens"], CLAUDE_INPUT_TOKENS);
    assert_eq!(usage["cache_read_input_tokens"], 100);
    assert_eq!(usage["cache_creation_input_tokens"], 20);
    assert_eq!(usage["output_tokens"], 64);
}

#[test]
fn anthropic_stream_sends_events_in_order_with_usage_at_both_ends() {
    let mock = Mock::start(&[]);
    let headers = [("x-mock-cache-read-tokens", "5")];
    let events = mock.post("/v1/messages", &headers, &claude(json!({"stream": true, "max_tokens": 2}))).events();
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = events.iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect();
    assert!(events.iter().zip(&data).all(|((name, _), value)| value["type"] == name.as_str()));
    let start_usage = &data[0]["message"]["usage"];
    assert_eq!(start_usage["input_tokens"], CLAUDE_INPUT_TOKENS);
    assert_eq!(start_usage["cache_read_input_tokens"], 5);
    assert_eq!(data[3]["delta"], json!({"type": "text_delta", "text": "This"}));
    assert_eq!(data[4]["delta"], json!({"type": "text_delta", "text": " is"}));
    assert_eq!(data[6]["delta"]["stop_reason"], "max_tokens");
    let delta_usage = &data[6]["usage"];
    assert_eq!(delta_usage["output_tokens"], 2);
    assert_eq!(delta_usage["input_tokens"], CLAUDE_INPUT_TOKENS);
    assert_eq!(delta_usage["cache_read_input_tokens"], 5);
}

#[test]
fn anthropic_requires_max_tokens_like_the_real_api() {
    let mock = Mock::start(&[]);
    let mut body = claude(json!({}));
    body.as_object_mut().unwrap().remove("max_tokens");
    let reply = mock.post("/v1/messages", &[], &body);
    assert_eq!(reply.status, 400);
    let error = reply.json();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("max_tokens"));
}

/// Anthropic's `count_tokens` answers `{"input_tokens": N}` (its documented shape, which the
/// anthropic SDK's `MessageTokensCount` reads), N being the input the same Messages request
/// reports, and refuses what only generation takes, as the real API does.
#[test]
fn count_tokens_counts_what_the_messages_request_reports_and_refuses_generation_fields() {
    let mock = Mock::start(&[]);
    let mut body = claude(json!({}));
    let reported = mock.post("/v1/messages", &[], &body).json()["usage"]["input_tokens"].clone();
    body.as_object_mut().unwrap().remove("max_tokens");
    let reply = mock.post("/v1/messages/count_tokens", &[], &body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"input_tokens": reported}));
    for extra in [json!({"max_tokens": 5}), json!({"stream": true})] {
        let mut with = body.clone();
        with.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let reply = mock.post("/v1/messages/count_tokens", &[], &with);
        assert_eq!(reply.status, 400, "{extra}");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("Extra inputs are not permitted"));
    }
}

#[test]
fn invalid_json_gets_a_400_in_each_endpoints_dialect() {
    let mock = Mock::start(&[]);
    let openai = mock.send("POST", "/v1/chat/completions", &[], "{not json");
    assert_eq!(openai.status, 400);
    assert_eq!(openai.json()["error"]["type"], "invalid_request_error");
    let anthropic = mock.send("POST", "/v1/messages", &[], "{not json");
    assert_eq!(anthropic.status, 400);
    assert_eq!(anthropic.json()["error"]["type"], "invalid_request_error");
    assert_eq!(anthropic.json()["type"], "error");
}

#[test]
fn openai_tool_calls_name_the_first_tool_with_schema_conforming_arguments() {
    let mock = Mock::start(&[]);
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    ]);
    let body = mock.post("/v1/chat/completions", &[], &chat(json!({"tools": tools}))).json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "mock", "days": 1, "metric": true}));

    let forced = json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "other"}}});
    let body = mock.post("/v1/chat/completions", &[], &chat(forced)).json();
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "other");

    let none = json!({"tools": tools, "tool_choice": "none"});
    let body = mock.post("/v1/chat/completions", &[], &chat(none)).json();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[test]
fn openai_streamed_tool_call_arrives_as_id_then_argument_fragments() {
    let mock = Mock::start(&[]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}}]);
    let events = mock.post("/v1/chat/completions", &[], &chat(json!({"tools": tools, "stream": true}))).events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let opening = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(opening["index"], 0);
    assert!(opening["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(opening["function"], json!({"name": "get_weather", "arguments": ""}));
    let fragments: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert!((2..=3).contains(&fragments.len()), "{fragments:?}");
    let arguments: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(arguments, json!({"city": "mock", "days": 1, "metric": true}));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn a_tool_result_is_answered_in_text_in_both_dialects() {
    let mock = Mock::start(&[]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}}]);
    let messages = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]);
    let body = mock.post("/v1/chat/completions", &[], &chat(json!({"tools": tools, "messages": messages}))).json();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let tools = json!([{"name": "get_weather", "input_schema": weather_schema()}]);
    let messages = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
    ]);
    let body = mock.post("/v1/messages", &[], &claude(json!({"tools": tools, "messages": messages}))).json();
    assert_eq!(body["stop_reason"], "end_turn");
}

#[test]
fn anthropic_tool_use_blocks_carry_schema_conforming_input() {
    let mock = Mock::start(&[]);
    let tools = json!([{"name": "get_weather", "input_schema": weather_schema()}, {"name": "other", "input_schema": {"type": "object"}}]);
    let body = mock.post("/v1/messages", &[], &claude(json!({"tools": tools}))).json();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "mock", "days": 1, "metric": true}));

    let forced = json!({"tools": tools, "tool_choice": {"type": "tool", "name": "other"}});
    assert_eq!(mock.post("/v1/messages", &[], &claude(forced)).json()["content"][0]["name"], "other");
    let none = json!({"tools": tools, "tool_choice": {"type": "none"}});
    assert_eq!(mock.post("/v1/messages", &[], &claude(none)).json()["content"][0]["type"], "text");
}

#[test]
fn anthropic_streamed_tool_use_arrives_as_input_json_deltas() {
    let mock = Mock::start(&[]);
    let tools = json!([{"name": "get_weather", "input_schema": weather_schema()}]);
    let events = mock.post("/v1/messages", &[], &claude(json!({"tools": tools, "stream": true}))).events();
    let data: Vec<Value> = events.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(data[1]["content_block"]["type"], "tool_use");
    assert_eq!(data[1]["content_block"]["name"], "get_weather");
    assert_eq!(data[1]["content_block"]["input"], json!({}));
    let partial: String = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), json!({"city": "mock", "days": 1, "metric": true}));
    let message_delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");
}

#[test]
fn rate_limit_fault_returns_429_with_retry_after_in_both_dialects() {
    let mock = Mock::start(&[]);
    let headers = [("x-mock-status", "429"), ("x-mock-retry-after", "7")];
    let openai = mock.post("/v1/chat/completions", &headers, &chat(json!({})));
    assert_eq!(openai.status, 429);
    assert_eq!(openai.header("retry-after"), Some("7"));
    let error = &openai.json()["error"];
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["param"], Value::Null);
    assert!(error["message"].as_str().unwrap().contains("Rate limit"));

    let anthropic = mock.post("/v1/messages", &[("x-mock-status", "429")], &claude(json!({})));
    assert_eq!(anthropic.status, 429);
    assert_eq!(anthropic.header("retry-after"), Some("1"));
    assert!(anthropic.header("request-id").is_some());
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(anthropic.json()["error"]["type"], "rate_limit_error");
}

#[test]
fn server_errors_use_each_dialects_error_types() {
    let mock = Mock::start(&[]);
    let openai = mock.post("/v1/chat/completions", &[("x-mock-status", "503")], &chat(json!({})));
    assert_eq!((openai.status, openai.header("retry-after")), (503, Some("1")));
    assert_eq!(openai.json()["error"]["type"], "server_error");
    let anthropic = mock.post("/v1/messages", &[("x-mock-status", "500")], &claude(json!({})));
    assert_eq!(anthropic.status, 500);
    assert_eq!(anthropic.header("retry-after"), None);
    assert_eq!(anthropic.json()["error"]["type"], "api_error");
    let overloaded = mock.post("/v1/messages", &[("x-mock-status", "529")], &claude(json!({})));
    assert_eq!(overloaded.json()["error"]["type"], "overloaded_error");
}

#[test]
fn command_line_faults_apply_to_every_request_unless_a_header_overrides_them() {
    let mock = Mock::start(&["--fault", "status=503"]);
    assert_eq!(mock.post("/v1/chat/completions", &[], &chat(json!({}))).status, 503);
    let cleared = mock.post("/v1/chat/completions", &[("x-mock-status", "none")], &chat(json!({})));
    assert_eq!(cleared.status, 200);
    assert_eq!(mock.send("GET", "/_mock/health", &[], "").status, 200);
}

#[test]
fn html_body_fault_answers_with_an_html_page() {
    let mock = Mock::start(&[]);
    let reply = mock.post("/v1/chat/completions", &[("x-mock-body", "html")], &chat(json!({})));
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), Some("text/html"));
    assert!(reply.text().contains("<h1>502 Bad Gateway</h1>"));
}

#[test]
fn first_byte_delay_holds_the_response_back() {
    let mock = Mock::start(&[]);
    let started = Instant::now();
    let reply = mock.post("/v1/chat/completions", &[("x-mock-first-byte-delay-ms", "150")], &chat(json!({})));
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

/// Reads everything the server sends until EOF or an error, returning the
/// bytes and whether the connection ended in a reset.
fn read_until_end(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, false),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return (received, true),
            Err(error) => panic!("unexpected read error {error}"),
        }
    }
}

#[test]
fn reset_after_events_cuts_the_stream_with_a_tcp_reset() {
    let mock = Mock::start(&[]);
    let mut stream = mock.connect();
    let headers = [("x-mock-reset-after-events", "3"), ("x-mock-chunk-delay-ms", "20")];
    let body = chat(json!({"stream": true})).to_string();
    stream.write_all(&request_bytes("POST", "/v1/chat/completions", &headers, &body)).unwrap();
    let (received, was_reset) = read_until_end(&mut stream);
    assert!(was_reset, "the peer should see a reset, not a clean close");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(text.matches("data: ").count(), 3);
    assert!(!text.contains("[DONE]"));
}

#[test]
fn reset_mid_event_cuts_inside_the_next_event() {
    let mock = Mock::start(&[]);
    let mut stream = mock.connect();
    let headers = [("x-mock-reset-after-events", "2"), ("x-mock-reset-mid-event", "1")];
    let body = chat(json!({"stream": true})).to_string();
    stream.write_all(&request_bytes("POST", "/v1/chat/completions", &headers, &body)).unwrap();
    let (received, was_reset) = read_until_end(&mut stream);
    assert!(was_reset);
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.matches("data: ").count(), 3, "two whole events and the start of a third");
    let last = text.rsplit("data: ").next().unwrap();
    assert!(!last.contains("\n\n"), "the third event never ends: {last:?}");
}

#[test]
fn reset_on_a_non_streaming_reply_sends_half_the_body() {
    let mock = Mock::start(&[]);
    let mut stream = mock.connect();
    let body = chat(json!({})).to_string();
    stream
        .write_all(&request_bytes("POST", "/v1/chat/completions", &[("x-mock-reset-after-events", "0")], &body))
        .unwrap();
    let (received, was_reset) = read_until_end(&mut stream);
    assert!(was_reset);
    let text = String::from_utf8_lossy(&received);
    let (head, partial) = text.split_once("\r\n\r\n").unwrap();
    let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
    assert_eq!(partial.len(), length / 2);
}

#[test]
fn mock_last_shows_what_reached_the_upstream() {
    let mock = Mock::start(&[]);
    assert_eq!(mock.send("GET", "/_mock/last", &[], "").status, 404);
    let body = chat(json!({"model": "rewritten-model"}));
    mock.post("/v1/chat/completions?x=1", &[("Authorization", "Bearer sk-upstream")], &body);
    mock.send("GET", "/_mock/health", &[], "");
    let last = mock.send("GET", "/_mock/last", &[], "").json();
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], "/v1/chat/completions?x=1");
    assert_eq!(last["headers"]["authorization"], "Bearer sk-upstream");
    let recorded: Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(recorded["model"], "rewritten-model");
}

#[test]
fn require_key_rejects_missing_or_wrong_keys_in_each_dialect() {
    let mock = Mock::start(&["--require-key", "sk-test"]);
    let missing = mock.post("/v1/chat/completions", &[], &chat(json!({})));
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"]["type"], "invalid_request_error");
    let wrong = mock.post("/v1/chat/completions", &[("authorization", "Bearer nope")], &chat(json!({})));
    assert_eq!((wrong.status, wrong.json()["error"]["code"].clone()), (401, json!("invalid_api_key")));
    let right = mock.post("/v1/chat/completions", &[("authorization", "Bearer sk-test")], &chat(json!({})));
    assert_eq!(right.status, 200);

    let openai_style_on_anthropic = mock.post("/v1/messages", &[("x-api-key", "nope")], &claude(json!({})));
    assert_eq!(openai_style_on_anthropic.status, 401);
    assert_eq!(openai_style_on_anthropic.json()["error"]["type"], "authentication_error");
    assert_eq!(mock.post("/v1/messages", &[], &claude(json!({}))).status, 401);
    assert_eq!(mock.post("/v1/messages", &[("x-api-key", "sk-test")], &claude(json!({}))).status, 200);
    // anthropic-python 2.x sends the API key as a bearer token.
    assert_eq!(mock.post("/v1/messages", &[("authorization", "Bearer sk-test")], &claude(json!({}))).status, 200);
}

#[test]
fn the_same_request_gets_the_same_bytes_and_a_different_one_a_different_id() {
    let mock = Mock::start(&[]);
    let first = mock.post("/v1/chat/completions", &[], &chat(json!({})));
    let second = mock.post("/v1/chat/completions", &[], &chat(json!({})));
    assert_eq!(first.body, second.body);
    let streamed = chat(json!({"stream": true}));
    assert_eq!(
        mock.post("/v1/chat/completions", &[], &streamed).body,
        mock.post("/v1/chat/completions", &[], &streamed).body
    );
    let other = mock.post("/v1/chat/completions", &[], &chat(json!({"user": "someone-else"})));
    assert_ne!(first.json()["id"], other.json()["id"]);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection_including_chunked_bodies() {
    let mock = Mock::start(&[]);
    let stream = mock.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let body = chat(json!({})).to_string();
    writer.write_all(&request_bytes("POST", "/v1/chat/completions", &[], &body)).unwrap();
    assert_eq!(read_reply(&mut reader).status, 200);
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        body.len(),
        body
    );
    writer.write_all(chunked.as_bytes()).unwrap();
    let reply = read_reply(&mut reader);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["usage"]["prompt_tokens"], CHAT_PROMPT_TOKENS);
    writer.write_all(b"GET /_mock/health HTTP/1.1\r\nhost: mock\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut reader).text(), "ok");
}

#[test]
fn malformed_http_gets_a_400_and_the_connection_is_closed() {
    let mock = Mock::start(&[]);
    let mut stream = mock.connect();
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let (received, _) = read_until_end(&mut stream);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("connection: close"));
}

#[test]
fn unknown_paths_get_an_openai_shaped_404_and_models_are_listed() {
    let mock = Mock::start(&[]);
    let missing = mock.send("GET", "/v1/nothing", &[], "");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["message"], "Invalid URL (GET /v1/nothing)");
    let models = mock.send("GET", "/v1/models", &[], "").json();
    assert_eq!(models["object"], "list");
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "gpt-4o-mini"));
}

#[test]
fn mock_usage_tallies_what_every_answer_reported() {
    let mock = Mock::start(&[]);
    let openai = mock.post("/v1/chat/completions", &[], &chat(json!({}))).json();
    // A stream reports usage only when asked to.
    mock.post("/v1/chat/completions", &[], &chat(json!({"stream": true})));
    mock.post("/v1/chat/completions", &[], &chat(json!({"stream": true, "stream_options": {"include_usage": true}})));
    let messages =
        json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let anthropic = mock
        .post("/v1/messages", &[("x-mock-cache-read-tokens", "2"), ("x-mock-cache-write-tokens", "1")], &messages)
        .json();
    mock.post("/v1/chat/completions", &[("x-mock-omit-usage", "1")], &chat(json!({})));
    let tally = mock.send("GET", "/_mock/usage", &[], "").json();
    assert_eq!(tally["answers"], 3);
    let anthropic_input = anthropic["usage"]["input_tokens"].as_u64().unwrap() + 3;
    let openai_input = openai["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(tally["input_tokens"].as_u64().unwrap(), 2 * openai_input + anthropic_input);
    let output = 2 * openai["usage"]["completion_tokens"].as_u64().unwrap()
        + anthropic["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(tally["output_tokens"].as_u64().unwrap(), output);
    let models: Vec<&str> =
        tally["by_usage"].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"claude-haiku-4-5"));
    assert_eq!(mock.send("DELETE", "/_mock/usage", &[], "").json()["answers"], 0);
}

#[test]
fn reply_echo_repeats_the_last_user_text_in_both_dialects() {
    let mock = Mock::start(&[]);
    let echo = [("x-mock-reply", "echo")];
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}}]);
    let body = mock.post("/v1/chat/completions", &echo, &chat(json!({"max_tokens": 1, "tools": tools}))).json();
    assert_eq!(body["choices"][0]["message"]["content"], "Say hello to the gateway.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["prompt_tokens"], CHAT_PROMPT_TOKENS);

    let body = mock.post("/v1/messages", &echo, &claude(json!({"max_tokens": 1}))).json();
    assert_eq!(body["content"], json!([{"type": "text", "text": "Say hello to the gateway."}]));
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["output_tokens"], 5);

    let bad = mock.post("/v1/messages", &[("x-mock-reply", "sentence")], &claude(json!({})));
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["message"].as_str().unwrap().starts_with("invalid x-mock-reply header"));
    let bad = mock.post("/v1/chat/completions", &[("x-mock-delta-bytes", "0")], &chat(json!({})));
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["message"].as_str().unwrap().starts_with("invalid x-mock-delta-bytes header"));
}

#[test]
fn delta_bytes_splits_a_streamed_echo_without_cutting_a_character() {
    let mock = Mock::start(&["--fault", "reply=echo"]);
    let headers = [("x-mock-delta-bytes", "3")];
    let messages = json!([{"role": "user", "content": "héllo"}]);
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}, "messages": messages}));
    let events = mock.post("/v1/chat/completions", &headers, &body).events();
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect();
    let deltas: Vec<&str> =
        chunks[1..].iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str()).collect();
    assert_eq!(deltas, ["hé", "llo"]);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 1);

    let events = mock.post("/v1/messages", &headers, &claude(json!({"stream": true, "messages": messages}))).events();
    let deltas: Vec<String> = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap()["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, ["hé", "llo"]);
}

#[test]
fn mock_usage_tallies_the_echos_tokens() {
    let mock = Mock::start(&[]);
    let echo = [("x-mock-reply", "echo")];
    let messages = json!([{"role": "user", "content": "one two three four"}]);
    let openai = mock.post("/v1/chat/completions", &echo, &chat(json!({"messages": messages}))).json();
    let streamed = claude(json!({"stream": true, "messages": messages}));
    mock.post("/v1/messages", &echo, &streamed);
    assert_eq!(openai["usage"]["completion_tokens"], 4);
    let tally = mock.send("GET", "/_mock/usage", &[], "").json();
    assert_eq!(tally["answers"], 2);
    assert_eq!(tally["output_tokens"], 8);
}

// --- OpenAI Responses ---------------------------------------------------------------------------

fn responses(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello to the gateway."}]}]
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

// The same 34 bytes of text as CHAT_PROMPT_TOKENS, in one input item plus the instructions.
const RESPONSES_INPUT_TOKENS: u64 = 9 + 3 + 3;

/// The data of each event, checked to name its SSE event and to be numbered from 0.
fn responses_events(reply: &Reply) -> Vec<Value> {
    let events = reply.events();
    let data: Vec<Value> = events.iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect();
    for (number, ((name, _), value)) in events.iter().zip(&data).enumerate() {
        assert_eq!(value["type"], name.as_str());
        assert_eq!(value["sequence_number"], number);
    }
    data
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn responses_answer_has_the_real_shape_and_openai_usage_subsets() {
    let mock = Mock::start(&[]);
    let headers = [("x-mock-cached-tokens", "7"), ("x-mock-reasoning-tokens", "10")];
    let reply = mock.post("/v1/responses", &headers, &responses(json!({})));
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-request-id").unwrap().starts_with("req_"));
    let body = reply.json();
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(body["instructions"], "Be brief.");
    let item = &body["output"][0];
    assert_eq!(item["type"], "message");
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!((item["role"].as_str(), item["status"].as_str()), (Some("assistant"), Some("completed")));
    assert_eq!(item["content"][0]["type"], "output_text");
    assert_eq!(item["content"][0]["text"].as_str().unwrap().split(' ').count(), 16);
    let usage = &body["usage"];
    assert_eq!(usage["input_tokens"], RESPONSES_INPUT_TOKENS);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 7);
    assert_eq!(usage["output_tokens"], 16 + 10);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 10);
    assert_eq!(usage["total_tokens"], RESPONSES_INPUT_TOKENS + 26);
}

#[test]
fn responses_stream_sends_the_real_event_sequence_with_usage_in_response_completed() {
    let mock = Mock::start(&[]);
    let reply = mock.post("/v1/responses", &[], &responses(json!({"stream": true})));
    assert_eq!(reply.header("content-type"), Some("text/event-stream; charset=utf-8"));
    let events = responses_events(&reply);
    let mut expected =
        vec!["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"];
    expected.extend(["response.output_text.delta"; 16]);
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types(&events), expected);
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["usage"], Value::Null);
    let item_id = events[2]["item"]["id"].as_str().unwrap();
    let deltas: String = events[4..20]
        .iter()
        .map(|e| {
            assert_eq!(
                (e["item_id"].as_str(), e["output_index"].as_u64(), e["content_index"].as_u64()),
                (Some(item_id), Some(0), Some(0))
            );
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(events[20]["text"], deltas.as_str());
    assert_eq!(events[21]["part"]["text"], deltas.as_str());
    assert_eq!(events[22]["item"]["content"][0]["text"], deltas.as_str());
    let completed = &events[23]["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["content"][0]["text"], deltas.as_str());
    assert_eq!(completed["usage"]["input_tokens"], RESPONSES_INPUT_TOKENS);
    assert_eq!(completed["usage"]["output_tokens"], 16);
    assert!(!reply.text().contains("[DONE]"), "the Responses API sends no [DONE]");
}

#[test]
fn responses_cut_by_max_output_tokens_end_incomplete_whole_and_streamed() {
    let mock = Mock::start(&[]);
    let body = mock.post("/v1/responses", &[], &responses(json!({"max_output_tokens": 3}))).json();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(body["output"][0]["content"][0]["text"], "This is a");
    let events =
        responses_events(&mock.post("/v1/responses", &[], &responses(json!({"stream": true, "max_output_tokens": 3}))));
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(last["response"]["usage"]["output_tokens"], 3);
}

#[test]
fn responses_call_function_tools_whole_and_streamed_as_argument_deltas() {
    let mock = Mock::start(&[]);
    let tools = json!([
        {"type": "web_search"},
        {"type": "function", "name": "get_weather", "parameters": weather_schema()},
        {"type": "function", "name": "other", "parameters": {"type": "object"}}
    ]);
    let body = mock.post("/v1/responses", &[], &responses(json!({"tools": tools}))).json();
    let item = &body["output"][0];
    assert_eq!(item["type"], "function_call");
    assert!(item["id"].as_str().unwrap().starts_with("fc_"));
    assert!(item["call_id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(item["name"], "get_weather");
    let arguments: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "mock", "days": 1, "metric": true}));
    let forced = json!({"tools": tools, "tool_choice": {"type": "function", "name": "other"}});
    assert_eq!(mock.post("/v1/responses", &[], &responses(forced)).json()["output"][0]["name"], "other");

    let events =
        responses_events(&mock.post("/v1/responses", &[], &responses(json!({"tools": tools, "stream": true}))));
    let kinds = types(&events);
    assert_eq!(kinds[..3], ["response.created", "response.in_progress", "response.output_item.added"]);
    assert_eq!(events[2]["item"]["arguments"], "");
    let fragments: String = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let done = events.iter().find(|e| e["type"] == "response.function_call_arguments.done").unwrap();
    assert_eq!(done["arguments"], fragments.as_str());
    assert_eq!(done["name"], "get_weather");
    assert_eq!(kinds[kinds.len() - 2..], ["response.output_item.done", "response.completed"]);
    assert_eq!(events.last().unwrap()["response"]["output"][0]["arguments"], fragments.as_str());
}

#[test]
fn responses_echo_the_last_user_text_in_byte_bounded_deltas() {
    let mock = Mock::start(&[]);
    let headers = [("x-mock-reply", "echo"), ("x-mock-delta-bytes", "3")];
    let input = json!([{"role": "user", "content": "first"}, {"role": "user", "content": [{"type": "input_text", "text": "héllo"}]}]);
    let events =
        responses_events(&mock.post("/v1/responses", &headers, &responses(json!({"stream": true, "input": input}))));
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["hé", "llo"]);
    let body = mock.post("/v1/responses", &headers, &responses(json!({"input": "echo  me\nback"}))).json();
    assert_eq!(body["output"][0]["content"][0]["text"], "echo  me\nback");
    assert_eq!(body["usage"]["output_tokens"], 3);
}

#[test]
fn responses_take_the_faults_and_usage_knobs() {
    let mock = Mock::start(&[]);
    let limited = mock.post("/v1/responses", &[("x-mock-status", "429")], &responses(json!({})));
    assert_eq!((limited.status, limited.header("retry-after")), (429, Some("1")));
    assert_eq!(limited.json()["error"]["code"], "rate_limit_exceeded");
    let omitted = mock.post("/v1/responses", &[("x-mock-omit-usage", "1")], &responses(json!({"stream": true})));
    assert_eq!(responses_events(&omitted).last().unwrap()["response"]["usage"], Value::Null);
    let served = mock.post("/v1/responses", &[("x-mock-served-model", "gpt-x")], &responses(json!({}))).json();
    assert_eq!(served["model"], "gpt-x");
    let invalid = mock.post("/v1/responses", &[], &json!({"input": "no model"}));
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json()["error"]["type"], "invalid_request_error");

    let mut stream = mock.connect();
    let body = responses(json!({"stream": true})).to_string();
    stream.write_all(&request_bytes("POST", "/v1/responses", &[("x-mock-reset-after-events", "4")], &body)).unwrap();
    let (received, was_reset) = read_until_end(&mut stream);
    assert!(was_reset);
    assert_eq!(String::from_utf8_lossy(&received).matches("event: response.").count(), 4);
}

// --- OpenAI Embeddings --------------------------------------------------------------------------

/// Each `"embedding":[…]` array of the raw body, its numbers read with Rust's exact float parser
/// (serde_json's default one may be off by one unit in the last place).
fn raw_vectors(reply: &Reply) -> Vec<Vec<f64>> {
    let text = reply.text();
    text.split("\"embedding\":[")
        .skip(1)
        .map(|rest| rest.split(']').next().unwrap().split(',').map(|n| n.parse().unwrap()).collect())
        .collect()
}

/// Standard base64 of little-endian float32 values, decoded (what the SDKs do).
fn decode_base64_floats(text: &str) -> Vec<f64> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits: Vec<u32> =
        text.bytes().filter(|b| *b != b'=').map(|b| ALPHABET.iter().position(|a| *a == b).unwrap() as u32).collect();
    let mut bytes = Vec::new();
    for group in digits.chunks(4) {
        let bits = group.iter().enumerate().fold(0u32, |acc, (i, d)| acc | d << (18 - 6 * i));
        bytes.extend_from_slice(&bits.to_be_bytes()[1..group.len()]);
    }
    bytes.chunks(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))).collect()
}

#[test]
fn embeddings_have_the_real_shape_unit_vectors_and_prompt_token_usage() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "text-embedding-3-small", "input": ["Hello, gateway!", "abc", "Hello, gateway!"], "encoding_format": "float"});
    let reply = mock.post("/v1/embeddings", &[], &body);
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-request-id").is_some());
    let list = reply.json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["model"], "text-embedding-3-small");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (index, (item, vector)) in data.iter().zip(raw_vectors(&reply)).enumerate() {
        assert_eq!((item["object"].as_str(), item["index"].as_u64()), (Some("embedding"), Some(index as u64)));
        assert_eq!(vector.len(), 1536);
        assert!((vector.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-5);
        assert!(vector.iter().all(|v| f64::from(*v as f32) == *v), "float32 values");
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"], "the same text, the same vector");
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    // ceil(15 / 4) + ceil(3 / 4) + ceil(15 / 4)
    assert_eq!(list["usage"], json!({"prompt_tokens": 4 + 1 + 4, "total_tokens": 9}));
    assert_eq!(mock.post("/v1/embeddings", &[], &body).body, reply.body, "deterministic");
}

#[test]
fn embeddings_in_base64_are_the_same_float32_values() {
    let mock = Mock::start(&[]);
    let request =
        |format: &str| json!({"model": "text-embedding-3-small", "input": "same text", "encoding_format": format});
    let float = mock.post("/v1/embeddings", &[], &request("float"));
    let base64 = mock.post("/v1/embeddings", &[], &request("base64")).json();
    let encoded = base64["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(decode_base64_floats(encoded), raw_vectors(&float)[0]);
    assert_eq!(base64["usage"], float.json()["usage"]);
}

#[test]
fn embeddings_honour_dimensions_and_take_token_arrays() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "text-embedding-3-large", "input": [[1, 2, 3], [4, 5]], "dimensions": 256, "encoding_format": "float"});
    let reply = mock.post("/v1/embeddings", &[], &body);
    let vectors = raw_vectors(&reply);
    assert_eq!(vectors.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256]);
    assert_eq!(reply.json()["usage"]["prompt_tokens"], 5);
    let native = json!({"model": "text-embedding-3-large", "input": [1, 2, 3], "encoding_format": "float"});
    let full = raw_vectors(&mock.post("/v1/embeddings", &[], &native)).remove(0);
    assert_eq!(full.len(), 3072);
    let short = &vectors[0];
    // Shortened like text-embedding-3: the native vector's prefix, scaled back to unit length.
    let scale = short[0] / full[0];
    assert!(short.iter().zip(&full).all(|(s, f)| (s - f * scale).abs() < 1e-5));
}

#[test]
fn embeddings_refuse_what_the_real_api_refuses_and_take_the_knobs() {
    let mock = Mock::start(&[]);
    let bad = [
        json!({"model": "text-embedding-3-small"}),
        json!({"model": "text-embedding-3-small", "input": ""}),
        json!({"model": "text-embedding-3-small", "input": []}),
        json!({"model": "text-embedding-3-small", "input": [1, "a"]}),
        json!({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}),
        json!({"model": "text-embedding-3-small", "input": "x", "dimensions": 1537}),
        json!({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}),
        json!({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}),
    ];
    for body in bad {
        let reply = mock.post("/v1/embeddings", &[], &body);
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
    let body = json!({"model": "text-embedding-3-small", "input": "x"});
    let limited = mock.post("/v1/embeddings", &[("x-mock-status", "503")], &body);
    assert_eq!((limited.status, limited.header("retry-after")), (503, Some("1")));
    assert!(mock.post("/v1/embeddings", &[("x-mock-omit-usage", "1")], &body).json().get("usage").is_none());
    let served = mock.post("/v1/embeddings", &[("x-mock-served-model", "my-embedder")], &body).json();
    assert_eq!(served["model"], "my-embedder");
}

#[test]
fn mock_usage_tallies_responses_and_embeddings_too() {
    let mock = Mock::start(&[]);
    mock.post("/v1/responses", &[], &responses(json!({"stream": true})));
    mock.post("/v1/responses", &[("x-mock-omit-usage", "1")], &responses(json!({})));
    mock.post("/v1/embeddings", &[], &json!({"model": "text-embedding-3-small", "input": ["abcd", "efgh"]}));
    let tally = mock.send("GET", "/_mock/usage", &[], "").json();
    assert_eq!(tally["answers"], 2);
    assert_eq!(tally["input_tokens"], RESPONSES_INPUT_TOKENS + 2);
    assert_eq!(tally["output_tokens"], 16);
    let rows = tally["by_usage"].as_array().unwrap();
    let embedding = rows.iter().find(|r| r["model"] == "text-embedding-3-small").unwrap();
    assert_eq!((embedding["input_tokens"].as_u64(), embedding["output_tokens"].as_u64()), (Some(2), Some(0)));
    let last = mock.send("GET", "/_mock/last", &[], "").json();
    assert_eq!(last["path"], "/v1/embeddings");
}
