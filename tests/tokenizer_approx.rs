//! The approximations for providers without a public or embedded tokenizer, measured against
//! provider-reported counts (`tests/fixtures/tokenizer/provider_counts.json`, each sample with
//! its source). The bounds asserted here are the ones the README states.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tollgate::tokenizer::{self, Exactness};

/// A model of each family, to get its counter through the public model table.
fn model_of(family: &str) -> &'static str {
    match family {
        "anthropic" => "claude-sonnet-4-5",
        "gemini" => "gemini-2.0-flash",
        "llama" => "llama-3.3-70b-versatile",
        "mistral" => "mistral-large-latest",
        other => panic!("no model for {other}"),
    }
}

/// Relative error of every sample, by family.
fn errors() -> BTreeMap<String, Vec<f64>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/provider_counts.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut errors: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for sample in doc["samples"].as_array().unwrap() {
        let family = sample["family"].as_str().unwrap();
        let counter = tokenizer::for_model(model_of(family));
        assert_eq!(counter.exactness(), Exactness::Approximate);
        let texts: u64 = sample["texts"].as_array().unwrap().iter().map(|t| counter.count(t.as_str().unwrap())).sum();
        let estimate = texts + sample["envelope"].as_u64().unwrap();
        let reported = sample["reported"].as_u64().unwrap();
        errors.entry(family.to_string()).or_default().push((estimate as f64 - reported as f64) / reported as f64);
    }
    errors
}

#[test]
fn each_family_stays_within_the_error_bound_the_readme_states() {
    // family: (samples, largest |error|)
    let bounds = [("anthropic", (7, 0.06)), ("gemini", (3, 0.125)), ("llama", (2, 0.0)), ("mistral", (2, 0.0))];
    let errors = errors();
    for (family, (samples, bound)) in bounds {
        let errs = &errors[family];
        assert_eq!(errs.len(), samples, "{family}: sample count");
        let worst = errs.iter().fold(0.0f64, |worst, e| worst.max(e.abs()));
        assert!(worst <= bound + 1e-9, "{family}: worst error {worst:.3} over {bound}; all: {errs:?}");
    }
}

#[test]
fn approximations_never_round_a_non_empty_text_to_zero() {
    for model in ["claude-sonnet-4-5", "gemini-2.5-pro", "mistral-small", "some-new-model"] {
        assert_eq!(tokenizer::for_model(model).count("a"), 1, "{model}");
        assert_eq!(tokenizer::for_model(model).count(""), 0, "{model}");
    }
}
