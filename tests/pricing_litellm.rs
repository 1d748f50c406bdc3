//! Tollgate's costs against LiteLLM's, case by case (`tests/fixtures/pricing/litellm_costs.json`,
//! written by `scripts/litellm-oracle.py` with LiteLLM itself).
//!
//! Each case is a raw usage object as the provider returns it. Tollgate reads it with its own
//! dialect code (Anthropic's `input_tokens` exclude cache tokens, OpenAI's `prompt_tokens`
//! include them; both become the same provider-neutral counts) and prices it with the built-in
//! table. LiteLLM's float total, taken to the nearest pico-USD, and Tollgate's exact total are
//! both rounded half up to whole micro-USD and must be equal; they are in fact within one
//! pico-USD of each other, which is checked too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use serde_json::Value;
use tollgate::dialect::{anthropic, openai};
use tollgate::pricing::{Cost, PriceTable};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/pricing/litellm_costs.json")).expect("fixture is JSON")
}

/// The namespace the filter prices a case under: none when Tollgate is given only the model; for
/// a bare model sent to a provider, the provider's name when the table knows it as a LiteLLM
/// prefix (the filter's default for a provider without `litellm_provider`).
fn namespace<'a>(table: &PriceTable, case: &'a Value) -> Option<&'a str> {
    case["tollgate_provider"].as_str().filter(|p| table.has_namespace(p))
}

#[test]
fn every_case_costs_what_litellm_says_to_the_micro_dollar() {
    let doc = fixture();
    let table = PriceTable::builtin();
    assert_eq!(doc["litellm_version"], table.litellm_version(), "the fixture and the table come from one LiteLLM");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = case["model"].as_str().unwrap();
        let tokens = match case["api"].as_str().unwrap() {
            "anthropic.messages" => anthropic::usage(&case["usage"]),
            "openai.chat" => openai::chat_usage(&case["usage"]),
            other => panic!("{name}: unknown api {other}"),
        };
        let namespace = namespace(&table, case);
        let Some(cost) = table.cost_for(model, namespace, &tokens) else {
            failures.push(format!("{name}: {model} is unpriced"));
            continue;
        };
        let litellm = Cost::from_pico(case["litellm"]["total_pico_usd"].as_u64().unwrap());
        if cost.micro_usd() != litellm.micro_usd() || cost.pico_usd.abs_diff(litellm.pico_usd) > 1 {
            failures.push(format!(
                "{name}: tollgate {} USD, litellm {} USD ({})",
                cost.usd_string(),
                litellm.usd_string(),
                case["litellm"]["total_usd"]
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn the_cases_cover_every_kind_of_token_and_the_major_providers() {
    let doc = fixture();
    let cases = doc["cases"].as_array().unwrap();
    let has = |pred: &dyn Fn(&Value) -> bool| cases.iter().any(pred);
    let usage =
        |c: &Value, path: &[&str]| path.iter().fold(c["usage"].clone(), |v, k| v[k].clone()).as_u64().unwrap_or(0) > 0;
    assert!(has(&|c| usage(c, &["prompt_tokens_details", "cached_tokens"])), "cache reads (OpenAI)");
    assert!(has(&|c| usage(c, &["cache_read_input_tokens"])), "cache reads (Anthropic)");
    assert!(has(&|c| usage(c, &["cache_creation", "ephemeral_5m_input_tokens"])), "5-minute cache writes");
    assert!(has(&|c| usage(c, &["cache_creation", "ephemeral_1h_input_tokens"])), "1-hour cache writes");
    assert!(has(&|c| usage(c, &["completion_tokens_details", "reasoning_tokens"])), "reasoning");
    assert!(has(&|c| usage(c, &["prompt_tokens_details", "audio_tokens"])), "audio input");
    assert!(has(&|c| usage(c, &["completion_tokens_details", "audio_tokens"])), "audio output");
    let table = PriceTable::builtin();
    let tiered = cases.iter().filter(|c| {
        let tokens = match c["api"].as_str().unwrap() {
            "anthropic.messages" => anthropic::usage(&c["usage"]),
            _ => openai::chat_usage(&c["usage"]),
        };
        table.cost_for(c["model"].as_str().unwrap(), namespace(&table, c), &tokens).unwrap().tier.is_some()
    });
    assert!(tiered.count() >= 5, "long-context tiers");
    for provider in ["openai", "anthropic", "gemini", "deepseek", "xai", "groq", "mistral", "bedrock", "azure"] {
        assert!(has(&|c| c["litellm_provider"] == provider), "{provider}");
    }
    // Bare names sent to a provider: the famous ones, and one per provider prefix of the table
    // that LiteLLM prices by bare name.
    for provider in ["mistral", "deepseek", "gemini", "groq", "azure", "xai", "openrouter", "perplexity"] {
        assert!(
            has(&|c| c["tollgate_provider"] == provider
                && !c["model"].as_str().unwrap().starts_with(&format!("{provider}/"))),
            "{provider}"
        );
    }
    let namespaced = cases.iter().filter(|c| namespace(&table, c).is_some()).count();
    assert!(namespaced >= 70, "{namespaced} cases priced under a provider namespace");
}
