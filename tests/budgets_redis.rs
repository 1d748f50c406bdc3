//! Budgets on the Redis store through the state machine: the request waits in its body step for
//! the reservation's answer (a GET to webdis), goes on or is refused, and its settlement is
//! handed to the root context. Answers are webdis's, as docs/redis-store.md measured them; the
//! real Redis and webdis run in tests/e2e/test_budgets_redis.py.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{policy, FakeHost, Profile};
use tollgate::budgets::redis::{Answer, Progress, Script};
use tollgate::config::Policy;
use tollgate::exchange::Exchange;

const CHAT_RESPONSE: &[u8] = include_bytes!("fixtures/openai/chat_response.json");
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn redis_policy(mode: &str, limits: Value) -> Rc<Policy> {
    policy(
        &json!({
            "tenant": {"header": "x-tenant"},
            "failure_mode": mode,
            "budgets": {"store": {"redis": {"endpoint": "webdis", "timeout_ms": 150}}, "limits": limits}
        })
        .to_string(),
    )
}

fn limits() -> Value {
    json!([{"name": "daily", "usd": "1", "window": "day", "by": ["tenant"]}, {"name": "rpm", "requests": 10, "window": "minute"}])
}

fn send(host: &mut FakeHost, ex: &mut Exchange, body: &Value) {
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-tenant", "acme"),
    ];
    host.request(ex, &headers, &[body.to_string().as_bytes()]);
}

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]})
}

#[test]
fn a_request_waits_for_its_reservation_and_settles_through_the_root_context() {
    for profile in [Profile::Envoy, Profile::Kong] {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, redis_policy("closed", limits()));
        send(&mut host, &mut ex, &chat());
        assert!(host.waiting && !host.upstream_headers_released, "{profile:?}: nothing leaves before the answer");
        let (token, call) = host.calls[0].clone();
        assert_eq!((call.upstream.as_str(), call.authority.as_str(), call.timeout_ms), ("webdis", "webdis", 150));
        assert!(call.path.starts_with(&format!("/EVALSHA/{}/3/", Script::Reserve.sha())), "{}", call.path);
        host.answer_call(&mut ex, token, Some(200), br#"{"EVALSHA":[1,"30000000","1"]}"#);
        assert!(host.upstream_headers_released && !host.upstream_body.is_empty(), "{profile:?}: it went on");
        assert!(host.violations.is_empty(), "{:?}", host.violations);
        host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
        let record = host.record();
        assert_eq!(record["budget"]["verdict"], "admitted");
        let [settlement] = &host.settlements[..] else { panic!("one settlement: {:?}", host.settlements) };
        let call = settlement.script_call(0);
        assert_eq!(call.script, Script::Settle, "the reservation was confirmed: straight to the difference");
        let cost = tollgate::budgets::config::parse_pico_usd(&record["cost_usd"]).unwrap();
        let reserved = tollgate::budgets::config::parse_pico_usd(&record["budget"]["reserved"]["usd"]).unwrap();
        assert_eq!(call.args[1], (i128::from(cost) - i128::from(reserved)).to_string());
        assert_eq!(call.args[3], "0", "one request reserved, one used");
    }
}

#[test]
fn a_refusal_from_redis_is_the_clients_429() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("closed", limits()));
    send(&mut host, &mut ex, &chat());
    let (token, _) = host.calls[0].clone();
    host.answer_call(&mut ex, token, Some(200), br#"{"EVALSHA":[0,2,"10"]}"#);
    let reply = host.reply.clone().expect("refused");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
    assert!(reply.headers.iter().any(|(n, v)| n == "x-ratelimit-remaining-requests" && v == "0"));
    ex.on_done(&mut host);
    assert!(host.settlements.is_empty(), "nothing was kept: nothing to settle");
    assert!(!host.upstream_headers_released);
}

#[test]
fn a_redis_that_lost_its_scripts_gets_the_script_itself() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("closed", limits()));
    send(&mut host, &mut ex, &chat());
    let (token, _) = host.calls[0].clone();
    host.answer_call(
        &mut ex,
        token,
        Some(200),
        br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#,
    );
    assert!(host.waiting);
    let (second, call) = host.calls[1].clone();
    assert!(call.path.starts_with("/EVAL/--%20Tollgate"), "{}", &call.path[..40]);
    host.answer_call(&mut ex, second, Some(200), br#"{"EVAL":[1,"5","1"]}"#);
    assert!(host.upstream_headers_released);
}

#[test]
fn redis_away_follows_the_failure_mode_and_nothing_is_counted_twice() {
    // Open: the request goes on; its settlement first sends the same reservation, uncapped, under
    // the same operation key (Redis may have taken it after all), then the difference.
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("open", limits()));
    send(&mut host, &mut ex, &chat());
    let (token, reservation) = host.calls[0].clone();
    host.answer_call(&mut ex, token, Some(503), b"");
    assert!(host.upstream_headers_released, "open: it went on");
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    assert_eq!(host.record()["budget"]["verdict"], "store_failed");
    let mut settlement = host.settlements.pop().unwrap();
    let confirm = settlement.script_call(0);
    assert_eq!(confirm.script, Script::Reserve);
    let original: Vec<&str> = reservation.path.split('/').collect();
    assert_eq!(confirm.keys[0].replace(':', "%3A"), original[4], "the same operation key");
    assert!(confirm.args.iter().skip(2).step_by(3).all(|cap| cap == "-1"), "no caps: {:?}", confirm.args);
    assert_eq!(settlement.on_answer(Answer::Value(json!([1, "30000000", "1"]))), Progress::Next);
    assert_eq!(settlement.script_call(0).script, Script::Settle);

    // Closed: a 500 in the client's dialect; whatever Redis took goes back.
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("closed", limits()));
    send(&mut host, &mut ex, &chat());
    let (token, _) = host.calls[0].clone();
    host.answer_call(&mut ex, token, None, b"");
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500));
    ex.on_done(&mut host);
    let mut settlement = host.settlements.pop().unwrap();
    assert_eq!(settlement.on_answer(Answer::Value(json!([1, "30000000", "1"]))), Progress::Next);
    let back = settlement.script_call(0);
    assert!(back.args[1].starts_with('-') && back.args[3] == "-1", "all of it given back: {:?}", back.args);
}

#[test]
fn a_corrupt_counter_is_a_store_failure_not_zero() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("closed", limits()));
    send(&mut host, &mut ex, &chat());
    let (token, _) = host.calls[0].clone();
    host.answer_call(&mut ex, token, Some(200), br#"{"EVALSHA":[false,"TOLLGATE_CORRUPT tollgate:budget:rpm:1"]}"#);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500));
}

#[test]
fn a_stream_on_the_redis_store_has_what_it_reserved() {
    let policy = policy(
        &json!({"budgets": {"store": {"redis": {"endpoint": "webdis"}}, "default_max_output_tokens": 3,
                "limits": [{"name": "out", "output_tokens": 1000, "window": "hour"}]}})
        .to_string(),
    );
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy);
    let mut body = chat();
    body.as_object_mut().unwrap().remove("max_tokens");
    body["stream"] = json!(true);
    send(&mut host, &mut ex, &body);
    let (token, _) = host.calls[0].clone();
    host.answer_call(&mut ex, token, Some(200), br#"{"EVALSHA":[1,"3"]}"#);
    let stream = include_bytes!("fixtures/openai/chat_stream.sse");
    host.response(&mut ex, SSE_OK, &[stream]);
    let client = String::from_utf8(host.client_stream()).unwrap();
    assert!(client.contains(r#""finish_reason":"length""#), "{client}");
    assert_eq!(host.record()["budget"]["verdict"], "cut");
    assert_eq!(host.record()["budget"]["decided_by"], "out");
    assert!(host.violations.is_empty(), "no call from the response phase: {:?}", host.violations);
}

#[test]
fn a_client_gone_while_waiting_leaves_a_settlement_that_confirms_first() {
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("closed", limits()));
    send(&mut host, &mut ex, &chat());
    ex.on_done(&mut host);
    let settlement = host.settlements.pop().expect("the reservation may have landed: it is settled");
    assert_eq!(settlement.script_call(0).script, Script::Reserve);
}

#[test]
fn a_closed_refusal_for_want_of_redis_records_that_nothing_was_settled() {
    // Its settlement gives back all that Redis may have taken, the request too: the record says
    // the same, so that the records add up to Redis's counters (tests/e2e/test_budgets_redis.py).
    for answer in [None, Some(503)] {
        let mut host = FakeHost::new(Profile::Envoy);
        let mut ex = Exchange::new(1, redis_policy("closed", limits()));
        send(&mut host, &mut ex, &chat());
        let (token, _) = host.calls[0].clone();
        host.answer_call(&mut ex, token, answer, b"");
        assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500));
        ex.on_done(&mut host);
        let budget = &host.record()["budget"];
        assert_eq!(budget["verdict"], "store_failed");
        assert_eq!(
            budget["settled"],
            json!({"input_tokens": 0, "output_tokens": 0, "requests": 0, "usd": "0.0"}),
            "{answer:?}"
        );
        let mut settlement = host.settlements.pop().unwrap();
        assert_eq!(settlement.on_answer(Answer::Value(json!([1, "30000000", "1"]))), Progress::Next);
        let back = settlement.script_call(0);
        assert!(back.args[1].starts_with('-') && back.args[3] == "-1", "all of it given back: {:?}", back.args);
    }
}

#[test]
fn an_answer_meant_for_another_call_is_a_store_failure_not_an_admission() {
    // webdis can hand this connection the answer of a request abandoned on an earlier one
    // (found by tests/e2e/test_budgets_redis.py: a settlement took a reservation's answer for its
    // own and was never applied). Only the JSONP name tells them apart.
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, redis_policy("closed", limits()));
    send(&mut host, &mut ex, &chat());
    let (token, call) = host.calls[0].clone();
    assert!(call.path.ends_with(&format!("?jsonp={}", call.callback)), "{}", call.path);
    let stale = br#"t0_1({"EVALSHA":[1,"30000000","1"]});
"#;
    host.answer_call_raw(&mut ex, token, Some(200), stale);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500), "closed: a store failure");
    assert!(!host.upstream_headers_released, "never admitted on another call's answer");
    ex.on_done(&mut host);
    let settlement = host.settlements.pop().unwrap();
    assert_eq!(settlement.script_call(0).script, Script::Reserve, "unanswered: confirmed first");
}

fn leased_policy() -> Rc<Policy> {
    policy(
        &json!({
            "tenant": {"header": "x-tenant"},
            "failure_mode": "closed",
            "budgets": {"store": {"redis": {"endpoint": "webdis", "lease": {"fraction": 0.2}}},
                        "limits": [{"name": "rpm", "requests": 100, "window": "minute"},
                                   {"name": "daily", "usd": "1", "window": "day", "by": ["tenant"]}]}
        })
        .to_string(),
    )
}

/// A reservation call's arguments: the operation TTL, then (amount, cap, TTL) per counter, then
/// with leases (slice, slice cap) per counter.
fn script_args(call: &tollgate::budgets::redis::Call) -> Vec<String> {
    // The path less its query (`?jsonp=`, the name its answer comes in).
    let path = call.path.split_once('?').map_or(call.path.as_str(), |(path, _)| path);
    let parts: Vec<&str> = path.split('/').collect();
    let keys: usize = parts[3].parse().unwrap();
    parts[4 + keys..].iter().map(|s| s.to_string()).collect()
}

/// Answers a leased reservation as reserve.lua does when everything fits: each counter's value
/// after (`before` + amount + slice) and the slices granted.
fn grant_all(host: &mut FakeHost, ex: &mut Exchange, before: [u64; 2]) -> [u64; 2] {
    let (token, call) = host.calls.last().cloned().unwrap();
    let args = script_args(&call);
    assert_eq!(args.len(), 11, "1 + 5 per counter: {args:?}");
    let amount = |i: usize| args[1 + 3 * i].parse::<u64>().unwrap();
    let slice = |i: usize| args[7 + 2 * i].parse::<u64>().unwrap();
    let used = [before[0] + amount(0) + slice(0), before[1] + amount(1) + slice(1)];
    let body =
        json!({"EVALSHA": [1, used[0].to_string(), used[1].to_string(), slice(0).to_string(), slice(1).to_string()]});
    host.answer_call(ex, token, Some(200), body.to_string().as_bytes());
    [slice(0), slice(1)]
}

#[test]
fn with_leases_requests_that_fit_the_slices_make_no_call() {
    let policy = leased_policy();
    let mut workers = [FakeHost::new(Profile::Envoy), FakeHost::new(Profile::Envoy)];
    let shared = Rc::clone(&workers[0].shared);
    workers[1].shared = Rc::clone(&shared);

    // The first request finds no slice: its call takes its reservation and a fifth of each limit.
    let mut ex = Exchange::new(1, Rc::clone(&policy));
    send(&mut workers[0], &mut ex, &chat());
    assert!(workers[0].waiting);
    let args = script_args(&workers[0].calls[0].1);
    assert_eq!((args[7].as_str(), args[8].as_str()), ("20", "100"), "a slice of 20 requests, under the limit");
    assert_eq!((args[9].as_str(), args[10].as_str()), ("200000000000", "1000000000000"), "$0.20 under $1");
    let granted = grant_all(&mut workers[0], &mut ex, [0, 0]);
    assert_eq!(granted, [20, 200_000_000_000]);
    assert!(workers[0].upstream_headers_released);
    workers[0].response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    assert_eq!(workers[0].settlements.len(), 1, "its own settlement goes to Redis, as without leases");

    // The next 20 requests, on either worker, are served by the slices: no call at all.
    let mut spend_reserved = 0u64;
    for i in 0..20u32 {
        let mut host = FakeHost::new(Profile::Envoy);
        host.shared = Rc::clone(&shared);
        let mut ex = Exchange::new(10 + i, Rc::clone(&policy));
        send(&mut host, &mut ex, &chat());
        assert!(host.calls.is_empty() && host.upstream_headers_released, "request {i}: served from the slices");
        host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
        let record = host.record();
        assert_eq!(record["budget"]["verdict"], "admitted");
        assert_eq!(record["budget"]["from_slices"], true);
        spend_reserved += tollgate::budgets::config::parse_pico_usd(&record["budget"]["reserved"]["usd"]).unwrap();
        assert!(host.settlements.is_empty(), "request {i}: settled in the slice, nothing for Redis");
        assert!(host
            .client_headers
            .as_ref()
            .unwrap()
            .iter()
            .any(|(n, _)| n == "x-ratelimit-remaining-requests" || n == "x-ratelimit-remaining-usd"));
    }
    assert!(spend_reserved > 0);

    // The slice of requests is spent: the 22nd request calls, asking for a whole slice again
    // for requests and for what the dollar slice lacks (what the 20 requests spent).
    let mut host = FakeHost::new(Profile::Envoy);
    host.shared = Rc::clone(&shared);
    let mut ex = Exchange::new(99, Rc::clone(&policy));
    send(&mut host, &mut ex, &chat());
    assert_eq!(host.calls.len(), 1, "the slice is spent: Redis decides");
    let args = script_args(&host.calls[0].1);
    assert_eq!(args[7], "20");
    let lacks: u64 = args[9].parse().unwrap();
    assert!(lacks > 0 && lacks < spend_reserved, "the dollar slice lacks what was used: {lacks} < {spend_reserved}");
}

#[test]
fn with_leases_a_refused_slice_still_admits_the_request_and_the_next_one_calls() {
    let policy = leased_policy();
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, Rc::clone(&policy));
    send(&mut host, &mut ex, &chat());
    let (token, _) = host.calls[0].clone();
    // Redis took the request's amounts but no slice (they would not fit under the limits).
    host.answer_call(&mut ex, token, Some(200), br#"{"EVALSHA":[1,"99","5000","0","0"]}"#);
    assert!(host.upstream_headers_released);
    host.response(&mut ex, JSON_OK, &[CHAT_RESPONSE]);
    let mut next = FakeHost::new(Profile::Envoy);
    next.shared = Rc::clone(&host.shared);
    let mut ex = Exchange::new(2, policy);
    send(&mut next, &mut ex, &chat());
    assert_eq!(next.calls.len(), 1, "no slice: every request calls");
}

#[test]
fn a_slice_that_was_granted_but_never_heard_of_goes_back_with_the_settlement() {
    // The reservation's answer never came (timeout); Redis had run it, slices and all. The
    // settlement confirms it first: the answer names the slices, and they go back with it.
    let policy = leased_policy();
    let mut host = FakeHost::new(Profile::Envoy);
    let mut ex = Exchange::new(1, policy);
    send(&mut host, &mut ex, &chat());
    let (token, call) = host.calls[0].clone();
    let reserved_usd: i128 = script_args(&call)[4].parse().unwrap();
    host.answer_call(&mut ex, token, None, b"");
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(500), "closed");
    ex.on_done(&mut host);
    let mut settlement = host.settlements.pop().unwrap();
    let confirm = settlement.script_call(0);
    assert_eq!(confirm.args.len(), 7, "a confirmation asks for no slice: {:?}", confirm.args);
    let first = json!([1, "21", "200000005000", "20", "200000000000"]);
    assert_eq!(settlement.on_answer(Answer::Value(first)), Progress::Next);
    let back = settlement.script_call(0);
    assert_eq!(back.script, Script::Settle);
    assert_eq!(back.args[1], "-21", "the request (refused for want of Redis) and the 20-request slice");
    assert_eq!(back.args[3], (-(reserved_usd + 200_000_000_000)).to_string());
}
