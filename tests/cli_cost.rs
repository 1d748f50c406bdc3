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
