//! The prices in effect, in three layers (configured `prices`, a loaded LiteLLM price list,
//! the built-in table), and the order in which a model's names are looked up in them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;

use sha2::{Digest, Sha256};

use super::litellm::{Conversion, Converted};
use super::{builtin, cost_at, strip_date_suffix, table, Cost, ModelPrice};
use crate::usage::TokenCounts;

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The `prices` configuration field.
    Config,
    /// The `litellm_prices` configuration field (a LiteLLM price list loaded at start-up).
    LitellmPrices,
    /// The built-in table.
    Builtin,
}

impl PriceSource {
    /// The name records and `tollgate cost` print.
    pub fn name(self) -> &'static str {
        match self {
            PriceSource::Config => "config",
            PriceSource::LitellmPrices => "litellm_prices",
            PriceSource::Builtin => "builtin",
        }
    }
}

/// A model's price and the table entry it was found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced<'a> {
    /// The table key that matched (`gpt-4o` for `openai/gpt-4o-2024-08-06` if only that is
    /// listed; `mistral/mistral-large-latest` for `mistral-large-latest` at a `mistral` provider).
    pub key: &'a str,
    pub source: PriceSource,
    pub price: ModelPrice<'a>,
}

/// A LiteLLM price list loaded through configuration, converted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loaded {
    models: BTreeMap<String, Converted>,
    /// sha256 (hex) of the converted models as `prices.json` lines.
    sha256: String,
}

/// The built-in table under a loaded LiteLLM price list under the configuration's own prices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriceTable {
    overrides: BTreeMap<String, ModelPrice<'static>>,
    litellm: Option<Loaded>,
    /// sha256 of the effective table when configuration changes it; the built-in hash otherwise.
    sha256: Option<String>,
    /// The version when a LiteLLM price list is loaded; the built-in version otherwise.
    version: Option<String>,
}

/// Whether some key of `map` starts with `prefix`: the first key at or after it does.
fn keyed_under<V>(map: &BTreeMap<String, V>, prefix: &str) -> bool {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .next()
        .is_some_and(|(key, _)| key.starts_with(prefix))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl PriceTable {
    pub fn builtin() -> Self {
        PriceTable::default()
    }

    /// The built-in table with `overrides` taking precedence, model by model.
    pub fn with_overrides(overrides: BTreeMap<String, ModelPrice<'static>>) -> Self {
        PriceTable::layered(overrides, None)
    }

    /// The built-in table, under `litellm` (a converted LiteLLM price list) when given, under
    /// `overrides`. The version names the loaded list by its hash
    /// (`litellm-1.104.5+2026-11-21+litellm_prices.<12 hex>`); the sha256 covers every layer.
    pub fn layered(overrides: BTreeMap<String, ModelPrice<'static>>, litellm: Option<Conversion>) -> Self {
        let litellm = litellm.map(|conversion| {
            let sha256 = hex(&Sha256::digest(conversion.model_lines().as_bytes()));
            Loaded { models: conversion.models, sha256 }
        });
        if overrides.is_empty() && litellm.is_none() {
            return PriceTable::builtin();
        }
        let mut hasher = Sha256::new();
        hasher.update(builtin::SHA256.as_bytes());
        if let Some(loaded) = &litellm {
            hasher.update(format!("\nlitellm_prices\t{}", loaded.sha256).as_bytes());
        }
        for (model, p) in &overrides {
            let fields = [
                Some(p.input),
                Some(p.output),
                p.cache_read,
                p.cache_write_5m,
                p.cache_write_1h,
                p.reasoning,
                p.audio_input,
                p.audio_output,
            ];
            let line: Vec<String> =
                fields.iter().map(|f| f.map_or_else(|| "-".to_string(), |v| v.to_string())).collect();
            hasher.update(format!("\n{model}\t{}", line.join("\t")).as_bytes());
        }
        let version = litellm.as_ref().map(|loaded| {
            let short = loaded.sha256.get(..12).unwrap_or(&loaded.sha256);
            format!("{}+litellm_prices.{short}", builtin::VERSION)
        });
        PriceTable { overrides, litellm, sha256: Some(hex(&hasher.finalize())), version }
    }

    /// The table's version, for headers and records: the built-in table's, the LiteLLM release it
    /// came from and the generation date (`litellm-1.104.5+2026-11-21`), followed by
    /// `+litellm_prices.<first 12 hex of its sha256>` when a LiteLLM price list is loaded.
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or(builtin::VERSION)
    }

    /// The LiteLLM release the built-in table was generated from, e.g. `1.104.5`.
    pub fn litellm_version(&self) -> &'static str {
        builtin::LITELLM_VERSION
    }

    /// The date the built-in table was generated, e.g. `2026-11-21`.
    pub fn generated(&self) -> &'static str {
        builtin::GENERATED
    }

    /// Content hash (sha256, hex) of the prices in effect: the built-in table's
    /// (`src/pricing/prices.json`), or, when configuration adds prices, of that hash, the loaded
    /// LiteLLM list's hash and the overrides.
    pub fn sha256(&self) -> &str {
        self.sha256.as_deref().unwrap_or(builtin::SHA256)
    }

    /// sha256 of the loaded LiteLLM price list (its models as `prices.json` lines), if any.
    pub fn litellm_prices_sha256(&self) -> Option<&str> {
        self.litellm.as_ref().map(|l| l.sha256.as_str())
    }

    /// Number of models in the built-in table.
    pub fn builtin_models() -> usize {
        builtin::MODEL_COUNT
    }

    /// Whether some model in any layer is keyed `<namespace>/…`: `namespace` is a LiteLLM
    /// provider prefix this table can price under.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        if namespace.is_empty() || namespace.contains('/') {
            return false;
        }
        let prefix = format!("{namespace}/");
        keyed_under(&self.overrides, &prefix)
            || self.litellm.as_ref().is_some_and(|l| keyed_under(&l.models, &prefix))
            || table::has_prefix(&prefix)
    }

    /// Finds `model`'s price with no provider namespace known.
    pub fn find<'a>(&'a self, model: &str) -> Option<Priced<'a>> {
        self.find_at(model, None)
    }

    /// Finds `model`'s price as sent to a provider whose LiteLLM namespace is `namespace`.
    /// Layer by layer (configured `prices`, then `litellm_prices`, then the built-in table), the
    /// names tried are, in order: `<namespace>/<model>` and `<namespace>/<model without its date
    /// suffix>` when a namespace is known (after the model as given when it already starts
    /// with `<namespace>/`); the model as given; without its provider prefix (`openai/gpt-4o` →
    /// `gpt-4o`); without a date suffix (`gpt-4o-2024-08-06` → `gpt-4o`,
    /// `claude-3-5-haiku-20241022` → `claude-3-5-haiku`); without both. So `gpt-4o-mini` at an
    /// `azure` provider is priced as `azure/gpt-4o-mini` (LiteLLM's Azure price), never as
    /// OpenAI's bare `gpt-4o-mini`, as LiteLLM itself prices it.
    pub fn find_at<'a>(&'a self, model: &str, namespace: Option<&str>) -> Option<Priced<'a>> {
        let names = candidates(model, namespace);
        for name in &names {
            if let Some((key, price)) = self.overrides.get_key_value(name.as_ref()) {
                return Some(Priced { key: key.as_str(), source: PriceSource::Config, price: *price });
            }
        }
        if let Some(loaded) = &self.litellm {
            for name in &names {
                if let Some((key, model)) = loaded.models.get_key_value(name.as_ref()) {
                    return Some(Priced {
                        key: key.as_str(),
                        source: PriceSource::LitellmPrices,
                        price: model.price(),
                    });
                }
            }
        }
        names
            .iter()
            .find_map(|name| table::find(name).map(|(key, price)| Priced { key, source: PriceSource::Builtin, price }))
    }

    pub fn lookup(&self, model: &str) -> Option<ModelPrice<'_>> {
        self.find(model).map(|p| p.price)
    }

    /// The cost of `tokens` on `model` with no provider namespace known, or `None` when the
    /// model has no price or no token count is known.
    pub fn cost(&self, model: &str, tokens: &TokenCounts) -> Option<Cost> {
        self.cost_for(model, None, tokens)
    }

    /// The cost of `tokens` on `model` at a provider whose LiteLLM namespace is `namespace`.
    /// Cache reads and writes and audio are parts of `input`, reasoning and audio parts of
    /// `output`, each priced at its own rate.
    pub fn cost_for(&self, model: &str, namespace: Option<&str>, tokens: &TokenCounts) -> Option<Cost> {
        if tokens.input.is_none() && tokens.output.is_none() {
            return None;
        }
        Some(cost_at(&self.find_at(model, namespace)?.price, tokens))
    }
}

/// The names `model` is looked up by, in order (see [`PriceTable::find_at`]).
fn candidates<'m>(model: &'m str, namespace: Option<&str>) -> Vec<Cow<'m, str>> {
    let unprefixed = model.split_once('/').map(|(_, rest)| rest).filter(|rest| !rest.is_empty());
    let dated = strip_date_suffix(model);
    let mut names = Vec::with_capacity(6);
    if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
        // A name already under the namespace is its own best match (LiteLLM: `perplexity/sonar`
        // at perplexity is `perplexity/sonar`), then LiteLLM's own doubled keys
        // (`openrouter/openrouter/auto`).
        if model.strip_prefix(ns).is_some_and(|rest| rest.starts_with('/')) {
            names.push(Cow::Borrowed(model));
        }
        names.push(Cow::Owned(format!("{ns}/{model}")));
        if let Some(bare) = dated {
            names.push(Cow::Owned(format!("{ns}/{bare}")));
        }
    }
    names.extend(
        [Some(model), unprefixed, dated, unprefixed.and_then(strip_date_suffix)]
            .into_iter()
            .flatten()
            .map(Cow::Borrowed),
    );
    names
}
