//! Labelled metrics from the usage record. Proxy-wasm metrics have no labels, so labels travel in
//! the metric name (`tollgate.tokens.provider.openai.model.gpt-4o.tenant.acme.type.input`) and
//! the proxy turns them back into labels: Envoy with `stats_config.stats_tags` (envoy/envoy.yaml),
//! Kong with `metrics.label_patterns` (kong/tollgate.meta.json).
//!
//! Label values are reduced to `[a-z0-9_-]` so a value can never break the name apart, and each
//! label keeps at most [`MAX_VALUES_PER_LABEL`] distinct values per VM; later ones count under
//! `other`, so a flood of tenant or model names cannot grow the proxy's stats without bound.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::budgets::summary::{BudgetSummary, Verdict};
use crate::usage::UsageRecord;

pub const MAX_VALUES_PER_LABEL: usize = 100;
const MAX_VALUE_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    /// Set to the value (the last write wins).
    Gauge,
    Histogram,
}

/// One change to one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub name: String,
    pub kind: Kind,
    pub value: u64,
}

/// The label values seen by this VM, for the cardinality guard.
#[derive(Debug, Default)]
pub struct LabelRegistry {
    seen: RefCell<BTreeMap<&'static str, BTreeSet<String>>>,
}

impl Clone for LabelRegistry {
    /// A copied policy starts with its own, empty registry.
    fn clone(&self) -> Self {
        LabelRegistry::default()
    }
}

impl LabelRegistry {
    /// The value as it may appear in a metric name.
    pub fn label(&self, label: &'static str, raw: Option<&str>, absent: &str) -> String {
        let value = raw.map_or_else(|| absent.to_string(), sanitize);
        let mut seen = self.seen.borrow_mut();
        let values = seen.entry(label).or_default();
        if values.contains(&value) {
            return value;
        }
        if values.len() >= MAX_VALUES_PER_LABEL {
            return "other".to_string();
        }
        values.insert(value.clone());
        value
    }
}

fn sanitize(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

/// Everything one finished request adds to the metrics.
pub fn updates(record: &UsageRecord, labels: &LabelRegistry) -> Vec<Update> {
    let provider = labels.label("provider", record.provider.as_deref(), "unknown");
    let model = labels.label("model", record.model_served.as_deref().or(record.model_requested.as_deref()), "unknown");
    let tenant = labels.label("tenant", record.tenant.as_deref(), "none");
    let base = ["provider.", &provider, ".model.", &model].concat();
    let with_tenant = [&base, ".tenant.", &tenant].concat();
    let counter = |name: String, value: u64| Update { name, kind: Kind::Counter, value };
    let mut updates = Vec::with_capacity(8);
    updates.push(counter(["tollgate.requests.", &with_tenant, ".outcome.", record.outcome.name()].concat(), 1));
    let tokens = record.tokens;
    let cache_write = match (tokens.cache_write_5m, tokens.cache_write_1h) {
        (None, None) => None,
        (a, b) => Some(a.map_or(0, |c| c.tokens) + b.map_or(0, |c| c.tokens)),
    };
    let by_type = [
        ("input", tokens.input.map(|c| c.tokens)),
        ("output", tokens.output.map(|c| c.tokens)),
        ("cache_read", tokens.cache_read.map(|c| c.tokens)),
        ("cache_write", cache_write),
        ("reasoning", tokens.reasoning.map(|c| c.tokens)),
    ];
    for (kind, count) in by_type {
        if let Some(count) = count.filter(|c| *c > 0) {
            updates.push(counter(["tollgate.tokens.", &with_tenant, ".type.", kind].concat(), count));
        }
    }
    if let Some(cost) = record.cost {
        updates.push(counter(["tollgate.cost_nano_usd.", &with_tenant].concat(), cost.pico_usd / 1000));
    }
    if !record.guardrails.is_empty() {
        updates.extend(guardrail_updates(record, labels));
    }
    if let Some(budget) = &record.budget {
        updates.extend(budget_updates(budget, labels));
    }
    let histogram = |name: String, value: u64| Update { name, kind: Kind::Histogram, value };
    if let Some(duration) = record.duration_ms {
        updates.push(histogram(["tollgate.duration_ms.", &base].concat(), duration));
    }
    if let Some(ttft) = record.time_to_first_token_ms {
        updates.push(histogram(["tollgate.ttft_ms.", &base].concat(), ttft));
    }
    updates
}

/// Guardrail outcomes: findings by policy, check, detector, action, phase and mode (`enforced` or
/// `shadow`), and blocks by policy, check and phase. Not by tenant or model: these label sets are
/// bounded by the configuration, and stay so.
fn guardrail_updates(record: &UsageRecord, labels: &LabelRegistry) -> Vec<Update> {
    let summary = &record.guardrails;
    let mut updates = Vec::new();
    for decision in &summary.decisions {
        let policy = labels.label("guardrail_policy", Some(&decision.policy), "none");
        let check = labels.label("guardrail_check", Some(&decision.check), "none");
        let detector = labels.label("guardrail_detector", Some(&decision.detector), "none");
        let mode = if decision.shadow { "shadow" } else { "enforced" };
        let name = format!(
            "tollgate.guardrail_findings.policy.{policy}.check.{check}.detector.{detector}.action.{}.phase.{}.mode.{mode}",
            decision.action.name(),
            decision.phase.name()
        );
        updates.push(Update { name, kind: Kind::Counter, value: u64::from(decision.count) });
    }
    if let Some(blocked) = &summary.blocked_by {
        let policy = labels.label("guardrail_policy", Some(&blocked.policy), "none");
        let check = labels.label("guardrail_check", Some(&blocked.check), "none");
        let name = format!("tollgate.guardrail_blocks.policy.{policy}.check.{check}.phase.{}", blocked.phase);
        updates.push(Update { name, kind: Kind::Counter, value: 1 });
    }
    updates
}

/// Per limit a request counted against: `tollgate.budget_requests.limit.L.verdict.V` (V the
/// verdict for the limit that decided, `shadow_over` for a shadow limit that would have,
/// `admitted` for the rest), and the gauge `tollgate.budget_remaining.limit.L.scope.S`: what the
/// counter has left in its window after this request settled, in the limit's unit (spend in
/// nano-USD, as `cost_nano_usd`).
fn budget_updates(budget: &BudgetSummary, labels: &LabelRegistry) -> Vec<Update> {
    let mut updates = Vec::with_capacity(budget.counted.len() * 2 + 1);
    let mut decided_counted = false;
    for counted in &budget.counted {
        let limit = labels.label("limit", Some(&counted.limit), "none");
        let verdict = if budget.decided_by.as_deref() == Some(counted.limit.as_str()) {
            decided_counted = true;
            budget.verdict.name()
        } else if budget.shadow_over.contains(&counted.limit) {
            "shadow_over"
        } else {
            "admitted"
        };
        let name = ["tollgate.budget_requests.limit.", &limit, ".verdict.", verdict].concat();
        updates.push(Update { name, kind: Kind::Counter, value: 1 });
        if let Some(remaining) = counted.remaining {
            let scope = labels.label("scope", Some(&counted.scope), "all");
            let value = if counted.spend { remaining / 1000 } else { remaining };
            let name = ["tollgate.budget_remaining.limit.", &limit, ".scope.", &scope].concat();
            updates.push(Update { name, kind: Kind::Gauge, value });
        }
    }
    if !decided_counted && budget.verdict != Verdict::Admitted {
        // Decided by no counter: the route's output ceiling, an unpriced model, the store.
        let limit = labels.label("limit", budget.decided_by.as_deref(), "none");
        let name = ["tollgate.budget_requests.limit.", &limit, ".verdict.", budget.verdict.name()].concat();
        updates.push(Update { name, kind: Kind::Counter, value: 1 });
    }
    updates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Cost;
    use crate::usage::{Count, Outcome, TokenCounts};

    fn record() -> UsageRecord {
        UsageRecord {
            api: "openai.chat",
            model_requested: Some("fast".into()),
            model_served: Some("gpt-4.1-mini-2025-04-14".into()),
            provider: Some("openai".into()),
            tenant: Some("Acme Corp".into()),
            team: None,
            project: None,
            streaming: false,
            status: Some(200),
            outcome: Outcome::Complete,
            tokens: TokenCounts {
                input: Some(Count::provider(100)),
                cache_read: Some(Count::provider(40)),
                output: Some(Count::provider(7)),
                ..TokenCounts::default()
            },
            cost: Some(Cost { pico_usd: 12_345_678, ..Cost::default() }),
            priced_as: None,
            time_to_first_token_ms: Some(80),
            duration_ms: Some(250),
            guardrails: Default::default(),
            budget: None,
        }
    }

    #[test]
    fn a_record_becomes_labelled_counters_and_histograms() {
        let names: Vec<(String, u64)> =
            updates(&record(), &LabelRegistry::default()).into_iter().map(|u| (u.name, u.value)).collect();
        let base = "provider.openai.model.gpt-4_1-mini-2025-04-14.tenant.acme_corp";
        assert_eq!(
            names,
            vec![
                (format!("tollgate.requests.{base}.outcome.complete"), 1),
                (format!("tollgate.tokens.{base}.type.input"), 100),
                (format!("tollgate.tokens.{base}.type.output"), 7),
                (format!("tollgate.tokens.{base}.type.cache_read"), 40),
                (format!("tollgate.cost_nano_usd.{base}"), 12_345),
                ("tollgate.duration_ms.provider.openai.model.gpt-4_1-mini-2025-04-14".into(), 250),
                ("tollgate.ttft_ms.provider.openai.model.gpt-4_1-mini-2025-04-14".into(), 80),
            ]
        );
    }

    #[test]
    fn guardrail_decisions_become_labelled_counters() {
        use crate::guardrails::{Action, Decision, Phase};
        use crate::usage::{BlockedBy, GuardrailSummary};
        let decision = |detector: &str, action, phase, shadow, count| Decision {
            policy: "privacy".into(),
            check: "PII in".into(),
            detector: detector.into(),
            phase,
            action,
            shadow,
            count,
        };
        let mut record = record();
        record.guardrails = GuardrailSummary {
            decisions: vec![
                decision("email", Action::MaskAndRestore, Phase::Request, false, 3),
                decision("openai_key", Action::Block, Phase::Response, true, 1),
            ],
            blocked_by: Some(BlockedBy { policy: "privacy".into(), check: "PII in".into(), phase: "request" }),
        };
        let names: Vec<(String, u64)> = updates(&record, &LabelRegistry::default())
            .into_iter()
            .filter(|u| u.name.starts_with("tollgate.guardrail"))
            .map(|u| (u.name, u.value))
            .collect();
        let base = "policy.privacy.check.pii_in";
        assert_eq!(
            names,
            vec![
                (format!("tollgate.guardrail_findings.{base}.detector.email.action.mask_and_restore.phase.request.mode.enforced"), 3),
                (format!("tollgate.guardrail_findings.{base}.detector.openai_key.action.block.phase.response.mode.shadow"), 1),
                (format!("tollgate.guardrail_blocks.{base}.phase.request"), 1),
            ]
        );
    }

    #[test]
    fn label_values_cannot_break_the_name_or_grow_without_bound() {
        let labels = LabelRegistry::default();
        assert_eq!(labels.label("tenant", Some("a.b c/д"), "none"), "a_b_c__");
        assert_eq!(labels.label("tenant", None, "none"), "none");
        assert_eq!(labels.label("tenant", Some(""), "none"), "unknown");
        assert_eq!(labels.label("tenant", Some(&"x".repeat(500)), "none").len(), 64);
        for i in 0..200 {
            let value = labels.label("model", Some(&format!("m{i}")), "unknown");
            assert_eq!(value, if i < MAX_VALUES_PER_LABEL { format!("m{i}") } else { "other".into() });
        }
        assert_eq!(labels.label("model", Some("m3"), "unknown"), "m3", "known values keep their name");
    }
}
