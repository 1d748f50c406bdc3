//! The admin API on the Redis store: one call to the HTTP front running `redis/admin.lua`, which
//! reads (or reads and deletes) counters atomically, by name for one scope or by walking
//! `tollgate:budget:<limit>:*` for a limit or every limit. A reset deletes the counter: a
//! settlement in flight then finds it missing and gives back nothing (settle.lua), as a new
//! window would.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::{Digest, Sha1};

use super::{key, split_key, Counter, Counters, Request};
use crate::budgets::redis::Call;
use crate::budgets::{Budgets, Limit, RedisStore};

pub const ADMIN_SCRIPT: &str = include_str!("../../../redis/admin.lua");
/// The most counters one admin call answers (or resets); past it the answer says `truncated`.
pub const MAX_COUNTERS: u64 = 10_000;
const COUNTER_PREFIX: &str = "tollgate:budget:";
/// As the budget scripts' calls: every byte but `A-Z a-z 0-9 - _ ~` percent-encoded (webdis
/// reads `/` as a separator, `+` as a space, `.` before an extension as a format).
const PATH_ARGUMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// The script's SHA-1, as `SCRIPT LOAD` answers it.
pub fn sha() -> String {
    Sha1::digest(ADMIN_SCRIPT.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The call answering `request` at `now_secs`: by SHA-1 first, the script whole after `NOSCRIPT`.
pub fn call(store: &RedisStore, budgets: &Budgets, request: &Request, now_secs: i64, by_sha: bool) -> Call {
    let mut keys = Vec::new();
    let mut pattern = [COUNTER_PREFIX, "*"].concat();
    if let Some(limit) = request.limit.as_ref().and_then(|name| budgets.limits.iter().find(|l| &l.name == name)) {
        match &request.scope {
            Some(scope) => {
                keys.push(format!("{COUNTER_PREFIX}{}:{}", key(&limit.name, scope), limit.window.id(now_secs)));
            }
            // Limit names are `A-Z a-z 0-9 - _ .`: nothing a SCAN pattern reads as a wildcard.
            None => pattern = format!("{COUNTER_PREFIX}{}:*", limit.name),
        }
    }
    let mut path = String::with_capacity(256);
    if by_sha {
        path.push_str("/EVALSHA/");
        path.push_str(&sha());
    } else {
        path.push_str("/EVAL/");
        path.extend(utf8_percent_encode(ADMIN_SCRIPT, PATH_ARGUMENT));
    }
    path.push('/');
    path.push_str(&keys.len().to_string());
    let mode = if request.reset { "delete" } else { "read" };
    for part in keys.iter().map(String::as_str).chain([mode, pattern.as_str(), &MAX_COUNTERS.to_string()]) {
        path.push('/');
        path.extend(utf8_percent_encode(part, PATH_ARGUMENT));
    }
    Call::new(store, path)
}

/// Reads the script's answer into each requested limit's counters of the current window. Keys of
/// other windows, of limits no longer configured, or of another shape are left out. A value that
/// is not a counter is an error for a read (the operator resets it) and 0 for a reset.
pub fn read<'a>(
    value: &serde_json::Value,
    budgets: &'a Budgets,
    request: &Request,
    now_secs: i64,
) -> Result<Vec<(&'a Limit, Counters)>, String> {
    let bad = || format!("an answer that is not the admin script's: {value}");
    let items = value.as_array().ok_or_else(bad)?;
    let text = |item: &serde_json::Value| match item {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let more = items.first().and_then(text).ok_or_else(bad)? == "1";
    let mut limits: Vec<(&Limit, Counters)> =
        request.limits(budgets).into_iter().map(|l| (l, Counters { truncated: more, ..Counters::default() })).collect();
    let mut rest = items.get(1..).unwrap_or_default().iter();
    while let (Some(key_item), Some(value_item)) = (rest.next(), rest.next()) {
        let (Some(full_key), Some(stored)) = (text(key_item), text(value_item)) else { return Err(bad()) };
        let Some((counter_key, window)) = full_key.strip_prefix(COUNTER_PREFIX).and_then(|k| k.rsplit_once(':')) else {
            continue;
        };
        let (name, scope) = split_key(counter_key);
        let Some((limit, counters)) = limits.iter_mut().find(|(l, _)| l.name == name) else { continue };
        let parts = if scope.is_empty() { 0 } else { scope.split(':').count() };
        if parts != limit.by.len() || window.parse::<i64>().ok() != Some(limit.window.id(now_secs)) {
            continue;
        }
        let used = match stored.parse::<u64>() {
            Ok(used) => used,
            Err(_) if request.reset => 0,
            Err(_) => return Err(format!("{full_key} holds {stored:?}, not a counter: reset it")),
        };
        counters.counters.push(Counter { scope: scope.to_string(), used });
    }
    for (limit, counters) in &mut limits {
        counters.counters.sort_by(|a, b| a.scope.cmp(&b.scope));
        // One scope asked for and absent: nothing used yet (a reset answers it did not exist).
        if let (Some(scope), false) = (&request.scope, request.reset) {
            if counters.counters.is_empty() && request.limit.as_deref() == Some(limit.name.as_str()) {
                counters.counters.push(Counter { scope: scope.clone(), used: 0 });
            }
        }
    }
    Ok(limits)
}
