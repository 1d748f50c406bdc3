//! The one usage record every request ends with, and the provider-neutral token counts in it.
//!
//! Providers count differently: OpenAI's `prompt_tokens` include cached tokens, Anthropic's
//! `input_tokens` exclude cache reads and writes. Here `input` is always *every* prompt token the
//! provider processed and the cache figures are parts of it; `output` is every generated token
//! and `reasoning` a part of it. Each number says where it came from.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::budgets::summary::BudgetSummary;
use crate::guardrails::Decision;
use crate::json_write::{push_u64, ObjectWriter};
use crate::pricing::Cost;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Reported by the provider in the response.
    Provider,
    /// Counted or estimated by Tollgate because the provider did not report it.
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub tokens: u64,
    pub source: Source,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Provider => "provider",
            Source::Estimated => "estimated",
        }
    }
}

impl Count {
    pub fn provider(tokens: u64) -> Self {
        Count { tokens, source: Source::Provider }
    }

    pub fn estimated(tokens: u64) -> Self {
        Count { tokens, source: Source::Estimated }
    }
}

/// The kinds of token by the names records and reports give them, in the order they list them.
pub const TOKEN_KINDS: [&str; 8] =
    ["input", "cache_read", "cache_write_5m", "cache_write_1h", "audio_input", "output", "reasoning", "audio_output"];

/// `TOKEN_KINDS`' positions in the alphabetical order of their names, sorted when compiling
/// (a sort in every usage record cost each request some 500 instructions).
const ALPHABETICAL: [usize; 8] = alphabetical(&TOKEN_KINDS);

/// Positions of `names` in their alphabetical (byte) order: an insertion sort, as a const fn.
/// Run only when compiling (an index out of range would fail the build, never a request).
#[allow(clippy::indexing_slicing)]
const fn alphabetical<const N: usize>(names: &[&str; N]) -> [usize; N] {
    let mut order = [0; N];
    let mut i = 0;
    while i < N {
        order[i] = i;
        let mut j = i;
        while j > 0 && before(names[order[j]].as_bytes(), names[order[j - 1]].as_bytes()) {
            (order[j], order[j - 1]) = (order[j - 1], order[j]);
            j -= 1;
        }
        i += 1;
    }
    order
}

/// `a` sorts before `b` (byte by byte, a prefix first), as `str`'s `Ord` does.
#[allow(clippy::indexing_slicing)] // const: see `alphabetical`
const fn before(a: &[u8], b: &[u8]) -> bool {
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

/// Token counts by type. `None` means "not reported and not estimated".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Every prompt token: uncached, read from cache and written to cache.
    pub input: Option<Count>,
    /// Part of `input` served from the provider's prompt cache.
    pub cache_read: Option<Count>,
    /// Part of `input` written to the cache for 5 minutes (Anthropic's default lifetime).
    pub cache_write_5m: Option<Count>,
    /// Part of `input` written to the cache for 1 hour.
    pub cache_write_1h: Option<Count>,
    /// Part of `input` that was audio.
    pub audio_input: Option<Count>,
    /// Every generated token, reasoning included.
    pub output: Option<Count>,
    /// Part of `output` spent on reasoning.
    pub reasoning: Option<Count>,
    /// Part of `output` that was audio.
    pub audio_output: Option<Count>,
}

impl TokenCounts {
    /// Fields reported in `newer` replace those here; the rest stay. Streams report usage in
    /// several events (Anthropic's `message_start`, then cumulative `message_delta`s).
    pub fn merge(&mut self, newer: TokenCounts) {
        for (mine, (_, theirs)) in self.slots().into_iter().zip(newer.fields()) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
    }

    /// Every kind's name (`TOKEN_KINDS`) with its count, in that order.
    pub fn fields(mut self) -> impl Iterator<Item = (&'static str, Option<Count>)> {
        TOKEN_KINDS.into_iter().zip(self.slots().map(|slot| *slot))
    }

    /// Every count, in `TOKEN_KINDS` order: the one place that pairs fields with kinds.
    fn slots(&mut self) -> [&mut Option<Count>; 8] {
        [
            &mut self.input,
            &mut self.cache_read,
            &mut self.cache_write_5m,
            &mut self.cache_write_1h,
            &mut self.audio_input,
            &mut self.output,
            &mut self.reasoning,
            &mut self.audio_output,
        ]
    }

    pub fn is_empty(&self) -> bool {
        *self == TokenCounts::default()
    }

    /// The reported kinds by name in alphabetical order (how the record lists them).
    fn sorted(mut self) -> impl Iterator<Item = (&'static str, Count)> {
        let counts: [Option<Count>; 8] = self.slots().map(|slot| *slot);
        ALPHABETICAL.into_iter().filter_map(move |k| Some((*TOKEN_KINDS.get(k)?, (*counts.get(k)?)?)))
    }
}

/// How the exchange ended, as far as the filter could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider's answer arrived whole.
    Complete,
    /// The upstream answered with an error status.
    UpstreamError,
    /// The stream ended before its final event (upstream reset, client gone, timeout).
    Truncated,
    /// Tollgate answered itself (a 4xx for a request it would not forward).
    Rejected,
}

impl Outcome {
    /// The name records and metrics give it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Truncated => "truncated",
            Outcome::Rejected => "rejected",
        }
    }
}

/// One record per request: what was asked, what served it, what it used and cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub api: &'static str,
    pub model_requested: Option<String>,
    pub model_served: Option<String>,
    /// The provider Tollgate routed to; `None` when the proxy's own route chose the upstream.
    pub provider: Option<String>,
    /// Who the request is for (see the `tenant` configuration).
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub project: Option<String>,
    pub streaming: bool,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub tokens: TokenCounts,
    /// `None` when the model has no price or nothing was counted.
    pub cost: Option<Cost>,
    /// The price table entry `cost` was priced as (`mistral/mistral-large-latest` for
    /// `mistral-large-latest` at a `mistral` provider); `None` when unpriced.
    pub priced_as: Option<String>,
    pub time_to_first_token_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// What the guardrails decided (never the matched text); empty when nothing was found.
    pub guardrails: GuardrailSummary,
    /// What the budgets did (reserved, settled, which limit decided); `None` when no limit or
    /// output ceiling applied.
    pub budget: Option<BudgetSummary>,
}

/// The guardrail decisions of one exchange, request and response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardrailSummary {
    pub decisions: Vec<Decision>,
    /// The check whose `block` refused the request or ended the response.
    pub blocked_by: Option<BlockedBy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedBy {
    pub policy: String,
    pub check: String,
    /// `request` or `response`.
    pub phase: &'static str,
}

impl GuardrailSummary {
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty() && self.blocked_by.is_none()
    }

    fn to_json(&self) -> Value {
        json!({
            "blocked_by": self.blocked_by.as_ref().map(|b| json!({"policy": b.policy, "check": b.check, "phase": b.phase})),
            "decisions": self.decisions.iter().map(Decision::to_json).collect::<Vec<_>>(),
        })
    }
}

impl UsageRecord {
    /// The record as one JSON object, for access logs and Kong's log plugins. Never contains
    /// prompt or completion text. `guardrails` is there only when a guardrail found something.
    /// Written field by field ([`ObjectWriter`]; building a `serde_json::Value` first was half of
    /// the filter's own work per request, and serde's serializer more code than this needs); keys
    /// come in sorted order, the bytes a `Value` would write (a test compares them).
    pub fn to_json_string(&self) -> String {
        let mut record = ObjectWriter::new(512);
        record.str("api", self.api);
        match self.cost {
            Some(cost) => record.str("cost_usd", &cost.usd_string()),
            None => record.raw("cost_usd", "null"),
        }
        if let Some(budget) = &self.budget {
            record.raw("budget", &budget.to_json());
        }
        record.opt_u64("duration_ms", self.duration_ms);
        if !self.guardrails.is_empty() {
            record.raw("guardrails", &self.guardrails.to_json().to_string());
        }
        record.opt_str("model_requested", self.model_requested.as_deref());
        record.opt_str("model_served", self.model_served.as_deref());
        record.str("outcome", self.outcome.name());
        record.opt_str("priced_as", self.priced_as.as_deref());
        record.opt_str("project", self.project.as_deref());
        record.opt_str("provider", self.provider.as_deref());
        record.opt_u64("status", self.status.map(u64::from));
        record.bool("streaming", self.streaming);
        record.opt_str("team", self.team.as_deref());
        record.opt_str("tenant", self.tenant.as_deref());
        record.opt_u64("time_to_first_token_ms", self.time_to_first_token_ms);
        record.object("tokens", |tokens| {
            for (name, count) in self.tokens.sorted() {
                tokens.object(name, |one| {
                    one.str("source", count.source.name());
                    one.u64("tokens", count.tokens);
                });
            }
        });
        record.finish()
    }

    /// The value of the record field at `pointer` (one of [`crate::names::EXPORT_SCALARS`]) as
    /// the scalar export writes it: strings as they are, numbers in decimal, `None` when absent.
    pub fn scalar(&self, pointer: &str) -> Option<Cow<'_, str>> {
        let number = |count: Option<Count>| {
            count.map(|c| {
                let mut text = String::new();
                push_u64(&mut text, c.tokens);
                Cow::Owned(text)
            })
        };
        match pointer {
            "/provider" => self.provider.as_deref().map(Cow::Borrowed),
            "/model_requested" => self.model_requested.as_deref().map(Cow::Borrowed),
            "/model_served" => self.model_served.as_deref().map(Cow::Borrowed),
            "/tenant" => self.tenant.as_deref().map(Cow::Borrowed),
            "/tokens/input/tokens" => number(self.tokens.input),
            "/tokens/output/tokens" => number(self.tokens.output),
            "/cost_usd" => self.cost.map(|c| Cow::Owned(c.usd_string())),
            _ => None,
        }
    }
}

/// A non-negative integer field of a usage object; absent, negative, fractional, or other
/// types are "not reported" rather than an error: a provider's malformed number must not
/// become a wrong bill.
pub fn token_field(object: &Value, path: &[&str]) -> Option<u64> {
    let mut value = object;
    for key in path {
        value = value.get(key)?;
    }
    value.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_order_is_std_sort_order() {
        let mut names = TOKEN_KINDS;
        names.sort_unstable();
        assert_eq!(ALPHABETICAL.map(|k| TOKEN_KINDS[k]), names);
    }

    #[test]
    fn merging_keeps_earlier_fields_and_takes_newer_ones() {
        let mut counts = TokenCounts {
            input: Some(Count::provider(100)),
            output: Some(Count::provider(1)),
            ..TokenCounts::default()
        };
        counts.merge(TokenCounts { output: Some(Count::provider(42)), ..TokenCounts::default() });
        assert_eq!(counts.input, Some(Count::provider(100)));
        assert_eq!(counts.output, Some(Count::provider(42)));
    }

    #[test]
    fn token_fields_reject_negative_and_fractional_numbers() {
        let usage = json!({"a": 5, "b": -1, "c": 2.5, "d": "7", "e": {"f": 3}});
        assert_eq!(token_field(&usage, &["a"]), Some(5));
        assert_eq!(token_field(&usage, &["b"]), None);
        assert_eq!(token_field(&usage, &["c"]), None);
        assert_eq!(token_field(&usage, &["d"]), None);
        assert_eq!(token_field(&usage, &["e", "f"]), Some(3));
        assert_eq!(token_field(&usage, &["missing"]), None);
    }

    #[test]
    fn record_json_marks_every_number_with_its_source() {
        let record = UsageRecord {
            api: "openai.chat",
            model_requested: Some("gpt-4o".into()),
            model_served: Some("gpt-4o-2024-08-06".into()),
            provider: Some("openai".into()),
            tenant: Some("acme".into()),
            team: None,
            project: None,
            streaming: true,
            status: Some(200),
            outcome: Outcome::Truncated,
            tokens: TokenCounts {
                input: Some(Count::provider(10)),
                output: Some(Count::estimated(3)),
                ..TokenCounts::default()
            },
            cost: Some(Cost::from_pico(1_500_000)),
            priced_as: None,
            time_to_first_token_ms: Some(12),
            duration_ms: Some(40),
            guardrails: GuardrailSummary::default(),
            budget: None,
        };
        let value: Value = serde_json::from_str(&record.to_json_string()).unwrap();
        assert_eq!(value["tokens"]["input"], json!({"tokens": 10, "source": "provider"}));
        assert_eq!(value["tokens"]["output"], json!({"tokens": 3, "source": "estimated"}));
        assert_eq!(value["outcome"], "truncated");
        assert_eq!(value["cost_usd"], "0.0000015");
        assert!(value["tokens"].get("reasoning").is_none());
    }

    #[test]
    fn the_record_is_written_with_sorted_keys_and_scalars_equal_to_its_fields() {
        let summary = GuardrailSummary {
            decisions: Vec::new(),
            blocked_by: Some(BlockedBy { policy: "privacy".into(), check: "secrets".into(), phase: "request" }),
        };
        let every_kind = TokenCounts {
            input: Some(Count::provider(100)),
            cache_read: Some(Count::provider(40)),
            cache_write_5m: Some(Count::provider(5)),
            cache_write_1h: Some(Count::provider(6)),
            audio_input: Some(Count::provider(7)),
            output: Some(Count::estimated(30)),
            reasoning: Some(Count::provider(9)),
            audio_output: Some(Count::provider(2)),
        };
        let full = UsageRecord {
            api: "openai.chat",
            model_requested: Some("fast".into()),
            model_served: Some("gpt-4o-mini".into()),
            provider: Some("openai".into()),
            tenant: Some("acme".into()),
            team: Some("search".into()),
            project: Some("p\"1".into()),
            streaming: false,
            status: Some(200),
            outcome: Outcome::Complete,
            tokens: every_kind,
            cost: Some(Cost::from_pico(1_500_000)),
            priced_as: None,
            time_to_first_token_ms: None,
            duration_ms: Some(40),
            guardrails: summary,
            budget: None,
        };
        let bare = UsageRecord {
            guardrails: GuardrailSummary::default(),
            tokens: TokenCounts::default(),
            cost: None,
            ..full.clone()
        };
        for record in [full, bare] {
            let written = record.to_json_string();
            let value: Value = serde_json::from_str(&written).unwrap();
            // A `Value` writes its keys sorted: the same bytes mean the same order at every level.
            assert_eq!(written, value.to_string());
            assert_eq!(value.as_object().unwrap().contains_key("guardrails"), !record.guardrails.is_empty());
            for (_, pointer) in crate::names::EXPORT_SCALARS {
                let expected = match value.pointer(pointer) {
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(Value::Number(number)) => Some(number.to_string()),
                    _ => None,
                };
                assert_eq!(record.scalar(pointer).map(Cow::into_owned), expected, "{pointer}");
            }
        }
    }
}
