//! Model selection through whole requests: what reaches the upstream (model, path, credentials,
//! cluster) and what the client gets back, on a fake Envoy and a fake Kong: every test runs on
//! both (`HOSTS`). On Kong the cluster is `kong.service.upstream` rather than a header, a
//! credential kept from the provider is emptied rather than removed (fact 4), and the path goes
//! through `$upstream_uri` (fact 5): `FakeHost::upstream_cluster`, `assert_withheld` and
//! `upstream_header(":path")` read each as that host delivers it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{FakeHost, KongHost, Profile, HOSTS};
use tollgate::config;
use tollgate::exchange::Exchange;
use tollgate::names::Counter;

const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];

fn policy(extra: Value) -> Rc<config::Policy> {
    let mut value = json!({
        "providers": {
            "openai": {"dialect": "openai", "cluster": "openai_cluster", "api_key": {"env": "OPENAI_API_KEY"}},
            "anthropic": {"dialect": "anthropic", "cluster": "anthropic_cluster", "api_key": {"value": "sk-ant-provider"}},
            "azure": {"dialect": "openai", "cluster": "azure_cluster", "path_prefix": "/openai/deployments/{model}",
                      "query": "api-version=2024-10-21", "auth": "api-key", "api_key": {"value": "azure-key"}},
            "local": {"dialect": "openai", "cluster": "vllm_cluster", "path_prefix": "/api/v1"}
        },
        "targets": {
            "mini": {"provider": "openai", "model": "gpt-4o-mini", "context_window": 50},
            "big": {"provider": "openai", "model": "gpt-4.1", "context_window": 1000000},
            "haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"},
            "azure-4o": {"provider": "azure", "model": "gpt4o-prod"},
            "llama": {"provider": "local", "model": "meta-llama/Llama-3.1-8B-Instruct"}
        }
    });
    for (key, item) in extra.as_object().unwrap() {
        value[key] = item.clone();
    }
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-openai-provider".to_string());
    Rc::new(config::compile_with_env(value.to_string().as_bytes(), &env).unwrap())
}

fn request_headers<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![(":method", "POST"), (":path", path), ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    headers
}

fn send(profile: Profile, policy: Rc<config::Policy>, headers: &[(&str, &str)], body: &[u8]) -> (FakeHost, Exchange) {
    let mut host = FakeHost::new(profile);
    let mut ex = Exchange::new(7, policy);
    let length = body.len().to_string();
    let mut headers = headers.to_vec();
    headers.push(("content-length", &length));
    host.request(&mut ex, &headers, &[body]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    (host, ex)
}

#[test]
fn an_alias_sends_the_concrete_model_path_credentials_and_cluster_upstream() {
    let policy = policy(json!({"rules": [{"name": "fast-alias", "match": {"model": "fast"}, "targets": ["mini"]}]}));
    let body = br#"{"model" : "fast", "messages": [{"role": "user", "content": "hi \u00e9"}], "temperature": 0.5}"#;
    let headers = request_headers("/v1/chat/completions", &[("authorization", "Bearer sk-client")]);
    for profile in HOSTS {
        let (mut host, mut ex) = send(profile, policy.clone(), &headers, body);

        assert_eq!(
            host.upstream_body,
            br#"{"model" : "gpt-4o-mini", "messages": [{"role": "user", "content": "hi \u00e9"}], "temperature": 0.5}"#,
            "only the model changed, byte for byte"
        );
        assert_eq!(host.upstream_header("content-length"), Some(host.upstream_body.len().to_string().as_str()));
        assert_eq!(
            host.upstream_values("authorization"),
            ["Bearer sk-openai-provider"],
            "{profile:?}: the client's key is replaced"
        );
        assert_eq!(host.upstream_cluster(), Some("openai_cluster"), "{profile:?}");
        assert_eq!(host.upstream_header(":path"), Some("/v1/chat/completions"));

        host.response(
            &mut ex,
            JSON_OK,
            &[br#"{"model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":5,"completion_tokens":2}}"#],
        );
        host.assert_cost_header("x-tollgate-provider", Some("openai"));
        host.assert_cost_header("x-tollgate-model", Some("gpt-4o-mini-2024-07-18"));
        let record = host.record();
        assert_eq!(record["provider"], "openai");
        assert_eq!(record["model_requested"], "fast");
        assert_eq!(record["model_served"], "gpt-4o-mini-2024-07-18");
        assert!(!record.to_string().contains("sk-"), "no credential in the record");
    }
}

#[test]
fn without_a_configured_key_the_clients_credentials_pass_and_paths_follow_the_provider() {
    let policy = policy(json!({"rules": [{"match": {"model": "llama*"}, "targets": ["llama"]}]}));
    let headers = request_headers("/v1/chat/completions?trace=1", &[("authorization", "Bearer sk-client")]);
    for profile in HOSTS {
        let (host, _) = send(profile, policy.clone(), &headers, br#"{"model": "llama", "messages": []}"#);
        assert_eq!(host.upstream_values("authorization"), ["Bearer sk-client"], "{profile:?}");
        assert_eq!(host.upstream_header(":path"), Some("/api/v1/chat/completions?trace=1"), "{profile:?}");
        assert_eq!(host.upstream_cluster(), Some("vllm_cluster"), "{profile:?}");
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent["model"], "meta-llama/Llama-3.1-8B-Instruct");
    }
}

#[test]
fn azure_targets_use_deployment_paths_api_version_and_api_key() {
    let policy = policy(json!({"rules": [{"match": {"model": "gpt-4o"}, "targets": ["azure-4o"]}]}));
    let headers =
        request_headers("/v1/chat/completions", &[("authorization", "Bearer sk-client"), ("api-key", "client")]);
    for profile in HOSTS {
        let (host, _) = send(profile, policy.clone(), &headers, br#"{"model": "gpt-4o", "messages": []}"#);
        assert_eq!(
            host.upstream_header(":path"),
            Some("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"),
            "{profile:?}"
        );
        assert_eq!(host.upstream_values("api-key"), ["azure-key"], "{profile:?}");
        // No client credential survives.
        host.assert_withheld("authorization");
    }
}

#[test]
fn anthropic_targets_get_x_api_key_and_a_version() {
    let policy = policy(json!({"rules": [{"match": {"model": "claude-*"}, "targets": ["haiku"]}]}));
    let headers = request_headers("/v1/messages", &[("x-api-key", "sk-ant-client")]);
    for profile in HOSTS {
        let body = br#"{"model": "claude-fast", "max_tokens": 5, "messages": []}"#;
        let (host, _) = send(profile, policy.clone(), &headers, body);
        assert_eq!(host.upstream_values("x-api-key"), ["sk-ant-provider"], "{profile:?}");
        assert_eq!(host.upstream_header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(host.upstream_header(":path"), Some("/v1/messages"));
        assert_eq!(host.upstream_cluster(), Some("anthropic_cluster"), "{profile:?}");
    }
}

#[test]
fn a_target_without_a_model_keeps_the_clients_model() {
    let policy = policy(json!({"targets": {"anthropic-any": {"provider": "anthropic"}},
        "rules": [{"match": {"model": "claude-*"}, "targets": ["anthropic-any"]}]}));
    let body = br#"{"model": "claude-opus-4-1", "max_tokens": 5}"#;
    for profile in HOSTS {
        let (host, _) = send(profile, policy.clone(), &request_headers("/v1/messages", &[]), body);
        assert_eq!(host.upstream_body, body, "{profile:?}");
        assert_eq!(host.upstream_cluster(), Some("anthropic_cluster"), "{profile:?}");
    }
}

#[test]
fn a_client_cannot_pick_the_cluster_itself() {
    let policy = policy(json!({}));
    for profile in HOSTS {
        let headers = request_headers("/v1/chat/completions", &[("x-tollgate-cluster", "internal_admin")]);
        let (host, _) = send(profile, policy.clone(), &headers, br#"{"model": "x", "messages": []}"#);
        assert_eq!(host.upstream_cluster(), None, "{profile:?}");
        let headers = vec![(":method", "GET"), (":path", "/anything"), ("x-tollgate-cluster", "internal_admin")];
        let mut host = FakeHost::new(profile);
        host.request(&mut Exchange::new(1, policy.clone()), &headers, &[]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert_eq!(host.upstream_cluster(), None, "{profile:?}: on every path, not just LLM APIs");
    }
}

#[test]
fn refused_models_get_a_403_in_the_clients_dialect() {
    let policy = policy(json!({"models": {"deny": ["gpt-4-32k*", "claude-opus*"]}}));
    for profile in HOSTS {
        let (host, _) =
            send(profile, policy.clone(), &request_headers("/v1/chat/completions", &[]), br#"{"model": "gpt-4-32k"}"#);
        let reply = host.reply.clone().unwrap();
        assert_eq!(reply.status, 403, "{profile:?}");
        assert_eq!(reply.json()["error"]["code"], "model_not_allowed");
        assert_eq!(reply.json()["error"]["param"], "model");
        assert!(host.upstream_body.is_empty() && !host.upstream_headers_released, "{profile:?}");

        let (host, _) = send(
            profile,
            policy.clone(),
            &request_headers("/v1/messages", &[]),
            br#"{"model": "claude-opus-4-1", "max_tokens": 1}"#,
        );
        let reply = host.reply.clone().unwrap();
        assert_eq!(reply.status, 403, "{profile:?}");
        assert_eq!(reply.json()["type"], "error");
        assert_eq!(reply.json()["error"]["type"], "permission_error");
        assert_eq!(host.record()["outcome"], "rejected");
    }
}

#[test]
fn a_prompt_too_large_moves_to_the_overflow_model() {
    let policy = policy(json!({"rules": [{"match": {"model": "fast"}, "targets": ["mini"], "overflow": ["big"]}]}));
    let long =
        format!(r#"{{"model": "fast", "messages": [{{"role": "user", "content": "{}"}}]}}"#, "word ".repeat(100));
    for profile in HOSTS {
        let (host, _) = send(profile, policy.clone(), &request_headers("/v1/chat/completions", &[]), long.as_bytes());
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent["model"], "gpt-4.1", "{profile:?}");
    }
}

#[test]
fn a_prompt_that_fits_in_tokens_but_not_in_bytes_is_counted_and_stays() {
    // Prompts are counted only when their bytes (an upper bound on their tokens) pass a window:
    // then the count, not the bound, decides. 60 bytes of text are 12 tokens, well within 50.
    let policy = policy(json!({"rules": [{"match": {"model": "fast"}, "targets": ["mini"], "overflow": ["big"]}]}));
    let near = format!(r#"{{"model": "fast", "messages": [{{"role": "user", "content": "{}"}}]}}"#, "word ".repeat(12));
    for profile in HOSTS {
        let (host, _) = send(profile, policy.clone(), &request_headers("/v1/chat/completions", &[]), near.as_bytes());
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent["model"], "gpt-4o-mini", "{profile:?}");
    }
}

#[test]
fn an_anthropic_prompt_is_measured_by_its_text_not_by_its_json() {
    let policy = policy(json!({"rules": [{"match": {"model": "fast"}, "targets": ["mini"], "overflow": ["big"]}]}));
    // Twelve turns of "hi": a dozen tokens of text in some 700 bytes of JSON, which counted whole
    // would be well past the 50-token window.
    let turns: Vec<Value> = (0..12)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": [{"type": "text", "text": "hi"}]}))
        .collect();
    let short = json!({"model": "fast", "max_tokens": 16, "messages": turns}).to_string();
    assert!(short.len() > 600);
    let long =
        json!({"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "word ".repeat(100)}]});
    for profile in HOSTS {
        let (host, _) = send(profile, policy.clone(), &request_headers("/v1/messages", &[]), short.as_bytes());
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent["model"], "gpt-4o-mini", "{profile:?}: fits the window");
        let (host, _) =
            send(profile, policy.clone(), &request_headers("/v1/messages", &[]), long.to_string().as_bytes());
        let sent: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(sent["model"], "gpt-4.1", "{profile:?}: a hundred words do not");
    }
}

#[test]
fn an_api_the_provider_cannot_serve_is_refused_clearly() {
    let policy = policy(json!({"rules": [{"match": {"model": "*"}, "targets": ["haiku"]}]}));
    for profile in HOSTS {
        let body = br#"{"model": "x", "input": "a"}"#;
        let (host, _) = send(profile, policy.clone(), &request_headers("/v1/embeddings", &[]), body);
        let reply = host.reply.clone().unwrap();
        assert_eq!(reply.status, 400, "{profile:?}");
        assert_eq!(reply.json()["error"]["code"], "unsupported_api");
        assert!(!host.upstream_headers_released, "{profile:?}");
    }
}

#[test]
fn sticky_splits_keep_a_user_on_one_target() {
    let policy = policy(json!({"rules": [{"match": {"model": "ab"}, "split": [
        {"targets": ["mini"], "weight": 50}, {"targets": ["haiku-as-openai"], "weight": 50}], "sticky_header": "x-user"}],
        "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini"}, "haiku-as-openai": {"provider": "local", "model": "other"}}}));
    for user in ["u1", "u2", "u3", "u4", "u5"] {
        let clusters: Vec<String> = HOSTS
            .into_iter()
            .flat_map(|profile| [profile; 3])
            .map(|profile| {
                let headers = request_headers("/v1/chat/completions", &[("x-user", user)]);
                let (host, _) = send(profile, policy.clone(), &headers, br#"{"model": "ab"}"#);
                host.upstream_cluster().unwrap().to_string()
            })
            .collect();
        assert!(clusters.iter().all(|c| c == &clusters[0]), "{user}: {clusters:?} (Envoy ×3, Kong ×3)");
    }
}

#[test]
fn rules_can_match_the_route_name() {
    let policy = policy(json!({"rules": [{"match": {"route": "internal-*"}, "targets": ["big"]}]}));
    for profile in HOSTS {
        for (route, cluster) in [("internal-chat", Some("openai_cluster")), ("public-chat", None)] {
            let mut host = FakeHost::new(profile);
            host.route_name = Some(route.into());
            let mut ex = Exchange::new(1, policy.clone());
            host.request(&mut ex, &request_headers("/v1/chat/completions", &[]), &[br#"{"model": "anything"}"#]);
            assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
            assert_eq!(host.upstream_cluster(), cluster, "{profile:?} {route}");
        }
    }
    // Kong without its Lua layer reads no route name (fact 6): no route rule matches, and that
    // is counted (README, Kong: "route rules and route policies then see no route").
    let mut host = FakeHost::new(Profile::Kong);
    host.kong = KongHost { lua: false, ..KongHost::default() };
    host.route_name = Some("internal-chat".into());
    host.request(
        &mut Exchange::new(1, policy),
        &request_headers("/v1/chat/completions", &[]),
        &[br#"{"model": "anything"}"#],
    );
    assert_eq!(host.upstream_cluster(), None);
    assert_eq!(host.counter(Counter::RouteNamesUnreadable), 1);
}

#[test]
fn on_kong_the_upstream_is_set_instead_of_a_header() {
    let policy = policy(json!({"rules": [{"match": {"model": "fast"}, "targets": ["mini"]}]}));
    let (host, _) = send(Profile::Kong, policy, &request_headers("/v1/chat/completions", &[]), br#"{"model": "fast"}"#);
    assert_eq!(host.kong_upstream.as_deref(), Some("openai_cluster"));
    assert_eq!(host.upstream_header("x-tollgate-cluster"), None);
    assert_eq!(host.upstream_header("authorization"), Some("Bearer sk-openai-provider"));
}
