//! Whole requests through `Exchange` on a fake Envoy and a fake Kong: what the client and the
//! upstream end up seeing, for good requests and for every kind of bad input. Every test runs on
//! both hosts (`HOSTS`); where Kong's answer differs, the test says so and cites the probe's fact
//! (../shared/research/kong-host-probe.md) or the README's Kong section.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use support::{policy, FakeHost, Profile, ALL_HOSTS, HOSTS};
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

/// What the client was released, chunk by chunk, as the upstream sent `chunks`. Kong ends every
/// response with a 0-byte end-of-stream call (fact 10; tests/support), released as the filter
/// leaves it: empty, or the stream's cost line.
fn expected_releases(host: &FakeHost, chunks: &[&[u8]], last: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    if host.profile.is_kong() {
        out.push(last.to_vec());
    } else if let Some(end) = out.last_mut() {
        end.extend_from_slice(last);
    }
    out
}

/// On Kong the same answer is priced in the usage record only (`assert_cost_header`).
#[test]
fn non_streaming_response_gets_model_token_and_cost_headers() {
    for profile in ALL_HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &split_in(CHAT_REQUEST, 3));
        host.response(&mut ex, JSON_OK, &split_in(CHAT_RESPONSE, 2));

        assert_clean(&host);
        assert_eq!(host.upstream_body, CHAT_REQUEST, "request bytes go upstream untouched");
        assert_eq!(host.client_body(), CHAT_RESPONSE, "response bytes reach the client untouched");
        host.assert_cost_header("x-tollgate-model", Some("gpt-4o-mini-2024-07-18"));
        host.assert_cost_header("x-tollgate-input-tokens", Some("41"));
        host.assert_cost_header("x-tollgate-output-tokens", Some("20"));
        // 41 × $0.15/M + 20 × $0.60/M
        host.assert_cost_header("x-tollgate-cost-usd", Some("0.00001815"));
        assert_eq!(host.record()["cost_usd"], "0.00001815", "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsInspected), 1);
    }
}

#[test]
fn the_filter_is_shown_cumulative_sizes_while_it_holds_the_body() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        let chunks = split_in(CHAT_REQUEST, 3);
        host.request(&mut ex, CHAT_HEADERS, &chunks);
        let first = chunks[0].len();
        let second = first + chunks[1].len();
        if profile.is_kong() {
            // Fact 1: Kong reads the whole body before the body step, which comes once.
            assert_eq!(host.request_body_calls, vec![(CHAT_REQUEST.len(), true)]);
        } else {
            assert_eq!(host.request_body_calls, vec![(first, false), (second, false), (CHAT_REQUEST.len(), true)]);
        }
        assert_eq!(ex.canonical_request().and_then(|c| c.model.as_deref()), Some("gpt-4o-mini"));
    }
}

#[test]
fn request_headers_are_held_until_the_body_is_judged() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[]);
        // A POST with no body at all is answered locally; the upstream never sees it. (On Kong
        // it is decided in the headers step: its body step never comes, fact 2.)
        assert_clean(&host);
        assert!(!host.upstream_headers_released, "{profile:?}");
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(400), "{profile:?}");
    }
}

/// On Kong the body comes whole however the client split it (fact 1): the same request.
#[test]
fn every_split_of_the_request_body_reads_the_same_request() {
    for profile in HOSTS {
        for at in 0..=CHAT_REQUEST.len() {
            let mut host = FakeHost::new(profile);
            let mut ex = exchange();
            let (head, tail) = CHAT_REQUEST.split_at(at);
            host.request(&mut ex, CHAT_HEADERS, &[head, tail]);
            assert_clean(&host);
            assert_eq!(host.upstream_body, CHAT_REQUEST, "{profile:?} split at {at}");
            let model = ex.canonical_request().and_then(|c| c.model.as_deref());
            assert_eq!(model, Some("gpt-4o-mini"), "{profile:?} split at {at}");
        }
    }
}

/// Envoy only: request trailers are HTTP/2's, and Kong's host has no trailers (README,
/// Response headers: "Kong has no trailers").
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
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
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
        let body = String::from_utf8(host.client_body()).unwrap();
        let (stream, comment) = body.split_at(CHAT_STREAM.len());
        assert_eq!(stream.as_bytes(), CHAT_STREAM);
        // One release per chunk, every chunk unchanged, the cost line after the last: nothing held.
        let releases = expected_releases(&host, &chunks, comment.as_bytes());
        assert_eq!(host.client_body_releases, releases, "{profile:?}");
        let summary: serde_json::Value =
            serde_json::from_str(comment.strip_prefix(": tollgate ").unwrap().trim_end()).unwrap();
        assert_eq!(summary["cost_usd"], "0.00000975", "the stream's cost arrives at its end, in a comment line");
        assert_eq!(host.client_header("x-tollgate-cost-usd"), None, "headers left before the cost was known");
        let trailer = host.trailers.iter().find(|(n, _)| n == "x-tollgate-cost-usd").map(|(_, v)| v.as_str());
        // README, Response headers: "Over HTTP/2 Envoy also sends the same fields as response
        // trailers; Kong has no trailers."
        let expected = if profile.is_kong() { None } else { Some("0.00000975") };
        assert_eq!(trailer, expected, "{profile:?}");
    }
}

#[test]
fn event_stream_content_type_alone_marks_a_stream() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        let chunks = split_in(CHAT_STREAM, 3);
        host.response(&mut ex, SSE_OK, &chunks);
        assert_clean(&host);
        let comment = &host.client_body()[CHAT_STREAM.len()..];
        assert!(comment.starts_with(b": tollgate {"), "{profile:?}: priced as a stream");
        assert_eq!(host.client_body_releases, expected_releases(&host, &chunks, comment), "{profile:?}");
    }
}

#[test]
fn invalid_json_is_answered_with_an_openai_error_and_never_forwarded() {
    for profile in HOSTS {
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
        // The local reply comes back through the response callbacks and is left alone. Kong's
        // host ends its body with a newline (fact 8): the same JSON.
        let end: &[u8] = if profile.is_kong() { b"}\n" } else { b"}" };
        assert!(reply.body.ends_with(end), "{profile:?}: {:?}", String::from_utf8_lossy(&reply.body));
        assert_eq!(host.client_body(), reply.body, "{profile:?}");
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
        for profile in HOSTS {
            let mut host = FakeHost::new(profile);
            let mut ex = exchange();
            host.request(&mut ex, headers, &[body]);
            assert_clean(&host);
            let reply = host.reply.clone().expect("a local reply");
            assert_eq!(reply.status, 400, "{profile:?} {param}");
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
}

/// Envoy: a body step with 0 bytes and end of stream. Kong: no body step at all (fact 2),
/// decided in the headers step.
#[test]
fn empty_body_is_a_400() {
    for profile in ALL_HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[b""]);
        assert_clean(&host);
        let reply = host.reply.clone().expect("a local reply");
        assert_eq!(reply.status, 400, "{profile:?}");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("empty"), "{profile:?}");
        assert!(!host.upstream_headers_released, "{profile:?}");
    }
}

#[test]
fn wrong_field_type_is_a_400_naming_the_param() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[br#"{"model": ["gpt-4o"], "messages": []}"#]);
        let reply = host.reply.clone().expect("a local reply");
        assert_eq!(reply.json()["error"]["param"], "model", "{profile:?}");
    }
}

#[test]
fn missing_or_wrong_content_type_does_not_bypass_inspection() {
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut headers = vec![(":method", "POST"), (":path", "/v1/chat/completions")];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        for profile in HOSTS {
            let mut host = FakeHost::new(profile);
            let mut ex = exchange();
            host.request(&mut ex, &headers, &[CHAT_REQUEST]);
            assert_eq!(host.counter(Counter::RequestsInspected), 1, "{profile:?} {content_type:?}");
            let mut host = FakeHost::new(profile);
            let mut ex = exchange();
            host.request(&mut ex, &headers, &[b"not json"]);
            assert_eq!(host.reply.as_ref().map(|r| r.status), Some(400), "{profile:?} {content_type:?}");
        }
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
        for profile in HOSTS {
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
        for profile in HOSTS {
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
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-encoding", "identity")];
        host.request(&mut ex, &headers, &[CHAT_REQUEST]);
        assert!(host.reply.is_none(), "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsInspected), 1, "{profile:?}");
    }
}

#[test]
fn other_methods_with_a_body_on_an_api_path_get_a_405_and_bodiless_ones_pass() {
    // On Kong the framing headers say whether a body follows (fact 2; the fake sends a body
    // with its `content-length`, as a client's HTTP stack would).
    for method in ["PUT", "PATCH", "GET"] {
        for (path, body) in [("/v1/chat/completions", CHAT_REQUEST), ("/v1/messages", b"{\"a\": 1}  ")] {
            for profile in HOSTS {
                let mut host = FakeHost::new(profile);
                let mut ex = exchange();
                host.request(&mut ex, &[(":method", method), (":path", path)], &[body]);
                assert_clean(&host);
                let reply = host.reply.clone().expect("a local reply");
                assert_eq!(reply.status, 405, "{profile:?} {method} {path}");
                assert!(reply.headers.contains(&("allow".to_string(), "POST".to_string())));
                assert!(host.upstream_body.is_empty() && !host.upstream_headers_released);
            }
        }
    }
    // OpenAI lists stored chat completions with a bodiless GET: it passes, uninspected.
    for profile in HOSTS {
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
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"max_request_body_bytes": 100}"#));
        let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", "101")];
        host.request(&mut ex, &headers, &[&[b' '; 101]]);
        assert_clean(&host);
        let reply = host.reply.clone().expect("a local reply");
        assert_eq!(reply.status, 413, "{profile:?}");
        assert_eq!(reply.json()["error"]["code"], "request_too_large");
        assert!(host.request_body_calls.is_empty(), "{profile:?}: the body was never read");
        assert!(!host.upstream_headers_released, "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsRejectedTooLarge), 1);
    }
}

/// A body sent without a declared length (`transfer-encoding: chunked`).
#[test]
fn chunked_body_growing_past_the_limit_is_refused() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"max_request_body_bytes": 100}"#));
        let chunk = [b' '; 60];
        let headers = [CHAT_HEADERS, &[("transfer-encoding", "chunked")]].concat();
        host.request(&mut ex, &headers, &[&chunk, &chunk, &chunk]);
        assert_clean(&host);
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(413), "{profile:?}");
        assert!(host.upstream_body.is_empty() && !host.upstream_headers_released, "{profile:?}");
        if profile.is_kong() {
            // Fact 1: Kong hands the body over once, whole.
            assert_eq!(host.request_body_calls, [(180, true)]);
        } else {
            assert_eq!(host.request_body_calls.len(), 2, "stopped as soon as the limit was passed");
        }
    }
}

#[test]
fn response_without_usage_says_cost_unknown() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        let answer = br#"{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[]}"#;
        host.response(&mut ex, JSON_OK, &[answer]);
        assert_clean(&host);
        host.assert_cost_header("x-tollgate-model", Some("gpt-4o-mini"));
        host.assert_cost_header("x-tollgate-cost-usd", Some("unknown"));
        assert_eq!(host.client_header("x-tollgate-input-tokens"), None);
        assert_eq!(host.record()["model_served"], "gpt-4o-mini", "{profile:?}");
        assert_eq!(host.counter(Counter::ResponsesWithoutUsage), 1, "{profile:?}");
    }
}

#[test]
fn unpriced_model_is_reported_as_unpriced_not_zero() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[br#"{"model":"my-llama","messages":[]}"#]);
        let answer = br#"{"model":"my-llama","usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        host.response(&mut ex, JSON_OK, &[answer]);
        assert_clean(&host);
        host.assert_cost_header("x-tollgate-cost-usd", Some("unpriced"));
        host.assert_cost_header("x-tollgate-output-tokens", Some("4"));
        assert_eq!(host.record()["tokens"]["output"]["tokens"], 4, "{profile:?}");
        assert_eq!(host.counter(Counter::ResponsesUnpriced), 1, "{profile:?}");
    }
}

#[test]
fn upstream_errors_pass_through_untouched() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        let error = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let headers = [(":status", "429"), ("content-type", "application/json"), ("retry-after", "1")];
        host.response(&mut ex, &headers, &[error]);
        assert_clean(&host);
        assert_eq!(host.client_body(), error, "{profile:?}");
        assert_eq!(host.client_header(":status"), Some("429"));
        assert_eq!(host.client_header("retry-after"), Some("1"));
        assert_eq!(host.client_header("x-tollgate-model"), None);
    }
}

#[test]
fn non_json_success_is_passed_without_holding() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        let chunks: [&[u8]; 2] = [b"<html>", b"</html>"];
        host.response(&mut ex, &[(":status", "200"), ("content-type", "text/html")], &chunks);
        assert_clean(&host);
        assert_eq!(host.client_body_releases, expected_releases(&host, &chunks, b""), "{profile:?}");
        assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
    }
}

#[test]
fn garbage_json_response_is_released_unchanged() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        host.response(&mut ex, JSON_OK, &[b"{\"model\": \"gpt-4o\", \"usa", b"\xff\xfe"]);
        assert_clean(&host);
        assert_eq!(host.client_body(), b"{\"model\": \"gpt-4o\", \"usa\xff\xfe", "{profile:?}");
        assert_eq!(host.client_header("x-tollgate-model"), None);
        assert_eq!(host.counter(Counter::ResponsesNotInspected), 1, "{profile:?}");
    }
}

#[test]
fn response_larger_than_the_limit_is_released_without_headers() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"max_response_body_bytes": 100}"#));
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        let big = vec![b' '; 80];
        host.response(&mut ex, JSON_OK, &[&big, &big, &big]);
        assert_clean(&host);
        assert_eq!(host.client_body().len(), 240, "{profile:?}");
        assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
        assert_eq!(host.counter(Counter::ResponsesNotInspected), 1, "{profile:?}");
    }
}

#[test]
fn declared_oversize_response_is_not_held_at_all() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"max_response_body_bytes": 100}"#));
        host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
        let headers = [(":status", "200"), ("content-type", "application/json"), ("content-length", "5000")];
        let chunks: [&[u8]; 2] = [&[b' '; 50], &[b' '; 50]];
        host.response(&mut ex, &headers, &chunks);
        assert_clean(&host);
        assert_eq!(host.client_body_releases, expected_releases(&host, &chunks, b""), "{profile:?}");
    }
}

#[test]
fn other_paths_and_methods_pass_through_untouched() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, &[(":method", "POST"), (":path", "/v1/files")], &[b"not json", b"at all"]);
        assert_clean(&host);
        assert!(host.reply.is_none());
        assert_eq!(host.upstream_body, b"not jsonat all", "{profile:?}");
        // Never held. Kong hands the body over once, whole (fact 1).
        let calls = if profile.is_kong() { vec![(14, true)] } else { vec![(8, false), (6, true)] };
        assert_eq!(host.request_body_calls, calls, "{profile:?}");
        host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
        assert_eq!(host.client_body(), CHAT_RESPONSE, "{profile:?}");
        assert_eq!(host.client_header("x-tollgate-model"), None);
    }
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
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"header_prefix": "x-llm-"}"#));
        let headers = [CHAT_HEADERS, &[("x-llm-tenant", "spoofed")]].concat();
        host.request(&mut ex, &headers, &[CHAT_REQUEST]);
        host.assert_withheld("x-llm-tenant");
        host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
        assert_clean(&host);
        host.assert_cost_header("x-llm-cost-usd", Some("0.00001815"));
        assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
    }
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
        let at = if body.is_empty() { 0 } else { (next() as usize) % body.len() };
        let (a, b) = body.split_at(at);
        for profile in ALL_HOSTS {
            let mut host = FakeHost::new(profile);
            let mut ex = exchange();
            host.request(&mut ex, CHAT_HEADERS, &[a, b]);
            host.response(&mut ex, JSON_OK, &[b, a]);
            assert_clean(&host);
        }
    }
}

#[test]
fn a_json_answer_to_a_stream_request_is_read_as_json() {
    let request = br#"{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = exchange();
        host.request(&mut ex, CHAT_HEADERS, &[request]);
        host.response(&mut ex, JSON_OK, &split_in(CHAT_RESPONSE, 2));
        assert_clean(&host);
        assert_eq!(host.client_body(), CHAT_RESPONSE, "passed as it came");
        // Priced from the answer's usage: 41 × $0.15/M + 20 × $0.60/M.
        host.assert_cost_header("x-tollgate-cost-usd", Some("0.00001815"));
        assert_eq!(host.record()["cost_usd"], "0.00001815", "{profile:?}");
        assert_eq!(host.record()["tokens"]["output"]["source"], "provider");
    }
}
