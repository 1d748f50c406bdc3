//! One usage record per request, streamed or not, for every dialect: what it counts, where each
//! number came from, and that stream chunking never changes it. On both hosts (`HOSTS`): Kong
//! gets the same record, and no cost headers (README, Kong).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use serde_json::{json, Value};
use support::{each_host, policy, FakeHost, Profile, HOSTS};
use tollgate::exchange::Exchange;

const CHAT_STREAM: &[u8] = include_bytes!("fixtures/openai/chat_stream.sse");
const CHAT_STREAM_WITHOUT_USAGE: &[u8] = include_bytes!("fixtures/openai/chat_stream_without_usage.sse");
const RESPONSES_RESPONSE: &[u8] = include_bytes!("fixtures/openai/responses_response.json");
const RESPONSES_STREAM: &[u8] = include_bytes!("fixtures/openai/responses_stream.sse");
const ANTHROPIC_REQUEST: &[u8] = include_bytes!("fixtures/anthropic/messages_request.json");
const ANTHROPIC_RESPONSE: &[u8] = include_bytes!("fixtures/anthropic/messages_response.json");
const ANTHROPIC_STREAM: &[u8] = include_bytes!("fixtures/anthropic/messages_stream.sse");

const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn post(path: &str) -> Vec<(&str, &str)> {
    vec![(":method", "POST"), (":path", path), ("content-type", "application/json")]
}

#[derive(Clone)]
struct Case {
    path: &'static str,
    request: Vec<u8>,
    stream: &'static [u8],
}

fn stream_cases() -> Vec<Case> {
    vec![
        Case {
            path: "/v1/chat/completions",
            request: br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#
                .to_vec(),
            stream: CHAT_STREAM,
        },
        Case {
            path: "/v1/responses",
            request: br#"{"model":"gpt-4.1","stream":true,"input":"hi"}"#.to_vec(),
            stream: RESPONSES_STREAM,
        },
        Case {
            path: "/v1/messages",
            request: String::from_utf8(ANTHROPIC_REQUEST.to_vec())
                .unwrap()
                .replacen('{', "{\"stream\": true,", 1)
                .into_bytes(),
            stream: ANTHROPIC_STREAM,
        },
    ]
}

fn run_stream(profile: Profile, case: &Case, chunks: &[&[u8]]) -> FakeHost {
    let mut host = FakeHost::new(profile);
    let mut ex = Exchange::new(1, policy("{}"));
    host.request(&mut ex, &post(case.path), &[&case.request]);
    host.response(&mut ex, SSE_OK, chunks);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    host
}

fn tokens(record: &Value, field: &str) -> Value {
    record["tokens"][field].clone()
}

#[test]
fn openai_chat_stream_record_comes_from_the_usage_chunk() {
    for profile in HOSTS {
        let host = run_stream(profile, &stream_cases()[0], &[CHAT_STREAM]);
        let record = host.record();
        assert_eq!(record["api"], "openai.chat");
        assert_eq!(record["streaming"], true);
        assert_eq!(record["outcome"], "complete");
        assert_eq!(record["model_requested"], "gpt-4o-mini");
        assert_eq!(record["model_served"], "gpt-4o-mini-2024-07-18");
        assert_eq!(tokens(&record, "input"), json!({"tokens": 41, "source": "provider"}));
        assert_eq!(tokens(&record, "output"), json!({"tokens": 6, "source": "provider"}));
        assert_eq!(tokens(&record, "cache_read"), json!({"tokens": 0, "source": "provider"}));
        // 41 × $0.15/M + 6 × $0.60/M
        assert_eq!(record["cost_usd"], "0.00000975");
        assert_eq!(host.client_stream(), CHAT_STREAM, "the client asked for usage: nothing is removed");
    }
}

#[test]
fn responses_stream_record_comes_from_response_completed() {
    for profile in HOSTS {
        let record = run_stream(profile, &stream_cases()[1], &[RESPONSES_STREAM]).record();
        assert_eq!(record["api"], "openai.responses");
        assert_eq!(record["model_served"], "gpt-4.1-2025-04-14");
        assert_eq!(tokens(&record, "input"), json!({"tokens": 37, "source": "provider"}));
        assert_eq!(tokens(&record, "output"), json!({"tokens": 6, "source": "provider"}));
        assert_eq!(tokens(&record, "reasoning"), json!({"tokens": 0, "source": "provider"}));
        assert_eq!(record["outcome"], "complete");
    }
}

#[test]
fn anthropic_stream_merges_message_start_and_message_delta() {
    for profile in HOSTS {
        let record = run_stream(profile, &stream_cases()[2], &[ANTHROPIC_STREAM]).record();
        assert_eq!(record["api"], "anthropic.messages");
        assert_eq!(record["model_served"], "claude-sonnet-4-5-20250929");
        // 21 uncached + 3400 read from cache; output from the final message_delta, not message_start's 1.
        assert_eq!(tokens(&record, "input"), json!({"tokens": 3421, "source": "provider"}));
        assert_eq!(tokens(&record, "cache_read"), json!({"tokens": 3400, "source": "provider"}));
        assert_eq!(tokens(&record, "output"), json!({"tokens": 12, "source": "provider"}));
        // 21 × $3 + 3400 × $0.30 + 12 × $15 per M
        assert_eq!(record["cost_usd"], "0.001263");
    }
}

#[test]
fn every_stream_split_at_every_offset_gives_the_same_record_and_bytes() {
    for (profile, case) in each_host(stream_cases()) {
        let whole = run_stream(profile, &case, &[case.stream]);
        for at in 0..=case.stream.len() {
            let (head, tail) = case.stream.split_at(at);
            let split = run_stream(profile, &case, &[head, tail]);
            assert_eq!(split.record(), whole.record(), "{profile:?} {} split at {at}", case.path);
            assert_eq!(split.client_body(), whole.client_body(), "{profile:?} {} split at {at}", case.path);
        }
    }
}

#[test]
fn random_chunkings_give_the_same_record() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    for (profile, case) in each_host(stream_cases()) {
        let whole = run_stream(profile, &case, &[case.stream]).record();
        for _ in 0..2 {
            let mut cuts: Vec<usize> = (0..12).map(|_| next(case.stream.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([case.stream.len()]) {
                chunks.push(&case.stream[from..cut]);
                from = cut;
            }
            assert_eq!(run_stream(profile, &case, &chunks).record(), whole, "{profile:?} {}", case.path);
        }
    }
}

#[test]
fn include_usage_is_added_for_openai_streams_and_the_extra_chunk_hidden() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        let request = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let mut headers = post("/v1/chat/completions");
        let length = request.len().to_string();
        headers.push(("content-length", &length));
        host.request(&mut ex, &headers, &[&request[..20], &request[20..]]);

        let upstream: Value = serde_json::from_slice(&host.upstream_body).unwrap();
        assert_eq!(upstream["stream_options"]["include_usage"], true);
        assert_eq!(upstream["messages"][0]["content"], "hi");
        assert_eq!(host.upstream_header("content-length"), Some(host.upstream_body.len().to_string().as_str()));

        let chunks: Vec<&[u8]> = CHAT_STREAM.chunks(97).collect();
        host.response(
            &mut ex,
            &[(":status", "200"), ("content-type", "text/event-stream"), ("content-length", "9999")],
            &chunks,
        );
        assert!(host.violations.is_empty(), "{:?}", host.violations);
        let body = String::from_utf8(host.client_stream()).unwrap();
        assert!(!body.contains("\"choices\":[],\"usage\""), "the usage chunk the client did not ask for is gone");
        assert!(body.ends_with("data: [DONE]\n\n"));
        assert_eq!(host.client_header("content-length"), None, "a length no longer true is removed");
        assert_eq!(tokens(&host.record(), "output"), json!({"tokens": 6, "source": "provider"}));
    }
}

/// A client that sent `stream_options` without `include_usage: true` (or as `null`) gets it set
/// inside that object; every other byte goes upstream as sent (numbers, escapes, key order), and
/// the usage chunk it did not ask for is removed from its stream.
#[test]
fn include_usage_inside_existing_stream_options_keeps_every_other_byte() {
    let cases = [
        (
            r#"{"model":"gpt-4o-mini","temperature":0.70,"seed":1e2,"stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"caf\u00e9"}]}"#,
            r#"{"model":"gpt-4o-mini","temperature":0.70,"seed":1e2,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"caf\u00e9"}]}"#,
        ),
        (
            r#"{"model":"gpt-4o-mini","stream":true, "stream_options" : null ,"messages":[]}"#,
            r#"{"model":"gpt-4o-mini","stream":true, "stream_options" : {"include_usage":true} ,"messages":[]}"#,
        ),
        (
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{ },"messages":[]}"#,
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true },"messages":[]}"#,
        ),
    ];
    for (profile, (sent, expected)) in each_host(cases) {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/chat/completions"), &[sent.as_bytes()]);
        assert_eq!(String::from_utf8(host.upstream_body.clone()).unwrap(), expected, "{profile:?}");
        host.response(&mut ex, SSE_OK, &[CHAT_STREAM]);
        let body = String::from_utf8(host.client_stream()).unwrap();
        assert!(
            !body.contains("\"choices\":[],\"usage\""),
            "the usage chunk the client did not ask for is gone: {sent}"
        );
        assert_eq!(tokens(&host.record(), "output"), json!({"tokens": 6, "source": "provider"}), "{sent}");
    }
}

/// A compatible server whose chunks hold a member of another type than OpenAI's (content as an
/// array of parts; a usage chunk whose `model` is no string): the usage is still the provider's,
/// and the usage chunk Tollgate asked for is still removed from the client's stream.
#[test]
fn chunks_with_a_member_of_another_type_keep_their_usage_and_the_usage_chunk_is_still_removed() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        let request = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        host.request(&mut ex, &post("/v1/chat/completions"), &[request]);
        let content = "data: {\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]},\"finish_reason\":\"stop\"}]}\n\n";
        let usage = "data: {\"model\":0,\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n";
        let stream = format!("{content}{usage}data: [DONE]\n\n");
        host.response(&mut ex, SSE_OK, &[stream.as_bytes()]);
        assert_eq!(String::from_utf8(host.client_stream()).unwrap(), format!("{content}data: [DONE]\n\n"));
        let record = host.record();
        assert_eq!(tokens(&record, "input"), json!({"tokens": 9, "source": "provider"}));
        assert_eq!(tokens(&record, "output"), json!({"tokens": 1, "source": "provider"}));
    }
}

#[test]
fn without_provider_usage_output_is_estimated_from_the_streamed_text() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"include_usage": false}"#));
        host.request(
            &mut ex,
            &post("/v1/chat/completions"),
            &[br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#],
        );
        assert!(!String::from_utf8_lossy(&host.upstream_body).contains("stream_options"), "option off: body untouched");
        host.response(&mut ex, SSE_OK, &[CHAT_STREAM_WITHOUT_USAGE]);
        let record = host.record();
        assert_eq!(host.client_stream(), CHAT_STREAM_WITHOUT_USAGE);
        assert_eq!(record["tokens"]["output"]["source"], "estimated");
        assert!(record["tokens"]["output"]["tokens"].as_u64().unwrap() > 0);
        assert!(record["tokens"].get("input").is_none(), "no input count and no pretence of one");
        assert_eq!(record["outcome"], "complete");
    }
}

#[test]
fn a_stream_cut_mid_event_still_closes_its_record_marked_estimated() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        let request = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        host.request(&mut ex, &post("/v1/chat/completions"), &[request]);
        host.advance_ms(120);
        let cut = &CHAT_STREAM[..CHAT_STREAM.len() / 2];
        host.response_cut(&mut ex, SSE_OK, &[&cut[..100], &cut[100..]]);
        let record = host.record();
        assert_eq!(record["outcome"], "truncated");
        assert_eq!(record["tokens"]["output"]["source"], "estimated");
        assert_eq!(record["tokens"]["input"]["source"], "estimated");
        assert_eq!(record["time_to_first_token_ms"], 120);
        assert_eq!(host.client_body(), cut, "what arrived was relayed");
    }
}

#[test]
fn an_anthropic_stream_that_ends_before_its_message_delta_has_its_output_estimated_not_message_starts_1() {
    // message_start carries `output_tokens: 1`, a placeholder; the count is message_delta's.
    let at = ANTHROPIC_STREAM.windows(20).position(|w| w == b"event: message_delta").unwrap();
    let before_usage = &ANTHROPIC_STREAM[..at];
    let translating = r#"{
        "providers": {"anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant"}}},
        "targets": {"claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"}},
        "rules": [{"match": {"model": "smart"}, "targets": ["claude"]}],
        "default_max_tokens": 4096
    }"#;
    let cases = [
        (policy("{}"), "/v1/messages", stream_cases()[2].request.clone()),
        (
            policy(translating),
            "/v1/chat/completions",
            br#"{"model":"smart","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
    ];
    for profile in HOSTS {
        for (policy, path, request) in &cases {
            let mut host = FakeHost::new(profile);
            let mut ex = Exchange::new(1, policy.clone());
            host.request(&mut ex, &post(path), &[request]);
            host.response_cut(&mut ex, SSE_OK, &[&before_usage[..200], &before_usage[200..]]);
            assert!(host.violations.is_empty(), "{:?}", host.violations);
            let record = host.record();
            assert_eq!(record["outcome"], "truncated", "{path}");
            assert_eq!(tokens(&record, "input"), json!({"tokens": 3421, "source": "provider"}), "{path}");
            let output = tokens(&record, "output");
            assert_eq!(output["source"], "estimated", "{path}: {output}");
            // "An API gateway routes, secures and meters calls.": nine words and two marks.
            let estimate = output["tokens"].as_u64().unwrap();
            assert!((9..=14).contains(&estimate), "{path}: {estimate}");
        }
    }
}

#[test]
fn non_streaming_records_for_every_dialect() {
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], Value, Value);
    let cases: [Case; 2] = [
        ("/v1/responses", br#"{"model":"gpt-4.1","input":"hi"}"#, RESPONSES_RESPONSE, json!(36), json!(14)),
        ("/v1/messages", ANTHROPIC_REQUEST, ANTHROPIC_RESPONSE, json!(21 + 1200 + 3400), json!(27)),
    ];
    for (profile, (path, request, response, input, output)) in each_host(cases) {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post(path), &[request]);
        host.response(&mut ex, JSON_OK, &[response]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        let record = host.record();
        assert_eq!(record["tokens"]["input"]["tokens"], input, "{profile:?} {path}");
        assert_eq!(record["tokens"]["output"]["tokens"], output, "{profile:?} {path}");
        assert_eq!(record["streaming"], false);
        host.assert_cost_header("x-tollgate-input-tokens", Some(input.to_string().as_str()));
        host.assert_cost_header("x-tollgate-cost-usd", record["cost_usd"].as_str());
    }
}

/// Exact decimal USD (`0.00016`) as pico-USD.
fn pico_usd(usd: &str) -> u64 {
    let (whole, fraction) = usd.split_once('.').unwrap_or((usd, ""));
    let fraction = format!("{fraction:0<12}");
    whole.parse::<u64>().unwrap() * 1_000_000_000_000 + fraction.parse::<u64>().unwrap()
}

#[test]
fn embeddings_answers_carry_their_cost_and_input_tokens_though_nothing_was_generated() {
    // The expected cost is LiteLLM's, for the usage of its own embeddings case.
    let litellm: Value = serde_json::from_str(include_str!("fixtures/pricing/litellm_costs.json")).unwrap();
    let cases = litellm["cases"].as_array().unwrap();
    let case = cases.iter().find(|c| c["model"] == "text-embedding-3-small").unwrap();
    let prompt_tokens = case["usage"]["prompt_tokens"].as_u64().unwrap();
    let answer = json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    });
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/embeddings"), &[br#"{"model":"text-embedding-3-small","input":"hi"}"#]);
        host.response(&mut ex, JSON_OK, &[answer.to_string().as_bytes()]);
        assert!(host.violations.is_empty(), "{profile:?}: {:?}", host.violations);
        let record = host.record();
        assert_eq!(record["api"], "openai.embeddings");
        assert_eq!(tokens(&record, "input"), json!({"tokens": prompt_tokens, "source": "provider"}));
        assert_eq!(tokens(&record, "output"), Value::Null);
        let cost = record["cost_usd"].as_str().unwrap();
        assert_eq!(pico_usd(cost), case["litellm"]["total_pico_usd"].as_u64().unwrap(), "{profile:?} {cost}");
        host.assert_cost_header("x-tollgate-cost-usd", Some(cost));
        host.assert_cost_header("x-tollgate-input-tokens", Some(prompt_tokens.to_string().as_str()));
        host.assert_cost_header("x-tollgate-output-tokens", None);
        host.assert_cost_header("x-tollgate-model", Some("text-embedding-3-small"));
    }
}

#[test]
fn anthropic_cache_writes_are_recorded_by_lifetime_and_priced() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/messages"), &[ANTHROPIC_REQUEST]);
        host.response(&mut ex, JSON_OK, &[ANTHROPIC_RESPONSE]);
        let record = host.record();
        assert_eq!(tokens(&record, "cache_write_5m"), json!({"tokens": 1200, "source": "provider"}));
        assert_eq!(tokens(&record, "cache_write_1h"), json!({"tokens": 0, "source": "provider"}));
        // 21 × $3 + 3400 × $0.30 + 1200 × $3.75 + 27 × $15 per M
        assert_eq!(record["cost_usd"], "0.005988");
    }
}

/// README: a usage number that is not a count is "treated as not reported (never as zero)". An
/// Anthropic prompt total is the sum of its parts, so a cache part that is no count leaves the
/// total unreported; the output is still reported and priced.
#[test]
fn an_anthropic_cache_count_that_is_no_count_is_never_added_as_zero() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/messages"), &[ANTHROPIC_REQUEST]);
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],
        "usage":{"input_tokens":10,"cache_read_input_tokens":"5000","output_tokens":7}}"#;
        host.response(&mut ex, JSON_OK, &[body]);
        let record = host.record();
        assert_eq!(tokens(&record, "input"), Value::Null, "{record}");
        assert_eq!(tokens(&record, "output"), json!({"tokens": 7, "source": "provider"}));
        assert_eq!(host.client_header("x-tollgate-input-tokens"), None);
        // 7 × $15 per M
        assert_eq!(record["cost_usd"], "0.000105", "{profile:?}");
        host.assert_cost_header("x-tollgate-cost-usd", Some("0.000105"));
    }
}

#[test]
fn kong_gets_the_record_without_response_headers() {
    let mut host = FakeHost::new(Profile::Kong);
    let mut ex = Exchange::new(1, policy("{}"));
    host.request(&mut ex, &post("/v1/messages"), &[ANTHROPIC_REQUEST]);
    let chunks: Vec<&[u8]> = ANTHROPIC_RESPONSE.chunks(200).collect();
    host.response(&mut ex, JSON_OK, &chunks);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    assert_eq!(host.client_body(), ANTHROPIC_RESPONSE);
    assert_eq!(host.client_header("x-tollgate-cost-usd"), None);
    assert_eq!(host.record()["cost_usd"], "0.005988");
}

#[test]
fn upstream_errors_and_local_replies_are_recorded_too() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/chat/completions"), &[br#"{"model":"gpt-4o","messages":[]}"#]);
        host.response(&mut ex, &[(":status", "429"), ("content-type", "application/json")], &[b"{}"]);
        let record = host.record();
        assert_eq!(record["outcome"], "upstream_error");
        assert_eq!(record["status"], 429);
        assert_eq!(record["cost_usd"], Value::Null);

        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/messages"), &[b"{oops"]);
        let record = host.record();
        assert_eq!(record["outcome"], "rejected");
        assert_eq!(record["status"], 400);
        assert_eq!(record["api"], "anthropic.messages");
        assert_eq!(host.reply.as_ref().unwrap().json()["type"], "error", "Anthropic-shaped error");
    }
}

#[test]
fn garbage_and_absurd_usage_never_become_a_bill() {
    let bodies: [&[u8]; 4] = [
        br#"{"model":"gpt-4o","usage":{"prompt_tokens":-5,"completion_tokens":3}}"#,
        br#"{"model":"gpt-4o","usage":{"prompt_tokens":"many","completion_tokens":1.5}}"#,
        br#"{"model":"gpt-4o","usage":"none"}"#,
        br#"{"model":"gpt-4o","usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}}"#,
    ];
    for (profile, body) in each_host(bodies) {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post("/v1/chat/completions"), &[br#"{"model":"gpt-4o","messages":[]}"#]);
        host.response(&mut ex, JSON_OK, &[body]);
        assert!(host.violations.is_empty());
        let record = host.record();
        assert!(record["tokens"]["input"].get("tokens").is_none_or(|t| t.as_u64().is_some()));
    }
}

#[test]
fn garbage_events_and_oversized_events_are_skipped_not_fatal() {
    for profile in HOSTS {
        let stream = b"data: {not json\n\ndata: [1,2,3]\n\nevent: x\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"max_stream_event_bytes": 200}"#));
        let request = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        host.request(&mut ex, &post("/v1/chat/completions"), &[request]);
        let huge = format!("data: {{\"pad\": \"{}\"}}\n\n", "x".repeat(500));
        host.response(&mut ex, SSE_OK, &[huge.as_bytes(), stream]);
        let record = host.record();
        assert_eq!(record["tokens"]["output"], json!({"tokens": 1, "source": "provider"}));
        assert_eq!(record["outcome"], "complete");
        assert_eq!(host.client_stream(), [huge.as_bytes(), stream].concat(), "passed through untouched");
    }
}
