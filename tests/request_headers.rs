//! What the filter reads from request headers: values as the bytes the client sent (HTTP allows
//! obs-text), names in any case (Kong keeps the client's), and the query copied unaltered, on
//! both hosts (`HOSTS`) where the subject exists on both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use support::{policy, FakeHost, Profile, HOSTS};
use tollgate::exchange::Exchange;
use tollgate::names::Counter;

const CHAT: &[u8] = br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#;
const CHAT_HEADERS: &[(&str, &str)] = &[(":method", "POST"), (":path", "/v1/chat/completions")];
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const ANSWER: &[u8] = br#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
const ROUTED: &str = r#""providers": {"openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-provider"}}},
    "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini"}},
    "rules": [{"match": {"model": "fast"}, "targets": ["mini"]}]"#;

fn record_with_tenant(profile: Profile, tenant: &[u8]) -> (serde_json::Value, u64) {
    let mut host = FakeHost::new(profile);
    host.raw_request_headers.push(("x-tenant".into(), Some(tenant.to_vec())));
    let mut ex = Exchange::new(1, policy(r#"{"tenant": {"header": "x-tenant"}}"#));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
    host.response(&mut ex, JSON_OK, &[ANSWER]);
    (host.record(), host.counter(Counter::AttributionRejected))
}

/// tenant.rs promises two tenants "can never collapse into one". `caf\xE9` and `caf\xE8`
/// (Latin-1, which Envoy lets through) used to both read as `caf\u{FFFD}`: one tenant, two
/// payers. A value that is not UTF-8 is refused and counted, like one with control characters.
#[test]
fn a_tenant_that_is_not_utf8_is_refused_and_counted_never_merged_with_another() {
    for profile in HOSTS {
        for tenant in [&b"caf\xe9"[..], b"caf\xe8"] {
            let (record, rejected) = record_with_tenant(profile, tenant);
            assert_eq!(record["tenant"], serde_json::Value::Null, "{profile:?} {tenant:?}");
            assert_eq!(rejected, 1, "{profile:?} {tenant:?}");
        }
        let (record, rejected) = record_with_tenant(profile, "café".as_bytes());
        assert_eq!((record["tenant"].as_str(), rejected), (Some("café"), 0), "UTF-8 text is kept as sent");
    }
}

/// A JWT claim that is a number reaches the filter as the double's 8 bytes (Envoy's binary form):
/// it used to be a tenant silently absent; now it is refused and counted. Envoy only: `metadata`
/// is Envoy's dynamic metadata (README, Tenants), which Kong's host does not have.
#[test]
fn a_metadata_claim_that_is_not_a_string_is_refused_and_counted() {
    let mut host = FakeHost::new(Profile::Envoy);
    host.metadata.insert("jwt/payload/sub".into(), 1_700_000_000.0_f64.to_le_bytes().to_vec());
    let mut ex = Exchange::new(1, policy(r#"{"tenant": {"metadata": ["jwt", "payload", "sub"]}}"#));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT]);
    host.response(&mut ex, JSON_OK, &[ANSWER]);
    assert_eq!(host.record()["tenant"], serde_json::Value::Null);
    assert_eq!(host.counter(Counter::AttributionRejected), 1);
}

/// The client's query is copied into the provider's path unaltered. One that is not UTF-8 (which
/// nginx lets through; Envoy refuses such a request line with its own 400) cannot be copied as
/// text: the routed request is refused in the client's dialect rather than forwarded altered.
#[test]
fn a_routed_request_keeps_its_query_or_is_refused_when_the_query_is_not_utf8() {
    let body = br#"{"model": "fast", "messages": []}"#;
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(&format!("{{{ROUTED}}}")));
        let path = "/v1/chat/completions?t=caf%C3%A9&x=%E9";
        host.request(&mut ex, &[(":method", "POST"), (":path", path)], &[body]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        assert_eq!(host.upstream_header(":path"), Some(path), "{profile:?}");
    }

    let mut host = FakeHost::new(Profile::Kong);
    host.raw_request_headers.push((":path".into(), Some(b"/v1/chat/completions?t=caf\xe9".to_vec())));
    let mut ex = Exchange::new(1, policy(&format!("{{{ROUTED}}}")));
    host.request(&mut ex, CHAT_HEADERS, &[body]);
    let reply = host.reply.clone().expect("refused");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "invalid_request");
    assert!(host.upstream_body.is_empty() && host.kong_upstream.is_none(), "nothing was forwarded");
}

/// Kong keeps the case the client wrote (`X-Tollgate-Cluster`): the prefix strip compares
/// without case, so a spoofed cluster, tenant or cost never reaches the upstream on either proxy.
/// (Kong's host sends even removed headers upstream, so there their values are emptied: the
/// header may arrive, what the client put in it never does.)
#[test]
fn prefixed_headers_are_removed_in_any_case_on_both_proxies() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        let mut headers = CHAT_HEADERS.to_vec();
        headers.extend([
            ("X-Tollgate-Cluster", "anthropic"),
            ("X-TOLLGATE-TENANT", "spoofed"),
            ("x-tollgate-cost-usd", "0"),
        ]);
        host.request(&mut ex, &headers, &[CHAT]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        host.assert_withheld_prefix("x-tollgate-");
        assert_eq!(host.upstream_body, CHAT);
    }
}
