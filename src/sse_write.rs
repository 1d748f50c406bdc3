//! Events Tollgate writes into a client's stream itself (a guardrail's or a budget's ending, text
//! cut out of an event), shaped like the provider's own.

use crate::json_tree::{self, Tree};

/// Writes one SSE event: an `event:` line when named, `data:` lines, a blank line.
pub fn write_event(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    if !name.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// An OpenAI Chat chunk with `choices`, carrying `id`, `created` and `model` (and, with
/// `fingerprint`, `system_fingerprint`) of `template`, a chunk the provider sent, byte for byte.
pub fn chat_chunk(template: &[u8], choices: &serde_json::Value, fingerprint: bool) -> Vec<u8> {
    let tree = Tree::parse(template).ok();
    let member = |name: &str| tree.as_ref().and_then(|t| t.get(Tree::ROOT, name).and_then(|n| t.raw(n)));
    let mut chunk = Vec::with_capacity(template.len() + 128);
    let mut put = |name: &str, value: &[u8]| {
        chunk.push(if chunk.is_empty() { b'{' } else { b',' });
        chunk.extend_from_slice(json_tree::encode_string(name).as_bytes());
        chunk.push(b':');
        chunk.extend_from_slice(value);
    };
    put("id", member("id").unwrap_or(br#""chatcmpl-blocked""#));
    put("object", br#""chat.completion.chunk""#);
    put("created", member("created").unwrap_or(b"0"));
    put("model", member("model").unwrap_or(br#""""#));
    if let (true, Some(value)) = (fingerprint, member("system_fingerprint")) {
        put("system_fingerprint", value);
    }
    put("choices", choices.to_string().as_bytes());
    chunk.push(b'}');
    chunk
}
