//! The budgets' admin API through the filter on the fake host: what it shows is what the shared
//! data holds (read here directly, and what the requests' own headers said), a reset lets the
//! next request in, nothing is answered without the token, the per-limit index is bounded, and
//! on the Redis store the API is one call to the store's front.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{policy, FakeHost, LocalReply, Profile};
use tollgate::budgets::admin::index::MAX_SCOPES;
use tollgate::budgets::admin::redis::{sha, ADMIN_SCRIPT};
use tollgate::budgets::ledger::PREFIX;
use tollgate::config::{self, Policy};
use tollgate::filter::Filter;

const CHAT_RESPONSE: &[u8] = include_bytes!("fixtures/openai/chat_response.json");
const JSON_OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const TOKEN: &str = "operator-token-0123456789";
/// 2026-12-07T12:00:00Z: a day window that is not the epoch's.
const NOON: u64 = 1_796_644_800;

fn with_admin(limits: Value) -> Rc<Policy> {
    policy(
        &json!({"tenant": {"header": "x-tenant"}, "budgets": {
            "limits": limits,
            "admin": {"token": {"value": TOKEN}}
        }})
        .to_string(),
    )
}

fn limits() -> Value {
    json!([
        {"name": "rpm", "requests": 3, "window": "minute", "by": ["tenant"]},
        {"name": "daily", "usd": "1", "window": "day", "by": ["tenant"]},
        {"name": "all", "total_tokens": 1000000, "window": "hour"}
    ])
}

/// A fresh stream on the same proxy (shared data and clock carried over).
fn next(host: &mut FakeHost) {
    let mut fresh = FakeHost::new(host.profile);
    fresh.shared = Rc::clone(&host.shared);
    fresh.clock = host.clock;
    *host = fresh;
}

fn chat(host: &mut FakeHost, policy: &Rc<Policy>, tenant: &str) -> Option<LocalReply> {
    next(host);
    let mut filter = Filter::new(1, Rc::clone(policy));
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}).to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-tenant", tenant),
    ];
    host.request(&mut filter, &headers, &[body.as_bytes()]);
    if host.reply.is_none() {
        host.response(&mut filter, JSON_OK, &[CHAT_RESPONSE]);
    }
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    host.reply.clone()
}

fn admin(host: &mut FakeHost, policy: &Rc<Policy>, method: &str, path: &str, token: Option<&str>) -> LocalReply {
    next(host);
    let mut filter = Filter::new(1, Rc::clone(policy));
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![(":method", method), (":path", path)];
    if let Some(value) = &authorization {
        headers.push(("authorization", value.as_str()));
    }
    host.request(&mut filter, &headers, &[]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    assert!(!host.upstream_headers_released, "an admin request never goes upstream");
    host.reply.clone().expect("the filter answers an admin request itself")
}

fn stored(host: &FakeHost, key: &str) -> Option<(i64, u64)> {
    let shared = host.shared.borrow();
    let text = String::from_utf8(shared.get(&[PREFIX, key].concat())?.0.clone()).unwrap();
    let (window, used) = text.split_once(' ').unwrap();
    Some((window.parse().unwrap(), used.parse().unwrap()))
}

fn limit<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["data"].as_array().unwrap().iter().find(|l| l["name"] == name).unwrap()
}

fn noon_host(profile: Profile) -> FakeHost {
    let mut host = FakeHost::new(profile);
    host.clock = NOON * 1_000_000_000;
    host
}

#[test]
fn show_reports_what_the_shared_data_holds_for_every_limit_and_scope() {
    for profile in [Profile::Envoy, Profile::Kong] {
        let policy = with_admin(limits());
        let mut host = noon_host(profile);
        for tenant in ["acme", "acme", "globex"] {
            assert!(chat(&mut host, &policy, tenant).is_none());
        }
        // globex's one request: what its usage record says it settled.
        let settled_usd = host.record()["budget"]["settled"]["usd"].clone();
        let reply = admin(&mut host, &policy, "GET", "/tollgate/budgets", Some(TOKEN));
        assert_eq!(reply.status, 200);
        let body = reply.json();
        assert_eq!(body["store"], "embedded");
        assert_eq!(body["now"], "2026-12-07T12:00:00Z");
        let rpm = limit(&body, "rpm");
        assert_eq!(rpm["limit"], 3);
        assert_eq!(rpm["window"], "minute");
        assert_eq!(rpm["resets_at"], "2026-12-07T12:01:00Z");
        assert_eq!(rpm["by"], json!(["tenant"]));
        let scopes: Vec<(String, u64)> = rpm["counters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["scope"].as_str().unwrap().to_string(), c["used"].as_u64().unwrap()))
            .collect();
        assert_eq!(scopes, [("acme".to_string(), 2), ("globex".to_string(), 1)]);
        for (scope, used) in &scopes {
            assert_eq!(stored(&host, &format!("rpm:{scope}")).unwrap().1, *used, "{profile:?}");
        }
        let daily = limit(&body, "daily");
        assert_eq!(daily["unit"], "pico_usd");
        assert_eq!(daily["limit_usd"], "1.0");
        let globex = daily["counters"].as_array().unwrap().iter().find(|c| c["scope"] == "globex").unwrap();
        assert_eq!(globex["used"].as_u64().unwrap(), stored(&host, "daily:globex").unwrap().1);
        assert_eq!(globex["used_usd"], settled_usd, "as the usage record says");
        assert_eq!(daily["resets_at"], "2026-12-08T00:00:00Z");
        let all = limit(&body, "all");
        assert_eq!(all["counters"][0]["scope"], "", "a limit without by has one counter");
        assert_eq!(all["counters"][0]["used"].as_u64(), stored(&host, "all").map(|s| s.1));

        // One limit, one scope; a scope never seen has used nothing.
        let one = admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=rpm&scope=acme", Some(TOKEN)).json();
        assert_eq!(one["data"].as_array().unwrap().len(), 1);
        assert_eq!(one["data"][0]["counters"], json!([{"scope": "acme", "used": 2, "remaining": 1}]));
        let unseen = admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=rpm&scope=initech", Some(TOKEN)).json();
        assert_eq!(unseen["data"][0]["counters"][0]["used"], 0);

        // The next minute, the request counters of the last one are not this window's.
        host.advance_ms(60_000);
        let later = admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=rpm", Some(TOKEN)).json();
        assert_eq!(later["data"][0]["counters"], json!([]));
    }
}

#[test]
fn a_reset_lets_the_next_request_in_and_says_what_the_counter_held() {
    let policy = with_admin(limits());
    let mut host = noon_host(Profile::Envoy);
    for _ in 0..3 {
        assert!(chat(&mut host, &policy, "acme").is_none());
    }
    assert_eq!(chat(&mut host, &policy, "acme").unwrap().status, 429);
    assert_eq!(chat(&mut host, &policy, "globex"), None);

    let reply = admin(&mut host, &policy, "POST", "/tollgate/budgets?limit=rpm&scope=acme", Some(TOKEN));
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["reset"], true);
    assert_eq!(body["data"][0]["counters"], json!([{"scope": "acme", "used": 3, "remaining": 0}]));
    assert_eq!(stored(&host, "rpm:acme").unwrap().1, 0);
    assert_eq!(stored(&host, "rpm:globex").unwrap().1, 1, "other scopes keep their counts");
    assert!(chat(&mut host, &policy, "acme").is_none(), "admitted after the reset");

    // DELETE answers 204; the whole limit; a scope without a counter is 404.
    let reply = admin(&mut host, &policy, "DELETE", "/tollgate/budgets?limit=rpm", Some(TOKEN));
    assert_eq!((reply.status, reply.body.len()), (204, 0));
    assert_eq!(stored(&host, "rpm:acme").unwrap().1, 0);
    assert_eq!(stored(&host, "rpm:globex").unwrap().1, 0);
    let reply = admin(&mut host, &policy, "POST", "/tollgate/budgets?limit=rpm&scope=initech", Some(TOKEN));
    assert_eq!(reply.status, 404);
    // A counter holding something else is repaired by a reset.
    host.shared.borrow_mut().insert([PREFIX, "daily:acme"].concat(), (b"garbage".to_vec(), 7));
    assert_eq!(admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=daily", Some(TOKEN)).status, 503);
    assert_eq!(admin(&mut host, &policy, "POST", "/tollgate/budgets?limit=daily&scope=acme", Some(TOKEN)).status, 200);
    assert_eq!(admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=daily", Some(TOKEN)).status, 200);
}

#[test]
fn without_the_token_nothing_is_shown_or_reset() {
    let policy = with_admin(limits());
    let mut host = noon_host(Profile::Envoy);
    assert!(chat(&mut host, &policy, "acme").is_none());
    for (method, path) in [("GET", "/tollgate/budgets"), ("POST", "/tollgate/budgets?limit=rpm&scope=acme")] {
        let reply = admin(&mut host, &policy, method, path, None);
        assert_eq!(reply.status, 401);
        assert!(reply.headers.iter().any(|(n, v)| n == "www-authenticate" && v.starts_with("Bearer")));
        let wrong = admin(&mut host, &policy, method, path, Some("operator-token-0123456788"));
        assert_eq!(wrong.status, 403);
        let prefix = admin(&mut host, &policy, method, path, Some("operator-token"));
        assert_eq!(prefix.status, 403);
        for reply in [reply, wrong, prefix] {
            assert_eq!(reply.json().as_object().unwrap().keys().collect::<Vec<_>>(), ["message"]);
            assert!(!String::from_utf8_lossy(&reply.body).contains("acme"));
        }
    }
    assert_eq!(stored(&host, "rpm:acme").unwrap().1, 1, "nothing was reset");
    // Wrong methods and parameters, once authorized.
    let reply = admin(&mut host, &policy, "PUT", "/tollgate/budgets", Some(TOKEN));
    assert_eq!(reply.status, 405);
    assert!(reply.headers.iter().any(|(n, v)| n == "allow" && v == "GET, POST, DELETE"));
    assert_eq!(admin(&mut host, &policy, "POST", "/tollgate/budgets", Some(TOKEN)).status, 400);
    assert_eq!(admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=nope", Some(TOKEN)).status, 404);
    assert_eq!(admin(&mut host, &policy, "GET", "/tollgate/budgets?limit=rpm&scope=a:b", Some(TOKEN)).status, 400);
    assert_eq!(admin(&mut host, &policy, "GET", "/tollgate/budgets?tenant=acme", Some(TOKEN)).status, 400);
}

#[test]
fn without_budgets_admin_the_path_is_an_ordinary_request() {
    let policy = policy(&json!({"budgets": {"limits": limits()}}).to_string());
    let mut host = noon_host(Profile::Envoy);
    let mut filter = Filter::new(1, Rc::clone(&policy));
    host.request(
        &mut filter,
        &[(":method", "GET"), (":path", "/tollgate/budgets"), ("authorization", "Bearer x")],
        &[],
    );
    assert!(host.reply.is_none());
    assert!(host.upstream_headers_released, "not Tollgate's: it goes where the proxy routes it");
}

#[test]
fn the_index_names_at_most_its_bound_and_counts_the_rest() {
    let policy = with_admin(json!([{"name": "rpm", "requests": 5, "window": "hour", "by": ["tenant"]}]));
    let mut host = noon_host(Profile::Envoy);
    for i in 0..MAX_SCOPES + 3 {
        assert!(chat(&mut host, &policy, &format!("t{i:04}")).is_none());
    }
    let body = admin(&mut host, &policy, "GET", "/tollgate/budgets", Some(TOKEN)).json();
    assert_eq!(body["data"][0]["counters"].as_array().unwrap().len(), MAX_SCOPES);
    assert_eq!(body["data"][0]["unlisted_counters"], 3);
    // Past the bound a counter is still enforced, read and reset by its scope.
    let last = format!("t{:04}", MAX_SCOPES + 2);
    assert_eq!(stored(&host, &format!("rpm:{last}")).unwrap().1, 1);
    let path = format!("/tollgate/budgets?limit=rpm&scope={last}");
    assert_eq!(admin(&mut host, &policy, "GET", &path, Some(TOKEN)).json()["data"][0]["counters"][0]["used"], 1);
    assert_eq!(admin(&mut host, &policy, "POST", &path, Some(TOKEN)).status, 200);
    assert_eq!(stored(&host, &format!("rpm:{last}")).unwrap().1, 0);
}

#[test]
fn on_redis_the_api_is_one_call_to_the_front_and_reads_its_answer() {
    let policy = policy(
        &json!({"budgets": {
            "store": {"redis": {"endpoint": "webdis"}},
            "limits": limits(),
            "admin": {"path": "/ops/budgets", "token": {"value": TOKEN}}
        }})
        .to_string(),
    );
    let mut host = noon_host(Profile::Envoy);
    next(&mut host);
    let mut filter = Filter::new(1, Rc::clone(&policy));
    let authorization = format!("Bearer {TOKEN}");
    let headers = [(":method", "GET"), (":path", "/ops/budgets?limit=rpm"), ("authorization", authorization.as_str())];
    host.request(&mut filter, &headers, &[]);
    assert!(host.reply.is_none() && !host.upstream_headers_released);
    let (token, call) = host.calls[0].clone();
    let minute = NOON / 60;
    assert_eq!(call.upstream, "webdis");
    // Its answer comes named (`?jsonp=`): only an answer with that name is taken.
    assert_eq!(
        call.path,
        format!("/EVALSHA/{}/0/read/tollgate%3Abudget%3Arpm%3A%2A/10000?jsonp={}", sha(), call.callback)
    );
    // Redis restarted: the script is sent whole, then its answer is the operator's.
    host.answer_call(&mut filter, token, Some(200), br#"{"EVALSHA":[false,"NOSCRIPT No matching script."]}"#);
    let (token, call) = host.calls[1].clone();
    assert!(call.path.starts_with("/EVAL/") && call.path.len() > ADMIN_SCRIPT.len());
    let answer = json!({"EVAL": [0,
        format!("tollgate:budget:rpm:acme:{minute}"), "2",
        format!("tollgate:budget:rpm:globex:{}", minute - 1), "3",
        format!("tollgate:budget:rpm:a:b:{minute}"), "9"
    ]});
    host.answer_call(&mut filter, token, Some(200), answer.to_string().as_bytes());
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["store"], "redis");
    assert_eq!(
        body["data"][0]["counters"],
        json!([{"scope": "acme", "used": 2, "remaining": 1}]),
        "this window's only"
    );
    assert!(host.violations.is_empty(), "{:?}", host.violations);

    // A scope's reset deletes its key of this window; Redis away is a 503.
    next(&mut host);
    let mut filter = Filter::new(1, Rc::clone(&policy));
    let headers = [
        (":method", "POST"),
        (":path", "/ops/budgets?limit=rpm&scope=acme"),
        ("authorization", authorization.as_str()),
    ];
    host.request(&mut filter, &headers, &[]);
    let (token, call) = host.calls[0].clone();
    assert_eq!(
        call.path,
        format!(
            "/EVALSHA/{}/1/tollgate%3Abudget%3Arpm%3Aacme%3A{minute}/delete/tollgate%3Abudget%3A%2A/10000?jsonp={}",
            sha(),
            call.callback
        )
    );
    host.answer_call(&mut filter, token, Some(503), b"");
    assert_eq!(host.reply.clone().unwrap().status, 503);

    // Kong cannot wait in the headers step: it says so.
    let mut kong = noon_host(Profile::Kong);
    let mut filter = Filter::new(1, Rc::clone(&policy));
    kong.request(&mut filter, &headers, &[]);
    assert_eq!(kong.reply.clone().unwrap().status, 501);
    assert!(kong.calls.is_empty());
}

#[test]
fn the_admin_configuration_is_checked_at_load() {
    let error = |admin: Value| {
        let config = json!({"budgets": {"admin": admin}}).to_string();
        config::compile_with_env(config.as_bytes(), &|name| (name == "ADMIN_TOKEN").then(|| TOKEN.to_string()))
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(error(json!({"token": {"env": "ADMIN_TOKEN"}})), None);
    assert!(error(json!({"token": {"env": "NOPE"}})).unwrap().contains("budgets.admin.token.env"));
    assert!(error(json!({"token": {"value": "short"}})).unwrap().contains("at least 16"));
    assert!(error(json!({"token": {"value": TOKEN, "env": "ADMIN_TOKEN"}})).unwrap().contains("exactly one"));
    assert!(error(json!({"path": "no-slash", "token": {"value": TOKEN}})).unwrap().contains("budgets.admin.path"));
    assert!(error(json!({})).unwrap().contains("token"));
}

#[test]
fn the_chargeback_report_adds_up_to_the_counters() {
    // Requests through the filter, their usage records in an access log: the report's spend per
    // scope is what the shared data's counters hold, and its share is spent / budget.
    let config = json!({"tenant": {"header": "x-tenant"}, "budgets": {"limits": [
        {"name": "daily", "usd": "0.01", "window": "day", "by": ["tenant"]},
        {"name": "rpm", "requests": 100, "window": "minute"}
    ]}});
    let policy = policy(&config.to_string());
    let mut host = noon_host(Profile::Envoy);
    let mut log = String::new();
    for (i, tenant) in ["acme", "acme", "globex", "acme"].iter().enumerate() {
        host.advance_ms(1_000);
        let at = admin_time(&host);
        assert!(chat(&mut host, &policy, tenant).is_none());
        let line = json!({"time": at, "tollgate": host.exports["tollgate.usage"], "request_id": i});
        log.push_str(&line.to_string());
        log.push('\n');
    }
    let dir = std::env::temp_dir().join(format!("tollgate-budgets-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (log_path, config_path) = (dir.join("access.log"), dir.join("config.json"));
    std::fs::write(&log_path, log).unwrap();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["report", "--from", log_path.to_str().unwrap(), "--until", "2026-12-08", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let section = text.split("spend against budget").nth(1).expect("the section is printed");
    let rows: Vec<Vec<&str>> = section.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        let (scope, spent, budget, share) = (row[1], row[3], row[4], row[5]);
        let counter = stored(&host, &format!("daily:{scope}")).unwrap().1;
        assert_eq!(pico_usd(spent), u128::from(counter), "{scope}: the counter holds what the records settled");
        assert_eq!(budget, "0.01");
        let permille = u128::from(counter) * 1000 / 10_000_000_000;
        assert_eq!(share, format!("{}.{}%", permille / 10, permille % 10));
    }
}

fn admin_time(host: &FakeHost) -> String {
    tollgate::budgets::admin::rfc3339(i64::try_from(host.clock / 1_000_000_000).unwrap())
}

/// Decimal USD as pico-USD (the report prints exact decimals).
fn pico_usd(text: &str) -> u128 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    whole.parse::<u128>().unwrap() * 1_000_000_000_000 + format!("{fraction:0<12}").parse::<u128>().unwrap()
}
