use super::*;
use crate::budgets::compile;
use serde_json::json;

fn budgets() -> Budgets {
    compile(
        serde_json::from_value(json!({"limits": [
            {"name": "spend", "usd": "5", "window": "day", "by": ["tenant"]},
            {"name": "rpm", "requests": 60, "window": "minute", "shadow": true}
        ]}))
        .unwrap(),
    )
    .unwrap()
}

fn store() -> RedisStore {
    RedisStore { endpoint: "webdis".into(), authority: "webdis".into(), timeout_ms: 200, lease: None }
}

#[test]
fn a_reservation_names_every_counter_and_caps_only_enforcing_limits() {
    let b = budgets();
    let facts = crate::budgets::Facts { tenant: Some("a/b c"), ..Default::default() };
    let touches = b.touches(&facts, 90_000);
    let need = Need { requests: 1, input_tokens: 10, output_tokens: 10, spend: Some(7) };
    let plan = Plan::new(&b, touches, &need, "op1".into(), 90_000).unwrap();
    let call = plan.reserve(true);
    assert_eq!(call.keys, ["tollgate:budget-op:op1", "tollgate:budget:spend:a%2Fb%20c:1", "tollgate:budget:rpm:1500"]);
    assert_eq!(call.args, ["86400", "7", "5000000000000", &(172_800 - 90_000 + 60).to_string(), "1", "-1", "120"]);
    let path = call.call(&store(), true).path;
    assert!(path.starts_with(&format!("/EVALSHA/{}/3/tollgate%3Abudget-op%3Aop1/", Script::Reserve.sha())), "{path}");
    assert!(path.contains("%3Aa%252Fb%2520c%3A1/"), "keys are encoded once more for the path: {path}");
    assert_eq!(plan.reserve(false).args[2], "-1", "a confirmation never refuses");
    assert!(call.call(&store(), false).path.starts_with("/EVAL/--%20Tollgate"));
}

#[test]
fn answers_are_read_as_the_scripts_contract_says() {
    let b = budgets();
    let touches = b.touches(&crate::budgets::Facts::default(), 0);
    let need = Need { requests: 1, input_tokens: 0, output_tokens: 0, spend: Some(3) };
    let plan = Plan::new(&b, touches, &need, "x".into(), 0).unwrap();
    match plan.read(&json!([1, "3", "1"])).unwrap() {
        Reserved::Admitted { held, .. } => assert_eq!(held.iter().map(|h| h.used).collect::<Vec<_>>(), [3, 1]),
        other => panic!("{other:?}"),
    }
    match plan.read(&json!([0, 1, "4999999999999"])).unwrap() {
        Reserved::Refused { touch, used, asked } => {
            assert_eq!((touch.key.as_str(), used, asked), ("spend:-", 4_999_999_999_999, 3))
        }
        other => panic!("{other:?}"),
    }
    for bad in [json!(null), json!([1]), json!([0, 9, "1"]), json!([2]), json!("x")] {
        assert!(plan.read(&bad).is_err(), "{bad}");
    }
}

#[test]
fn an_unpriced_model_is_refused_by_an_enforcing_spend_limit_and_skipped_by_a_shadow_one() {
    let b = budgets();
    let touches = b.touches(&crate::budgets::Facts::default(), 0);
    let need = Need { requests: 1, input_tokens: 0, output_tokens: 0, spend: None };
    assert_eq!(Plan::new(&b, touches, &need, "x".into(), 0).unwrap_err().key, "spend:-");
}

#[test]
fn webdis_answers_are_told_apart() {
    let named = |json: &str| format!("t1({json});\n").into_bytes();
    assert_eq!(read_answer(Some(200), &named(r#"{"EVALSHA":[1,"2"]}"#), "t1"), Answer::Value(json!([1, "2"])));
    assert_eq!(
        read_answer(Some(200), &named(r#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#), "t1"),
        Answer::NoScript
    );
    assert!(
        matches!(read_answer(Some(200), &named(r#"{"EVALSHA":[false,"TOLLGATE_CORRUPT k"]}"#), "t1"), Answer::Failed(m) if m.contains("TOLLGATE_CORRUPT"))
    );
    assert!(matches!(read_answer(Some(503), b"", "t1"), Answer::Failed(m) if m.contains("unreachable")));
    assert!(matches!(read_answer(None, b"", "t1"), Answer::Failed(_)));
    assert!(matches!(read_answer(Some(200), b"<html>", "t1"), Answer::Failed(_)));
}

#[test]
fn an_answer_named_for_another_call_is_not_this_calls() {
    // webdis 0.1.9 can hand a new connection the answer of a request abandoned on an earlier one
    // (docs/redis-store.md): only the name tells them apart.
    let stale = br#"t2({"EVALSHA":[1,"571050000","19"]});
"#;
    assert!(
        matches!(read_answer(Some(200), stale, "t1"), Answer::Failed(m) if m.contains("not named t1") && m.contains("named t2"))
    );
    assert!(matches!(read_answer(Some(200), stale, "t"), Answer::Failed(_)), "a prefix of the name is not the name");
    assert!(matches!(read_answer(Some(200), br#"{"EVALSHA":[1,"2"]}"#, "t1"), Answer::Failed(_)), "unnamed");
    assert_eq!(read_answer(Some(200), stale, "t2"), Answer::Value(json!([1, "571050000", "19"])));
}

#[test]
fn every_call_names_its_answer_differently() {
    let call = Plan::new(&budgets(), Vec::new(), &Need::default(), "op".into(), 0).unwrap().reserve(true);
    let (first, second) = (call.call(&store(), true), call.call(&store(), true));
    assert_ne!(first.callback, second.callback);
    for sent in [first, second] {
        assert!(sent.path.ends_with(&format!("?jsonp={}", sent.callback)), "{}", sent.path);
        assert!(sent.callback.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{}", sent.callback);
    }
}

#[test]
fn settlements_carry_the_difference_under_their_own_operation_key() {
    let touch = Touch { limit: 0, key: "spend:acme".into(), window: 3, resets_at: 100 };
    let held = [Held { touch, amount: 50, used: 60 }];
    let call = settle("op9", &held, &[20], 40);
    assert_eq!(call.keys, ["tollgate:budget-op:op9-settle", "tollgate:budget:spend:acme:3"]);
    assert_eq!(call.args, ["86400", "-30", "120"]);
}

#[test]
fn a_settlement_whose_reservation_never_answered_confirms_it_first() {
    let b = budgets();
    let touches = b.touches(&crate::budgets::Facts::default(), 0);
    let need = Need { requests: 1, input_tokens: 0, output_tokens: 0, spend: Some(30) };
    let plan = Plan::new(&b, touches, &need, "op".into(), 0).unwrap();
    let mut settlement = Settlement::new(plan.clone(), vec![10, 1], false);
    let first = settlement.script_call(0);
    assert_eq!((first.script, first.keys[0].as_str()), (Script::Reserve, "tollgate:budget-op:op"));
    assert_eq!(first.args[2], "-1", "no cap: the request went on");
    assert_eq!(settlement.on_answer(Answer::NoScript), Progress::Next);
    assert!(settlement.call(&store(), 0).path.starts_with("/EVAL/"), "sent whole after NOSCRIPT");
    assert!(matches!(settlement.on_answer(Answer::Failed("HTTP 503".into())), Progress::Later(_)));
    assert_eq!(settlement.on_answer(Answer::Value(json!([1, "30", "1"]))), Progress::Next);
    let second = settlement.script_call(0);
    assert_eq!(second.script, Script::Settle);
    assert_eq!(second.args[1], "-20", "the difference to what was reserved");
    assert!(settlement.call(&store(), 0).path.starts_with("/EVALSHA/"));
    assert_eq!(settlement.on_answer(Answer::Value(json!(["10", "1"]))), Progress::Done);

    let mut refused_before = Settlement::new(plan, vec![10, 1], false);
    assert_eq!(refused_before.on_answer(Answer::Value(json!([0, 1, "99"]))), Progress::Next);
    assert_eq!(refused_before.script_call(0).args[1], "10", "nothing was held: all of it counts");
}

#[test]
fn leases_add_a_slice_and_its_cap_per_counter_and_read_the_grants() {
    let b = budgets();
    let touches = b.touches(&crate::budgets::Facts::default(), 0);
    let need = Need { requests: 1, input_tokens: 0, output_tokens: 0, spend: Some(3) };
    let mut plan = Plan::new(&b, touches, &need, "x".into(), 0).unwrap();
    plan.slices = vec![(100, 5_000_000_000_000), (0, 60)];
    let call = plan.reserve(true);
    assert_eq!(call.args.len(), 11);
    assert_eq!(call.args[7..], ["100", "5000000000000", "0", "60"]);
    assert_eq!(plan.reserve(false).args.len(), 7, "a confirmation takes no slice");
    let answer = json!([1, "103", "1", "100", "0"]);
    assert!(matches!(plan.read(&answer).unwrap(), Reserved::Admitted { .. }));
    assert_eq!(plan.grants(&answer), [100, 0]);
    assert_eq!(plan.grants(&json!([1, "3", "1"])), [0, 0], "no leases: no grants");
    plan.slices = vec![(0, 1), (0, 60)];
    assert_eq!(plan.reserve(true).args.len(), 7, "nothing to lease: the call is as without leases");
}

#[test]
fn an_adjustment_settles_bare_differences_under_its_own_operation_key() {
    let touch = |key: &str| Touch { limit: 0, key: key.into(), window: 3, resets_at: 240 };
    let first = adjustment(vec![(touch("a"), -7), (touch("b"), 5)], 200);
    let second = adjustment(vec![(touch("a"), -7)], 200);
    let call = first.script_call(200);
    assert_eq!(call.script, Script::Settle);
    assert_eq!(call.keys[1..], ["tollgate:budget:a:3", "tollgate:budget:b:3"]);
    assert_eq!(call.args, ["86400", "-7", "100", "5", "100"]);
    assert_ne!(call.keys[0], second.script_call(200).keys[0], "each its own operation");
}

#[test]
fn each_script_keeps_its_own_sha_once_computed() {
    // Cached per VM: the cache must hand each script its own digest, the one `SCRIPT LOAD` answers
    // (the SHA-1 of the text), on the first call and every later one.
    for (script, text) in [(Script::Reserve, RESERVE_SCRIPT), (Script::Settle, SETTLE_SCRIPT)] {
        let fresh: String = Sha1::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(script.sha(), fresh);
        assert_eq!(script.sha(), fresh, "the same on a later call");
    }
    assert_ne!(Script::Reserve.sha(), Script::Settle.sha());
}
