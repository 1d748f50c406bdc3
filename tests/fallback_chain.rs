//! Fallback chains: the downstream filter leaves a plan and sends the request to the aggregate
//! cluster; the upstream filter prepares each attempt for its provider from that plan, starting
//! from headers the previous attempt already changed.
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
    host.request(ex, &as_refs(&headers(BODY)), &[BODY]);
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
        ex,
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
    host.request(ex, &as_refs(&h), &[body]);
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
    host.request(ex, &as_refs(&headers(BODY)), &[BODY]);
    assert_eq!(host.kong_upstream.as_deref(), Some("provider_primary"));
    let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
    assert_eq!(sent["model"], "gpt-4o");
}
