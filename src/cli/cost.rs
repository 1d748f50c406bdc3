//! `tollgate cost`: prices token counts with the filter's own table and code.

use std::process::ExitCode;

use serde_json::{json, Map, Value};
use tollgate::pricing::{usd_string, PriceTable};
use tollgate::usage::{Count, TokenCounts};

pub fn run(options: &[&str]) -> ExitCode {
    let mut model = None;
    let mut config = None;
    let mut provider = None;
    let mut tokens = TokenCounts::default();
    for pair in options.chunks(2) {
        let [flag, value] = pair else {
            return usage_error(&format!("{} needs a value", pair.first().copied().unwrap_or_default()));
        };
        let count = |value: &str| value.parse::<u64>().map(|n| Some(Count::provider(n)));
        let slot = match *flag {
            "--model" => {
                model = Some(*value);
                continue;
            }
            "--config" => {
                config = Some(*value);
                continue;
            }
            "--provider" => {
                provider = Some(*value);
                continue;
            }
            "--input" => &mut tokens.input,
            "--cached-input" => &mut tokens.cache_read,
            "--cache-write" => &mut tokens.cache_write_5m,
            "--cache-write-1h" => &mut tokens.cache_write_1h,
            "--audio-input" => &mut tokens.audio_input,
            "--output" => &mut tokens.output,
            "--reasoning" => &mut tokens.reasoning,
            "--audio-output" => &mut tokens.audio_output,
            other => return usage_error(&format!("unknown option {other}")),
        };
        match count(value) {
            Ok(n) => *slot = n,
            Err(_) => return usage_error(&format!("{flag}: {value:?} is not a token count")),
        }
    }
    let (Some(model), true, true) = (model, tokens.input.is_some(), tokens.output.is_some()) else {
        return usage_error("cost needs --model, --input and --output");
    };
    let policy = match config {
        None => tollgate::config::Policy::default(),
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => match tollgate::config::compile_with_env(&bytes, &|_| Some("placeholder".to_string())) {
                Ok(policy) => policy,
                Err(err) => {
                    eprintln!("{path}: {err}");
                    return ExitCode::FAILURE;
                }
            },
            Err(err) => {
                eprintln!("{path}: cannot read: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let table = &policy.prices;
    // The provider's LiteLLM namespace, as the filter resolves it: the configured provider's,
    // or, without a configuration, a provider of that name with no `litellm_provider` set.
    let namespace = match (provider, config) {
        (None, _) => None,
        (Some(name), Some(path)) => match policy.routing.providers.iter().find(|p| p.name == name) {
            Some(_) => policy.price_namespace(Some(name)),
            None => return usage_error(&format!("--provider {name}: {path} configures no provider {name:?}")),
        },
        (Some(name), None) if table.has_namespace(name) => Some(name),
        (Some(name), None) => {
            return usage_error(&format!(
                "--provider {name}: no model in the price table is keyed \"{name}/…\"; give --config to use a configured provider"
            ))
        }
    };
    match cost_report(table, model, namespace, &tokens) {
        Some(report) => {
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "{model}: unpriced (neither in the configured prices or litellm_prices nor in the built-in table {})",
                table.version()
            );
            ExitCode::FAILURE
        }
    }
}

fn cost_report(table: &PriceTable, model: &str, namespace: Option<&str>, tokens: &TokenCounts) -> Option<Value> {
    let priced = table.find_at(model, namespace)?;
    let cost = table.cost_for(model, namespace, tokens)?;
    let input = tokens.input.map_or(0, |c| c.tokens);
    let rates = priced.price.rates(input);
    let per_million = |micro: u64| usd_string(micro.saturating_mul(1_000_000));
    let mut usd = Map::new();
    for (name, pico) in cost.breakdown.components() {
        usd.insert(name.to_string(), json!(usd_string(pico)));
    }
    usd.insert("total".to_string(), json!(cost.usd_string()));
    let counts: Map<String, Value> =
        tokens.fields().filter_map(|(name, c)| c.map(|c| (name.to_string(), json!(c.tokens)))).collect();
    Some(json!({
        "model": model,
        "priced_as": priced.key,
        "price_source": priced.source.name(),
        "litellm_provider": namespace,
        "tokens": counts,
        "long_context_tier": cost.tier.map(|above| json!({"above_tokens": above})),
        "usd_per_million_tokens": {
            "input": per_million(rates.input),
            "cache_read": per_million(rates.cache_read),
            "cache_write_5m": per_million(rates.cache_write_5m),
            "cache_write_1h": per_million(rates.cache_write_1h),
            "audio_input": per_million(rates.audio_input),
            "output": per_million(rates.output),
            "reasoning": per_million(rates.reasoning),
            "audio_output": per_million(rates.audio_output),
        },
        "cost_usd": usd,
        "price_table": {"version": table.version(), "sha256": table.sha256()},
    }))
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("tollgate: {message}\n\n{}", crate::USAGE);
    ExitCode::from(2)
}
