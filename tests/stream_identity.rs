//! Identity: what the client receives of a stream is what the provider sent, whatever the text
//! (every Unicode plane, combining marks, ZWJ sequences, right-to-left text, invalid UTF-8 in
//! the raw stream) and however deltas and network chunks split it.
//!
//! The oracle is the provider's own stream, built here, never the filter's output on another
//! chunking. Whole exchanges run through the fake hosts (Envoy, Envoy with HTTP/2's separate empty
//! end-of-stream call, Kong) with every stream stage: the meter, the usage-chunk strip,
//! translation both ways, the stream guard with every detector set, and mask-and-restore. The
//! property tests draw the host like any other input (a failure names it, and shrinks it); the
//! corpus tests run every host. Streams are never buffered on Kong (fact 11), so the same
//! identity holds there: no difference to make explicit.
//! - Nothing found: the client's bytes are the provider's bytes (plus the cost comment line at
//!   the end); with the strip, minus exactly the usage chunk the filter asked for.
//! - Translated: the client's dialect carries exactly the provider's text and tool arguments.
//! - Masked toward the provider: the provider echoes what it received; the client gets exactly
//!   the text it sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use support::{FakeHost, Profile, ALL_HOSTS};
use tollgate::config::{self, Policy};
use tollgate::exchange::Exchange;
use tollgate::names::Counter;

/// Texts that broke streams, or could: scripts with multi-byte characters, combining marks,
/// ZWJ emoji, right-to-left text and marks, characters outside the BMP.
const SAMPLES: &[&str] = &[
    "Grüße aus München, schön! Ende.",
    "日本語の文章です。東京は晴れ。",
    "Привет, как дела? Всё хорошо.",
    "नमस्ते, आप कैसे हैं? मैं ठीक हूँ।",
    "👩‍👩‍👧‍👦 family, 👍🏽, 🏳️‍🌈 and 🇩🇪 flags",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם \u{200f}(RTL mark)\u{200e}",
    "Ça coûte 12 € à l'hôtel, déjà vu.",
    "e\u{301}te\u{301} a\u{308} o\u{30a}\u{323}",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕥𝕖𝕩𝕥 𐍈 𓀀 🀄",
    "한국어 텍스트와 中文混合",
    "Ελληνικά και Ἀθῆναι",
    "tab\tnewline\nquote\"backslash\\ and \u{0}\u{1f}\u{7f}",
    "\u{feff}BOM, \u{fffd} replacement, \u{2028} line separator",
];

/// A French sentence with an e-mail address: masked toward the provider, restored for the client.
const FRENCH_EMAIL: &str = "Écrivez à jean.dupont@exemple.fr demain, s'il vous plaît.";

fn any_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(SAMPLES).prop_map(str::to_string),
        prop::collection::vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect::<String>()),
        "[a-z ]{0,12}",
    ];
    prop::collection::vec(piece, 1..4).prop_map(|pieces| pieces.concat())
}

/// `text` cut at character boundaries near the given positions.
fn split_text(text: &str, cuts: &[Index]) -> Vec<String> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|i| {
            let mut p = i.index(text.len() + 1);
            while !text.is_char_boundary(p) {
                p -= 1;
            }
            p
        })
        .collect();
    at.push(0);
    at.push(text.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| text[w[0]..w[1]].to_string()).collect()
}

/// `bytes` cut anywhere (inside characters too), as the network may.
fn split_bytes<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

fn sse(name: &str, data: &Value) -> String {
    match name {
        "" => format!("data: {data}\n\n"),
        _ => format!("event: {name}\ndata: {data}\n\n"),
    }
}

/// A provider's stream, and the byte range of OpenAI's usage-only chunk when there is one.
struct Upstream {
    bytes: Vec<u8>,
    usage_chunk: Option<(usize, usize)>,
}

fn openai_chat_stream(deltas: &[String], arguments: &[String]) -> Upstream {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut out = sse("", &chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    for d in deltas {
        out += &sse("", &chunk(json!({"content": d}), Value::Null));
    }
    if !arguments.is_empty() {
        let call = json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                           "function": {"name": "lookup", "arguments": ""}}]});
        out += &sse("", &chunk(call, Value::Null));
        for a in arguments {
            out += &sse("", &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}), Value::Null));
        }
    }
    let finish = if arguments.is_empty() { "stop" } else { "tool_calls" };
    out += &sse("", &chunk(json!({}), json!(finish)));
    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                       "model": "gpt-4o-mini-2024-07-18", "choices": [],
                       "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}});
    let start = out.len();
    out += &sse("", &usage);
    let end = out.len();
    out += "data: [DONE]\n\n";
    Upstream { bytes: out.into_bytes(), usage_chunk: Some((start, end)) }
}

fn anthropic_stream(deltas: &[String], arguments: &[String]) -> Upstream {
    let mut out = sse(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    );
    out += &sse(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    out += &sse("ping", &json!({"type": "ping"}));
    for d in deltas {
        out += &sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}}),
        );
    }
    out += &sse("content_block_stop", &json!({"type": "content_block_stop", "index": 0}));
    if !arguments.is_empty() {
        out += &sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
        );
        for a in arguments {
            out += &sse(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": a}}),
            );
        }
        out += &sse("content_block_stop", &json!({"type": "content_block_stop", "index": 1}));
    }
    let stop = if arguments.is_empty() { "end_turn" } else { "tool_use" };
    out += &sse(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": 9}}),
    );
    out += &sse("message_stop", &json!({"type": "message_stop"}));
    Upstream { bytes: out.into_bytes(), usage_chunk: None }
}

fn responses_stream(deltas: &[String], arguments: &[String]) -> Upstream {
    let text: String = deltas.concat();
    let args: String = arguments.concat();
    let mut seq = 0;
    let mut event = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        sse(name, &data)
    };
    let response = |status: &str, output: Value| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": "gpt-4.1-2025-04-14",
               "output": output})
    };
    let message = |status: &str, content: Value| json!({"id": "msg_1", "type": "message", "status": status, "role": "assistant", "content": content});
    let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
    let call = |status: &str, a: &str| json!({"id": "fc_1", "type": "function_call", "status": status, "call_id": "call_1", "name": "lookup", "arguments": a});
    let mut out = event("response.created", json!({"response": response("in_progress", json!([]))}));
    out += &event("response.in_progress", json!({"response": response("in_progress", json!([]))}));
    out += &event("response.output_item.added", json!({"output_index": 0, "item": message("in_progress", json!([]))}));
    out += &event(
        "response.content_part.added",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part("")}),
    );
    for d in deltas {
        out += &event(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": d, "logprobs": []}),
        );
    }
    out += &event(
        "response.output_text.done",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
    );
    out += &event(
        "response.content_part.done",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part(&text)}),
    );
    let done_message = message("completed", json!([part(&text)]));
    out += &event("response.output_item.done", json!({"output_index": 0, "item": done_message}));
    let mut output = vec![done_message];
    if !arguments.is_empty() {
        out += &event("response.output_item.added", json!({"output_index": 1, "item": call("in_progress", "")}));
        for a in arguments {
            out += &event(
                "response.function_call_arguments.delta",
                json!({"item_id": "fc_1", "output_index": 1, "delta": a}),
            );
        }
        out += &event(
            "response.function_call_arguments.done",
            json!({"item_id": "fc_1", "output_index": 1, "arguments": args}),
        );
        out += &event("response.output_item.done", json!({"output_index": 1, "item": call("completed", &args)}));
        output.push(call("completed", &args));
    }
    let mut completed = response("completed", json!(output));
    completed["usage"] = json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
                                "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 21});
    out += &event("response.completed", json!({"response": completed}));
    Upstream { bytes: out.into_bytes(), usage_chunk: None }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Chat,
    Responses,
    Messages,
}

impl Dialect {
    fn path(self) -> &'static str {
        match self {
            Dialect::Chat => "/v1/chat/completions",
            Dialect::Responses => "/v1/responses",
            Dialect::Messages => "/v1/messages",
        }
    }

    fn request(self, model: &str, text: &str, include_usage: bool) -> Value {
        match self {
            Dialect::Chat if include_usage => json!({"model": model, "stream": true,
                "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": text}]}),
            Dialect::Chat => json!({"model": model, "stream": true, "messages": [{"role": "user", "content": text}]}),
            Dialect::Responses => json!({"model": model, "stream": true, "input": text}),
            Dialect::Messages => json!({"model": model, "stream": true, "max_tokens": 100,
                "messages": [{"role": "user", "content": text}]}),
        }
    }

    fn stream(self, deltas: &[String], arguments: &[String]) -> Upstream {
        match self {
            Dialect::Chat => openai_chat_stream(deltas, arguments),
            Dialect::Responses => responses_stream(deltas, arguments),
            Dialect::Messages => anthropic_stream(deltas, arguments),
        }
    }

    /// The user text of a request as the provider received it.
    fn user_text(self, body: &Value) -> String {
        match self {
            Dialect::Chat => body["messages"][0]["content"].as_str().unwrap().to_string(),
            Dialect::Responses => body["input"].as_str().unwrap().to_string(),
            Dialect::Messages => match &body["messages"][0]["content"] {
                Value::String(s) => s.clone(),
                blocks => blocks.as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect(),
            },
        }
    }
}

/// What a client of `dialect` assembles from a stream: the text and the tool arguments. Each
/// event's data is read with serde_json; nothing of the filter is used.
fn client_reads(dialect: Dialect, bytes: &[u8]) -> (String, String) {
    let text = std::str::from_utf8(bytes).expect("the client's stream is UTF-8");
    let (mut content, mut arguments) = (String::new(), String::new());
    for event in text.split("\n\n") {
        let data: String = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n");
        if data.is_empty() || data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
        match dialect {
            Dialect::Chat => {
                for choice in v["choices"].as_array().into_iter().flatten() {
                    content += choice["delta"]["content"].as_str().unwrap_or("");
                    for call in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
                        arguments += call["function"]["arguments"].as_str().unwrap_or("");
                    }
                }
            }
            Dialect::Messages => match v["delta"]["type"].as_str() {
                Some("text_delta") => content += v["delta"]["text"].as_str().unwrap(),
                Some("input_json_delta") => arguments += v["delta"]["partial_json"].as_str().unwrap(),
                _ => {}
            },
            Dialect::Responses => match v["type"].as_str() {
                Some("response.output_text.delta") => content += v["delta"].as_str().unwrap(),
                Some("response.function_call_arguments.delta") => arguments += v["delta"].as_str().unwrap(),
                _ => {}
            },
        }
    }
    (content, arguments)
}

/// Every detector set enforcing on answers, the way a strict operator would configure them.
fn every_detector() -> Value {
    json!({"policies": [{"name": "all", "checks": [
        {"name": "pii", "detectors": ["pii"], "action": "mask", "on": "both"},
        {"name": "pii_restore", "detectors": ["email", "phone"], "action": "mask_and_restore"},
        {"name": "secrets", "detectors": ["secrets"], "action": "block", "status": 422},
        {"name": "injection", "detectors": ["prompt_injection"], "action": "block", "on": "both"},
        {"name": "words", "keywords": ["project falcon", "Geheimnis"], "action": "mask", "on": "both"},
        {"name": "tickets", "deny": ["TCK-[0-9]{6}"], "action": "flag"}
    ]}]})
}

/// The shipped `privacy` policy (envoy/envoy.yaml).
fn shipped_privacy() -> Value {
    json!({"policies": [{"name": "privacy", "checks": [
        {"name": "pii", "detectors": ["email", "card", "iban", "ssn"], "action": "mask_and_restore",
         "scope": {"roles": ["user", "tool"]}},
        {"name": "secrets", "detectors": ["secrets"], "action": "block", "status": 422, "code": "secret_detected"}
    ]}]})
}

fn providers() -> Value {
    json!({
        "providers": {
            "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-openai"}},
            "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant"}}
        },
        "targets": {
            "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            "gpt": {"provider": "openai", "model": "gpt-4o-mini"}
        },
        "rules": [
            {"match": {"model": "to-anthropic"}, "targets": ["claude"]},
            {"match": {"model": "to-openai"}, "targets": ["gpt"]}
        ]
    })
}

fn policy(guardrails: Option<Value>, routing: bool) -> Rc<Policy> {
    let mut config = if routing { providers() } else { json!({}) };
    if let Some(g) = guardrails {
        config["guardrails"] = g;
    }
    Rc::new(config::compile(config.to_string().as_bytes()).unwrap())
}

const OK_SSE: [(&str, &str); 2] = [(":status", "200"), ("content-type", "text/event-stream")];

/// One whole exchange on `profile`: the request, then the provider's stream in `chunks`. Returns
/// the host (what the upstream and the client saw).
fn exchange(profile: Profile, policy: Rc<Policy>, path: &str, request: &Value, answer: &[&[u8]]) -> FakeHost {
    let mut host = FakeHost::new(profile);
    let mut ex = Exchange::new(1, policy);
    let body = request.to_string();
    let headers = [(":method", "POST"), (":path", path), ("content-type", "application/json")];
    host.request(&mut ex, &headers, &[body.as_bytes()]);
    assert!(host.reply.is_none(), "refused on {profile:?}: {:?}", host.reply);
    host.response(&mut ex, &OK_SSE, answer);
    assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
    host
}

/// The client's body is `expected` followed by the cost comment line, and nothing else.
fn assert_identity(host: &FakeHost, expected: &[u8]) {
    let body = host.client_body();
    let rest = body.strip_prefix(expected).unwrap_or_else(|| {
        let at = body.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(body.len().min(expected.len()));
        panic!(
            "client bytes differ from the provider's at {at}:\n  sent {:?}\n   got {:?}",
            String::from_utf8_lossy(&expected[at.saturating_sub(40)..(at + 40).min(expected.len())]),
            String::from_utf8_lossy(&body[at.saturating_sub(40)..(at + 40).min(body.len())]),
        )
    });
    let rest = std::str::from_utf8(rest).unwrap();
    assert!(
        rest.starts_with(": tollgate {") && rest.ends_with("}\n") && rest.lines().count() == 1,
        "after the stream: {rest:?}"
    );
}

fn nothing_found(host: &FakeHost) -> bool {
    host.record().get("guardrails").is_none()
}

const DIALECTS: [Dialect; 3] = [Dialect::Chat, Dialect::Responses, Dialect::Messages];

fn model(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Messages => "claude-sonnet-4-5",
        _ => "gpt-4o-mini",
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The meter, and the stream guard with every detector set (and the shipped policy): when
    /// nothing is found, the client gets the provider's bytes.
    #[test]
    fn nothing_found_means_the_providers_bytes(
        text in any_text(),
        arguments in any_text(),
        with_tool in any::<bool>(),
        delta_cuts in prop::collection::vec(any::<Index>(), 0..12),
        argument_cuts in prop::collection::vec(any::<Index>(), 0..6),
        chunk_cuts in prop::collection::vec(any::<Index>(), 0..16),
        guardrails in 0..3usize,
        dialect in prop::sample::select(&DIALECTS[..]),
        profile in prop::sample::select(&ALL_HOSTS[..]),
    ) {
        let deltas = split_text(&text, &delta_cuts);
        let arguments = if with_tool { split_text(&json!({"q": arguments}).to_string(), &argument_cuts) } else { vec![] };
        let upstream = dialect.stream(&deltas, &arguments);
        let guardrails = [None, Some(every_detector()), Some(shipped_privacy())][guardrails].clone();
        let host = exchange(
            profile,
            policy(guardrails, false),
            dialect.path(),
            &dialect.request(model(dialect), "hello", true),
            &split_bytes(&upstream.bytes, &chunk_cuts),
        );
        if nothing_found(&host) {
            assert_identity(&host, &upstream.bytes);
        }
    }

    /// The usage chunk Tollgate asked for is removed, and nothing else, with or without the guard.
    #[test]
    fn the_strip_removes_exactly_the_usage_chunk(
        text in any_text(),
        delta_cuts in prop::collection::vec(any::<Index>(), 0..12),
        chunk_cuts in prop::collection::vec(any::<Index>(), 0..16),
        guarded in any::<bool>(),
        profile in prop::sample::select(&ALL_HOSTS[..]),
    ) {
        let deltas = split_text(&text, &delta_cuts);
        let upstream = openai_chat_stream(&deltas, &[]);
        let guardrails = guarded.then(every_detector);
        let host = exchange(
            profile,
            policy(guardrails, false),
            Dialect::Chat.path(),
            &Dialect::Chat.request("gpt-4o-mini", "hello", false),
            &split_bytes(&upstream.bytes, &chunk_cuts),
        );
        let (start, end) = upstream.usage_chunk.unwrap();
        let expected = [&upstream.bytes[..start], &upstream.bytes[end..]].concat();
        if nothing_found(&host) {
            assert_identity(&host, &expected);
        }
        prop_assert_eq!(&host.record()["tokens"]["input"]["tokens"], &json!(12));
    }

    /// Translated both ways, with and without the guard: the client's dialect carries exactly
    /// the provider's text and tool arguments.
    #[test]
    fn translation_keeps_every_character(
        text in any_text(),
        arguments in any_text(),
        with_tool in any::<bool>(),
        delta_cuts in prop::collection::vec(any::<Index>(), 0..12),
        argument_cuts in prop::collection::vec(any::<Index>(), 0..6),
        chunk_cuts in prop::collection::vec(any::<Index>(), 0..16),
        guarded in any::<bool>(),
        to_anthropic in any::<bool>(),
        profile in prop::sample::select(&ALL_HOSTS[..]),
    ) {
        let deltas = split_text(&text, &delta_cuts);
        let arguments_json = json!({"q": arguments}).to_string();
        let arguments = if with_tool { split_text(&arguments_json, &argument_cuts) } else { vec![] };
        let (client, provider, model) = if to_anthropic {
            (Dialect::Chat, Dialect::Messages, "to-anthropic")
        } else {
            (Dialect::Messages, Dialect::Chat, "to-openai")
        };
        let upstream = provider.stream(&deltas, &arguments);
        let host = exchange(
            profile,
            policy(guarded.then(every_detector), true),
            client.path(),
            &client.request(model, "hello", true),
            &split_bytes(&upstream.bytes, &chunk_cuts),
        );
        if nothing_found(&host) {
            let (content, args) = client_reads(client, &host.client_stream());
            prop_assert_eq!(content, text);
            prop_assert_eq!(args, arguments.concat());
        }
    }

    /// Values masked toward the provider come back exactly as the client wrote them: the
    /// provider echoes what it received, split anywhere, in its own dialect.
    #[test]
    fn masked_values_come_back_exactly(
        before in any_text(),
        after in any_text(),
        local in "[a-z]{1,8}(\\.[a-z]{1,8})?",
        delta_cuts in prop::collection::vec(any::<Index>(), 0..16),
        chunk_cuts in prop::collection::vec(any::<Index>(), 0..16),
        route in 0..5usize,
        profile in prop::sample::select(&ALL_HOSTS[..]),
    ) {
        // Spaces keep the address a word of its own, whatever the text around it.
        let text = format!("{before} {local}@example.org, {FRENCH_EMAIL} {after}");
        let (client, provider, model, routing) = [
            (Dialect::Chat, Dialect::Chat, "gpt-4o-mini", false),
            (Dialect::Responses, Dialect::Responses, "gpt-4o-mini", false),
            (Dialect::Messages, Dialect::Messages, "claude-sonnet-4-5", false),
            (Dialect::Chat, Dialect::Messages, "to-anthropic", true),
            (Dialect::Messages, Dialect::Chat, "to-openai", true),
        ][route];
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(Some(shipped_privacy()), routing));
        let body = client.request(model, &text, true).to_string();
        let headers = [(":method", "POST"), (":path", client.path()), ("content-type", "application/json")];
        host.request(&mut ex, &headers, &[body.as_bytes()]);
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        let echoed = provider.user_text(&sent);
        prop_assert!(!echoed.contains("@example.org") && !echoed.contains("@exemple.fr"), "masked: {}", echoed);
        let upstream = provider.stream(&split_text(&echoed, &delta_cuts), &[]);
        host.response(&mut ex, &OK_SSE, &split_bytes(&upstream.bytes, &chunk_cuts));
        prop_assert!(host.violations.is_empty(), "{:?}: {:?}", profile, host.violations);
        let (content, _) = client_reads(client, &host.client_stream());
        prop_assert_eq!(content, text);
    }

    /// Invalid UTF-8 inside a provider's text (a stream no client could decode either) is never
    /// dropped or altered: it passes as it came where nothing has to read it (no guard, or
    /// `failure_mode: open`, counted); a guard that must read it and fails closed ends the
    /// stream right before that event, counted; translation ends the stream there with an
    /// error event in the client's dialect, counted.
    #[test]
    fn invalid_utf8_in_the_stream_is_kept_or_fails_visibly(
        text in any_text(),
        delta_cuts in prop::collection::vec(any::<Index>(), 1..8),
        chunk_cuts in prop::collection::vec(any::<Index>(), 0..16),
        which in any::<Index>(),
        mode in 0..4usize,
        dialect in prop::sample::select(&DIALECTS[..]),
        profile in prop::sample::select(&ALL_HOSTS[..]),
    ) {
        let mut deltas = split_text(&format!("{text}x"), &delta_cuts);
        let corrupt = which.index(deltas.len());
        deltas[corrupt].push('\u{1}');
        let translated = mode == 3 && dialect != Dialect::Responses;
        let (client, model) = match (translated, dialect) {
            (true, Dialect::Chat) => (Dialect::Messages, "to-openai"),
            (true, _) => (Dialect::Chat, "to-anthropic"),
            _ => (dialect, model(dialect)),
        };
        let upstream = dialect.stream(&deltas, &[]);
        // `\u0001` as serde_json writes it, replaced by a byte that is never UTF-8.
        let needle = b"\\u0001";
        let at = upstream.bytes.windows(needle.len()).position(|w| w == needle).unwrap();
        let bytes = [&upstream.bytes[..at], &[0xff][..], &upstream.bytes[at + needle.len()..]].concat();
        let event_start = bytes[..at].windows(2).rposition(|w| w == b"\n\n").map_or(0, |p| p + 2);
        let (guardrails, failure) = match mode {
            0 => (None, "closed"),
            1 => (Some(every_detector()), "open"),
            2 => (Some(every_detector()), "closed"),
            _ => (None, "closed"),
        };
        let mut config = if translated { providers() } else { json!({}) };
        config["failure_mode"] = json!(failure);
        if let Some(g) = guardrails {
            config["guardrails"] = g;
        }
        let policy = Rc::new(config::compile(config.to_string().as_bytes()).unwrap());
        let host = exchange(profile, policy, client.path(), &client.request(model, "hello", true), &split_bytes(&bytes, &chunk_cuts));
        let body = host.client_body();
        match (mode, translated) {
            (2, _) => {
                // Whole events of the provider's (at most up to the unreadable one), then the
                // stream's blocked ending, which the client reads like any other end.
                prop_assert!(!body.contains(&0xff));
                prop_assert_eq!(host.counter(Counter::ResponseTextsUnreadable), 1);
                prop_assert_eq!(&host.record()["guardrails"]["blocked_by"]["check"], &json!("unreadable_text"));
                let stream = host.client_stream();
                let (sent, got) = (events(&bytes), events(&stream));
                let same = sent.iter().zip(&got).take_while(|(a, b)| a == b).count();
                prop_assert!(sent[..same].concat().len() <= event_start, "an event from the unreadable one on went out");
                for rest in &got[same..] {
                    prop_assert!(is_blocked_ending(rest), "not an ending: {}", String::from_utf8_lossy(rest));
                }
                let (content, _) = client_reads(client, &stream);
                let whole = format!("{}x", text);
                prop_assert!(whole.starts_with(&content));
            }
            (3, true) => {
                prop_assert!(!body.contains(&0xff));
                prop_assert_eq!(host.counter(Counter::StreamEventsUntranslatable), 1);
                let stream = String::from_utf8(host.client_stream()).unwrap();
                prop_assert!(stream.contains(tollgate::translate::UNREADABLE_EVENT), "{}", stream);
                let (content, _) = client_reads(client, stream.as_bytes());
                let whole = format!("{}x", text);
                prop_assert!(whole.starts_with(&content));
            }
            _ => {
                if nothing_found(&host) {
                    assert_identity(&host, &bytes);
                }
                prop_assert_eq!(host.counter(Counter::ResponseTextsUnreadable), u64::from(mode == 1));
            }
        }
    }
}

/// A stream's events, each with the blank line that ends it.
fn events(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = bytes[from..].windows(2).position(|w| w == b"\n\n") {
        out.push(&bytes[from..from + at + 2]);
        from += at + 2;
    }
    out
}

/// One of the events a stream the guard ended closes with, in any dialect.
fn is_blocked_ending(event: &[u8]) -> bool {
    let text = std::str::from_utf8(event).unwrap();
    let data: String = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    if data == "[DONE]" {
        return true;
    }
    let v: Value = serde_json::from_str(&data).unwrap();
    v["choices"][0]["finish_reason"] == "content_filter"
        || v["type"] == "content_block_stop"
        || v["delta"]["stop_reason"] == "refusal"
        || v["type"] == "message_stop"
        || v["type"] == "response.incomplete"
}

/// The reproduction of issue 16, exactly: the shipped policy, the mock's 2-byte deltas.
#[test]
fn german_in_two_byte_deltas_arrives_whole_on_the_shipped_policy() {
    let text = "Grüße aus München, schön! Ende.";
    for dialect in DIALECTS {
        let deltas = split_text(text, &[]);
        let deltas: Vec<String> = {
            let mut out = Vec::new();
            let mut current = String::new();
            for c in deltas[0].chars() {
                if current.len() + c.len_utf8() > 2 && !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.push(c);
            }
            out.push(current);
            out
        };
        let upstream = dialect.stream(&deltas, &[]);
        for profile in ALL_HOSTS {
            let host = exchange(
                profile,
                policy(Some(shipped_privacy()), false),
                dialect.path(),
                &dialect.request(model(dialect), text, true),
                &[&upstream.bytes],
            );
            assert_identity(&host, &upstream.bytes);
            assert_eq!(client_reads(dialect, &host.client_stream()).0, text, "{profile:?}");
        }
    }
}

/// Every sample of the multilingual corpus, one character per delta, every dialect, every
/// detector set: nothing in them is a finding, so every byte arrives as sent.
#[test]
fn the_multilingual_corpus_arrives_byte_for_byte() {
    let policies: Vec<Rc<Policy>> =
        [None, Some(every_detector()), Some(shipped_privacy())].into_iter().map(|g| policy(g, false)).collect();
    for sample in SAMPLES.iter().chain([&FRENCH_EMAIL]) {
        for dialect in DIALECTS {
            let deltas: Vec<String> = sample.chars().map(String::from).collect();
            let upstream = dialect.stream(&deltas, &[]);
            for (guarded, policy) in policies.iter().enumerate().map(|(i, p)| (i > 0, p)) {
                for profile in ALL_HOSTS {
                    let host = exchange(
                        profile,
                        Rc::clone(policy),
                        dialect.path(),
                        &dialect.request(model(dialect), "hello", true),
                        &[&upstream.bytes],
                    );
                    if *sample == FRENCH_EMAIL && guarded && host.record().get("guardrails").is_some() {
                        // The address is a finding for `every_detector`'s response-side mask.
                        let (content, _) = client_reads(dialect, &host.client_stream());
                        let expected = FRENCH_EMAIL.replace("jean.dupont@exemple.fr", "[EMAIL]");
                        assert_eq!(content, expected, "{dialect:?} {profile:?}");
                        continue;
                    }
                    assert_identity(&host, &upstream.bytes);
                }
            }
        }
    }
}

/// The hand-labelled multilingual corpus of the guardrails, streamed in every dialect at several
/// delta sizes and masked by every detector: the client reads exactly the line with each
/// labelled value replaced by its placeholder (`[EMAIL]`, `[CARD]`, …), nothing more or less.
#[test]
fn the_multilingual_guardrail_corpus_streams_masked_exactly() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guardrails/corpus/multilingual.txt");
    let corpus = std::fs::read_to_string(path).unwrap();
    let mask_all = policy(
        Some(json!({"policies": [{"name": "all", "checks": [
            {"name": "every", "detectors": ["pii", "secrets"], "action": "mask", "on": "response"}]}]})),
        false,
    );
    let mut lines = 0;
    for line in corpus.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let raw = &line[2..];
        let (mut text, mut expected) = (String::new(), String::new());
        let mut at = 0;
        while let Some(open) = raw[at..].find("[[") {
            let open = at + open;
            let close = open + raw[open..].find("]]").unwrap();
            let (detector, value) = raw[open + 2..close].split_once(':').unwrap();
            text += &raw[at..open];
            expected += &raw[at..open];
            text += value;
            // The placeholder each detector documents (`[EMAIL]`, `[AWS_KEY]`, …).
            let label = tollgate::guardrails::detect::BUILTINS.iter().find(|b| b.name == detector).unwrap().label;
            expected += &format!("[{label}]");
            at = close + 2;
        }
        text += &raw[at..];
        expected += &raw[at..];
        lines += 1;
        for size in [1, 2, 3, 7, usize::MAX] {
            let mut deltas = Vec::new();
            let mut current = String::new();
            for c in text.chars() {
                if !current.is_empty() && current.len() + c.len_utf8() > size {
                    deltas.push(std::mem::take(&mut current));
                }
                current.push(c);
            }
            deltas.push(current);
            for dialect in DIALECTS {
                let upstream = dialect.stream(&deltas, &[]);
                for profile in ALL_HOSTS {
                    let host = exchange(
                        profile,
                        Rc::clone(&mask_all),
                        dialect.path(),
                        &dialect.request(model(dialect), "hello", true),
                        &[&upstream.bytes],
                    );
                    let (content, _) = client_reads(dialect, &host.client_stream());
                    assert_eq!(content, expected, "{dialect:?} on {profile:?}, deltas of {size} bytes");
                    if expected == text {
                        assert_identity(&host, &upstream.bytes);
                    }
                }
            }
        }
    }
    assert!(lines >= 40);
}
