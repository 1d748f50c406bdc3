use super::*;
use crate::usage::Count;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn tokens(input: u64, cache_read: u64, output: u64) -> TokenCounts {
    TokenCounts {
        input: Some(Count::provider(input)),
        cache_read: Some(Count::provider(cache_read)),
        output: Some(Count::provider(output)),
        ..TokenCounts::default()
    }
}

fn counts(pairs: &[(&str, u64)]) -> TokenCounts {
    let mut t = TokenCounts::default();
    for (name, n) in pairs {
        let slot = match *name {
            "input" => &mut t.input,
            "cache_read" => &mut t.cache_read,
            "cache_write_5m" => &mut t.cache_write_5m,
            "cache_write_1h" => &mut t.cache_write_1h,
            "audio_input" => &mut t.audio_input,
            "output" => &mut t.output,
            "reasoning" => &mut t.reasoning,
            "audio_output" => &mut t.audio_output,
            other => panic!("{other}"),
        };
        *slot = Some(Count::provider(*n));
    }
    t
}

#[test]
fn cost_is_exact_integer_arithmetic() {
    let table = PriceTable::builtin();
    // gpt-4o-mini: $0.15 in, $0.60 out per M tokens → 150 000 and 600 000 pico-USD per token.
    let cost = table.cost("gpt-4o-mini", &tokens(12, 0, 16)).unwrap();
    assert_eq!(cost.pico_usd, 12 * 150_000 + 16 * 600_000);
    assert_eq!(cost.usd_string(), "0.0000114");
    assert_eq!(cost.breakdown.input, 12 * 150_000);
    assert_eq!(cost.breakdown.output, 16 * 600_000);
    assert_eq!(cost.tier, None);
}

#[test]
fn cached_prompt_tokens_are_billed_at_the_cached_price() {
    let table = PriceTable::builtin();
    let cost = table.cost("gpt-4o", &tokens(1000, 400, 0)).unwrap();
    assert_eq!(cost.pico_usd, 600 * 2_500_000 + 400 * 1_250_000);
    assert_eq!(cost.breakdown.cache_read, 400 * 1_250_000);
    // A model without a cached price bills cached tokens as input.
    let price = table.lookup("gpt-3.5-turbo").unwrap();
    assert_eq!(price.cache_read, None);
    let cost = table.cost("gpt-3.5-turbo", &tokens(10, 10, 0)).unwrap();
    assert_eq!(cost.pico_usd, 10 * price.input);
}

#[test]
fn cache_writes_are_billed_at_their_lifetimes_price() {
    let table = PriceTable::builtin();
    let t = counts(&[
        ("input", 1000),
        ("cache_read", 100),
        ("cache_write_5m", 200),
        ("cache_write_1h", 300),
        ("output", 10),
    ]);
    // claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 5m write, $6 1h write, $15 out.
    let cost = table.cost("claude-sonnet-4-5-20250929", &t).unwrap();
    assert_eq!(cost.pico_usd, 400 * 3_000_000 + 100 * 300_000 + 200 * 3_750_000 + 300 * 6_000_000 + 10 * 15_000_000);
    assert_eq!(cost.breakdown.cache_write_1h, 300 * 6_000_000);
}

#[test]
fn reasoning_and_audio_are_parts_billed_at_their_own_rates() {
    let price =
        ModelPrice { reasoning: Some(20), audio_input: Some(7), audio_output: Some(9), ..ModelPrice::flat(2, 5) };
    let t = counts(&[
        ("input", 100),
        ("cache_read", 10),
        ("audio_input", 30),
        ("output", 50),
        ("reasoning", 20),
        ("audio_output", 5),
    ]);
    let cost = cost_at(&price, &t);
    assert_eq!(
        cost.breakdown,
        CostBreakdown {
            input: 60 * 2,
            cache_read: 10 * 2,
            audio_input: 30 * 7,
            output: 25 * 5,
            reasoning: 20 * 20,
            audio_output: 5 * 9,
            ..CostBreakdown::default()
        }
    );
    assert_eq!(cost.pico_usd, cost.breakdown.components().map(|(_, c)| c).sum::<u64>());
    // Without their own prices, reasoning is output and audio is input or output.
    let flat = cost_at(&ModelPrice::flat(2, 5), &t);
    assert_eq!(flat.pico_usd, 90 * 2 + 10 * 2 + 50 * 5);
}

#[test]
fn a_tier_applies_to_the_whole_request_once_the_prompt_exceeds_its_threshold() {
    static TIERS: [TierRow; 2] = [
        TierRow {
            above: 200_000,
            input: 20,
            output: 40,
            cache_read: 2,
            cache_write_5m: table::NONE,
            cache_write_1h: 60,
        },
        TierRow {
            above: 500_000,
            input: 30,
            output: table::NONE,
            cache_read: table::NONE,
            cache_write_5m: table::NONE,
            cache_write_1h: table::NONE,
        },
    ];
    let price = ModelPrice { tiers: &TIERS, cache_read: Some(1), cache_write_5m: Some(12), ..ModelPrice::flat(10, 30) };
    let r = price.rates(200_000);
    assert_eq!((r.input, r.output, r.cache_read, r.tier), (10, 30, 1, None), "at the threshold: base prices");
    let r = price.rates(200_001);
    assert_eq!(
        (r.input, r.output, r.cache_read, r.cache_write_5m, r.cache_write_1h, r.tier),
        (20, 40, 2, 12, 60, Some(200_000))
    );
    // The highest tier exceeded wins; prices it lacks are the base prices, not the lower tier's.
    let r = price.rates(600_000);
    assert_eq!((r.input, r.output, r.cache_read, r.cache_write_5m, r.cache_write_1h), (30, 30, 1, 12, 12));
    // Inclusive thresholds (xAI) apply at the threshold itself.
    let inclusive = ModelPrice { threshold_inclusive: true, ..price };
    assert_eq!(inclusive.rates(200_000).tier, Some(200_000));
    assert_eq!(inclusive.rates(199_999).tier, None);
}

#[test]
fn built_in_tiers_follow_litellm_above_200k_prices() {
    let table = PriceTable::builtin();
    let gemini = table.lookup("gemini/gemini-2.5-pro").unwrap();
    assert_eq!((gemini.input, gemini.output), (1_250_000, 10_000_000));
    let tier = gemini.tier_for(200_001).unwrap();
    assert_eq!(
        (tier.above, tier.input, tier.output, tier.cache_read),
        (200_000, 2_500_000, Some(15_000_000), Some(250_000))
    );
    let cost = table.cost("gemini/gemini-2.5-pro", &tokens(250_000, 50_000, 1_000)).unwrap();
    assert_eq!(cost.pico_usd, 200_000 * 2_500_000 + 50_000 * 250_000 + 1_000 * 15_000_000);
    assert_eq!(cost.tier, Some(200_000));
}

#[test]
fn parts_larger_than_input_are_clamped() {
    let table = PriceTable::builtin();
    let cost = table.cost("gpt-4o", &tokens(5, 50, 0)).unwrap();
    assert_eq!(cost.pico_usd, 5 * 1_250_000);
    let t = counts(&[("input", 5), ("output", 3), ("reasoning", 9), ("audio_output", 9)]);
    let cost = cost_at(&ModelPrice { reasoning: Some(100), ..ModelPrice::flat(1, 10) }, &t);
    assert_eq!(cost.pico_usd, 5 + 3 * 100);
}

#[test]
fn nothing_counted_means_no_cost() {
    assert_eq!(PriceTable::builtin().cost("gpt-4o", &TokenCounts::default()), None);
}

#[test]
fn unpriced_models_have_no_cost_never_zero() {
    let table = PriceTable::builtin();
    assert_eq!(table.cost("my-local-llama", &tokens(10, 0, 10)), None);
}

#[test]
fn lookup_order_is_exact_then_without_prefix_then_without_date() {
    let table = PriceTable::builtin();
    let key = |m: &'static str| table.find(m).map(|p| p.key.to_string());
    assert_eq!(key("gpt-4o-mini-2024-07-18").as_deref(), Some("gpt-4o-mini-2024-07-18"), "LiteLLM lists the snapshot");
    assert_eq!(key("azure/gpt-4o").as_deref(), Some("azure/gpt-4o"), "provider entries are their own");
    assert_eq!(key("openai/gpt-4o").as_deref(), Some("gpt-4o"));
    assert_eq!(key("anthropic/claude-sonnet-4-5").as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        key("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0").as_deref(),
        Some("anthropic.claude-sonnet-4-5-20250929-v1:0")
    );
    assert_eq!(key("openrouter/qwen/qwen3-max").as_deref(), Some("openrouter/qwen/qwen3-max"));
    assert_eq!(key("azure/gpt-4o-2099-01-01").as_deref(), Some("azure/gpt-4o"));
    assert_eq!(key("gpt-4o-2099-01-01").as_deref(), Some("gpt-4o"));
    assert_eq!(key("openai/gpt-4o-2099-01-01").as_deref(), Some("gpt-4o"));
    assert_eq!(key("claude-opus-4-8-20991231").as_deref(), Some("claude-opus-4-8"));
    assert_eq!(key("gpt-4o-mini-2024-07"), None);
    assert_eq!(key("my-local-llama"), None);
    assert_eq!(key("openai/"), None);
    assert_eq!(key(""), None);
}

#[test]
fn overrides_take_precedence_over_the_built_in_table() {
    let mut overrides = BTreeMap::new();
    overrides.insert(
        "gpt-4o".to_string(),
        ModelPrice { cache_read: Some(1_000_000), ..ModelPrice::flat(2_000_000, 8_000_000) },
    );
    overrides.insert("my-llama".to_string(), ModelPrice::flat(0, 0));
    let table = PriceTable::with_overrides(overrides);
    let priced = table.find("openai/gpt-4o-2024-08-06").unwrap();
    assert_eq!((priced.key, priced.source), ("gpt-4o", PriceSource::Config), "an override covers snapshots too");
    assert_eq!(table.find("gpt-4o-mini").unwrap().source, PriceSource::Builtin);
    // Zero is a price (self-hosted), not "unpriced".
    assert_eq!(table.cost("my-llama", &tokens(10, 0, 10)).map(|c| c.pico_usd), Some(0));
    assert_eq!(table.version(), PriceTable::builtin().version());
    assert_ne!(table.sha256(), PriceTable::builtin().sha256(), "the effective prices changed");
    assert_eq!(table.sha256().len(), 64);
    assert_eq!(PriceTable::with_overrides(BTreeMap::new()), PriceTable::builtin());
}

#[test]
fn absurd_usage_saturates_instead_of_overflowing() {
    let table = PriceTable::builtin();
    let cost = table.cost("gpt-4o", &tokens(u64::MAX, 0, u64::MAX)).unwrap();
    assert_eq!(cost.pico_usd, u64::MAX);
}

#[test]
fn usd_strings_keep_every_digit() {
    assert_eq!(Cost::from_pico(0).usd_string(), "0.0");
    assert_eq!(Cost::from_pico(1).usd_string(), "0.000000000001");
    assert_eq!(Cost::from_pico(2_500_000_000_000).usd_string(), "2.5");
    assert_eq!(Cost::from_pico(3_000_000_000_000).usd_string(), "3.0");
    assert_eq!(Cost::from_pico(11_400_000).usd_string(), "0.0000114");
    assert_eq!(Cost::from_pico(1_000_000_000_010).usd_string(), "1.00000000001");
    assert_eq!(Cost::from_pico(u64::MAX).usd_string(), "18446744.073709551615");
    for pico in [7, 10, 100_000_000_000, 999_999_999_999, 123_456_789_000_000, 12_000_000_000_001] {
        let reference = format!("{}.{:012}", pico / 1_000_000_000_000, pico % 1_000_000_000_000);
        assert_eq!(Cost::from_pico(pico).usd_string(), reference.trim_end_matches('0'), "{pico}");
    }
}

#[test]
fn micro_usd_rounds_half_up() {
    assert_eq!(Cost::from_pico(499_999).micro_usd(), 0);
    assert_eq!(Cost::from_pico(500_000).micro_usd(), 1);
    assert_eq!(Cost::from_pico(2_500_000).micro_usd(), 3);
    assert_eq!(Cost::from_pico(u64::MAX).micro_usd(), u64::MAX / 1_000_000 + 1);
}

#[test]
fn version_and_hash_identify_the_built_in_table() {
    let table = PriceTable::builtin();
    assert!(table.version().starts_with("litellm-"), "{}", table.version());
    assert_eq!(table.version(), format!("litellm-{}+{}", builtin::LITELLM_VERSION, builtin::GENERATED));
    assert_eq!(table.sha256(), builtin::SHA256);
}

/// `prices.json` is the reviewable text of the table: its sha256 is the table's hash, and the
/// compiled static holds exactly the same prices.
#[test]
fn the_static_table_is_prices_json_and_its_hash_is_the_files() {
    let text = include_str!("prices.json");
    let hex: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, builtin::SHA256);
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(doc["litellm_version"], builtin::LITELLM_VERSION);
    assert_eq!(doc["generated"], builtin::GENERATED);
    let models = doc["models"].as_object().unwrap();
    assert_eq!(models.len(), builtin::MODEL_COUNT);
    let get = |v: &serde_json::Value, f: &str| v.get(f).map(|n| n.as_u64().unwrap());
    for (name, m) in models {
        let (key, p) = table::find(name).unwrap_or_else(|| panic!("{name} missing from builtin.rs"));
        assert_eq!(key, name);
        assert_eq!(Some(p.input), get(m, "input"), "{name}");
        assert_eq!(Some(p.output), get(m, "output"), "{name}");
        assert_eq!(p.cache_read, get(m, "cache_read"), "{name}");
        assert_eq!(p.cache_write_5m, get(m, "cache_write_5m"), "{name}");
        assert_eq!(p.cache_write_1h, get(m, "cache_write_1h"), "{name}");
        assert_eq!(p.reasoning, get(m, "reasoning"), "{name}");
        assert_eq!(p.audio_input, get(m, "audio_input"), "{name}");
        assert_eq!(p.audio_output, get(m, "audio_output"), "{name}");
        assert_eq!(p.max_input_tokens, get(m, "max_input_tokens"), "{name}");
        assert_eq!(p.threshold_inclusive, m.get("threshold_inclusive").is_some_and(|b| b == true), "{name}");
        let tiers = m.get("above").and_then(|a| a.as_array()).cloned().unwrap_or_default();
        assert_eq!(p.tiers.len(), tiers.len(), "{name}");
        for (row, t) in p.tiers.iter().zip(&tiers) {
            let tier = row.tier();
            assert_eq!(Some(tier.above), get(t, "above"), "{name}");
            assert_eq!(Some(tier.input), get(t, "input"), "{name}");
            assert_eq!(tier.output, get(t, "output"), "{name}");
            assert_eq!(tier.cache_read, get(t, "cache_read"), "{name}");
            assert_eq!(tier.cache_write_5m, get(t, "cache_write_5m"), "{name}");
            assert_eq!(tier.cache_write_1h, get(t, "cache_write_1h"), "{name}");
        }
    }
}

#[test]
fn the_table_covers_the_major_providers() {
    let table = PriceTable::builtin();
    for model in [
        "gpt-4o",
        "gpt-4.1",
        "gpt-5",
        "o3",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-7",
        "gemini/gemini-2.5-pro",
        "gemini/gemini-2.5-flash",
        "deepseek/deepseek-chat",
        "mistral/mistral-large-latest",
        "azure/gpt-4o",
        "text-embedding-3-small",
    ] {
        assert!(table.lookup(model).is_some(), "{model}");
    }
}

/// Start-up and lookup cost of the static table, against parsing the same data as JSON at VM
/// start. `cargo test --release --lib pricing::tests::startup_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn startup_cost() {
    use std::time::Instant;
    let text = include_str!("prices.json");
    let started = Instant::now();
    let runs = 20;
    for _ in 0..runs {
        let doc: serde_json::Value = serde_json::from_str(std::hint::black_box(text)).unwrap();
        std::hint::black_box(doc);
    }
    let parse = started.elapsed() / runs;
    let names: Vec<&str> = builtin::MODELS.iter().map(|(n, _, _)| *n).collect();
    let table = PriceTable::builtin();
    let started = Instant::now();
    let mut found = 0;
    for name in &names {
        found += usize::from(table.lookup(std::hint::black_box(name)).is_some());
    }
    let lookup = started.elapsed() / u32::try_from(names.len()).unwrap();
    let started = Instant::now();
    let dated = "openai/gpt-4o-2099-01-01";
    for _ in 0..10_000 {
        std::hint::black_box(table.lookup(std::hint::black_box(dated)));
    }
    let worst = started.elapsed() / 10_000;
    println!("parse prices.json: {parse:?}; static lookup: {lookup:?} (found {found}); four-step lookup: {worst:?}");
}

#[test]
fn a_bare_name_sent_to_a_provider_is_priced_under_its_litellm_namespace() {
    let table = PriceTable::builtin();
    assert!(table.find("mistral-large-latest").is_none(), "LiteLLM keys it only as mistral/…");
    let at = |model: &str, ns: &str| table.find_at(model, Some(ns)).map(|p| p.key);
    assert_eq!(at("mistral-large-latest", "mistral"), Some("mistral/mistral-large-latest"));
    assert_eq!(at("deepseek-chat", "deepseek"), Some("deepseek/deepseek-chat"));
    assert_eq!(at("gemini-2.5-pro", "gemini"), Some("gemini/gemini-2.5-pro"));
    assert_eq!(at("openai/gpt-oss-120b", "groq"), Some("groq/openai/gpt-oss-120b"));
    // A provider-keyed price wins over another provider's bare one: Azure's gpt-4o-mini is
    // not OpenAI's.
    assert_eq!(at("gpt-4o-mini", "azure"), Some("azure/gpt-4o-mini"));
    assert_ne!(table.find_at("gpt-4o-mini", Some("azure")).unwrap().price, table.lookup("gpt-4o-mini").unwrap());
    // Dated snapshots fall back to the namespaced family, then to the bare names.
    assert_eq!(at("mistral-large-latest-2099-01-01", "mistral"), Some("mistral/mistral-large-latest"));
    assert_eq!(at("gpt-4o-2024-08-06", "mistral"), Some("gpt-4o-2024-08-06"));
    // A name already under the namespace is not prefixed twice (LiteLLM: perplexity/sonar at
    // perplexity is perplexity/sonar, not perplexity/perplexity/sonar).
    assert_eq!(at("perplexity/sonar", "perplexity"), Some("perplexity/sonar"));
    assert_eq!(at("mistral/mistral-large-latest", "mistral"), Some("mistral/mistral-large-latest"));
}

#[test]
fn every_provider_keyed_model_is_found_by_its_bare_name_at_its_provider() {
    let table = PriceTable::builtin();
    let mut namespaces = std::collections::BTreeSet::new();
    for (key, _, _) in builtin::MODELS {
        let Some((namespace, bare)) = key.split_once('/') else { continue };
        namespaces.insert(namespace);
        assert!(table.has_namespace(namespace), "{namespace}");
        // `perplexity/sonar` at perplexity is itself when listed, as in LiteLLM, not
        // `perplexity/perplexity/sonar`.
        let expected =
            if bare.starts_with(&format!("{namespace}/")) && table::find(bare).is_some() { bare } else { key };
        assert_eq!(table.find_at(bare, Some(namespace)).map(|p| p.key), Some(expected), "{bare} at {namespace}");
    }
    assert!(namespaces.len() >= 70, "{} namespaces", namespaces.len());
    for not_one in ["", "openai", "anthropic", "nobody", "mistral/", "mis"] {
        assert!(!table.has_namespace(not_one), "{not_one:?}");
    }
}
