//! `tollgate report`, run as the built binary: a chargeback table from an access log, with totals
//! that are the exact sum of the records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use tollgate::pricing::usd_string;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/report/access.log");

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).output().expect("the tollgate binary runs")
}

fn stdout(args: &[&str]) -> String {
    let out = tollgate(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The table's rows as whitespace-separated cells, keyed by their first cell.
fn rows(table: &str) -> BTreeMap<String, Vec<String>> {
    table
        .lines()
        .take_while(|line| !line.is_empty())
        .skip(1)
        .map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect()
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-report-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn fixture_by_tenant_prints_the_table_with_totals_and_what_was_skipped() {
    let table = stdout(&["report", "--from", FIXTURE]);
    let expected = "\
TENANT  REQUESTS  INPUT_TOKENS  OUTPUT_TOKENS   COST_USD  UNPRICED
none           2            40            250     0.0026         0
acme           3          4631            322  0.0008125         0
globex         2           500            100        0.0         1
TOTAL          7          5171            672  0.0034125         1

skipped lines: 2 not JSON, 1 without a usage record, 0 with an invalid record, 0 without a time, 0 outside --since/--until
price tables: litellm-1.104.5+2026-11-21 (6)
";
    assert_eq!(table, expected);
}

#[test]
fn fixture_by_model_route_and_provider() {
    let by_model = rows(&stdout(&["report", "--from", FIXTURE, "--by", "model"]));
    assert_eq!(by_model["gpt-4o-mini-2024-07-18"], ["2", "1210", "310", "0.0003675", "0"]);
    assert_eq!(by_model["my-llama"], ["1", "500", "100", "0.0", "1"]);
    assert_eq!(by_model["gpt-4.1"], ["1", "0", "0", "0.0", "0"], "a refused request: no tokens, not unpriced");
    let by_route = rows(&stdout(&["report", "--from", FIXTURE, "--by", "route"]));
    assert_eq!(by_route.keys().collect::<Vec<_>>(), ["TOTAL", "public", "team-a", "tollgate-routed"]);
    let by_provider = rows(&stdout(&["report", "--from", FIXTURE, "--by", "provider"]));
    assert_eq!(by_provider["anthropic"], ["1", "3421", "12", "0.000445", "0"]);
    assert_eq!(by_provider["unknown"][0], "4");
    for report in [by_model, by_route, by_provider] {
        assert_eq!(report["TOTAL"], ["7", "5171", "672", "0.0034125", "1"]);
    }
}

#[test]
fn since_and_until_select_a_half_open_window_and_csv_goes_to_a_file() {
    let csv = temp_path("window.csv");
    let table = stdout(&[
        "report",
        "--from",
        FIXTURE,
        "--since",
        "2026-11-01T09:30:00Z",
        "--until",
        "2026-12-01",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(table.contains("2 outside --since/--until"), "{table}");
    assert_eq!(rows(&table)["TOTAL"], ["5", "3961", "362", "0.003045", "1"]);
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "tenant,requests,input_tokens,output_tokens,cost_usd,unpriced\n\
         none,2,40,250,0.0026,0\nacme,1,3421,12,0.000445,0\nglobex,2,500,100,0.0,1\n"
    );
    // The same instant written with an offset.
    let shifted =
        stdout(&["report", "--from", FIXTURE, "--since", "2026-11-01T11:30:00+02:00", "--until", "2026-12-01"]);
    assert_eq!(rows(&shifted)["TOTAL"], rows(&table)["TOTAL"]);
}

#[test]
fn reads_standard_input_and_prints_only_csv_with_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["report", "--from", "-", "--by", "provider", "--csv", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(FIXTURE).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "provider,requests,input_tokens,output_tokens,cost_usd,unpriced\n\
         unknown,4,550,360,0.0026075,1\nanthropic,1,3421,12,0.000445,0\nopenai,2,1200,300,0.00036,0\n"
    );
}

#[test]
fn bad_options_exit_2_and_an_unreadable_log_exits_1() {
    for args in [
        &["report"][..],
        &["report", "--from"],
        &["report", "--from", FIXTURE, "--by", "team"],
        &["report", "--from", FIXTURE, "--since", "last week"],
        &["report", "--from", FIXTURE, "--until", "2026-11-01T00:00:00"],
        &["report", "--from", FIXTURE, "--format", "json"],
        &["report", "--from", FIXTURE, "--from", FIXTURE],
    ] {
        let out = tollgate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("tollgate report:"), "{args:?}");
    }
    let out = tollgate(&["report", "--from", "/nonexistent/access.log"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A generated log of thousands of records (tenants, models, routes, providers, costs from one
/// pico-USD to dollars, unpriced models, errors, Envoy's own lines, lines without a record): every
/// group's sums and the total are exactly the records' sums, computed here in integers.
#[test]
fn totals_are_the_exact_sum_of_a_generated_log() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let tenants = [Some("acme"), Some("globex"), Some("initech, ltd"), Some("umbrella"), None];
    let models = ["gpt-4o-mini-2024-07-18", "claude-haiku-4-5-20251001", "gpt-4.1", "my-llama"];
    let routes = ["team-a", "public"];
    let mut log = String::new();
    #[derive(Default)]
    struct Sums {
        requests: u64,
        input: u64,
        output: u64,
        pico: u64,
        unpriced: u64,
    }
    let mut by_tenant: BTreeMap<String, Sums> = BTreeMap::new();
    let mut total = Sums::default();
    for i in 0..5000 {
        match next(20) {
            0 => {
                log.push_str("[2026-11-21 10:00:00.000][7][info][wasm] wasm log tollgate: #1 request\n");
                continue;
            }
            1 => {
                log.push_str(
                    &json!({"time": "2026-11-21T10:00:00Z", "path": "/healthz", "tollgate": null}).to_string(),
                );
                log.push('\n');
                continue;
            }
            _ => {}
        }
        let tenant = tenants[next(tenants.len() as u64) as usize];
        let model = models[next(models.len() as u64) as usize];
        let (input, output) = (next(200_000), next(8_000));
        let kind = next(10);
        let (tokens, cost) = match kind {
            0 => (json!({}), None), // an upstream error
            1 => (
                json!({"input": {"tokens": input, "source": "provider"}, "output": {"tokens": output, "source": "provider"}}),
                None,
            ), // unpriced
            _ => {
                let pico = if kind == 2 { next(10) } else { next(5_000_000_000_000) };
                (
                    json!({"input": {"tokens": input, "source": "provider"}, "output": {"tokens": output, "source": "estimated"}}),
                    Some(pico),
                )
            }
        };
        let record = json!({
            "api": "openai.chat", "model_requested": model, "model_served": model, "provider": "openai",
            "tenant": tenant, "tokens": tokens, "cost_usd": cost.map(usd_string), "outcome": "complete",
        });
        let entry = json!({
            "time": format!("2026-11-{:02}T{:02}:00:00.{:03}Z", 1 + i % 28, i % 24, i % 1000),
            "path": "/v1/chat/completions", "route": routes[i % 2], "status": 200,
            "tollgate": record.to_string(),
        });
        log.push_str(&entry.to_string());
        log.push('\n');
        let counted = kind != 0;
        for sums in [by_tenant.entry(tenant.unwrap_or("none").to_string()).or_default(), &mut total] {
            sums.requests += 1;
            if counted {
                sums.input += input;
                sums.output += output;
            }
            sums.pico += cost.unwrap_or(0);
            sums.unpriced += u64::from(kind == 1);
        }
    }
    let path = temp_path("generated.log");
    std::fs::write(&path, &log).unwrap();
    let csv_path = temp_path("generated.csv");
    let table = stdout(&["report", "--from", path.to_str().unwrap(), "--csv", csv_path.to_str().unwrap()]);
    let expected_row = |s: &Sums| {
        vec![
            s.requests.to_string(),
            s.input.to_string(),
            s.output.to_string(),
            usd_string(s.pico),
            s.unpriced.to_string(),
        ]
    };
    assert_eq!(rows(&table)["TOTAL"], expected_row(&total), "{table}");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut from_csv: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let (name, rest) = if let Some(quoted) = line.strip_prefix('"') {
            let (name, rest) = quoted.split_once("\",").unwrap();
            (name.replace("\"\"", "\""), rest)
        } else {
            let (name, rest) = line.split_once(',').unwrap();
            (name.to_string(), rest)
        };
        from_csv.insert(name, rest.split(',').map(str::to_string).collect());
    }
    let expected: BTreeMap<String, Vec<String>> = by_tenant.iter().map(|(k, s)| (k.clone(), expected_row(s))).collect();
    assert_eq!(from_csv, expected);
    assert!(table.contains(" not JSON, "), "{table}");
}
