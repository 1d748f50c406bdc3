//! `tollgate prices import`: a LiteLLM price file made into a configuration section, converted
//! by the filter's own code so that what it keeps is what the filter will load.

use std::process::ExitCode;

use serde_json::{Map, Value};
use tollgate::pricing::litellm::{self, Converted};
use tollgate::pricing::usd_string;
use tollgate::routing::glob::Glob;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    LitellmPrices,
    Prices,
}

pub fn import(options: &[&str]) -> ExitCode {
    let Some((path, rest)) = options.split_first() else {
        return usage_error("prices import needs the LiteLLM price file");
    };
    let mut globs = Vec::new();
    let mut section = Section::LitellmPrices;
    for pair in rest.chunks(2) {
        match pair {
            ["--models", glob] => globs.push(Glob::new(glob)),
            ["--section", "litellm_prices"] => section = Section::LitellmPrices,
            ["--section", "prices"] => section = Section::Prices,
            [flag, value] => return usage_error(&format!("prices import: unknown option {flag} {value}")),
            [flag] => return usage_error(&format!("prices import: {flag} needs a value")),
            _ => return usage_error("prices import: bad options"),
        }
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{path}: cannot read: {err}");
            return ExitCode::from(2);
        }
    };
    let list: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(list) => list,
        Err(err) => {
            eprintln!("{path}: not a JSON object (LiteLLM's model_prices_and_context_window.json): {err}");
            return ExitCode::FAILURE;
        }
    };
    let chosen: Map<String, Value> = list
        .iter()
        .filter(|(model, _)| globs.is_empty() || globs.iter().any(|g| g.is_match(model)))
        .map(|(model, entry)| {
            let trimmed = match entry {
                Value::Object(entry) => Value::Object(litellm::trim_entry(entry)),
                other => other.clone(),
            };
            (model.clone(), trimmed)
        })
        .collect();
    let conversion = match litellm::convert(&chosen) {
        Ok(conversion) => conversion,
        Err(bad) => {
            eprintln!("{path}: {}: {}", bad.path, bad.reason);
            return ExitCode::FAILURE;
        }
    };
    for (model, why) in &conversion.skipped {
        eprintln!("left out {model}: {why}");
    }
    let mut lines = Vec::new();
    for (model, converted) in &conversion.models {
        let value = match section {
            Section::LitellmPrices => chosen.get(model).cloned(),
            Section::Prices if !converted.tiers.is_empty() => {
                eprintln!("left out {model}: long-context tiers (use the litellm_prices section)");
                None
            }
            Section::Prices => Some(flat_price(converted)),
        };
        if let Some(value) = value {
            lines.push(format!("{}: {value}", Value::from(model.as_str())));
        }
    }
    let name = match section {
        Section::LitellmPrices => "litellm_prices",
        Section::Prices => "prices",
    };
    eprintln!(
        "{} of {} entries matched; {} models written, {} not priced by tokens",
        chosen.len(),
        list.len(),
        lines.len(),
        conversion.not_token_priced
    );
    println!("{{\"{name}\": {{\n{}\n}}}}", lines.join(",\n"));
    ExitCode::SUCCESS
}

/// A model's prices as a `prices` entry: decimal USD per million tokens, exact.
fn flat_price(m: &Converted) -> Value {
    let usd = |micro: u64| Value::from(usd_string(micro.saturating_mul(1_000_000)));
    let mut price = Map::new();
    price.insert("input".into(), usd(m.input));
    price.insert("output".into(), usd(m.output));
    for (name, value) in [
        ("cache_read", m.cache_read),
        ("cache_write_5m", m.cache_write_5m),
        ("cache_write_1h", m.cache_write_1h),
        ("reasoning", m.reasoning),
        ("audio_input", m.audio_input),
        ("audio_output", m.audio_output),
    ] {
        if let Some(micro) = value {
            price.insert(name.into(), usd(micro));
        }
    }
    Value::Object(price)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("tollgate: {message}\n\n{}", crate::USAGE);
    ExitCode::from(2)
}
