//! Prices and cost. Money is integer arithmetic: prices are micro-USD per million tokens,
//! which makes the cost of one token exactly one pico-USD per price unit, so a cost is
//! `tokens × price` in pico-USD with no rounding anywhere.

use std::collections::HashMap;

use crate::usage::TokenCounts;

/// Prices of one model, in micro-USD per million tokens (USD 2.50 / M tokens = 2_500_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: u64,
    /// Price of prompt tokens read from the provider's cache; `None` bills them as input.
    pub cached_input: Option<u64>,
    /// Prices of prompt tokens written to the cache for 5 minutes and 1 hour (Anthropic);
    /// `None` bills them as input.
    pub cache_write_5m: Option<u64>,
    pub cache_write_1h: Option<u64>,
    pub output: u64,
}

/// An exact amount of money in pico-USD (10⁻¹² USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost {
    pub pico_usd: u64,
}

impl Cost {
    /// Decimal USD with every significant digit and no trailing zeros, e.g. `0.0000114`.
    pub fn usd_string(self) -> String {
        const SCALE: u64 = 1_000_000_000_000;
        let whole = self.pico_usd / SCALE;
        let fraction = self.pico_usd % SCALE;
        if fraction == 0 {
            return format!("{whole}.0");
        }
        let digits = format!("{fraction:012}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Models and their prices. Lookups accept dated snapshots of a listed model
/// (`gpt-4o-mini-2024-07-18`, `claude-3-5-haiku-20241022`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    prices: HashMap<String, ModelPrice>,
}

/// USD per million tokens → micro-USD per million tokens, for readable table entries.
const fn usd(dollars_times_1000: u64) -> u64 {
    dollars_times_1000 * 1000
}

/// (model, input, cached input, output) in thousandths of a USD per million tokens.
/// A first small table; the full versioned table comes from LiteLLM's price list.
const BUILTIN: &[(&str, u64, Option<u64>, u64)] = &[
    ("gpt-4o", 2_500, Some(1_250), 10_000),
    ("gpt-4o-mini", 150, Some(75), 600),
    ("gpt-4.1", 2_000, Some(500), 8_000),
    ("gpt-4.1-mini", 400, Some(100), 1_600),
    ("gpt-4.1-nano", 100, Some(25), 400),
    ("gpt-5", 1_250, Some(125), 10_000),
    ("gpt-5-mini", 250, Some(25), 2_000),
    ("gpt-5-nano", 50, Some(5), 400),
    ("o3", 2_000, Some(500), 8_000),
    ("o4-mini", 1_100, Some(275), 4_400),
    ("gpt-4-turbo", 10_000, None, 30_000),
    ("gpt-3.5-turbo", 500, None, 1_500),
    ("claude-opus-4-1", 15_000, Some(1_500), 75_000),
    ("claude-sonnet-4-5", 3_000, Some(300), 15_000),
    ("claude-sonnet-4", 3_000, Some(300), 15_000),
    ("claude-haiku-4-5", 1_000, Some(100), 5_000),
    ("claude-3-5-haiku", 800, Some(80), 4_000),
];

impl PriceTable {
    pub fn builtin() -> Self {
        let prices = BUILTIN
            .iter()
            .map(|&(model, input, cached, output)| {
                let anthropic = model.starts_with("claude");
                let price = ModelPrice {
                    input: usd(input),
                    cached_input: cached.map(usd),
                    // Anthropic bills cache writes at 1.25x (5 minutes) and 2x (1 hour) the input price.
                    cache_write_5m: anthropic.then(|| usd(input) * 5 / 4),
                    cache_write_1h: anthropic.then(|| usd(input) * 2),
                    output: usd(output),
                };
                (model.to_string(), price)
            })
            .collect();
        PriceTable { prices }
    }

    pub fn lookup(&self, model: &str) -> Option<ModelPrice> {
        if let Some(price) = self.prices.get(model) {
            return Some(*price);
        }
        let undated = strip_date_suffix(model)?;
        self.prices.get(undated).copied()
    }

    /// The cost of `tokens` on `model`, or `None` when the model has no price or no token
    /// count is known. Cache reads and writes are parts of `input`, priced at their own rates.
    pub fn cost(&self, model: &str, tokens: &TokenCounts) -> Option<Cost> {
        if tokens.input.is_none() && tokens.output.is_none() {
            return None;
        }
        let price = self.lookup(model)?;
        let count = |c: Option<crate::usage::Count>| c.map_or(0, |c| c.tokens);
        let input = count(tokens.input);
        // Parts can never exceed the whole, whatever a provider reports.
        let read = count(tokens.cache_read).min(input);
        let write_5m = count(tokens.cache_write_5m).min(input - read);
        let write_1h = count(tokens.cache_write_1h).min(input - read - write_5m);
        let uncached = input - read - write_5m - write_1h;
        let parts = [
            (uncached, price.input),
            (read, price.cached_input.unwrap_or(price.input)),
            (write_5m, price.cache_write_5m.unwrap_or(price.input)),
            (write_1h, price.cache_write_1h.unwrap_or(price.input)),
            (count(tokens.output), price.output),
        ];
        let pico_usd = parts.iter().fold(0u64, |sum, (n, p)| sum.saturating_add(n.saturating_mul(*p)));
        Some(Cost { pico_usd })
    }
}

/// `name-2024-07-18` → `name`, `name-20241022` → `name`; `None` when there is no date suffix.
fn strip_date_suffix(model: &str) -> Option<&str> {
    let bytes = model.as_bytes();
    let all_digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let dashed = model.len().checked_sub(11).and_then(|at| {
        let tail = bytes.get(at..)?;
        let is_date = tail.first() == Some(&b'-')
            && all_digits(tail.get(1..5)?)
            && tail.get(5) == Some(&b'-')
            && all_digits(tail.get(6..8)?)
            && tail.get(8) == Some(&b'-')
            && all_digits(tail.get(9..11)?);
        is_date.then(|| model.get(..at)).flatten()
    });
    dashed.or_else(|| {
        let at = model.len().checked_sub(9)?;
        let tail = bytes.get(at..)?;
        (tail.first() == Some(&b'-') && all_digits(tail.get(1..)?)).then(|| model.get(..at)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Count;

    fn tokens(input: u64, cache_read: u64, output: u64) -> TokenCounts {
        TokenCounts {
            input: Some(Count::provider(input)),
            cache_read: Some(Count::provider(cache_read)),
            output: Some(Count::provider(output)),
            ..TokenCounts::default()
        }
    }

    #[test]
    fn cost_is_exact_integer_arithmetic() {
        let table = PriceTable::builtin();
        // gpt-4o-mini: $0.15 in, $0.60 out per M tokens → 150 000 and 600 000 pico-USD per token.
        let cost = table.cost("gpt-4o-mini", &tokens(12, 0, 16)).unwrap();
        assert_eq!(cost.pico_usd, 12 * 150_000 + 16 * 600_000);
        assert_eq!(cost.usd_string(), "0.0000114");
    }

    #[test]
    fn cached_prompt_tokens_are_billed_at_the_cached_price() {
        let table = PriceTable::builtin();
        let cost = table.cost("gpt-4o", &tokens(1000, 400, 0)).unwrap();
        assert_eq!(cost.pico_usd, 600 * 2_500_000 + 400 * 1_250_000);
        // A model without a cached price bills cached tokens as input.
        let cost = table.cost("gpt-3.5-turbo", &tokens(10, 10, 0)).unwrap();
        assert_eq!(cost.pico_usd, 10 * 500_000);
    }

    #[test]
    fn cache_writes_are_billed_at_their_lifetimes_price() {
        let table = PriceTable::builtin();
        let counts = TokenCounts {
            input: Some(Count::provider(1000)),
            cache_read: Some(Count::provider(100)),
            cache_write_5m: Some(Count::provider(200)),
            cache_write_1h: Some(Count::provider(300)),
            output: Some(Count::provider(10)),
            ..TokenCounts::default()
        };
        // claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 5m write, $6 1h write, $15 out.
        let cost = table.cost("claude-sonnet-4-5-20250929", &counts).unwrap();
        assert_eq!(
            cost.pico_usd,
            400 * 3_000_000 + 100 * 300_000 + 200 * 3_750_000 + 300 * 6_000_000 + 10 * 15_000_000
        );
    }

    #[test]
    fn parts_larger_than_input_are_clamped() {
        let table = PriceTable::builtin();
        let cost = table.cost("gpt-4o", &tokens(5, 50, 0)).unwrap();
        assert_eq!(cost.pico_usd, 5 * 1_250_000);
    }

    #[test]
    fn nothing_counted_means_no_cost() {
        assert_eq!(PriceTable::builtin().cost("gpt-4o", &TokenCounts::default()), None);
    }

    #[test]
    fn dated_snapshots_use_the_base_price() {
        let table = PriceTable::builtin();
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18"), table.lookup("gpt-4o-mini"));
        assert_eq!(table.lookup("claude-3-5-haiku-20241022"), table.lookup("claude-3-5-haiku"));
        assert!(table.lookup("gpt-4o-mini-2024-07").is_none());
        assert!(table.lookup("my-local-llama").is_none());
    }

    #[test]
    fn absurd_usage_saturates_instead_of_overflowing() {
        let table = PriceTable::builtin();
        let cost = table.cost("gpt-4o", &tokens(u64::MAX, 0, u64::MAX)).unwrap();
        assert_eq!(cost.pico_usd, u64::MAX);
    }

    #[test]
    fn usd_strings_keep_every_digit() {
        assert_eq!(Cost { pico_usd: 0 }.usd_string(), "0.0");
        assert_eq!(Cost { pico_usd: 1 }.usd_string(), "0.000000000001");
        assert_eq!(Cost { pico_usd: 2_500_000_000_000 }.usd_string(), "2.5");
        assert_eq!(Cost { pico_usd: 3_000_000_000_000 }.usd_string(), "3.0");
    }
}
