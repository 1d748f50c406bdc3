//! `tollgate budgets show|reset`: reads and resets budget counters through the filter's admin
//! API (`budgets.admin`), which answers from whichever store the proxy uses (its shared data, or
//! Redis). Plain HTTP/1.1 over a TCP connection: the API belongs on an internal listener.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

const DEFAULT_TOKEN_ENV: &str = "TOLLGATE_ADMIN_TOKEN";
const TIMEOUT: Duration = Duration::from_secs(10);

/// `http://host[:port]/path`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(text: &str) -> Result<Url, String> {
    let rest = text.strip_prefix("http://").ok_or_else(|| {
        format!("{text:?}: only http:// URLs (the admin API belongs on an internal listener; use curl for https)")
    })?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, port.parse::<u16>().map_err(|_| format!("{text:?}: port {port:?} is not a number"))?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() || path.contains('?') {
        return Err(format!("{text:?}: expected http://host[:port]/path, without a query"));
    }
    Ok(Url { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port, path: path.to_string() })
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request on a fresh connection (`Connection: close`), read to its end.
pub fn send(url: &Url, method: &str, path_and_query: &str, token: &str) -> Result<Response, String> {
    let address = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{}: no address", url.host))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| format!("{address}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let host = if url.port == 80 { url.host.clone() } else { format!("{}:{}", url.host, url.port) };
    let request = format!(
        "{method} {path_and_query} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
         accept: application/json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("{address}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("{address}: {e}"))?;
    parse_response(&raw)
}

/// Reads an HTTP/1.1 response: status line, headers, a body by `content-length`, chunks, or to
/// the connection's end.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("an answer without a header end")?;
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or_default());
    let body = raw.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("an answer without an HTTP status line")?;
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)?
    } else if let Some(length) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.get(..length).ok_or("an answer shorter than its content-length")?.to_vec()
    } else {
        body.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let at = rest.windows(2).position(|w| w == b"\r\n").ok_or("a chunk without its size line")?;
        let size_text = String::from_utf8_lossy(rest.get(..at).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("a chunk size {size_text:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        let start = at + 2;
        body.extend_from_slice(rest.get(start..start + size).ok_or("a chunk cut short")?);
        rest = rest.get(start + size + 2..).ok_or("a chunk cut short")?;
    }
}

/// The table `show` prints: one row per counter.
pub fn table(answer: &Value) -> String {
    let mut rows = vec![["LIMIT", "SCOPE", "USED", "REMAINING", "LIMIT_AMOUNT", "UNIT", "RESETS_AT"].map(String::from)];
    let mut notes = Vec::new();
    for limit in at(answer, "data").as_array().into_iter().flatten() {
        let name = at(limit, "name").as_str().unwrap_or_default();
        let spend = at(limit, "measure") == "usd";
        let amount = |counter: &Value, field: &str| {
            if spend {
                at(counter, &format!("{field}_usd")).as_str().unwrap_or_default().to_string()
            } else {
                at(counter, field).to_string()
            }
        };
        for counter in at(limit, "counters").as_array().into_iter().flatten() {
            let scope = at(counter, "scope").as_str().unwrap_or_default();
            rows.push([
                name.to_string(),
                if scope.is_empty() { "-".to_string() } else { scope.to_string() },
                amount(counter, "used"),
                amount(counter, "remaining"),
                amount(limit, "limit"),
                if spend { "usd".to_string() } else { at(limit, "unit").as_str().unwrap_or_default().to_string() },
                at(limit, "resets_at").as_str().unwrap_or_default().to_string(),
            ]);
        }
        let unlisted = at(limit, "unlisted_counters").as_u64().unwrap_or(0);
        if unlisted > 0 {
            notes.push(format!(
                "{name}: {unlisted} more counters past the index's bound (read or reset them with --scope)"
            ));
        }
        if at(limit, "truncated") == true {
            notes.push(format!("{name}: more counters than one answer holds (read them with --scope)"));
        }
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            // Names, unit and time read from the left; amounts line up on the right.
            match i {
                0 | 1 | 5 | 6 => {
                    line.push_str(cell);
                    line.push_str(&pad);
                    line.push_str("  ");
                }
                _ => {
                    line.push_str(&pad);
                    line.push_str(cell);
                    line.push_str("  ");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

pub fn run(options: &[&str]) -> ExitCode {
    let Some((&action, options)) = options.split_first() else {
        return usage_error("budgets needs show or reset");
    };
    if !matches!(action, "show" | "reset") {
        return usage_error(&format!("budgets {action}: expected show or reset"));
    }
    let mut values: HashMap<&str, &str> = HashMap::new();
    let mut json = false;
    let mut rest = options.iter();
    while let Some(&flag) = rest.next() {
        if flag == "--json" {
            json = true;
            continue;
        }
        if !matches!(flag, "--limit" | "--scope" | "--url" | "--token-env") {
            return usage_error(&format!("unknown option {flag}"));
        }
        let Some(&value) = rest.next() else { return usage_error(&format!("{flag} needs a value")) };
        if values.insert(flag, value).is_some() {
            return usage_error(&format!("{flag} given twice"));
        }
    }
    let Some(url) = values.get("--url") else {
        return usage_error("budgets needs --url http://HOST:PORT/PATH (budgets.admin.path on the proxy)");
    };
    let url = match parse_url(url) {
        Ok(url) => url,
        Err(err) => return usage_error(&err),
    };
    let (limit, scope) = (values.get("--limit").copied(), values.get("--scope").copied());
    if scope.is_some() && limit.is_none() {
        return usage_error("--scope needs --limit");
    }
    if action == "reset" && limit.is_none() {
        return usage_error("reset needs --limit (and --scope to reset only one scope's counter)");
    }
    let token_env = values.get("--token-env").copied().unwrap_or(DEFAULT_TOKEN_ENV);
    let Some(token) = std::env::var(token_env).ok().filter(|t| !t.is_empty()) else {
        return usage_error(&format!("the admin token is read from ${token_env}, which is not set"));
    };
    let mut query = Vec::new();
    for (name, value) in [("limit", limit), ("scope", scope)] {
        if let Some(value) = value {
            query.push(format!("{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)));
        }
    }
    let target = if query.is_empty() { url.path.clone() } else { format!("{}?{}", url.path, query.join("&")) };
    let method = if action == "reset" { "POST" } else { "GET" };
    let response = match send(&url, method, &target, &token) {
        Ok(response) => response,
        Err(err) => {
            eprintln!("tollgate budgets: {err}");
            return ExitCode::FAILURE;
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    if response.status != 200 {
        let message = parsed
            .as_ref()
            .and_then(|v| at(v, "message").as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned());
        eprintln!("tollgate budgets: HTTP {}: {message}", response.status);
        return ExitCode::FAILURE;
    }
    let Some(answer) = parsed else {
        eprintln!("tollgate budgets: the answer is not JSON (is --url the admin path?)");
        return ExitCode::FAILURE;
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
    } else {
        if action == "reset" {
            println!("reset (store: {}); what the counters held:", at(&answer, "store").as_str().unwrap_or("?"));
        }
        print!("{}", table(&answer));
    }
    ExitCode::SUCCESS
}

/// A member of a JSON object, or null.
fn at<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("tollgate budgets: {message}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_plain_http_with_a_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:10000/tollgate/budgets").unwrap(),
            Url { host: "127.0.0.1".into(), port: 10000, path: "/tollgate/budgets".into() }
        );
        assert_eq!(parse_url("http://admin.internal").unwrap().port, 80);
        assert_eq!(parse_url("http://[::1]:81/x").unwrap().host, "::1");
        assert!(parse_url("https://a/b").is_err());
        assert!(parse_url("http://a:b/c").is_err());
        assert!(parse_url("http://a/b?limit=x").is_err());
    }

    #[test]
    fn the_table_has_a_row_per_counter_with_usd_in_decimal() {
        let answer = serde_json::json!({"store": "embedded", "data": [
            {"name": "demo-daily", "measure": "usd", "unit": "pico_usd", "limit": 200000000u64, "limit_usd": "0.0002",
             "resets_at": "2026-12-08T00:00:00Z", "unlisted_counters": 0, "truncated": false,
             "counters": [{"scope": "demo", "used": 10800000u64, "remaining": 189200000u64,
                           "used_usd": "0.0000108", "remaining_usd": "0.0001892"}]},
            {"name": "demo-rpm", "measure": "requests", "unit": "requests", "limit": 30,
             "resets_at": "2026-12-07T12:01:00Z", "unlisted_counters": 2, "truncated": false,
             "counters": [{"scope": "demo", "used": 1, "remaining": 29}]}
        ]});
        assert_eq!(
            table(&answer),
            "LIMIT       SCOPE       USED  REMAINING  LIMIT_AMOUNT  UNIT      RESETS_AT\n\
             demo-daily  demo   0.0000108  0.0001892        0.0002  usd       2026-12-08T00:00:00Z\n\
             demo-rpm    demo           1         29            30  requests  2026-12-07T12:01:00Z\n\
             demo-rpm: 2 more counters past the index's bound (read or reset them with --scope)\n"
        );
    }

    #[test]
    fn answers_are_read_by_length_by_chunks_or_to_the_end() {
        let by_length = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((by_length.status, by_length.body), (200, b"{}".to_vec()));
        let chunked = parse_response(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((chunked.status, chunked.body), (403, b"abcde".to_vec()));
        assert_eq!(parse_response(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap().body, b"");
        assert!(parse_response(b"garbage").is_err());
    }
}
