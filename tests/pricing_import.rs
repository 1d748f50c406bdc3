//! The `litellm_prices` conversion (Rust, at configuration load) against the built-in table
//! (`scripts/generate-prices.py`, Python, at build time): converting the pinned LiteLLM file
//! here must give `src/pricing/prices.json` byte for byte, and a configuration that loads that
//! file must price every model exactly as the built-in table does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::io::Read;

use serde_json::{Map, Value};
use tollgate::pricing::litellm;
use tollgate::pricing::{PriceSource, PriceTable};
use tollgate::usage::{Count, TokenCounts};

const BUILTIN: &str = include_str!("../src/pricing/prices.json");

/// LiteLLM 1.104.5's `model_prices_and_context_window_backup.json`, from its wheel on PyPI
/// (the file scripts/generate-prices.py reads), gzipped.
fn pinned_litellm_text() -> String {
    let gz = include_bytes!("fixtures/pricing/litellm-1.104.5-model_prices_and_context_window.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    text
}

fn pinned_litellm() -> Map<String, Value> {
    serde_json::from_str(&pinned_litellm_text()).unwrap()
}

#[test]
fn converting_the_pinned_litellm_file_gives_exactly_the_built_in_table() {
    let doc: Value = serde_json::from_str(BUILTIN).unwrap();
    let conversion = litellm::convert(&pinned_litellm()).unwrap();
    let text = conversion.render(doc["litellm_version"].as_str().unwrap(), doc["generated"].as_str().unwrap());
    if text != BUILTIN {
        let ours: Vec<&str> = text.lines().collect();
        let theirs: Vec<&str> = BUILTIN.lines().collect();
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        panic!(
            "{} lines converted, {} in prices.json; first difference at line {first:?}: {:?} vs {:?}",
            ours.len(),
            theirs.len(),
            first.map(|i| ours[i]),
            first.map(|i| theirs[i])
        );
    }
    assert_eq!(conversion.models.len(), PriceTable::builtin_models());
    assert!(!conversion.skipped.is_empty(), "the file has models that cannot be held exactly");
}

#[test]
fn a_trimmed_list_converts_to_what_the_whole_list_converts_to() {
    let whole = pinned_litellm();
    let trimmed: Map<String, Value> = whole
        .iter()
        .map(|(k, v)| (k.clone(), v.as_object().map_or_else(|| v.clone(), |e| Value::Object(litellm::trim_entry(e)))))
        .collect();
    assert_eq!(litellm::convert(&trimmed).unwrap(), litellm::convert(&whole).unwrap());
    let size = |m: &Map<String, Value>| Value::Object(m.clone()).to_string().len();
    assert!(size(&trimmed) * 2 < size(&whole), "{} vs {} bytes", size(&trimmed), size(&whole));
}

#[test]
fn the_pinned_file_loaded_through_configuration_prices_every_model_as_the_built_in_table() {
    let config = format!("{{\"litellm_prices\": {}}}", pinned_litellm_text());
    let policy = tollgate::config::compile(config.as_bytes()).unwrap();
    let loaded = &policy.prices;
    let builtin = PriceTable::builtin();
    let doc: Value = serde_json::from_str(BUILTIN).unwrap();
    let tokens = TokenCounts {
        input: Some(Count::provider(250_000)),
        cache_read: Some(Count::provider(50_000)),
        output: Some(Count::provider(3_000)),
        reasoning: Some(Count::provider(1_000)),
        ..TokenCounts::default()
    };
    for model in doc["models"].as_object().unwrap().keys() {
        let priced = loaded.find(model).unwrap();
        assert_eq!(priced.source, PriceSource::LitellmPrices, "{model}");
        assert_eq!(priced.price, builtin.find(model).unwrap().price, "{model}");
        assert_eq!(loaded.cost(model, &tokens), builtin.cost(model, &tokens), "{model}");
    }
    assert_ne!(loaded.version(), builtin.version());
    assert!(loaded.version().starts_with(&format!("{}+litellm_prices.", builtin.version())), "{}", loaded.version());
    assert_ne!(loaded.sha256(), builtin.sha256());
    assert_eq!(policy.load_notes.len(), 1);
    assert!(
        policy.load_notes[0].starts_with(&format!("litellm_prices: {} models loaded", PriceTable::builtin_models()))
    );
}

#[test]
fn a_newer_price_is_layered_between_configured_prices_and_the_built_in_table() {
    // A model the pinned table lacks, one it has at a new price, and one `prices` overrides.
    let config = br#"{
      "prices": {"gpt-4o": {"input": 1, "output": 2}},
      "litellm_prices": {
        "mistral/mistral-large-3000": {"litellm_provider": "mistral", "mode": "chat",
          "input_cost_per_token": 4e-07, "output_cost_per_token": 1.2e-06},
        "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat",
          "input_cost_per_token": 1e-07, "output_cost_per_token": 5e-07},
        "gpt-4o": {"litellm_provider": "openai", "mode": "chat",
          "input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06},
        "odd": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-13},
        "picture": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_token": 1e-06}
      },
      "providers": {"mistral": {"dialect": "openai", "cluster": "mistral"}}
    }"#;
    let policy = tollgate::config::compile(config).unwrap();
    let table = &policy.prices;
    let found = table.find_at("mistral-large-3000", policy.price_namespace(Some("mistral"))).unwrap();
    assert_eq!((found.key, found.source), ("mistral/mistral-large-3000", PriceSource::LitellmPrices));
    assert_eq!((found.price.input, found.price.output), (400_000, 1_200_000));
    let mini = table.find("gpt-4o-mini-2024-07-18").unwrap();
    assert_eq!((mini.key, mini.source, mini.price.input), ("gpt-4o-mini", PriceSource::LitellmPrices, 100_000));
    assert_eq!(table.find("gpt-4o").unwrap().source, PriceSource::Config);
    assert_eq!(table.find("gpt-4.1").unwrap().source, PriceSource::Builtin);
    assert!(table.find("odd").is_none());
    let note = &policy.load_notes[0];
    assert!(note.contains("3 models loaded, 1 left out as not priced by tokens, 1 skipped"), "{note}");
    assert!(note.contains("odd (1e-13 USD/token"), "{note}");
}

#[test]
fn a_litellm_price_list_that_is_not_litellms_shape_is_refused_naming_the_field() {
    for (config, field) in [
        (r#"{"litellm_prices": {"m": 3}}"#, "litellm_prices.m"),
        (r#"{"litellm_prices": {"m": {"mode": 7}}}"#, "litellm_prices.m.mode"),
        (r#"{"litellm_prices": []}"#, "litellm_prices"),
    ] {
        let err = tollgate::config::compile(config.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(field), "{config}: {err}");
    }
}
