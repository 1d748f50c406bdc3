//! `tollgate cost`, run as the built binary: the filter's price table and cost code from the
//! command line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::process::{Command, Output};

use serde_json::Value;
use tollgate::pricing::PriceTable;

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).output().expect("the tollgate binary runs")
}

fn report(args: &[&str]) -> Value {
    let out = tollgate(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn prints_the_breakdown_per_component_and_the_total_with_the_table_version() {
    let r =
        report(&["cost", "--model", "gpt-4o-2024-08-06", "--input", "1000", "--cached-input", "400", "--output", "50"]);
    assert_eq!(r["model"], "gpt-4o-2024-08-06");
    assert_eq!(r["priced_as"], "gpt-4o-2024-08-06");
    assert_eq!(r["price_source"], "builtin");
    // $2.50 in, $1.25 cached, $10 out per million tokens.
    assert_eq!(r["cost_usd"]["input"], "0.0015");
    assert_eq!(r["cost_usd"]["cache_read"], "0.0005");
    assert_eq!(r["cost_usd"]["output"], "0.0005");
    assert_eq!(r["cost_usd"]["reasoning"], "0.0");
    assert_eq!(r["cost_usd"]["total"], "0.0025");
    assert_eq!(r["usd_per_million_tokens"]["cache_read"], "1.25");
    assert_eq!(r["tokens"]["cache_read"], 400);
    assert_eq!(r["long_context_tier"], Value::Null);
    let table = PriceTable::builtin();
    assert_eq!(r["price_table"]["version"], table.version());
    assert_eq!(r["price_table"]["sha256"], table.sha256());
}

#[test]
fn cache_writes_reasoning_and_long_context_tiers() {
    let r = report(&[
        "cost",
        "--model",
        "claude-sonnet-4-5",
        "--input",
        "250000",
        "--cached-input",
        "100000",
        "--cache-write",
        "20000",
        "--cache-write-1h",
        "10000",
        "--output",
        "1000",
    ]);
    // Above 200k prompt tokens every price is the tier's: $6 in, $0.60 read, $7.50 and $12 writes, $22.50 out.
    assert_eq!(r["long_context_tier"]["above_tokens"], 200_000);
    assert_eq!(r["cost_usd"]["input"], "0.72");
    assert_eq!(r["cost_usd"]["cache_read"], "0.06");
    assert_eq!(r["cost_usd"]["cache_write_5m"], "0.15");
    assert_eq!(r["cost_usd"]["cache_write_1h"], "0.12");
    assert_eq!(r["cost_usd"]["output"], "0.0225");
    assert_eq!(r["cost_usd"]["total"], "1.0725");

    let r = report(&["cost", "--model", "o3", "--input", "100", "--output", "1000", "--reasoning", "900"]);
    assert_eq!(r["cost_usd"]["reasoning"], "0.0072");
    assert_eq!(r["cost_usd"]["output"], "0.0008");
}

#[test]
fn the_same_code_as_the_filter() {
    let r = report(&["cost", "--model", "gpt-4o-mini-2024-07-18", "--input", "12", "--output", "16"]);
    // Exactly the x-tollgate-cost-usd the filter sends for this usage (tests/lifecycle.rs).
    assert_eq!(r["cost_usd"]["total"], "0.0000114");
}

#[test]
fn configured_prices_apply_with_config() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, r#"{"prices": {"my-llama": {"input": 0.2, "output": 0.6}}}"#).unwrap();
    let path = path.to_str().unwrap();
    let r = report(&["cost", "--model", "openai/my-llama", "--input", "1000000", "--output", "10", "--config", path]);
    assert_eq!(r["priced_as"], "my-llama");
    assert_eq!(r["price_source"], "config");
    assert_eq!(r["cost_usd"]["total"], "0.200006");
    assert_ne!(r["price_table"]["sha256"], PriceTable::builtin().sha256());

    std::fs::write(dir.join("bad.json"), r#"{"prices": {"m": {"input": -1, "output": 1}}}"#).unwrap();
    let out = tollgate(&[
        "cost",
        "--model",
        "m",
        "--input",
        "1",
        "--output",
        "1",
        "--config",
        dir.join("bad.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prices.m.input"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unpriced_models_and_bad_arguments_fail() {
    let out = tollgate(&["cost", "--model", "my-local-llama", "--input", "1", "--output", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unpriced"));
    assert!(out.stdout.is_empty());
    for args in [
        &["cost", "--model", "gpt-4o", "--input", "1"][..],
        &["cost", "--model", "gpt-4o", "--input", "-1", "--output", "1"],
        &["cost", "--model", "gpt-4o", "--input", "1", "--output", "1", "--cached"],
        &["cost", "--model", "gpt-4o", "--input", "1", "--output", "1", "--bogus", "2"],
        &["cost", "--input", "1", "--output", "1"],
    ] {
        let out = tollgate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: tollgate"), "{args:?}");
    }
}

#[test]
fn a_bare_name_is_priced_at_its_provider() {
    // LiteLLM keys Mistral's models mistral/…: the bare name alone is unpriced.
    assert!(!tollgate(&["cost", "--model", "mistral-large-latest", "--input", "1", "--output", "1"]).status.success());
    let r = report(&[
        "cost",
        "--model",
        "mistral-large-latest",
        "--provider",
        "mistral",
        "--input",
        "1000",
        "--output",
        "100",
    ]);
    assert_eq!(r["priced_as"], "mistral/mistral-large-latest");
    assert_eq!(r["litellm_provider"], "mistral");
    // $0.50 in, $1.50 out per million tokens (LiteLLM 1.104.5).
    assert_eq!(r["cost_usd"]["total"], "0.00065");
    let azure =
        report(&["cost", "--model", "gpt-4o-mini", "--provider", "azure", "--input", "1000000", "--output", "0"]);
    assert_eq!(azure["priced_as"], "azure/gpt-4o-mini");
    assert_eq!(azure["cost_usd"]["total"], "0.165");
    let out = tollgate(&["cost", "--model", "m", "--provider", "nobody", "--input", "1", "--output", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody/"));

    // With a configuration: the configured provider's namespace.
    let dir = std::env::temp_dir().join(format!("tollgate-cost-provider-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"providers": {"eu": {"dialect": "openai", "cluster": "eu", "litellm_provider": "mistral"}},
            "litellm_prices": {"mistral/mistral-large-latest": {"litellm_provider": "mistral", "mode": "chat",
              "input_cost_per_token": 4e-07, "output_cost_per_token": 1.2e-06}}}"#,
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let r = report(&[
        "cost",
        "--config",
        path,
        "--model",
        "mistral-large-latest",
        "--provider",
        "eu",
        "--input",
        "1000",
        "--output",
        "100",
    ]);
    assert_eq!(r["priced_as"], "mistral/mistral-large-latest");
    assert_eq!(r["price_source"], "litellm_prices");
    assert_eq!(r["cost_usd"]["total"], "0.00052");
    assert!(r["price_table"]["version"].as_str().unwrap().contains("+litellm_prices."));
    let out =
        tollgate(&["cost", "--config", path, "--model", "m", "--provider", "mistral", "--input", "1", "--output", "1"]);
    assert_eq!(out.status.code(), Some(2), "mistral is not a provider of this configuration");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prices_import_writes_a_section_the_filter_loads() {
    let dir = std::env::temp_dir().join(format!("tollgate-prices-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let litellm = dir.join("prices.json");
    std::fs::write(
        &litellm,
        r#"{"sample_spec": {"mode": "chat"},
            "mistral/mistral-large-3000": {"litellm_provider": "mistral", "mode": "chat", "supports_vision": true,
              "input_cost_per_token": 4e-07, "output_cost_per_token": 1.2e-06, "max_input_tokens": 128000},
            "mistral/odd": {"litellm_provider": "mistral", "mode": "chat", "input_cost_per_token": 1e-13},
            "gemini/gemini-9": {"litellm_provider": "gemini", "mode": "chat", "input_cost_per_token": 1e-06,
              "output_cost_per_token": 2e-06, "input_cost_per_token_above_200k_tokens": 2e-06},
            "gpt-9": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06}}"#,
    )
    .unwrap();
    let path = litellm.to_str().unwrap();
    let out = tollgate(&["prices", "import", path, "--models", "mistral/*", "--models", "gemini/*"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let section: Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = section["litellm_prices"].as_object().unwrap();
    assert_eq!(models.keys().collect::<Vec<_>>(), ["gemini/gemini-9", "mistral/mistral-large-3000"]);
    assert_eq!(models["mistral/mistral-large-3000"].get("supports_vision"), None, "only what pricing reads");
    assert!(String::from_utf8_lossy(&out.stderr).contains("left out mistral/odd"));
    let policy = tollgate::config::compile(&out.stdout).unwrap();
    assert_eq!(policy.prices.find("mistral/mistral-large-3000").unwrap().price.input, 400_000);
    assert_eq!(policy.prices.find("gemini/gemini-9").unwrap().price.tiers.len(), 1);

    let out = tollgate(&["prices", "import", path, "--section", "prices"]);
    let section: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(section["prices"]["mistral/mistral-large-3000"], serde_json::json!({"input": "0.4", "output": "1.2"}));
    assert_eq!(section["prices"].get("gemini/gemini-9"), None, "tiers need litellm_prices");
    assert!(tollgate::config::compile(&out.stdout).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
