//! `tollgate report`: a chargeback table from Envoy's JSON access log, one usage record per line.
//!
//! Money is summed exactly: each record's `cost_usd` (a decimal string) is read as an integer
//! number of pico-USD, the unit the filter prices in, and added as integers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use serde_json::{Map, Value};

const PICO_PER_USD: u128 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Tenant,
    Model,
    Route,
    Provider,
}

impl GroupBy {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "tenant" => Some(GroupBy::Tenant),
            "model" => Some(GroupBy::Model),
            "route" => Some(GroupBy::Route),
            "provider" => Some(GroupBy::Provider),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            GroupBy::Tenant => "tenant",
            GroupBy::Model => "model",
            GroupBy::Route => "route",
            GroupBy::Provider => "provider",
        }
    }
}

/// Sums for one group (or all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_pico_usd: u128,
    /// Records with token counts but no cost: the model had no price.
    pub unpriced: u64,
}

impl Totals {
    fn add(&mut self, line: &Line) {
        self.requests += 1;
        self.input_tokens = self.input_tokens.saturating_add(line.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(line.output_tokens);
        self.cost_pico_usd = self.cost_pico_usd.saturating_add(line.cost_pico_usd.unwrap_or(0));
        self.unpriced += u64::from(line.cost_pico_usd.is_none() && line.has_tokens);
    }
}

/// Lines that were not counted, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub not_json: u64,
    pub no_record: u64,
    pub invalid_record: u64,
    pub undated: u64,
    pub outside_range: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub groups: BTreeMap<String, Totals>,
    pub total: Totals,
    pub skipped: Skipped,
    pub price_tables: BTreeMap<String, u64>,
    /// What the records counted against each limit and scope (`--config`: spend against budget).
    pub budgets: Vec<super::report_budgets::Counted>,
}

/// What one access-log line contributes.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    key: String,
    input_tokens: u64,
    output_tokens: u64,
    cost_pico_usd: Option<u128>,
    has_tokens: bool,
    price_table: Option<String>,
    budget: Vec<super::report_budgets::Counted>,
}

enum Outcome {
    Counted(Line),
    NotJson,
    NoRecord,
    InvalidRecord,
    Undated,
    OutsideRange,
}

/// Half-open time window `[since, until)` in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub since: Option<i128>,
    pub until: Option<i128>,
}

impl Window {
    fn is_set(self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    fn contains(self, at: i128) -> bool {
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until)
    }
}

impl Report {
    pub fn read(input: impl BufRead, by: GroupBy, window: Window) -> std::io::Result<Report> {
        let mut report = Report::default();
        for line in split_lines(input) {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match classify(&String::from_utf8_lossy(&line), by, window) {
                Outcome::Counted(mut line) => {
                    report.budgets.append(&mut line.budget);
                    report.total.add(&line);
                    report.groups.entry(line.key.clone()).or_default().add(&line);
                    if let Some(version) = &line.price_table {
                        *report.price_tables.entry(version.clone()).or_default() += 1;
                    }
                }
                Outcome::NotJson => report.skipped.not_json += 1,
                Outcome::NoRecord => report.skipped.no_record += 1,
                Outcome::InvalidRecord => report.skipped.invalid_record += 1,
                Outcome::Undated => report.skipped.undated += 1,
                Outcome::OutsideRange => report.skipped.outside_range += 1,
            }
        }
        Ok(report)
    }

    /// Groups by cost (highest first), then by requests, then by name.
    fn ranked(&self) -> Vec<(&String, &Totals)> {
        let mut rows: Vec<_> = self.groups.iter().collect();
        rows.sort_by(|a, b| {
            b.1.cost_pico_usd.cmp(&a.1.cost_pico_usd).then(b.1.requests.cmp(&a.1.requests)).then(a.0.cmp(b.0))
        });
        rows
    }

    pub fn table(&self, by: GroupBy) -> String {
        let header = [
            by.name().to_uppercase(),
            "REQUESTS".into(),
            "INPUT_TOKENS".into(),
            "OUTPUT_TOKENS".into(),
            "COST_USD".into(),
            "UNPRICED".into(),
        ];
        let row = |name: &str, t: &Totals| {
            [
                name.to_string(),
                t.requests.to_string(),
                t.input_tokens.to_string(),
                t.output_tokens.to_string(),
                usd(t.cost_pico_usd),
                t.unpriced.to_string(),
            ]
        };
        let mut rows = vec![header];
        rows.extend(self.ranked().into_iter().map(|(name, totals)| row(name, totals)));
        rows.push(row("TOTAL", &self.total));
        let mut widths = [0usize; 6];
        for cells in &rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for cells in &rows {
            let mut line = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                let pad = width.saturating_sub(cell.chars().count());
                if i == 0 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let s = self.skipped;
        let _ = writeln!(
            out,
            "\nskipped lines: {} not JSON, {} without a usage record, {} with an invalid record, {} without a time, {} outside --since/--until",
            s.not_json, s.no_record, s.invalid_record, s.undated, s.outside_range
        );
        if !self.price_tables.is_empty() {
            let tables: Vec<String> = self.price_tables.iter().map(|(v, n)| format!("{v} ({n})")).collect();
            let _ = writeln!(out, "price tables: {}", tables.join(", "));
        }
        out
    }

    /// One row per group, no total (a spreadsheet sums it; `TOTAL` could be a tenant's name).
    pub fn csv(&self, by: GroupBy) -> String {
        let mut out = format!("{},requests,input_tokens,output_tokens,cost_usd,unpriced\n", by.name());
        for (name, t) in self.ranked() {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                csv_field(name),
                t.requests,
                t.input_tokens,
                t.output_tokens,
                usd(t.cost_pico_usd),
                t.unpriced
            );
        }
        out
    }
}

/// Lines split on `\n` whatever their bytes (a log may hold invalid UTF-8).
fn split_lines(input: impl BufRead) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    input.split(b'\n')
}

fn classify(text: &str, by: GroupBy, window: Window) -> Outcome {
    let Ok(Value::Object(entry)) = serde_json::from_str::<Value>(text.trim()) else {
        return Outcome::NotJson;
    };
    let record = match entry.get("tollgate") {
        Some(Value::String(text)) if text != "-" && !text.is_empty() => match serde_json::from_str(text) {
            Ok(Value::Object(record)) => record,
            _ => return Outcome::InvalidRecord,
        },
        Some(Value::Object(record)) => record.clone(),
        _ => return Outcome::NoRecord,
    };
    let at = entry_time(&entry);
    if window.is_set() {
        match at {
            None => return Outcome::Undated,
            Some(at) if !window.contains(at) => return Outcome::OutsideRange,
            Some(_) => {}
        }
    }
    let tokens = |kind: &str| record.get("tokens").and_then(|t| t.get(kind)).and_then(|c| c.get("tokens"));
    let count = |kind: &str| match tokens(kind) {
        None | Some(Value::Null) => Some(0),
        Some(value) => value.as_u64(),
    };
    let (Some(input_tokens), Some(output_tokens)) = (count("input"), count("output")) else {
        return Outcome::InvalidRecord;
    };
    let cost_pico_usd = match record.get("cost_usd") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match parse_usd(text) {
            Some(pico) => Some(pico),
            None => return Outcome::InvalidRecord,
        },
        Some(_) => return Outcome::InvalidRecord,
    };
    let has_tokens = record.get("tokens").and_then(Value::as_object).is_some_and(|t| !t.is_empty());
    let price_table = match record.get("price_table") {
        Some(Value::String(version)) => Some(version.clone()),
        Some(Value::Object(table)) => table.get("version").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    Outcome::Counted(Line {
        key: group_key(by, &entry, &record),
        input_tokens,
        output_tokens,
        cost_pico_usd,
        has_tokens,
        price_table,
        budget: super::report_budgets::counted(&record, at),
    })
}

/// When the request started: Envoy's `time` (RFC 3339), or Kong's log serializer `started_at`
/// (milliseconds since the epoch).
fn entry_time(entry: &Map<String, Value>) -> Option<i128> {
    if let Some(text) = entry.get("time").and_then(Value::as_str) {
        return parse_time(text);
    }
    entry.get("started_at").and_then(Value::as_u64).map(|millis| i128::from(millis) * 1_000_000)
}

fn group_key(by: GroupBy, entry: &Map<String, Value>, record: &Map<String, Value>) -> String {
    let text = |map: &Map<String, Value>, key: &str| {
        map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty() && *s != "-").map(str::to_string)
    };
    match by {
        GroupBy::Tenant => text(record, "tenant").unwrap_or_else(|| "none".into()),
        GroupBy::Model => {
            text(record, "model_served").or_else(|| text(record, "model_requested")).unwrap_or_else(|| "unknown".into())
        }
        GroupBy::Provider => text(record, "provider").unwrap_or_else(|| "unknown".into()),
        // Envoy's access log: `route`, `path`. Kong's log serializer: `route.name`, `request.uri`.
        GroupBy::Route => text(entry, "route")
            .or_else(|| entry.get("route").and_then(Value::as_object).and_then(|route| text(route, "name")))
            .or_else(|| {
                let path = text(entry, "path")
                    .or_else(|| entry.get("request").and_then(Value::as_object).and_then(|r| text(r, "uri")))?;
                Some(path.split('?').next().unwrap_or_default().to_string())
            })
            .unwrap_or_else(|| "unknown".into()),
    }
}

/// Exact decimal USD (`0.0000114`, `12`, `3.5`) as pico-USD; more than 12 significant decimals,
/// signs, exponents or anything else is not a cost the filter writes.
pub fn parse_usd(text: &str) -> Option<u128> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.ends_with('.') {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 12 {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let fraction: u128 = if fraction.is_empty() { 0 } else { format!("{fraction:0<12}").parse().ok()? };
    whole.checked_mul(PICO_PER_USD)?.checked_add(fraction)
}

/// Pico-USD as exact decimal USD, the filter's format (`0.0000114`, `0.0`).
pub fn usd(pico: u128) -> String {
    let whole = pico / PICO_PER_USD;
    let fraction = pico % PICO_PER_USD;
    if fraction == 0 {
        return format!("{whole}.0");
    }
    format!("{whole}.{}", format!("{fraction:012}").trim_end_matches('0'))
}

/// RFC 3339 (`2026-11-21T20:56:23.833Z`, `…+02:00`) as nanoseconds since the Unix epoch; a bare
/// date is its midnight UTC.
pub fn parse_time(text: &str) -> Option<i128> {
    let text = text.trim();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if text.get(4..5)? != "-" || text.get(7..8)? != "-" || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = i128::from(days_from_civil(year, month, day));
    if text.len() == 10 {
        return Some(days * 86_400 * 1_000_000_000);
    }
    if !matches!(text.get(10..11)?, "T" | "t" | " ") || text.get(13..14)? != ":" || text.get(16..17)? != ":" {
        return None;
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut nanos: i128 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let part = fraction.get(..digits)?;
        if part.is_empty() {
            return None;
        }
        let kept = part.get(..digits.min(9))?;
        nanos = format!("{kept:0<9}").parse().ok()?;
        rest = fraction.get(digits..)?;
    }
    let offset_seconds: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 || rest.get(3..4)? != ":" || hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds = days * 86_400 + i128::from(hour * 3600 + minute * 60 + second.min(59) - offset_seconds);
    Some(seconds * 1_000_000_000 + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

pub fn run(options: &[&str]) -> ExitCode {
    let mut values: HashMap<&str, &str> = HashMap::new();
    for pair in options.chunks(2) {
        let [flag, value] = pair else {
            return usage_error(&format!("{} needs a value", pair.first().copied().unwrap_or_default()));
        };
        if !matches!(*flag, "--from" | "--since" | "--until" | "--by" | "--csv" | "--config") {
            return usage_error(&format!("unknown option {flag}"));
        }
        if values.insert(flag, value).is_some() {
            return usage_error(&format!("{flag} given twice"));
        }
    }
    let Some(from) = values.get("--from").copied() else {
        return usage_error("report needs --from ACCESS_LOG (- for standard input)");
    };
    let Some(by) = GroupBy::parse(values.get("--by").copied().unwrap_or("tenant")) else {
        return usage_error("--by is one of tenant, model, route, provider");
    };
    let mut window = Window::default();
    for (flag, slot) in [("--since", &mut window.since), ("--until", &mut window.until)] {
        if let Some(text) = values.get(flag) {
            match parse_time(text) {
                Some(at) => *slot = Some(at),
                None => {
                    return usage_error(&format!("{flag}: {text:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"))
                }
            }
        }
    }
    // Spend against budget: the configuration's USD limits, in the window `--until` ends in
    // (else the current one). Provider keys and the admin token are not needed to read limits.
    let budgets = match values.get("--config") {
        None => None,
        Some(path) => {
            let placeholder = |_: &str| Some("placeholder-not-a-secret".to_string());
            let compiled = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| tollgate::config::compile_with_env(&bytes, &placeholder).map_err(|e| e.to_string()));
            match compiled {
                Ok(policy) => Some(policy.budgets),
                Err(err) => {
                    eprintln!("{path}: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let reference = match window.until {
        Some(until) => i64::try_from((until - 1).div_euclid(1_000_000_000)).unwrap_or(i64::MAX),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    };
    let input: Box<dyn Read> = if from == "-" {
        Box::new(std::io::stdin())
    } else {
        match std::fs::File::open(from) {
            Ok(file) => Box::new(file),
            Err(err) => {
                eprintln!("{from}: cannot read: {err}");
                return ExitCode::FAILURE;
            }
        }
    };
    let report = match Report::read(BufReader::new(input), by, window) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("{from}: cannot read: {err}");
            return ExitCode::FAILURE;
        }
    };
    let spend = budgets.map(|b| super::report_budgets::table(&b, &report.budgets, reference)).unwrap_or_default();
    match values.get("--csv").copied() {
        Some("-") => print!("{}", report.csv(by)),
        Some(path) => {
            let written = std::fs::File::create(path).and_then(|mut f| f.write_all(report.csv(by).as_bytes()));
            if let Err(err) = written {
                eprintln!("{path}: cannot write: {err}");
                return ExitCode::FAILURE;
            }
            print!("{}{spend}", report.table(by));
        }
        None => print!("{}{spend}", report.table(by)),
    }
    ExitCode::SUCCESS
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("tollgate report: {message}\n\n{}", crate::USAGE);
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn usd_strings_become_exact_pico_usd_and_back() {
        assert_eq!(parse_usd("0.0000114"), Some(11_400_000));
        assert_eq!(parse_usd("0.000000000001"), Some(1));
        assert_eq!(parse_usd("12"), Some(12 * PICO_PER_USD));
        assert_eq!(parse_usd("1.0725"), Some(1_072_500_000_000));
        assert_eq!(parse_usd("0.1000000000000"), Some(100_000_000_000), "trailing zeros past 12 places");
        for bad in ["", ".5", "5.", "-1", "1e-3", "0.0000000000001", "0,5", " 1", "unpriced", "1.2.3"] {
            assert_eq!(parse_usd(bad), None, "{bad:?}");
        }
        for pico in [0u128, 1, 11_400_000, 1_072_500_000_000, 123 * PICO_PER_USD + 7, u128::from(u64::MAX) * 3] {
            assert_eq!(parse_usd(&usd(pico)), Some(pico));
        }
        assert_eq!(usd(0), "0.0");
        assert_eq!(usd(11_400_000), "0.0000114");
    }

    #[test]
    fn rfc3339_times_with_offsets_and_fractions() {
        let second = 1_000_000_000i128;
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2026-11-21T20:56:23.833Z"), Some(1_795_294_583 * second + 833_000_000));
        assert_eq!(parse_time("2026-11-21T22:56:23.833+02:00"), parse_time("2026-11-21T20:56:23.833Z"));
        assert_eq!(parse_time("2026-11-21T19:56:23.833-01:00"), parse_time("2026-11-21T20:56:23.833Z"));
        assert_eq!(parse_time("2000-02-29T00:00:00.123456789123Z"), Some(951_782_400 * second + 123_456_789));
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Some(-second));
        for bad in [
            "2026-13-01",
            "2026-02-29",
            "2026-11-21T24:00:00Z",
            "2026-11-21T20:56:23",
            "2026-11-21T20:56Z",
            "2026-11-21T20:56:23.Z",
            "2026-11-21T20:56:23+0200",
            "yesterday",
            "",
            "2026-1-01",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    fn line(record: &str, extra: &str) -> String {
        let record = serde_json::to_string(record).unwrap();
        format!(
            r#"{{"time":"2026-11-21T10:00:00.000Z","path":"/v1/chat/completions?x=1","status":200{extra},"tollgate":{record}}}"#
        )
    }

    #[test]
    fn groups_sum_tokens_and_cost_and_count_unpriced_and_skipped_lines() {
        let log = [
            line(r#"{"tenant":"acme","model_served":"gpt-4o","provider":"openai","tokens":{"input":{"tokens":10,"source":"provider"},"output":{"tokens":5,"source":"provider"}},"cost_usd":"0.0001"}"#, ""),
            line(r#"{"tenant":"acme","model_requested":"llama","tokens":{"input":{"tokens":3,"source":"provider"}},"cost_usd":null}"#, r#","route":"team-a""#),
            line(r#"{"tenant":null,"model_served":"gpt-4o","tokens":{},"cost_usd":null,"outcome":"upstream_error"}"#, r#","route":"-""#),
            "[2026-11-21 10:00:00.000][1][info][main] starting".into(),
            r#"{"time":"2026-11-21T10:00:00Z","path":"/healthz","tollgate":null}"#.into(),
            r#"{"time":"2026-11-21T10:00:00Z","path":"/x","tollgate":"-"}"#.into(),
            line(r#"{"cost_usd":"1e-3"}"#, ""),
            line(r#"{"cost_usd":"0.1","tokens":{"input":{"tokens":-1}}}"#, ""),
            String::new(),
        ]
        .join("\n");
        let report = Report::read(log.as_bytes(), GroupBy::Tenant, Window::default()).unwrap();
        assert_eq!(
            report.total,
            Totals { requests: 3, input_tokens: 13, output_tokens: 5, cost_pico_usd: 100_000_000, unpriced: 1 }
        );
        assert_eq!(report.groups["acme"].requests, 2);
        assert_eq!(report.groups["acme"].unpriced, 1);
        assert_eq!(report.groups["none"].requests, 1);
        assert_eq!(report.groups["none"].unpriced, 0, "no tokens, nothing to price");
        assert_eq!(
            report.skipped,
            Skipped { not_json: 1, no_record: 2, invalid_record: 2, undated: 0, outside_range: 0 }
        );

        let by_route = Report::read(log.as_bytes(), GroupBy::Route, Window::default()).unwrap();
        assert_eq!(by_route.groups.keys().collect::<Vec<_>>(), ["/v1/chat/completions", "team-a"]);
        let by_model = Report::read(log.as_bytes(), GroupBy::Model, Window::default()).unwrap();
        assert_eq!(by_model.groups.keys().collect::<Vec<_>>(), ["gpt-4o", "llama"]);
        let by_provider = Report::read(log.as_bytes(), GroupBy::Provider, Window::default()).unwrap();
        assert_eq!(by_provider.groups.keys().collect::<Vec<_>>(), ["openai", "unknown"]);
    }

    #[test]
    fn time_window_is_half_open_and_undated_lines_are_counted() {
        let at = |time: &str| format!(r#"{{"time":"{time}","tollgate":"{{\"cost_usd\":\"1\",\"tokens\":{{}}}}"}}"#);
        let log = [
            at("2026-11-01T00:00:00Z"),
            at("2026-11-30T23:59:59.999Z"),
            at("2026-12-01T00:00:00Z"),
            at("2026-10-31T23:59:59Z"),
            r#"{"tollgate":"{}"}"#.into(),
        ]
        .join("\n");
        let window = Window { since: parse_time("2026-11-01"), until: parse_time("2026-12-01T00:00:00Z") };
        let report = Report::read(log.as_bytes(), GroupBy::Tenant, window).unwrap();
        assert_eq!(report.total.requests, 2);
        assert_eq!(report.total.cost_pico_usd, 2 * PICO_PER_USD);
        assert_eq!(report.skipped.outside_range, 2);
        assert_eq!(report.skipped.undated, 1);
        let all = Report::read(log.as_bytes(), GroupBy::Tenant, Window::default()).unwrap();
        assert_eq!(all.total.requests, 5, "without a window, time is not needed");
    }

    #[test]
    fn reads_kongs_file_log_lines_too() {
        let record = r#"{"tenant":"acme","model_served":"gpt-4o-mini","tokens":{"input":{"tokens":8,"source":"provider"},"output":{"tokens":16,"source":"provider"}},"cost_usd":"0.0000108"}"#;
        let kong = |started_at: u64, route: &str| {
            serde_json::json!({
                "started_at": started_at, "request": {"uri": "/v1/chat/completions?a=b", "method": "POST"},
                "route": {"name": route, "paths": ["/"]}, "response": {"status": 200}, "tollgate": record,
            })
            .to_string()
        };
        let nameless = serde_json::json!({"started_at": 1_795_294_583_000u64, "request": {"uri": "/v1/messages"},
                                          "tollgate": record})
        .to_string();
        // 2026-11-21T20:56:23Z and a day later
        let log = [kong(1_795_294_583_000, "team-a"), kong(1_795_380_983_000, "public"), nameless].join("\n");
        let by_route = Report::read(log.as_bytes(), GroupBy::Route, Window::default()).unwrap();
        assert_eq!(by_route.groups.keys().collect::<Vec<_>>(), ["/v1/messages", "public", "team-a"]);
        assert_eq!(by_route.total.cost_pico_usd, 3 * 10_800_000);
        let window = Window { since: None, until: parse_time("2026-11-22") };
        let first_day = Report::read(log.as_bytes(), GroupBy::Tenant, window).unwrap();
        assert_eq!(first_day.total.requests, 2);
        assert_eq!(first_day.skipped.outside_range, 1);
    }

    #[test]
    fn csv_quotes_names_and_table_ranks_by_cost() {
        let log = [
            line(r#"{"tenant":"small","cost_usd":"0.1","tokens":{}}"#, ""),
            line(r#"{"tenant":"big, \"inc\"","cost_usd":"2","tokens":{}}"#, ""),
        ]
        .join("\n");
        let report = Report::read(log.as_bytes(), GroupBy::Tenant, Window::default()).unwrap();
        assert_eq!(
            report.csv(GroupBy::Tenant),
            "tenant,requests,input_tokens,output_tokens,cost_usd,unpriced\n\"big, \"\"inc\"\"\",1,0,0,2.0,0\nsmall,1,0,0,0.1,0\n"
        );
        let table = report.table(GroupBy::Tenant);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("TENANT"));
        assert!(lines[1].starts_with("big"));
        assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), ["TOTAL", "2", "0", "0", "2.1", "0"], "{table}");
    }
}
