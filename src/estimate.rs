//! Token estimates for what providers did not report (a cut stream, an old upstream) and for
//! decisions made before the request leaves (the context-window rule). Every number from here
//! is marked `estimated` in the usage record. Counting uses the model's own tokenizer where it
//! is known exactly (OpenAI's encodings) and the measured approximation otherwise.

use serde_json::Value;

use crate::dialect::text::RequestText;
use crate::dialect::Api;
use crate::tokenizer;

/// Tokens of generated text. `kept` is the text the stream reader kept (it stops keeping at
/// 1 MiB); `total_bytes` is how much there was: past what was kept, the kept text's rate applies.
pub fn text_tokens(model: &str, kept: &str, total_bytes: u64) -> u64 {
    if total_bytes == 0 {
        return 0;
    }
    let counted = tokenizer::for_model(model).count(kept);
    let kept_bytes = kept.len() as u64;
    if kept_bytes == 0 {
        return total_bytes.div_ceil(4);
    }
    if total_bytes <= kept_bytes {
        return counted;
    }
    counted.saturating_mul(total_bytes).div_ceil(kept_bytes)
}

/// Whether [`request_tokens`] counts `api`'s request by its text segments (every API but Chat
/// Completions, whose published rules need the messages' structure), so a caller that reads the
/// text anyway can hand it in.
pub fn counts_text(api: Api) -> bool {
    api != Api::OpenAiChat
}

/// Prompt tokens of a request body for `model`. Chat Completions: OpenAI's counting rules
/// (messages, tools, images). Other APIs: the text segments (system prompt, messages, tool calls
/// and results, the strings of tool definitions; embeddings inputs), each counted with the
/// model's tokenizer, and embeddings token ids as they are; JSON syntax, object keys, images and
/// per-message framing are not counted, so it leans a little low where tools or images weigh.
/// `text` is the request's text when the caller has read it (shared with the guardrails); it is
/// read here otherwise. A body that cannot be read is counted whole.
pub fn request_tokens(api: Api, model: &str, body: &[u8], text: Option<&RequestText<'_>>) -> u64 {
    prompt_tokens(api, model, body, text, None)
}

/// [`request_tokens`] for decisions that only compare the count with limits of at least
/// `smallest_limit` (context windows, a guardrail's `max_prompt_tokens`). First the most the
/// count can be, by the same rules with each text's bytes for its tokens (no tokenizer runs);
/// when that is within `smallest_limit`, every decision comes out as with the exact count, and
/// the bound is returned. Only a prompt that may be near a limit is counted.
pub fn prompt_tokens_for_limits(
    api: Api,
    model: &str,
    body: &[u8],
    text: Option<&RequestText<'_>>,
    smallest_limit: u64,
) -> u64 {
    prompt_tokens(api, model, body, text, Some(smallest_limit))
}

fn prompt_tokens(api: Api, model: &str, body: &[u8], text: Option<&RequestText<'_>>, limit: Option<u64>) -> u64 {
    let counter = tokenizer::for_model(model);
    if !counts_text(api) {
        if let Ok(mut request) = serde_json::from_slice::<Value>(body) {
            if let Some(fields) = request.as_object_mut() {
                fields.insert("model".into(), Value::String(model.to_string()));
            }
            let at_most = || tokenizer::chat_request_at_most(&request);
            return bounded(limit, at_most, || tokenizer::estimate_chat_request(&request).total);
        }
    } else {
        let read = if text.is_none() { RequestText::read(api, body).ok() } else { None };
        if let Some(text) = text.or(read.as_ref()) {
            let segments = || text.segments().iter().filter_map(|s| text.text(s));
            let at_most = || segments().map(|t| counter.at_most(t.len())).sum::<u64>() + text.layout().token_ids;
            return bounded(limit, at_most, || {
                segments().map(|t| counter.count(&t)).sum::<u64>() + text.layout().token_ids
            });
        }
    }
    let whole = String::from_utf8_lossy(body);
    bounded(limit, || counter.at_most(whole.len()), || counter.count(&whole))
}

/// The bound when there is a limit it is within, the count otherwise.
fn bounded(limit: Option<u64>, at_most: impl FnOnce() -> u64, count: impl FnOnce() -> u64) -> u64 {
    if let Some(limit) = limit {
        let bound = at_most();
        if bound <= limit {
            return bound;
        }
    }
    count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_is_counted_with_the_models_tokenizer() {
        assert_eq!(text_tokens("gpt-4o", "Hello world", 11), 2);
        assert_eq!(text_tokens("gpt-4o", "", 0), 0);
    }

    #[test]
    fn text_beyond_what_was_kept_is_scaled_by_the_kept_rate() {
        let kept = "Hello world";
        assert_eq!(text_tokens("gpt-4o", kept, 110), 20);
        assert_eq!(text_tokens("gpt-4o", "", 40), 10, "nothing kept: four bytes per token");
    }

    /// Each API's body with text, tools, names, an image and a tool call, and one that is no JSON.
    const BODIES: [(Api, &[u8]); 5] = [
        (
            Api::OpenAiChat,
            r#"{"model":"x","messages":[{"role":"system","content":"Be brief.","name":"ops"},
            {"role":"user","content":[{"type":"text","text":"¿Qué es esto? 日本語 🙂"},
              {"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
              "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}],
            "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now.",
              "parameters":{"type":"object","properties":{"unit":{"type":"string","enum":["c","f"]}}}}}]}"#
                .as_bytes(),
        ),
        (
            Api::AnthropicMessages,
            br#"{"model":"m","max_tokens":9,"system":"Hello world","messages":[{"role":"user","content":"\u00e9t\u00e9 \n ok"}]}"#,
        ),
        (Api::OpenAiResponses, br#"{"model":"m","instructions":"Hello world","input":"Hello world"}"#),
        (Api::OpenAiEmbeddings, br#"{"model":"m","input":[[1,2,3],[4,5]]}"#),
        (Api::OpenAiChat, b"not json at all, \xff bytes"),
    ];

    #[test]
    fn a_limit_the_bound_is_within_is_answered_without_counting_and_any_other_by_the_count() {
        for model in ["gpt-4o", "claude-haiku-4-5", "mistral-large-latest"] {
            for (api, body) in BODIES {
                let exact = request_tokens(api, model, body, None);
                let bound = prompt_tokens_for_limits(api, model, body, None, u64::MAX);
                let shown = String::from_utf8_lossy(body);
                assert!(bound >= exact, "{model} {api:?}: bound {bound} under the count {exact}: {shown}");
                assert_eq!(prompt_tokens_for_limits(api, model, body, None, bound), bound);
                // Anything under the bound may be a limit the prompt is near or over: counted.
                assert_eq!(prompt_tokens_for_limits(api, model, body, None, bound - 1), exact, "{shown}");
                assert_eq!(prompt_tokens_for_limits(api, model, body, None, 0), exact, "{shown}");
            }
        }
    }

    #[test]
    fn chat_requests_follow_openais_counting_rules() {
        let body = br#"{"model":"x","messages":[{"role":"user","content":"Hello world"}]}"#;
        // 3 per message + 1 for the role + 2 for the text + 3 reply priming.
        assert_eq!(request_tokens(Api::OpenAiChat, "gpt-4o", body, None), 3 + 1 + 2 + 3);
    }

    #[test]
    fn other_apis_count_their_text_not_the_json_around_it() {
        let body = br#"{"model": "claude-haiku-4-5", "max_tokens": 1024, "system": "Hello world",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello world"}]},
                         {"role": "assistant", "content": "Hello world"}]}"#;
        // Three texts of two tokens each (o200k, counted with gpt-4o to be exact).
        assert_eq!(request_tokens(Api::AnthropicMessages, "gpt-4o", body, None), 6);
        // The whole body, JSON syntax and all, is 52 tokens: what this used to count.
        let whole = tokenizer::for_model("gpt-4o").count(std::str::from_utf8(body).unwrap());
        assert!(whole > 40, "{whole}");
        // With Claude's approximation the text is still a few tokens, not the body's dozens.
        let claude = request_tokens(Api::AnthropicMessages, "claude-haiku-4-5", body, None);
        assert!((3..=12).contains(&claude), "{claude}");
        let responses = br#"{"model": "m", "instructions": "Hello world", "input": "Hello world"}"#;
        assert_eq!(request_tokens(Api::OpenAiResponses, "gpt-4o", responses, None), 4);
    }

    #[test]
    fn text_read_by_the_caller_is_counted_as_it_is() {
        let body = br#"{"input": ["Hello world", "Hello"]}"#;
        let text = RequestText::read(Api::OpenAiEmbeddings, body).unwrap();
        assert_eq!(request_tokens(Api::OpenAiEmbeddings, "gpt-4o", body, Some(&text)), 3);
        let ids = br#"{"input": [[9906, 1917], [9906]]}"#;
        assert_eq!(
            request_tokens(Api::OpenAiEmbeddings, "text-embedding-3-small", ids, None),
            3,
            "token ids are tokens"
        );
        assert!(counts_text(Api::AnthropicMessages) && !counts_text(Api::OpenAiChat));
    }
}
