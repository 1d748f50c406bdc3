//! Kong validates filter config against `kong/tollgate.meta.json` before the filter sees it;
//! the schema and the filter's own parser must accept exactly the same fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use serde_json::Value;
use tollgate::config;

fn config_schema() -> Value {
    let text = include_str!("../kong/tollgate.meta.json");
    let meta: Value = serde_json::from_str(text).expect("meta.json is JSON");
    meta["config_schema"].clone()
}

#[test]
fn schema_properties_are_exactly_the_parsers_fields() {
    let schema = config_schema();
    let mut properties: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    properties.sort_unstable();
    let mut fields = config::FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(properties, fields);
    assert_eq!(schema["additionalProperties"], Value::Bool(false), "typos are rejected by Kong too");
}

#[test]
fn schema_defaults_are_the_parsers_defaults() {
    let schema = config_schema();
    let defaults: serde_json::Map<String, Value> = schema["properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, property)| (name.clone(), property["default"].clone()))
        .collect();
    let from_defaults = config::compile(Value::Object(defaults).to_string().as_bytes()).expect("defaults are valid");
    let from_nothing = config::compile(b"{}").unwrap();
    assert_eq!(from_defaults.headers, from_nothing.headers);
    assert_eq!(from_defaults.max_request_body_bytes, from_nothing.max_request_body_bytes);
    assert_eq!(from_defaults.max_response_body_bytes, from_nothing.max_response_body_bytes);
    assert_eq!(from_defaults.log_level, from_nothing.log_level);
    assert_eq!(from_defaults.include_usage, from_nothing.include_usage);
    assert_eq!(from_defaults.max_stream_event_bytes, from_nothing.max_stream_event_bytes);
}

#[test]
fn schema_limits_match_the_parsers_limits() {
    let schema = config_schema();
    for field in ["max_request_body_bytes", "max_response_body_bytes", "max_stream_event_bytes"] {
        assert_eq!(schema["properties"][field]["maximum"], config::MAX_BODY_LIMIT as u64, "{field}");
        let over = format!("{{\"{field}\": {}}}", config::MAX_BODY_LIMIT + 1);
        assert!(config::compile(over.as_bytes()).is_err(), "{field}");
    }
}
