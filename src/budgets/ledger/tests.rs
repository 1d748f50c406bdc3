use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::budgets::{compile, Budgets, Facts};

/// Shared data as Envoy keeps it (`SharedData::set` in Envoy's Wasm extension): a write with a
/// token other than 0 must carry the value's current token; a key that does not exist takes any
/// write; every write gives the value a new token.
#[derive(Default)]
struct Shared {
    values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: RefCell<u32>,
}

impl Shared {
    fn put(&self, key: &str, value: &[u8]) {
        let mut next = self.next.borrow_mut();
        *next += 1;
        self.values.borrow_mut().insert(key.to_string(), (value.to_vec(), *next));
    }
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
        self.put(key, value);
        Ok(())
    }
}

/// A worker that races another: before each of its compare-and-swaps, the other worker
/// reserves one unit on the same counter (when `interfere` says so), so the first attempt
/// fails and is retried.
struct Racing<'a> {
    shared: &'a Shared,
    budgets: &'a Budgets,
    touches: Vec<Touch>,
    interfere: RefCell<u32>,
    admitted_by_other: RefCell<u64>,
}

impl SharedData for Racing<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        (&self.shared).get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if *self.interfere.borrow() > 0 && key.starts_with(PREFIX) {
            *self.interfere.borrow_mut() -= 1;
            let mut other = self.shared;
            let need = Need { requests: 1, ..Need::default() };
            if let Ok(Reserved::Admitted { .. }) = reserve(&mut other, self.budgets, self.touches.clone(), &need, 0) {
                *self.admitted_by_other.borrow_mut() += 1;
            }
        }
        let mut shared = self.shared;
        shared.set(key, value, cas)
    }
}

fn budgets(limits: serde_json::Value) -> Budgets {
    compile(serde_json::from_value(json!({"limits": limits})).unwrap()).unwrap()
}

fn one(requests: u64) -> Need {
    Need { requests, ..Need::default() }
}

#[test]
fn a_counter_admits_up_to_its_limit_then_refuses() {
    let shared = Shared::default();
    let mut store = &shared;
    prepare(&mut store).unwrap();
    let b = budgets(json!([{"name": "rps", "requests": 3, "window": "minute", "by": ["tenant"]}]));
    let facts = Facts { tenant: Some("acme"), ..Facts::default() };
    let mut admitted = 0;
    for _ in 0..5 {
        match reserve(&mut store, &b, b.touches(&facts, 30), &one(1), 30).unwrap() {
            Reserved::Admitted { held, .. } => {
                admitted += 1;
                assert_eq!(held[0].used, admitted);
            }
            Reserved::Refused { used, asked, .. } => assert_eq!((used, asked), (3, 1)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, 3);
    // Another tenant has a counter of its own; the next minute starts from zero.
    let other = Facts { tenant: Some("globex"), ..Facts::default() };
    assert!(matches!(reserve(&mut store, &b, b.touches(&other, 30), &one(1), 30).unwrap(), Reserved::Admitted { .. }));
    assert!(matches!(reserve(&mut store, &b, b.touches(&facts, 60), &one(1), 60).unwrap(), Reserved::Admitted { .. }));
    assert_eq!(used(&store, "rps:acme", 1).unwrap(), 1);
    assert_eq!(used(&store, "rps:acme", 0).unwrap(), 0, "the old window's count is gone with it");
}

#[test]
fn a_reservation_is_all_or_nothing() {
    let shared = Shared::default();
    let mut store = &shared;
    let b = budgets(json!([
        {"name": "tokens", "total_tokens": 1000, "window": "hour"},
        {"name": "spend", "usd": "0.01", "window": "day"}
    ]));
    let big = Need { requests: 1, input_tokens: 100, output_tokens: 100, spend: Some(20_000_000_000) };
    let refused = reserve(&mut store, &b, b.touches(&Facts::default(), 0), &big, 0).unwrap();
    assert!(matches!(&refused, Reserved::Refused { touch, .. } if touch.key == "spend"), "{refused:?}");
    assert_eq!(used(&store, "tokens", 0).unwrap(), 0, "the token counter gave its share back");
}

#[test]
fn settling_moves_each_counter_to_what_the_request_did_cost_and_never_below_zero() {
    let shared = Shared::default();
    let mut store = &shared;
    let b = budgets(json!([{"name": "tokens", "total_tokens": 1000, "window": "hour"}]));
    let need = Need { requests: 1, input_tokens: 100, output_tokens: 400, spend: None };
    let Reserved::Admitted { held, .. } = reserve(&mut store, &b, b.touches(&Facts::default(), 0), &need, 0).unwrap()
    else {
        panic!()
    };
    assert_eq!(used(&store, "tokens", 0).unwrap(), 500);
    settle(&mut store, &b, &held, &Need { input_tokens: 120, output_tokens: 30, ..need }, 0).unwrap();
    assert_eq!(used(&store, "tokens", 0).unwrap(), 150);
    reset(&mut store, "tokens").unwrap();
    settle(&mut store, &b, &held, &Need { input_tokens: 0, output_tokens: 0, ..need }, 0).unwrap();
    assert_eq!(used(&store, "tokens", 0).unwrap(), 0, "a counter never goes below zero");
}

#[test]
fn a_stream_extends_its_reservation_until_a_limit_cannot_give_more() {
    let shared = Shared::default();
    let mut store = &shared;
    let b = budgets(json!([
        {"name": "out", "output_tokens": 250, "window": "hour"},
        {"name": "req", "requests": 10, "window": "hour"}
    ]));
    let need = Need { requests: 1, output_tokens: 100, ..Need::default() };
    let Reserved::Admitted { mut held, .. } =
        reserve(&mut store, &b, b.touches(&Facts::default(), 0), &need, 0).unwrap()
    else {
        panic!()
    };
    let more = Need { output_tokens: 100, ..Need::default() };
    assert!(extend(&mut store, &b, &mut held, &more, 0).unwrap());
    assert_eq!(held[0].amount, 200);
    assert!(!extend(&mut store, &b, &mut held, &more, 0).unwrap(), "300 would pass 250");
    assert_eq!(used(&store, "out", 0).unwrap(), 200);
    assert_eq!(used(&store, "req", 0).unwrap(), 1, "a request count does not grow with output");
}

#[test]
fn shadow_limits_count_and_record_but_never_refuse() {
    let shared = Shared::default();
    let mut store = &shared;
    let b = budgets(json!([{"name": "trial", "requests": 1, "window": "day", "shadow": true},
                           {"name": "spend", "usd": "1", "window": "day", "shadow": true}]));
    for n in 1..=3u64 {
        let Reserved::Admitted { over, .. } =
            reserve(&mut store, &b, b.touches(&Facts::default(), 0), &one(1), 0).unwrap()
        else {
            panic!()
        };
        let trial_over = n > 1;
        assert_eq!(over, if trial_over { vec![0, 1] } else { vec![1] }, "request {n}");
    }
    assert_eq!(used(&store, "trial", 0).unwrap(), 3);
}

#[test]
fn a_spend_limit_cannot_count_an_unpriced_model() {
    let shared = Shared::default();
    let mut store = &shared;
    let b = budgets(json!([{"name": "spend", "usd": "1", "window": "day"}]));
    assert!(matches!(
        reserve(&mut store, &b, b.touches(&Facts::default(), 0), &one(1), 0).unwrap(),
        Reserved::Unpriced { .. }
    ));
}

/// Workers racing on one counter: each compare-and-swap of the first worker is preceded by a
/// whole reservation of the other's. However they interleave, what was admitted is what the
/// counter holds, and never more than the limit.
#[test]
fn racing_workers_never_lose_an_update_nor_pass_the_limit() {
    for limit in [1u64, 2, 5, 9] {
        for interference in [0u32, 1, 3, 8] {
            let shared = Shared::default();
            let b = budgets(json!([{"name": "rps", "requests": limit, "window": "minute"}]));
            let touches = b.touches(&Facts::default(), 0);
            let mut worker = Racing {
                shared: &shared,
                budgets: &b,
                touches: touches.clone(),
                interfere: RefCell::new(interference),
                admitted_by_other: RefCell::new(0),
            };
            let mut admitted = 0u64;
            for _ in 0..12 {
                if let Reserved::Admitted { .. } = reserve(&mut worker, &b, touches.clone(), &one(1), 0).unwrap() {
                    admitted += 1;
                }
            }
            let total = admitted + *worker.admitted_by_other.borrow();
            assert_eq!(used(&&shared, "rps", 0).unwrap(), total, "limit {limit}, interference {interference}");
            assert!(total <= limit, "limit {limit}: {total} admitted");
            assert_eq!(total, limit, "every free unit was taken by someone");
        }
    }
}

#[test]
fn a_stale_creation_lock_is_taken_over_and_a_fresh_one_waits() {
    let shared = Shared::default();
    let mut store = &shared;
    shared.put(LOCK, b"held 100");
    let b = budgets(json!([{"name": "rps", "requests": 5, "window": "minute"}]));
    assert!(reserve(&mut store, &b, b.touches(&Facts::default(), 101), &one(1), 101).is_err(), "held a second ago");
    assert!(matches!(
        reserve(&mut store, &b, b.touches(&Facts::default(), 110), &one(1), 110).unwrap(),
        Reserved::Admitted { .. }
    ));
    assert_eq!(shared.values.borrow().get(LOCK).unwrap().0, b"free");
}
