//! `tollgate`: the command-line companion of the filter. It runs the filter's own code, so what
//! it accepts is exactly what the filter accepts.

use std::process::ExitCode;

use serde_json::{json, Map, Value};
use tollgate::pricing::{usd_string, PriceSource, PriceTable};
use tollgate::usage::{Count, TokenCounts};

const USAGE: &str = "usage: tollgate check-config FILE [--skip-env]
       tollgate cost --model M --input N --output N [--cached-input N] [--cache-write N]
                     [--cache-write-1h N] [--reasoning N] [--audio-input N] [--audio-output N]
                     [--config FILE]

commands:
  check-config FILE   validate a filter configuration (JSON) exactly as the filter does at load;
                      provider keys named by `api_key.env` must be set in this environment, as
                      they must be in the proxy's Wasm VM (--skip-env: assume they are)
  cost                price token counts as the filter does and print the breakdown as JSON.
                      --input counts every prompt token (cache reads, cache writes and audio
                      are parts of it, like OpenAI's prompt_tokens); --output every generated
                      token (reasoning and audio are parts of it). --cache-write is the 5-minute
                      cache write. --config applies a configuration's `prices`";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check-config", path] => check_config(path, false),
        ["check-config", path, "--skip-env"] | ["check-config", "--skip-env", path] => check_config(path, true),
        ["cost", options @ ..] => cost(options),
        ["-h"] | ["--help"] | ["help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(path: &str, skip_env: bool) -> ExitCode {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("{path}: cannot read: {err}");
            return ExitCode::from(2);
        }
    };
    let env = |name: &str| if skip_env { Some("placeholder".to_string()) } else { std::env::var(name).ok() };
    match tollgate::config::compile_with_env(&bytes, &env) {
        Ok(_) => {
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{path}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `tollgate cost`: the filter's own price table and cost code, with the breakdown as JSON.
fn cost(options: &[&str]) -> ExitCode {
    let mut model = None;
    let mut config = None;
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
    let table = match config {
        None => PriceTable::builtin(),
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => match tollgate::config::compile_with_env(&bytes, &|_| Some("placeholder".to_string())) {
                Ok(policy) => policy.prices,
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
    match cost_report(&table, model, &tokens) {
        Some(report) => {
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "{model}: unpriced (neither in the configured prices nor in the built-in table {})",
                table.version()
            );
            ExitCode::FAILURE
        }
    }
}

fn cost_report(table: &PriceTable, model: &str, tokens: &TokenCounts) -> Option<Value> {
    let priced = table.find(model)?;
    let cost = table.cost(model, tokens)?;
    let input = tokens.input.map_or(0, |c| c.tokens);
    let rates = priced.price.rates(input);
    let per_million = |micro: u64| usd_string(micro.saturating_mul(1_000_000));
    let mut usd = Map::new();
    for (name, pico) in cost.breakdown.components() {
        usd.insert(name.to_string(), json!(usd_string(pico)));
    }
    usd.insert("total".to_string(), json!(cost.usd_string()));
    let counts = [
        ("input", tokens.input),
        ("cache_read", tokens.cache_read),
        ("cache_write_5m", tokens.cache_write_5m),
        ("cache_write_1h", tokens.cache_write_1h),
        ("audio_input", tokens.audio_input),
        ("output", tokens.output),
        ("reasoning", tokens.reasoning),
        ("audio_output", tokens.audio_output),
    ];
    let counts: Map<String, Value> =
        counts.iter().filter_map(|(name, c)| c.map(|c| (name.to_string(), json!(c.tokens)))).collect();
    Some(json!({
        "model": model,
        "priced_as": priced.key,
        "price_source": match priced.source { PriceSource::Config => "config", PriceSource::Builtin => "builtin" },
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
    eprintln!("tollgate: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
