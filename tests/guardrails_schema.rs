//! The `guardrails` field of `kong/tollgate.meta.json` (what Kong validates) and the guardrails'
//! own parser accept the same fields; the README's example is valid for both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use serde_json::{json, Value};
use tollgate::guardrails;

fn schema() -> Value {
    let text = include_str!("../kong/tollgate.meta.json");
    serde_json::from_str::<Value>(text).unwrap()["config_schema"]["properties"]["guardrails"].clone()
}

fn keys(object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object["properties"].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// Every field the schema names is accepted by the parser, and an unknown one is refused by both.
#[test]
fn schema_fields_are_the_parsers_fields() {
    let schema = schema();
    let policy = &schema["properties"]["policies"]["items"];
    let check = &policy["properties"]["checks"]["items"];
    assert_eq!(keys(&schema), ["max_stream_hold_bytes", "policies"]);
    assert_eq!(keys(policy), ["checks", "name", "routes", "shadow"]);
    for object in [&schema, policy, check, &check["properties"]["scope"], &check["properties"]["limits"]] {
        assert_eq!(object["additionalProperties"], Value::Bool(false));
    }
    // One check per kind, using every check field at least once; all must parse.
    let checks = json!([
        {"name": "a", "detectors": ["pii", "prompt_injection"], "phrases": ["x y"], "action": "mask",
         "scope": {"roles": ["user"], "parts": ["messages"], "jsonpath": ["$.metadata"]}, "on": "both", "placeholder": "X", "shadow": true},
        {"name": "b", "deny": ["x"], "keywords": ["y"], "case_sensitive": true, "whole_words": false, "action": "block",
         "status": 422, "code": "c", "message": "m"},
        {"name": "c", "allow": ["x"], "action": "flag"},
        {"name": "d", "limits": {"max_messages": 1, "max_chars": 1, "max_prompt_tokens": 1}, "action": "block"},
        {"name": "e", "clamp": {"max_tokens": 1, "temperature": [0, 1]}, "action": "clamp"},
        {"name": "f", "tools": {"allow": ["a"], "deny": ["b"]}, "action": "flag"},
        {"name": "g", "tool_arguments": "json", "action": "flag"},
        {"name": "h", "model": "routing", "action": "block"},
    ]);
    let mut used: Vec<String> =
        checks.as_array().unwrap().iter().flat_map(|c| c.as_object().unwrap().keys().cloned()).collect();
    used.sort();
    used.dedup();
    assert_eq!(used, keys(check), "every schema field is exercised");
    let config = json!({"max_stream_hold_bytes": 4096, "policies": [{"name": "p", "routes": ["r"], "shadow": false, "checks": checks}]});
    guardrails::parse(config).unwrap();
    let unknown = json!({"policies": [{"name": "p", "checks": [{"name": "a", "detectors": ["pii"], "action": "flag", "colour": 1}]}]});
    assert!(guardrails::parse(unknown).is_err());
}

/// The README's configuration example parses.
#[test]
fn readme_example_parses() {
    let readme = include_str!("../README.md");
    let start = readme.find("<!-- guardrails-example -->").expect("marker in README");
    let block = &readme[start..];
    let json_start = block.find("```json\n").unwrap() + 8;
    let json_end = json_start + block[json_start..].find("```").unwrap();
    let value: Value = serde_json::from_str(&block[json_start..json_end]).unwrap();
    guardrails::parse(value["guardrails"].clone()).unwrap();
}
