//! Leases (opt-in, Redis store only): each proxy holds a slice of every counter it uses, taken
//! atomically from Redis, so that a request whose needs fit every slice it touches is reserved
//! in the proxy's shared data and makes no call.
//!
//! Why the limit still holds: a slice is granted by `redis/reserve.lua` only when the counter,
//! with the slice added, stays within the limit, and Redis counts it as used from then on. What
//! requests reserve from a slice is therefore already inside Redis's count: admitted
//! reservations never pass the limit, whatever the number of proxies. The price is early
//! refusal: what slices hold and no request uses yet is counted in Redis too (at most one slice
//! per counter and proxy; returned when idle; lost with a proxy that dies, until the window ends).
//!
//! A slice is one shared-data value per counter, `tollgate:lease:<key>` =
//! `"<window> <resets_at> <available> <seen> <touched_ms>"`: the window it counts in (a slice of
//! an older window counts nothing in this one), when that ends (Unix seconds), what is left,
//! Redis's counter when it last answered (for the `x-ratelimit-remaining-*` headers) and when a
//! request last used it (idle slices go back to Redis). Every change is a compare-and-swap, as in
//! the embedded store's [`ledger`](super::ledger); creating one takes the ledger's creation lock.

use serde::Deserialize;

use super::ledger::{self, SetError, SharedData, StoreError};
use super::window::Window;
use super::{Limit, Touch};

/// Key prefix of the slices in the proxy's shared data.
pub const PREFIX: &str = "tollgate:lease:";
/// Attempts at one compare-and-swap before the slice counts as contended.
const ATTEMPTS: usize = 64;

/// `store.redis.lease`: the size of slices, and when an unused one goes back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// A slice is this fraction of the limit (0.000001 … 0.5), rounded down; a limit whose
    /// slice would be 0 is not leased.
    pub fraction: serde_json::Number,
    /// A slice no request used for this long is given back to Redis.
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
}

fn default_idle_ms() -> u64 {
    1_000
}

impl Lease {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let fraction = self.fraction.as_f64().unwrap_or(f64::NAN);
        // Slices are sized in parts per million of the limit: a smaller fraction would be none.
        if !(0.000_001..=0.5).contains(&fraction) {
            return Err((
                "fraction".into(),
                format!("{} is not a fraction of the limit from 0.000001 to 0.5", self.fraction),
            ));
        }
        if !(10..=600_000).contains(&self.idle_ms) {
            return Err(("idle_ms".into(), format!("{} is not between 10 and 600000", self.idle_ms)));
        }
        Ok(())
    }

    /// Parts per million of the limit a slice holds.
    fn ppm(&self) -> u64 {
        let fraction = self.fraction.as_f64().unwrap_or(0.0).clamp(0.0, 0.5);
        // Exact for fractions given to 6 decimals; the cast cannot overflow (at most 500000).
        (fraction * 1_000_000.0).round() as u64
    }

    /// The slice of `limit` a proxy holds: 0 when the limit is not leased (a `second` window,
    /// whose slice would die within the second it was taken, or a slice that rounds to 0).
    pub fn slice(&self, limit: &Limit) -> u64 {
        if limit.window == Window::Second {
            return 0;
        }
        u64::try_from(u128::from(limit.amount) * u128::from(self.ppm()) / 1_000_000).unwrap_or(0)
    }
}

/// One counter's slice as the proxy holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub window: i64,
    pub resets_at: i64,
    pub available: u64,
    /// Redis's counter in its last answer (slices and other proxies' use included).
    pub seen: u64,
    pub touched_ms: u64,
}

impl Slice {
    fn encode(&self) -> String {
        format!("{} {} {} {} {}", self.window, self.resets_at, self.available, self.seen, self.touched_ms)
    }

    fn decode(bytes: &[u8]) -> Option<Slice> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        let slice = Slice {
            window: parts.next()?.parse().ok()?,
            resets_at: parts.next()?.parse().ok()?,
            available: parts.next()?.parse().ok()?,
            seen: parts.next()?.parse().ok()?,
            touched_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(slice)
    }

    /// What the counter holds, as far as this proxy knows: Redis's last figure less what this
    /// slice still has (it is counted there but not used).
    fn used(&self) -> u64 {
        self.seen.saturating_sub(self.available)
    }
}

/// A slice's value and compare-and-swap token. A value that is not a slice is an error (never
/// read as empty: what it held would be lost); requests then go to Redis.
pub fn read(store: &dyn SharedData, key: &str) -> Result<Option<(Slice, u32)>, StoreError> {
    let full = [PREFIX, key].concat();
    match store.get(&full).map_err(StoreError)? {
        None => Ok(None),
        Some((bytes, cas)) => Slice::decode(&bytes)
            .map(|slice| Some((slice, cas)))
            .ok_or_else(|| StoreError(format!("{full} holds {} bytes that are not a slice", bytes.len()))),
    }
}

/// Changes a slice with compare-and-swap: `change` sees the current slice (or none) and returns
/// the new one (`None`: leave it) and a result.
fn update<T>(
    store: &mut dyn SharedData,
    key: &str,
    now_secs: i64,
    mut change: impl FnMut(Option<Slice>) -> (Option<Slice>, T),
) -> Result<T, StoreError> {
    let full = [PREFIX, key].concat();
    for _ in 0..ATTEMPTS {
        let current = read(store, key)?;
        let (next, result) = change(current.map(|(slice, _)| slice));
        let Some(next) = next else { return Ok(result) };
        match current {
            None => {
                if ledger::create(store, &full, &next.encode(), now_secs)? {
                    return Ok(result);
                }
            }
            Some((_, cas)) => match store.set(&full, next.encode().as_bytes(), cas) {
                Ok(()) => return Ok(result),
                Err(SetError::Mismatch) => {}
                Err(SetError::Failed(detail)) => return Err(StoreError(detail)),
            },
        }
    }
    Err(StoreError(format!("{full} stayed contended for {ATTEMPTS} attempts")))
}

/// What [`take`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Every slice had the request's amount: each counter as far as this proxy knows (for the
    /// headers).
    All(Vec<u64>),
    /// A slice lacked it: nothing is kept. `orphans`: what was taken from another slice and could
    /// not go back to it (its window moved on meanwhile): Redis must have it back.
    None { orphans: Vec<(Touch, u64)> },
}

/// Takes each counter's amount from its slice of the request's window, all or none.
pub fn take(store: &mut dyn SharedData, touches: &[Touch], amounts: &[u64], now_ms: u64) -> Result<Taken, StoreError> {
    let now_secs = secs(now_ms);
    let mut used = Vec::with_capacity(touches.len());
    let mut taken: Vec<(&Touch, u64)> = Vec::with_capacity(touches.len());
    for (touch, amount) in touches.iter().zip(amounts) {
        let outcome = update(store, &touch.key, now_secs, |slice| match slice {
            Some(slice) if slice.window == touch.window && slice.available >= *amount => {
                let next = Slice { available: slice.available - amount, touched_ms: now_ms, ..slice };
                (Some(next), Some(next.used()))
            }
            _ => (None, None),
        });
        match outcome {
            Ok(Some(after)) => {
                used.push(after);
                taken.push((touch, *amount));
            }
            Ok(None) | Err(_) => {
                // All or none: what was taken goes back (to Redis when its slice moved on).
                let mut orphans = Vec::new();
                for (touch, amount) in taken {
                    let left = give(store, touch, amount, now_ms).unwrap_or(amount);
                    if left > 0 {
                        orphans.push((touch.clone(), left));
                    }
                }
                return match outcome {
                    Err(err) if orphans.is_empty() => Err(err),
                    _ => Ok(Taken::None { orphans }),
                };
            }
        }
    }
    Ok(Taken::All(used))
}

/// Gives `amount` back to a counter's slice (a request used less than it took). Returns what the
/// slice could not take (it moved on to another window, or is gone): Redis must have it back.
pub fn give(store: &mut dyn SharedData, touch: &Touch, amount: u64, now_ms: u64) -> Result<u64, StoreError> {
    if amount == 0 {
        return Ok(0);
    }
    update(store, &touch.key, secs(now_ms), |slice| match slice {
        Some(slice) if slice.window == touch.window => {
            (Some(Slice { available: slice.available.saturating_add(amount), ..slice }), 0)
        }
        _ => (None, amount),
    })
}

/// Takes up to `amount` more from a counter's slice (a request used more than it took). Returns
/// what the slice could not cover: Redis must count it.
pub fn take_up_to(store: &mut dyn SharedData, touch: &Touch, amount: u64, now_ms: u64) -> Result<u64, StoreError> {
    if amount == 0 {
        return Ok(0);
    }
    update(store, &touch.key, secs(now_ms), |slice| match slice {
        Some(slice) if slice.window == touch.window && slice.available > 0 => {
            let covered = slice.available.min(amount);
            (Some(Slice { available: slice.available - covered, touched_ms: now_ms, ..slice }), amount - covered)
        }
        _ => (None, amount),
    })
}

/// How much a call to Redis should ask for this counter: what its slice lacks of `slice` in the
/// request's window (a slice that cannot be read asks nothing: it could not be stored).
pub fn wanted(store: &dyn SharedData, touch: &Touch, slice: u64) -> u64 {
    match read(store, &touch.key) {
        Ok(Some((held, _))) if held.window == touch.window => slice.saturating_sub(held.available),
        Ok(Some((held, _))) if held.window > touch.window => 0,
        Ok(_) => slice,
        Err(_) => 0,
    }
}

/// Puts a grant from Redis (`seen`: the counter after it) into the counter's slice, up to
/// `slice`. Returns what goes back to Redis: the excess (several calls topped up at once), the
/// whole grant when the slice moved on to a later window, and what a slice of an earlier window
/// still held (it counts nothing now, but Redis's books should not keep it).
pub fn place(
    store: &mut dyn SharedData,
    touch: &Touch,
    grant: u64,
    seen: u64,
    slice: u64,
    now_ms: u64,
) -> Result<Vec<(Touch, u64)>, StoreError> {
    if grant == 0 {
        return Ok(Vec::new());
    }
    let fresh = Slice { window: touch.window, resets_at: touch.resets_at, available: 0, seen, touched_ms: now_ms };
    update(store, &touch.key, secs(now_ms), |current| {
        let mut back = Vec::new();
        let base = match current {
            Some(held) if held.window == touch.window => held,
            Some(held) if held.window > touch.window => return (None, vec![(touch.clone(), grant)]),
            Some(old) => {
                if old.available > 0 {
                    back.push((at_window(touch, old.window, old.resets_at), old.available));
                }
                fresh
            }
            None => fresh,
        };
        let total = base.available.saturating_add(grant);
        let kept = total.min(slice.max(base.available));
        if total > kept {
            back.push((touch.clone(), total - kept));
        }
        let next = Slice { available: kept, seen: base.seen.max(seen), touched_ms: now_ms, ..base };
        (Some(next), back)
    })
}

/// What [`reclaim`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reclaimed {
    /// What Redis must have back: the slice's counter (its key and window) and amount.
    pub back: Option<(Touch, u64)>,
    /// The slice's window has ended (or there is none): nothing more will come of the key.
    pub ended: bool,
}

/// Takes back a slice no request used for `idle_ms`, or whose window has ended.
pub fn reclaim(store: &mut dyn SharedData, key: &str, now_ms: u64, idle_ms: u64) -> Result<Reclaimed, StoreError> {
    let now_secs = secs(now_ms);
    update(store, key, now_secs, |slice| {
        let Some(slice) = slice else { return (None, Reclaimed { back: None, ended: true }) };
        let ended = now_secs >= slice.resets_at;
        if slice.available == 0 || !(ended || now_ms.saturating_sub(slice.touched_ms) >= idle_ms) {
            return (None, Reclaimed { back: None, ended });
        }
        let counter = Touch { limit: 0, key: key.to_string(), window: slice.window, resets_at: slice.resets_at };
        (Some(Slice { available: 0, ..slice }), Reclaimed { back: Some((counter, slice.available)), ended })
    })
}

/// The same counter in another window.
fn at_window(touch: &Touch, window: i64, resets_at: i64) -> Touch {
    Touch { limit: touch.limit, key: touch.key.clone(), window, resets_at }
}

fn secs(now_ms: u64) -> i64 {
    i64::try_from(now_ms / 1_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
