//! How the cost of a request reaches its client: response headers on a complete answer, and at
//! the end of a stream an SSE comment line (which every SSE parser, the official SDKs included,
//! skips) plus, where the proxy can send them, response trailers.

use serde_json::{json, Map, Value};

use crate::names;
use crate::pricing::usd_string;
use crate::usage::UsageRecord;

/// `(header suffix, value)` pairs, the configured prefix goes in front of each suffix.
pub fn cost_fields(record: &UsageRecord, price_table: &str) -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(10);
    let model = record.model_served.as_deref().or(record.model_requested.as_deref()).unwrap_or("unknown");
    fields.push((names::HEADER_MODEL, model.to_string()));
    if let Some(provider) = &record.provider {
        fields.push((names::HEADER_PROVIDER, provider.clone()));
    }
    let tokens = record.tokens;
    // The same rule as pricing: one side is enough. An Embeddings answer reports input only
    // (it generates nothing), and its cost is known all the same.
    if tokens.input.is_none() && tokens.output.is_none() {
        fields.push((names::HEADER_COST_USD, names::COST_UNKNOWN.to_string()));
        return fields;
    }
    let reported = [(names::HEADER_INPUT_TOKENS, tokens.input), (names::HEADER_OUTPUT_TOKENS, tokens.output)];
    for (suffix, count) in reported {
        if let Some(count) = count {
            fields.push((suffix, count.tokens.to_string()));
        }
    }
    let cache_write = tokens.cache_write_5m.map_or(0, |c| c.tokens) + tokens.cache_write_1h.map_or(0, |c| c.tokens);
    let optional = [
        (names::HEADER_CACHED_INPUT_TOKENS, tokens.cache_read.map_or(0, |c| c.tokens)),
        (names::HEADER_CACHE_WRITE_TOKENS, cache_write),
        (names::HEADER_REASONING_TOKENS, tokens.reasoning.map_or(0, |c| c.tokens)),
    ];
    for (suffix, count) in optional {
        if count > 0 {
            fields.push((suffix, count.to_string()));
        }
    }
    match record.cost {
        None => fields.push((names::HEADER_COST_USD, names::COST_UNPRICED.to_string())),
        Some(cost) => {
            fields.push((names::HEADER_COST_USD, cost.usd_string()));
            let b = cost.breakdown;
            let parts = [
                ("input", b.input + b.audio_input),
                ("cached_input", b.cache_read),
                ("cache_write", b.cache_write_5m + b.cache_write_1h),
                ("output", b.output + b.audio_output),
                ("reasoning", b.reasoning),
            ];
            let mut breakdown = String::with_capacity(96);
            for (name, pico) in parts {
                if !breakdown.is_empty() {
                    breakdown.push_str("; ");
                }
                breakdown.push_str(name);
                breakdown.push('=');
                breakdown.push_str(&usd_string(pico));
            }
            fields.push((names::HEADER_COST_BREAKDOWN, breakdown));
            fields.push((names::HEADER_PRICE_TABLE, price_table.to_string()));
        }
    }
    fields
}

/// The SSE comment line that closes a stream: `: tollgate {"cost_usd": …}` and a line end.
pub fn stream_comment(record: &UsageRecord, price_table: &str) -> Vec<u8> {
    let mut object = Map::new();
    for (suffix, value) in cost_fields(record, price_table) {
        let key = suffix.replace('-', "_");
        let value = value.parse::<u64>().map_or_else(|_| Value::String(value), |n| json!(n));
        object.insert(key, value);
    }
    format!(": tollgate {}\n", Value::Object(object)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{Cost, CostBreakdown};
    use crate::usage::{Count, Outcome, TokenCounts};

    fn record(cost: Option<Cost>) -> UsageRecord {
        UsageRecord {
            api: "anthropic.messages",
            model_requested: Some("smart".into()),
            model_served: Some("claude-haiku-4-5-20251001".into()),
            provider: Some("anthropic".into()),
            tenant: None,
            team: None,
            project: None,
            streaming: true,
            status: Some(200),
            outcome: Outcome::Complete,
            tokens: TokenCounts {
                input: Some(Count::provider(1000)),
                cache_read: Some(Count::provider(600)),
                cache_write_5m: Some(Count::provider(100)),
                output: Some(Count::provider(50)),
                ..TokenCounts::default()
            },
            cost,
            priced_as: None,
            time_to_first_token_ms: None,
            duration_ms: None,
            guardrails: Default::default(),
            budget: None,
        }
    }

    fn priced() -> Cost {
        let breakdown = CostBreakdown {
            input: 300_000_000,
            cache_read: 60_000_000,
            cache_write_5m: 125_000_000,
            output: 250_000_000,
            ..CostBreakdown::default()
        };
        Cost { pico_usd: 735_000_000, breakdown, tier: None }
    }

    #[test]
    fn every_suffix_given_has_its_name_built_at_load() {
        let mut full = record(Some(priced()));
        full.tokens.reasoning = Some(Count::provider(5));
        for suffix in cost_fields(&full, "v").into_iter().chain(cost_fields(&record(None), "v")).map(|(s, _)| s) {
            assert!(names::COST_HEADERS.contains(&suffix), "{suffix} is not in names::COST_HEADERS");
        }
    }

    #[test]
    fn fields_carry_tokens_by_type_the_breakdown_and_the_table_version() {
        let fields = cost_fields(&record(Some(priced())), "litellm-1.0");
        let get = |suffix: &str| fields.iter().find(|(s, _)| *s == suffix).map(|(_, v)| v.as_str());
        assert_eq!(get("cost-usd"), Some("0.000735"));
        assert_eq!(get("cached-input-tokens"), Some("600"));
        assert_eq!(get("cache-write-tokens"), Some("100"));
        assert_eq!(get("reasoning-tokens"), None, "zero counts are left out");
        assert_eq!(
            get("cost-breakdown"),
            Some("input=0.0003; cached_input=0.00006; cache_write=0.000125; output=0.00025; reasoning=0.0")
        );
        assert_eq!(get("price-table"), Some("litellm-1.0"));
        assert_eq!(get("provider"), Some("anthropic"));
    }

    #[test]
    fn unpriced_and_unknown_say_so() {
        let unpriced = cost_fields(&record(None), "v");
        assert!(unpriced.contains(&("cost-usd", "unpriced".to_string())));
        let mut no_usage = record(None);
        no_usage.tokens = TokenCounts::default();
        assert!(cost_fields(&no_usage, "v").contains(&("cost-usd", "unknown".to_string())));
    }

    #[test]
    fn input_alone_is_enough_for_the_cost_and_its_token_header() {
        let mut embeddings = record(Some(priced()));
        embeddings.tokens = TokenCounts { input: Some(Count::provider(8000)), ..TokenCounts::default() };
        let fields = cost_fields(&embeddings, "v");
        let get = |suffix: &str| fields.iter().find(|(s, _)| *s == suffix).map(|(_, v)| v.as_str());
        assert_eq!(get("input-tokens"), Some("8000"));
        assert_eq!(get("output-tokens"), None, "nothing generated, nothing reported");
        assert_eq!(get("cost-usd"), Some("0.000735"));
    }

    #[test]
    fn the_stream_comment_is_one_sse_comment_line_of_json() {
        let comment = String::from_utf8(stream_comment(&record(Some(priced())), "v")).unwrap();
        assert!(comment.starts_with(": tollgate {") && comment.ends_with("}\n"));
        assert_eq!(comment.matches('\n').count(), 1);
        let value: Value = serde_json::from_str(comment.trim_start_matches(": tollgate ").trim()).unwrap();
        assert_eq!(value["cost_usd"], "0.000735");
        assert_eq!(value["input_tokens"], 1000);
        assert_eq!(value["model"], "claude-haiku-4-5-20251001");
    }
}
