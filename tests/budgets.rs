//! Budgets and rate limits through the state machine on the embedded store (the proxy's shared
//! data): reserve before the request leaves, refuse in the client's dialect, settle to the
//! provider's usage, roll windows over on the host's clock, end a stream that runs past what it
//! may have in every dialect, and keep the books exact across workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{policy, FakeHost, Profile};
use tollgate::budgets::ledger::PREFIX;
use tollgate::config::Policy;
use tollgate::exchange::Exchange;
use tollgate::names::Counter;
use tollgate::sse_write::write_event;

const CHAT_RESPONSE: &[u8] = include_bytes!("fixtures/openai/chat_response.json");
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn post(path: &str, tenant: &str) -> Vec<(String, String)> {
    [
        (":method", "POST"),
        (":path", path),
        ("content-type", "application/json"),
        ("x-tenant", tenant),
        ("authorization", "Bearer sk-client"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn with_budgets(budgets: Value) -> Rc<Policy> {
    policy(&json!({"tenant": {"header": "x-tenant"}, "budgets": budgets}).to_string())
}

/// The provider's answer: its headers and body chunks.
type Answer<'a> = (&'a [(&'a str, &'a str)], Vec<&'a [u8]>);

/// One exchange on a fresh host (a new stream on the same proxy: same shared data, same clock):
/// the request, and (when it went upstream) `answer` in `chunks`. The host is left in `host`.
fn exchange(
    host: &mut FakeHost,
    policy: &Rc<Policy>,
    path: &str,
    tenant: &str,
    request: &Value,
    answer: Option<Answer<'_>>,
) -> Exchange {
    let mut ex = send(host, policy, path, tenant, request);
    if host.reply.is_none() {
        if let Some((headers, chunks)) = answer {
            host.response(&mut ex, headers, &chunks);
        }
    } else {
        ex.on_done(host);
    }
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    ex
}

/// Like [`exchange`], but the provider's stream stops after `chunks` without its end (an
/// upstream reset, or the client gone: Envoy resets the upstream then).
fn exchange_reset(
    host: &mut FakeHost,
    policy: &Rc<Policy>,
    path: &str,
    tenant: &str,
    request: &Value,
    chunks: &[&[u8]],
) -> Exchange {
    let mut ex = send(host, policy, path, tenant, request);
    assert!(host.reply.is_none(), "the request went upstream");
    host.response_cut(&mut ex, SSE_OK, chunks);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    ex
}

/// A new stream on the same proxy (same shared data, same clock) and its request.
fn send(host: &mut FakeHost, policy: &Rc<Policy>, path: &str, tenant: &str, request: &Value) -> Exchange {
    let mut next = FakeHost::new(host.profile);
    next.shared = Rc::clone(&host.shared);
    next.clock = host.clock;
    next.refuse = host.refuse.clone();
    next.counters = std::mem::take(&mut host.counters);
    next.metrics = std::mem::take(&mut host.metrics);
    *host = next;
    let mut ex = Exchange::new(1, Rc::clone(policy));
    let headers = post(path, tenant);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    host.request(&mut ex, &headers, &[request.to_string().as_bytes()]);
    ex
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}

/// The shared counter of `key` (limit name and scope) in whatever window it holds.
fn counter(host: &FakeHost, key: &str) -> Option<u64> {
    let shared = host.shared.borrow();
    let (value, _) = shared.get(&[PREFIX, key].concat())?;
    let text = String::from_utf8(value.clone()).unwrap();
    Some(text.split_once(' ').unwrap().1.parse().unwrap())
}

#[test]
fn a_request_limit_refuses_the_request_past_it_in_the_clients_dialect() {
    let policy =
        with_budgets(json!({"limits": [{"name": "rpm", "requests": 3, "window": "minute", "by": ["tenant"]}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    for _ in 0..3 {
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("gpt-4o-mini"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        assert_eq!(host.client_header("x-ratelimit-limit-requests"), Some("3"));
    }
    assert_eq!(host.client_header("x-ratelimit-remaining-requests"), Some("0"));
    exchange(&mut host, &policy, "/v1/chat/completions", "acme", &chat("gpt-4o-mini"), None);
    let reply = host.reply.clone().expect("the fourth is refused");
    assert_eq!(reply.status, 429);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let header = |name: &str| reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let wait: i64 = header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(header("x-ratelimit-remaining-requests").as_deref(), Some("0"));
    assert_eq!(host.record()["budget"]["verdict"], "refused");
    assert_eq!(host.record()["budget"]["decided_by"], "rpm");
    assert_eq!(host.counter(Counter::RequestsRefusedByBudget), 1);
    // Another tenant has its own counter; the next minute the first has its limit again.
    exchange(
        &mut host,
        &policy,
        "/v1/chat/completions",
        "globex",
        &chat("gpt-4o-mini"),
        Some((JSON_OK, vec![CHAT_RESPONSE])),
    );
    assert!(host.reply.is_none());
    host.advance_ms(60_000);
    exchange(
        &mut host,
        &policy,
        "/v1/chat/completions",
        "acme",
        &chat("gpt-4o-mini"),
        Some((JSON_OK, vec![CHAT_RESPONSE])),
    );
    assert!(host.reply.is_none(), "the window rolled over on the host's clock");
}

#[test]
fn anthropic_clients_get_anthropics_429_and_a_spent_budget_says_not_to_retry() {
    let policy =
        with_budgets(json!({"limits": [{"name": "daily", "usd": "0.000001", "window": "day", "by": ["tenant"]}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    let request =
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    exchange(&mut host, &policy, "/v1/messages", "acme", &request, None);
    let reply = host.reply.clone().expect("refused: the reservation alone is over the budget");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
    assert!(reply.headers.iter().any(|(n, v)| n == "x-should-retry" && v == "false"));
    let openai = exchange(&mut host, &policy, "/v1/chat/completions", "acme", &chat("gpt-4o"), None);
    drop(openai);
    let body = host.reply.clone().unwrap().json();
    assert_eq!(
        (body["error"]["type"].as_str(), body["error"]["code"].as_str()),
        (Some("insufficient_quota"), Some("budget_exceeded"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("daily"), "{body}");
}

#[test]
fn a_spend_budget_settles_to_what_the_provider_reported() {
    let policy = with_budgets(json!({"limits": [{"name": "daily", "usd": "10", "window": "day", "by": ["tenant"]}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    let mut total = 0u64;
    for _ in 0..3 {
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("gpt-4o-mini"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        let record = host.record();
        let cost = pico(record["cost_usd"].as_str().unwrap());
        assert!(cost > 0);
        total += cost;
        let budget = &record["budget"];
        assert_eq!(budget["verdict"], "admitted");
        assert_eq!(budget["settled"]["usd"], record["cost_usd"], "settled to the record's own cost");
        assert!(pico(budget["reserved"]["usd"].as_str().unwrap()) >= cost, "the reservation was the worst case");
    }
    assert_eq!(
        counter(&host, "daily:acme"),
        Some(total),
        "the counter is the sum of the records' costs, to the pico-dollar"
    );
    let remaining = host.client_header("x-ratelimit-remaining-usd").unwrap();
    assert!(remaining.starts_with("9.99"), "{remaining}");
}

#[test]
fn a_provider_error_gives_back_what_the_request_reserved() {
    let policy = with_budgets(json!({"limits": [{"name": "tokens", "total_tokens": 100000, "window": "hour"}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    let error = br#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#;
    exchange(
        &mut host,
        &policy,
        "/v1/chat/completions",
        "acme",
        &chat("gpt-4o-mini"),
        Some((&[(":status", "500"), ("content-type", "application/json")], vec![error])),
    );
    assert_eq!(counter(&host, "tokens"), Some(0), "nothing was generated");
    assert_eq!(host.record()["budget"]["settled"]["output_tokens"], 0);
}

#[test]
fn shadow_limits_record_what_they_would_have_refused_and_refuse_nothing() {
    let policy = with_budgets(json!({"limits": [{"name": "tiny", "requests": 1, "window": "hour", "shadow": true}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    for _ in 0..3 {
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("gpt-4o-mini"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        assert!(host.reply.is_none());
    }
    assert_eq!(host.record()["budget"]["shadow_over"], json!(["tiny"]));
    assert_eq!(host.metrics.get("tollgate.budget_requests.limit.tiny.verdict.shadow_over"), Some(&2));
    assert_eq!(host.client_header("x-ratelimit-limit-requests"), None, "shadow limits set no headers");
}

#[test]
fn an_absurd_output_limit_reserves_the_most_any_model_writes_and_is_refused() {
    let policy = with_budgets(json!({"limits": [{"name": "tokens", "output_tokens": 1000000, "window": "hour"}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    let mut request = chat("gpt-4o-mini");
    request["max_tokens"] = json!(1_000_000_000_000u64);
    exchange(&mut host, &policy, "/v1/chat/completions", "acme", &request, None);
    let reply = host.reply.clone().expect("10^12 output tokens never fit");
    assert_eq!(reply.status, 429);
    assert_eq!(host.record()["budget"]["reserved"]["output_tokens"], 10_000_000);
    assert_eq!(counter(&host, "tokens"), None, "nothing was kept");
}

#[test]
fn a_spend_limit_on_an_unpriced_model_follows_the_failure_mode() {
    for (mode, refused) in [("open", false), ("closed", true)] {
        let policy = policy(
            &json!({"failure_mode": mode, "budgets": {"limits": [{"name": "usd", "usd": "5", "window": "month"}]}})
                .to_string(),
        );
        let mut host = FakeHost::new(Profile::Envoy);
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("a-model-nobody-priced"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        assert_eq!(host.reply.is_some(), refused, "{mode}");
        assert_eq!(host.record()["budget"]["verdict"], "unpriced");
    }
}

#[test]
fn counters_that_cannot_be_used_follow_the_failure_mode_and_a_corrupt_one_is_not_zero() {
    for (mode, refused) in [("open", false), ("closed", true)] {
        let policy = policy(
            &json!({"failure_mode": mode, "budgets": {"limits": [{"name": "rpm", "requests": 5, "window": "minute"}]}})
                .to_string(),
        );
        let mut host = FakeHost::new(Profile::Envoy);
        host.refuse.push("shared_data");
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("gpt-4o-mini"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        assert_eq!(host.reply.as_ref().map(|r| r.status), refused.then_some(500), "{mode}");
        assert_eq!(host.counter(Counter::BudgetStoreErrors), 1);
        assert_eq!(host.record()["budget"]["verdict"], "store_failed");

        let mut host = FakeHost::new(Profile::Envoy);
        host.shared.borrow_mut().insert([PREFIX, "rpm"].concat(), (b"garbage".to_vec(), 7));
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("gpt-4o-mini"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        assert_eq!(host.reply.is_some(), refused, "{mode}: a corrupt counter is a store error");
        assert_eq!(host.shared.borrow()[&[PREFIX, "rpm"].concat()].0, b"garbage", "left for the operator to reset");
    }
}

#[test]
fn workers_sharing_the_data_never_admit_more_than_the_limit() {
    // Eight workers (hosts over one shared data), requests interleaved between reserve and settle.
    let policy = with_budgets(json!({"limits": [{"name": "burst", "requests": 10, "window": "hour"}]}));
    let shared = Rc::default();
    let mut workers: Vec<FakeHost> = (0..8)
        .map(|_| {
            let mut host = FakeHost::new(Profile::Envoy);
            host.shared = Rc::clone(&shared);
            host
        })
        .collect();
    let mut in_flight = Vec::new();
    let mut admitted = 0;
    for round in 0..4 {
        for host in &mut workers {
            let mut ex = Exchange::new(round, Rc::clone(&policy));
            let headers = post("/v1/chat/completions", "acme");
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            host.reply = None;
            host.request(&mut ex, &headers, &[chat("gpt-4o-mini").to_string().as_bytes()]);
            if host.reply.is_none() {
                admitted += 1;
            }
            in_flight.push(ex);
        }
    }
    assert_eq!(admitted, 10);
}

/// A Chat stream of `n` one-word deltas and the provider's usage.
fn long_chat_stream(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    write_event(&mut out, "", chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string().as_bytes());
    for _ in 0..n {
        write_event(&mut out, "", chunk(json!({"content": " word"}), Value::Null).to_string().as_bytes());
    }
    write_event(&mut out, "", chunk(json!({}), json!("stop")).to_string().as_bytes());
    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": n + 9}});
    write_event(&mut out, "", usage.to_string().as_bytes());
    write_event(&mut out, "", b"[DONE]");
    out
}

fn events(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[test]
fn a_stream_without_an_output_limit_is_ended_at_the_routes_ceiling() {
    let policy = with_budgets(json!({"max_output_tokens": 20}));
    for profile in [Profile::Envoy, Profile::Kong] {
        let mut host = FakeHost::new(profile);
        let stream = long_chat_stream(100);
        let mut request = chat("gpt-4o-mini");
        request["stream"] = json!(true);
        let chunks: Vec<&[u8]> = stream.chunks(97).collect();
        exchange(&mut host, &policy, "/v1/chat/completions", "acme", &request, Some((SSE_OK, chunks)));
        let client = host.client_stream();
        let events = events(&client);
        let words = events.iter().filter(|e| e["choices"][0]["delta"]["content"] == " word").count();
        assert_eq!(words, 20, "exactly the ceiling's worth of one-token words");
        assert_eq!(events.last().unwrap()["choices"][0]["finish_reason"], "length");
        assert!(String::from_utf8_lossy(&client).trim_end().ends_with("data: [DONE]"));
        let record = host.record();
        assert_eq!(record["budget"]["verdict"], "cut");
        assert_eq!(record["budget"]["decided_by"], "max_output_tokens");
        assert_eq!(record["budget"]["cut_at_output_tokens"], 20);
        assert_eq!(
            record["tokens"]["output"]["tokens"], 100,
            "the provider's own count: it was still read after the cut"
        );
        // The client's stream ends with the provider's: `[DONE]` goes out with its last chunk, not
        // at the cut (OpenAI's Python SDK leaves at `[DONE]`, and Envoy would reset the provider).
        let releases = &host.client_body_releases;
        let done_at = releases.iter().position(|r| String::from_utf8_lossy(r).contains("data: [DONE]")).unwrap();
        assert_eq!(done_at, releases.len() - 1, "{} releases", releases.len());
        let cut_at = releases.iter().position(|r| String::from_utf8_lossy(r).contains("\"length\"")).unwrap();
        assert!(cut_at < done_at - 10, "the cut came early, the provider's end much later");
    }
}

#[test]
fn a_stream_is_ended_where_its_tenants_output_budget_runs_out() {
    let policy = with_budgets(json!({
        "default_max_output_tokens": 10,
        "limits": [{"name": "out", "output_tokens": 35, "window": "hour", "by": ["tenant"]}]
    }));
    let mut host = FakeHost::new(Profile::Envoy);
    let stream = long_chat_stream(100);
    let mut request = chat("gpt-4o-mini");
    request["stream"] = json!(true);
    exchange(&mut host, &policy, "/v1/chat/completions", "acme", &request, Some((SSE_OK, vec![&stream])));
    let words = events(&host.client_stream()).iter().filter(|e| e["choices"][0]["delta"]["content"] == " word").count();
    assert_eq!(words, 30, "grown by steps of 10 while the budget held them: 10, 20, 30, then 40 > 35");
    let record = host.record();
    assert_eq!(record["budget"]["decided_by"], "out");
    assert_eq!(counter(&host, "out:acme"), Some(100), "settled to what the provider generated");
}

#[test]
fn a_request_with_its_own_output_limit_is_not_watched() {
    let policy = with_budgets(
        json!({"default_max_output_tokens": 5, "limits": [{"name": "out", "output_tokens": 1000, "window": "hour"}]}),
    );
    let mut host = FakeHost::new(Profile::Envoy);
    let stream = long_chat_stream(50);
    let mut request = chat("gpt-4o-mini");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    request["max_tokens"] = json!(50);
    exchange(&mut host, &policy, "/v1/chat/completions", "acme", &request, Some((SSE_OK, vec![&stream])));
    assert_eq!(host.client_stream(), stream, "the provider stops it at its own limit; the bytes pass as sent");
}

/// A long Anthropic stream, and a long Responses stream, from the fixtures' shapes.
fn long_anthropic_stream(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "usage": {"input_tokens": 9, "output_tokens": 1}}});
    write_event(&mut out, "message_start", start.to_string().as_bytes());
    write_event(
        &mut out,
        "content_block_start",
        br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    for _ in 0..n {
        write_event(
            &mut out,
            "content_block_delta",
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" word"}}"#,
        );
    }
    write_event(&mut out, "content_block_stop", br#"{"type":"content_block_stop","index":0}"#);
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": n}});
    write_event(&mut out, "message_delta", delta.to_string().as_bytes());
    write_event(&mut out, "message_stop", br#"{"type":"message_stop"}"#);
    out
}

#[test]
fn an_anthropic_stream_ends_with_max_tokens_and_a_translated_one_in_the_clients_dialect() {
    let policy = with_budgets(json!({"max_output_tokens": 10}));
    let mut host = FakeHost::new(Profile::Envoy);
    // Anthropic's API requires max_tokens: a client asking for more than the ceiling is watched.
    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    exchange(&mut host, &policy, "/v1/messages", "acme", &request, Some((SSE_OK, vec![&long_anthropic_stream(40)])));
    let read = events(&host.client_stream());
    let kinds: Vec<&str> = read.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "content_block_delta").count(), 10);
    assert_eq!(&kinds[kinds.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(read[read.len() - 2]["delta"]["stop_reason"], "max_tokens");

    // An OpenAI client served by Anthropic: the cut is written in Chat.
    let translated = policy_translating_to_anthropic(json!({"max_output_tokens": 10}));
    let mut host = FakeHost::new(Profile::Envoy);
    let mut request = chat("smart");
    request["stream"] = json!(true);
    exchange(
        &mut host,
        &translated,
        "/v1/chat/completions",
        "acme",
        &request,
        Some((SSE_OK, vec![&long_anthropic_stream(40)])),
    );
    let read = events(&host.client_stream());
    let words: String = read.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(words.matches(" word").count(), 10);
    assert_eq!(read.last().unwrap()["choices"][0]["finish_reason"], "length");
}

fn policy_translating_to_anthropic(budgets: Value) -> Rc<Policy> {
    policy(
        &json!({
            "providers": {"anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant"}}},
            "targets": {"claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"}},
            "rules": [{"match": {"model": "smart"}, "targets": ["claude"]}],
            "default_max_tokens": 4096,
            "tenant": {"header": "x-tenant"},
            "budgets": budgets
        })
        .to_string(),
    )
}

#[test]
fn a_responses_stream_ends_incomplete_at_max_output_tokens() {
    let policy = with_budgets(json!({"max_output_tokens": 3}));
    let mut host = FakeHost::new(Profile::Envoy);
    let mut out = Vec::new();
    let created = json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-4.1", "output": []}});
    write_event(&mut out, "response.created", created.to_string().as_bytes());
    for i in 0..10 {
        let delta = json!({"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": " word"});
        write_event(&mut out, "response.output_text.delta", delta.to_string().as_bytes());
    }
    exchange(
        &mut host,
        &policy,
        "/v1/responses",
        "acme",
        &json!({"model": "gpt-4.1", "input": "hi", "stream": true}),
        Some((SSE_OK, vec![&out])),
    );
    let events = events(&host.client_stream());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(last["response"]["id"], "resp_1");
    assert_eq!(last["sequence_number"], 4);
}

#[test]
fn kong_keeps_the_same_books() {
    let policy = with_budgets(json!({"limits": [{"name": "rpm", "requests": 2, "window": "minute"}]}));
    let mut host = FakeHost::new(Profile::Kong);
    for _ in 0..2 {
        exchange(
            &mut host,
            &policy,
            "/v1/chat/completions",
            "acme",
            &chat("gpt-4o-mini"),
            Some((JSON_OK, vec![CHAT_RESPONSE])),
        );
        assert!(host.reply.is_none());
    }
    exchange(&mut host, &policy, "/v1/chat/completions", "acme", &chat("gpt-4o-mini"), None);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(429));
}

fn pico(usd: &str) -> u64 {
    tollgate::budgets::config::parse_pico_usd(&json!(usd)).unwrap()
}

/// Where `needle` starts in `bytes`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn a_cut_anthropic_stream_reset_before_its_usage_settles_to_every_word_read_not_message_starts_1() {
    // message_start says `output_tokens: 1`; the final count (message_delta) never comes.
    let budgets = json!({
        "max_output_tokens": 10,
        "limits": [{"name": "out", "output_tokens": 100_000, "window": "hour", "by": ["tenant"]}]
    });
    let stream = long_anthropic_stream(40);
    let before_usage = &stream[..find(&stream, b"event: message_delta")];
    let anthropic = json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut chat_request = chat("smart");
    chat_request["stream"] = json!(true);
    let cases = [
        (with_budgets(budgets.clone()), "/v1/messages", anthropic),
        (policy_translating_to_anthropic(budgets), "/v1/chat/completions", chat_request),
    ];
    for (policy, path, request) in cases {
        let mut host = FakeHost::new(Profile::Envoy);
        exchange_reset(&mut host, &policy, path, "acme", &request, &[&before_usage[..300], &before_usage[300..]]);
        let record = host.record();
        assert_eq!(record["outcome"], "truncated", "{path}");
        assert_eq!(
            (&record["budget"]["verdict"], &record["budget"]["cut_at_output_tokens"]),
            (&json!("cut"), &json!(10))
        );
        assert_eq!(
            record["tokens"]["input"],
            json!({"tokens": 9, "source": "provider"}),
            "message_start's input stands"
        );
        let output = &record["tokens"]["output"];
        assert_eq!(output["source"], "estimated", "{path}: {output}");
        // Every word the provider sent counts, the 30 read after the cut too: it generated them
        // and bills them. Forty one-token words, counted with Claude's approximate tokenizer
        // (README, Tokenizer: within 10% of Anthropic's count).
        let estimate = output["tokens"].as_u64().unwrap();
        assert!((40..=44).contains(&estimate), "{path}: {estimate}");
        assert_eq!(record["budget"]["settled"]["output_tokens"], estimate, "{path}");
        assert_eq!(counter(&host, "out:acme"), Some(estimate), "{path}: settled to the estimate");
    }
}

#[test]
fn tenants_in_any_script_get_a_counter_each_and_the_record_names_each_exactly() {
    // Byte-distinct tenants are distinct scopes (nothing is normalised): é composed and
    // decomposed, a ZWJ family and its members alone, CJK, RTL, and names holding the key's own
    // separators. The record's scope is the tenant percent-encoded: decoding it (RFC 3986, by the
    // percent-encoding crate) must give the tenant back byte for byte.
    let tenants = ["café", "cafe\u{301}", "👨‍👩‍👧", "👨👩👧", "東京チーム", "فريق", "a:b", "a%3Ab", "a/b c"];
    let policy =
        with_budgets(json!({"limits": [{"name": "one", "requests": 1, "window": "minute", "by": ["tenant"]}]}));
    let mut host = FakeHost::new(Profile::Envoy);
    for tenant in tenants {
        let ok = Some((JSON_OK, vec![CHAT_RESPONSE]));
        exchange(&mut host, &policy, "/v1/chat/completions", tenant, &chat("gpt-4o-mini"), ok);
        assert!(host.reply.is_none(), "{tenant}: its own counter admits its first request");
        let scope = host.record()["budget"]["scopes"][0].as_str().unwrap().to_string();
        assert_eq!(percent_encoding::percent_decode_str(&scope).decode_utf8().unwrap(), tenant, "{scope}");
    }
    for tenant in tenants {
        exchange(&mut host, &policy, "/v1/chat/completions", tenant, &chat("gpt-4o-mini"), None);
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(429), "{tenant}: its second is refused");
    }
}
