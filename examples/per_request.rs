//! The filter's per-request work without a proxy, for `make bench` and `make bench-gate`.
//!
//! `per_request time BODY.json...` times each case below on each body and prints one JSON
//! object. `make bench` runs it twice: natively, and compiled to wasm32-wasip1 under Wasmtime
//! (Cranelift), the closest engine we can embed here to the V8 that Envoy runs.
//!
//! `per_request count CASE N BODY.json` runs one case N times without timing anything, for
//! `valgrind --tool=callgrind`: instruction counts are the benchmark's regression gate
//! (bench/gate.py), because wall-clock time on a shared machine is too noisy to gate on.
//!
//! `per_request cold CASE N BODY.json` is `count` with the caches evicted before each run (a
//! 64 MB write, `EVICT_MB` to change it): under `valgrind --tool=callgrind --cache-sim=yes` it
//! shows which code and data a request brings in from memory, which is what a proxy pays.
//!
//! `per_request check` checks that the feature cases' policies do what they are there to
//! measure (`time` does too, first; bench/gate.py runs it once, outside callgrind).
//!
//! `per_request hostcalls BODY.json` prints, as JSON, the calls the filter makes to its host, by
//! kind, for each whole-exchange case on that body and per chunk for the stream cases: each is a
//! proxy-wasm hostcall on Envoy (`Hostcall::on_envoy` in tests/support names which).
//!
//! Whole exchanges are driven through the fake Envoy of the lifecycle tests (tests/support),
//! so they include that fake host's own bookkeeping; the `parse_*` cases are the bare functions.
//! The budget cases keep their counters between requests (one shared data for the whole run, as
//! in a proxy), so they measure a counter's update, not its creation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a bench may fail loudly

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use support::{policy, FakeHost, Hostcall, Profile, SharedMap};
use tollgate::budgets::redis::{read_answer, Progress};
use tollgate::budgets::Store;
use tollgate::config::Policy;
use tollgate::dialect::{self, Api};
use tollgate::exchange::Exchange;
use tollgate::names::Counter;

const CHAT_REQUEST: &[u8] = include_bytes!("../tests/fixtures/openai/chat_request.json");
const CHAT_RESPONSE: &[u8] = include_bytes!("../tests/fixtures/openai/chat_response.json");
const ANTHROPIC_RESPONSE: &[u8] = include_bytes!("../tests/fixtures/anthropic/messages_response.json");
const CHAT_STREAM: &[u8] = include_bytes!("../tests/fixtures/openai/chat_stream.sse");
const CHAT_HEADERS: &[(&str, &str)] =
    &[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream; charset=utf-8")];
/// The budget cases' request: a tenant and a client's key, which their limits are kept by.
const BUDGET_HEADERS: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/v1/chat/completions"),
    ("content-type", "application/json"),
    ("x-tenant-id", "bench-tenant"),
    ("authorization", "Bearer sk-bench-client-key"),
];
/// webdis's answers to the Redis store's scripts, as docs/redis-store.md shows them: the
/// reservation admitted (each counter's total after it), and the settlement (each counter's total).
const RESERVED_IN_REDIS: &[u8] = br#"{"EVALSHA":[1,"4123000000","17","52310"]}"#;
const SETTLED_IN_REDIS: &[u8] = br#"{"EVALSHA":["4119000000","17","51890"]}"#;

/// One measured piece of per-request work: what it does with a request body, and how many
/// units (requests or chunks) one call covers.
struct Case {
    name: &'static str,
    what: &'static str,
    run: fn(&[u8]) -> usize,
    /// False when the case ignores the request body (it is then timed once, not per body).
    per_body: bool,
}

/// Per-request work measured today, in report order. Features add their case here when they
/// land. Each `select_model`, `translate`, `count_tokens` and `scan_guardrails*` case is a whole
/// exchange like the one it names, with one feature more: the difference between the two is that
/// feature.
const CASES: &[Case] = &[
    Case {
        name: "parse_request",
        what: "read the chat request into its canonical request (model, stream, parameters, tool names)",
        run: parse_request,
        per_body: true,
    },
    Case {
        name: "parse_response",
        what: "parse a non-streaming chat response (tests/fixtures) and price its usage",
        run: parse_response,
        per_body: false,
    },
    Case {
        name: "exchange",
        what: "a whole request and non-streaming response through Exchange on the fake Envoy",
        run: exchange,
        per_body: true,
    },
    Case {
        name: "stream_chunk",
        what:
            "one SSE event of a streamed response through Exchange (per chunk; the fixture request, then 1,000 events)",
        run: stream_chunks,
        per_body: false,
    },
    Case {
        name: "select_model",
        what: "`exchange` with model selection: a rule aliases gpt-4o-mini to its dated snapshot at the openai \
               provider (body model rewritten, credentials replaced, cluster named)",
        run: select_model,
        per_body: true,
    },
    Case {
        name: "translate",
        what: "`select_model` with the target at the Anthropic provider: an OpenAI client served by Anthropic, \
               the request translated to the Messages API and the answer (tests/fixtures/anthropic) back to a \
               chat completion",
        run: translate,
        per_body: true,
    },
    Case {
        name: "count_tokens",
        what: "`select_model` with a context window of 64 tokens on the target (overflow to 1M), so every \
               bench prompt is counted exactly (o200k, OpenAI's chat rules) for the context-window rule (a \
               prompt whose bytes are within the smallest window is not counted)",
        run: count_tokens,
        per_body: true,
    },
    Case {
        name: "scan_guardrails",
        what: "`exchange` with the shipped `privacy` guardrails (envoy/envoy.yaml): the request scanned for \
               PII and secrets, the answer for secrets (the bench bodies hold none: the scan, not masking)",
        run: scan_guardrails,
        per_body: true,
    },
    Case {
        name: "budgets",
        what: "`select_model` with budgets on the embedded store (the proxy's shared data): a USD budget per \
               tenant per day, requests per minute per client key, total tokens per minute per tenant, as the \
               `budgets` profile; the prompt counted exactly (o200k) for the reservation, three counters \
               reserved (compare-and-swap) before the request leaves and settled when it is recorded",
        run: budgets,
        per_body: true,
    },
    Case {
        name: "budgets_redis",
        what: "`budgets` on the Redis store: the reservation's call to webdis built (EVALSHA of \
               redis/reserve.lua, three counters) and its answer read, then the settlement's call built and \
               its answer read (the root context's part); webdis's answers are canned, so no network",
        run: budgets_redis,
        per_body: true,
    },
    Case {
        name: "scan_guardrails_stream",
        what: "`stream_chunk` with the shipped `privacy` guardrails: every event through the stream guard \
               (per chunk)",
        run: scan_guardrails_stream,
        per_body: false,
    },
];

/// Per-request work the roadmap adds that has no case yet (none today): each becomes a `Case`
/// above. Kept, empty, because bench/run.py reports the list.
const PENDING: &[(&str, &str)] = &[];

/// `select_model`: an alias to another model, so the body is rewritten, as in the `selection`
/// profile of bench/profiles.toml.
const SELECTION: &str = r#"{
  "providers": {"openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-bench"}}},
  "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}},
  "rules": [{"name": "pin", "match": {"model": "gpt-4o-mini"}, "targets": ["mini"]}]
}"#;

/// `translate`: every model to Claude at the Anthropic provider, as the `translation` profile of
/// bench/profiles.toml but without its context window (that would count tokens too).
const TRANSLATION: &str = r#"{
  "providers": {"anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant-bench"}}},
  "targets": {"claude": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
  "rules": [{"name": "claude", "match": {"model": "*"}, "targets": ["claude"]}]
}"#;

/// `count_tokens`: the same alias with a context window. A prompt whose bytes fit in the smallest
/// window is not counted (a token is at least a byte), so the window is small enough that every
/// bench body's bytes pass it: each is counted exactly, and each overflows to the big target.
const CONTEXT_WINDOW: &str = r#"{
  "providers": {"openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-bench"}}},
  "targets": {
    "mini": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "context_window": 64},
    "big": {"provider": "openai", "model": "gpt-4.1", "context_window": 1047576}
  },
  "rules": [{"name": "pin", "match": {"model": "gpt-4o-mini"}, "targets": ["mini"], "overflow": ["big"]}]
}"#;

/// `scan_guardrails*`: the `privacy` policy of envoy/envoy.yaml, copied as shipped, and nothing else.
const GUARDRAILS: &str = r#"{"guardrails": {"policies": [
  {"name": "privacy", "checks": [
    {"name": "pii", "detectors": ["email", "card", "iban", "ssn"], "action": "mask_and_restore",
     "scope": {"roles": ["user", "tool"]}},
    {"name": "secrets", "detectors": ["secrets"], "action": "block", "status": 422, "code": "secret_detected"}
  ]}
]}}"#;

/// `budgets`: `select_model` with the limits of the `budgets` profile of bench/profiles.toml,
/// which never refuse here (each holds far more than a run spends).
const BUDGETS: &str = r#"{
  "tenant": {"header": "x-tenant-id"},
  "providers": {"openai": {"dialect": "openai", "cluster": "openai", "api_key": {"value": "sk-bench"}}},
  "targets": {"mini": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}},
  "rules": [{"name": "pin", "match": {"model": "gpt-4o-mini"}, "targets": ["mini"]}],
  "budgets": {"limits": [
    {"name": "tenant-daily-usd", "usd": "1000000", "window": "day", "by": ["tenant"]},
    {"name": "key-rpm", "requests": 1000000000, "window": "minute", "by": ["client_key"]},
    {"name": "tenant-tpm", "total_tokens": 1000000000000000, "window": "minute", "by": ["tenant"]}
  ]}
}"#;

/// `budgets_redis`: the same limits in Redis, as the `budgets-redis` profile.
fn budgets_redis_config() -> String {
    BUDGETS.replacen(
        r#""budgets": {"#,
        r#""budgets": {"store": {"redis": {"endpoint": "webdis", "timeout_ms": 200}}, "#,
        1,
    )
}

thread_local! {
    /// Compiled once, as the filter does at configuration time, and shared by every request
    /// (each on first use: a case's run compiles only its own).
    static POLICY: Rc<Policy> = policy("{}");
    static SELECTION_POLICY: Rc<Policy> = policy(SELECTION);
    static TRANSLATION_POLICY: Rc<Policy> = policy(TRANSLATION);
    static CONTEXT_WINDOW_POLICY: Rc<Policy> = policy(CONTEXT_WINDOW);
    static GUARDRAILS_POLICY: Rc<Policy> = policy(GUARDRAILS);
    static BUDGETS_POLICY: Rc<Policy> = policy(BUDGETS);
    static BUDGETS_REDIS_POLICY: Rc<Policy> = policy(&budgets_redis_config());
    /// The proxy's shared data, kept for the whole run: the counters outlive each request.
    static SHARED: SharedMap = SharedMap::default();
}

fn shared_policy() -> Rc<Policy> {
    POLICY.with(Rc::clone)
}

fn parse_request(body: &[u8]) -> usize {
    let parsed =
        dialect::parse_request(Api::OpenAiChat, black_box(body)).expect("bench bodies are valid chat requests");
    black_box(parsed);
    1
}

fn parse_response(_body: &[u8]) -> usize {
    let parsed = Api::OpenAiChat.read_response(black_box(CHAT_RESPONSE)).expect("fixture is a chat response");
    assert!(parsed.tokens.input.is_some(), "fixture has usage");
    black_box(shared_policy().prices.cost("gpt-4o-mini-2024-07-18", &parsed.tokens));
    1
}

fn exchange(body: &[u8]) -> usize {
    exchange_with(shared_policy(), body);
    1
}

/// A request and its non-streaming answer through Exchange on the fake Envoy, under `policy`.
fn exchange_with(policy: Rc<Policy>, body: &[u8]) -> FakeHost {
    answered_by(policy, body, CHAT_RESPONSE)
}

/// The same, with `answer` as the provider's response body.
fn answered_by(policy: Rc<Policy>, body: &[u8], answer: &[u8]) -> FakeHost {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy);
    host.request(&mut ex, CHAT_HEADERS, &[body]);
    host.response(&mut ex, JSON_OK, &[answer]);
    assert!(host.client_header("x-tollgate-cost-usd").is_some(), "the exchange was priced");
    black_box(host)
}

fn select_model(body: &[u8]) -> usize {
    let host = exchange_with(SELECTION_POLICY.with(Rc::clone), body);
    assert_eq!(host.upstream_header("x-tollgate-cluster"), Some("openai"), "the rule routed the request");
    1
}

fn translate(body: &[u8]) -> usize {
    let host = answered_by(TRANSLATION_POLICY.with(Rc::clone), body, ANTHROPIC_RESPONSE);
    assert_eq!(host.upstream_header(":path"), Some("/v1/messages"), "the request went to Anthropic");
    1
}

fn count_tokens(body: &[u8]) -> usize {
    let host = exchange_with(CONTEXT_WINDOW_POLICY.with(Rc::clone), body);
    assert_eq!(host.upstream_header("x-tollgate-cluster"), Some("openai"), "the rule routed the request");
    1
}

fn scan_guardrails(body: &[u8]) -> usize {
    let host = exchange_with(GUARDRAILS_POLICY.with(Rc::clone), body);
    assert!(host.reply.is_none(), "the guardrails let the request through");
    1
}

fn budgets(body: &[u8]) -> usize {
    let host = budgeted(body);
    assert!(host.reply.is_none() && host.upstream_headers_released, "the budgets admitted the request");
    1
}

/// A request and its answer under the `budgets` policy, on the run's shared data.
fn budgeted(body: &[u8]) -> FakeHost {
    let mut host = FakeHost::new(Profile::Envoy);
    host.shared = SHARED.with(Rc::clone);
    let mut ex = Exchange::new(1, BUDGETS_POLICY.with(Rc::clone));
    host.request(&mut ex, BUDGET_HEADERS, &[body]);
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    black_box(host)
}

fn budgets_redis(body: &[u8]) -> usize {
    let host = budgeted_in_redis(body);
    assert!(host.reply.is_none() && host.upstream_headers_released, "Redis admitted the request");
    1
}

/// A request under the `budgets_redis` policy: it waits for its reservation, which webdis
/// answers (canned); then its answer; then what the root context does with its settlement:
/// build the call to webdis and read its answer.
fn budgeted_in_redis(body: &[u8]) -> FakeHost {
    let policy = BUDGETS_REDIS_POLICY.with(Rc::clone);
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, Rc::clone(&policy));
    host.request(&mut ex, BUDGET_HEADERS, &[body]);
    let token = host.calls.last().map(|(token, _)| *token).expect("the request waits for its reservation");
    host.answer_call(&mut ex, token, Some(200), RESERVED_IN_REDIS);
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    let Store::Redis(store) = &policy.budgets.store else { panic!("budgets_redis keeps its counters in Redis") };
    let now_secs = i64::try_from(host.clock / 1_000_000_000).unwrap_or_default();
    for mut settlement in std::mem::take(&mut host.settlements) {
        let call = black_box(settlement.call(store, now_secs));
        // webdis wraps its answer in the call's JSONP name (the fake host's answer_call does
        // the same for the reservation).
        let settled = [call.callback.as_bytes(), b"(", SETTLED_IN_REDIS, b");\n"].concat();
        let progress = settlement.on_answer(read_answer(Some(200), &settled, &call.callback));
        assert_eq!(progress, Progress::Done, "the settlement is done once Redis has it");
    }
    black_box(host)
}

/// Events per streamed response in `stream_chunk`: enough that the request it starts with
/// (one chat request, parsed) adds well under 1% to the cost per chunk.
const STREAM_EVENTS: usize = 1000;

/// The fixture's SSE events, its content events repeated to `STREAM_EVENTS`.
fn stream_events() -> &'static [&'static [u8]] {
    static EVENTS: std::sync::OnceLock<Vec<&'static [u8]>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut events: Vec<&[u8]> = Vec::new();
        let mut rest = CHAT_STREAM;
        while let Some(at) = rest.windows(2).position(|w| w == b"\n\n") {
            let (event, tail) = rest.split_at(at + 2);
            events.push(event);
            rest = tail;
        }
        let (first, rest) = events.split_first().expect("fixture has events");
        let (last, middle) = rest.split_last().expect("fixture has events");
        let mut out = vec![*first];
        out.extend(middle.iter().cycle().take(STREAM_EVENTS - 2));
        out.push(*last);
        out
    })
}

/// The fixture's chat request, then a streamed response of `STREAM_EVENTS` events, one body
/// callback each.
fn stream_chunks(_body: &[u8]) -> usize {
    stream_with(shared_policy())
}

/// `stream_chunk` under the `privacy` guardrails: each event also goes through the stream guard.
fn scan_guardrails_stream(_body: &[u8]) -> usize {
    stream_with(GUARDRAILS_POLICY.with(Rc::clone))
}

fn stream_with(policy: Rc<Policy>) -> usize {
    let events = stream_events();
    black_box(streamed(policy, events));
    events.len()
}

/// The fixture's chat request, then `events` as a streamed answer, one body callback each.
fn streamed(policy: Rc<Policy>, events: &[&[u8]]) -> FakeHost {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy);
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, SSE_OK, events);
    host
}

/// `per_request hostcalls`: the filter's calls to its host by kind, per request for the
/// whole-exchange cases on `body`, per chunk for the stream cases (the difference between a
/// stream of `STREAM_EVENTS` events and one of half as many, so the request's own calls cancel).
fn hostcalls(body: &[u8], body_name: &str) -> serde_json::Value {
    let counts = |host: &FakeHost| -> serde_json::Map<String, serde_json::Value> {
        host.hostcalls.made().into_iter().map(|(c, n)| (c.name().to_string(), n.into())).collect()
    };
    let mut cases = Vec::new();
    let exchanges: [(&str, Rc<Policy>, &[u8]); 5] = [
        ("exchange", shared_policy(), CHAT_RESPONSE),
        ("select_model", SELECTION_POLICY.with(Rc::clone), CHAT_RESPONSE),
        ("translate", TRANSLATION_POLICY.with(Rc::clone), ANTHROPIC_RESPONSE),
        ("count_tokens", CONTEXT_WINDOW_POLICY.with(Rc::clone), CHAT_RESPONSE),
        ("scan_guardrails", GUARDRAILS_POLICY.with(Rc::clone), CHAT_RESPONSE),
    ];
    let mut hosts: Vec<(&str, FakeHost)> =
        exchanges.into_iter().map(|(name, policy, answer)| (name, answered_by(policy, body, answer))).collect();
    // A first request creates the counters; the second, measured, updates them as in a proxy.
    budgeted(body);
    hosts.push(("budgets", budgeted(body)));
    hosts.push(("budgets_redis", budgeted_in_redis(body)));
    for (name, host) in hosts {
        cases.push(serde_json::json!({
            "case": name, "body": body_name, "per": "request",
            "calls": counts(&host), "total": host.hostcalls.total(),
        }));
    }
    let all = stream_events();
    let half: Vec<&[u8]> = all[..all.len() / 2 - 1].iter().chain(all.last()).copied().collect();
    for (name, policy) in
        [("stream_chunk", shared_policy()), ("scan_guardrails_stream", GUARDRAILS_POLICY.with(Rc::clone))]
    {
        let long = streamed(policy.clone(), all);
        let short = streamed(policy, &half);
        let extra = (all.len() - half.len()) as f64;
        let calls: serde_json::Map<String, serde_json::Value> = Hostcall::ALL
            .iter()
            .filter_map(|&c| {
                let n = long.hostcalls.count(c) - short.hostcalls.count(c);
                (n > 0).then(|| (c.name().to_string(), (n as f64 / extra).into()))
            })
            .collect();
        let total = (long.hostcalls.total() - short.hostcalls.total()) as f64 / extra;
        cases.push(serde_json::json!({
            "case": name, "body": "fixture", "per": "chunk", "calls": calls, "total": total,
        }));
    }
    let kinds: Vec<_> =
        Hostcall::ALL.iter().map(|c| serde_json::json!({"kind": c.name(), "on_envoy": c.on_envoy()})).collect();
    serde_json::json!({"kinds": kinds, "cases": cases})
}

/// The policies of the feature cases do what they are there to measure (a case that silently
/// skipped its feature would measure nothing). Run before timing, never in a timed loop.
fn check_policies() {
    let body = |content: &str| {
        serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).to_string()
    };
    let upstream_model = |host: &FakeHost| {
        let sent: serde_json::Value = serde_json::from_slice(&host.upstream_body).expect("upstream body is JSON");
        sent["model"].as_str().unwrap_or_default().to_string()
    };

    let host = exchange_with(SELECTION_POLICY.with(Rc::clone), body("hi").as_bytes());
    assert_eq!(upstream_model(&host), "gpt-4o-mini-2024-07-18", "select_model rewrites the body's model");

    let host = answered_by(TRANSLATION_POLICY.with(Rc::clone), body("hi").as_bytes(), ANTHROPIC_RESPONSE);
    let sent: serde_json::Value = serde_json::from_slice(&host.upstream_body).expect("upstream body is JSON");
    assert_eq!(sent["model"], "claude-haiku-4-5", "translate sends the Messages API request");
    assert!(sent["max_tokens"].is_u64(), "translate sends the Messages API request: {sent}");
    let answer: serde_json::Value = serde_json::from_slice(&host.client_body()).expect("the answer is JSON");
    assert_eq!(answer["object"], "chat.completion", "translate answers the client in its own dialect");

    // 20 words, 100 bytes: more than the 64-token window by their bytes, within it by their count,
    // which is what keeps them on the first target.
    let near = body(&"word ".repeat(20));
    let host = exchange_with(CONTEXT_WINDOW_POLICY.with(Rc::clone), near.as_bytes());
    assert_eq!(upstream_model(&host), "gpt-4o-mini-2024-07-18", "count_tokens counts the prompt");
    let long = body(&"word ".repeat(100));
    let host = exchange_with(CONTEXT_WINDOW_POLICY.with(Rc::clone), long.as_bytes());
    assert_eq!(upstream_model(&host), "gpt-4.1", "count_tokens holds the prompt against the window");

    let host = exchange_with(GUARDRAILS_POLICY.with(Rc::clone), body("write to jane.doe@example.com").as_bytes());
    let sent = String::from_utf8_lossy(&host.upstream_body).into_owned();
    assert!(sent.contains("[EMAIL_1]") && !sent.contains("jane.doe"), "scan_guardrails masks emails: {sent}");

    // Every request reserves and settles on each of the three limits' counters.
    let host = budgeted(body("hi").as_bytes());
    let record = host.record();
    assert_eq!(record["budget"]["verdict"], "admitted", "budgets reserves: {record}");
    let limits = record["budget"]["limits"].as_array().map_or(0, Vec::len);
    assert_eq!(limits, 3, "budgets counts the request on three limits: {record}");
    assert!(record["budget"]["settled"]["input_tokens"].as_u64().is_some(), "budgets settles: {record}");
    let counters = SHARED.with(|shared| shared.borrow().keys().filter(|k| k.starts_with("tollgate:budget:")).count());
    assert!(counters >= 3, "budgets keeps three counters in the shared data ({counters})");

    let host = budgeted_in_redis(body("hi").as_bytes());
    let (_, call) = host.calls.first().expect("budgets_redis calls webdis");
    let keys = call.path.split('/').nth(3);
    assert!(
        call.path.starts_with("/EVALSHA/") && keys == Some("4"),
        "one reservation of three counters: {}",
        call.path
    );
    assert_eq!(host.record()["budget"]["verdict"], "admitted", "budgets_redis reserves in Redis");

    // A key in a streamed answer ends the stream: the stream guard reads every event.
    let key = b"sk-proj-Zq8xV3mN7bR2tY6uK1wP4sL9dF5gH0jA";
    let events = stream_events();
    let leaking = events[1]
        .windows(6)
        .position(|w| w == b"An API")
        .map(|at| [&events[1][..at], key.as_slice(), &events[1][at + 6..]].concat());
    let leaking = leaking.expect("the fixture's second event says \"An API\"");
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, GUARDRAILS_POLICY.with(Rc::clone));
    host.request(&mut ex, CHAT_HEADERS, &[CHAT_REQUEST]);
    host.response(&mut ex, SSE_OK, &[events[0], &leaking, events[2]]);
    let client = host.client_body();
    assert!(!client.windows(key.len()).any(|w| w == key), "scan_guardrails_stream blocks keys");
    assert_eq!(host.counter(Counter::ResponsesBlockedByGuardrails), 1, "the stream guard ended the stream");
}

/// Median and best of `samples` timings, each long enough to dwarf the clock's resolution.
fn time_case(case: &Case, body: &[u8], budget: Duration) -> serde_json::Value {
    let units = (case.run)(body);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget / 10 || calls < 3 {
        (case.run)(body);
        calls += 1;
    }
    let per_sample = calls.max(1);
    let mut samples: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_sample {
                (case.run)(body);
            }
            start.elapsed().as_nanos() as f64 / (per_sample as f64 * units as f64)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    serde_json::json!({
        "case": case.name,
        "ns_median": samples[samples.len() / 2],
        "ns_best": samples[0],
        "units_per_call": units,
        "bytes": body.len(),
    })
}

/// Cases also timed cold, on small bodies: in a proxy the filter's code runs between the proxy's
/// own work, which evicts it from the caches, so a hot loop flatters it.
const COLD_CASES: [&str; 2] = ["exchange", "select_model"];

/// Median of single runs, each after evicting the caches, so the code and data come from memory
/// as in a proxy between requests.
fn time_cold(case: &Case, body: &[u8]) -> f64 {
    let mut evictor = Evictor::new(64);
    let mut samples: Vec<f64> = (0..101)
        .map(|_| {
            evictor.evict();
            let start = Instant::now();
            (case.run)(body);
            start.elapsed().as_nanos() as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Writes one byte per cache line of a buffer larger than the caches.
struct Evictor {
    buffer: Vec<u8>,
    round: u8,
}

impl Evictor {
    fn new(megabytes: usize) -> Self {
        Evictor { buffer: vec![0; megabytes << 20], round: 0 }
    }

    fn evict(&mut self) {
        self.round = self.round.wrapping_add(1);
        for byte in self.buffer.iter_mut().step_by(64) {
            *byte = byte.wrapping_add(self.round);
        }
        black_box(&self.buffer);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => {
            check_policies();
            println!("the feature cases' policies do what they measure");
        }
        Some("time") => {
            check_policies();
            let budget = Duration::from_millis(
                std::env::var("BENCH_BUDGET_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
            );
            let mut results = Vec::new();
            for (index, path) in args[1..].iter().enumerate() {
                let body = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
                for case in CASES.iter().filter(|c| c.per_body || index == 0) {
                    let mut result = time_case(case, &body, budget);
                    if COLD_CASES.contains(&case.name) && body.len() <= 4096 {
                        result["ns_cold_median"] = time_cold(case, &body).into();
                    }
                    let name = path.rsplit('/').next().unwrap_or(path);
                    result["body"] = if case.per_body { name.into() } else { "fixture".into() };
                    results.push(result);
                }
            }
            let cases: Vec<_> = CASES.iter().map(|c| serde_json::json!({"case": c.name, "what": c.what})).collect();
            let pending: Vec<_> = PENDING.iter().map(|(n, w)| serde_json::json!({"case": n, "what": w})).collect();
            let target = if cfg!(target_arch = "wasm32") { "wasm32-wasip1" } else { std::env::consts::ARCH };
            let out = serde_json::json!({"target": target, "cases": cases, "pending": pending, "results": results});
            println!("{out}");
        }
        Some("hostcalls") if args.len() == 2 => {
            check_policies();
            let body = std::fs::read(&args[1]).unwrap_or_else(|e| panic!("cannot read {}: {e}", args[1]));
            let name = args[1].rsplit('/').next().unwrap_or(&args[1]);
            println!("{}", hostcalls(&body, name));
        }
        Some(mode @ ("count" | "cold")) if args.len() == 4 => {
            let case = CASES.iter().find(|c| c.name == args[1]).unwrap_or_else(|| panic!("no case {}", args[1]));
            let n: u64 = args[2].parse().expect("N is a number");
            let body = std::fs::read(&args[3]).expect("body file");
            let megabytes = std::env::var("EVICT_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
            let mut evictor = (mode == "cold").then(|| Evictor::new(megabytes));
            let mut units = 0;
            for _ in 0..n {
                if let Some(evictor) = evictor.as_mut() {
                    evictor.evict();
                }
                units = black_box((case.run)(&body));
            }
            println!("{units}");
        }
        _ => {
            eprintln!(
                "usage: per_request time BODY.json... | per_request count CASE N BODY.json | per_request check \
                 | per_request hostcalls BODY.json | per_request cold CASE N BODY.json"
            );
            std::process::exit(2);
        }
    }
}
