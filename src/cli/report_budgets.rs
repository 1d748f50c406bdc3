//! `tollgate report --config FILE`: spend against budget. For each USD limit of the
//! configuration, each scope the usage records counted against it, the spend settled in the
//! limit's window (the current one, or the one `--until` ends in) against the budget, and the
//! share used. Records name the limits and scopes they counted against (`budget.limits`,
//! `budget.scopes`), so the sums are the counters' own, to the pico-dollar.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};
use tollgate::budgets::{Budgets, Measure};

use super::report::{parse_usd, usd};

/// What one record counted against one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// Unix seconds of the request's start.
    pub at: i64,
    pub limit: String,
    pub scope: String,
    pub pico_usd: u128,
}

/// Reads a record's `budget` member: each limit it counted against, its scope and what the
/// counter kept of it (what it settled to; the reservation when it never settled; nothing when
/// it was refused).
pub fn counted(record: &Map<String, Value>, at_nanos: Option<i128>) -> Vec<Counted> {
    let (Some(budget), Some(at)) = (record.get("budget").and_then(Value::as_object), at_nanos) else {
        return Vec::new();
    };
    let at = i64::try_from(at.div_euclid(1_000_000_000)).unwrap_or(i64::MAX);
    let verdict = budget.get("verdict").and_then(Value::as_str).unwrap_or_default();
    let usd_of =
        |key: &str| budget.get(key).and_then(|need| need.get("usd")).and_then(Value::as_str).and_then(parse_usd);
    let pico_usd = match (usd_of("settled"), verdict) {
        (Some(settled), _) => settled,
        (None, "admitted" | "cut") => usd_of("reserved").unwrap_or(0),
        (None, _) => 0,
    };
    let names = budget.get("limits").and_then(Value::as_array).cloned().unwrap_or_default();
    let scopes = budget.get("scopes").and_then(Value::as_array).cloned().unwrap_or_default();
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let scope = scopes.get(i).and_then(Value::as_str).unwrap_or("?");
            Some(Counted { at, limit: name.as_str()?.to_string(), scope: scope.to_string(), pico_usd })
        })
        .collect()
}

/// The spend-against-budget table: every USD limit, each scope counted in its window at
/// `reference` (Unix seconds), largest share first.
pub fn table(budgets: &Budgets, counted: &[Counted], reference: i64) -> String {
    let mut rows = vec![["LIMIT", "SCOPE", "WINDOW", "SPENT_USD", "BUDGET_USD", "USED"].map(String::from)];
    let mut spend_limits = 0;
    for limit in budgets.limits.iter().filter(|l| l.measure == Measure::Spend) {
        spend_limits += 1;
        let window = limit.window.id(reference);
        let (start, end) = (limit.window.end(window - 1), limit.window.end(window));
        let mut scopes: BTreeMap<&str, u128> = BTreeMap::new();
        for entry in counted.iter().filter(|c| c.limit == limit.name && (start..end).contains(&c.at)) {
            *scopes.entry(entry.scope.as_str()).or_default() += entry.pico_usd;
        }
        let budget = u128::from(limit.amount);
        let mut scopes: Vec<(&str, u128)> = scopes.into_iter().collect();
        scopes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let window_text =
            format!("{}..{}", tollgate::budgets::admin::rfc3339(start), tollgate::budgets::admin::rfc3339(end));
        for (scope, spent) in scopes {
            // Tenths of a percent, rounded down: 100.0% only when the budget is all spent.
            let permille = (spent * 1000).checked_div(budget).unwrap_or(0);
            rows.push([
                format!("{}{}", limit.name, if limit.shadow { " (shadow)" } else { "" }),
                if scope.is_empty() { "-".to_string() } else { scope.to_string() },
                window_text.clone(),
                usd(spent),
                usd(budget),
                format!("{}.{}%", permille / 10, permille % 10),
            ]);
        }
    }
    let mut out = String::from("\nspend against budget");
    if spend_limits == 0 {
        out.push_str(": the configuration has no USD limit\n");
        return out;
    }
    out.push_str(" (what the records settled in each limit's window):\n");
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            if i < 3 {
                let _ = write!(line, "{cell}{pad}  ");
            } else {
                let _ = write!(line, "{pad}{cell}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_record_counts_what_it_settled_its_reservation_or_nothing() {
        let settled = record(json!({"budget": {"limits": ["daily", "rpm"], "scopes": ["acme", "acme"],
            "reserved": {"usd": "0.002"}, "settled": {"usd": "0.0015"}, "verdict": "admitted"}}));
        let counted = counted(&settled, Some(86_400_000_000_000));
        assert_eq!(counted.len(), 2);
        assert_eq!(
            counted[0],
            Counted { at: 86_400, limit: "daily".into(), scope: "acme".into(), pico_usd: 1_500_000_000 }
        );
        let kept = record(
            json!({"budget": {"limits": ["daily"], "scopes": ["acme"], "reserved": {"usd": "0.002"}, "verdict": "admitted"}}),
        );
        assert_eq!(super::counted(&kept, Some(0))[0].pico_usd, 2_000_000_000);
        let refused = record(
            json!({"budget": {"limits": ["daily"], "scopes": ["acme"], "reserved": {"usd": "0.002"}, "verdict": "refused"}}),
        );
        assert_eq!(super::counted(&refused, Some(0))[0].pico_usd, 0);
        assert!(super::counted(&settled, None).is_empty(), "an undated record cannot be placed in a window");
    }

    #[test]
    fn spend_is_summed_per_scope_in_the_window_and_compared_with_the_budget() {
        let budgets = tollgate::budgets::compile(
            serde_json::from_value(json!({"limits": [
                {"name": "daily", "usd": "0.01", "window": "day", "by": ["tenant"]},
                {"name": "rpm", "requests": 5, "window": "minute"}
            ]}))
            .unwrap(),
        )
        .unwrap();
        let at = |at: i64, scope: &str, pico: u128| Counted {
            at,
            limit: "daily".into(),
            scope: scope.into(),
            pico_usd: pico,
        };
        let day = 86_400 * 20_000;
        let counted = [
            at(day + 10, "acme", 4_000_000_000),
            at(day + 20, "acme", 1_000_000_000),
            at(day + 30, "globex", 10_000_000_000),
            at(day - 1, "acme", 9_000_000_000),
        ];
        let table = table(&budgets, &counted, day + 3_600);
        let rows: Vec<Vec<&str>> = table.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
        let window = "2024-10-04T00:00:00Z..2024-10-05T00:00:00Z";
        assert_eq!(
            rows,
            [
                vec!["LIMIT", "SCOPE", "WINDOW", "SPENT_USD", "BUDGET_USD", "USED"],
                vec!["daily", "globex", window, "0.01", "0.01", "100.0%"],
                vec!["daily", "acme", window, "0.005", "0.01", "50.0%"],
            ],
            "the day before is another window; rpm counts no money: {table}"
        );
    }
}
