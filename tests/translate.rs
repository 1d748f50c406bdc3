//! Translation between OpenAI Chat Completions and Anthropic Messages on realistic payloads
//! (tests/fixtures/translate/): each translation matches its reviewed golden file, round trips
//! keep what the README says they keep, and streams give the same bytes however the upstream
//! chunks them, emitting each event's translation as soon as that event is complete.
//!
//! Golden files are `<fixture>.<direction>.json|sse` beside the fixture. After an intended
//! change, rewrite them with `TOLLGATE_BLESS=1 cargo test --test translate` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::path::PathBuf;

use serde_json::{json, Value};
use tollgate::sse::{SseEvent, SseFramer};
use tollgate::translate::{
    anthropic_error_to_openai, anthropic_response_to_openai_chat, anthropic_to_openai_chat,
    openai_chat_response_to_anthropic, openai_chat_to_anthropic, openai_error_to_anthropic, AnthropicToOpenAiStream,
    EventTranslator, OpenAiToAnthropicStream, SseTranslator,
};

const CREATED: u64 = 1_753_982_400;
const MAX_EVENT_BYTES: usize = 1 << 20;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compares with the golden file, or rewrites it when blessing.
fn golden(name: &str, actual: &[u8]) {
    let path = fixture_path(&format!("translate/{name}"));
    if std::env::var_os("TOLLGATE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e} (bless with TOLLGATE_BLESS=1)"));
    assert!(
        expected == actual,
        "{name} differs from its golden file:\n--- expected\n{}\n--- actual\n{}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

fn golden_json(name: &str, body: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(body).unwrap();
    let mut pretty = serde_json::to_vec_pretty(&value).unwrap();
    pretty.push(b'\n');
    golden(name, &pretty);
    value
}

fn to_anthropic_stream() -> OpenAiToAnthropicStream {
    OpenAiToAnthropicStream::new(None)
}

fn to_openai_stream() -> AnthropicToOpenAiStream {
    AnthropicToOpenAiStream::new(None, CREATED, true)
}

/// Translates a stream fed in the given chunks; returns the output of each chunk, then finish's.
fn translate_chunks<T: EventTranslator>(translator: T, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut translator = SseTranslator::new(translator, MAX_EVENT_BYTES);
    let mut outputs: Vec<Vec<u8>> = chunks.iter().map(|chunk| translator.feed(chunk)).collect();
    outputs.push(translator.finish());
    outputs
}

fn translate_stream<T: EventTranslator>(translator: T, stream: &[u8]) -> Vec<u8> {
    translate_chunks(translator, &[stream]).concat()
}

fn events(stream: &[u8]) -> Vec<SseEvent> {
    let (mut events, mut issues) = (Vec::new(), Vec::new());
    let mut framer = SseFramer::new(MAX_EVENT_BYTES);
    framer.feed(stream, &mut events, &mut issues);
    framer.finish(&mut events);
    assert!(issues.is_empty());
    events
}

/// What an Anthropic client ends up with after a stream, built the way the SDK accumulates it.
fn accumulate_anthropic(stream: &[u8]) -> Value {
    let mut message = json!(null);
    let mut partial_json: Vec<String> = Vec::new();
    for event in events(stream) {
        let data: Value = serde_json::from_slice(&event.data).unwrap();
        assert_eq!(data["type"], event.event.as_str(), "every event names its type on its event line");
        match event.event.as_str() {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                message["content"].as_array_mut().unwrap().push(data["content_block"].clone());
                partial_json.push(String::new());
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][index];
                match data["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        block["text"] = json!(format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            data["delta"]["text"].as_str().unwrap()
                        ))
                    }
                    "input_json_delta" => partial_json[index].push_str(data["delta"]["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap() as usize;
                if !partial_json[index].is_empty() {
                    message["content"][index]["input"] = serde_json::from_str(&partial_json[index]).unwrap();
                }
            }
            "message_delta" => {
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                for (key, value) in data["usage"].as_object().unwrap() {
                    message["usage"][key] = value.clone();
                }
            }
            "message_stop" | "ping" => {}
            "error" => message["error"] = data["error"].clone(),
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

/// What an OpenAI client ends up with after a stream: content, tool calls, finish reason, usage.
fn accumulate_openai(stream: &[u8]) -> Value {
    let mut completion = json!({"content": "", "tool_calls": [], "finish_reason": null, "usage": null, "done": false});
    for event in events(stream) {
        assert!(event.event.is_empty(), "OpenAI chunks have no event name");
        if event.data == b"[DONE]" {
            completion["done"] = json!(true);
            continue;
        }
        let chunk: Value = serde_json::from_slice(&event.data).unwrap();
        if chunk.get("error").is_some() {
            completion["error"] = chunk["error"].clone();
            continue;
        }
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if !chunk["usage"].is_null() {
            completion["usage"] = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().unwrap() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                completion["content"] = json!(format!("{}{text}", completion["content"].as_str().unwrap()));
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap() as usize;
                let calls = completion["tool_calls"].as_array_mut().unwrap();
                if index == calls.len() {
                    calls.push(json!({"id": call["id"], "name": call["function"]["name"], "arguments": ""}));
                }
                let arguments = format!(
                    "{}{}",
                    calls[index]["arguments"].as_str().unwrap(),
                    call["function"]["arguments"].as_str().unwrap_or("")
                );
                calls[index]["arguments"] = json!(arguments);
            }
            if !choice["finish_reason"].is_null() {
                completion["finish_reason"] = choice["finish_reason"].clone();
            }
        }
    }
    completion
}

// ---- requests ----

#[test]
fn an_openai_request_with_tools_images_and_tool_results_translates_to_its_golden_anthropic_request() {
    let translated =
        openai_chat_to_anthropic(&fixture("translate/openai_request.json"), "claude-sonnet-4-5", 4096).unwrap();
    let value = golden_json("openai_request.to_anthropic.json", &translated.body);
    assert_eq!(
        translated.notes,
        ["image_url.detail: dropped (Anthropic has no detail setting)", "seed: dropped (Anthropic has no counterpart)"]
    );
    let roles: Vec<_> = value["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "roles alternate");
}

#[test]
fn an_openai_request_survives_a_round_trip_but_for_the_documented_changes() {
    let there = openai_chat_to_anthropic(&fixture("translate/openai_request.json"), "claude-sonnet-4-5", 4096).unwrap();
    let back = anthropic_to_openai_chat(&there.body, "gpt-4o").unwrap();
    let value = golden_json("openai_request.round_trip.json", &back.body);
    let original: Value = serde_json::from_slice(&fixture("translate/openai_request.json")).unwrap();
    // Tool calls and results, tools, stop, sampling and user come back as they were.
    for key in [
        "stop",
        "temperature",
        "top_p",
        "user",
        "tool_choice",
        "parallel_tool_calls",
        "max_completion_tokens",
        "stream_options",
    ] {
        assert_eq!(value[key], original[key], "{key}");
    }
    assert_eq!(
        value["messages"][2]["tool_calls"],
        original["messages"][3]["tool_calls"].clone().also_compact_arguments()
    );
    assert_eq!(value["messages"][3], original["messages"][4]);
}

#[test]
fn an_anthropic_request_translates_to_its_golden_openai_request_and_back() {
    let translated = anthropic_to_openai_chat(&fixture("translate/anthropic_request.json"), "gpt-4o").unwrap();
    let value = golden_json("anthropic_request.to_openai.json", &translated.body);
    assert_eq!(
        translated.notes,
        [
            "cache_control: dropped (OpenAI caches prompts automatically)",
            "top_k: dropped (OpenAI Chat has no counterpart)",
        ]
    );
    assert_eq!(value["stream_options"], json!({"include_usage": true}), "the stream will carry usage");
    let back = openai_chat_to_anthropic(&translated.body, "claude-sonnet-4-5", 4096).unwrap();
    let round_trip = golden_json("anthropic_request.round_trip.json", &back.body);
    let original: Value = serde_json::from_slice(&fixture("translate/anthropic_request.json")).unwrap();
    for key in ["max_tokens", "stop_sequences", "temperature", "tool_choice", "tools", "metadata", "stream"] {
        assert_eq!(round_trip[key], original[key], "{key}");
    }
    assert_eq!(round_trip["messages"][1], original["messages"][1], "tool use");
    // A result of one text block comes back as the equivalent plain string.
    let mut results = original["messages"][2].clone();
    results["content"][1]["content"] = results["content"][1]["content"][0]["text"].clone();
    assert_eq!(round_trip["messages"][2], results, "tool results and text");
}

// ---- responses ----

#[test]
fn an_anthropic_response_translates_to_its_golden_chat_completion_and_back() {
    let anthropic = fixture("translate/anthropic_response.json");
    let openai = anthropic_response_to_openai_chat(&anthropic, None, CREATED).unwrap();
    let value = golden_json("anthropic_response.to_openai.json", &openai.body);
    assert_eq!(value["usage"]["prompt_tokens"], 472 + 1024);
    assert_eq!(value["usage"]["prompt_tokens_details"]["cached_tokens"], 1024);
    let back = openai_chat_response_to_anthropic(&openai.body, None).unwrap();
    let round_trip = golden_json("anthropic_response.round_trip.json", &back.body);
    let original: Value = serde_json::from_slice(&anthropic).unwrap();
    for key in ["id", "model", "content", "stop_reason", "role", "type"] {
        assert_eq!(round_trip[key], original[key], "{key}");
    }
    assert_eq!(round_trip["usage"], json!({"input_tokens": 472, "cache_read_input_tokens": 1024, "output_tokens": 89}));
}

#[test]
fn an_openai_response_translates_to_its_golden_message_and_back() {
    let openai = fixture("translate/openai_response.json");
    let anthropic = openai_chat_response_to_anthropic(&openai, None).unwrap();
    let value = golden_json("openai_response.to_anthropic.json", &anthropic.body);
    assert_eq!(value["usage"], json!({"input_tokens": 56, "cache_read_input_tokens": 256, "output_tokens": 61}));
    let back = anthropic_response_to_openai_chat(&anthropic.body, None, CREATED).unwrap();
    let round_trip = golden_json("openai_response.round_trip.json", &back.body);
    let original: Value = serde_json::from_slice(&openai).unwrap();
    for key in ["id", "model", "created"] {
        assert_eq!(round_trip[key], original[key], "{key}");
    }
    assert_eq!(round_trip["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(round_trip["choices"][0]["message"]["content"], original["choices"][0]["message"]["content"]);
    for (mine, theirs) in round_trip["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original["choices"][0]["message"]["tool_calls"].as_array().unwrap())
    {
        assert_eq!(mine["id"], theirs["id"]);
        let arguments =
            |call: &Value| serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments(mine), arguments(theirs));
    }
    assert_eq!(round_trip["usage"]["prompt_tokens"], 312);
    assert_eq!(round_trip["usage"]["prompt_tokens_details"]["cached_tokens"], 256);
}

// ---- errors ----

#[test]
fn provider_error_bodies_translate_to_the_clients_shape() {
    let reply = anthropic_error_to_openai(529, &fixture("translate/anthropic_error.json"));
    assert_eq!(reply.status, 503);
    golden_json("anthropic_error.to_openai.json", &reply.body);
    let reply = openai_error_to_anthropic(429, &fixture("translate/openai_error.json"));
    assert_eq!(reply.status, 429);
    golden_json("openai_error.to_anthropic.json", &reply.body);
}

// ---- streams ----

const ANTHROPIC_STREAMS: &[&str] =
    &["translate/anthropic_stream_tools.sse", "translate/anthropic_stream_error.sse", "anthropic/messages_stream.sse"];
const OPENAI_STREAMS: &[&str] = &[
    "translate/openai_stream_tools.sse",
    "translate/openai_stream_error.sse",
    "openai/chat_stream.sse",
    "openai/chat_stream_without_usage.sse",
];

#[test]
fn anthropic_streams_translate_to_their_golden_openai_streams() {
    for name in ["anthropic_stream_tools", "anthropic_stream_error"] {
        let out = translate_stream(to_openai_stream(), &fixture(&format!("translate/{name}.sse")));
        golden(&format!("{name}.to_openai.sse"), &out);
    }
}

#[test]
fn openai_streams_translate_to_their_golden_anthropic_streams() {
    for name in ["openai_stream_tools", "openai_stream_error"] {
        let out = translate_stream(to_anthropic_stream(), &fixture(&format!("translate/{name}.sse")));
        golden(&format!("{name}.to_anthropic.sse"), &out);
    }
}

#[test]
fn every_split_of_an_anthropic_stream_gives_the_same_openai_stream() {
    for name in ANTHROPIC_STREAMS {
        let stream = fixture(name);
        let whole = translate_stream(to_openai_stream(), &stream);
        for at in 0..=stream.len() {
            let (head, tail) = stream.split_at(at);
            assert_eq!(translate_chunks(to_openai_stream(), &[head, tail]).concat(), whole, "{name} split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(translate_chunks(to_openai_stream(), &bytes).concat(), whole, "{name} byte by byte");
    }
}

#[test]
fn every_split_of_an_openai_stream_gives_the_same_anthropic_stream() {
    for name in OPENAI_STREAMS {
        let stream = fixture(name);
        let whole = translate_stream(to_anthropic_stream(), &stream);
        for at in 0..=stream.len() {
            let (head, tail) = stream.split_at(at);
            assert_eq!(translate_chunks(to_anthropic_stream(), &[head, tail]).concat(), whole, "{name} split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(translate_chunks(to_anthropic_stream(), &bytes).concat(), whole, "{name} byte by byte");
    }
}

/// Fed one upstream event per chunk, a translator must answer each event in the same call,
/// never hold it for a later one: only `message_delta` waits for `[DONE]` (usage comes last).
#[test]
fn each_event_is_translated_as_soon_as_it_is_complete() {
    let stream = fixture("translate/anthropic_stream_tools.sse");
    let chunks: Vec<&[u8]> = events(&stream).iter().map(|e| &stream[e.start as usize..e.end as usize]).collect();
    let outputs = translate_chunks(to_openai_stream(), &chunks);
    let silent: Vec<_> = chunks
        .iter()
        .zip(&outputs)
        .filter(|(_, out)| out.is_empty())
        .map(|(chunk, _)| String::from_utf8_lossy(chunk).lines().next().unwrap().to_string())
        .collect();
    // Events with nothing to say in OpenAI's format: the text block's start, a ping, the empty
    // first input fragment, and block stops.
    assert_eq!(
        silent,
        [
            "event: content_block_start",
            "event: ping",
            "event: content_block_stop",
            "event: content_block_delta",
            "event: content_block_stop",
            "event: content_block_stop",
        ]
    );
    assert!(String::from_utf8_lossy(&outputs[3]).contains("I'll check the weather in "), "the first text delta");

    let stream = fixture("translate/openai_stream_tools.sse");
    let chunks: Vec<&[u8]> = events(&stream).iter().map(|e| &stream[e.start as usize..e.end as usize]).collect();
    let outputs = translate_chunks(to_anthropic_stream(), &chunks);
    let silent: Vec<_> = outputs.iter().enumerate().filter(|(_, out)| out.is_empty()).map(|(i, _)| i).collect();
    assert_eq!(silent, [9, 11], "only the usage chunk (kept for message_delta) and the finish call say nothing");
}

#[test]
fn an_anthropic_stream_and_its_round_trip_leave_the_client_with_the_same_message() {
    let stream = fixture("translate/anthropic_stream_tools.sse");
    let openai = translate_stream(to_openai_stream(), &stream);
    let back = translate_stream(to_anthropic_stream(), &openai);
    let (original, round_trip) = (accumulate_anthropic(&stream), accumulate_anthropic(&back));
    assert_eq!(round_trip["id"], original["id"]);
    assert_eq!(round_trip["content"], original["content"]);
    assert_eq!(round_trip["stop_reason"], "tool_use");
    assert_eq!(round_trip["usage"], json!({"input_tokens": 472, "cache_read_input_tokens": 1024, "output_tokens": 89}));
}

#[test]
fn an_openai_stream_and_its_round_trip_leave_the_client_with_the_same_completion() {
    let stream = fixture("translate/openai_stream_tools.sse");
    let anthropic = translate_stream(to_anthropic_stream(), &stream);
    let back = translate_stream(to_openai_stream(), &anthropic);
    let (mut original, round_trip) = (accumulate_openai(&stream), accumulate_openai(&back));
    // Usage details other than cached tokens (audio, reasoning, predictions) have no Anthropic
    // field and do not come back.
    original["usage"] = json!({"prompt_tokens": 312, "completion_tokens": 61, "total_tokens": 373,
        "prompt_tokens_details": {"cached_tokens": 256}});
    assert_eq!(round_trip, original);
    assert_eq!(original["tool_calls"][0]["arguments"], "{\"location\": \"Zürich, Switzerland\"}");
    assert_eq!(original["done"], true);
}

#[test]
fn streams_translated_from_openai_accumulate_to_what_the_chunks_said() {
    let message =
        accumulate_anthropic(&translate_stream(to_anthropic_stream(), &fixture("translate/openai_stream_tools.sse")));
    assert_eq!(
        message["content"],
        json!([
            {"type": "text", "text": "Checking both cities — Zürich first ☕."},
            {"type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {"location": "Zürich, Switzerland"}},
            {"type": "tool_use", "id": "call_7Hs2mVb1QeR8nLk0PzXw4tYu", "name": "get_weather",
             "input": {"location": "Paris, France", "unit": "celsius"}},
        ])
    );
    assert_eq!(message["usage"], json!({"input_tokens": 56, "cache_read_input_tokens": 256, "output_tokens": 61}));
}

#[test]
fn mid_stream_errors_reach_the_client_as_its_own_error_event() {
    let openai =
        accumulate_openai(&translate_stream(to_openai_stream(), &fixture("translate/anthropic_stream_error.sse")));
    assert_eq!(openai["content"], "Once upon");
    assert_eq!(
        openai["error"],
        json!({"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null})
    );
    assert_eq!(openai["done"], false, "no [DONE] after an error");
    let anthropic =
        accumulate_anthropic(&translate_stream(to_anthropic_stream(), &fixture("translate/openai_stream_error.sse")));
    assert_eq!(anthropic["content"][0]["text"], "Once upon");
    assert_eq!(anthropic["error"]["type"], "api_error");
}

#[test]
fn a_cut_stream_ends_with_an_error_rather_than_a_silent_truncation() {
    let stream = fixture("translate/anthropic_stream_tools.sse");
    let cut = &stream[..stream.len() / 2];
    let openai = accumulate_openai(&translate_stream(to_openai_stream(), cut));
    assert_eq!(openai["error"]["message"], "The upstream stream ended before its final event (message_stop).");
    let stream = fixture("translate/openai_stream_tools.sse");
    let anthropic = accumulate_anthropic(&translate_stream(to_anthropic_stream(), &stream[..stream.len() / 2]));
    assert_eq!(anthropic["error"]["message"], "The upstream stream ended before its final event ([DONE]).");
}

#[test]
fn an_event_larger_than_the_cap_ends_the_stream_with_an_error() {
    let stream = fixture("translate/anthropic_stream_tools.sse");
    let mut translator = SseTranslator::new(to_openai_stream(), 200);
    let mut out = translator.feed(&stream);
    out.extend(translator.finish());
    let openai = accumulate_openai(&out);
    assert_eq!(
        openai["error"]["message"],
        "An upstream stream event was larger than 200 bytes and could not be translated."
    );
    assert_eq!(openai["content"], "", "the oversized message_start was the first event");
}

/// Garbage never panics and never produces output that is not SSE.
#[test]
fn garbage_streams_produce_only_well_formed_events() {
    let garbage: &[&[u8]] = &[
        b"data: {not json\n\n",
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":99999999999999999999}\n\n",
        b"data: \xff\xfe\n\n",
        b"data: {\"choices\": [{\"delta\": {\"tool_calls\": [{\"index\": -1}]}}]}\n\n",
        b"data: {\"choices\": \"x\", \"usage\": 5}\n\n",
        b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-4}}\n\n",
        b"data: [1, 2, 3]\n\n",
        b"data: null\n\n",
    ];
    for stream in garbage {
        for out in [translate_stream(to_openai_stream(), stream), translate_stream(to_anthropic_stream(), stream)] {
            for event in events(&out) {
                assert!(event.data == b"[DONE]" || serde_json::from_slice::<Value>(&event.data).is_ok());
            }
        }
    }
}

#[test]
fn bodies_that_are_not_json_objects_are_errors_for_every_function() {
    for body in [&b""[..], b"[]", b"{", b"\xff", b"null"] {
        assert!(openai_chat_to_anthropic(body, "m", 1).is_err());
        assert!(anthropic_to_openai_chat(body, "m").is_err());
        assert!(anthropic_response_to_openai_chat(body, None, 0).is_err());
        assert!(openai_chat_response_to_anthropic(body, None).is_err());
        assert_eq!(anthropic_error_to_openai(500, body).status, 500);
        assert_eq!(openai_error_to_anthropic(500, body).status, 500);
    }
}

#[test]
fn a_huge_request_translates_without_trouble() {
    let text = "word ".repeat(2_000_000);
    let body = json!({"messages": [{"role": "user", "content": text}], "max_tokens": 5}).to_string();
    let out = openai_chat_to_anthropic(body.as_bytes(), "claude", 1).unwrap();
    assert!(out.body.len() > 10_000_000);
}

trait CompactArguments {
    fn also_compact_arguments(self) -> Value;
}

impl CompactArguments for Value {
    /// Tool-call arguments as serde_json writes them after a round trip through an object.
    fn also_compact_arguments(mut self) -> Value {
        for call in self.as_array_mut().unwrap() {
            let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            call["function"]["arguments"] = json!(arguments.to_string());
        }
        self
    }
}
