//! Anthropic Messages: usage objects and stream events.
//!
//! Anthropic's `input_tokens` exclude cache reads and writes; the canonical `input` adds them.
//! In a stream, `message_start` carries the input side and a provisional `output_tokens` (1 or so:
//! not what the answer will have generated), and each `message_delta` carries cumulative totals
//! (recent API versions repeat input and cache fields there too), so later values replace earlier
//! ones. Only `message_delta`'s output is the provider's count: a stream that ends without one
//! (client gone, upstream reset) has its output estimated from the text read, not taken as 1.

use serde_json::Value;

use super::EventFacts;
use crate::sse::SseEvent;
use crate::usage::{token_field, Count, TokenCounts};

pub fn usage(usage: &Value) -> TokenCounts {
    let field = |path: &[&str]| token_field(usage, path);
    let uncached = field(&["input_tokens"]);
    let read = field(&["cache_read_input_tokens"]);
    let written = field(&["cache_creation_input_tokens"]);
    let written_5m = field(&["cache_creation", "ephemeral_5m_input_tokens"]);
    let written_1h = field(&["cache_creation", "ephemeral_1h_input_tokens"]);
    // Without the per-lifetime breakdown, cache writes use the default 5-minute lifetime.
    let (written_5m, written_1h) = match (written_5m, written_1h) {
        (None, None) => (written, None),
        split => split,
    };
    // The total is the sum of its parts: a part that is there but is no count (`"5000"`, `-1`,
    // `1.5`) leaves the total unknown, never added as zero. `null` is a part not reported.
    let unreadable = |path: &[&str]| {
        let value = path.iter().try_fold(usage, |value, key| value.get(key));
        value.is_some_and(|v| !v.is_null() && v.as_u64().is_none())
    };
    let cache_unreadable = [
        &["cache_read_input_tokens"][..],
        &["cache_creation_input_tokens"],
        &["cache_creation", "ephemeral_5m_input_tokens"],
        &["cache_creation", "ephemeral_1h_input_tokens"],
    ]
    .into_iter()
    .any(unreadable);
    let input = uncached.filter(|_| !cache_unreadable).map(|u| {
        u.saturating_add(read.unwrap_or(0))
            .saturating_add(written_5m.unwrap_or(0))
            .saturating_add(written_1h.unwrap_or(0))
    });
    TokenCounts {
        input: input.map(Count::provider),
        cache_read: read.map(Count::provider),
        cache_write_5m: written_5m.map(Count::provider),
        cache_write_1h: written_1h.map(Count::provider),
        output: field(&["output_tokens"]).map(Count::provider),
        ..TokenCounts::default()
    }
}

pub fn read_event(event: &SseEvent) -> EventFacts {
    let Ok(value) = serde_json::from_slice::<Value>(&event.data) else {
        return EventFacts::default();
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or(event.event.as_str());
    let mut facts = EventFacts::default();
    match kind {
        "message_start" => {
            let message = value.get("message");
            facts.model = message.and_then(|m| m.get("model")).and_then(Value::as_str).map(str::to_string);
            if let Some(u) = message.and_then(|m| m.get("usage")) {
                // The input side only: the provisional output count is no count of the answer.
                facts.tokens = TokenCounts { output: None, ..usage(u) };
            }
        }
        "message_delta" => {
            if let Some(u) = value.get("usage") {
                let mut counts = usage(u);
                if u.get("input_tokens").is_none() {
                    // Output-only delta: its cache fields (if any) must not fake an input total.
                    counts = TokenCounts { output: counts.output, ..TokenCounts::default() };
                }
                facts.tokens = counts;
            }
        }
        "content_block_start" => {
            let block = value.get("content_block");
            for key in ["text", "name", "thinking"] {
                if let Some(text) = block.and_then(|b| b.get(key)).and_then(Value::as_str) {
                    facts.text.push_str(text);
                }
            }
        }
        "content_block_delta" => {
            let delta = value.get("delta");
            for key in ["text", "partial_json", "thinking"] {
                if let Some(text) = delta.and_then(|d| d.get(key)).and_then(Value::as_str) {
                    facts.text.push_str(text);
                }
            }
        }
        "message_stop" => facts.terminal = true,
        _ => {}
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, data: Value) -> SseEvent {
        SseEvent { event: kind.to_string(), data: data.to_string().into_bytes(), start: 0, end: 0 }
    }

    #[test]
    fn cache_reads_and_writes_are_added_to_input() {
        let counts = usage(&json!({"input_tokens": 10, "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 50, "output_tokens": 7}));
        assert_eq!(counts.input, Some(Count::provider(160)));
        assert_eq!(counts.cache_read, Some(Count::provider(100)));
        assert_eq!(counts.cache_write_5m, Some(Count::provider(50)));
        assert_eq!(counts.cache_write_1h, None);
        assert_eq!(counts.output, Some(Count::provider(7)));
    }

    #[test]
    fn a_cache_count_that_is_no_count_leaves_the_input_total_unknown_never_zero() {
        for bad in [json!("5000"), json!(-1), json!(1.5), json!(true), json!({})] {
            let counts = usage(&json!({"input_tokens": 10, "cache_read_input_tokens": bad, "output_tokens": 3}));
            assert_eq!(counts.input, None, "cache_read_input_tokens: {bad}");
            assert_eq!(counts.output, Some(Count::provider(3)), "the output is still reported");
            let counts = usage(&json!({"input_tokens": 10, "cache_creation_input_tokens": 4,
                "cache_creation": {"ephemeral_5m_input_tokens": bad, "ephemeral_1h_input_tokens": 4}}));
            assert_eq!(counts.input, None, "ephemeral_5m_input_tokens: {bad}");
        }
        let counts = usage(&json!({"input_tokens": 10, "cache_read_input_tokens": null,
            "cache_creation_input_tokens": null, "cache_creation": null}));
        assert_eq!(counts.input, Some(Count::provider(10)), "null is a part not reported");
    }

    #[test]
    fn cache_write_lifetimes_are_kept_apart() {
        let counts = usage(&json!({"input_tokens": 1, "cache_creation_input_tokens": 30,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}, "output_tokens": 2}));
        assert_eq!(counts.cache_write_5m, Some(Count::provider(10)));
        assert_eq!(counts.cache_write_1h, Some(Count::provider(20)));
        assert_eq!(counts.input, Some(Count::provider(31)));
    }

    #[test]
    fn stream_start_and_delta_merge_into_one_usage() {
        let start = read_event(&event(
            "message_start",
            json!({"type": "message_start", "message": {
            "model": "claude-sonnet-4-5-20250929", "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
        ));
        let delta_output_only =
            read_event(&event("message_delta", json!({"type": "message_delta", "usage": {"output_tokens": 15}})));
        assert_eq!(start.tokens.output, None, "message_start's output_tokens: 1 is provisional");
        assert_eq!(start.tokens.input, Some(Count::provider(30)));
        let mut counts = start.tokens;
        counts.merge(delta_output_only.tokens);
        assert_eq!(start.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(counts.input, Some(Count::provider(30)));
        assert_eq!(counts.output, Some(Count::provider(15)));
        let delta_full = read_event(&event(
            "message_delta",
            json!({"type": "message_delta",
            "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3, "output_tokens": 16}}),
        ));
        counts.merge(delta_full.tokens);
        assert_eq!(counts.input, Some(Count::provider(33)));
        assert_eq!(counts.cache_write_5m, Some(Count::provider(3)));
        assert_eq!(counts.output, Some(Count::provider(16)));
    }

    #[test]
    fn text_deltas_and_stop_are_seen() {
        let delta = read_event(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ));
        assert_eq!(delta.text, "Hi");
        assert!(read_event(&event("message_stop", json!({"type": "message_stop"}))).terminal);
        assert_eq!(read_event(&event("ping", json!({"type": "ping"}))), EventFacts::default());
    }
}
