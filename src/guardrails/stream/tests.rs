use std::rc::Rc;

use serde_json::{json, Value};

use super::ending::write_event;
use super::*;
use crate::guardrails::{parse, RequestInput, ResponseGuard};
use crate::sse::SseFramer;

fn response_guard(checks: Value, request_text: &str) -> ResponseGuard {
    guard_for(Api::AnthropicMessages, checks, request_text)
}

fn guard_for(api: Api, checks: Value, request_text: &str) -> ResponseGuard {
    let g = Rc::new(parse(json!({"policies": [{"name": "p", "checks": checks}]})).unwrap());
    let body = json!({"messages": [{"role": "user", "content": request_text}]}).to_string();
    let request = crate::dialect::parse_request(api, body.as_bytes()).unwrap();
    let text = request.text(body.as_bytes()).unwrap();
    let outcome = g.check_request(&RequestInput::new(&request, Some(&text)));
    outcome.response.expect("response side")
}

/// The text as a non-streamed response would carry it (the reference).
fn whole(guard: &ResponseGuard, text: &str) -> String {
    let body = json!({"content": [{"type": "text", "text": text}]}).to_string();
    match guard.check_body(body.as_bytes()).body {
        Some(new_body) => {
            serde_json::from_slice::<Value>(&new_body).unwrap()["content"][0]["text"].as_str().unwrap().to_string()
        }
        None => text.to_string(),
    }
}

fn char_splits(text: &str) -> Vec<usize> {
    (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect()
}

/// Feeds `pieces`; checks that what was sent so far only ever grows into `expected`.
fn stream_text(guard: &ResponseGuard, pieces: &[&str], expected: &str, secrets: &[&str]) -> String {
    let mut text = TextGuard::new(guard, false);
    let mut sent = String::new();
    for piece in pieces {
        let (out, block) = text.push(piece);
        assert!(block.is_none());
        sent.push_str(&out);
        assert!(expected.starts_with(&sent), "sent {sent:?} is not a prefix of {expected:?}");
        for secret in secrets {
            assert!(!sent.contains(secret), "leaked {secret:?} in {sent:?}");
        }
    }
    let (out, _) = text.finish();
    sent.push_str(&out);
    sent
}

const TEXTS: &[&str] = &[
    "Mail jane.doe@example.com or call (415) 555-0132 today.",
    "Key sk-proj-AbCdEf1234567890GhIjKlMn, card 4111 1111 1111 1111; ok?",
    "Bearer abcDEF1234567890ghiJKL. Then 10.0.0.1 and 2001:db8::1 é ü ok",
    "IBAN DE89 3704 0044 0532 0130 00 and SSN 123-45-6789 and a@b.co",
    "nothing to see here, just words and 2024-01-15 and v1.2.3.4 and $1,299.99",
];

#[test]
fn every_two_way_split_gives_the_whole_text_result() {
    let guard = response_guard(
        json!([{"name": "all", "detectors": ["pii", "secrets"], "action": "mask", "on": "response"}]),
        "hi",
    );
    for text in TEXTS {
        let expected = whole(&guard, text);
        for at in char_splits(text) {
            let got = stream_text(
                &guard,
                &[&text[..at], &text[at..]],
                &expected,
                &["jane.doe@", "AbCdEf123", "1111 1111 1111", "abcDEF123"],
            );
            assert_eq!(got, expected, "split at {at} of {text:?}");
        }
    }
}

#[test]
fn every_three_way_split_gives_the_whole_text_result() {
    let guard = response_guard(
        json!([{"name": "all", "detectors": ["pii", "secrets"], "action": "mask", "on": "response"}]),
        "hi",
    );
    for text in TEXTS.iter().take(3) {
        let expected = whole(&guard, text);
        let splits = char_splits(text);
        for &i in &splits {
            for &j in splits.iter().filter(|j| **j >= i) {
                let got = stream_text(&guard, &[&text[..i], &text[i..j], &text[j..]], &expected, &[]);
                assert_eq!(got, expected, "split at {i},{j} of {text:?}");
            }
        }
    }
}

#[test]
fn char_by_char_streams_match_and_never_leak() {
    let guard = response_guard(
        json!([{"name": "all", "detectors": ["pii", "secrets"], "action": "mask", "on": "response"}]),
        "hi",
    );
    for text in TEXTS {
        let expected = whole(&guard, text);
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        assert_eq!(stream_text(&guard, &refs, &expected, &["jane.doe", "sk-proj", "abcDEF"]), expected);
    }
}

#[test]
fn placeholders_split_anywhere_are_restored_exactly() {
    let guard = response_guard(
        json!([{"name": "pii", "detectors": ["email", "phone"], "action": "mask_and_restore"}]),
        "I am ann@example.com and bob@example.org, phone +44 20 7946 0958",
    );
    let text = "Dear [EMAIL_1], cc [EMAIL_2] and [PHONE_1]; not [EMAIL_3] or [EMAIL_ or [x].";
    let expected = "Dear ann@example.com, cc bob@example.org and +44 20 7946 0958; not [EMAIL_3] or [EMAIL_ or [x].";
    assert_eq!(whole(&guard, text), expected);
    for i in char_splits(text) {
        for j in char_splits(text).into_iter().filter(|j| *j >= i) {
            assert_eq!(stream_text(&guard, &[&text[..i], &text[i..j], &text[j..]], expected, &[]), expected, "{i},{j}");
        }
    }
}

/// Oracle for word lists: a position must be held exactly when the text from it is a prefix of a
/// keyword (or a whole keyword whose next byte, which decides "whole word", has not come).
#[test]
fn hold_back_is_minimal_for_word_lists_and_placeholders() {
    let guard = response_guard(
        json!([{"name": "words", "keywords": ["project falcon", "falconry"], "action": "mask", "on": "response", "placeholder": "X"},
               {"name": "pii", "detectors": ["email"], "action": "mask_and_restore"}]),
        "ann@example.com",
    );
    // The email detector is request-side only; the response enforces the words and placeholders.
    let text = "we ran project falco, then project falcon. [EMAIL_1] falconr [EMAIL_";
    let keywords = ["project falcon", "falconry"];
    let mut stream = TextGuard::new(&guard, false);
    let mut sent = 0usize;
    for (i, c) in text.char_indices() {
        let prefix = &text[..i + c.len_utf8()];
        let (_out, _) = stream.push(&c.to_string());
        // Earliest position from which the prefix could still become a finding.
        let mut earliest = prefix.len();
        for start in 0..prefix.len() {
            let tail = prefix[start..].to_ascii_lowercase();
            let word_start = start == 0 || !prefix.as_bytes()[start - 1].is_ascii_alphanumeric();
            let keyword = word_start && keywords.iter().any(|k| k.starts_with(&tail));
            let placeholder = tail.starts_with('[')
                && tail[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !tail.contains(']');
            if keyword || placeholder {
                earliest = start;
                break;
            }
        }
        sent = prefix.len() - stream.held();
        assert!(sent <= earliest, "released into a possible finding at {prefix:?}");
        // Everything before that position is released (masking may change lengths, so compare held bytes).
        assert_eq!(stream.held(), prefix.len() - earliest, "held too much at {prefix:?}");
    }
    let _ = sent;
}

#[test]
fn only_possible_findings_are_held() {
    let guard =
        response_guard(json!([{"name": "s", "detectors": ["secrets"], "action": "block", "on": "response"}]), "hi");
    let mut stream = TextGuard::new(&guard, false);
    assert_eq!(stream.push("Hello world, nothing secret ").0, "Hello world, nothing secret ");
    assert_eq!(stream.push("here: s").0, "here: ");
    assert_eq!(stream.push("k").0, "");
    assert_eq!(stream.push("i is fun ").0, "ski is fun ");
    let (out, block) = stream.push("sk-proj-AbCdEf1234567890GhIjKlMn is mine");
    assert_eq!(out, "");
    assert_eq!(block.unwrap().check, "s");
}

fn sse(events: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in events {
        write_event(&mut out, name, data.to_string().as_bytes());
    }
    out
}

fn chat_stream(deltas: &[&str]) -> Vec<u8> {
    let mut events = vec![(
        "",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    )];
    for d in deltas {
        events.push((
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": null}]}),
        ));
    }
    events.push((
        "",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ));
    let mut bytes = sse(&events);
    bytes.extend_from_slice(b"data: [DONE]\n\n");
    bytes
}

fn run_guard(guard: &ResponseGuard, stream: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut g = guard.stream();
    let mut out = Vec::new();
    let mut at = 0;
    for &s in splits.iter().chain(std::iter::once(&stream.len())) {
        out.extend(g.feed(&stream[at..s]));
        at = s;
    }
    out.extend(g.finish());
    out
}

fn events_of(bytes: &[u8]) -> Vec<SseEvent> {
    let mut framer = SseFramer::new(1 << 20);
    let (mut events, mut issues) = (Vec::new(), Vec::new());
    framer.feed(bytes, &mut events, &mut issues);
    framer.finish(&mut events);
    assert!(!framer.has_partial_event(), "output ends mid-event");
    events
}

fn chat_text(bytes: &[u8]) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut finish = Vec::new();
    for e in events_of(bytes) {
        if e.data == b"[DONE]" {
            finish.push("[DONE]".to_string());
            continue;
        }
        let v: Value = serde_json::from_slice(&e.data).expect("every event is JSON");
        text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or_default());
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish.push(f.to_string());
        }
    }
    (text, finish)
}

#[test]
fn openai_chat_stream_masks_at_every_byte_split() {
    let guard = guard_for(
        Api::OpenAiChat,
        json!([{"name": "pii", "detectors": ["email"], "action": "mask", "on": "response"}]),
        "hi",
    );
    let stream = chat_stream(&["Write to jo", "hn.smith@exa", "mple.com, or", " not"]);
    for at in 0..=stream.len() {
        let out = run_guard(&guard, &stream, &[at]);
        let (text, finish) = chat_text(&out);
        assert_eq!(text, "Write to [EMAIL], or not", "split at {at}");
        assert_eq!(finish, ["stop", "[DONE]"]);
        assert!(!String::from_utf8_lossy(&out).contains("smith"));
    }
}

#[test]
fn untouched_events_keep_their_bytes() {
    let guard = guard_for(
        Api::OpenAiChat,
        json!([{"name": "s", "detectors": ["secrets"], "action": "mask", "on": "response"}]),
        "hi",
    );
    let stream = chat_stream(&["Hello ", "world. ", "Bye."]);
    assert_eq!(run_guard(&guard, &stream, &[]), stream);
}

#[test]
fn openai_chat_block_ends_with_content_filter_and_done() {
    let guard = guard_for(
        Api::OpenAiChat,
        json!([{"name": "s", "detectors": ["secrets"], "action": "block", "on": "response"}]),
        "hi",
    );
    let stream = chat_stream(&["Your key: ", "sk-proj-AbCdEf12", "34567890GhIjKlMn", " enjoy"]);
    for at in 0..=stream.len() {
        let mut g = guard.stream();
        let mut out = g.feed(&stream[..at]);
        out.extend(g.feed(&stream[at..]));
        out.extend(g.finish());
        let (text, finish) = chat_text(&out);
        assert_eq!(text, "Your key: ", "split at {at}");
        assert_eq!(finish, ["content_filter", "[DONE]"]);
        assert_eq!(g.block().unwrap().check, "s");
        assert!(!String::from_utf8_lossy(&out).contains("sk-"));
    }
}

fn anthropic_stream(deltas: &[&str]) -> Vec<u8> {
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg", "type": "message", "role": "assistant",
            "content": [], "model": "claude", "stop_reason": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for d in deltas {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}}),
        ));
    }
    events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    sse(&events)
}

fn anthropic_text(bytes: &[u8]) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut kinds = Vec::new();
    for e in events_of(bytes) {
        let v: Value = serde_json::from_slice(&e.data).unwrap();
        assert_eq!(v["type"].as_str().unwrap(), e.event);
        kinds.push(e.event.clone());
        if e.event == "content_block_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or_default());
        }
        if e.event == "message_delta" {
            kinds.push(v["delta"]["stop_reason"].as_str().unwrap().to_string());
        }
    }
    (text, kinds)
}

#[test]
fn anthropic_stream_restores_split_placeholders_at_every_byte_split() {
    let guard = response_guard(
        json!([{"name": "pii", "detectors": ["email"], "action": "mask_and_restore"}]),
        "me: ann@example.com",
    );
    let stream = anthropic_stream(&["Hi [EMA", "IL_1], bye [EMAIL", "_1]"]);
    for at in 0..=stream.len() {
        let (text, kinds) = anthropic_text(&run_guard(&guard, &stream, &[at]));
        assert_eq!(text, "Hi ann@example.com, bye ann@example.com", "split at {at}");
        assert_eq!(kinds.last().unwrap(), "message_stop");
    }
}

#[test]
fn anthropic_block_closes_the_block_and_the_message() {
    let guard =
        response_guard(json!([{"name": "s", "detectors": ["secrets"], "action": "block", "on": "response"}]), "hi");
    let stream = anthropic_stream(&["token ghp_abcdefghijklmnop", "qrstuvwxyz0123456789 done"]);
    for at in 0..=stream.len() {
        let out = run_guard(&guard, &stream, &[at]);
        let (text, kinds) = anthropic_text(&out);
        assert_eq!(text, "token ", "split at {at}");
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "refusal",
                "message_stop"
            ]
        );
        assert!(!String::from_utf8_lossy(&out).contains("ghp_"));
    }
}

#[test]
fn tool_call_arguments_are_json_text_in_streams() {
    let guard = response_guard(
        json!([{"name": "q", "deny": ["code\"[a-z]+"], "action": "mask_and_restore", "placeholder": "EMAIL"}]),
        "me: code\"abc",
    );
    // The masked value has a quote; restored into JSON text it must be escaped.
    let events = vec![
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "send", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"to\": \"[EMA"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "IL_1]\"}"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
    ];
    let out = run_guard(&guard, &sse(&events), &[]);
    let mut json_text = String::new();
    for e in events_of(&out) {
        let v: Value = serde_json::from_slice(&e.data).unwrap();
        json_text.push_str(v["delta"]["partial_json"].as_str().unwrap_or_default());
    }
    let args: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(args["to"], "code\"abc", "{json_text}");
}

#[test]
fn responses_stream_done_events_agree_with_the_deltas() {
    let guard = guard_for(
        Api::OpenAiResponses,
        json!([{"name": "pii", "detectors": ["email"], "action": "mask", "on": "response"}]),
        "hi",
    );
    let full = "Mail x@example.com now";
    let events = vec![
        (
            "response.created",
            json!({"type": "response.created", "response": {"id": "r", "object": "response", "status": "in_progress", "output": []}}),
        ),
        (
            "response.output_item.added",
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message", "content": []}}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Mail x@exa"}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "mple.com now"}),
        ),
        (
            "response.output_text.done",
            json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": full}),
        ),
        (
            "response.content_part.done",
            json!({"type": "response.content_part.done", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": full}}),
        ),
        (
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"id": "msg_1", "type": "message", "content": [{"type": "output_text", "text": full}]}}),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "response": {"id": "r", "status": "completed", "output": [{"type": "message", "content": [{"type": "output_text", "text": full}]}]}}),
        ),
    ];
    let stream = sse(&events);
    for at in 0..=stream.len() {
        let out = run_guard(&guard, &stream, &[at]);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("x@example"), "split at {at}");
        let mut deltas = String::new();
        for e in events_of(&out) {
            let v: Value = serde_json::from_slice(&e.data).unwrap();
            if e.event == "response.output_text.delta" {
                deltas.push_str(v["delta"].as_str().unwrap());
            }
        }
        assert_eq!(deltas, "Mail [EMAIL] now");
        assert_eq!(text.matches("Mail [EMAIL] now").count(), 4, "every full-text copy rewritten");
    }
}

#[test]
fn garbage_and_cut_streams_pass_without_panicking() {
    let guard = guard_for(
        Api::OpenAiChat,
        json!([{"name": "pii", "detectors": ["email"], "action": "mask", "on": "response"}]),
        "hi",
    );
    for stream in [
        &b"data: {not json\n\n: comment\n\ndata: \xff\xfe\n\n"[..],
        b"data: {\"choices\":[{\"delta\":{\"content\":\"a@exa",
        b"",
        b"\r\n\r\n",
    ] {
        let out = run_guard(&guard, stream, &[]);
        assert_eq!(out, stream);
    }
    // A stream cut while text is held: the held text is released, checked, in an event of its own.
    let cut = &chat_stream(&["mail b@example.co", "m now"])[..];
    let cut_at = cut.windows(5).position(|w| w == b"m now").unwrap() - 60;
    let out = run_guard(&guard, &cut[..cut_at], &[]);
    let (text, _) =
        chat_text(&out[..out.len() - (cut_at - cut[..cut_at].iter().rposition(|b| *b == b'\n').unwrap() - 1)]);
    assert!(!text.contains("b@example"), "{text}");
}

/// The blocked streams the client SDKs are checked against (tests/e2e/test_guardrail_streams.py
/// parses these files with the official OpenAI and Anthropic SDKs). Regenerate with
/// `TOLLGATE_UPDATE_FIXTURES=1 cargo test --lib blocked_stream_fixtures`.
#[test]
fn blocked_stream_fixtures_are_current() {
    let secret = "sk-proj-AbCdEf1234567890GhIjKlMn";
    let block = json!([{"name": "secrets", "detectors": ["secrets"], "action": "block", "on": "response"}]);
    let chat = {
        let guard = guard_for(Api::OpenAiChat, block.clone(), "hi");
        run_guard(&guard, &chat_stream(&["Your key: ", &secret[..12], &secret[12..], " enjoy"]), &[])
    };
    let anthropic = {
        let guard = guard_for(Api::AnthropicMessages, block.clone(), "hi");
        run_guard(&guard, &anthropic_stream(&["Your key: ", &secret[..12], &secret[12..], " enjoy"]), &[])
    };
    let responses = {
        let guard = guard_for(Api::OpenAiResponses, block, "hi");
        let created = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "gpt-4.1",
            "output": [], "parallel_tool_calls": true, "tool_choice": "auto", "tools": []});
        let events = vec![
            ("response.created", json!({"type": "response.created", "sequence_number": 0, "response": created})),
            (
                "response.output_item.added",
                json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            ),
            (
                "response.output_text.delta",
                json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": "Your key: "}),
            ),
            (
                "response.output_text.delta",
                json!({"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": secret}),
            ),
        ];
        run_guard(&guard, &sse(&events), &[])
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guardrails/sse");
    for (name, bytes) in [
        ("blocked-openai-chat.sse", chat),
        ("blocked-anthropic.sse", anthropic),
        ("blocked-openai-responses.sse", responses),
    ] {
        assert!(!String::from_utf8_lossy(&bytes).contains("sk-proj"), "{name} leaks the key");
        let path = dir.join(name);
        if std::env::var_os("TOLLGATE_UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap_or_default(),
            bytes,
            "{name} is stale: regenerate (see the doc comment)"
        );
    }
}

#[test]
fn a_rewritten_event_keeps_its_other_lines_and_line_ends() {
    let guard = guard_for(
        Api::OpenAiChat,
        json!([{"name": "pii", "detectors": ["email"], "action": "mask", "on": "response"}]),
        "hi",
    );
    let data =
        json!({"choices": [{"index": 0, "delta": {"content": "mail a@example.com now"}, "finish_reason": "stop"}]});
    let stream = format!("id: 7\r\nretry: 50\r\n: note\r\ndata: {data}\r\n\r\ndata: [DONE]\r\n\r\n");
    let out = String::from_utf8(run_guard(&guard, stream.as_bytes(), &[])).unwrap();
    let masked = data.to_string().replace("a@example.com", "[EMAIL]");
    assert_eq!(out, format!("id: 7\r\nretry: 50\r\n: note\r\ndata: {masked}\r\n\r\ndata: [DONE]\r\n\r\n"));
}

#[test]
fn chat_content_sent_as_text_parts_is_checked_too() {
    let guard = guard_for(
        Api::OpenAiChat,
        json!([{"name": "pii", "detectors": ["email"], "action": "mask", "on": "response"}]),
        "hi",
    );
    let data = json!({"choices": [{"index": 0, "delta": {"content": [{"type": "text", "text": "mail a@example.com"}]}, "finish_reason": "stop"}]});
    let out = String::from_utf8(run_guard(&guard, format!("data: {data}\n\n").as_bytes(), &[])).unwrap();
    assert!(out.contains("mail [EMAIL]") && !out.contains("a@example"), "{out}");
}

#[test]
fn text_the_guard_cannot_read_ends_the_stream_when_failing_closed_and_passes_when_open() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let lone = r#"{"choices":[{"index":0,"delta":{"content":"key \ud800 sk-proj-AbCdEf1234567890GhIjKlMn"}}]}"#;
    let too_deep = format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"x"}}}}],"extra":{deep}}}"#);
    for data in [lone.to_string(), too_deep] {
        let stream = format!("data: {data}\n\ndata: [DONE]\n\n");
        for closed in [true, false] {
            let mut response = guard_for(
                Api::OpenAiChat,
                json!([{"name": "s", "detectors": ["secrets"], "action": "block", "on": "response"}]),
                "hi",
            );
            response.fail_closed(closed);
            let mut g = response.stream();
            let mut out = g.feed(stream.as_bytes());
            out.extend(g.finish());
            assert_eq!(g.unreadable(), 1);
            if closed {
                assert_eq!(g.block().unwrap().check, "unreadable_text");
                assert!(!String::from_utf8_lossy(&out).contains("sk-proj"));
                assert_eq!(chat_text(&out).1, ["content_filter", "[DONE]"]);
            } else {
                assert_eq!(out, stream.as_bytes(), "passed as sent");
            }
        }
    }
}

#[test]
fn an_event_over_the_guards_cap_is_unreadable_text() {
    let mut response = guard_for(
        Api::OpenAiChat,
        json!([{"name": "s", "detectors": ["secrets"], "action": "block", "on": "response"}]),
        "hi",
    );
    response.fail_closed(true);
    let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fine \"}}]}\n\n";
    let huge =
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n", "a".repeat(5 << 20));
    let stream = format!("{first}{huge}data: [DONE]\n\n");
    let mut g = response.stream();
    let mut out = g.feed(stream.as_bytes());
    out.extend(g.finish());
    assert_eq!(g.unreadable(), 1);
    assert!(out.starts_with(first.as_bytes()));
    assert!(out.len() < 4096, "nothing of the oversized event went out");
    assert_eq!(chat_text(&out).1, ["content_filter", "[DONE]"]);
}

#[test]
fn a_streamed_tool_name_that_cannot_be_read_cannot_be_allowed() {
    let guard =
        guard_for(Api::OpenAiChat, json!([{"name": "t", "tools": {"allow": ["lookup"]}, "action": "block"}]), "hi");
    let call =
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"\udc00","arguments":""}}]}}]}"#;
    let out = run_guard(&guard, format!("data: {call}\n\ndata: [DONE]\n\n").as_bytes(), &[]);
    assert_eq!(chat_text(&out).1, ["content_filter", "[DONE]"]);
}
