//! Chat Completions (and Embeddings) `usage`, read straight from the bytes into the six counts
//! the filter bills. Inside a proxy this runs with cold caches, where building a JSON tree of the
//! usage object and walking it cost more than the rest of the response read.
//!
//! It reads exactly as the tree did (`openai::chat_usage` on a `serde_json::Value`, still used
//! when a body repeats a top-level member): a count that is not a non-negative integer reads as
//! absent, a `*_details` member or a `usage` that is not an object reads as empty, a repeated
//! member keeps its last copy, and every other member is skipped without being built.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::usage::{Count, TokenCounts};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChatUsage {
    /// `usage` was a JSON object (an OpenAI usage-only chunk needs one).
    pub object: bool,
    prompt: Option<u64>,
    completion: Option<u64>,
    prompt_details: Details,
    completion_details: Details,
}

impl ChatUsage {
    /// `prompt_tokens` include cached and audio tokens, `completion_tokens` reasoning and audio.
    pub fn tokens(&self) -> TokenCounts {
        TokenCounts {
            input: self.prompt.map(Count::provider),
            cache_read: self.prompt_details.cached.map(Count::provider),
            audio_input: self.prompt_details.audio.map(Count::provider),
            output: self.completion.map(Count::provider),
            reasoning: self.completion_details.reasoning.map(Count::provider),
            audio_output: self.completion_details.audio.map(Count::provider),
            ..TokenCounts::default()
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Details {
    cached: Option<u64>,
    audio: Option<u64>,
    reasoning: Option<u64>,
}

/// A token count: `Some` only for a non-negative integer that fits in `u64`.
#[derive(Default)]
struct TokenNumber(Option<u64>);

/// The members the readers look at; any other name is `Other`.
enum Key {
    PromptTokens,
    CompletionTokens,
    PromptDetails,
    CompletionDetails,
    CachedTokens,
    AudioTokens,
    ReasoningTokens,
    Other,
}

/// An object read member by member; any other JSON value reads as the default.
trait Members: Default {
    fn opened(&mut self) {}
    fn member<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error>;
}

impl Members for ChatUsage {
    fn opened(&mut self) {
        self.object = true;
    }

    fn member<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        match key {
            Key::PromptTokens => self.prompt = map.next_value::<TokenNumber>()?.0,
            Key::CompletionTokens => self.completion = map.next_value::<TokenNumber>()?.0,
            Key::PromptDetails => self.prompt_details = map.next_value::<ObjectOr<Details>>()?.0,
            Key::CompletionDetails => self.completion_details = map.next_value::<ObjectOr<Details>>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl Members for Details {
    fn member<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        match key {
            Key::CachedTokens => self.cached = map.next_value::<TokenNumber>()?.0,
            Key::AudioTokens => self.audio = map.next_value::<TokenNumber>()?.0,
            Key::ReasoningTokens => self.reasoning = map.next_value::<TokenNumber>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ChatUsage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ObjectOr::<ChatUsage>::deserialize(deserializer)?.0)
    }
}

struct ObjectOr<T>(T);

impl<'de, T: Members> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

/// The visits shared by every lenient reader: scalars give the default, arrays are skipped.
macro_rules! anything_else_is {
    ($default:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($default)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($default)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($default)
        }

        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($default)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($default)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($default)
        }
    };
}

impl<'de, T: Members> Visitor<'de> for ObjectVisitor<T> {
    type Value = ObjectOr<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    anything_else_is!(ObjectOr(T::default()));

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ObjectOr(T::default()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = T::default();
        read.opened();
        while let Some(key) = map.next_key::<Key>()? {
            read.member(key, &mut map)?;
        }
        Ok(ObjectOr(read))
    }
}

impl<'de> Deserialize<'de> for TokenNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TokenVisitor)
    }
}

struct TokenVisitor;

impl<'de> Visitor<'de> for TokenVisitor {
    type Value = TokenNumber;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    anything_else_is!(TokenNumber(None));

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(TokenNumber(Some(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(TokenNumber(None))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Key, E> {
        Ok(match name {
            "prompt_tokens" => Key::PromptTokens,
            "completion_tokens" => Key::CompletionTokens,
            "prompt_tokens_details" => Key::PromptDetails,
            "completion_tokens_details" => Key::CompletionDetails,
            "cached_tokens" => Key::CachedTokens,
            "audio_tokens" => Key::AudioTokens,
            "reasoning_tokens" => Key::ReasoningTokens,
            _ => Key::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::openai::chat_usage;

    /// The same counts as the tree read, on the shapes providers send and on odd ones.
    #[test]
    fn reads_as_the_tree_does() {
        let cases = [
            r#"{"prompt_tokens": 41, "completion_tokens": 6, "total_tokens": 47,
                "prompt_tokens_details": {"cached_tokens": 10, "audio_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 1,
                  "accepted_prediction_tokens": 0}}"#,
            r#"{"prompt_tokens": -1, "completion_tokens": 2.0, "prompt_tokens_details": null,
                "completion_tokens_details": [1, {"a": 2}]}"#,
            r#"{"prompt_tokens": "7", "completion_tokens": {"x": 1}, "prompt_tokens_details": 5}"#,
            r#"{"prompt_tokens": 99999999999999999999, "completion_tokens": 1e3}"#,
            r#"{"prompt_tokens": 1, "prompt_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1},
                "prompt_tokens_details": {"audio_tokens": 4}}"#,
            r#"{"prompt_tokens_details": {"cached_tokens": 1, "cached_tokens": true}}"#,
            r#"{"pr\u006fmpt_tokens": 5, "extra": {"deep": [[{"prompt_tokens": 9}]]}}"#,
            r#"{}"#,
            r#"[1, 2]"#,
            r#"12"#,
            r#""usage""#,
            r#"null"#,
            r#"true"#,
        ];
        for case in cases {
            let tree: serde_json::Value = serde_json::from_str(case).unwrap();
            let read: ChatUsage = serde_json::from_str(case).unwrap();
            assert_eq!(read.tokens(), chat_usage(&tree), "{case}");
            assert_eq!(read.object, tree.is_object(), "{case}");
        }
    }
}
