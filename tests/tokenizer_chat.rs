//! The request-side estimate of Chat Completions prompts against prompt_tokens that the OpenAI
//! API reported for published requests (`tests/fixtures/tokenizer/openai_prompt_tokens.json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::path::Path;

use serde_json::{json, Value};
use tollgate::tokenizer::{chat_request_at_most, estimate_chat_request, Exactness};

fn samples() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/openai_prompt_tokens.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["samples"].as_array().unwrap().clone()
}

#[test]
fn estimates_match_the_prompt_tokens_openai_reported_for_published_requests() {
    let samples = samples();
    assert!(samples.len() >= 9);
    let mut misses = Vec::new();
    for sample in &samples {
        let estimate = estimate_chat_request(&sample["request"]);
        let reported = sample["reported_prompt_tokens"].as_u64().unwrap();
        if estimate.total != reported {
            misses.push(format!("{}: estimated {}, reported {reported}", sample["request"]["model"], estimate.total));
        }
    }
    assert!(misses.is_empty(), "{misses:?}");
}

/// The context-window rule counts a prompt only when this bound is over a window, so it must
/// never be under the count, whatever the request holds.
#[test]
fn the_bound_without_counting_is_never_under_the_estimate() {
    for sample in samples() {
        for model in ["gpt-4o", "gpt-4", "claude-sonnet-4-5", "mistral-large-latest"] {
            let mut request = sample["request"].clone();
            request["model"] = json!(model);
            let (bound, estimate) = (chat_request_at_most(&request), estimate_chat_request(&request).total);
            assert!(bound >= estimate, "{model}: {bound} < {estimate}: {request}");
            assert!(bound > 0);
        }
    }
}

#[test]
fn plain_text_messages_of_an_openai_model_are_exact_and_tools_make_it_approximate() {
    let samples = samples();
    let without_tools = samples.iter().find(|s| s["request"].get("tools").is_none()).unwrap();
    assert_eq!(estimate_chat_request(&without_tools["request"]).exactness, Exactness::Exact);
    let with_tools = samples.iter().find(|s| s["request"].get("tools").is_some()).unwrap();
    let estimate = estimate_chat_request(&with_tools["request"]);
    assert_eq!(estimate.exactness, Exactness::Approximate);
    assert!(estimate.tools > 0);
}

#[test]
fn a_single_user_message_costs_its_text_plus_seven() {
    // 3 per message + "user" (1) + text + 3 for the reply priming.
    let estimate =
        estimate_chat_request(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}]}));
    assert_eq!(estimate.total, 2 + 7);
    assert_eq!(estimate.messages, estimate.total);
}

#[test]
fn content_parts_count_text_and_price_images_by_the_tile_rule() {
    let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAYAAACddGYaAAAAC0lEQVR4nGNgwAUAABoAAbw84EEAAAAASUVORK5CYII=";
    let request = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hello!"},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
    ]}]});
    let estimate = estimate_chat_request(&request);
    assert_eq!(estimate.images, 255 + 85, "a 3x2 PNG is one tile; low detail is 85");
    assert_eq!(estimate.total, 9 + 340);
    assert_eq!(estimate.exactness, Exactness::Exact, "every image size was known or irrelevant");

    let unknown = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]}]});
    let estimate = estimate_chat_request(&unknown);
    assert_eq!(estimate.images, 765, "an image of unknown size is taken as 768x768 at high detail");
    assert_eq!(estimate.exactness, Exactness::Approximate);
}

#[test]
fn other_providers_models_are_estimated_and_marked_approximate() {
    let estimate =
        estimate_chat_request(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(estimate.exactness, Exactness::Approximate);
    assert!(estimate.total > 0);
}

#[test]
fn odd_shapes_never_fail() {
    for request in
        [json!({}), json!({"messages": "no"}), json!({"messages": [1, null, {"content": {"x": 1}}]}), json!(null)]
    {
        let estimate = estimate_chat_request(&request);
        assert_eq!(estimate.exactness, Exactness::Approximate, "{request}");
    }
}
