//! LiteLLM's price list (`model_prices_and_context_window.json`) turned into Tollgate's prices,
//! at configuration load (`litellm_prices`) and in `tollgate prices import`.
//!
//! This is `scripts/generate-prices.py`'s conversion, rule for rule, so that a price file loaded
//! through configuration means exactly what the built-in table generated from the same file
//! means: `tests/pricing_import.rs` converts the pinned LiteLLM file here and requires the text
//! of `src/pricing/prices.json`, byte for byte. Change one, change both.
//!
//! Prices are converted exactly: a per-token float's shortest round-trip digits (the text
//! LiteLLM's JSON holds, Python's `repr`) are scaled to integer micro-USD per million tokens;
//! float noise (a residue of at most 10⁻⁶ micro-USD per million tokens) is rounded away, half to
//! even as Python's `Decimal` does; anything else that is not a whole number is not held, and
//! its model is skipped (unpriced) rather than priced wrongly.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::table::{TierRow, NONE};
use super::ModelPrice;

/// Modes whose cost is a function of token counts, which is what Tollgate reads.
const MODES: [&str; 4] = ["chat", "completion", "responses", "embedding"];
/// LiteLLM's `FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO` (litellm/constants.py, 0.5 in the
/// pinned release; the generator reads it from the wheel): Fireworks cache reads without a
/// price of their own cost this share of the input price.
const FIREWORKS_CACHE_READ_RATIO: (u64, u64) = (1, 2);

/// One model's prices as converted, tiers included (what one line of `prices.json` holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub input: u64,
    pub output: u64,
    pub cache_read: Option<u64>,
    pub cache_write_5m: Option<u64>,
    pub cache_write_1h: Option<u64>,
    pub reasoning: Option<u64>,
    pub audio_input: Option<u64>,
    pub audio_output: Option<u64>,
    /// Long-context tiers by ascending threshold, absent prices as [`NONE`].
    pub tiers: Vec<TierRow>,
    pub threshold_inclusive: bool,
    pub max_input_tokens: Option<u64>,
}

impl Converted {
    /// The model's price, its tiers borrowed from here.
    pub fn price(&self) -> ModelPrice<'_> {
        ModelPrice {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
            reasoning: self.reasoning,
            audio_input: self.audio_input,
            audio_output: self.audio_output,
            tiers: &self.tiers,
            threshold_inclusive: self.threshold_inclusive,
            max_input_tokens: self.max_input_tokens,
        }
    }

    /// The model's line of `prices.json`: `{"input":…,"output":…}` with the generator's field
    /// order and absent prices left out.
    pub fn to_json(&self) -> String {
        let mut fields: Vec<String> = Vec::new();
        let mut push = |name: &str, value: Option<u64>| {
            if let Some(v) = value {
                fields.push(format!("\"{name}\":{v}"));
            }
        };
        push("input", Some(self.input));
        push("output", Some(self.output));
        push("cache_read", self.cache_read);
        push("cache_write_5m", self.cache_write_5m);
        push("cache_write_1h", self.cache_write_1h);
        push("reasoning", self.reasoning);
        push("audio_input", self.audio_input);
        push("audio_output", self.audio_output);
        if !self.tiers.is_empty() {
            let tiers: Vec<String> = self.tiers.iter().map(tier_json).collect();
            fields.push(format!("\"above\":[{}]", tiers.join(",")));
        }
        if self.threshold_inclusive {
            fields.push("\"threshold_inclusive\":true".to_string());
        }
        if let Some(max) = self.max_input_tokens {
            fields.push(format!("\"max_input_tokens\":{max}"));
        }
        format!("{{{}}}", fields.join(","))
    }
}

fn tier_json(tier: &TierRow) -> String {
    let named = [
        ("above", tier.above),
        ("input", tier.input),
        ("output", tier.output),
        ("cache_read", tier.cache_read),
        ("cache_write_5m", tier.cache_write_5m),
        ("cache_write_1h", tier.cache_write_1h),
    ];
    let fields: Vec<String> =
        named.iter().filter(|(_, v)| *v != NONE).map(|(name, v)| format!("\"{name}\":{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

/// A whole price list converted: the models kept, and the reason each other token-priced model
/// was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversion {
    pub models: BTreeMap<String, Converted>,
    /// Token-priced entries (chat, completion, responses, embedding) that cannot be held exactly.
    pub skipped: BTreeMap<String, String>,
    /// Entries that are not priced by tokens (images, audio transcription, …) or not entries at
    /// all (`sample_spec`): left out as the generator leaves them out.
    pub not_token_priced: usize,
}

impl Conversion {
    /// The models as `prices.json` lines, sorted by name: the text the generator writes between
    /// its header and its closing braces.
    pub fn model_lines(&self) -> String {
        let lines: Vec<String> = self
            .models
            .iter()
            .map(|(name, m)| format!("{}: {}", serde_json::Value::from(name.as_str()), m.to_json()))
            .collect();
        lines.join(",\n")
    }

    /// The whole `prices.json` text for `litellm_version` and `generated`, as the generator
    /// renders it.
    pub fn render(&self, litellm_version: &str, generated: &str) -> String {
        format!(
            "{{\n\"source\": \"LiteLLM model_prices_and_context_window.json (MIT), litellm {litellm_version} wheel\",\n\
             \"litellm_version\": \"{litellm_version}\",\n\"generated\": \"{generated}\",\n\
             \"unit\": \"micro-USD per million tokens\",\n\"models\": {{\n{}\n}}}}\n",
            self.model_lines()
        )
    }
}

/// A price list that is not LiteLLM's shape: the JSON path of the bad part, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadList {
    pub path: String,
    pub reason: String,
}

/// Converts LiteLLM's price list (the object of `model_prices_and_context_window.json`, or any
/// subset of its entries). A model that cannot be held exactly is skipped with its reason, as
/// the generator skips it; only a list that is not LiteLLM's shape at all is an error: an entry
/// that is not an object, or whose `mode` or `litellm_provider` is not a string.
pub fn convert(list: &Map<String, Value>) -> Result<Conversion, BadList> {
    let mut conversion = Conversion::default();
    for (key, entry) in list {
        if key == "sample_spec" {
            conversion.not_token_priced += 1;
            continue;
        }
        let bad = |field: &str, reason: &str| BadList { path: format!("{key}{field}"), reason: reason.to_string() };
        let Value::Object(entry) = entry else {
            return Err(bad("", "is not an object (a LiteLLM model entry)"));
        };
        for field in ["mode", "litellm_provider"] {
            if entry.get(field).is_some_and(|v| !v.is_string() && !v.is_null()) {
                return Err(bad(&format!(".{field}"), "is not a string"));
            }
        }
        if !entry.get("mode").and_then(Value::as_str).is_some_and(|m| MODES.contains(&m)) {
            conversion.not_token_priced += 1;
            continue;
        }
        if !(key.is_ascii() && key.bytes().all(|b| (b' '..=b'~').contains(&b))) || key.is_empty() {
            conversion.skipped.insert(key.clone(), "model name is not printable ASCII".to_string());
            continue;
        }
        match reduce_entry(entry) {
            Ok(model) => {
                conversion.models.insert(key.clone(), model);
            }
            Err(reason) => {
                conversion.skipped.insert(key.clone(), reason);
            }
        }
    }
    Ok(conversion)
}

/// The part of a LiteLLM entry the conversion reads: its mode, provider and context window, the
/// pricing schemes it refuses, the prices it converts and every long-context tier price. A list
/// trimmed this way converts to exactly what the whole list converts to
/// (`tests/pricing_import.rs`), at a fraction of the size (batch, priority and other service-tier
/// prices, capabilities and notes are dropped).
pub fn trim_entry(entry: &Map<String, Value>) -> Map<String, Value> {
    const READ: [&str; 14] = [
        "mode",
        "litellm_provider",
        "max_input_tokens",
        "tiered_pricing",
        "off_peak_pricing",
        "input_cost_per_token",
        "output_cost_per_token",
        "output_cost_per_image_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
        "output_cost_per_reasoning_token",
        "input_cost_per_audio_token",
        "output_cost_per_audio_token",
    ];
    const TIERED: [&str; 4] = [
        "input_cost_per_token_above_",
        "output_cost_per_token_above_",
        "cache_read_input_token_cost_above_",
        "cache_creation_input_token_cost_above_",
    ];
    let read = |name: &str| {
        READ.contains(&name)
            // Vertex AI's 128k prices make the entry refused: keep them so it still is.
            || name.ends_with("_above_128k_tokens")
            || (TIERED.iter().any(|prefix| name.starts_with(prefix)) && name.ends_with("_tokens"))
    };
    entry.iter().filter(|(name, _)| read(name)).map(|(name, value)| (name.clone(), value.clone())).collect()
}

/// The prices Tollgate needs from one LiteLLM entry, or the reason to skip it
/// (`reduce_entry` in scripts/generate-prices.py).
fn reduce_entry(entry: &Map<String, Value>) -> Result<Converted, String> {
    let provider = entry.get("litellm_provider").and_then(Value::as_str).unwrap_or("");
    let present = |name: &str| entry.get(name).is_some_and(|v| !v.is_null());
    if present("tiered_pricing") {
        return Err("range-tiered pricing (tiered_pricing)".into());
    }
    if present("off_peak_pricing") {
        return Err("time-of-day pricing (off_peak_pricing)".into());
    }
    if !present("input_cost_per_token") {
        return Err("no input_cost_per_token".into());
    }
    if provider.starts_with("vertex_ai") && entry.keys().any(|k| k.ends_with("_above_128k_tokens")) {
        return Err("Vertex AI 128k pricing (priced by LiteLLM's own Vertex path)".into());
    }
    let price = |name: &str| -> Result<Option<u64>, String> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => micro_usd_per_million(value).map(Some),
        }
    };

    let input = price("input_cost_per_token")?.unwrap_or(0);
    let mut output = price("output_cost_per_token")?;
    // LiteLLM: a model without an output token price bills output at its image-token price.
    if output.unwrap_or(0) == 0 {
        output = price("output_cost_per_image_token")?.filter(|p| *p != 0).or(output);
    }
    let mut cache_read = price("cache_read_input_token_cost")?;
    if cache_read.is_none() && provider == "fireworks_ai" {
        // LiteLLM's default for Fireworks: cache reads at a fixed share of the input price.
        let (numerator, denominator) = FIREWORKS_CACHE_READ_RATIO;
        let scaled = u128::from(input) * u128::from(numerator);
        if scaled % u128::from(denominator) != 0 {
            return Err("default Fireworks cache-read price".into());
        }
        cache_read = u64::try_from(scaled / u128::from(denominator)).ok();
    }
    let cache_write_5m = price("cache_creation_input_token_cost")?;
    let cache_write_1h = price("cache_creation_input_token_cost_above_1hr")?;
    // LiteLLM bills xAI reasoning tokens as ordinary output tokens.
    let reasoning = if provider == "xai" { None } else { price("output_cost_per_reasoning_token")? };
    let audio_input = price("input_cost_per_audio_token")?;
    let audio_output = price("output_cost_per_audio_token")?;

    let mut tiers = Vec::new();
    for (name, value) in entry {
        let Some(threshold) = tier_threshold_text(name) else { continue };
        if value.is_null() {
            continue;
        }
        let tier_price = |field: String| price(&field).and_then(|p| compact(p, "tier price"));
        tiers.push(TierRow {
            above: compact(Some(threshold_tokens(threshold)?), "tier threshold")?,
            input: compact(Some(micro_usd_per_million(value)?), "tier price")?,
            output: tier_price(format!("output_cost_per_token_above_{threshold}_tokens"))?,
            cache_read: tier_price(format!("cache_read_input_token_cost_above_{threshold}_tokens"))?,
            cache_write_5m: tier_price(format!("cache_creation_input_token_cost_above_{threshold}_tokens"))?,
            cache_write_1h: tier_price(format!("cache_creation_input_token_cost_above_1hr_above_{threshold}_tokens"))?,
        });
    }
    tiers.sort_by_key(|t| t.above);
    if tiers.windows(2).any(|pair| matches!(pair, [a, b] if a.above == b.above)) {
        return Err("two tiers with the same threshold".into());
    }

    let max_input_tokens =
        entry.get("max_input_tokens").filter(|v| v.is_u64()).and_then(Value::as_u64).filter(|m| *m > 0 && *m < 1 << 32);
    let model = Converted {
        input,
        output: output.unwrap_or(0),
        cache_read,
        cache_write_5m,
        cache_write_1h,
        reasoning,
        audio_input,
        audio_output,
        tiers,
        // xAI bills the higher tier once the prompt reaches the threshold (LiteLLM: >=).
        threshold_inclusive: provider == "xai",
        max_input_tokens,
    };
    // The built-in table holds prices as u32, one value reserved for "absent"; a loaded list is
    // held to the same bound so that it means what the generated table would.
    let base = [
        Some(model.input),
        Some(model.output),
        model.cache_read,
        model.cache_write_5m,
        model.cache_write_1h,
        model.reasoning,
        model.audio_input,
        model.audio_output,
    ];
    if base.iter().flatten().any(|p| *p >= u64::from(NONE)) {
        return Err("a price too large for the compact table".into());
    }
    Ok(model)
}

/// `input_cost_per_token_above_200k_tokens` → `200k` (digits, then an optional `k`).
fn tier_threshold_text(name: &str) -> Option<&str> {
    let text = name.strip_prefix("input_cost_per_token_above_")?.strip_suffix("_tokens")?;
    let digits = text.strip_suffix('k').unwrap_or(text);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// LiteLLM's threshold text (`200k`, `128000`) → tokens.
fn threshold_tokens(text: &str) -> Result<u64, String> {
    let (digits, scale) = match text.strip_suffix('k') {
        Some(digits) => (digits, 1000),
        None => (text, 1),
    };
    let value = digits.parse::<u64>().ok().and_then(|v| v.checked_mul(scale));
    match value {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("threshold {text:?}")),
    }
}

/// A price for the compact tier rows: `NONE` when absent, refused when it does not fit.
fn compact(price: Option<u64>, what: &str) -> Result<u32, String> {
    match price {
        None => Ok(NONE),
        Some(p) => u32::try_from(p).ok().filter(|p| *p != NONE).ok_or_else(|| format!("{what} too large")),
    }
}

/// USD per token (LiteLLM's number) → exact integer micro-USD per million tokens
/// (`micro_usd_per_million` in the generator).
pub fn micro_usd_per_million(per_token: &Value) -> Result<u64, String> {
    let Value::Number(number) = per_token else {
        return Err(format!("not a number: {per_token}"));
    };
    // The shortest digits that read back as the same float: Python's repr, LiteLLM's text.
    let text = match (number.as_u64(), number.as_i64(), number.as_f64()) {
        (Some(whole), _, _) => format!("{whole}e0"),
        (None, Some(negative), _) => return Err(format!("negative price: {negative}")),
        (None, None, Some(float)) => format!("{float:e}"),
        _ => return Err(format!("not a number: {per_token}")),
    };
    scale_to_micro_per_million(&text).map_err(|reason| format!("{number} USD/token {reason}"))
}

/// `<digits>[.<digits>]e<exponent>` USD per token → micro-USD per million tokens (× 10¹²),
/// exact, noise of at most 10⁻⁶ rounded half to even.
fn scale_to_micro_per_million(text: &str) -> Result<u64, String> {
    let (mantissa, exponent) = text.split_once('e').ok_or("is not a number")?;
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches('-');
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let exponent: i64 = exponent.parse().map_err(|_| "has a bad exponent")?;
    if digits.is_empty() {
        return Ok(0); // 0, and -0 (not below zero)
    }
    if negative {
        return Err("is negative".into());
    }
    if digits.len() > 20 {
        return Err("has more digits than a float".into());
    }
    let value: u128 = digits.parse().map_err(|_| "is not a number")?;
    let fraction_digits = i64::try_from(fraction.len()).map_err(|_| "is too long")?;
    // value × 10^shift micro-USD per million tokens.
    let shift = exponent - fraction_digits + 12;
    if shift >= 0 {
        let scale = u32::try_from(shift).ok().and_then(|s| 10u128.checked_pow(s));
        let scaled = scale.and_then(|s| value.checked_mul(s)).and_then(|v| u64::try_from(v).ok());
        return scaled.ok_or_else(|| "is too large".into());
    }
    let places = u32::try_from(-shift).map_err(|_| "is too small")?;
    if places > 30 {
        // Below 10⁻¹⁰ micro-USD per million tokens (value has at most 20 digits): noise around 0.
        return Ok(0);
    }
    let scale = 10u128.pow(places);
    let (quotient, remainder) = (value / scale, value % scale);
    let round_up = remainder * 2 > scale || (remainder * 2 == scale && quotient % 2 == 1);
    let (whole, residue) = if round_up { (quotient + 1, scale - remainder) } else { (quotient, remainder) };
    // Noise: a residue of at most 10⁻⁶ micro-USD per million tokens (residue / scale ≤ 10⁻⁶).
    if residue * 1_000_000 > scale {
        let fraction = format!("{remainder:0>width$}", width = places as usize);
        return Err(format!("is {quotient}.{} micro-USD per million tokens", fraction.trim_end_matches('0')));
    }
    u64::try_from(whole).map_err(|_| "is too large".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn micro(value: Value) -> Result<u64, String> {
        micro_usd_per_million(&value)
    }

    fn parsed(text: &str) -> Result<u64, String> {
        micro(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn float_prices_convert_exactly_as_the_generator_does() {
        // The generator's own cases (tests/e2e/test_price_generator.py).
        for (text, expected) in [
            ("2.5e-06", 2_500_000),
            ("1.5e-07", 150_000),
            ("3e-07", 300_000),
            ("1e-12", 1),
            ("0.0", 0),
            ("0", 0),
            ("1.875e-07", 187_500),
            ("1e-05", 10_000_000),
            ("1.6000000000000001e-06", 1_600_000),
            ("2.9999900000000002e-06", 2_999_990),
            ("9.499999999999999e-07", 950_000),
            ("3.0000000000000004e-07", 300_000),
            ("0.0000025", 2_500_000),
            ("-0.0", 0),
            ("1", 1_000_000_000_000),
        ] {
            assert_eq!(parsed(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn prices_that_are_not_whole_micro_usd_per_million_are_refused() {
        for text in ["8.33333333333333e-08", "1e-13", "-1e-06", "\"3e-07\"", "null", "true", "-3"] {
            assert!(parsed(text).is_err(), "{text}");
        }
        assert!(micro(json!(1e300)).unwrap_err().contains("too large"));
    }

    #[test]
    fn an_entry_is_reduced_to_tollgates_prices_and_tiers() {
        let list = json!({
            "sample_spec": {"mode": "chat"},
            "m": {
                "litellm_provider": "anthropic", "mode": "chat", "max_input_tokens": 1_000_000,
                "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
                "cache_creation_input_token_cost_above_1hr": 6e-06,
                "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
            },
            "img": {"mode": "image_generation", "input_cost_per_token": 1e-06},
            "odd": {"mode": "chat", "input_cost_per_token": 8.33333333333333e-08},
            "fw": {"mode": "chat", "litellm_provider": "fireworks_ai", "input_cost_per_token": 3e-07},
            "x": {"mode": "chat", "litellm_provider": "xai", "input_cost_per_token": 2e-07,
                  "output_cost_per_reasoning_token": 1e-06},
        });
        let c = convert(list.as_object().unwrap()).unwrap();
        assert_eq!(
            c.models["m"].to_json(),
            r#"{"input":3000000,"output":15000000,"cache_read":300000,"cache_write_5m":3750000,"cache_write_1h":6000000,"above":[{"above":200000,"input":6000000,"output":22500000}],"max_input_tokens":1000000}"#
        );
        assert_eq!(c.models["fw"].cache_read, Some(150_000));
        assert_eq!(c.models["x"].to_json(), r#"{"input":200000,"output":0,"threshold_inclusive":true}"#);
        assert!(c.skipped["odd"].contains("micro-USD per million tokens"), "{:?}", c.skipped);
        assert_eq!(c.not_token_priced, 2);
    }

    #[test]
    fn a_list_that_is_not_litellms_shape_names_the_bad_part() {
        let bad = |v: Value| convert(v.as_object().unwrap()).unwrap_err().path;
        assert_eq!(bad(json!({"m": 3})), "m");
        assert_eq!(bad(json!({"m": {"mode": 1}})), "m.mode");
        assert_eq!(bad(json!({"m": {"mode": "chat", "litellm_provider": []}})), "m.litellm_provider");
    }
}
