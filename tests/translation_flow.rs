//! Cross-dialect exchanges through the state machine: an OpenAI client served by Anthropic and
//! an Anthropic client served by OpenAI, complete answers, streams split anywhere, and errors,
//! on both hosts (`HOSTS`). On Kong the answer's headers leave before its body is read (README,
//! Kong), so a translated answer keeps the provider's status and gets no length or cost header.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{FakeHost, Profile, HOSTS};
use tollgate::config;
use tollgate::exchange::Exchange;

const ANTHROPIC_RESPONSE: &[u8] = include_bytes!("fixtures/anthropic/messages_response.json");
const ANTHROPIC_STREAM: &[u8] = include_bytes!("fixtures/anthropic/messages_stream.sse");
const OPENAI_STREAM: &[u8] = include_bytes!("fixtures/openai/chat_stream.sse");

fn policy() -> Rc<config::Policy> {
    let value = json!({
        "providers": {
            "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-openai"}},
            "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant"}}
        },
        "targets": {
            "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            "mini": {"provider": "openai", "model": "gpt-4o-mini"}
        },
        "rules": [
            {"match": {"model": "smart"}, "targets": ["claude"]},
            {"match": {"model": "fast"}, "targets": ["mini"]},
            {"match": {"model": "claude-x"}, "targets": ["claude"]}
        ],
        "default_max_tokens": 321
    });
    Rc::new(config::compile(value.to_string().as_bytes()).unwrap())
}

fn post(path: &str) -> Vec<(&str, &str)> {
    vec![(":method", "POST"), (":path", path), ("content-type", "application/json"), ("authorization", "Bearer client")]
}

fn openai_client(host: &mut FakeHost, body: Value) -> Exchange {
    let mut ex = Exchange::new(1, policy());
    host.request(&mut ex, &post("/v1/chat/completions"), &[body.to_string().as_bytes()]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    ex
}

fn sse_events(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[test]
fn an_openai_client_is_served_by_anthropic_and_gets_an_openai_answer() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex =
            openai_client(&mut host, json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}));
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent["model"], "claude-sonnet-4-5");
        assert_eq!(sent["max_tokens"], 321);
        assert_eq!(host.upstream_header(":path"), Some("/v1/messages"), "{profile:?}");
        assert_eq!(host.upstream_values("x-api-key"), ["sk-ant"]);
        host.assert_withheld("authorization");

        let headers = [(":status", "200"), ("content-type", "application/json"), ("content-length", "999")];
        host.response(&mut ex, &headers, &[ANTHROPIC_RESPONSE]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        let answer: Value = serde_json::from_slice(&host.client_body()).unwrap();
        assert_eq!(answer["object"], "chat.completion", "{profile:?}");
        assert!(answer["choices"][0]["message"]["content"].as_str().unwrap().starts_with("An API gateway"));
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert_eq!(answer["usage"]["prompt_tokens"], 21 + 1200 + 3400);
        // Envoy sets the translated body's length. Kong's headers left before it was known: the
        // provider's length, no longer true, is removed.
        let length = (!profile.is_kong()).then(|| host.client_body().len().to_string());
        assert_eq!(host.client_header("content-length"), length.as_deref(), "{profile:?}");
        // The record keeps Anthropic's own detail, cache writes included: it was read before translation.
        let record = host.record();
        assert_eq!(record["tokens"]["cache_write_5m"]["tokens"], 1200);
        assert_eq!(record["provider"], "anthropic");
        host.assert_cost_header("x-tollgate-cost-usd", record["cost_usd"].as_str());
    }
}

#[test]
fn an_anthropic_stream_reaches_an_openai_client_as_chunks_at_any_split() {
    let run = |profile: Profile, chunks: &[&[u8]]| {
        let mut host = FakeHost::new(profile);
        let mut ex = openai_client(
            &mut host,
            json!({"model": "smart", "stream": true, "stream_options": {"include_usage": true}, "messages": []}),
        );
        host.response(&mut ex, &[(":status", "200"), ("content-type", "text/event-stream")], chunks);
        assert!(host.violations.is_empty(), "{:?}", host.violations);
        (host.client_body(), host.record())
    };
    for profile in HOSTS {
        let (whole, record) = run(profile, &[ANTHROPIC_STREAM]);
        let chunks = sse_events(&whole);
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "An API gateway routes, secures and meters calls.", "{profile:?}");
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 12);
        assert!(
            String::from_utf8_lossy(&whole).contains("data: [DONE]\n\n: tollgate {"),
            "cost comment after the last event"
        );
        assert_eq!(record["tokens"]["output"], json!({"tokens": 12, "source": "provider"}));
        for at in (0..ANTHROPIC_STREAM.len()).step_by(7) {
            let (head, tail) = ANTHROPIC_STREAM.split_at(at);
            assert_eq!(run(profile, &[head, tail]), (whole.clone(), record.clone()), "{profile:?} split at {at}");
        }
    }
}

#[test]
fn an_anthropic_client_is_served_by_openai_streaming() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy());
        let body =
            json!({"model": "fast", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        host.request(&mut ex, &post("/v1/messages"), &[body.to_string().as_bytes()]);
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(host.upstream_header(":path"), Some("/v1/chat/completions"), "{profile:?}");
        assert_eq!(
            sent["stream_options"]["include_usage"], true,
            "asked so the usage can be reported to Anthropic's client"
        );
        assert_eq!(host.upstream_values("authorization"), ["Bearer sk-openai"], "{profile:?}");
        host.response(&mut ex, &[(":status", "200"), ("content-type", "text/event-stream")], &[OPENAI_STREAM]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        let text = String::from_utf8(host.client_body()).unwrap();
        assert!(text.starts_with("event: message_start"), "{text}");
        assert!(text.contains("event: message_stop"));
        assert_eq!(host.record()["tokens"]["output"], json!({"tokens": 6, "source": "provider"}));
    }
}

#[test]
fn a_provider_error_reaches_the_client_in_its_own_dialect() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = openai_client(&mut host, json!({"model": "smart", "messages": []}));
        let overloaded = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        host.response(&mut ex, &[(":status", "529"), ("content-type", "application/json")], &[overloaded]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        let answer: Value = serde_json::from_slice(&host.client_body()).unwrap();
        // README, Translation: "a complete answer and a provider error are translated whole (on
        // Envoy the status changes too, e.g. Anthropic's 529 becomes 503 for OpenAI clients)";
        // Kong's status has left before the body is read.
        let status = if profile.is_kong() { "529" } else { "503" };
        assert_eq!(host.client_header(":status"), Some(status), "{profile:?}");
        assert_eq!(answer["error"]["message"], "Overloaded");
        assert_eq!(host.record()["outcome"], "upstream_error");
    }
}

#[test]
fn what_anthropic_cannot_express_is_refused_before_it_leaves() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        openai_client(&mut host, json!({"model": "smart", "n": 3, "messages": []}));
        let reply = host.reply.clone().unwrap();
        assert_eq!(reply.status, 400, "{profile:?}");
        assert_eq!(reply.json()["error"]["code"], "unsupported_by_provider");
        assert!(host.upstream_body.is_empty() && !host.upstream_headers_released, "{profile:?}");
    }
}

/// Toward a provider of the other dialect, the client's own API's headers and query are not
/// forwarded (they mean nothing there, and `?beta=true` or `api-version` could make it refuse),
/// and the provider's required ones are set; the same dialect keeps them.
#[test]
fn the_clients_dialect_headers_and_query_do_not_cross_to_the_other_dialect() {
    let sent = |profile: Profile, path: &str, model: &str, extra: &[(&'static str, &'static str)]| {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy());
        let mut headers = post(path);
        headers.extend_from_slice(extra);
        let body = json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        host.request(&mut ex, &headers, &[body.to_string().as_bytes()]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        (host.upstream_header(":path").unwrap().to_string(), host)
    };
    let openai = [("openai-organization", "org-1"), ("openai-project", "proj-1"), ("openai-beta", "assistants=v2")];
    let anthropic = [("anthropic-version", "2023-06-01"), ("anthropic-beta", "prompt-caching-2024-07-31")];

    for profile in HOSTS {
        // OpenAI client, Anthropic provider: OpenAI's headers and Azure-style query stay behind.
        let (path, host) = sent(profile, "/v1/chat/completions?api-version=2024-10-21", "smart", &openai);
        assert_eq!(path, "/v1/messages", "{profile:?}");
        host.assert_withheld_prefix("openai-");
        assert_eq!(host.upstream_values("anthropic-version"), ["2023-06-01"], "Anthropic requires it");

        // Anthropic client (its SDK's beta endpoint adds ?beta=true), OpenAI provider.
        let (path, host) = sent(profile, "/v1/messages?beta=true", "fast", &anthropic);
        assert_eq!(path, "/v1/chat/completions", "{profile:?}");
        host.assert_withheld_prefix("anthropic-");

        // Same dialect: the client's headers and query are the provider's API's, and go on.
        let (path, host) = sent(profile, "/v1/messages?beta=true", "claude-x", &anthropic);
        assert_eq!(path, "/v1/messages?beta=true", "{profile:?}");
        assert_eq!(host.upstream_values("anthropic-beta"), ["prompt-caching-2024-07-31"], "{profile:?}");
    }
}
