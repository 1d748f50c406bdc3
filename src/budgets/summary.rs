//! What the budgets did with one request: the `budget` member of its usage record, and the
//! metrics drawn from it.

use super::Need;
use crate::json_write::ObjectWriter;
use crate::pricing::usd_string;

/// How the budgets decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Every limit took its reservation.
    #[default]
    Admitted,
    /// A limit could not take it: the client got a 429.
    Refused,
    /// Its stream ran past what the limits (or the route's `max_output_tokens`) allowed and was ended.
    Cut,
    /// The counters could not be read or written: `failure_mode` decided (open: admitted,
    /// uncounted; closed: refused with a 5xx).
    StoreFailed,
    /// A spend limit applies and the model has no price: `failure_mode` decided.
    Unpriced,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Admitted => "admitted",
            Verdict::Refused => "refused",
            Verdict::Cut => "cut",
            Verdict::StoreFailed => "store_failed",
            Verdict::Unpriced => "unpriced",
        }
    }
}

/// One counter the request counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub limit: String,
    /// The counter's scope: the request's values of the limit's `by` (`acme`, `key-…:gpt-4o`).
    pub scope: String,
    /// What is left in the window after the request settled, in the limit's unit (pico-USD for
    /// spend); `None` before it settled.
    pub remaining: Option<u64>,
    pub spend: bool,
    pub shadow: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetSummary {
    pub verdict: Verdict,
    /// The limit that refused the request or ended its stream.
    pub decided_by: Option<String>,
    pub counted: Vec<Counted>,
    /// Shadow limits that would have refused the request or ended its stream.
    pub shadow_over: Vec<String>,
    pub reserved: Need,
    /// What the counters were settled to (what the provider reported); `None` before.
    pub settled: Option<Need>,
    /// Output tokens the client had got when its stream was ended.
    pub cut_at: Option<u64>,
    /// Leases: reserved from this proxy's slices, without a call to the store.
    pub from_slices: bool,
}

impl BudgetSummary {
    /// The record's `budget` object; keys sorted, as the rest of the record.
    pub fn to_json(&self) -> String {
        let mut out = ObjectWriter::new(256);
        out.opt_u64("cut_at_output_tokens", self.cut_at);
        out.opt_str("decided_by", self.decided_by.as_deref());
        if self.from_slices {
            out.bool("from_slices", true);
        }
        let limits: Vec<String> = self.counted.iter().map(|c| json_string(&c.limit)).collect();
        out.raw("limits", &["[", &limits.join(","), "]"].concat());
        out.object("reserved", |need| write_need(need, &self.reserved));
        // Each limit's counter, in `limits`' order: what the chargeback report adds up per scope.
        let scopes: Vec<String> = self.counted.iter().map(|c| json_string(&c.scope)).collect();
        out.raw("scopes", &["[", &scopes.join(","), "]"].concat());
        if let Some(settled) = &self.settled {
            out.object("settled", |need| write_need(need, settled));
        }
        if !self.shadow_over.is_empty() {
            let names: Vec<String> = self.shadow_over.iter().map(|n| json_string(n)).collect();
            out.raw("shadow_over", &["[", &names.join(","), "]"].concat());
        }
        out.str("verdict", self.verdict.name());
        out.finish()
    }
}

fn write_need(out: &mut ObjectWriter, need: &Need) {
    out.u64("input_tokens", need.input_tokens);
    out.u64("output_tokens", need.output_tokens);
    out.u64("requests", need.requests);
    if let Some(spend) = need.spend {
        out.str("usd", &usd_string(spend));
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    crate::json_write::push_escaped(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_member_is_json_with_sorted_keys() {
        let summary = BudgetSummary {
            verdict: Verdict::Cut,
            decided_by: Some("daily \"usd\"".into()),
            counted: vec![Counted {
                limit: "daily".into(),
                scope: "acme".into(),
                remaining: Some(0),
                spend: true,
                shadow: false,
            }],
            shadow_over: vec!["rpm".into()],
            reserved: Need { requests: 1, input_tokens: 10, output_tokens: 4096, spend: Some(1_500_000) },
            settled: Some(Need { requests: 1, input_tokens: 10, output_tokens: 30, spend: None }),
            cut_at: Some(30),
            from_slices: false,
        };
        let json = summary.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["decided_by"], "daily \"usd\"");
        assert_eq!(value["reserved"]["usd"], "0.0000015");
        assert!(value["settled"].get("usd").is_none());
        assert_eq!(json, value.to_string(), "sorted keys, as serde writes them");
    }
}
