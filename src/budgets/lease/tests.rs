use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::budgets::compile;

/// Shared data as Envoy keeps it: a write with a token other than 0 must carry the value's
/// current token; a key that does not exist takes any write; every write gives a new token.
#[derive(Default)]
struct Shared {
    values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: RefCell<u32>,
}

impl SharedData for &Shared {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        Ok(self.values.borrow().get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let current = self.values.borrow().get(key).map(|(_, c)| *c);
        if let (Some(current), true) = (current, cas != 0) {
            if current != cas {
                return Err(SetError::Mismatch);
            }
        }
        let mut next = self.next.borrow_mut();
        *next += 1;
        self.values.borrow_mut().insert(key.to_string(), (value.to_vec(), *next));
        Ok(())
    }
}

fn touch(key: &str, window: i64) -> Touch {
    Touch { limit: 0, key: key.into(), window, resets_at: (window + 1) * 60 }
}

fn available(shared: &Shared, key: &str) -> Option<(i64, u64)> {
    read(&shared, key).unwrap().map(|(slice, _)| (slice.window, slice.available))
}

fn nothing() -> Taken {
    Taken::None { orphans: Vec::new() }
}

fn lease(fraction: serde_json::Value) -> Lease {
    serde_json::from_value(json!({"fraction": fraction})).unwrap()
}

#[test]
fn a_slice_is_the_fraction_of_its_limit_and_second_windows_are_not_leased() {
    let budgets = compile(
        serde_json::from_value(json!({"limits": [
            {"name": "rpm", "requests": 1000, "window": "minute"},
            {"name": "rps", "requests": 1000, "window": "second"},
            {"name": "small", "requests": 10, "window": "day"},
            {"name": "usd", "usd": "25", "window": "month"}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let slices: Vec<u64> = budgets.limits.iter().map(|l| lease(json!(0.02)).slice(l)).collect();
    assert_eq!(slices, [20, 0, 0, 500_000_000_000], "2% of 1000; none for a second; 0.2 rounds to none; $0.50");
    assert_eq!(lease(json!(0.2)).slice(&budgets.limits[2]), 2);
}

#[test]
fn lease_settings_outside_their_range_are_refused_naming_the_field() {
    for (raw, field) in [
        (json!({"fraction": 0}), "budgets.store.redis.lease.fraction"),
        (json!({"fraction": 0.6}), "budgets.store.redis.lease.fraction"),
        (json!({"fraction": -1}), "budgets.store.redis.lease.fraction"),
        (json!({"fraction": 0.0000001}), "budgets.store.redis.lease.fraction"),
        (json!({"fraction": 0.1, "idle_ms": 0}), "budgets.store.redis.lease.idle_ms"),
        (json!({"fraction": "0.1"}), "budgets.store.redis.lease.fraction"),
        (json!({"fraction": 0.1, "size": 3}), "budgets.store.redis.lease.size"),
        (json!({}), "budgets.store.redis.lease"),
    ] {
        let config = json!({"store": {"redis": {"endpoint": "webdis", "lease": raw}}});
        let (at, why) = compile(serde_json::from_value(config).unwrap()).unwrap_err();
        assert_eq!(at, field, "{raw}: {why}");
    }
    let ok = json!({"store": {"redis": {"endpoint": "webdis", "lease": {"fraction": 0.5, "idle_ms": 10}}}});
    assert!(compile(serde_json::from_value(ok).unwrap()).is_ok());
}

#[test]
fn a_request_takes_from_every_slice_or_from_none() {
    let shared = Shared::default();
    let (a, b) = (touch("a", 7), touch("b", 7));
    assert_eq!(place(&mut &shared, &a, 10, 40, 10, 1_000).unwrap(), []);
    assert_eq!(place(&mut &shared, &b, 3, 13, 10, 1_000).unwrap(), []);
    assert_eq!(take(&mut &shared, &[a.clone(), b.clone()], &[4, 3], 1_001).unwrap(), Taken::All(vec![34, 13]));
    assert_eq!((available(&shared, "a"), available(&shared, "b")), (Some((7, 6)), Some((7, 0))));
    assert_eq!(take(&mut &shared, &[a.clone(), b.clone()], &[1, 1], 1_002).unwrap(), nothing(), "b is empty");
    assert_eq!(available(&shared, "a"), Some((7, 6)), "what a gave is back");
    assert_eq!(take(&mut &shared, &[touch("c", 7)], &[1], 1_002).unwrap(), nothing(), "no slice: Redis decides");
}

#[test]
fn a_slice_of_an_older_window_counts_nothing_and_goes_back() {
    let shared = Shared::default();
    let old = touch("a", 7);
    let new = touch("a", 8);
    place(&mut &shared, &old, 10, 10, 10, 1_000).unwrap();
    assert_eq!(
        take(&mut &shared, std::slice::from_ref(&new), &[1], 61_000).unwrap(),
        nothing(),
        "the window rolled over"
    );
    assert_eq!(wanted(&&shared, &new, 10), 10);
    // A grant in the new window replaces the slice; the old one's remainder goes back to Redis.
    let back = place(&mut &shared, &new, 10, 12, 10, 61_000).unwrap();
    assert_eq!(back, [(old.clone(), 10)]);
    assert_eq!(available(&shared, "a"), Some((8, 10)));
    // A grant for the old window that lands after the new one: all of it goes back.
    assert_eq!(place(&mut &shared, &old, 5, 20, 10, 61_001).unwrap(), [(old.clone(), 5)]);
    // A settlement of the old window cannot give back into the new slice.
    assert_eq!(give(&mut &shared, &old, 3, 61_002).unwrap(), 3);
    assert_eq!(take_up_to(&mut &shared, &old, 3, 61_002).unwrap(), 3);
    assert_eq!(available(&shared, "a"), Some((8, 10)), "untouched");
}

#[test]
fn a_slice_keeps_at_most_its_size_and_returns_the_excess() {
    let shared = Shared::default();
    let a = touch("a", 7);
    assert_eq!(wanted(&&shared, &a, 10), 10);
    place(&mut &shared, &a, 10, 10, 10, 0).unwrap();
    take(&mut &shared, std::slice::from_ref(&a), &[4], 1).unwrap();
    assert_eq!(wanted(&&shared, &a, 10), 4, "tops up what it lacks");
    // Two calls topped it up at once: what passes the slice goes back.
    assert_eq!(place(&mut &shared, &a, 4, 18, 10, 2).unwrap(), []);
    assert_eq!(place(&mut &shared, &a, 4, 22, 10, 2).unwrap(), [(a.clone(), 4)]);
    assert_eq!(available(&shared, "a"), Some((7, 10)));
}

#[test]
fn settlement_gives_back_to_the_slice_and_takes_what_was_used_beyond() {
    let shared = Shared::default();
    let a = touch("a", 7);
    place(&mut &shared, &a, 10, 10, 10, 0).unwrap();
    take(&mut &shared, std::slice::from_ref(&a), &[8], 1).unwrap();
    assert_eq!(give(&mut &shared, &a, 5, 2).unwrap(), 0);
    assert_eq!(available(&shared, "a"), Some((7, 7)));
    assert_eq!(take_up_to(&mut &shared, &a, 9, 3).unwrap(), 2, "the slice covers 7 of 9: 2 go to Redis");
    assert_eq!(available(&shared, "a"), Some((7, 0)));
}

#[test]
fn idle_slices_are_reclaimed_once_and_ended_ones_forgotten() {
    let shared = Shared::default();
    let a = touch("a", 7); // resets at 480 s
    place(&mut &shared, &a, 10, 10, 10, 420_000).unwrap();
    take(&mut &shared, std::slice::from_ref(&a), &[1], 420_500).unwrap();
    assert_eq!(reclaim(&mut &shared, "a", 421_000, 1_000).unwrap(), Reclaimed { back: None, ended: false });
    let reclaimed = reclaim(&mut &shared, "a", 421_500, 1_000).unwrap();
    assert_eq!(reclaimed.back.map(|(t, n)| (t.key, t.window, n)), Some(("a".into(), 7, 9)));
    assert_eq!(available(&shared, "a"), Some((7, 0)));
    assert_eq!(reclaim(&mut &shared, "a", 421_600, 1_000).unwrap(), Reclaimed { back: None, ended: false }, "once");
    assert!(reclaim(&mut &shared, "a", 480_000, 1_000).unwrap().ended);
    assert!(reclaim(&mut &shared, "gone", 0, 1_000).unwrap().ended);
    // A slice whose window ended goes back at once, idle or not.
    place(&mut &shared, &a, 3, 13, 10, 479_990).unwrap();
    let ended = reclaim(&mut &shared, "a", 480_000, 60_000).unwrap();
    assert_eq!((ended.back.map(|(_, n)| n), ended.ended), (Some(3), true));
}

#[test]
fn a_value_that_is_not_a_slice_is_an_error_never_an_empty_slice() {
    let shared = Shared::default();
    let mut writer = &shared;
    writer.set("tollgate:lease:a", b"garbage", 0).unwrap();
    assert!(take(&mut &shared, &[touch("a", 7)], &[1], 0).is_err());
    assert!(place(&mut &shared, &touch("a", 7), 5, 5, 10, 0).is_err());
    assert_eq!(wanted(&&shared, &touch("a", 7), 10), 0, "nothing asked for a slice that cannot be kept");
}

/// A worker whose every compare-and-swap on a slice loses to another worker taking one unit
/// from the same slice first (while `interfere` lasts).
struct Racing<'a> {
    shared: &'a Shared,
    interfere: RefCell<u32>,
    taken_by_other: RefCell<u64>,
}

impl SharedData for Racing<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        (&self.shared).get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if *self.interfere.borrow() > 0 && key.starts_with(PREFIX) {
            *self.interfere.borrow_mut() -= 1;
            let other = key.trim_start_matches(PREFIX);
            if matches!(take(&mut self.shared, &[touch(other, 7)], &[1], 5).unwrap(), Taken::All(_)) {
                *self.taken_by_other.borrow_mut() += 1;
            }
        }
        let mut shared = self.shared;
        shared.set(key, value, cas)
    }
}

#[test]
fn racing_workers_never_take_more_than_a_slice_holds() {
    for interfere in [1, 3, 10, 63] {
        let shared = Shared::default();
        let a = touch("a", 7);
        place(&mut &shared, &a, 10, 10, 10, 0).unwrap();
        let mut racing =
            Racing { shared: &shared, interfere: RefCell::new(interfere), taken_by_other: RefCell::new(0) };
        let mut taken_here = 0;
        while let Ok(Taken::All(_)) = take(&mut racing, std::slice::from_ref(&a), &[2], 6) {
            taken_here += 2;
        }
        let left = available(&shared, "a").unwrap().1;
        let other = *racing.taken_by_other.borrow();
        assert_eq!(
            taken_here + other + left,
            10,
            "interfere {interfere}: every unit once ({taken_here} + {other} + {left})"
        );
        assert!(left < 2, "interfere {interfere}: stops only when the slice cannot give 2");
    }
}

#[test]
fn racing_settlements_and_reclaims_lose_nothing() {
    // A reclaim racing a settlement's give-back: what the slice holds goes back to Redis once,
    // and the give-back lands in the slice (or, if after, stays there for the next request).
    let shared = Shared::default();
    let a = touch("a", 7);
    place(&mut &shared, &a, 10, 10, 10, 0).unwrap();
    take(&mut &shared, std::slice::from_ref(&a), &[6], 1).unwrap();
    let mut racing = Racing { shared: &shared, interfere: RefCell::new(2), taken_by_other: RefCell::new(0) };
    assert_eq!(give(&mut racing, &a, 6, 2).unwrap(), 0);
    let other = *racing.taken_by_other.borrow();
    let reclaimed = reclaim(&mut &shared, "a", 10_000, 1_000).unwrap().back.map_or(0, |(_, n)| n);
    assert_eq!(other + reclaimed, 10);
}

/// Shared data where another worker moves slice `a` on to the next window the moment this
/// worker reads slice `b`.
struct Rolling<'a> {
    shared: &'a Shared,
    rolled: RefCell<bool>,
}

impl SharedData for Rolling<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        if key == "tollgate:lease:b" && !self.rolled.replace(true) {
            let back = place(&mut { self.shared }, &touch("a", 8), 3, 3, 10, 60_000).unwrap();
            assert_eq!(back, [(touch("a", 7), 4)], "the old window's remainder goes back to Redis");
        }
        (&self.shared).get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut shared = self.shared;
        shared.set(key, value, cas)
    }
}

#[test]
fn what_a_refused_take_cannot_put_back_is_handed_back_for_redis() {
    let shared = Shared::default();
    place(&mut &shared, &touch("a", 7), 5, 5, 10, 0).unwrap();
    let mut rolling = Rolling { shared: &shared, rolled: RefCell::new(false) };
    let taken = take(&mut rolling, &[touch("a", 7), touch("b", 7)], &[1, 1], 1).unwrap();
    assert_eq!(taken, Taken::None { orphans: vec![(touch("a", 7), 1)] }, "4 went back with the roll, 1 here");
    assert_eq!(available(&shared, "a"), Some((8, 3)), "the new window's slice is untouched");
}
