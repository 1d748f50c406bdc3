use serde_json::json;

use super::*;

fn routing(value: serde_json::Value) -> Routing {
    let raw: RawRouting = serde_json::from_value(value).unwrap();
    compile(raw, &|name| (name == "OPENAI_KEY").then(|| "sk-from-env".to_string())).unwrap()
}

fn error(value: serde_json::Value) -> (String, String) {
    let raw: RawRouting = serde_json::from_value(value).unwrap();
    compile(raw, &|name| (name == "OPENAI_KEY").then(|| "sk-from-env".to_string())).unwrap_err()
}

fn base() -> serde_json::Value {
    json!({
        "providers": {
            "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"env": "OPENAI_KEY"}},
            "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant-literal"}},
            "azure": {"dialect": "openai", "cluster": "azure", "path_prefix": "/openai/deployments/{model}",
                      "query": "api-version=2024-10-21", "auth": "api-key"}
        },
        "targets": {
            "mini": {"provider": "openai", "model": "gpt-4o-mini", "context_window": 1000},
            "sonnet": {"provider": "anthropic", "model": "claude-sonnet-4-5", "context_window": 200000},
            "big": {"provider": "openai", "model": "gpt-4.1", "context_window": 1000000}
        }
    })
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut value = base();
    for (key, item) in extra.as_object().unwrap() {
        value[key] = item.clone();
    }
    value
}

fn no_headers(_: &str) -> Option<Vec<u8>> {
    None
}

fn input<'a>(model: Option<&'a str>, header: &'a dyn Fn(&str) -> Option<Vec<u8>>) -> RoutingInput<'a> {
    RoutingInput { model, route: None, header, tenant: None, prompt_tokens: 10, random: 0 }
}

fn chain_names(routing: &Routing, decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Route { chain, .. } => chain.iter().map(|i| routing.targets[*i].name.clone()).collect(),
        other => panic!("expected a route, got {other:?}"),
    }
}

#[test]
fn providers_compile_with_credentials_from_env_or_value_and_default_auth() {
    let routing = routing(base());
    let by_name = |n: &str| routing.providers.iter().find(|p| p.name == n).unwrap().clone();
    assert_eq!(by_name("openai").api_key.as_deref(), Some("sk-from-env"));
    assert_eq!(by_name("openai").auth, AuthStyle::Bearer);
    assert_eq!(by_name("openai").path_prefix, "/v1");
    assert_eq!(by_name("anthropic").auth, AuthStyle::XApiKey);
    assert_eq!(by_name("anthropic").api_key.as_deref(), Some("sk-ant-literal"));
    assert_eq!(by_name("azure").auth, AuthStyle::ApiKey);
    assert_eq!(by_name("azure").api_key, None, "no key: the client's credentials pass through");
}

#[test]
fn alias_routes_a_virtual_name_to_a_concrete_target() {
    let routing = routing(with(json!({"rules": [{"match": {"model": "fast"}, "targets": ["mini"]}]})));
    let decision = routing.decide(&input(Some("fast"), &no_headers));
    assert_eq!(chain_names(&routing, &decision), ["mini"]);
    assert_eq!(routing.decide(&input(Some("other"), &no_headers)), Decision::Untouched);
}

#[test]
fn the_first_matching_rule_wins_and_globs_match() {
    let routing = routing(with(json!({"rules": [
        {"match": {"model": ["gpt-4o*", "o?-mini"]}, "targets": ["mini", "sonnet"]},
        {"match": {"model": "*"}, "targets": ["big"]}
    ]})));
    assert_eq!(
        chain_names(&routing, &routing.decide(&input(Some("gpt-4o-2024-08-06"), &no_headers))),
        ["mini", "sonnet"]
    );
    assert_eq!(chain_names(&routing, &routing.decide(&input(Some("o3-mini"), &no_headers))), ["mini", "sonnet"]);
    assert_eq!(chain_names(&routing, &routing.decide(&input(Some("claude"), &no_headers))), ["big"]);
}

#[test]
fn allow_and_deny_lists_refuse_with_403() {
    let routing = routing(with(json!({"models": {"allow": ["gpt-*", "claude-*"], "deny": ["gpt-4-32k*"]}})));
    assert_eq!(routing.decide(&input(Some("gpt-4o"), &no_headers)), Decision::Untouched);
    for refused in [Some("gpt-4-32k-0613"), Some("llama-3"), None] {
        let Decision::Refuse(refusal) = routing.decide(&input(refused, &no_headers)) else { panic!("{refused:?}") };
        assert_eq!(refusal.status, 403);
        assert_eq!(refusal.code, "model_not_allowed");
    }
}

#[test]
fn deny_rules_use_their_status_and_message() {
    let routing = routing(with(json!({"rules": [
        {"match": {"model": "gpt-5*", "headers": {"x-team": "interns"}}, "deny": {"status": 400, "message": "Not for interns."}}
    ]})));
    let interns = |h: &str| (h == "x-team").then(|| b"interns".to_vec());
    let Decision::Refuse(refusal) = routing.decide(&input(Some("gpt-5"), &interns)) else { panic!() };
    assert_eq!((refusal.status, refusal.message.as_str()), (400, "Not for interns."));
    assert_eq!(routing.decide(&input(Some("gpt-5"), &no_headers)), Decision::Untouched);
}

#[test]
fn rules_match_on_route_headers_and_tenant() {
    let config = with(json!({"rules": [
        {"match": {"route": "chat-prod", "tenant": "acme-*", "headers": {"x-tier": "gold"}}, "targets": ["big"]}
    ]}));
    let routing = routing(config);
    assert!(routing.needs_route_name());
    let gold = |h: &str| (h == "x-tier").then(|| b"gold".to_vec());
    let mut request = input(Some("any"), &gold);
    request.tenant = Some("acme-eu");
    request.route = Some("chat-prod");
    assert_eq!(chain_names(&routing, &routing.decide(&request)), ["big"]);
    request.route = Some("chat-dev");
    assert_eq!(routing.decide(&request), Decision::Untouched);
    request.route = Some("chat-prod");
    request.tenant = Some("globex");
    assert_eq!(routing.decide(&request), Decision::Untouched);
}

#[test]
fn weighted_split_follows_the_weights_and_sticks_to_a_key() {
    let routing = routing(with(json!({"rules": [
        {"match": {"model": "smart"}, "split": [{"targets": ["sonnet"], "weight": 3}, {"targets": ["big"], "weight": 1}],
         "sticky_header": "x-user"}
    ]})));
    let mut counts = [0u32; 2];
    for roll in 0..400u64 {
        let decision = routing.decide(&RoutingInput { random: roll, ..input(Some("smart"), &no_headers) });
        counts[usize::from(chain_names(&routing, &decision) == ["big"])] += 1;
    }
    assert_eq!(counts, [300, 100]);
    for user in ["alice", "bob", "carol", "dave"] {
        let header = move |h: &str| (h == "x-user").then(|| user.as_bytes().to_vec());
        let first = routing.decide(&RoutingInput { random: 0, ..input(Some("smart"), &header) });
        for roll in 1..20 {
            assert_eq!(
                routing.decide(&RoutingInput { random: roll, ..input(Some("smart"), &header) }),
                first,
                "{user}"
            );
        }
    }
}

fn routing_of(rule: serde_json::Value) -> Routing {
    routing(with(json!({"rules": [rule]})))
}

#[test]
fn sticky_keys_hash_the_bytes_sent_so_values_that_are_not_utf8_stay_apart() {
    let split = routing_of(json!({"match": {"model": "smart"},
        "split": [{"targets": ["sonnet"], "weight": 1}, {"targets": ["big"], "weight": 1}], "sticky_header": "x-user"}));
    // Read lossily, every one of these would be "caf\u{FFFD}" and land on one arm.
    let arms: std::collections::BTreeSet<Vec<String>> = (0x80..=0xffu8)
        .map(|byte| {
            let header = move |h: &str| (h == "x-user").then(|| [&b"caf"[..], &[byte]].concat());
            chain_names(&split, &split.decide(&input(Some("smart"), &header)))
        })
        .collect();
    assert_eq!(arms.len(), 2, "distinct values spread over both arms");
    let header = |h: &str| (h == "x-team").then(|| b"intern\xe9".to_vec());
    let deny =
        routing_of(json!({"match": {"headers": {"x-team": "intern?"}}, "deny": {"status": 400, "message": "no"}}));
    assert!(matches!(deny.decide(&input(Some("m"), &header)), Decision::Refuse(_)), "`?` matches the odd byte");
}

#[test]
fn a_prompt_too_large_for_the_target_moves_to_the_overflow_targets() {
    let routing = routing(with(json!({"rules": [
        {"match": {"model": "fast"}, "targets": ["mini"], "overflow": ["sonnet", "big"]}
    ]})));
    let ask = |tokens: u64| routing.decide(&RoutingInput { prompt_tokens: tokens, ..input(Some("fast"), &no_headers) });
    assert_eq!(chain_names(&routing, &ask(999)), ["mini"]);
    assert_eq!(chain_names(&routing, &ask(5000)), ["sonnet", "big"]);
    assert_eq!(chain_names(&routing, &ask(300_000)), ["big"]);
    let Decision::Refuse(refusal) = ask(2_000_000) else { panic!() };
    assert_eq!((refusal.status, refusal.code), (400, "context_length_exceeded"));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (with(json!({"rules": [{"targets": ["fsat"]}]})), "rules[0].targets[0]", "unknown target \"fsat\""),
        (with(json!({"rules": [{"targets": ["mini"], "deny": {}}]})), "rules[0]", "exactly one of"),
        (
            with(json!({"rules": [{"split": [{"targets": ["mini"], "weight": 0}]}]})),
            "rules[0].split[0].weight",
            "at least 1",
        ),
        (
            with(json!({"rules": [{"targets": ["mini"], "sticky_header": "x"}]})),
            "rules[0].sticky_header",
            "only applies",
        ),
        (with(json!({"rules": [{"deny": {"status": 500}}]})), "rules[0].deny.status", "4xx"),
        (
            with(json!({"rules": [{"match": {"headers": {"X-Team": "a"}}, "targets": ["mini"]}]})),
            "rules[0].match.headers.X-Team",
            "lowercase",
        ),
        (json!({"providers": {"p": {"dialect": "gemini", "cluster": "c"}}}), "providers.p.dialect", "unknown dialect"),
        (json!({"providers": {"p": {"dialect": "openai", "cluster": ""}}}), "providers.p.cluster", "must name"),
        (
            json!({"providers": {"p": {"dialect": "openai", "cluster": "c", "path_prefix": "v1/"}}}),
            "providers.p.path_prefix",
            "start with",
        ),
        (
            json!({"providers": {"p": {"dialect": "openai", "cluster": "c", "auth": "basic"}}}),
            "providers.p.auth",
            "unknown style",
        ),
        (json!({"targets": {"t": {"provider": "nope", "model": "m"}}}), "targets.t.provider", "unknown provider"),
    ];
    for (config, field, reason) in cases {
        let (got_field, got_reason) = error(config);
        assert_eq!(got_field, field);
        assert!(got_reason.contains(reason), "{got_reason}");
    }
}

#[test]
fn a_missing_environment_variable_is_a_load_error_that_names_it_without_values() {
    let (field, reason) =
        error(json!({"providers": {"p": {"dialect": "openai", "cluster": "c", "api_key": {"env": "NOPE"}}}}));
    assert_eq!(field, "providers.p.api_key.env");
    assert!(reason.contains("NOPE"));
    let (field, _) = error(
        json!({"providers": {"p": {"dialect": "openai", "cluster": "c", "api_key": {"env": "A", "value": "sk-secret"}}}}),
    );
    assert_eq!(field, "providers.p.api_key");
}

#[test]
fn stable_hash_is_stable() {
    // Published FNV-1a 64-bit test vector: the same key must hash the same on every build.
    assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_ne!(stable_hash(b"alice"), stable_hash(b"bob"));
}
