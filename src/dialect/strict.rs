//! One pass over a request body that checks what serde_json alone lets through and keeps only
//! what the filter reads.
//!
//! **Duplicate keys are refused**, in every object at any depth. JSON parsers disagree about
//! `{"model": "a", "model": "b"}`: serde_json's `Value`, Python, Go and Node keep the last value,
//! some parsers keep the first, some refuse. If the filter judged one copy and the upstream used
//! the other, a denied model (or, later, a guarded message) could be smuggled past the policy,
//! so a body with a duplicate key is not judged at all. Keys are compared after unescaping
//! (`"mo\u0064el"` is `model`).
//!
//! Nothing but the requested top-level members is built: a body of 100,000 messages is walked
//! without allocating a tree for it. serde_json's recursion limit (128) still applies.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The message of the error raised for a duplicate key (serde_json adds line and column).
pub const DUPLICATE_KEY: &str = "duplicate key in an object";

/// What the walk found at the top level.
#[derive(Debug, Default)]
pub struct TopLevel {
    /// The document is a JSON object.
    pub is_object: bool,
    /// The members named in `keep`, as they were written (their own duplicates refused too).
    pub kept: Map<String, Value>,
}

/// Walks the whole document in `body`, refusing duplicate keys, and keeps the top-level members
/// named in `keep`. Errors are serde_json's, with line and column.
pub fn walk(body: &[u8], keep: &[&str]) -> Result<TopLevel, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let top = deserializer.deserialize_any(TopVisitor { keep })?;
    deserializer.end()?;
    Ok(top)
}

/// Whether a serde_json error is the duplicate-key refusal.
pub fn is_duplicate_key(error: &serde_json::Error) -> bool {
    error.is_data() && error.to_string().starts_with(DUPLICATE_KEY)
}

struct TopVisitor<'k> {
    keep: &'k [&'k str],
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut seen = BTreeSet::new();
        let mut kept = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if self.keep.contains(&key.as_ref()) {
                let value = map.next_value_seed(BuildSeed)?;
                kept.insert(key.to_string(), value);
            } else {
                map.next_value_seed(WalkSeed)?;
            }
            if !seen.insert(key) {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
        }
        Ok(TopLevel { is_object: true, kept })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TopLevel, A::Error> {
        WalkVisitor.visit_seq(seq)?;
        Ok(TopLevel::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }
}

/// An object key, borrowed from the body unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_string()))
    }
}

/// Any value, checked and dropped.
struct WalkSeed;

impl<'de> DeserializeSeed<'de> for WalkSeed {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(WalkVisitor)
    }
}

struct WalkVisitor;

impl<'de> Visitor<'de> for WalkVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            map.next_value_seed(WalkSeed)?;
            if !seen.insert(key) {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(WalkSeed)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Any value, checked and built.
struct BuildSeed;

impl<'de> DeserializeSeed<'de> for BuildSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(BuildVisitor)
    }
}

struct BuildVisitor;

impl<'de> Visitor<'de> for BuildVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(BuildSeed)?;
            if object.insert(key.into_owned(), value).is_some() {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(BuildSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // serde_json never hands a non-finite float; `Null` would only hide a bug.
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_every_depth_and_through_escapes() {
        for body in [
            &br#"{"model": "a", "model": "b"}"#[..],
            br#"{"model": "a", "mo\u0064el": "b"}"#,
            br#"{"messages": [{"role": "user", "content": "x", "content": "y"}]}"#,
            br#"{"stream_options": {"include_usage": true, "include_usage": false}}"#,
            br#"{"a": {"b": {"c": [1, {"d": 1, "d": 2}]}}}"#,
            br#"{"x": 1, "x": 1}"#,
        ] {
            let err = walk(body, &["model", "stream_options"]).unwrap_err();
            assert!(is_duplicate_key(&err), "{}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn kept_members_are_built_and_the_rest_only_checked() {
        let top =
            walk(br#"{"model": "m", "messages": [{"a": 1}], "stream": true, "n": 1.5}"#, &["model", "stream"]).unwrap();
        assert!(top.is_object);
        assert_eq!(Value::Object(top.kept), serde_json::json!({"model": "m", "stream": true}));
        assert!(!walk(b"[1, {\"a\": 2}]", &[]).unwrap().is_object);
        assert!(!walk(b"\"s\"", &[]).unwrap().is_object);
    }

    #[test]
    fn what_serde_json_refuses_stays_refused() {
        for body in [&b"{\"a\": 1"[..], b"{} x", b"{\"a\": \"\xff\"}", b"{\"a\": 1e999}", b"{\"a\": \"\\ud800\"}"] {
            let err = walk(body, &[]).unwrap_err();
            assert!(!is_duplicate_key(&err), "{err}");
            assert!(serde_json::from_slice::<Value>(body).is_err());
        }
        let deep = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(walk(deep.as_bytes(), &[]).is_err());
    }

    #[test]
    fn same_keys_in_different_objects_are_not_duplicates() {
        assert!(walk(br#"{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}"#, &["a"]).is_ok());
    }
}
