//! The budgets' admin API: what operators read and reset of the counters, answered by the
//! filter itself (never forwarded upstream), since only the filter reaches the proxy's shared
//! data; on the Redis store it answers from Redis through the same HTTP front.
//!
//! `GET <path>[?limit=L[&scope=S]]` lists every limit (or one, or one scope) with each counter
//! of its current window: used, remaining, when it resets. `POST` or `DELETE <path>?limit=L
//! [&scope=S]` resets one scope's counter, or every counter of a limit. Off unless
//! `budgets.admin` is configured; every request needs `authorization: Bearer <token>` (401
//! without one, 403 with another) before anything else is looked at.
//!
//! Pure: this module parses requests, checks the token and renders answers; [`index`] keeps the
//! embedded store's list of counters, [`redis`] builds the Redis store's calls.

pub mod index;
pub mod redis;

use serde::Deserialize;

use super::window::civil_from_days;
use super::{Budgets, Limit, Measure};
use crate::pricing::usd_string;

/// Where the admin API answers when `path` is not given.
pub const DEFAULT_PATH: &str = "/tollgate/budgets";
/// The shortest token accepted: a guessable token would make the counters anyone's to reset.
const MIN_TOKEN_CHARS: usize = 16;

/// `budgets.admin` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default)]
    path: Option<String>,
    token: RawToken,
}

/// The token, as provider `api_key`s are given: `{"env": "VAR"}` (the Wasm VM's environment)
/// or `{"value": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// The compiled `budgets.admin`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub path: String,
    token: String,
}

impl std::fmt::Debug for AdminConfig {
    // The token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Compiles `budgets.admin`; errors name the field (`budgets.admin.token.env`).
pub fn compile(
    raw: Option<RawAdmin>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AdminConfig>, (String, String)> {
    let Some(raw) = raw else { return Ok(None) };
    let path = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
    if !path.starts_with('/')
        || path.len() > 256
        || path.bytes().any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f)
    {
        return Err(("budgets.admin.path".into(), format!("{path:?} is not a path: /… without spaces, ? or #")));
    }
    let token = match raw.token {
        RawToken { env: Some(var), value: None } => env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
            ("budgets.admin.token.env".to_string(), format!("environment variable {var} is not set in the Wasm VM"))
        })?,
        RawToken { env: None, value: Some(value) } => value,
        _ => return Err(("budgets.admin.token".into(), "give exactly one of env (a variable name) or value".into())),
    };
    if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err((
            "budgets.admin.token".into(),
            format!("must be at least {MIN_TOKEN_CHARS} characters, without spaces or control characters"),
        ));
    }
    Ok(Some(AdminConfig { path: path.trim_end_matches('/').to_string(), token }))
}

impl AdminConfig {
    /// Whether a request's path (with its query) is the admin API's.
    pub fn claims(&self, path_and_query: &str) -> bool {
        let path = path_and_query.split_once('?').map_or(path_and_query, |(path, _)| path);
        path.trim_end_matches('/') == self.path
    }

    /// Checks `authorization: Bearer <token>` in constant time (the comparison takes as long
    /// whatever prefix matches).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), Answer> {
        let Some(given) = authorization.and_then(|value| {
            let (scheme, credentials) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
        }) else {
            return Err(Answer::error(401, "This API needs authorization: Bearer <token> (budgets.admin.token)."));
        };
        let (a, b) = (given.as_bytes(), self.token.as_bytes());
        let mut differ = u8::from(a.len() != b.len());
        for (i, byte) in b.iter().enumerate() {
            differ |= a.get(i).copied().unwrap_or(0) ^ byte;
        }
        if differ != 0 {
            return Err(Answer::error(403, "The token is not the admin token."));
        }
        Ok(())
    }
}

/// What an admin request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub reset: bool,
    /// `DELETE`: answered 204 with no body (the request succeeded, there is nothing to say).
    pub quiet: bool,
    pub limit: Option<String>,
    /// The scope as in counter keys: the `by` values, escaped, joined by `:`.
    pub scope: Option<String>,
}

/// An answer to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// `{"message": "…"}`, as Kong's admin API answers errors.
    pub fn error(status: u16, message: &str) -> Answer {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if status == 401 {
            headers.push(("www-authenticate", "Bearer realm=\"tollgate\"".to_string()));
        }
        let body = serde_json::json!({ "message": message }).to_string().into_bytes();
        Answer { status, headers, body }
    }

    fn json(status: u16, value: &serde_json::Value) -> Answer {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Answer { status, headers: vec![("content-type", "application/json".to_string())], body }
    }
}

/// Reads the method and query, once authorized. `GET` (and `HEAD`) shows; `POST` and `DELETE`
/// reset and need `limit`.
pub fn parse(budgets: &Budgets, method: &str, path_and_query: &str) -> Result<Request, Answer> {
    let (reset, quiet) = match method {
        "GET" | "HEAD" => (false, false),
        "POST" => (true, false),
        "DELETE" => (true, true),
        _ => {
            let mut answer = Answer::error(405, &format!("{method} is not one of GET, POST, DELETE."));
            answer.headers.push(("allow", "GET, POST, DELETE".to_string()));
            return Err(answer);
        }
    };
    let mut request = Request { reset, quiet, limit: None, scope: None };
    let query = path_and_query.split_once('?').map_or("", |(_, query)| query);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| Answer::error(400, &format!("{name}: not UTF-8 once decoded")))?
            .into_owned();
        match name {
            "limit" => request.limit = Some(value),
            "scope" => request.scope = Some(value),
            _ => return Err(Answer::error(400, &format!("unknown parameter {name:?}: expected limit, scope"))),
        }
    }
    if request.scope.is_some() && request.limit.is_none() {
        return Err(Answer::error(400, "scope needs limit: scopes are a limit's"));
    }
    if request.reset && request.limit.is_none() {
        return Err(Answer::error(400, "a reset names its limit (limit=…), and its scope to reset only one"));
    }
    if let Some(name) = &request.limit {
        let Some(limit) = budgets.limits.iter().find(|l| &l.name == name) else {
            return Err(Answer::error(404, &format!("no limit named {name:?}")));
        };
        if let Some(scope) = &request.scope {
            let parts = if scope.is_empty() { 0 } else { scope.split(':').count() };
            if parts != limit.by.len() {
                return Err(Answer::error(
                    400,
                    &format!("limit {name} is kept per {} value(s) of by; scope {scope:?} has {parts}", limit.by.len()),
                ));
            }
        }
    }
    Ok(request)
}

impl Request {
    /// The limits the request is about, in configuration order.
    pub fn limits<'a>(&self, budgets: &'a Budgets) -> Vec<&'a Limit> {
        budgets.limits.iter().filter(|l| self.limit.as_ref().is_none_or(|name| &l.name == name)).collect()
    }
}

/// One counter as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The `by` values, escaped as in keys and joined by `:` (empty for a limit without `by`).
    pub scope: String,
    /// What the counter holds in the current window.
    pub used: u64,
}

/// A limit and the counters read for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub counters: Vec<Counter>,
    /// Counters that exist but could not be listed: past the embedded index's bound, or past
    /// the Redis listing's.
    pub unlisted: u64,
    /// The Redis store matched more counters than one call answers ([`redis::MAX_COUNTERS`]).
    pub truncated: bool,
}

/// A counter's key (without the store's prefix) for `limit` and `scope`.
pub fn key(limit: &str, scope: &str) -> String {
    if scope.is_empty() {
        limit.to_string()
    } else {
        format!("{limit}:{scope}")
    }
}

/// Splits a key into its limit's name and scope (limit names have no `:`).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

/// The answer to a show (`reset: false`) or a reset (the counters as they were).
pub fn render(store: &str, now_secs: i64, limits: &[(&Limit, Counters)], reset: bool) -> Answer {
    let data: Vec<serde_json::Value> =
        limits.iter().map(|(limit, counters)| limit_json(limit, counters, now_secs)).collect();
    let mut body = serde_json::json!({
        "store": store,
        "now": rfc3339(now_secs),
        "data": data,
    });
    if reset {
        if let Some(object) = body.as_object_mut() {
            object.insert("reset".into(), serde_json::Value::Bool(true));
        }
    }
    Answer::json(200, &body)
}

/// A reset's answer to `DELETE`: nothing to say.
pub fn no_content() -> Answer {
    Answer { status: 204, headers: Vec::new(), body: Vec::new() }
}

fn limit_json(limit: &Limit, counters: &Counters, now_secs: i64) -> serde_json::Value {
    let window = limit.window.id(now_secs);
    let resets_at = limit.window.end(window);
    let mut counters_json = Vec::with_capacity(counters.counters.len());
    for counter in &counters.counters {
        let remaining = limit.amount.saturating_sub(counter.used);
        let mut value = serde_json::json!({
            "scope": counter.scope,
            "used": counter.used,
            "remaining": remaining,
        });
        if limit.measure == Measure::Spend {
            if let Some(object) = value.as_object_mut() {
                object.insert("used_usd".into(), usd_string(counter.used).into());
                object.insert("remaining_usd".into(), usd_string(remaining).into());
            }
        }
        counters_json.push(value);
    }
    let by: Vec<&str> = limit.by.iter().map(|d| d.name()).collect();
    let mut value = serde_json::json!({
        "name": limit.name,
        "measure": limit.measure.field(),
        "unit": unit(limit.measure),
        "limit": limit.amount,
        "window": limit.window.name(),
        "window_id": window,
        "resets_at": rfc3339(resets_at),
        "resets_in_seconds": (resets_at - now_secs).max(0),
        "by": by,
        "shadow": limit.shadow,
        "counters": counters_json,
        "unlisted_counters": counters.unlisted,
        "truncated": counters.truncated,
    });
    if limit.measure == Measure::Spend {
        if let Some(object) = value.as_object_mut() {
            object.insert("limit_usd".into(), usd_string(limit.amount).into());
        }
    }
    value
}

/// The unit of `used`, `remaining` and `limit`.
fn unit(measure: Measure) -> &'static str {
    match measure {
        Measure::Spend => "pico_usd",
        Measure::Requests => "requests",
        Measure::InputTokens => "input_tokens",
        Measure::OutputTokens => "output_tokens",
        Measure::TotalTokens => "tokens",
    }
}

/// Unix seconds as `2026-12-08T00:00:00Z`.
pub fn rfc3339(unix_secs: i64) -> String {
    let (days, secs) = (unix_secs.div_euclid(86_400), unix_secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

#[cfg(test)]
mod tests;
