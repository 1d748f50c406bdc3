//! Fallback chains: the downstream filter leaves a plan and sends the request to the aggregate
//! cluster; the upstream filter prepares each attempt for its provider from that plan, starting
//! from headers the previous attempt already changed.
//!
//! Envoy only, unlike the rest of the flow suite: the upstream filter (`position: upstream`)
//! runs once per attempt in Envoy's upstream HTTP filter chain of the aggregate cluster, and
//! Kong has no per-attempt hook (README, Envoy: "On Kong, which has no per-attempt hook, a chain
//! is served by its first target"). What Kong does with a chain is the one Kong test here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{FakeHost, Profile};
use tollgate::config;
use tollgate::filter::Filter;

fn policy(position: &str) -> Rc<config::Policy> {
    let value = json!({
        "position": position,
        "providers": {
            "primary": {"dialect": "openai", "cluster": "provider_primary", "api_key": {"value": "key-primary"}},
            "azure": {"dialect": "openai", "cluster": "provider_azure", "path_prefix": "/openai/deployments/{model}",
                      "query": "api-version=2024-10-21", "auth": "api-key", "api_key": {"value": "key-azure"}},
            "anthropic": {"dialect": "anthropic", "cluster": "provider_anthropic", "api_key": {"value": "key-anthropic"}}
        },
        "targets": {
            "a": {"provider": "primary", "model": "gpt-4o"},
            "b": {"provider": "azure", "model": "gpt4o-deployment"},
            "c": {"provider": "anthropic", "model": "claude-haiku-4-5"}
        },
        "rules": [
            {"match": {"model": "smart"}, "targets": ["a", "b"], "fallback_cluster": "llm_fallback"},
            {"match": {"model": "mixed"}, "targets": ["a", "c"], "fallback_cluster": "llm_fallback"}
        ]
    });
    Rc::new(config::compile(value.to_string().as_bytes()).unwrap())
}

const BODY: &[u8] = br#"{"model": "smart", "messages": [{"role": "user", "content": "hi"}]}"#;

fn headers(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":path", "/v1/chat/completions?trace=1".into()),
        ("content-type", "application/json".into()),
        ("content-length", body.len().to_string()),
        ("authorization", "Bearer client-key".into()),
    ]
}

fn as_refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn the_downstream_filter_leaves_a_plan_and_sends_the_request_to_the_aggregate_cluster() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut filter = Filter::new(1, policy("downstream"));
    let Filter::Exchange(ex) = &mut filter else { panic!() };
    host.request(ex.as_mut(), &as_refs(&headers(BODY)), &[BODY]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    assert_eq!(host.upstream_header("x-tollgate-cluster"), Some("llm_fallback"));
    assert_eq!(host.upstream_header("authorization"), None, "no client credential goes down the chain");
    assert_eq!(host.upstream_body, BODY, "each attempt rewrites the body for its own provider");
    let plan: Value = serde_json::from_str(&host.exports["tollgate_chain"]).unwrap();
    assert_eq!(
        plan["steps"],
        json!([{"provider": "primary", "model": "gpt-4o"}, {"provider": "azure", "model": "gpt4o-deployment"}])
    );
    assert_eq!(plan["query"], "trace=1");

    // The answer comes from the secondary: the record credits it.
    host.upstream_provider = Some("azure".into());
    host.response(
        ex.as_mut(),
        &[(":status", "200"), ("content-type", "application/json")],
        &[br#"{"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}"#],
    );
    assert_eq!(host.client_header("x-tollgate-provider"), Some("azure"));
    assert_eq!(host.record()["provider"], "azure");
}

#[test]
fn each_attempt_gets_its_providers_model_path_and_only_its_credentials() {
    let plan = r#"{"api":"openai.chat","query":"trace=1","steps":[{"provider":"primary","model":"gpt-4o"},{"provider":"azure","model":"gpt4o-deployment"}]}"#;
    // Attempt 1 starts from the client's headers.
    let mut host = FakeHost::new(Profile::Envoy);
    host.set_request_headers(&as_refs(&headers(BODY)));
    host.exports.insert("tollgate_chain".into(), plan.into());
    host.upstream_provider = Some("primary".into());
    let mut first = Filter::new(2, policy("upstream"));
    let Filter::Attempt(at) = &mut first else { panic!() };
    assert_eq!(at.on_request_headers(&mut host, false), tollgate::host_io::Flow::Pause);
    host.set_request_buffer(BODY);
    assert_eq!(at.on_request_body(&mut host, BODY.len(), true), tollgate::host_io::Flow::Continue);
    let sent: Value = serde_json::from_slice(host.request_buffer()).unwrap();
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(host.request_header_value(":path"), Some("/v1/chat/completions?trace=1".into()));
    assert_eq!(host.request_header_value("authorization"), Some("Bearer key-primary".into()));
    assert_eq!(host.request_header_value("content-length"), Some(host.request_buffer().len().to_string()));

    // Attempt 2: Envoy hands over attempt 1's headers, but the client's original body.
    let inherited = host.request_headers_snapshot();
    let mut host = FakeHost::new(Profile::Envoy);
    host.set_request_headers(&inherited.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>());
    host.exports.insert("tollgate_chain".into(), plan.into());
    host.upstream_provider = Some("azure".into());
    let mut second = Filter::new(3, policy("upstream"));
    let Filter::Attempt(at) = &mut second else { panic!() };
    at.on_request_headers(&mut host, false);
    host.set_request_buffer(BODY);
    at.on_request_body(&mut host, BODY.len(), true);
    let sent: Value = serde_json::from_slice(host.request_buffer()).unwrap();
    assert_eq!(sent["model"], "gpt4o-deployment");
    assert_eq!(
        host.request_header_value(":path"),
        Some("/openai/deployments/gpt4o-deployment/chat/completions?api-version=2024-10-21".into()),
        "set outright, not stacked on attempt 1's path"
    );
    assert_eq!(host.request_header_value("api-key"), Some("key-azure".into()));
    assert_eq!(host.request_header_value("authorization"), None, "attempt 1's key does not leak into attempt 2");
    assert!(host.violations.is_empty(), "{:?}", host.violations);
}

#[test]
fn requests_that_are_not_a_chain_pass_the_upstream_filter_untouched() {
    let mut host = FakeHost::new(Profile::Envoy);
    host.set_request_headers(&as_refs(&headers(BODY)));
    let mut filter = Filter::new(2, policy("upstream"));
    let Filter::Attempt(at) = &mut filter else { panic!() };
    assert_eq!(at.on_request_headers(&mut host, false), tollgate::host_io::Flow::Continue);
    assert_eq!(host.request_header_value("authorization"), Some("Bearer client-key".into()));
}

#[test]
fn a_chain_through_a_provider_that_cannot_serve_the_api_is_refused_up_front() {
    let body = br#"{"model": "mixed", "input": "x"}"#;
    let mut host = FakeHost::new(Profile::Envoy);
    let mut filter = Filter::new(1, policy("downstream"));
    let Filter::Exchange(ex) = &mut filter else { panic!() };
    let mut h = headers(body);
    h[1].1 = "/v1/embeddings".into();
    host.request(ex.as_mut(), &as_refs(&h), &[body]);
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "unsupported_api");
}

#[test]
fn chains_need_every_provider_to_have_a_key() {
    let value = json!({
        "providers": {"p": {"dialect": "openai", "cluster": "c", "api_key": {"value": "k"}}, "q": {"dialect": "openai", "cluster": "d"}},
        "targets": {"a": {"provider": "p"}, "b": {"provider": "q"}},
        "rules": [{"targets": ["a", "b"], "fallback_cluster": "agg"}]
    });
    let err = config::compile(value.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.field, "rules[0].fallback_cluster");
    assert!(err.reason.contains("\"b\""));
}

#[test]
fn on_kong_a_chain_is_served_by_its_first_target() {
    let mut host = FakeHost::new(Profile::Kong);
    let mut filter = Filter::new(1, policy("downstream"));
    let Filter::Exchange(ex) = &mut filter else { panic!() };
    host.request(ex.as_mut(), &as_refs(&headers(BODY)), &[BODY]);
    assert_eq!(host.kong_upstream.as_deref(), Some("provider_primary"));
    let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
    assert_eq!(sent["model"], "gpt-4o");
}

const MIXED_PLAN: &str = r#"{"api":"openai.chat","query":null,"steps":[{"provider":"primary","model":"gpt-4o"},{"provider":"anthropic","model":"claude-haiku-4-5"}]}"#;

/// An attempt to `provider` as Envoy hands it over: the previous attempt's headers (primary's
/// path and key), the plan in filter state, the headers callback already run.
fn attempt_to(provider: &str, config: &str, plan: &str) -> (FakeHost, Filter) {
    let mut host = FakeHost::new(Profile::Envoy);
    host.set_request_headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("authorization", "Bearer key-primary"),
    ]);
    host.exports.insert("tollgate_chain".into(), plan.into());
    host.upstream_provider = Some(provider.into());
    let mut value: Value = serde_json::from_str(&policy_json("upstream")).unwrap();
    for (key, item) in serde_json::from_str::<Value>(config).unwrap().as_object().unwrap() {
        value[key] = item.clone();
    }
    let mut filter = Filter::new(4, Rc::new(config::compile(value.to_string().as_bytes()).unwrap()));
    filter.on_request_headers(&mut host, false);
    (host, filter)
}

fn policy_json(position: &str) -> String {
    json!({
        "position": position,
        "providers": {
            "primary": {"dialect": "openai", "cluster": "provider_primary", "api_key": {"value": "key-primary"}},
            "anthropic": {"dialect": "anthropic", "cluster": "provider_anthropic", "api_key": {"value": "key-anthropic"}}
        },
        "targets": {"a": {"provider": "primary", "model": "gpt-4o"}, "c": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
        "rules": [{"match": {"model": "mixed"}, "targets": ["a", "c"], "fallback_cluster": "llm_fallback"}]
    })
    .to_string()
}

#[test]
fn a_plan_the_proxy_refuses_to_keep_refuses_the_request_rather_than_sending_attempts_unprepared() {
    let mut host = FakeHost::new(Profile::Envoy);
    host.refuse.push("export");
    let mut filter = Filter::new(1, policy("downstream"));
    let Filter::Exchange(ex) = &mut filter else { panic!() };
    host.request(ex.as_mut(), &as_refs(&headers(BODY)), &[BODY]);
    let reply = host.reply.clone().expect("refused");
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (500, Some("routing_error")));
    assert!(!host.upstream_headers_released, "nothing went down the chain");
}

/// The attempt cannot read the body it must rewrite. It used to go on unchanged: the previous
/// attempt's path and key to this provider's host. Closed: a 500 in the client's dialect. Open:
/// the client's body, addressed to this provider with only its own key.
#[test]
fn an_attempt_whose_body_cannot_be_read_follows_the_failure_mode_never_the_previous_attempts_headers() {
    let (mut host, mut filter) = attempt_to("anthropic", "{}", MIXED_PLAN);
    host.refuse.push("request_body");
    host.set_request_buffer(BODY);
    assert_eq!(filter.on_request_body(&mut host, BODY.len(), true), tollgate::host_io::Flow::Pause);
    let reply = host.reply.clone().expect("a local reply");
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["code"], "gateway_error", "the client's (OpenAI) dialect");
    assert_eq!(host.counter(tollgate::names::Counter::RequestsFailedClosed), 1);

    let (mut host, mut filter) = attempt_to("anthropic", r#"{"failure_mode": "open"}"#, MIXED_PLAN);
    host.refuse.push("request_body");
    host.set_request_buffer(BODY);
    assert_eq!(filter.on_request_body(&mut host, BODY.len(), true), tollgate::host_io::Flow::Continue);
    assert!(host.reply.is_none());
    assert_eq!(host.request_buffer(), BODY, "the client's body, untouched");
    assert_eq!(host.request_header_value(":path"), Some("/v1/messages".into()));
    assert_eq!(host.request_header_value("authorization"), None, "the previous provider's key is gone");
    assert_eq!(host.request_header_value("x-api-key"), Some("key-anthropic".into()));
    assert_eq!(host.counter(tollgate::names::Counter::RequestsFailedOpen), 1);
}

#[test]
fn an_attempt_with_an_unreadable_plan_or_no_provider_metadata_is_refused_not_sent_as_the_last_one() {
    for (plan, provider) in [("{garbage", Some("anthropic")), (MIXED_PLAN, None)] {
        let mut host = FakeHost::new(Profile::Envoy);
        host.set_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("authorization", "Bearer key-primary"),
        ]);
        host.exports.insert("tollgate_chain".into(), plan.into());
        host.upstream_provider = provider.map(str::to_string);
        let mut filter = Filter::new(4, policy("upstream"));
        assert_eq!(filter.on_request_headers(&mut host, false), tollgate::host_io::Flow::Pause, "{plan}");
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500), "{plan}");
    }
}

/// A translated attempt (OpenAI client, Anthropic provider) whose stream chunk the proxy will
/// not hand over: the client's stream ends with an error event in its dialect, never a hole.
#[test]
fn an_unreadable_chunk_of_a_translated_attempt_ends_the_clients_stream_with_an_error() {
    let (mut host, mut filter) = attempt_to("anthropic", "{}", MIXED_PLAN);
    let body = br#"{"model": "mixed", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    host.set_request_buffer(body);
    filter.on_request_body(&mut host, body.len(), true);
    host.set_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")]);
    filter.on_response_headers(&mut host, false);
    let chunk = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
    host.set_response_buffer(chunk);
    filter.on_response_body(&mut host, chunk.len(), false);
    assert!(String::from_utf8_lossy(host.response_buffer()).starts_with("data: {"), "translated");
    host.refuse.push("response_body");
    let unread = b"event: content_block_delta\ndata: {}\n\n";
    host.set_response_buffer(unread);
    filter.on_response_body(&mut host, unread.len(), false);
    let out = String::from_utf8(host.response_buffer().to_vec()).unwrap();
    assert!(out.starts_with("data: {\"error\""), "{out}");
    assert!(out.contains("could not read the provider's stream"), "{out}");
    assert_eq!(host.counter(tollgate::names::Counter::ResponsesNotInspected), 1);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
}

/// An upstream that ends with trailers (HTTP/2) never flags end of stream on a body callback: the
/// trailers end the translated stream (its closing events) and the held answer (translated).
#[test]
fn response_trailers_end_a_translated_attempts_answer() {
    // An Anthropic client served by the OpenAI primary; the stream ends after its finish_reason
    // without `[DONE]`, then trailers: the translator's end gives message_delta and message_stop.
    let plan = r#"{"api":"anthropic.messages","query":null,"steps":[{"provider":"primary","model":"gpt-4o"}]}"#;
    let (mut host, mut filter) = attempt_to("primary", "{}", plan);
    let body =
        br#"{"model": "claude", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    host.set_request_buffer(body);
    filter.on_request_body(&mut host, body.len(), true);
    assert_eq!(host.request_header_value(":path"), Some("/v1/chat/completions".into()));
    host.set_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")]);
    filter.on_response_headers(&mut host, false);
    let stream = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
    );
    host.set_response_buffer(stream.as_bytes());
    filter.on_response_body(&mut host, stream.len(), false);
    assert!(!String::from_utf8_lossy(host.response_buffer()).contains("message_stop"), "not over yet");
    host.set_response_buffer(b"");
    filter.on_response_trailers(&mut host);
    let end = String::from_utf8(host.response_buffer().to_vec()).unwrap();
    assert!(
        end.starts_with("event: message_delta\n")
            && end.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{end}"
    );

    let (mut host, mut filter) = attempt_to("anthropic", "{}", MIXED_PLAN);
    host.set_request_buffer(BODY);
    filter.on_request_body(&mut host, BODY.len(), true);
    host.set_response_headers(&[(":status", "200"), ("content-type", "application/json")]);
    assert_eq!(filter.on_response_headers(&mut host, false), tollgate::host_io::Flow::Pause);
    let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#;
    host.set_response_buffer(answer);
    assert_eq!(filter.on_response_body(&mut host, answer.len(), false), tollgate::host_io::Flow::Pause);
    filter.on_response_trailers(&mut host);
    let translated: Value = serde_json::from_slice(host.response_buffer()).unwrap();
    assert_eq!(translated["object"], "chat.completion");
    assert_eq!(translated["choices"][0]["message"]["content"], "Hi");
    assert!(host.violations.is_empty(), "{:?}", host.violations);
}

/// As in the downstream filter: an answer to translate that the proxy will not hand over fails
/// by the route's mode: closed, a 500 in the client's dialect; open, the provider's answer as sent.
#[test]
fn an_unreadable_translated_answer_follows_the_failure_mode() {
    for (config, closed) in [("{}", true), (r#"{"failure_mode": "open"}"#, false)] {
        let (mut host, mut filter) = attempt_to("anthropic", config, MIXED_PLAN);
        host.set_request_buffer(BODY);
        filter.on_request_body(&mut host, BODY.len(), true);
        host.set_response_headers(&[(":status", "200"), ("content-type", "application/json")]);
        filter.on_response_headers(&mut host, false);
        host.refuse.push("response_body");
        host.set_response_buffer(b"{\"id\":\"msg_1\"}");
        filter.on_response_body(&mut host, 14, true);
        assert_eq!(host.counter(tollgate::names::Counter::ResponsesNotInspected), 1);
        if closed {
            let error: Value = serde_json::from_slice(host.response_buffer()).unwrap();
            assert_eq!(error["error"]["code"], "gateway_error");
        } else {
            assert_eq!(host.response_buffer(), b"{\"id\":\"msg_1\"}", "passed as sent");
        }
    }
}

/// Each attempt starts from the previous attempt's headers: the client's dialect headers are put
/// back from the plan for a provider of the client's dialect, and kept away from (and
/// Anthropic's `anthropic-version` set for) a provider of the other one.
#[test]
fn each_attempt_gets_the_dialect_headers_its_provider_takes_whatever_the_last_attempt_left() {
    // The downstream filter keeps the client's dialect headers in the plan.
    let mut host = FakeHost::new(Profile::Envoy);
    let mut filter = Filter::new(1, policy("downstream"));
    let Filter::Exchange(ex) = &mut filter else { panic!() };
    let mut sent = headers(BODY);
    sent.push(("openai-organization", "org-1".into()));
    host.request(ex.as_mut(), &as_refs(&sent), &[BODY]);
    let plan: Value = serde_json::from_str(&host.exports["tollgate_chain"]).unwrap();
    assert_eq!(plan["headers"], json!([["openai-organization", "org-1"]]));

    let plan = r#"{"api":"openai.chat","query":"trace=1","headers":[["openai-organization","org-1"]],"steps":[
        {"provider":"primary","model":"gpt-4o"},{"provider":"anthropic","model":"claude-haiku-4-5"},{"provider":"azure","model":"gpt4o-deployment"}]}"#;
    let mut inherited: Vec<(String, String)> =
        as_refs(&sent).iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let mut seen = Vec::new();
    for provider in ["primary", "anthropic", "azure"] {
        let mut host = FakeHost::new(Profile::Envoy);
        host.set_request_headers(&inherited.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>());
        host.exports.insert("tollgate_chain".into(), plan.into());
        host.upstream_provider = Some(provider.into());
        let mut attempt = Filter::new(2, policy("upstream"));
        attempt.on_request_headers(&mut host, false);
        host.set_request_buffer(BODY);
        attempt.on_request_body(&mut host, BODY.len(), true);
        assert!(host.violations.is_empty() && host.reply.is_none(), "{provider}: {:?}", host.violations);
        seen.push((
            provider,
            host.request_header_value("openai-organization"),
            host.request_header_value("anthropic-version"),
            host.request_header_value(":path").unwrap(),
        ));
        inherited = host.request_headers_snapshot();
    }
    assert_eq!(
        seen,
        [
            ("primary", Some("org-1".into()), None, "/v1/chat/completions?trace=1".into()),
            ("anthropic", None, Some("2023-06-01".into()), "/v1/messages".into()),
            (
                "azure",
                Some("org-1".into()),
                None,
                "/openai/deployments/gpt4o-deployment/chat/completions?api-version=2024-10-21".into()
            ),
        ]
    );
}
