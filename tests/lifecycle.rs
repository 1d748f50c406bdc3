//! Whole requests through `Exchange` on a fake Envoy and a fake Kong: what the client and the
//! upstream end up seeing, for good requests and for every kind of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use support::{policy, FakeHost, Profile};
use tollgate::exchange::Exchange;
use tollgate::names::Counter;

const CHAT_REQUEST: &[u8] = include_bytes!("fixtures/openai/chat_request.json");
const CHAT_RESPONSE: &[u8] = include_bytes!("fixtures/openai/chat_response.json");
const CHAT_STREAM: &[u8] = include_bytes!("fixtures/openai/chat_stream.sse");

const CHAT_HEADERS: &[(&str, &str)] =
    &[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream; charset=utf-8")];

fn exchange() -> Exchange {
    Exchange::new(1, policy("{}"))
}

fn split_in(bytes: &[u8], parts: usize) -> Vec<&[u8]> {
    let size = bytes.len().div_ceil(parts);
    bytes.chunks(size).collect()
}

fn assert_clean(host: &FakeHost) {
    assert!(host.violations.is_empty(), "host violations: {:?}", host.violations);
}

#[test]
fn non_streaming_response_gets_model_token_and_cost_headers() {
    for profile in [Profile::Envoy, Profile::EnvoyEmptyEnd] {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &split_in(CHAT_REQUEST, 3));
        host.response(&mut ex, JSON_OK, &split_in(CHAT_RESPONSE, 2));

        assert_clean(&host);
        assert_eq!(host.upstream_body, CHAT_REQUEST, "request bytes go upstream untouched");
        assert_eq!(host.client_body(), CHAT_RESPONSE, "response bytes reach the client untouched");
        assert_eq!(host.client_header("x-tollgate-model"), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(host.client_header("x-tollgate-input-tokens"), Some("41"));
        assert_eq!(host.client_header("x-tollgate-output-tokens"), Some("20"));
        // 41 × $0.15/M + 20 × $0.60/M
        assert_eq!(host.client_header("x-tollgate-cost-usd"), Some("0.00001815"));
        assert_eq!(host.counter(Counter::RequestsInspected), 1);
    }
}

#[test]
fn the_filter_is_shown_cumulative_sizes_while_it_holds_the_body() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    let chunks = split_in(CHAT_REQUEST, 3);
    host.request(&mut ex, CHAT_HEADERS, &chunks);
    let first = chunks[0].len();
    let second = first + chunks[1].len();
    assert_eq!(host.request_body_calls, vec![(first, false), (second, false), (CHAT_REQUEST.len(), true)]);
    assert_eq!(ex.canonical_request().and_then(|c| c.model.as_deref()), Some("gpt-4o-mini"));
}

#[test]
fn request_headers_are_held_until_the_body_is_judged() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[]);
    // A POST with no body at all is answered locally; the upstream never sees it.
    assert!(!host.upstream_headers_released);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(400));
}

#[test]
fn every_split_of_the_request_body_reads_the_same_request() {
    for at in 0..=CHAT_REQUEST.len() {
        let mut host = FakeHost::new(Profile::Envoy);
        let mut ex = exchange();
        let (head, tail) = CHAT_REQUEST.split_at(at);
        host.request(&mut ex, CHAT_HEADERS, &[head, tail]);
        assert_clean(&host);
        assert_eq!(host.upstream_body, CHAT_REQUEST, "split at {at}");
        assert_eq!(ex.canonical_request().and_then(|c| c.model.as_deref()), Some("gpt-4o-mini"), "split at {at}");
    }
}

#[test]
fn request_trailers_end_the_body_when_no_body_call_does() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request_with_trailers(&mut ex, CHAT_HEADERS, &split_in(CHAT_REQUEST, 2));
    assert_clean(&host);
    assert_eq!(host.upstream_body, CHAT_REQUEST);
    assert!(ex.canonical_request().is_some());
}

#[test]
fn streaming_responses_pass_chunk_by_chunk_without_cost_headers() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    let body = String::from_utf8(CHAT_REQUEST.to_vec()).unwrap().replacen(
        '{',
        "{\"stream\": true, \"stream_options\": {\"include_usage\": true}, ",
        1,
    );
    host.request(&mut ex, CHAT_HEADERS, &[body.as_bytes()]);
    let chunks = split_in(CHAT_STREAM, 7);
    host.response(&mut ex, SSE_OK, &chunks);

    assert_clean(&host);
    assert_eq!(host.client_body_releases.len(), chunks.len(), "one release per chunk: nothing is held");
    for (released, chunk) in host.client_body_releases.iter().zip(&chunks).take(chunks.len() - 1) {
        assert_eq!(released, chunk, "every chunk but the last goes on unchanged");
    }
    let body = String::from_utf8(host.client_body()).unwrap();
    let (stream, comment) = body.split_at(CHAT_STREAM.len());
    assert_eq!(stream.as_bytes(), CHAT_STREAM);
    let summary: serde_json::Value =
        serde_json::from_str(comment.strip_prefix(": tollgate ").unwrap().trim_end()).unwrap();
    assert_eq!(summary["cost_usd"], "0.00000975", "the stream's cost arrives at its end, in a comment line");
    assert_eq!(host.client_header("x-tollgate-cost-usd"), None, "headers left before the cost was known");
    let trailer = host.trailers.iter().find(|(n, _)| n == "x-tollgate-cost-usd").map(|(_, v)| v.as_str());
    assert_eq!(trailer, Some("0.00000975"));
}

#[test]
fn event_stream_content_type_alone_marks_a_stream() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    let chunks = split_in(CHAT_STREAM, 3);
    host.response(&mut ex, SSE_OK, &chunks);
    assert_clean(&host);
    assert_eq!(host.client_body_releases.len(), 3);
}

#[test]
fn invalid_json_is_answered_with_an_openai_error_and_never_forwarded() {
    for profile in [Profile::Envoy, Profile::Kong] {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[b"{\"model\": \"gpt-4o\", \"messages\": [", b"oops"]);
        assert_clean(&host);
        let reply = host.reply.clone().expect("a local reply");
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
        assert_eq!(reply.json()["error"]["code"], "invalid_json");
        assert!(host.upstream_body.is_empty());
        assert!(!host.upstream_headers_released);
        assert_eq!(host.counter(Counter::RequestsRejectedInvalidBody), 1);
        // The local reply comes back through the response callbacks and is left alone.
        assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
    }
}

#[test]
fn a_member_of_the_wrong_type_is_a_400_naming_it_in_the_clients_dialect_and_never_forwarded() {
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let messages_headers: Headers = &[(":method", "POST"), (":path", "/v1/messages")];
    let cases: [(Headers, &[u8], &str); 3] = [
        (CHAT_HEADERS, br#"{"model": "gpt-4o", "messages": [], "stop": ["a", 5]}"#, "stop"),
        (
            CHAT_HEADERS,
            br#"{"model": "gpt-4o", "messages": [], "tools": [{"type": "function", "function": 1}]}"#,
            "tools",
        ),
        (messages_headers, br#"{"model": "claude-haiku-4-5", "max_tokens": 5, "tool_choice": "auto"}"#, "tool_choice"),
    ];
    for (headers, body, param) in cases {
        let mut host = FakeHost::new(Profile::Envoy);
        let mut ex = exchange();
        host.request(&mut ex, headers, &[body]);
        assert_clean(&host);
        let reply = host.reply.clone().expect("a local reply");
        assert_eq!(reply.status, 400, "{param}");
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert!(error["message"].as_str().unwrap().contains(&format!("`{param}")), "{error}");
        if param != "tool_choice" {
            assert_eq!((error["code"].as_str(), error["param"].as_str()), (Some("invalid_type"), Some(param)));
        }
        assert!(host.upstream_body.is_empty() && !host.upstream_headers_released);
        assert_eq!(host.counter(Counter::RequestsRejectedInvalidBody), 1);
    }
}

#[test]
fn empty_body_is_a_400() {
    let mut host = FakeHost::new(Profile::Kong);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[b""]);
    let reply = host.reply.clone().expect("a local reply");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("empty"));
}

#[test]
fn wrong_field_type_is_a_400_naming_the_param() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[br#"{"model": ["gpt-4o"], "messages": []}"#]);
    let reply = host.reply.clone().expect("a local reply");
    assert_eq!(reply.json()["error"]["param"], "model");
}

#[test]
fn missing_or_wrong_content_type_does_not_bypass_inspection() {
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut headers = vec![(":method", "POST"), (":path", "/v1/chat/completions")];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let mut host = FakeHost::new(Profile::Envoy);
        let mut ex = exchange();
        host.request(&mut ex, &headers, &[CHAT_REQUEST]);
        assert_eq!(host.counter(Counter::RequestsInspected), 1, "{content_type:?}");
        let mut host = FakeHost::new(Profile::Envoy);
        let mut ex = exchange();
        host.request(&mut ex, &headers, &[b"not json"]);
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(400), "{content_type:?}");
    }
}

#[test]
fn duplicate_keys_are_refused_so_no_copy_can_be_smuggled_past_the_policy() {
    let deny = r#"{"models": {"deny": ["gpt-4.1*"]}}"#;
    for body in [
        &br#"{"model": "gpt-4.1", "model": "gpt-4o-mini", "messages": []}"#[..],
        br#"{"model": "gpt-4o-mini", "messages": [], "mo\u0064el": "gpt-4.1"}"#,
        br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a", "content": "b"}]}"#,
    ] {
        for profile in [Profile::Envoy, Profile::Kong] {
            let mut host = FakeHost::new(profile);
            let mut ex = Exchange::new(1, policy(deny));
            host.request(&mut ex, CHAT_HEADERS, &[body]);
            assert_clean(&host);
            let reply = host.reply.clone().expect("a local reply");
            assert_eq!(reply.status, 400);
            assert_eq!(reply.json()["error"]["code"], "invalid_json");
            assert!(reply.json()["error"]["message"].as_str().unwrap().contains("duplicate key"));
            assert!(host.upstream_body.is_empty() && !host.upstream_headers_released);
        }
    }
}

#[test]
fn compressed_request_bodies_are_refused_with_a_415_before_the_body() {
    for (path, encoding) in
        [("/v1/chat/completions", "gzip"), ("/v1/messages", "br"), ("/v1/chat/completions", "identity, gzip")]
    {
        for profile in [Profile::Envoy, Profile::Kong] {
            let mut host = FakeHost::new(profile);
            let mut ex = exchange();
            let headers = [(":method", "POST"), (":path", path), ("content-encoding", encoding)];
            host.request(&mut ex, &headers, &[b"\x1f\x8b\x08\x00compressed"]);
            assert_clean(&host);
            let reply = host.reply.clone().expect("a local reply");
            assert_eq!(reply.status, 415, "{encoding}");
            if path == "/v1/messages" {
                assert_eq!(reply.json()["type"], "error");
                assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
            } else {
                assert_eq!(reply.json()["error"]["code"], "unsupported_content_encoding");
            }
            assert!(host.upstream_body.is_empty() && !host.upstream_headers_released);
        }
    }
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-encoding", "identity")];
    host.request(&mut ex, &headers, &[CHAT_REQUEST]);
    assert!(host.reply.is_none());
    assert_eq!(host.counter(Counter::RequestsInspected), 1);
}

#[test]
fn other_methods_with_a_body_on_an_api_path_get_a_405_and_bodiless_ones_pass() {
    for method in ["PUT", "PATCH", "GET"] {
        let mut host = FakeHost::new(Profile::Envoy);
        let mut ex = exchange();
        host.request(&mut ex, &[(":method", method), (":path", "/v1/chat/completions")], &[CHAT_REQUEST]);
        assert_clean(&host);
        let reply = host.reply.clone().expect("a local reply");
        assert_eq!(reply.status, 405, "{method}");
        assert!(reply.headers.contains(&("allow".to_string(), "POST".to_string())));
        assert!(host.upstream_body.is_empty() && !host.upstream_headers_released);
    }
    // Kong: the framing headers say whether a body follows.
    let mut host = FakeHost::new(Profile::Kong);
    let mut ex = exchange();
    let headers = [(":method", "PUT"), (":path", "/v1/messages"), ("content-length", "10")];
    host.request(&mut ex, &headers, &[b"{\"a\": 1}  "]);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(405));
    // OpenAI lists stored chat completions with a bodiless GET: it passes, uninspected.
    for profile in [Profile::Envoy, Profile::Kong] {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, &[(":method", "GET"), (":path", "/v1/chat/completions?limit=5")], &[]);
        assert_clean(&host);
        assert!(host.reply.is_none());
        assert!(host.upstream_headers_released);
    }
}

#[test]
fn declared_oversize_body_is_refused_before_it_is_read() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy(r#"{"max_request_body_bytes": 100}"#));
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", "101")];
    host.request(&mut ex, &headers, &[&[b' '; 101]]);
    let reply = host.reply.clone().expect("a local reply");
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "request_too_large");
    assert!(host.request_body_calls.is_empty(), "the body was never read");
    assert_eq!(host.counter(Counter::RequestsRejectedTooLarge), 1);
}

#[test]
fn chunked_body_growing_past_the_limit_is_refused() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy(r#"{"max_request_body_bytes": 100}"#));
    let chunk = [b' '; 60];
    host.request(&mut ex, CHAT_HEADERS, &[&chunk, &chunk, &chunk]);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(413));
    assert!(host.upstream_body.is_empty());
    assert_eq!(host.request_body_calls.len(), 2, "stopped as soon as the limit was passed");
}

#[test]
fn response_without_usage_says_cost_unknown() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, JSON_OK, &[br#"{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[]}"#]);
    assert_clean(&host);
    assert_eq!(host.client_header("x-tollgate-model"), Some("gpt-4o-mini"));
    assert_eq!(host.client_header("x-tollgate-cost-usd"), Some("unknown"));
    assert_eq!(host.client_header("x-tollgate-input-tokens"), None);
    assert_eq!(host.counter(Counter::ResponsesWithoutUsage), 1);
}

#[test]
fn unpriced_model_is_reported_as_unpriced_not_zero() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[br#"{"model":"my-llama","messages":[]}"#]);
    host.response(&mut ex, JSON_OK, &[br#"{"model":"my-llama","usage":{"prompt_tokens":3,"completion_tokens":4}}"#]);
    assert_eq!(host.client_header("x-tollgate-cost-usd"), Some("unpriced"));
    assert_eq!(host.client_header("x-tollgate-output-tokens"), Some("4"));
    assert_eq!(host.counter(Counter::ResponsesUnpriced), 1);
}

#[test]
fn upstream_errors_pass_through_untouched() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    let error =
        br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    host.response(&mut ex, &[(":status", "429"), ("content-type", "application/json"), ("retry-after", "1")], &[error]);
    assert_clean(&host);
    assert_eq!(host.client_body(), error);
    assert_eq!(host.client_header("retry-after"), Some("1"));
    assert_eq!(host.client_header("x-tollgate-model"), None);
}

#[test]
fn non_json_success_is_passed_without_holding() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, &[(":status", "200"), ("content-type", "text/html")], &[b"<html>", b"</html>"]);
    assert_clean(&host);
    assert_eq!(host.client_body_releases.len(), 2);
    assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
}

#[test]
fn garbage_json_response_is_released_unchanged() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, JSON_OK, &[b"{\"model\": \"gpt-4o\", \"usa", b"\xff\xfe"]);
    assert_clean(&host);
    assert_eq!(host.client_body(), b"{\"model\": \"gpt-4o\", \"usa\xff\xfe");
    assert_eq!(host.client_header("x-tollgate-model"), None);
    assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
}

#[test]
fn response_larger_than_the_limit_is_released_without_headers() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy(r#"{"max_response_body_bytes": 100}"#));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    let big = vec![b' '; 80];
    host.response(&mut ex, JSON_OK, &[&big, &big, &big]);
    assert_clean(&host);
    assert_eq!(host.client_body().len(), 240);
    assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
    assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
}

#[test]
fn declared_oversize_response_is_not_held_at_all() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy(r#"{"max_response_body_bytes": 100}"#));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    let headers = [(":status", "200"), ("content-type", "application/json"), ("content-length", "5000")];
    host.response(&mut ex, &headers, &[&[b' '; 50], &[b' '; 50]]);
    assert_clean(&host);
    assert_eq!(host.client_body_releases.len(), 2);
}

#[test]
fn other_paths_and_methods_pass_through_untouched() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, &[(":method", "POST"), (":path", "/v1/files")], &[b"not json", b"at all"]);
    assert_clean(&host);
    assert!(host.reply.is_none());
    assert_eq!(host.upstream_body, b"not jsonat all");
    assert_eq!(host.request_body_calls, vec![(8, false), (6, true)], "never held");
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    assert_eq!(host.client_header("x-tollgate-model"), None);
}

#[test]
fn kong_reads_the_request_but_never_holds_response_headers() {
    let mut host = FakeHost::new(Profile::Kong);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    assert_eq!(host.request_body_calls, vec![(CHAT_REQUEST.len(), true)]);
    assert_eq!(host.upstream_body, CHAT_REQUEST);
    host.response(&mut ex, JSON_OK, &split_in(CHAT_RESPONSE, 3));
    assert_clean(&host);
    assert_eq!(host.client_body(), CHAT_RESPONSE);
    assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
}

#[test]
fn custom_header_prefix_is_used() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy(r#"{"header_prefix": "x-llm-"}"#));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    assert_eq!(host.client_header("x-llm-cost-usd"), Some("0.00001815"));
    assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
}

#[test]
fn arbitrary_bytes_never_panic_and_never_hang() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"{}[]\":,0123456789.eE-+ truefalsnul\\u00ffmodelstream\n\xff\xc3";
    for _ in 0..2000 {
        let len = (next() % 64) as usize;
        let body: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        let mut host = FakeHost::new(Profile::EnvoyEmptyEnd);
        let mut ex = exchange();
        let at = if body.is_empty() { 0 } else { (next() as usize) % body.len() };
        let (a, b) = body.split_at(at);
        host.request(&mut ex, CHAT_HEADERS, &[a, b]);
        host.response(&mut ex, JSON_OK, &[b, a]);
        assert_clean(&host);
    }
}

#[test]
fn a_json_answer_to_a_stream_request_is_read_as_json() {
    let request = br#"{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = exchange();
    host.request(&mut ex, CHAT_HEADERS, &[request]);
    host.response(&mut ex, JSON_OK, &split_in(CHAT_RESPONSE, 2));
    assert_clean(&host);
    assert_eq!(host.client_body(), CHAT_RESPONSE, "passed as it came");
    assert!(host.client_header("x-tollgate-cost-usd").is_some(), "priced from the answer's usage");
    assert_eq!(host.record()["tokens"]["output"]["source"], "provider");
}
