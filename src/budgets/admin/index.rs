//! The embedded store's list of counters, per limit. Shared data cannot be enumerated, so each
//! counter's scope is written to its limit's index when the counter is created (under the
//! ledger's creation lock, and compare-and-swapped as well). Counters are never deleted (a
//! reset writes zero, a new window reuses the value), so the index only grows, and it is bounded:
//! past [`MAX_SCOPES`] scopes or [`MAX_BYTES`] bytes a limit's new counters are counted
//! (`unlisted`) but not named. They are still enforced, and read or reset by naming their scope.

use super::{key, split_key, Counter, Counters};
use crate::budgets::ledger::{self, SetError, SharedData, StoreError};
use crate::budgets::Limit;

/// Key prefix of the indexes (no `/`: Kong routes `a/b` keys to a zone `a`).
const PREFIX: &str = "tollgate:budget-index:";
/// The most scopes one limit's index names.
pub const MAX_SCOPES: usize = 1_000;
/// The largest index value, in bytes (a scope of seven client keys' hashes is ~450 bytes).
pub const MAX_BYTES: usize = 65_536;
const ATTEMPTS: usize = 64;

/// An index: how many counters it could not name, then one scope per line, after `=` (a limit
/// without `by` has the empty scope; scopes are escaped: they hold no control characters).
#[derive(Debug, Default, PartialEq, Eq)]
struct Index {
    unlisted: u64,
    scopes: Vec<String>,
}

impl Index {
    fn decode(bytes: &[u8]) -> Option<Index> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let unlisted = lines.next()?.strip_prefix("unlisted ")?.parse().ok()?;
        Some(Index { unlisted, scopes: lines.filter_map(|l| l.strip_prefix('=')).map(str::to_string).collect() })
    }

    fn encode(&self) -> String {
        let mut text = format!("unlisted {}", self.unlisted);
        for scope in &self.scopes {
            text.push_str("\n=");
            text.push_str(scope);
        }
        text
    }
}

/// Adds a new counter (`key`: limit name and scope) to its limit's index.
pub fn note(store: &mut dyn SharedData, key: &str) -> Result<(), StoreError> {
    let (limit, scope) = split_key(key);
    let index_key = [PREFIX, limit].concat();
    for _ in 0..ATTEMPTS {
        let (mut index, cas) = match store.get(&index_key).map_err(StoreError)? {
            Some((bytes, cas)) => (Index::decode(&bytes).unwrap_or_default(), cas),
            None => (Index::default(), 0),
        };
        if index.scopes.iter().any(|s| s == scope) {
            return Ok(());
        }
        let size = index.encode().len() + 2 + scope.len();
        if index.scopes.len() >= MAX_SCOPES || size > MAX_BYTES {
            index.unlisted += 1;
        } else {
            index.scopes.push(scope.to_string());
        }
        match store.set(&index_key, index.encode().as_bytes(), cas) {
            Ok(()) => return Ok(()),
            Err(SetError::Mismatch) => continue,
            Err(SetError::Failed(detail)) => return Err(StoreError(detail)),
        }
    }
    Err(StoreError(format!("{index_key} stayed contended for {ATTEMPTS} attempts")))
}

fn read(store: &dyn SharedData, limit: &str) -> Result<Index, StoreError> {
    let index_key = [PREFIX, limit].concat();
    Ok(store.get(&index_key).map_err(StoreError)?.and_then(|(bytes, _)| Index::decode(&bytes)).unwrap_or_default())
}

/// A limit's counters of its current window: one scope's (0 when it has none), or every listed
/// one that counts in this window.
pub fn show(store: &dyn SharedData, limit: &Limit, scope: Option<&str>, now_secs: i64) -> Result<Counters, StoreError> {
    let window = limit.window.id(now_secs);
    if let Some(scope) = scope {
        let used = ledger::used(store, &key(&limit.name, scope), window)?;
        return Ok(Counters { counters: vec![Counter { scope: scope.to_string(), used }], ..Counters::default() });
    }
    let index = read(store, &limit.name)?;
    let mut counters = Vec::new();
    for scope in index.scopes {
        if let Some((stored_window, used)) = ledger::counter(store, &key(&limit.name, &scope))? {
            if stored_window == window {
                counters.push(Counter { scope, used });
            }
        }
    }
    Ok(Counters { counters, unlisted: index.unlisted, truncated: false })
}

/// Resets one scope's counter, or every listed counter of a limit, to zero. Returns the counters
/// that existed, with what they held in the current window before (a counter that held something
/// other than a counter is reset too, and shown with 0).
pub fn reset(
    store: &mut dyn SharedData,
    limit: &Limit,
    scope: Option<&str>,
    now_secs: i64,
) -> Result<Counters, StoreError> {
    let window = limit.window.id(now_secs);
    let (scopes, unlisted) = match scope {
        Some(scope) => (vec![scope.to_string()], 0),
        None => {
            let index = read(store, &limit.name)?;
            (index.scopes, index.unlisted)
        }
    };
    let mut counters = Vec::new();
    for scope in scopes {
        let counter_key = key(&limit.name, &scope);
        let before = match ledger::counter(store, &counter_key) {
            Ok(None) => continue,
            Ok(Some((stored_window, used))) => {
                if stored_window == window {
                    used
                } else {
                    0
                }
            }
            Err(_) => 0,
        };
        ledger::reset(store, &counter_key)?;
        counters.push(Counter { scope, used: before });
    }
    Ok(Counters { counters, unlisted, truncated: false })
}
