//! Byte-preserving edits of a JSON object's top-level members: everything the edit does not
//! touch stays exactly as the client sent it (key order, spacing, escapes, numbers). Callers
//! have already checked that the body is valid JSON.

/// Where a top-level member's value lies: `value` is its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    value: (usize, usize),
}

/// Finds the top-level member named `key` of the object in `body`.
fn find_member(body: &[u8], key: &str) -> Option<Member> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_ws(body, at);
        match body.get(at)? {
            b'}' => return None,
            b',' => {
                at += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(body, at)?;
        let name = body.get(at + 1..key_end - 1)?;
        at = skip_ws(body, key_end);
        if body.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(body, at + 1);
        let value_end = value_end(body, value_start)?;
        if unescaped_equals(name, key) {
            return Some(Member { value: (value_start, value_end) });
        }
        at = value_end;
    }
}

/// Replaces the value of top-level `key` with `raw_json` (already valid JSON text).
/// `None` when there is no such member.
pub fn replace_value(body: &[u8], key: &str, raw_json: &str) -> Option<Vec<u8>> {
    let Member { value: (start, end) } = find_member(body, key)?;
    Some([body.get(..start)?, raw_json.as_bytes(), body.get(end..)?].concat())
}

/// Inserts `"key": raw_json` as the object's first member.
pub fn insert_first(body: &[u8], key: &str, raw_json: &str) -> Option<Vec<u8>> {
    let brace = skip_ws(body, 0);
    if body.get(brace) != Some(&b'{') {
        return None;
    }
    let empty = body.get(skip_ws(body, brace + 1)) == Some(&b'}');
    let member = format!("{}:{raw_json}{}", serde_json::Value::String(key.to_string()), if empty { "" } else { "," });
    Some([body.get(..=brace)?, member.as_bytes(), body.get(brace + 1..)?].concat())
}

/// Sets `key` inside the object that is the top-level member `outer` to `raw_json`, keeping every
/// other byte: the member's value is replaced, or the member inserted first in that object. An
/// absent or `null` `outer` becomes `{"key":raw_json}` (inserted first, or in place of the
/// `null`). `None` when `outer` holds another kind of value.
pub fn set_in_member(body: &[u8], outer: &str, key: &str, raw_json: &str) -> Option<Vec<u8>> {
    let object = || format!("{{{}:{raw_json}}}", serde_json::Value::String(key.to_string()));
    let Some(Member { value: (start, end) }) = find_member(body, outer) else {
        return insert_first(body, outer, &object());
    };
    let value = body.get(start..end)?;
    let edited = match value.first()? {
        b'n' if value == b"null" => object().into_bytes(),
        b'{' => replace_value(value, key, raw_json).or_else(|| insert_first(value, key, raw_json))?,
        _ => return None,
    };
    Some([body.get(..start)?, &edited, body.get(end..)?].concat())
}

fn skip_ws(body: &[u8], mut at: usize) -> usize {
    while body.get(at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// `at` is on the opening quote; returns the index just past the closing quote.
fn string_end(body: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match body.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Index just past the JSON value starting at `at`.
fn value_end(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at)? {
        b'"' => string_end(body, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match body.get(i)? {
                    b'"' => {
                        i = string_end(body, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while body.get(i).is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// A key written with escapes (`"mo\u0064el"`) is still the key `model`.
fn unescaped_equals(raw: &[u8], key: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == key.as_bytes();
    }
    let quoted = [b"\"", raw, b"\""].concat();
    serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_top_level_value() {
        let body = br#"{ "messages": [{"model": "inner", "content": "a \"model\": x"}], "model" : "fast", "n": 1 }"#;
        let out = replace_value(body, "model", "\"gpt-4o-mini\"").unwrap();
        assert_eq!(
            out,
            br#"{ "messages": [{"model": "inner", "content": "a \"model\": x"}], "model" : "gpt-4o-mini", "n": 1 }"#
        );
    }

    #[test]
    fn handles_values_of_every_kind_before_the_key() {
        let body = br#"{"a": {"b": [1, {"c": "}"}]}, "t": true, "x": -1.5e3, "s": "\\", "model": "m"}"#;
        let out = replace_value(body, "model", "\"z\"").unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["model"], "z");
        assert_eq!(value["a"]["b"][1]["c"], "}");
    }

    #[test]
    fn escaped_keys_are_found() {
        let out = replace_value(br#"{"mo\u0064el": "m"}"#, "model", "\"z\"").unwrap();
        assert_eq!(out, br#"{"mo\u0064el": "z"}"#);
    }

    #[test]
    fn absent_keys_and_non_objects_give_none() {
        assert_eq!(replace_value(br#"{"a": 1}"#, "model", "1"), None);
        assert_eq!(replace_value(b"[1]", "model", "1"), None);
        assert_eq!(replace_value(b"{\"model\": \"unterminated", "model", "1"), None);
    }

    #[test]
    fn sets_a_member_inside_a_member_object_keeping_every_other_byte() {
        let body = br#"{"seed":1e2, "stream_options" : { "x": 0.70 ,"include_usage":false }, "t":"caf\u00e9"}"#;
        assert_eq!(
            set_in_member(body, "stream_options", "include_usage", "true").unwrap(),
            br#"{"seed":1e2, "stream_options" : { "x": 0.70 ,"include_usage":true }, "t":"caf\u00e9"}"#
        );
        assert_eq!(
            set_in_member(br#"{"o": {"a": [1]}, "z": 1}"#, "o", "k", "true").unwrap(),
            br#"{"o": {"k":true,"a": [1]}, "z": 1}"#
        );
        assert_eq!(set_in_member(br#"{"o": {}}"#, "o", "k", "1").unwrap(), br#"{"o": {"k":1}}"#);
        assert_eq!(set_in_member(br#"{"o": null, "z": 1}"#, "o", "k", "1").unwrap(), br#"{"o": {"k":1}, "z": 1}"#);
        assert_eq!(set_in_member(br#"{"z": 1}"#, "o", "k", "1").unwrap(), br#"{"o":{"k":1},"z": 1}"#);
        assert_eq!(set_in_member(br#"{"o": "s"}"#, "o", "k", "1"), None);
        assert_eq!(set_in_member(br#"{"o": nul}"#, "o", "k", "1"), None);
        assert_eq!(set_in_member(b"[]", "o", "k", "1"), None);
    }

    #[test]
    fn inserts_a_first_member() {
        assert_eq!(insert_first(br#" {"a":1}"#, "k", "true").unwrap(), br#" {"k":true,"a":1}"#);
        assert_eq!(insert_first(b"{ }", "k", "true").unwrap(), br#"{"k":true }"#);
        assert_eq!(insert_first(b"[]", "k", "true"), None);
    }
}
