//! What each fuzz target checks, as plain functions of the fuzzer's bytes. The targets in
//! `fuzz_targets/` call them; `tests/fuzz_regressions.rs` in the main crate includes this file
//! and replays every input saved under `fuzz/regressions/<target>/` through the same function, so
//! a crash once found stays fixed with a plain `cargo test`.
//!
//! Every check fails by panicking (the fuzzer's crash). Beyond "never panics", most check a
//! property of the code under test: chunking never changes what is read or sent, what is
//! accepted agrees with serde_json, edits give valid JSON, the fake host sees no hostcall the
//! real proxy would refuse and no request left hanging.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // checks fail loudly
#![allow(dead_code)] // the regression test uses every check, each fuzz target one

#[path = "../../tests/support/mod.rs"]
mod support;

use std::rc::Rc;

use serde_json::Value;
use support::{FakeHost, Profile};
use tollgate::config::{self, Policy};
use tollgate::dialect::{self, Api, CanonicalRequest};
use tollgate::exchange::Exchange;
use tollgate::filter::Filter;
use tollgate::guardrails::{self, Guardrails, RequestInput};
use tollgate::host_io::{Flow, HostIo};
use tollgate::names::{Counter, EXPORT_CHAIN, EXPORT_USAGE};
use tollgate::provider_request::Translation;
use tollgate::response_translation::{self, StreamTranslation};
use tollgate::sse::{SseEvent, SseFramer};
use tollgate::stream_meter::{ChunkEdit, StreamMeter};
use tollgate::{chain, json_edit, translate};

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// Every target by name, for the regression replay.
pub const TARGETS: [(&str, Check); 14] = [
    ("parse_request", parse_request),
    ("read_response", read_response),
    ("read_event", read_event),
    ("sse_framer", sse_framer),
    ("stream_meter", stream_meter),
    ("translate_request", translate_request),
    ("translate_response", translate_response),
    ("translate_stream", translate_stream),
    ("config", config_compile),
    ("json_edit", json_edit),
    ("exchange", exchange),
    ("attempt", attempt),
    ("guardrails_request", guardrails_request),
    ("guardrails_stream", guardrails_stream),
];

/// The fuzzer's bytes read front to back: control bytes first, the rest is payload. Reading
/// past the end gives zeros, so every input is valid.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    /// Up to `max` cut points, as fractions (x/256) of a payload's length.
    fn cuts(&mut self, max: u8) -> Vec<u8> {
        let count = self.byte() % (max + 1);
        (0..count).map(|_| self.byte()).collect()
    }

    fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// `bytes` split at the given fractions of its length (sorted; empty chunks allowed).
fn split<'b>(bytes: &'b [u8], cuts: &[u8]) -> Vec<&'b [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * bytes.len() / 256).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in at {
        chunks.push(&bytes[from..cut]);
        from = cut;
    }
    chunks.push(&bytes[from..]);
    chunks
}

const APIS: [Api; 4] = [Api::OpenAiChat, Api::OpenAiResponses, Api::OpenAiEmbeddings, Api::AnthropicMessages];

/// `dialect::parse_request` (the strict walk included) agrees with serde_json, for every API: what
/// it accepts parses as a JSON object and its canonical fields are that object's; a type error
/// names a member the object has.
pub fn parse_request(data: &[u8]) {
    let value = serde_json::from_slice::<Value>(data);
    for api in APIS {
        match (dialect::parse_request(api, data), &value) {
            (Ok(request), Ok(value)) => {
                assert!(value.is_object(), "accepted a non-object");
                assert_eq!(request.api, api);
                assert_eq!(request.model.as_deref(), value.get("model").and_then(Value::as_str));
                assert_eq!(request.stream, value.get("stream").and_then(Value::as_bool).unwrap_or(false));
                if let Some(limit) = request.max_output_tokens {
                    let written = &value[limit.field];
                    assert!(written.as_u64() == Some(limit.tokens) || written.as_f64() == Some(limit.tokens as f64));
                }
                if let Some(temperature) = request.sampling.temperature {
                    assert_eq!(value["temperature"].as_f64(), Some(temperature));
                }
                let mut strings = Vec::new();
                strings_in(&value["tools"], &mut strings);
                for tool in &request.tools {
                    let (dialect::Tool::Named(name) | dialect::Tool::BuiltIn(name)) = tool;
                    assert!(strings.contains(&name.as_str()), "a tool named by a string of its definition");
                }
            }
            (Ok(_), Err(err)) => panic!("accepted what serde_json refuses: {err}"),
            (Err(err), Ok(value)) if err.param.is_some() => {
                let param = err.param.unwrap_or_default();
                assert!(value.get(param).is_some_and(|v| !v.is_null()), "a type error names a member it has");
            }
            (Err(err), _) => assert!(!err.message.is_empty()),
        }
    }
}

fn strings_in<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, out)),
        Value::Object(fields) => fields.values().for_each(|item| strings_in(item, out)),
        _ => {}
    }
}

/// `Api::read_response` on any body, for every API.
pub fn read_response(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&APIS);
    let body = input.rest();
    let facts = api.read_response(body);
    match serde_json::from_slice::<Value>(body) {
        // Where the whole body parses, the read that skips the answer agrees with a full tree.
        Ok(value) if value.is_object() => {
            let usage = value.get("usage").filter(|u| !u.is_null());
            let tokens = match (api, usage) {
                (_, None) => Default::default(),
                (Api::AnthropicMessages, Some(u)) => dialect::anthropic::usage(u),
                (Api::OpenAiResponses, Some(u)) => dialect::openai::responses_usage(u),
                (_, Some(u)) => dialect::openai::chat_usage(u),
            };
            let model = value.get("model").and_then(Value::as_str).map(str::to_string);
            assert_eq!(facts, Some(dialect::ResponseFacts { model, tokens }));
        }
        Ok(_) => assert_eq!(facts, None),
        // Skipped members are not fully checked (invalid UTF-8 or a number out of range in the
        // answer's text still bills its usage); an object it must still be.
        Err(_) => assert!(facts.is_none() || body.trim_ascii_start().starts_with(b"{")),
    }
}

/// `Api::read_event` on any event name and data, for every API.
pub fn read_event(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&APIS);
    let rest = input.rest();
    let (name, payload) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b""[..], rest),
    };
    let event =
        SseEvent { event: String::from_utf8_lossy(name).into_owned(), data: payload.to_vec(), start: 0, end: 0 };
    let facts = api.read_event(&event);
    if facts.usage_only {
        // Unknown fields are skipped unbuilt for speed, and serde checks neither the UTF-8 of the
        // strings nor the range of the numbers it skips (`1e999` is fine to skip, not to build):
        // the event must be a JSON object in shape, as serde's own skipping reads it.
        let text = String::from_utf8_lossy(payload);
        let shaped = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        assert!(shaped && text.trim_start().starts_with('{'), "usage-only without a JSON object");
    }
}

/// The SSE framer gives the same events, byte ranges and issues however the stream is chunked.
pub fn sse_framer(data: &[u8]) {
    let mut input = Input::new(data);
    let max_event = usize::from(input.byte()) * 4 + 1;
    let cuts = input.cuts(8);
    let stream = input.rest();
    let frame = |chunks: &[&[u8]]| {
        let mut framer = SseFramer::new(max_event);
        let (mut events, mut issues) = (Vec::new(), Vec::new());
        for chunk in chunks {
            framer.feed(chunk, &mut events, &mut issues);
        }
        framer.finish(&mut events);
        (events, issues, framer.offset(), framer.has_partial_event())
    };
    let whole = frame(&[stream]);
    let chunked = frame(&split(stream, &cuts));
    assert_eq!(whole, chunked, "chunking changed what the framer read");
    assert_eq!(whole.2, stream.len() as u64, "every byte is counted");
    let mut last_end = 0;
    for event in &whole.0 {
        assert!(last_end <= event.start && event.start < event.end && event.end <= stream.len() as u64);
        last_end = event.end;
    }
}

/// The stream meter: observing changes no byte; dropping the usage chunk gives the same bytes
/// and counts however the stream is chunked, and only ever removes bytes.
pub fn stream_meter(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&APIS);
    let strip = input.byte() & 1 == 1;
    let max_event = usize::from(input.u16()) + 1;
    let cuts = input.cuts(8);
    let stream = input.rest();
    let run = |chunks: &[&[u8]]| {
        let mut meter = StreamMeter::new(api, strip, max_event);
        let mut out = Vec::new();
        for chunk in chunks {
            match meter.feed(chunk) {
                ChunkEdit::Unchanged => out.extend_from_slice(chunk),
                ChunkEdit::Replace(bytes) => {
                    assert!(strip, "an observer edited the stream");
                    out.extend_from_slice(&bytes);
                }
            }
        }
        match meter.finish() {
            ChunkEdit::Unchanged => {}
            ChunkEdit::Replace(bytes) => out.extend_from_slice(&bytes),
        }
        (out, meter.tokens(), meter.model().map(str::to_string), meter.completed(), meter.generated().1)
    };
    let whole = run(&[stream]);
    let chunked = run(&split(stream, &cuts));
    assert_eq!(whole, chunked, "chunking changed the meter's output or counts");
    if strip {
        assert!(whole.0.len() <= stream.len());
    } else {
        assert_eq!(whole.0, stream);
    }
}

/// Request translation both ways: no panic, and what comes out is a JSON object.
pub fn translate_request(data: &[u8]) {
    let mut input = Input::new(data);
    let to_anthropic = input.byte() & 1 == 0;
    let max_tokens = u32::from(input.u16()) + 1;
    let body = input.rest();
    let result = if to_anthropic {
        translate::openai_chat_to_anthropic(body, "claude-haiku-4-5", max_tokens)
    } else {
        translate::anthropic_to_openai_chat(body, "gpt-4o-mini")
    };
    match result {
        Ok(translated) => {
            let value: Value = serde_json::from_slice(&translated.body).expect("a translated request is JSON");
            assert!(value.is_object());
        }
        Err(err) => assert!(!err.message.is_empty()),
    }
}

/// Complete answers and errors, both ways: JSON objects out, error statuses stay errors.
pub fn translate_response(data: &[u8]) {
    let mut input = Input::new(data);
    let translation = input.pick(&[Translation::OpenAiToAnthropic, Translation::AnthropicToOpenAi]);
    let status = 400 + input.u16() % 200;
    let body = input.rest();
    if let Ok(translated) = response_translation::translate_body(translation, body, 1_700_000_000) {
        let value: Value = serde_json::from_slice(&translated).expect("a translated answer is JSON");
        assert!(value.is_object());
    }
    let reply = response_translation::translate_error(translation, status, body);
    assert!((400..600).contains(&reply.status), "status {status} became {}", reply.status);
    let value: Value = serde_json::from_slice(&reply.body).expect("a translated error is JSON");
    assert!(value.is_object());
}

/// Stream translation gives the same client bytes however the provider's stream is chunked.
pub fn translate_stream(data: &[u8]) {
    let mut input = Input::new(data);
    let translation = input.pick(&[Translation::OpenAiToAnthropic, Translation::AnthropicToOpenAi]);
    let include_usage = input.byte() & 1 == 1;
    let max_event = usize::from(input.u16()) + 1;
    let cuts = input.cuts(8);
    let stream = input.rest();
    let run = |chunks: &[&[u8]]| {
        let mut translator = StreamTranslation::new(translation, include_usage, 1_700_000_000, max_event);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(translator.feed(chunk));
        }
        out.extend(translator.finish());
        out
    };
    let whole = run(&[stream]);
    assert_eq!(whole, run(&split(stream, &cuts)), "chunking changed the translated stream");
    // Identity of the text: a stream translated to its end without an error carries exactly the
    // provider's text and tool arguments, read here from each dialect's events.
    let provider = match translation {
        Translation::OpenAiToAnthropic => Api::AnthropicMessages,
        Translation::AnthropicToOpenAi => Api::OpenAiChat,
    };
    let client = if provider == Api::OpenAiChat { Api::AnthropicMessages } else { Api::OpenAiChat };
    if let (Some(sent), Some(got)) = (stream_text(provider, stream, max_event), stream_text(client, &whole, usize::MAX))
    {
        if !got.errored && sent.ended {
            assert_eq!(got.text, sent.text, "translation changed the text");
            assert_eq!(got.arguments, sent.arguments, "translation changed the tool arguments");
        }
    }
}

/// The generated text of a stream, as a client of `api` would put it together.
struct StreamText {
    text: String,
    arguments: String,
    /// The stream's final event came.
    ended: bool,
    errored: bool,
}

/// Reads a stream's text with the SSE framer and serde_json alone, only up to its final event;
/// `None` when an event is not JSON or over `max_event` (translation ends the stream there).
fn stream_text(api: Api, bytes: &[u8], max_event: usize) -> Option<StreamText> {
    let mut framer = SseFramer::new(max_event);
    let (mut events, mut issues) = (Vec::new(), Vec::new());
    framer.feed(bytes, &mut events, &mut issues);
    framer.finish(&mut events);
    if !issues.is_empty() {
        return None;
    }
    let mut read = StreamText { text: String::new(), arguments: String::new(), ended: false, errored: false };
    let mut text_blocks = Vec::new();
    for event in &events {
        if read.ended {
            break;
        }
        if event.data == b"[DONE]" {
            read.ended = true;
            continue;
        }
        let value: Value = serde_json::from_slice(&event.data).ok()?;
        let kind = value.get("type").and_then(Value::as_str).unwrap_or(&event.event);
        match api {
            Api::AnthropicMessages => match kind {
                "content_block_start" => {
                    let block = value.get("content_block");
                    let kind = block.and_then(|b| b.get("type")).and_then(Value::as_str);
                    if kind == Some("text") {
                        read.text += block.and_then(|b| b.get("text")).and_then(Value::as_str).unwrap_or("");
                    }
                    text_blocks.push((value.get("index").and_then(Value::as_u64), kind.map(str::to_string)));
                }
                "content_block_delta" => {
                    // Text counts whatever started its block (a client shows text it gets);
                    // tool input only inside a started tool call.
                    let index = value.get("index").and_then(Value::as_u64);
                    let started = text_blocks.iter().rev().find(|(i, _)| *i == index).and_then(|(_, t)| t.clone());
                    let delta = value.get("delta");
                    match (started.as_deref(), delta.and_then(|d| d.get("type")).and_then(Value::as_str)) {
                        (started, Some("text_delta")) if started != Some("tool_use") => {
                            read.text += delta.and_then(|d| d.get("text")).and_then(Value::as_str).unwrap_or("")
                        }
                        (Some("tool_use"), Some("input_json_delta")) => {
                            read.arguments +=
                                delta.and_then(|d| d.get("partial_json")).and_then(Value::as_str).unwrap_or("")
                        }
                        _ => {}
                    }
                }
                "message_stop" => read.ended = true,
                "error" => read.errored = true,
                _ => {}
            },
            _ => {
                if value.get("error").is_some_and(|e| !e.is_null()) {
                    read.errored = true;
                }
                let choices = value.get("choices").and_then(Value::as_array);
                let first =
                    choices.into_iter().flatten().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
                let delta = first.and_then(|c| c.get("delta"));
                read.text += delta.and_then(|d| d.get("content")).and_then(Value::as_str).unwrap_or("");
                for call in delta.and_then(|d| d.get("tool_calls")).and_then(Value::as_array).into_iter().flatten() {
                    read.arguments +=
                        call.get("function").and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("");
                }
            }
        }
    }
    Some(read)
}

/// The configuration parser: no panic; an accepted configuration compiles the same twice.
pub fn config_compile(data: &[u8]) {
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("key-{name}"));
    match config::compile_with_env(data, &env) {
        Ok(policy) => {
            assert!(policy.max_request_body_bytes >= 1 && policy.max_request_body_bytes <= config::MAX_BODY_LIMIT);
            let again = config::compile_with_env(data, &env).expect("compiles again");
            assert_eq!(again.headers, policy.headers);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(plan) = chain::ChainPlan::from_json(text) {
            assert_eq!(chain::ChainPlan::from_json(&plan.to_json()), Some(plan));
        }
    }
}

/// The byte-preserving JSON editor, on bodies the strict parser accepted (as in the filter):
/// the edit lands on the member the parser read, and the rest is unchanged.
pub fn json_edit(data: &[u8]) {
    // The tree's string decoder against serde_json, on the bytes as a string literal.
    let literal = [&b"\""[..], data, b"\""].concat();
    let reference = serde_json::from_slice::<String>(&literal).ok();
    let decoded = tollgate::json_tree::decode_string(&literal).map(std::borrow::Cow::into_owned);
    if reference.is_some() || !data.iter().any(|b| *b < 0x20 || *b == b'"') {
        assert_eq!(decoded, reference, "a string the tree decodes unlike serde_json");
    }
    let Ok(request) = dialect::parse_request(Api::OpenAiChat, data) else { return };
    let before: Value = serde_json::from_slice(data).expect("accepted bodies are JSON");
    if let Some(edited) = json_edit::replace_value(data, "model", "\"fuzz-model\"") {
        assert!(request.model.is_some() || before.get("model").is_some());
        let after: Value = serde_json::from_slice(&edited).expect("an edited body is JSON");
        assert_eq!(after["model"], "fuzz-model");
        let (mut a, mut b) = (before.clone(), after);
        a.as_object_mut().unwrap().remove("model");
        b.as_object_mut().unwrap().remove("model");
        assert_eq!(a, b, "only the model changed");
    } else {
        assert!(before.get("model").is_none(), "a model the editor could not find");
    }
    if before.get("stream_options").is_none() {
        let edited = json_edit::insert_first(data, "stream_options", r#"{"include_usage":true}"#)
            .expect("an object takes a first member");
        let after: Value = serde_json::from_slice(&edited).expect("an edited body is JSON");
        assert_eq!(after["stream_options"]["include_usage"], true);
    }
    if let Some(with_usage) = dialect::openai::with_include_usage(data) {
        let request =
            dialect::parse_request(Api::OpenAiChat, &with_usage).expect("the body with usage is still accepted");
        assert!(request.include_usage);
    }
}

/// Policies the whole exchange is fuzzed under: defaults; a routing policy with both dialects,
/// translation, tenants, a deny list and a fallback chain; tiny limits; fail-open per route;
/// guardrails of every kind (a shadow policy too) on a route translated to Anthropic.
const POLICIES: [&str; 5] = [
    "{}",
    r#"{"providers": {
          "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-fuzz-openai"}},
          "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-fuzz-anthropic"}}},
        "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini", "context_window": 100},
                    "big": {"provider": "openai", "model": "gpt-4.1"},
                    "haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"},
                    "anthropic": {"provider": "anthropic"}},
        "models": {"deny": ["*-realtime*"]},
        "tenant": {"header": "x-tenant-id", "team_header": "x-team"},
        "rules": [
          {"match": {"model": "fast"}, "targets": ["mini"], "overflow": ["big"]},
          {"match": {"model": "smart"}, "targets": ["haiku"]},
          {"match": {"model": "chain"}, "targets": ["mini", "haiku"], "fallback_cluster": "llm_fallback"},
          {"match": {"model": "gpt-4.1*"}, "deny": {"status": 403, "message": "no"}},
          {"match": {"model": "claude-*"}, "targets": ["anthropic"]},
          {"match": {"model": "split"}, "split": [{"targets": ["mini"], "weight": 1}, {"targets": ["haiku"], "weight": 1}]}]}"#,
    r#"{"max_request_body_bytes": 64, "max_response_body_bytes": 64, "max_stream_event_bytes": 32, "include_usage": false}"#,
    r#"{"failure_mode": {"default": "open", "routes": {"public": "closed"}}, "header_prefix": "x-gw-"}"#,
    r#"{"providers": {"anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-fuzz-anthropic"}}},
        "targets": {"haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
        "rules": [{"match": {"model": "smart"}, "targets": ["haiku"]}],
        "guardrails": {"max_stream_hold_bytes": 256, "policies": [
          {"name": "privacy", "checks": [
            {"name": "pii", "detectors": ["pii"], "action": "mask_and_restore"},
            {"name": "secrets", "detectors": ["secrets"], "action": "block"},
            {"name": "words", "keywords": ["forbidden"], "action": "mask"},
            {"name": "tickets", "deny": ["TCK-[0-9]{3}"], "action": "flag"},
            {"name": "clamp", "clamp": {"max_tokens": 8, "temperature": [0, 1]}, "action": "clamp"},
            {"name": "tools", "tools": {"deny": ["shell*"]}, "action": "block"},
            {"name": "args", "tool_arguments": "json", "action": "block"},
            {"name": "size", "limits": {"max_messages": 4, "max_chars": 2000}, "action": "block"}]},
          {"name": "trial", "shadow": true, "checks": [
            {"name": "injection", "detectors": ["prompt_injection"], "action": "block"}]}]}}"#,
];

const PATHS: [&str; 6] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/models",
    "/v1/chat/completions?x=1",
];
const MODELS: [&str; 7] = ["fast", "smart", "chain", "split", "gpt-4o-mini", "claude-haiku-4-5", "gpt-4o-realtime"];
const CONTENT_TYPES: [&str; 4] = ["application/json", "text/event-stream", "text/html", ""];
const STATUSES: [&str; 6] = ["200", "200", "429", "500", "529", "x"];

thread_local! {
    static POLICY_CACHE: std::cell::RefCell<Vec<Rc<Policy>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn policy(index: usize) -> Rc<Policy> {
    POLICY_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.is_empty() {
            for text in POLICIES {
                cache.push(Rc::new(config::compile(text.as_bytes()).expect("fuzz policies are valid")));
            }
        }
        Rc::clone(&cache[index % cache.len()])
    })
}

/// A request body: the fuzzer's bytes as they are, or a well-formed request around them.
fn request_body(mode: u8, model: &str, payload: &[u8]) -> Vec<u8> {
    if mode % 3 == 0 {
        return payload.to_vec();
    }
    let text = String::from_utf8_lossy(payload);
    let stream = mode % 3 == 2;
    let body = serde_json::json!({"model": model, "stream": stream, "max_tokens": 16,
                                  "messages": [{"role": "user", "content": text}]});
    body.to_string().into_bytes()
}

/// A whole exchange through the fake Envoy or Kong: any request, any answer, any chunking, cut
/// or not, hostcalls refused or not. Never a panic, never a hostcall the proxy would refuse, never
/// a request or response left hanging (but the documented hold when even a local reply is
/// refused), and one usage record for every request that was read.
pub fn exchange(data: &[u8]) {
    let mut input = Input::new(data);
    let profile = input.pick(&[Profile::Envoy, Profile::EnvoyEmptyEnd, Profile::Kong]);
    let policy_index = usize::from(input.byte());
    let path = input.pick(&PATHS);
    let method = input.pick(&["POST", "POST", "POST", "GET", "PUT"]);
    let model = input.pick(&MODELS);
    let body_mode = input.byte();
    let refusals = input.byte();
    let extra_headers = input.byte();
    let status = input.pick(&STATUSES);
    let content_type = input.pick(&CONTENT_TYPES);
    let cut = input.byte() % 4 == 0;
    let request_cuts = input.cuts(4);
    let response_cuts = input.cuts(6);
    let split_at = usize::from(input.u16());
    let payload = input.rest();
    let (request_payload, response_payload) = payload.split_at(split_at.min(payload.len()));

    let mut host = FakeHost::new(profile);
    let refusable = ["request_body", "replace_request_body", "send_reply"];
    for (bit, name) in refusable.iter().enumerate() {
        if refusals & (1 << bit) != 0 && refusals & 0x80 != 0 {
            host.refuse.push(name);
        }
    }
    host.route_name = Some(if extra_headers & 1 == 1 { "public" } else { "team-a" }.to_string());
    let policy = policy(policy_index);
    let spoofed_cluster = format!("{}cluster", policy.headers.prefix);
    let body = request_body(body_mode, model, request_payload);
    let length = body.len().to_string();
    let mut headers = vec![(":method", method), (":path", path), ("content-type", "application/json")];
    if extra_headers & 2 != 0 {
        headers.push(("content-length", &length));
    }
    if extra_headers & 4 != 0 {
        headers.push(("x-tenant-id", "acme"));
    }
    if extra_headers & 8 != 0 {
        headers.push((&spoofed_cluster, "spoofed"));
    }
    if extra_headers & 16 != 0 {
        headers.push(("content-encoding", "gzip"));
    }
    if extra_headers & 32 != 0 {
        headers.push(("authorization", "Bearer client-key"));
    }
    let mut ex = Exchange::new(7, policy);
    host.request(&mut ex, &headers, &split(&body, &request_cuts));
    let held_on_purpose = host.refuse.contains(&"send_reply");
    if !held_on_purpose {
        assert!(host.violations.is_empty(), "request: {:?}", host.violations);
    }
    if host.upstream_headers_released {
        assert_eq!(host.upstream_header(&spoofed_cluster).filter(|c| *c == "spoofed"), None, "spoofed cluster");
    }
    if host.reply.is_some() || host.upstream_headers_released {
        let response_headers = [(":status", status), ("content-type", content_type)];
        let chunks = split(response_payload, &response_cuts);
        if cut {
            host.response_cut(&mut ex, &response_headers, &chunks);
        } else {
            host.response(&mut ex, &response_headers, &chunks);
        }
    } else {
        ex.on_done(&mut host);
    }
    if !held_on_purpose {
        assert!(host.violations.is_empty(), "response: {:?}", host.violations);
    }
    if host.counter(Counter::RequestsInspected) == 1 {
        let record = host.exports.get(EXPORT_USAGE).expect("every request read has a usage record");
        let record: Value = serde_json::from_str(record).expect("the record is JSON");
        assert!(record["outcome"].is_string());
    }
    let secrets = ["sk-fuzz-openai", "sk-fuzz-anthropic"];
    let client_saw = [host.client_body(), format!("{:?}", host.client_headers).into_bytes()].concat();
    // (Unless the fuzzer wrote the key into the request or the answer itself.)
    for secret in secrets.into_iter().filter(|s| !contains(data, s.as_bytes())) {
        assert!(!contains(&client_saw, secret.as_bytes()), "a provider key reached the client");
        assert!(host.exports.values().all(|v| !v.contains(secret)), "a provider key was exported");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One fallback attempt (the upstream filter) with any plan in filter state, any body and any
/// answer. Never a panic; only hostcalls the proxy allows.
pub fn attempt(data: &[u8]) {
    let mut input = Input::new(data);
    let provider = input.pick(&["openai", "anthropic", "missing"]);
    let plan_mode = input.byte();
    let status = input.pick(&STATUSES);
    let content_type = input.pick(&CONTENT_TYPES);
    let body_mode = input.byte();
    let model = input.pick(&MODELS);
    let split_at = usize::from(input.u16());
    let response_cuts = input.cuts(6);
    let payload = input.rest();
    let (plan_bytes, rest) =
        if plan_mode & 1 == 1 { payload.split_at(split_at.min(payload.len())) } else { (&b""[..], payload) };
    let (request_payload, response_payload) = rest.split_at((split_at / 2).min(rest.len()));

    let upstream = format!(
        "{{\"position\": \"upstream\", {}",
        POLICIES[1].trim_start().strip_prefix('{').expect("policy 1 is an object")
    );
    let policy = Rc::new(config::compile(upstream.as_bytes()).expect("the upstream policy is valid"));
    let mut filter = Filter::new(3, policy);
    let mut host = FakeHost::new(Profile::Envoy);
    let plan = if plan_mode & 1 == 1 {
        String::from_utf8_lossy(plan_bytes).into_owned()
    } else {
        let api = if plan_mode & 2 == 0 { "openai.chat" } else { "anthropic.messages" };
        format!(
            r#"{{"api": "{api}", "query": null, "steps": [{{"provider": "openai", "model": "gpt-4o-mini"}},
                                                          {{"provider": "anthropic", "model": "claude-haiku-4-5"}}]}}"#
        )
    };
    host.export(EXPORT_CHAIN, &plan);
    host.upstream_provider = Some(provider.to_string());
    let body = request_body(body_mode, model, request_payload);
    let path = if plan.contains("anthropic.messages") { "/v1/messages" } else { "/v1/chat/completions" };
    host.set_request_headers(&[(":method", "POST"), (":path", path), ("authorization", "Bearer prev")]);
    host.set_request_buffer(&body);
    if filter.on_request_headers(&mut host, false) == Flow::Pause {
        filter.on_request_body(&mut host, body.len(), true);
    }
    host.set_response_headers(&[(":status", status), ("content-type", content_type)]);
    let chunks = split(response_payload, &response_cuts);
    if filter.on_response_headers(&mut host, false) == Flow::Pause {
        // Held headers: Envoy buffers the body and shows the filter the whole of it so far.
        let mut buffered = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            buffered.extend_from_slice(chunk);
            host.set_response_buffer(&buffered);
            let last = i + 1 == chunks.len();
            if filter.on_response_body(&mut host, buffered.len(), last) == Flow::Continue {
                assert!(last, "released before the end");
            }
        }
    } else {
        for chunk in chunks {
            host.set_response_buffer(chunk);
            assert_eq!(filter.on_response_body(&mut host, chunk.len(), false), Flow::Continue);
        }
        host.set_response_buffer(b"");
        filter.on_response_body(&mut host, 0, true);
    }
    for secret in ["sk-fuzz-openai", "sk-fuzz-anthropic"].into_iter().filter(|s| !contains(data, s.as_bytes())) {
        assert!(!contains(host.response_buffer(), secret.as_bytes()), "a provider key in the answer");
    }
}

/// Guardrails of every kind: the request checks and the response guard are fuzzed under them.
const GUARDRAILS: &str = r#"{"max_stream_hold_bytes": 256, "policies": [
  {"name": "privacy", "checks": [
    {"name": "pii", "detectors": ["pii"], "action": "mask_and_restore"},
    {"name": "secrets", "detectors": ["secrets"], "action": "block"},
    {"name": "words", "keywords": ["forbidden", "top secret"], "action": "mask"},
    {"name": "tickets", "deny": ["TCK-[0-9]{3}", "(?i)drop\\s+table"], "action": "flag"},
    {"name": "only-ascii", "allow": ["^[ -~]*$"], "action": "flag"},
    {"name": "custom", "deny": ["x+y"], "scope": {"jsonpath": ["$.metadata", "$..note"]}, "action": "mask"},
    {"name": "clamp", "clamp": {"max_tokens": 8, "temperature": [0, 1]}, "action": "clamp"},
    {"name": "tools", "tools": {"deny": ["shell*"]}, "action": "block"},
    {"name": "args", "tool_arguments": "json", "action": "block"},
    {"name": "size", "limits": {"max_messages": 64, "max_chars": 100000, "max_prompt_tokens": 50000}, "action": "block"}]},
  {"name": "trial", "shadow": true, "checks": [
    {"name": "injection", "detectors": ["prompt_injection"], "action": "block"},
    {"name": "emails-out", "detectors": ["email"], "on": "response", "action": "mask"}]}]}"#;

thread_local! {
    static GUARDRAIL_CACHE: Rc<Guardrails> =
        Rc::new(guardrails::parse(serde_json::from_str(GUARDRAILS).expect("JSON")).expect("fuzz guardrails are valid"));
}

/// The request checks on any body, each API: never a panic; a rewritten body is JSON whenever
/// the input was, and the same input always gets the same verdict.
pub fn guardrails_request(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&APIS);
    let body = input.rest();
    let g = GUARDRAIL_CACHE.with(Rc::clone);
    let allowed = |model: &str| !model.contains("realtime");
    // As the exchange reads it, except that a body the exchange refuses is checked too, with an
    // empty canonical request (and no text when it is not JSON at all).
    let mut request = dialect::parse_request(api, body).unwrap_or_else(|_| CanonicalRequest::new(api));
    request.model = Some("gpt-4o".into());
    let text = request.text(body).ok();
    let check = || {
        g.check_request(&RequestInput {
            request: &request,
            text: text.as_ref(),
            route: None,
            prompt_tokens: body.len() as u64 / 4,
            model_allowed: Some(&allowed),
        })
    };
    let outcome = check();
    let again = check();
    assert_eq!(outcome.block, again.block, "the same verdict twice");
    assert_eq!(outcome.body, again.body, "the same rewrite twice");
    if let (Some(rewritten), true) = (&outcome.body, serde_json::from_slice::<Value>(body).is_ok()) {
        assert!(outcome.block.is_none(), "a refused request is not rewritten");
        serde_json::from_slice::<Value>(rewritten).expect("a rewritten body is JSON");
    }
}

/// The response guard on any stream, each API, cut anywhere, after a request that pseudonymised
/// an email: the client gets the same bytes however the provider's bytes were chunked.
pub fn guardrails_stream(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&[Api::OpenAiChat, Api::OpenAiResponses, Api::AnthropicMessages]);
    let cuts = input.cuts(8);
    let stream = input.rest();
    let g = GUARDRAIL_CACHE.with(Rc::clone);
    let request = match api {
        Api::AnthropicMessages => {
            br#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"mail jane.doe@example.com"}]}"#
                .to_vec()
        }
        Api::OpenAiResponses => br#"{"model":"m","input":"mail jane.doe@example.com"}"#.to_vec(),
        _ => br#"{"model":"m","messages":[{"role":"user","content":"mail jane.doe@example.com"}]}"#.to_vec(),
    };
    let canonical = dialect::parse_request(api, &request).expect("a valid request");
    let text = canonical.text(&request).expect("a valid request");
    let outcome = g.check_request(&RequestInput::new(&canonical, Some(&text)));
    let Some(response) = outcome.response else { panic!("the request masked an email: a response guard follows") };
    let run = |chunks: &[&[u8]]| {
        let mut guard = response.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(guard.feed(chunk));
        }
        out.extend(guard.finish());
        (out, guard.block().cloned(), guard.decisions())
    };
    let whole = run(&[stream]);
    let chunked = run(&split(stream, &cuts));
    assert_eq!(whole.0, chunked.0, "chunking changed what the client gets");
    assert_eq!(whole.1, chunked.1, "chunking changed the verdict");
    assert_eq!(whole.2, chunked.2, "chunking changed the decisions");
    // Identity: after a request that masked nothing (no placeholder to restore), a stream in
    // which no check changed anything reaches the client byte for byte, whatever it holds.
    let plain = match api {
        Api::AnthropicMessages => {
            br#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#.to_vec()
        }
        Api::OpenAiResponses => br#"{"model":"m","input":"hi"}"#.to_vec(),
        _ => br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
    };
    let canonical = dialect::parse_request(api, &plain).expect("a valid request");
    let text = canonical.text(&plain).expect("a valid request");
    let outcome = g.check_request(&RequestInput::new(&canonical, Some(&text)));
    let Some(response) = outcome.response else { panic!("response checks apply: a response guard follows") };
    let mut guard = response.stream();
    let mut out = Vec::new();
    for chunk in split(stream, &cuts) {
        out.extend(guard.feed(chunk));
    }
    out.extend(guard.finish());
    let changed =
        guard.block().is_some() || guard.decisions().iter().any(|d| !d.shadow && d.action != guardrails::Action::Flag);
    if !changed {
        assert!(out == stream, "nothing found, yet the client's bytes differ from the provider's");
    }
}
