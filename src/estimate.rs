//! Token estimates for what providers did not report (a cut stream, an old upstream) and for
//! decisions made before the request leaves (the context-window rule). Every number from here
//! is marked `estimated` in the usage record. Counting uses the model's own tokenizer where it
//! is known exactly (OpenAI's encodings) and the measured approximation otherwise.

use serde_json::Value;

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

/// Prompt tokens of a request body for `model`: OpenAI's counting rules for Chat Completions
/// (messages, tools, images); the model's tokenizer over the whole body for other APIs, which
/// counts JSON syntax too and so leans high.
pub fn request_tokens(api: Api, model: &str, body: &[u8]) -> u64 {
    if api == Api::OpenAiChat {
        if let Ok(mut request) = serde_json::from_slice::<Value>(body) {
            if let Some(fields) = request.as_object_mut() {
                fields.insert("model".into(), Value::String(model.to_string()));
            }
            return tokenizer::estimate_chat_request(&request).total;
        }
    }
    tokenizer::for_model(model).count(&String::from_utf8_lossy(body))
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

    #[test]
    fn chat_requests_follow_openais_counting_rules() {
        let body = br#"{"model":"x","messages":[{"role":"user","content":"Hello world"}]}"#;
        // 3 per message + 1 for the role + 2 for the text + 3 reply priming.
        assert_eq!(request_tokens(Api::OpenAiChat, "gpt-4o", body), 3 + 1 + 2 + 3);
        assert!(request_tokens(Api::AnthropicMessages, "claude-haiku-4-5", body) > 0);
    }
}
