//! The compact form of the built-in table (`builtin.rs`, generated) and its lookup: a sorted
//! static array searched in place, so a VM starts with the table ready and nothing to parse.

use super::builtin;
use super::{ModelPrice, Tier};

/// Marks an absent price in the generated rows.
pub const NONE: u32 = u32::MAX;

/// One set of prices, shared by every model that has exactly these prices (micro-USD per
/// million tokens; `NONE` where LiteLLM has no price).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub input: u32,
    pub output: u32,
    pub cache_read: u32,
    pub cache_write_5m: u32,
    pub cache_write_1h: u32,
    pub reasoning: u32,
    pub audio_input: u32,
    pub audio_output: u32,
    /// (first, count) in `builtin::TIERS`, sorted by threshold.
    pub tiers: (u16, u16),
    pub threshold_inclusive: bool,
}

/// Prices that replace the base prices once the prompt is larger than `above` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierRow {
    pub above: u32,
    pub input: u32,
    pub output: u32,
    pub cache_read: u32,
    pub cache_write_5m: u32,
    pub cache_write_1h: u32,
}

fn opt(value: u32) -> Option<u64> {
    (value != NONE).then_some(u64::from(value))
}

impl TierRow {
    pub fn tier(&self) -> Tier {
        Tier {
            above: u64::from(self.above),
            input: u64::from(self.input),
            output: opt(self.output),
            cache_read: opt(self.cache_read),
            cache_write_5m: opt(self.cache_write_5m),
            cache_write_1h: opt(self.cache_write_1h),
        }
    }
}

/// The built-in entry named exactly `model`: its key (static) and its prices.
pub fn find(model: &str) -> Option<(&'static str, ModelPrice<'static>)> {
    let at = builtin::MODELS.binary_search_by(|(name, _, _)| (*name).cmp(model)).ok()?;
    let &(name, row, max_input) = builtin::MODELS.get(at)?;
    let row = builtin::ROWS.get(usize::from(row))?;
    let (first, count) = (usize::from(row.tiers.0), usize::from(row.tiers.1));
    let tiers = builtin::TIERS.get(first..first + count)?;
    let price = ModelPrice {
        input: u64::from(row.input),
        output: u64::from(row.output),
        cache_read: opt(row.cache_read),
        cache_write_5m: opt(row.cache_write_5m),
        cache_write_1h: opt(row.cache_write_1h),
        reasoning: opt(row.reasoning),
        audio_input: opt(row.audio_input),
        audio_output: opt(row.audio_output),
        tiers,
        threshold_inclusive: row.threshold_inclusive,
        max_input_tokens: (max_input != 0).then_some(u64::from(max_input)),
    };
    Some((name, price))
}

/// Whether some built-in model name starts with `prefix`.
pub fn has_prefix(prefix: &str) -> bool {
    let at = builtin::MODELS.partition_point(|(name, _, _)| *name < prefix);
    builtin::MODELS.get(at).is_some_and(|(name, _, _)| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_sorted_and_unique_so_binary_search_finds_every_one() {
        assert!(builtin::MODELS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(builtin::MODELS.len(), builtin::MODEL_COUNT);
        for (name, _, _) in builtin::MODELS {
            assert_eq!(find(name).map(|(n, _)| n), Some(*name));
        }
    }

    #[test]
    fn every_row_and_tier_reference_is_in_bounds() {
        for (name, row, _) in builtin::MODELS {
            let row = builtin::ROWS.get(usize::from(*row)).unwrap();
            let end = usize::from(row.tiers.0) + usize::from(row.tiers.1);
            assert!(end <= builtin::TIERS.len(), "{name}");
            assert_ne!(row.input, NONE, "{name}: every model has an input price");
            assert_ne!(row.output, NONE, "{name}: output defaults to 0, never absent");
        }
        assert!(builtin::TIERS.iter().all(|t| t.input != NONE && t.above != NONE));
    }
}
