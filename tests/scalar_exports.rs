//! The scalar copies of the usage record (provider, models, tokens, cost, tenant) exported next to
//! it for tracers and log plugins that cannot parse JSON: present exactly when the record has the
//! field, and equal to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use serde_json::Value;
use support::{policy, FakeHost, HOSTS};
use tollgate::exchange::Exchange;
use tollgate::names::EXPORT_SCALARS;

const CHAT_RESPONSE: &[u8] = include_bytes!("fixtures/openai/chat_response.json");
const CHAT_STREAM: &[u8] = include_bytes!("fixtures/openai/chat_stream.sse");

fn post() -> Vec<(&'static str, &'static str)> {
    vec![(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")]
}

/// Every scalar key is exported exactly when its record field is a string or a number, with its value.
fn assert_scalars_match_the_record(host: &FakeHost) {
    let record = host.record();
    for (key, pointer) in EXPORT_SCALARS {
        let expected = match record.pointer(pointer) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        assert_eq!(host.exports.get(key).cloned(), expected, "{key}");
    }
}

#[test]
fn a_complete_answer_exports_models_tokens_and_cost() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        host.request(&mut ex, &post(), &[br#"{"model":"gpt-4o-mini","messages":[]}"#]);
        host.response(&mut ex, &[(":status", "200"), ("content-type", "application/json")], &[CHAT_RESPONSE]);
        assert_scalars_match_the_record(&host);
        let record = host.record();
        assert_eq!(host.exports["tollgate.model_requested"], "gpt-4o-mini");
        assert_eq!(host.exports["tollgate.model_served"], record["model_served"].as_str().unwrap());
        assert_eq!(host.exports["tollgate.input_tokens"], record["tokens"]["input"]["tokens"].to_string());
        assert_eq!(host.exports["tollgate.output_tokens"], record["tokens"]["output"]["tokens"].to_string());
        assert_eq!(host.exports["tollgate.cost_usd"], record["cost_usd"].as_str().unwrap());
        assert!(!host.exports.contains_key("tollgate.provider"), "no provider was chosen by a rule");
    }
}

#[test]
fn a_stream_exports_at_its_end_and_an_unpriced_model_exports_no_cost() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy("{}"));
        let request = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        host.request(&mut ex, &post(), &[request]);
        host.response(&mut ex, &[(":status", "200"), ("content-type", "text/event-stream")], &[CHAT_STREAM]);
        assert_scalars_match_the_record(&host);
        assert_eq!(host.exports["tollgate.cost_usd"], "0.00000975");

        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(2, policy("{}"));
        host.request(&mut ex, &post(), &[br#"{"model":"my-own-llama","messages":[]}"#]);
        let body = String::from_utf8(CHAT_RESPONSE.to_vec()).unwrap().replace("gpt-4o-mini-2024-07-18", "my-own-llama");
        host.response(&mut ex, &[(":status", "200"), ("content-type", "application/json")], &[body.as_bytes()]);
        assert_scalars_match_the_record(&host);
        assert!(host.exports.contains_key("tollgate.input_tokens"));
        assert!(!host.exports.contains_key("tollgate.cost_usd"), "unpriced: no cost");
    }
}

#[test]
fn a_refused_request_exports_no_tokens() {
    for profile in HOSTS {
        let mut host = FakeHost::new(profile);
        let mut ex = Exchange::new(1, policy(r#"{"models": {"deny": ["gpt-4o*"]}}"#));
        host.request(&mut ex, &post(), &[br#"{"model":"gpt-4o-mini","messages":[]}"#]);
        assert_scalars_match_the_record(&host);
        assert_eq!(host.exports["tollgate.model_requested"], "gpt-4o-mini");
        assert!(!host.exports.contains_key("tollgate.input_tokens"));
        assert!(!host.exports.contains_key("tollgate.cost_usd"));
    }
}
