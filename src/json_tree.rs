//! A JSON reader that remembers where every value lies in the original bytes, so that readers
//! can find a body's text by structure (roles, parts: `dialect::text`) and rewriters (the
//! guardrails' masks) can replace single strings in place, leaving every other byte exactly as
//! the client sent it.
//!
//! The tree is an arena of nodes; building it is one pass, iterative (no recursion, so deep
//! nesting cannot overflow the stack), bounded by [`MAX_DEPTH`]. It is a reader, not a full
//! validator: the exchange has already checked the body with serde_json, and anything this
//! reader cannot make sense of is an error, never a panic.

use std::borrow::Cow;

use crate::json_write;

/// Deeper documents are refused (serde_json refuses them too, at 128).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    /// A string; the node's span includes the quotes.
    String,
    Array,
    Object,
}

#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub kind: Kind,
    /// Byte range of the value in the document.
    pub start: usize,
    pub end: usize,
    /// Byte range of the member's key (quotes included) when the node is an object member.
    key: Option<(usize, usize)>,
    /// Whether the key, or the value of a string node, has an escape (found while parsing, so
    /// that reading a plain one never looks for one again).
    key_escaped: bool,
    escaped: bool,
    first_child: Option<usize>,
    next_sibling: Option<usize>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    Syntax,
    TooDeep,
}

#[derive(Debug)]
pub struct Tree<'a> {
    pub src: &'a [u8],
    nodes: Vec<Node>,
    /// The whole document as text (`None` when it is not UTF-8), checked once: a string is a
    /// slice of it, not checked again on its own. Every reader of a tree reads its strings.
    text: Option<&'a str>,
}

pub type NodeId = usize;

impl<'a> Tree<'a> {
    pub fn parse(src: &'a [u8]) -> Result<Tree<'a>, JsonError> {
        Parser { src, at: 0, nodes: Vec::with_capacity(src.len() / 16 + 4) }.run()
    }

    pub const ROOT: NodeId = 0;

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn kind(&self, id: NodeId) -> Option<Kind> {
        self.nodes.get(id).map(|n| n.kind)
    }

    /// Children of an array or object, in document order.
    pub fn children(&self, id: NodeId) -> Children<'_, 'a> {
        Children { tree: self, next: self.nodes.get(id).and_then(|n| n.first_child) }
    }

    /// Member `key` of an object (the last one when a key repeats, as serde_json does).
    pub fn get(&self, id: NodeId, key: &str) -> Option<NodeId> {
        let [found] = self.members(id, [key]);
        found
    }

    /// Members `keys` of object `id` in one pass over its members (each the last one when a key
    /// repeats, as [`Tree::get`]).
    pub fn members<const N: usize>(&self, id: NodeId, keys: [&str; N]) -> [Option<NodeId>; N] {
        let mut found = [None; N];
        if self.kind(id) != Some(Kind::Object) {
            return found;
        }
        for child in self.children(id) {
            let Some(node) = self.nodes.get(child) else { continue };
            let Some((start, end)) = node.key else { continue };
            let raw = self.src.get(start + 1..end.saturating_sub(1)).unwrap_or_default();
            for (key, slot) in keys.iter().zip(found.iter_mut()) {
                // A key without escapes is its bytes; one with escapes is decoded first.
                let same =
                    if node.key_escaped { self.key(child).is_some_and(|k| k == *key) } else { raw == key.as_bytes() };
                if same {
                    *slot = Some(child);
                }
            }
        }
        found
    }

    /// The member's key, decoded.
    pub fn key(&self, id: NodeId) -> Option<Cow<'a, str>> {
        let (start, end) = self.nodes.get(id)?.key?;
        decode_string(self.src.get(start..end)?)
    }

    /// The decoded value of a string node.
    pub fn str(&self, id: NodeId) -> Option<Cow<'a, str>> {
        let node = self.nodes.get(id)?;
        if node.kind != Kind::String {
            return None;
        }
        let Some(text) = self.text else {
            // Not UTF-8 somewhere: each string is checked on its own.
            return decode_string(self.src.get(node.start..node.end)?);
        };
        // The quotes are ASCII, so the slice between them is whole characters.
        let inner = text.get(node.start + 1..node.end.checked_sub(1)?)?;
        if node.escaped {
            unescape(inner).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }

    /// `member` of object `id`, as a string.
    pub fn get_str(&self, id: NodeId, member: &str) -> Option<Cow<'a, str>> {
        self.get(id, member).and_then(|m| self.str(m))
    }

    pub fn raw(&self, id: NodeId) -> Option<&'a [u8]> {
        let node = self.nodes.get(id)?;
        self.src.get(node.start..node.end)
    }

    /// Every string value at or under `id` (object keys excluded), in document order.
    pub fn strings_under(&self, id: NodeId, out: &mut Vec<NodeId>) {
        let Some(node) = self.nodes.get(id) else { return };
        let (start, end) = (node.start, node.end);
        // Nodes are stored in document order, so a subtree is a contiguous run of the arena.
        for (index, n) in self.nodes.iter().enumerate().skip(id) {
            if n.start >= end {
                break;
            }
            if n.kind == Kind::String && n.start >= start {
                out.push(index);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

pub struct Children<'t, 'a> {
    tree: &'t Tree<'a>,
    next: Option<NodeId>,
}

impl Iterator for Children<'_, '_> {
    type Item = NodeId;
    fn next(&mut self) -> Option<NodeId> {
        let id = self.next?;
        self.next = self.tree.nodes.get(id).and_then(|n| n.next_sibling);
        Some(id)
    }
}

/// Decodes a JSON string literal (quotes included). Borrowed when it has no escapes.
///
/// The escapes decode as serde_json decodes them into a `String` (the reference a test compares
/// against): a surrogate pair is one character, and a lone surrogate, an unknown escape or
/// invalid UTF-8 is `None`. Like the rest of this reader it does not re-check what serde_json
/// has already checked on the way in (a raw control character is taken as it is).
pub fn decode_string(raw: &[u8]) -> Option<Cow<'_, str>> {
    let inner = std::str::from_utf8(raw.get(1..raw.len().checked_sub(1)?)?).ok()?;
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Some(Cow::Borrowed(inner));
    }
    unescape(inner).map(Cow::Owned)
}

/// The text of a string literal's inside (valid UTF-8: escapes are ASCII, so what they leave
/// between them is whole characters). The plain stretches are copied whole.
fn unescape(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    loop {
        let plain = memchr::memchr(b'\\', rest.as_bytes()).unwrap_or(rest.len());
        out.push_str(rest.get(..plain)?);
        let Some(escape) = rest.get(plain..)?.strip_prefix('\\') else { return Some(out) };
        let mut chars = escape.chars();
        let decoded = match chars.next()? {
            'u' => {
                let (c, after) = unicode_escape(chars.as_str())?;
                out.push(c);
                rest = after;
                continue;
            }
            c @ ('"' | '\\' | '/') => c,
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            _ => return None,
        };
        out.push(decoded);
        rest = chars.as_str();
    }
}

/// The character of a `\u` escape (`rest` starts after the `u`), joining a surrogate pair, and
/// what follows it.
fn unicode_escape(rest: &str) -> Option<(char, &str)> {
    let (high, rest) = hex4(rest)?;
    match high {
        0xD800..=0xDBFF => {
            let rest = rest.strip_prefix("\\u")?;
            let (low, rest) = hex4(rest)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
            Some((char::from_u32(code)?, rest))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(u32::from(high))?, rest)),
    }
}

fn hex4(rest: &str) -> Option<(u16, &str)> {
    let (digits, rest) = rest.split_at_checked(4)?;
    let mut value = 0u16;
    for digit in digits.chars() {
        value = value << 4 | u16::try_from(digit.to_digit(16)?).ok()?;
    }
    Some((value, rest))
}

/// A JSON string literal (with quotes) for `text`, escaped as serde_json escapes.
pub fn encode_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    json_write::push_escaped(&mut quoted, text);
    quoted
}

/// `text` escaped for use inside a JSON string literal (without the quotes).
pub fn escape_inner(text: &str) -> String {
    let quoted = encode_string(text);
    quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_string()
}

/// Replaces byte ranges of `src` (sorted, not overlapping) by new bytes.
pub fn splice(src: &[u8], edits: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let extra: usize = edits.iter().map(|(_, _, b)| b.len()).sum();
    let mut out = Vec::with_capacity(src.len() + extra);
    let mut at = 0;
    for (start, end, bytes) in edits {
        if *start < at {
            continue; // overlapping edit: cannot happen for distinct nodes; ignore rather than corrupt
        }
        out.extend_from_slice(src.get(at..*start).unwrap_or_default());
        out.extend_from_slice(bytes);
        at = *end;
    }
    out.extend_from_slice(src.get(at..).unwrap_or_default());
    out
}

struct Parser<'a> {
    src: &'a [u8],
    at: usize,
    nodes: Vec<Node>,
}

/// An open container while parsing.
struct Open {
    id: NodeId,
    last_child: Option<NodeId>,
    count: usize,
}

impl<'a> Parser<'a> {
    fn run(mut self) -> Result<Tree<'a>, JsonError> {
        let mut stack: Vec<Open> = Vec::new();
        self.skip_ws();
        let mut pending_key: Option<(usize, usize, bool)> = None;
        loop {
            // Parse one value at `self.at`.
            self.skip_ws();
            let start = self.at;
            let byte = *self.src.get(start).ok_or(JsonError::Syntax)?;
            let id = self.nodes.len();
            let kind = match byte {
                b'{' => Kind::Object,
                b'[' => Kind::Array,
                b'"' => Kind::String,
                b't' | b'f' => Kind::Bool,
                b'n' => Kind::Null,
                b'-' | b'0'..=b'9' => Kind::Number,
                _ => return Err(JsonError::Syntax),
            };
            self.nodes.push(Node {
                kind,
                start,
                end: start,
                key: pending_key.map(|(start, end, _)| (start, end)),
                key_escaped: pending_key.take().is_some_and(|(_, _, escaped)| escaped),
                escaped: false,
                first_child: None,
                next_sibling: None,
            });
            if let Some(parent) = stack.last_mut() {
                match parent.last_child {
                    Some(prev) => {
                        if let Some(p) = self.nodes.get_mut(prev) {
                            p.next_sibling = Some(id);
                        }
                    }
                    None => {
                        if let Some(p) = self.nodes.get_mut(parent.id) {
                            p.first_child = Some(id);
                        }
                    }
                }
                parent.last_child = Some(id);
                parent.count += 1;
            }
            match kind {
                Kind::Object | Kind::Array => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    self.at += 1;
                    stack.push(Open { id, last_child: None, count: 0 });
                    self.skip_ws();
                    let close = if kind == Kind::Object { b'}' } else { b']' };
                    if self.src.get(self.at) == Some(&close) {
                        self.at += 1;
                        self.close(&mut stack, id)?;
                    } else if kind == Kind::Object {
                        pending_key = Some(self.key()?);
                        continue;
                    } else {
                        continue;
                    }
                }
                Kind::String => {
                    let (end, escaped) = string_end(self.src, start).ok_or(JsonError::Syntax)?;
                    self.at = end;
                    self.set_end(id);
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.escaped = escaped;
                    }
                }
                Kind::Bool | Kind::Null | Kind::Number => {
                    while self.src.get(self.at).is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !is_ws(*b)) {
                        self.at += 1;
                    }
                    if self.at == start {
                        return Err(JsonError::Syntax);
                    }
                    self.set_end(id);
                }
            }
            // After a complete value: a comma, a closing bracket, or the end of the document.
            loop {
                self.skip_ws();
                let Some(top) = stack.last() else {
                    return if self.at == self.src.len() {
                        Ok(Tree { src: self.src, nodes: self.nodes, text: std::str::from_utf8(self.src).ok() })
                    } else {
                        Err(JsonError::Syntax)
                    };
                };
                let top_id = top.id;
                let is_object = self.nodes.get(top_id).is_some_and(|n| n.kind == Kind::Object);
                match self.src.get(self.at) {
                    Some(b',') => {
                        self.at += 1;
                        if is_object {
                            self.skip_ws();
                            pending_key = Some(self.key()?);
                        }
                        break;
                    }
                    Some(b'}') if is_object => {
                        self.at += 1;
                        self.close(&mut stack, top_id)?;
                    }
                    Some(b']') if !is_object => {
                        self.at += 1;
                        self.close(&mut stack, top_id)?;
                    }
                    _ => return Err(JsonError::Syntax),
                }
            }
        }
    }

    fn close(&mut self, stack: &mut Vec<Open>, id: NodeId) -> Result<(), JsonError> {
        stack.pop().ok_or(JsonError::Syntax)?;
        self.set_end(id);
        Ok(())
    }

    fn set_end(&mut self, id: NodeId) {
        let at = self.at;
        if let Some(n) = self.nodes.get_mut(id) {
            n.end = at;
        }
    }

    /// A member key and its colon; leaves `at` on the value.
    fn key(&mut self) -> Result<(usize, usize, bool), JsonError> {
        let start = self.at;
        if self.src.get(start) != Some(&b'"') {
            return Err(JsonError::Syntax);
        }
        let (end, escaped) = string_end(self.src, start).ok_or(JsonError::Syntax)?;
        self.at = end;
        self.skip_ws();
        if self.src.get(self.at) != Some(&b':') {
            return Err(JsonError::Syntax);
        }
        self.at += 1;
        Ok((start, end, escaped))
    }

    fn skip_ws(&mut self) {
        while self.src.get(self.at).is_some_and(|b| is_ws(*b)) {
            self.at += 1;
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `at` is on an opening quote; the index just past the closing quote, and whether the string
/// has an escape.
fn string_end(src: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        let rest = src.get(i..)?;
        let found = memchr::memchr2(b'"', b'\\', rest)?;
        i += found;
        if src.get(i) == Some(&b'"') {
            return Some((i + 1, escaped));
        }
        escaped = true;
        i += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_structure_and_spans() {
        let src = br#" {"a": [1, "x\"y", {"b": null}], "c": true, "a\u0062": "z"} "#;
        let tree = Tree::parse(src).unwrap();
        let a = tree.get(Tree::ROOT, "a").unwrap();
        let items: Vec<_> = tree.children(a).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(tree.str(items[1]).unwrap(), "x\"y");
        assert_eq!(tree.raw(items[1]).unwrap(), br#""x\"y""#);
        assert_eq!(tree.kind(tree.get(items[2], "b").unwrap()), Some(Kind::Null));
        assert_eq!(tree.get_str(Tree::ROOT, "ab").unwrap(), "z");
        let [a_member, ab, missing] = tree.members(Tree::ROOT, ["a", "ab", "x"]);
        assert_eq!((a_member, ab, missing), (Some(a), tree.get(Tree::ROOT, "ab"), None));
        assert_eq!(tree.members(a, ["a"]), [None], "an array has no members");
        let mut strings = Vec::new();
        tree.strings_under(a, &mut strings);
        assert_eq!(strings, vec![items[1]]);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [&b""[..], b"{", b"[1,", b"{\"a\" 1}", b"{\"a\":}", b"[1] x", b"\"abc", b"{1:2}", b"]", b"[}"] {
            assert!(Tree::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(Tree::parse(deep.as_bytes()).unwrap_err(), JsonError::TooDeep);
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Tree::parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_utf8_strings_do_not_decode() {
        let tree = Tree::parse(b"[\"\xff\"]").unwrap();
        let first = tree.children(Tree::ROOT).next().unwrap();
        assert!(tree.str(first).is_none());
    }

    #[test]
    fn splice_replaces_ranges() {
        assert_eq!(splice(b"abcdef", &[(1, 2, b"XX".to_vec()), (4, 6, Vec::new())]), b"aXXcd");
    }

    #[test]
    fn one_string_that_is_not_utf8_spoils_only_itself() {
        let src = b"{\"bad\": \"a\xffb\", \"good\": \"caf\xc3\xa9\\n\", \"plain\": \"x\"}";
        let tree = Tree::parse(src).unwrap();
        assert_eq!(tree.get_str(Tree::ROOT, "bad"), None);
        assert_eq!(tree.get_str(Tree::ROOT, "good").unwrap(), "caf\u{e9}\n");
        assert_eq!(tree.get_str(Tree::ROOT, "plain").unwrap(), "x");
        let valid = Tree::parse(br#"{"good": "caf\u00e9\n", "lone": "\ud800"}"#).unwrap();
        assert_eq!(valid.get_str(Tree::ROOT, "good").unwrap(), "caf\u{e9}\n");
        assert_eq!(valid.get_str(Tree::ROOT, "lone"), None);
    }

    /// serde_json's answer for a literal: the reference for [`decode_string`].
    fn reference(raw: &[u8]) -> Option<String> {
        serde_json::from_slice::<String>(raw).ok()
    }

    #[test]
    fn strings_decode_as_serde_json_decodes_them() {
        let cases: [&[u8]; 16] = [
            br#""plain""#,
            br#""a\nb\t\"c\"\\d\/e\bf\fg\rh""#,
            br#""caf\u00e9 \u65e5 \uD83D\uDE00 end""#,
            br#""\ud83d\ude00""#,
            br#""lone \uD83D high""#,
            br#""lone \uDE00 low""#,
            br#""high then other \uD83D\u0041""#,
            br#""high at end \uD83D""#,
            br#""short \u12""#,
            br#""bad hex \u12G4""#,
            br#""unknown \x escape""#,
            br#""trailing backslash \""#,
            "\"naïve \\n 😀\"".as_bytes(),
            b"\"bad utf-8 \xff \\n\"",
            b"\"bad utf-8 \xc3\"",
            br#""\u0000 nul""#,
        ];
        for raw in cases {
            assert_eq!(decode_string(raw).map(Cow::into_owned), reference(raw), "{}", String::from_utf8_lossy(raw));
        }
        // Every mix of pieces, some of them broken, up to three long.
        let pieces: [&[u8]; 14] = [
            b"a",
            b"\xc3\xa9",
            b"\xe6\x97\xa5",
            b"\xff",
            b"\\n",
            b"\\\"",
            b"\\\\",
            b"\\u0041",
            b"\\uD83D",
            b"\\uDE00",
            b"\\u00",
            b"\\q",
            b"\\",
            b"\\/",
        ];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let raw = [&b"\""[..], a, b, c, b"\""].concat();
                    if string_end(&raw, 0).map(|(end, _)| end) != Some(raw.len()) {
                        continue; // the literal would end elsewhere: not a string node
                    }
                    assert_eq!(
                        decode_string(&raw).map(Cow::into_owned),
                        reference(&raw),
                        "{}",
                        String::from_utf8_lossy(&raw)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 2000);
    }
}
