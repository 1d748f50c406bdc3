//! What responses and streams of both directions share: ids, stop reasons, usage and SSE
//! framing of output events.

use serde_json::{json, Map, Value};

use crate::usage::token_field;

const ANTHROPIC_ID_PREFIX: &str = "msg_";
/// What a stream's error event says when the upstream's own error event had no message.
pub const MID_STREAM_ERROR: &str = "The upstream provider reported an error mid-stream.";
const OPENAI_ID_PREFIX: &str = "chatcmpl-";

/// `msg_01XF…` → `chatcmpl-01XF…`: deterministic and reversible, so a client's logs and the
/// provider's can be matched. Without an upstream id, one is derived from `fallback_seed`.
pub fn openai_id(anthropic_id: Option<&str>, fallback_seed: &[u8]) -> String {
    match anthropic_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("{OPENAI_ID_PREFIX}{}", id.strip_prefix(ANTHROPIC_ID_PREFIX).unwrap_or(id)),
        None => format!("{OPENAI_ID_PREFIX}tollgate{:016x}", fnv1a(fallback_seed)),
    }
}

/// `chatcmpl-BzK1…` → `msg_BzK1…`, the reverse of [`openai_id`].
pub fn anthropic_id(openai_id: Option<&str>, fallback_seed: &[u8]) -> String {
    match openai_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("{ANTHROPIC_ID_PREFIX}{}", id.strip_prefix(OPENAI_ID_PREFIX).unwrap_or(id)),
        None => format!("{ANTHROPIC_ID_PREFIX}tollgate{:016x}", fnv1a(fallback_seed)),
    }
}

/// FNV-1a: a stable hash without a dependency, only for ids the upstream did not give.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`. OpenAI has no separate "stop sequence
/// hit" or "paused" reason; both are a normal stop. Hitting the context window is a length
/// limit. Unknown or absent reasons are a normal stop.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`. OpenAI does not say whether a `stop` came
/// from a stop sequence, so it is always `end_turn`; the legacy `function_call` is a tool use.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage → OpenAI usage. Anthropic's `input_tokens` exclude cache reads and writes;
/// OpenAI's `prompt_tokens` are every prompt token, with cache reads as `cached_tokens`. `None`
/// when the counts are not all there (`input_tokens` or `output_tokens` missing or not a count, a
/// cache count present but not a count): an OpenAI client then gets no `usage`, never made-up
/// zeros (its `usage` is optional). Absent or `null` cache counts are no cache use.
pub fn openai_usage(anthropic: &Value) -> Option<Value> {
    let cache = |key: &str| match anthropic.get(key) {
        None | Some(Value::Null) => Some(0),
        Some(value) => value.as_u64(),
    };
    let cache_read = cache("cache_read_input_tokens")?;
    let prompt = token_field(anthropic, &["input_tokens"])?
        .saturating_add(cache_read)
        .saturating_add(cache("cache_creation_input_tokens")?);
    let completion = token_field(anthropic, &["output_tokens"])?;
    Some(json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }))
}

/// The note for a translated answer whose provider reported no usable usage to an OpenAI client.
pub const OPENAI_USAGE_LEFT_OUT: &str =
    "usage: left out (the provider reported no usable input_tokens and output_tokens)";

/// The note for a translated answer whose provider reported no usable usage to an Anthropic
/// client, which gets zeros (its `usage` is required).
pub const ANTHROPIC_USAGE_ZEROS: &str =
    "usage: the provider reported no usable prompt_tokens and completion_tokens; zeros sent (Anthropic requires usage)";

/// OpenAI usage → Anthropic usage: the prompt minus its cached part is `input_tokens`, the
/// cached part `cache_read_input_tokens`. OpenAI does not report cache writes. Anthropic's
/// `usage` is required, so a count that is not there is 0: check [`openai_usage_complete`]
/// first, and note it when it is not.
pub fn anthropic_usage(openai: &Value) -> Map<String, Value> {
    let prompt = token_field(openai, &["prompt_tokens"]).unwrap_or(0);
    let cached = token_field(openai, &["prompt_tokens_details", "cached_tokens"]).unwrap_or(0).min(prompt);
    let mut usage = Map::new();
    usage.insert("input_tokens".into(), json!(prompt - cached));
    usage.insert("cache_read_input_tokens".into(), json!(cached));
    usage.insert("output_tokens".into(), json!(token_field(openai, &["completion_tokens"]).unwrap_or(0)));
    usage
}

/// Whether OpenAI usage has both counts as counts (and its cached count, if any, is one).
pub fn openai_usage_complete(openai: &Value) -> bool {
    let cached = openai.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens"));
    token_field(openai, &["prompt_tokens"]).is_some()
        && token_field(openai, &["completion_tokens"]).is_some()
        && cached.is_none_or(|c| c.is_null() || c.as_u64().is_some())
}

/// One OpenAI stream event: `data: {json}` and a blank line.
pub fn write_openai_event(out: &mut Vec<u8>, data: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// One Anthropic stream event: the SDK skips events without an `event:` line, so every event
/// names its type there as well as in `data.type`.
pub fn write_anthropic_event(out: &mut Vec<u8>, data: &Value) {
    let kind = data.get("type").and_then(Value::as_str).unwrap_or("error");
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// What a stream's error event says when the upstream stream ended before `final_event`.
pub fn cut_short(final_event: &str) -> String {
    format!("The upstream stream ended before its final event ({final_event}).")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_swap_prefixes_both_ways() {
        assert_eq!(openai_id(Some("msg_01XFDUDYJgAACzvnptvVoYEL"), b""), "chatcmpl-01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(anthropic_id(Some("chatcmpl-BzK1Rr3k"), b""), "msg_BzK1Rr3k");
        assert_eq!(anthropic_id(Some(&openai_id(Some("msg_abc"), b"")), b""), "msg_abc");
        assert_eq!(openai_id(Some("gen-123"), b""), "chatcmpl-gen-123");
    }

    #[test]
    fn missing_ids_are_derived_from_the_body_deterministically() {
        assert_eq!(openai_id(None, b"body"), openai_id(Some(""), b"body"));
        assert_ne!(openai_id(None, b"body"), openai_id(None, b"other"));
        assert!(anthropic_id(None, b"x").starts_with("msg_tollgate"));
    }

    #[test]
    fn stop_reasons_map_both_ways() {
        for (anthropic, openai) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(Some(anthropic)), openai, "{anthropic}");
        }
        for (openai, anthropic) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
        ] {
            assert_eq!(stop_reason(Some(openai)), anthropic, "{openai}");
        }
        assert_eq!(finish_reason(None), "stop");
        assert_eq!(stop_reason(Some("something_new")), "end_turn");
    }

    #[test]
    fn anthropic_cache_reads_and_writes_count_as_openai_prompt_tokens() {
        let usage = openai_usage(&json!({"input_tokens": 21, "cache_read_input_tokens": 3400,
            "cache_creation_input_tokens": 1200, "output_tokens": 27}));
        assert_eq!(
            usage,
            Some(json!({"prompt_tokens": 4621, "completion_tokens": 27, "total_tokens": 4648,
            "prompt_tokens_details": {"cached_tokens": 3400}}))
        );
        let without_cache =
            openai_usage(&json!({"input_tokens": 5, "cache_read_input_tokens": null, "output_tokens": 2}));
        assert_eq!(without_cache.unwrap()["prompt_tokens"], 5, "absent or null cache counts are no cache use");
    }

    #[test]
    fn openai_cached_tokens_are_taken_out_of_anthropic_input_tokens() {
        let usage = anthropic_usage(&json!({"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 64}}));
        assert_eq!(
            Value::Object(usage),
            json!({"input_tokens": 36, "cache_read_input_tokens": 64, "output_tokens": 7})
        );
    }

    #[test]
    fn missing_or_nonsense_counts_give_openai_clients_no_usage_never_zeros() {
        for usage in [
            json!({"output_tokens": 3}),
            json!({"input_tokens": 3}),
            json!({"input_tokens": -3, "output_tokens": "x"}),
            json!({"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": "5000"}),
            Value::Null,
        ] {
            assert_eq!(openai_usage(&usage), None, "{usage}");
        }
        assert_eq!(
            openai_usage(&json!({"input_tokens": u64::MAX, "cache_read_input_tokens": 1, "output_tokens": 0})).unwrap()
                ["prompt_tokens"],
            u64::MAX
        );
    }

    #[test]
    fn anthropic_clients_get_zeros_for_counts_that_are_not_there_and_the_caller_can_tell() {
        let usage = anthropic_usage(&json!({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}));
        assert_eq!(usage["input_tokens"], 0);
        assert!(!openai_usage_complete(&json!({"prompt_tokens": 5})));
        assert!(!openai_usage_complete(&json!({"prompt_tokens": 5, "completion_tokens": 1.5})));
        assert!(!openai_usage_complete(&json!({"prompt_tokens": 5, "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": "2"}})));
        assert!(!openai_usage_complete(&Value::Null));
        assert!(openai_usage_complete(&json!({"prompt_tokens": 5, "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": null}})));
    }

    #[test]
    fn anthropic_events_name_their_type_on_the_event_line() {
        let mut out = Vec::new();
        write_anthropic_event(&mut out, &json!({"type": "message_stop"}));
        assert_eq!(out, b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }
}
