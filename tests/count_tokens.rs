//! Anthropic's `POST /v1/messages/count_tokens` (`{"input_tokens": N}`, the anthropic SDK's
//! `client.messages.count_tokens`): routed by the same rules as the Messages request it counts.
//! To an Anthropic provider it goes with the rule's model, path, credentials and cluster; a model
//! served by an OpenAI-compatible provider, which has no such endpoint, is counted by Tollgate
//! and said so. No usage record: counting generates nothing and costs nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use serde_json::{json, Value};
use support::{policy, FakeHost, Profile, HOSTS};
use tollgate::exchange::Exchange;

const CONFIG: &str = r#"{
    "providers": {
        "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-openai"}},
        "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant"}}
    },
    "targets": {
        "claude": {"provider": "anthropic", "model": "claude-haiku-4-5"},
        "mini": {"provider": "openai", "model": "gpt-4o-mini"}
    },
    "rules": [
        {"match": {"model": "smart"}, "targets": ["claude"]},
        {"match": {"model": "fast"}, "targets": ["mini"]},
        {"match": {"model": "sure"}, "targets": ["claude", "mini"], "fallback_cluster": "llm_fallback"}
    ],
    "guardrails": {"policies": [{"name": "p", "checks": [{"name": "secrets", "detectors": ["secrets"], "action": "block"}]}]}
}"#;

const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];

fn count(profile: Profile, path: &str, body: &Value) -> (FakeHost, Exchange) {
    let mut host = FakeHost::new(profile);
    let mut ex = Exchange::new(1, policy(CONFIG));
    let headers = [
        (":method", "POST"),
        (":path", path),
        ("content-type", "application/json"),
        ("x-api-key", "sk-client"),
        ("anthropic-version", "2023-06-01"),
    ];
    host.request(&mut ex, &headers, &[body.to_string().as_bytes()]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    (host, ex)
}

fn hello(model: &str) -> Value {
    json!({"model": model, "system": "Be brief.", "messages": [{"role": "user", "content": "Hello world"}]})
}

#[test]
fn an_alias_for_an_anthropic_model_is_counted_by_anthropic_with_the_rules_model_and_key() {
    for profile in HOSTS {
        let (mut host, mut ex) = count(profile, "/v1/messages/count_tokens?beta=true", &hello("smart"));
        assert!(host.reply.is_none());
        assert_eq!(host.upstream_header(":path"), Some("/v1/messages/count_tokens?beta=true"), "{profile:?}");
        assert_eq!(host.upstream_cluster(), Some("anthropic"), "{profile:?}");
        assert_eq!(host.upstream_values("x-api-key"), ["sk-ant"], "{profile:?}");
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent, hello("claude-haiku-4-5"), "only the model changed; no max_tokens added");
        let answer = br#"{"input_tokens":14}"#;
        host.response(&mut ex, JSON_OK, &[answer]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert_eq!(host.client_body(), answer, "Anthropic's own count, untouched");
        assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
        assert!(!host.exports.contains_key("tollgate.usage"), "no usage record: nothing was generated");
    }
}

/// OpenAI's published counting rules (the cookbook's `num_tokens_from_messages`): 3 per message,
/// plus its role's and content's tokens, plus 3 priming the reply. In o200k_base (tiktoken):
/// "system" 1, "Be brief." 3, "user" 1, "Hello world" 2, so (3+1+3) + (3+1+2) + 3 = 16.
#[test]
fn a_model_an_openai_provider_serves_is_counted_here_as_that_provider_counts_and_said_so() {
    for profile in HOSTS {
        let (mut host, mut ex) = count(profile, "/v1/messages/count_tokens", &hello("fast"));
        let reply = host.reply.clone().expect("answered by Tollgate");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json(), json!({"input_tokens": 16}), "{profile:?}");
        let header = |name: &str| reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("x-tollgate-estimated"), Some("true"));
        assert_eq!(header("x-tollgate-provider"), Some("openai"));
        assert_eq!(header("x-tollgate-model"), Some("gpt-4o-mini"));
        assert!(host.upstream_body.is_empty() && host.kong_upstream.is_none(), "nothing went upstream");
        host.response(&mut ex, &[], &[]);
        assert!(!host.exports.contains_key("tollgate.usage"));
    }
}

#[test]
fn a_chain_counts_with_its_first_target_and_no_rule_leaves_the_request_alone() {
    for profile in HOSTS {
        let (host, _) = count(profile, "/v1/messages/count_tokens", &hello("sure"));
        assert_eq!(host.upstream_header(":path"), Some("/v1/messages/count_tokens"), "{profile:?}");
        assert_eq!(host.upstream_cluster(), Some("anthropic"), "{profile:?}: not the aggregate cluster");
        assert!(!host.exports.contains_key("tollgate_chain"), "no fallback plan for a count");

        let (host, _) = count(profile, "/v1/messages/count_tokens", &hello("claude-sonnet-4-5"));
        assert_eq!(host.upstream_header(":path"), Some("/v1/messages/count_tokens"), "{profile:?}");
        assert_eq!(host.upstream_values("x-api-key"), ["sk-client"], "{profile:?}: unrouted: as the client sent it");
        assert_eq!(host.upstream_body, hello("claude-sonnet-4-5").to_string().as_bytes());
    }
}

#[test]
fn the_request_guardrails_apply_to_what_would_be_counted() {
    let mut body = hello("smart");
    body["messages"][0]["content"] = json!("my key is sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789");
    for profile in HOSTS {
        let (host, _) = count(profile, "/v1/messages/count_tokens", &body);
        let reply = host.reply.clone().expect("refused before the provider sees the secret");
        assert_eq!(reply.status, 400, "{profile:?}");
        assert_eq!(reply.json()["type"], "error", "Anthropic-shaped");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("secrets"), "{}", reply.json());
        assert!(host.upstream_body.is_empty() && !host.upstream_headers_released, "{profile:?}");
    }
}

#[test]
fn what_the_openai_provider_could_not_be_asked_it_cannot_count_either() {
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    for profile in HOSTS {
        let (host, _) = count(profile, "/v1/messages/count_tokens", &body);
        let reply = host.reply.clone().unwrap();
        assert_eq!(reply.status, 400, "{profile:?} {}", reply.json());
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
        assert!(!host.upstream_headers_released, "{profile:?}");
    }
}
