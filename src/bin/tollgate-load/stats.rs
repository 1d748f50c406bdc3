//! Exact percentiles over every kept sample, and the JSON report.

use serde_json::{json, Map, Value};

use crate::Tally;

/// Nearest-rank percentile of sorted samples, in microseconds.
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted_ns.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

fn summary(samples_ns: &mut [u64]) -> Value {
    samples_ns.sort_unstable();
    let n = samples_ns.len();
    let mean = if n == 0 { 0.0 } else { samples_ns.iter().map(|&s| s as f64).sum::<f64>() / n as f64 / 1000.0 };
    json!({
        "n": n,
        "min": percentile_us(samples_ns, 0.0),
        "p50": percentile_us(samples_ns, 50.0),
        "p90": percentile_us(samples_ns, 90.0),
        "p99": percentile_us(samples_ns, 99.0),
        "p999": percentile_us(samples_ns, 99.9),
        "max": percentile_us(samples_ns, 100.0),
        "mean": mean,
    })
}

fn micros(samples_ns: &[u64]) -> Value {
    Value::from(samples_ns.iter().map(|&s| s as f64 / 1000.0).collect::<Vec<_>>())
}

pub fn report(tally: &Tally, elapsed_s: f64, connections: usize, raw: bool) -> Value {
    let ok = tally.latencies_ns.len();
    let mut latencies = tally.latencies_ns.clone();
    let mut ttft = tally.ttft_ns.clone();
    let mut gaps = tally.gaps_ns.clone();
    let statuses: Map<String, Value> = tally.statuses.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    let errors: Map<String, Value> = tally.errors.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect();
    let mut out = Map::new();
    out.insert("connections".into(), Value::from(connections));
    out.insert("ok".into(), Value::from(ok));
    out.insert("errors".into(), Value::from(tally.errors.values().sum::<u64>()));
    out.insert("error_kinds".into(), Value::Object(errors));
    out.insert("statuses".into(), Value::Object(statuses));
    out.insert("elapsed_s".into(), Value::from(elapsed_s));
    out.insert("rps".into(), Value::from(if elapsed_s > 0.0 { ok as f64 / elapsed_s } else { 0.0 }));
    out.insert("latency_us".into(), summary(&mut latencies));
    if tally.streams > 0 {
        out.insert("streams".into(), Value::from(tally.streams));
        out.insert("events".into(), Value::from(tally.events));
        out.insert("ttft_us".into(), summary(&mut ttft));
        out.insert("event_gap_us".into(), summary(&mut gaps));
    }
    if raw {
        out.insert("raw_latency_us".into(), micros(&tally.latencies_ns));
        if tally.streams > 0 {
            out.insert("raw_ttft_us".into(), micros(&tally.ttft_ns));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile_us(&sorted, 50.0), 50.0);
        assert_eq!(percentile_us(&sorted, 99.0), 99.0);
        assert_eq!(percentile_us(&sorted, 100.0), 100.0);
        assert_eq!(percentile_us(&sorted, 0.0), 1.0);
        assert_eq!(percentile_us(&[], 50.0), 0.0);
    }
}
