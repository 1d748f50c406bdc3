//! JSON written by hand for what runs on every request: the usage record, object by object, and
//! every string literal a rewrite puts in a body (`json_tree::encode_string`). No serializer
//! machinery, the same bytes serde_json writes for the same values (its escaping, no spaces).
//! Keys are written in the order given.

/// An object being written; [`ObjectWriter::finish`] closes it.
pub struct ObjectWriter {
    out: String,
    empty: bool,
}

impl ObjectWriter {
    pub fn new(capacity: usize) -> ObjectWriter {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        ObjectWriter { out, empty: true }
    }

    /// Keys are Tollgate's own names, written as they are (never text that needs escaping).
    fn key(&mut self, key: &str) -> &mut String {
        self.out.push_str(if self.empty { "\"" } else { ",\"" });
        self.empty = false;
        self.out.push_str(key);
        self.out.push_str("\":");
        &mut self.out
    }

    pub fn str(&mut self, key: &str, value: &str) {
        push_escaped(self.key(key), value);
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// A number, or `null`.
    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(value) => push_u64(self.key(key), value),
            None => self.raw(key, "null"),
        }
    }

    pub fn u64(&mut self, key: &str, value: u64) {
        push_u64(self.key(key), value);
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.raw(key, if value { "true" } else { "false" });
    }

    /// A value that is JSON text already.
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key).push_str(json);
    }

    /// An object inside this one, written by `fill`.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut ObjectWriter)) {
        self.key(key).push('{');
        let mut inner = ObjectWriter { out: std::mem::take(&mut self.out), empty: true };
        fill(&mut inner);
        inner.out.push('}');
        self.out = inner.out;
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `text` as a JSON string, quotes included, escaped as serde_json escapes: `"` and `\`, and
/// control characters (`\n`, `\t`, `\r`, `\b`, `\f`, the others as `\u00XX`); nothing else.
pub fn push_escaped(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest.bytes().position(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let byte = rest.as_bytes().get(at).copied().unwrap_or_default();
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0')));
                out.push(char::from(HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0')));
            }
        }
        rest = rest.get(at + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out.push('"');
}

/// `value` in decimal.
pub fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(digits.get(start..).unwrap_or_default()).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| format!("a{}b", char::from(b))).collect();
        texts.extend(["", "plain", "é 日本 🙂", "\"\\/", "\u{7f}\u{80}\u{2028}", "end\n"].map(String::from));
        for text in texts {
            let mut mine = String::new();
            push_escaped(&mut mine, &text);
            assert_eq!(mine, serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for value in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut mine = String::new();
            push_u64(&mut mine, value);
            assert_eq!(mine, value.to_string());
        }
    }

    #[test]
    fn an_object_is_what_serde_json_writes_for_the_same_fields() {
        let mut object = ObjectWriter::new(8);
        object.str("a", "x\"y");
        object.opt_str("b", None);
        object.opt_u64("c", Some(7));
        object.bool("d", false);
        object.raw("e", "{}");
        object.object("f", |inner| {
            inner.u64("g", 1);
            inner.object("h", |_| {});
        });
        let expected = serde_json::json!({"a": "x\"y", "b": null, "c": 7, "d": false, "e": {}, "f": {"g": 1, "h": {}}})
            .to_string();
        assert_eq!(object.finish(), expected);
        assert_eq!(ObjectWriter::new(0).finish(), "{}");
    }
}
