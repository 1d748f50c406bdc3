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
//! Nothing but what the caller reads is built: a body of 100,000 messages is walked without
//! allocating a tree for it. The caller reads top-level members through [`Members`] and their
//! values through [`Reader`]s, which take scalars as [`Leaf`]s and open only the objects and
//! arrays they need; whatever a reader does not read is walked and checked like the rest.
//! serde_json's recursion limit (128) still applies.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The message of the error raised for a duplicate key (serde_json adds line and column).
pub const DUPLICATE_KEY: &str = "duplicate key in an object";

/// What the walk does with the top-level members of an object.
pub trait Members {
    /// Reads member `key` when it is one to read, taking its value with `map.next_value_seed`,
    /// and returns true; returns false to have the value checked and dropped.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

/// Walks the whole document in `body`, refusing duplicate keys, and hands the top-level members
/// to `members`. Returns whether the document is an object. Errors are serde_json's, with line
/// and column.
pub fn walk<M: Members>(body: &[u8], members: &mut M) -> Result<bool, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let is_object = deserializer.deserialize_any(TopVisitor { members })?;
    deserializer.end()?;
    Ok(is_object)
}

/// Whether a serde_json error is the duplicate-key refusal.
pub fn is_duplicate_key(error: &serde_json::Error) -> bool {
    error.is_data() && error.to_string().starts_with(DUPLICATE_KEY)
}

/// The members of one object, each key once: `read` takes the value of a member it wants (with
/// `map.next_value_seed`) and returns true; every other value is walked. A repeated key is an
/// error.
pub fn object<'de, A, F>(mut map: A, mut read: F) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    let mut seen = BTreeSet::new();
    while let Some(key) = map.next_key_seed(KeySeed)? {
        if !read(&key, &mut map)? {
            map.next_value_seed(WalkSeed)?;
        }
        if !seen.insert(key) {
            return Err(de::Error::custom(DUPLICATE_KEY));
        }
    }
    Ok(())
}

/// A JSON value that is not opened: a scalar as it was written, or the kind of a container
/// (walked and checked, not built).
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'de> {
    Null,
    Bool(bool),
    Unsigned(u64),
    /// A negative integer (serde_json reads non-negative ones as unsigned).
    Signed(i64),
    Float(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl Leaf<'_> {
    /// The kind of value, as an error message names it (never the value itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Leaf::Null => "null",
            Leaf::Bool(_) => "a boolean",
            Leaf::Unsigned(_) | Leaf::Signed(_) | Leaf::Float(_) => "a number",
            Leaf::Str(_) => "a string",
            Leaf::Array => "an array",
            Leaf::Object => "an object",
        }
    }
}

/// How to read one value. Scalars arrive as [`Leaf`]s; objects and arrays are walked and
/// arrive as `Leaf::Object` / `Leaf::Array` unless the reader opens them.
pub trait Reader<'de>: Sized {
    type Value;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value;

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        object(map, |_, _| Ok(false))?;
        Ok(self.leaf(Leaf::Object))
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(WalkSeed)?.is_some() {}
        Ok(self.leaf(Leaf::Array))
    }
}

/// Any value as a [`Leaf`].
pub struct LeafReader;

impl<'de> Reader<'de> for LeafReader {
    type Value = Leaf<'de>;

    fn leaf(self, leaf: Leaf<'de>) -> Leaf<'de> {
        leaf
    }
}

/// The seed that reads a value with a [`Reader`].
pub struct Read<R>(pub R);

impl<'de, R: Reader<'de>> DeserializeSeed<'de> for Read<R> {
    type Value = R::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<R::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, R: Reader<'de>> Visitor<'de> for Read<R> {
    type Value = R::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R::Value, A::Error> {
        self.0.object(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<R::Value, A::Error> {
        self.0.array(seq)
    }

    fn visit_bool<E>(self, b: bool) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Bool(b)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Signed(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Unsigned(n)))
    }

    fn visit_f64<E>(self, n: f64) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Float(n)))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Str(Cow::Borrowed(s))))
    }

    fn visit_str<E>(self, s: &str) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Str(Cow::Owned(s.to_string()))))
    }

    fn visit_unit<E>(self) -> Result<R::Value, E> {
        Ok(self.0.leaf(Leaf::Null))
    }
}

struct TopVisitor<'m, M> {
    members: &'m mut M,
}

impl<'de, M: Members> Visitor<'de> for TopVisitor<'_, M> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        object(map, |key, map| self.members.read(key, map))?;
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        WalkVisitor.visit_seq(seq)?;
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
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
        // `object` without a reader, written out: this loop is where a large body spends its
        // walk, and through the shared helper the compiler inlines less of it (0.5% more
        // instructions per request at 32 KB).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the named top-level members as leaves.
    struct Keep<'k> {
        names: &'k [&'k str],
        kept: Vec<(String, Leaf<'static>)>,
    }

    impl Members for Keep<'_> {
        fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
            if !self.names.contains(&key) {
                return Ok(false);
            }
            let leaf = match map.next_value_seed(Read(LeafReader))? {
                Leaf::Str(s) => Leaf::Str(Cow::Owned(s.into_owned())),
                Leaf::Null => Leaf::Null,
                Leaf::Bool(b) => Leaf::Bool(b),
                Leaf::Unsigned(n) => Leaf::Unsigned(n),
                Leaf::Signed(n) => Leaf::Signed(n),
                Leaf::Float(n) => Leaf::Float(n),
                Leaf::Array => Leaf::Array,
                Leaf::Object => Leaf::Object,
            };
            self.kept.push((key.to_string(), leaf));
            Ok(true)
        }
    }

    fn walk_keeping(body: &[u8], names: &[&str]) -> Result<(bool, Vec<(String, Leaf<'static>)>), serde_json::Error> {
        let mut keep = Keep { names, kept: Vec::new() };
        let is_object = walk(body, &mut keep)?;
        Ok((is_object, keep.kept))
    }

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
            let err = walk_keeping(body, &["model", "stream_options"]).unwrap_err();
            assert!(is_duplicate_key(&err), "{}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn kept_members_are_read_and_the_rest_only_checked() {
        let (is_object, kept) = walk_keeping(
            br#"{"model": "m", "messages": [{"a": 1}], "stream": true, "n": -1.5, "k": -2}"#,
            &["model", "stream", "messages", "n", "k"],
        )
        .unwrap();
        assert!(is_object);
        assert_eq!(
            kept,
            [
                ("model".to_string(), Leaf::Str(Cow::Owned("m".into()))),
                ("messages".to_string(), Leaf::Array),
                ("stream".to_string(), Leaf::Bool(true)),
                ("n".to_string(), Leaf::Float(-1.5)),
                ("k".to_string(), Leaf::Signed(-2)),
            ]
        );
        assert!(!walk_keeping(b"[1, {\"a\": 2}]", &[]).unwrap().0);
        assert!(!walk_keeping(b"\"s\"", &[]).unwrap().0);
    }

    #[test]
    fn what_serde_json_refuses_stays_refused() {
        for body in [&b"{\"a\": 1"[..], b"{} x", b"{\"a\": \"\xff\"}", b"{\"a\": 1e999}", b"{\"a\": \"\\ud800\"}"] {
            let err = walk_keeping(body, &[]).unwrap_err();
            assert!(!is_duplicate_key(&err), "{err}");
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
            let err = walk_keeping(body, &["a"]).unwrap_err();
            assert!(!is_duplicate_key(&err), "read members are checked too: {err}");
        }
        let deep = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(walk_keeping(deep.as_bytes(), &[]).is_err());
        assert!(walk_keeping(deep.as_bytes(), &["x"]).is_err());
    }

    #[test]
    fn same_keys_in_different_objects_are_not_duplicates() {
        assert!(walk_keeping(br#"{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}"#, &["a"]).is_ok());
    }
}
