//! `failure_mode`: what a request becomes when the proxy refuses a hostcall the filter needs.
//! Open passes it on untouched and counts it; closed answers a 5xx in the client's dialect and
//! forwards nothing. Per route when `routes` names the proxy's route. On both hosts (`HOSTS`);
//! where Kong differs (its 413 for a body it did not keep, an answer's status sent before its
//! body is read), the test says so with the README's line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use support::{each_host, policy, FakeHost, Profile, ALL_HOSTS, HOSTS};
use tollgate::exchange::Exchange;
use tollgate::names::Counter;

const CHAT: &[u8] = br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#;
const MESSAGES: &[u8] =
    br#"{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}"#;
const CHAT_HEADERS: &[(&str, &str)] = &[(":method", "POST"), (":path", "/v1/chat/completions")];
const MESSAGES_HEADERS: &[(&str, &str)] = &[(":method", "POST"), (":path", "/v1/messages")];
const ROUTED: &str = r#"{
    "providers": {"openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-provider"}}},
    "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini"}},
    "rules": [{"match": {"model": "fast"}, "targets": ["mini"]}]"#;

fn with_mode(extra: &str) -> String {
    format!("{{{extra}}}")
}

#[test]
fn closed_is_the_default_and_answers_a_500_in_the_clients_dialect() {
    for (headers, body, anthropic) in [(CHAT_HEADERS, CHAT, false), (MESSAGES_HEADERS, MESSAGES, true)] {
        for profile in HOSTS {
            let mut host = FakeHost::new(profile);
            host.refuse.push("request_body");
            let mut ex = Exchange::new(1, policy("{}"));
            host.request(&mut ex, headers, &[body]);
            assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
            let reply = host.reply.clone().expect("a local reply");
            let error = reply.json();
            if profile.is_kong() {
                // README, Failure mode: "`500` (on Kong the documented `413`: nginx spilled the
                // body to a file, raise its buffer)" — the only body Kong does not hand over.
                assert_eq!(reply.status, 413);
                let kind = if anthropic { &error["error"]["type"] } else { &error["error"]["code"] };
                assert_eq!(kind, "request_too_large", "{error}");
            } else if anthropic {
                assert_eq!(reply.status, 500);
                assert_eq!(error["error"]["type"], "api_error");
            } else {
                assert_eq!(reply.status, 500);
                assert_eq!(error["error"]["code"], "gateway_error");
                assert_eq!(error["error"]["type"], "server_error");
            }
            if anthropic {
                assert_eq!(error["type"], "error", "Anthropic-shaped on {profile:?}");
            }
            assert!(!host.upstream_headers_released && host.upstream_body.is_empty());
            assert_eq!(host.counter(Counter::RequestsFailedClosed), 1);
            assert_eq!(host.counter(Counter::RequestsFailedOpen), 0);
        }
    }
}

#[test]
fn open_passes_an_unreadable_body_on_untouched_and_counts_it() {
    for profile in ALL_HOSTS {
        let mut host = FakeHost::new(profile);
        host.refuse.push("request_body");
        let mut ex = Exchange::new(1, policy(&with_mode(r#""failure_mode": "open""#)));
        host.request(&mut ex, CHAT_HEADERS, &[&CHAT[..10], &CHAT[10..]]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert!(host.reply.is_none());
        assert_eq!(host.upstream_body, CHAT, "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsFailedOpen), 1);
        assert_eq!(host.counter(Counter::RequestsInspected), 0);
        host.response(&mut ex, &[(":status", "200"), ("content-type", "application/json")], &[b"{}"]);
        assert!(host.violations.is_empty(), "{:?}", host.violations);
    }
}

#[test]
fn kong_fails_closed_with_the_documented_413_for_a_body_it_did_not_keep() {
    let mut host = FakeHost::new(Profile::Kong);
    host.refuse.push("request_body");
    let mut ex = Exchange::new(1, policy("{}"));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(413));
    assert_eq!(host.counter(Counter::RequestsFailedClosed), 1);
}

#[test]
fn a_routed_body_that_cannot_be_rewritten_follows_the_failure_mode() {
    let body = br#"{"model": "fast", "messages": []}"#;
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        host.refuse.push("replace_request_body");
        let mut ex = Exchange::new(1, policy(&format!("{ROUTED}}}")));
        host.request(&mut ex, CHAT_HEADERS, &[body]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500), "{profile:?}");
        assert!(!host.upstream_headers_released);
        assert_eq!(host.counter(Counter::RequestsFailedClosed), 1);

        let mut host = FakeHost::new(profile);
        host.refuse.push("replace_request_body");
        let mut ex = Exchange::new(1, policy(&format!(r#"{ROUTED}, "failure_mode": "open"}}"#)));
        host.request(&mut ex, CHAT_HEADERS, &[body]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert!(host.reply.is_none());
        assert_eq!(host.upstream_body, body, "{profile:?}: the original body went on");
        assert_eq!(
            host.upstream_values("authorization"),
            ["Bearer sk-provider"],
            "{profile:?}: to the routed provider"
        );
        assert_eq!(host.counter(Counter::RequestsFailedOpen), 1);
    }
}

#[test]
fn an_include_usage_insertion_that_fails_is_not_a_failure() {
    // Only metering suffers (usage is estimated): the request itself is as the client sent it.
    let body = br#"{"model": "gpt-4o-mini", "stream": true, "messages": []}"#;
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        host.refuse.push("replace_request_body");
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, CHAT_HEADERS, &[body]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert!(host.reply.is_none());
        assert_eq!(host.upstream_body, body, "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsFailedClosed) + host.counter(Counter::RequestsFailedOpen), 0);
    }
}

/// Closed holds the request: the fake host reports it as a request that would hang, on Kong a
/// parked one (fact 1; README, Failure mode).
#[test]
fn a_refused_local_reply_holds_the_request_when_closed_and_releases_it_when_open() {
    let bad = b"{not json";
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        host.refuse.push("send_reply");
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, CHAT_HEADERS, &[bad]);
        assert!(
            !host.upstream_headers_released && host.upstream_body.is_empty(),
            "{profile:?}: nothing unjudged went upstream"
        );
        assert_eq!(host.counter(Counter::RequestsFailedClosed), 1);

        let mut host = FakeHost::new(profile);
        host.refuse.push("send_reply");
        let mut ex = Exchange::new(1, policy(r#"{"failure_mode": "open"}"#));
        host.request(&mut ex, CHAT_HEADERS, &[bad]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert_eq!(host.upstream_body, bad, "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsFailedOpen), 1);
    }
}

#[test]
fn the_mode_is_chosen_by_the_proxys_route() {
    let config = r#"{"failure_mode": {"default": "closed", "routes": {"team-a": "open"}}}"#;
    for profile in HOSTS {
        for (route, open) in [(Some("team-a"), true), (Some("public"), false), (None, false)] {
            let mut host = FakeHost::new(profile);
            host.refuse.push("request_body");
            host.route_name = route.map(str::to_string);
            let mut ex = Exchange::new(1, policy(config));
            host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
            assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
            assert_eq!(host.reply.is_none(), open, "{profile:?} {route:?}");
            assert_eq!(host.upstream_body.is_empty(), !open, "{profile:?} {route:?}");
            assert_eq!(host.counter(Counter::RequestsFailedOpen), u64::from(open), "{profile:?} {route:?}");
            assert_eq!(host.counter(Counter::RequestsFailedClosed), u64::from(!open), "{profile:?} {route:?}");
        }
    }
}

#[test]
fn a_closed_failure_whose_refusal_is_refused_too_is_counted_once() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        host.refuse.push("request_body");
        host.refuse.push("send_reply");
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
        assert!(
            host.reply.is_none() && host.upstream_body.is_empty(),
            "{profile:?}: held: nothing reaches the upstream"
        );
        assert!(!host.upstream_headers_released, "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsFailedClosed), 1, "{profile:?}");
    }
}

const STREAM_EVENTS: [&str; 4] = [
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello \"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there, \"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"friend.\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
];
const STREAMING_CHAT: &[u8] = br#"{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}"#;
const SSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];
const GUARDED: &str = r#""guardrails": {"policies": [{"name": "p", "checks": [
    {"name": "s", "detectors": ["secrets"], "action": "block"}]}]}"#;

/// A stream whose second chunk the proxy cannot hand over: the stages would be out of step.
fn stream_with_an_unreadable_chunk(
    profile: Profile,
    config: &str,
    path_headers: &[(&str, &str)],
    body: &[u8],
) -> FakeHost {
    let mut host = FakeHost::new(profile);
    host.unreadable_response_chunks.push(1);
    let mut ex = Exchange::new(1, policy(config));
    host.request(&mut ex, path_headers, &[body]);
    let chunks: Vec<&[u8]> = STREAM_EVENTS.iter().map(|e| e.as_bytes()).collect();
    host.response(&mut ex, SSE, &chunks);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    host
}

#[test]
fn an_unreadable_stream_chunk_passes_with_the_rest_when_nothing_must_rewrite_it() {
    for config in ["{}".to_string(), with_mode(&format!(r#""failure_mode": "open", {GUARDED}"#))] {
        for profile in HOSTS {
            let host = stream_with_an_unreadable_chunk(profile, &config, CHAT_HEADERS, STREAMING_CHAT);
            // Every byte the provider sent, nothing added (no cost line on a stream the filter let go).
            assert_eq!(host.client_body(), STREAM_EVENTS.concat().as_bytes(), "{profile:?} {config}");
            assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
            assert_eq!(host.record()["outcome"], "truncated", "the meter stopped reading: the counts are estimates");
        }
    }
}

#[test]
fn an_unreadable_stream_chunk_ends_a_guarded_stream_that_fails_closed() {
    for profile in HOSTS {
        let host = stream_with_an_unreadable_chunk(profile, &with_mode(GUARDED), CHAT_HEADERS, STREAMING_CHAT);
        let body = String::from_utf8(host.client_body()).unwrap();
        assert!(body.starts_with(STREAM_EVENTS[0]), "what came before went out: {body}");
        assert!(!body.contains("friend"), "nothing after the unread chunk: {body}");
        assert!(body.contains(r#""finish_reason":"content_filter""#) && body.contains("data: [DONE]"), "{body}");
        assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
        assert_eq!(host.record()["guardrails"]["blocked_by"]["check"], "unread_answer");
    }
}

#[test]
fn an_unreadable_stream_chunk_ends_a_translated_stream_with_an_error_in_the_clients_dialect() {
    let config = with_mode(
        r#""providers": {"openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-provider"}}},
        "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini"}},
        "rules": [{"match": {"model": "fast"}, "targets": ["mini"]}]"#,
    );
    let body =
        br#"{"model": "fast", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}"#;
    for profile in HOSTS {
        let host = stream_with_an_unreadable_chunk(profile, &config, MESSAGES_HEADERS, body);
        let body = String::from_utf8(host.client_body()).unwrap();
        assert!(body.contains("event: error") && body.contains("could not read the provider's stream"), "{body}");
        assert!(!body.contains("friend"), "{body}");
        assert_eq!(host.counter(Counter::ResponsesNotInspected), 1);
    }
}

#[test]
fn a_refused_chunk_rewrite_lets_the_rest_pass_as_sent() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        host.unwritable_response_chunks.push(0);
        let mut ex = Exchange::new(1, policy("{}"));
        let no_usage = br#"{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
        host.request(&mut ex, CHAT_HEADERS, &[no_usage]);
        let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
        let stream = [STREAM_EVENTS[0], STREAM_EVENTS[2], usage, STREAM_EVENTS[3]].concat();
        // The first chunk ends inside an event, which the usage-chunk strip holds back.
        let cut = STREAM_EVENTS[0].len() + 10;
        host.response(&mut ex, SSE, &[&stream.as_bytes()[..cut], &stream.as_bytes()[cut..]]);
        // Its output refused, the stream went on as sent: every byte once, none twice.
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert_eq!(host.client_body(), stream.as_bytes(), "{profile:?}");
        assert_eq!(host.counter(Counter::ResponsesNotRewritten), 1);
    }
}

#[test]
fn an_answer_the_proxy_cannot_hand_over_fails_as_the_route_says_when_it_had_to_be_changed() {
    let answer = br#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    let json = &[(":status", "200"), ("content-type", "application/json")][..];
    for (config, refused) in [
        (with_mode(GUARDED), true),
        (with_mode(&format!(r#""failure_mode": "open", {GUARDED}"#)), false),
        ("{}".to_string(), false),
    ] {
        for profile in HOSTS {
            let mut host = FakeHost::new(profile);
            host.unreadable_response_chunks.push(0);
            let mut ex = Exchange::new(1, policy(&config));
            host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
            host.response(&mut ex, json, &[answer]);
            assert!(host.violations.is_empty(), "{:?}", host.violations);
            assert_eq!(host.counter(Counter::ResponsesNotInspected), 1, "{config}");
            if refused {
                // README, Kong: "closed, the body is replaced by a `500` `gateway_error` in the
                // client's dialect (the status has left already)".
                let status = if profile.is_kong() { "200" } else { "500" };
                assert_eq!(host.client_header(":status"), Some(status), "{profile:?}");
                let error: serde_json::Value = serde_json::from_slice(&host.client_body()).unwrap();
                assert_eq!(error["error"]["code"], "gateway_error");
            } else {
                assert_eq!(host.client_body(), answer, "{profile:?} {config}: passed as sent");
            }
        }
    }
}

/// README: a client-sent header with Tollgate's prefix that cannot be removed is always closed
/// (it could pick a cluster or a tenant). Names the proxy will not list cannot be checked for
/// the prefix at all: the same 500 in the client's dialect, whatever `failure_mode` says.
#[test]
fn header_names_the_proxy_will_not_list_are_refused_always_closed() {
    for (headers, body, anthropic) in [(CHAT_HEADERS, CHAT, false), (MESSAGES_HEADERS, MESSAGES, true)] {
        for (profile, mode) in each_host(["closed", "open"]) {
            let mut host = FakeHost::new(profile);
            host.refuse.push("request_header_names");
            let mut ex = Exchange::new(1, policy(&with_mode(&format!(r#""failure_mode": "{mode}""#))));
            let mut spoofed = headers.to_vec();
            spoofed.push(("x-tollgate-cluster", "anthropic"));
            host.request(&mut ex, &spoofed, &[body]);
            assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
            let reply = host.reply.clone().unwrap_or_else(|| panic!("{profile:?} {mode}: a local reply"));
            assert_eq!(reply.status, 500, "{profile:?} {mode}");
            let shape = if anthropic { &reply.json()["error"]["type"] } else { &reply.json()["error"]["code"] };
            assert_eq!(shape, if anthropic { "api_error" } else { "gateway_error" });
            assert!(!host.upstream_headers_released && host.upstream_body.is_empty(), "{mode}: nothing went upstream");
            assert_eq!(host.counter(Counter::RequestsFailedClosed), 1, "{mode}");
        }
    }
}

/// Kong reads each pseudo-header with its own hostcall. One it refuses used to read as "", so
/// the request was not recognised as an API call and went on with no guardrail, routing or
/// record: now it follows `failure_mode` like any hostcall the filter needs.
#[test]
fn a_request_line_the_proxy_will_not_hand_over_follows_the_failure_mode() {
    for pseudo in [":path", ":method"] {
        let mut host = FakeHost::new(Profile::Kong);
        host.raw_request_headers.push((pseudo.into(), None));
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500), "{pseudo}");
        assert!(host.upstream_body.is_empty(), "{pseudo}: nothing went upstream unjudged");
        assert_eq!(host.counter(Counter::RequestsFailedClosed), 1, "{pseudo}");

        let mut host = FakeHost::new(Profile::Kong);
        host.raw_request_headers.push((pseudo.into(), None));
        let mut ex = Exchange::new(1, policy(r#"{"failure_mode": "open"}"#));
        host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
        assert!(host.reply.is_none(), "{pseudo}");
        assert_eq!(host.upstream_body, CHAT, "{pseudo}: passed on untouched");
        assert_eq!(host.counter(Counter::RequestsFailedOpen), 1, "{pseudo}");
    }
    // Absent is not unreadable: a request without a path (CONNECT) is simply not an API call.
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &[(":method", "CONNECT")], &[b"raw"]);
        assert!(host.reply.is_none(), "{profile:?}");
        assert_eq!(host.upstream_body, b"raw", "{profile:?}");
        assert_eq!(host.counter(Counter::RequestsFailedClosed) + host.counter(Counter::RequestsFailedOpen), 0);
    }
}
