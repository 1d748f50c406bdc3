//! Counters in the proxy's shared data: exact across the workers of one proxy, because every
//! change is a compare-and-swap (two workers never both write over the same value).
//!
//! A counter is one shared-data value, `"<window> <used>"`: a counter of an older window counts
//! nothing in this one, so windows roll over without a sweep, and the number of values is the
//! number of counters, never grows with time. Creating a counter is the one step a
//! compare-and-swap cannot guard (the host accepts any write to a key that does not exist yet),
//! so creations take a lock, itself a compare-and-swapped value.

use super::{Budgets, Need, Touch};

/// The proxy's shared data, as the ledger needs it.
pub trait SharedData {
    /// The value and its compare-and-swap token; `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String>;
    /// Writes `value` if the key still has token `cas` (0: whatever it has).
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// Another worker wrote first.
    Mismatch,
    Failed(String),
}

/// The shared store could not be read or written, or stayed contended: the request cannot be
/// counted (the route's `failure_mode` decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// Key prefix of every value the ledger keeps (no `/`: Kong routes `a/b` keys to a zone `a`).
pub const PREFIX: &str = "tollgate:budget:";
const LOCK: &str = "tollgate:budget-lock";
/// Attempts at one compare-and-swap before the store counts as contended.
const ATTEMPTS: usize = 64;
/// A creation lock older than this (seconds) was left by a worker that failed while holding it.
const STALE_LOCK_SECS: i64 = 2;

/// What a request holds of one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub touch: Touch,
    pub amount: u64,
    /// The counter after the reservation.
    pub used: u64,
}

/// A reservation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every counter took its share. `over`: shadow limits that would have refused.
    Admitted { held: Vec<Held>, over: Vec<usize> },
    /// An enforcing limit cannot take it (`used` before, `asked` more); nothing was kept.
    Refused { touch: Touch, used: u64, asked: u64 },
    /// A spend limit applies and the model has no price.
    Unpriced { touch: Touch },
}

/// Reserves `need` on every touched counter, or on none.
pub fn reserve(
    store: &mut dyn SharedData,
    budgets: &Budgets,
    touches: Vec<Touch>,
    need: &Need,
    now_secs: i64,
) -> Result<Reserved, StoreError> {
    let mut held: Vec<Held> = Vec::with_capacity(touches.len());
    let mut over = Vec::new();
    for touch in touches {
        let Some(limit) = budgets.limit(&touch) else { continue };
        let Some(amount) = need.amount(limit.measure) else {
            if limit.shadow {
                over.push(touch.limit);
                continue;
            }
            release(store, &held, now_secs)?;
            return Ok(Reserved::Unpriced { touch });
        };
        let cap = if limit.shadow { u64::MAX } else { limit.amount };
        match add(store, &touch.key, touch.window, amount as i128, Some(cap), now_secs)? {
            Added::Now(used) => {
                if limit.shadow && used > limit.amount {
                    over.push(touch.limit);
                }
                held.push(Held { touch, amount, used });
            }
            Added::Refused(used) => {
                release(store, &held, now_secs)?;
                return Ok(Reserved::Refused { touch, used, asked: amount });
            }
        }
    }
    Ok(Reserved::Admitted { held, over })
}

/// Takes more on counters a request already holds (a stream outgrowing its reservation):
/// `more` of each counter that output moves. All or nothing; `Ok(false)` when an enforcing
/// limit cannot give it. `held` grows by what was taken.
pub fn extend(
    store: &mut dyn SharedData,
    budgets: &Budgets,
    held: &mut [Held],
    more: &Need,
    now_secs: i64,
) -> Result<bool, StoreError> {
    let mut taken: Vec<(usize, u64)> = Vec::new();
    for (index, hold) in held.iter().enumerate() {
        let Some(limit) = budgets.limit(&hold.touch) else { continue };
        if !limit.measure.counts_output() {
            continue;
        }
        let Some(amount) = more.amount(limit.measure).filter(|a| *a > 0) else { continue };
        let cap = if limit.shadow { u64::MAX } else { limit.amount };
        match add(store, &hold.touch.key, hold.touch.window, amount as i128, Some(cap), now_secs)? {
            Added::Now(_) => taken.push((index, amount)),
            Added::Refused(_) => {
                for (i, amount) in taken {
                    if let Some(hold) = held.get(i) {
                        add(store, &hold.touch.key, hold.touch.window, -(amount as i128), None, now_secs)?;
                    }
                }
                return Ok(false);
            }
        }
    }
    for (index, amount) in taken {
        if let Some(hold) = held.get_mut(index) {
            hold.amount = hold.amount.saturating_add(amount);
        }
    }
    Ok(true)
}

/// Settles each held counter to what the request did cost: it gets `actual − held`. A counter
/// whose window has ended is left alone (the window it was counted in no longer limits
/// anything). A measure `actual` cannot tell (spend of an unpriced answer) keeps its reservation.
/// Returns each counter's value after (in `held`'s order).
pub fn settle(
    store: &mut dyn SharedData,
    budgets: &Budgets,
    held: &[Held],
    actual: &Need,
    now_secs: i64,
) -> Result<Vec<u64>, StoreError> {
    let mut after = Vec::with_capacity(held.len());
    for hold in held {
        let Some(limit) = budgets.limit(&hold.touch) else {
            after.push(hold.used);
            continue;
        };
        let Some(amount) = actual.amount(limit.measure) else {
            after.push(hold.used);
            continue;
        };
        let delta = i128::from(amount) - i128::from(hold.amount);
        after.push(match add(store, &hold.touch.key, hold.touch.window, delta, None, now_secs)? {
            Added::Now(used) | Added::Refused(used) => used,
        });
    }
    Ok(after)
}

/// Gives back everything held (a request refused after it reserved, or never sent).
pub fn release(store: &mut dyn SharedData, held: &[Held], now_secs: i64) -> Result<(), StoreError> {
    for hold in held {
        add(store, &hold.touch.key, hold.touch.window, -i128::from(hold.amount), None, now_secs)?;
    }
    Ok(())
}

/// What a counter holds in `window` (0 when it counts an older one, or does not exist).
pub fn used(store: &dyn SharedData, key: &str, window: i64) -> Result<u64, StoreError> {
    let value = store.get(&[PREFIX, key].concat()).map_err(StoreError)?;
    Ok(value.and_then(|(bytes, _)| decode(&bytes)).filter(|(w, _)| *w == window).map_or(0, |(_, used)| used))
}

/// A counter's window and what it holds there; `None` when it does not exist, `Err` when the
/// value is not a counter.
pub fn counter(store: &dyn SharedData, key: &str) -> Result<Option<(i64, u64)>, StoreError> {
    match store.get(&[PREFIX, key].concat()).map_err(StoreError)? {
        None => Ok(None),
        Some((bytes, _)) => decode(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError(format!("{key} holds {} bytes that are not a counter", bytes.len()))),
    }
}

/// Sets a counter to zero (the admin API's reset): window 0, which counts nothing in any
/// current window, so a request in flight settles onto zero rather than below it.
pub fn reset(store: &mut dyn SharedData, key: &str) -> Result<(), StoreError> {
    let full = [PREFIX, key].concat();
    match store.get(&full).map_err(StoreError)? {
        Some(_) => store.set(&full, b"0 0", 0).map_err(|e| StoreError(format!("{e:?}"))),
        None => Ok(()),
    }
}

enum Added {
    /// The counter now holds this much.
    Now(u64),
    /// Adding would pass the cap; the counter holds this much, unchanged.
    Refused(u64),
}

/// Adds `delta` to a counter in `window` with compare-and-swap, refusing (for a positive delta)
/// to pass `cap`. A counter never goes below zero: more given back than held means the counter
/// was reset or rolled over meanwhile.
fn add(
    store: &mut dyn SharedData,
    key: &str,
    window: i64,
    delta: i128,
    cap: Option<u64>,
    now_secs: i64,
) -> Result<Added, StoreError> {
    let full = [PREFIX, key].concat();
    for _ in 0..ATTEMPTS {
        let current = store.get(&full).map_err(StoreError)?;
        let Some((bytes, cas)) = current else {
            if delta <= 0 {
                return Ok(Added::Now(0));
            }
            let used = u64::try_from(delta).unwrap_or(u64::MAX);
            if cap.is_some_and(|cap| used > cap) {
                return Ok(Added::Refused(0));
            }
            if create(store, &full, &encode(window, used), now_secs)? {
                return Ok(Added::Now(used));
            }
            continue;
        };
        // A value that is not a counter (written by something else) is not taken for zero:
        // the request cannot be counted, and the command line's reset repairs it.
        let Some((stored_window, stored)) = decode(&bytes) else {
            return Err(StoreError(format!("{key} holds {} bytes that are not a counter", bytes.len())));
        };
        if stored_window > window {
            // The counter moved on to a later window than this request counts in: nothing of
            // this request is in it.
            return Ok(Added::Now(0));
        }
        let base = if stored_window == window { stored } else { 0 };
        let used = u64::try_from((i128::from(base) + delta).max(0)).unwrap_or(u64::MAX);
        if delta > 0 && cap.is_some_and(|cap| used > cap) {
            return Ok(Added::Refused(base));
        }
        match store.set(&full, encode(window, used).as_bytes(), cas) {
            Ok(()) => return Ok(Added::Now(used)),
            Err(SetError::Mismatch) => continue,
            Err(SetError::Failed(detail)) => return Err(StoreError(detail)),
        }
    }
    Err(StoreError(format!("{key} stayed contended for {ATTEMPTS} attempts")))
}

/// Creates a counter under the creation lock; `false` when another worker created it first.
pub(super) fn create(store: &mut dyn SharedData, key: &str, value: &str, now_secs: i64) -> Result<bool, StoreError> {
    lock(store, now_secs)?;
    let created = match store.get(key) {
        Ok(Some(_)) => Ok(false),
        Ok(None) => store.set(key, value.as_bytes(), 0).map(|()| true).map_err(|e| StoreError(format!("{e:?}"))),
        Err(detail) => Err(StoreError(detail)),
    };
    if matches!(created, Ok(true)) {
        // The admin API lists counters from this index. Failing to note one costs the request
        // nothing: the counter is counted as usual and can still be read by its scope.
        if let Err(err) = super::admin::index::note(store, key.strip_prefix(PREFIX).unwrap_or(key)) {
            log::warn!("budget_index_not_updated detail={}", err.0);
        }
    }
    unlock(store)?;
    created
}

/// Makes the creation lock exist, free. Called when the configuration loads, before any
/// request: a key that does not exist takes any write, so the lock itself must not be created
/// while another worker may be taking it.
pub fn prepare(store: &mut dyn SharedData) -> Result<(), StoreError> {
    if store.get(LOCK).map_err(StoreError)?.is_none() {
        store.set(LOCK, b"free", 0).map_err(|e| StoreError(format!("{e:?}")))?;
    }
    Ok(())
}

/// Takes the creation lock.
fn lock(store: &mut dyn SharedData, now_secs: i64) -> Result<(), StoreError> {
    for _ in 0..ATTEMPTS {
        let Some((bytes, cas)) = store.get(LOCK).map_err(StoreError)? else {
            prepare(store)?;
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let taken_at = text.strip_prefix("held ").and_then(|t| t.parse::<i64>().ok());
        if taken_at.is_some_and(|at| now_secs - at <= STALE_LOCK_SECS) {
            continue;
        }
        match store.set(LOCK, format!("held {now_secs}").as_bytes(), cas) {
            Ok(()) => return Ok(()),
            Err(SetError::Mismatch) => continue,
            Err(SetError::Failed(detail)) => return Err(StoreError(detail)),
        }
    }
    Err(StoreError("the counters' creation lock stayed taken".into()))
}

fn unlock(store: &mut dyn SharedData) -> Result<(), StoreError> {
    store.set(LOCK, b"free", 0).map_err(|e| StoreError(format!("{e:?}")))
}

fn encode(window: i64, used: u64) -> String {
    format!("{window} {used}")
}

fn decode(bytes: &[u8]) -> Option<(i64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (window, used) = text.split_once(' ')?;
    Some((window.parse().ok()?, used.parse().ok()?))
}

#[cfg(test)]
mod tests;
