//! Deterministic tool calls, shared by both dialects.
//!
//! The mock calls one tool: the one `tool_choice` names, else the first. Its
//! arguments hold each `required` property of the tool's JSON schema set to a
//! fixed value of the right type, so the call validates against the schema.

use serde_json::{Map, Value};

use crate::text::tokens_for_bytes;

#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// Always a JSON object.
    pub arguments: Value,
}

impl ToolCall {
    /// The arguments as the JSON string OpenAI sends (keys in sorted order).
    pub fn arguments_json(&self) -> String {
        self.arguments.to_string()
    }

    /// Output tokens for the call: `ceil((name bytes + arguments JSON bytes) / 4)`,
    /// at least 1.
    pub fn output_tokens(&self) -> u64 {
        let bytes = self.name.len().saturating_add(self.arguments_json().len());
        tokens_for_bytes(bytes).max(1)
    }
}

/// A tool the client offered: its name and its parameter schema, if any.
pub struct OfferedTool<'a> {
    pub name: &'a str,
    pub schema: Option<&'a Value>,
}

/// The call for the tool named `forced` (when it is among `offered`), else for
/// the first offered tool; `None` when nothing was offered.
pub fn choose_call(offered: &[OfferedTool<'_>], forced: Option<&str>) -> Option<ToolCall> {
    let named = forced.and_then(|name| offered.iter().find(|tool| tool.name == name));
    let tool = named.or_else(|| offered.first())?;
    Some(ToolCall { name: tool.name.to_owned(), arguments: arguments_for(tool.schema) })
}

/// An object holding each `required` property of `schema` set to a sample value.
fn arguments_for(schema: Option<&Value>) -> Value {
    let mut arguments = Map::new();
    let Some(schema) = schema else {
        return Value::Object(arguments);
    };
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let property = schema.get("properties").and_then(|props| props.get(name));
        arguments.insert(name.to_owned(), sample_value(property));
    }
    Value::Object(arguments)
}

/// "mock" for strings, 1 for numbers, true for booleans; the first `enum`
/// member when there is one, since "mock" would not validate against it.
fn sample_value(property: Option<&Value>) -> Value {
    let Some(property) = property else {
        return Value::from("mock");
    };
    if let Some(first) = property.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    match schema_type(property) {
        Some("number" | "integer") => Value::from(1),
        Some("boolean") => Value::Bool(true),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => arguments_for(Some(property)),
        Some("null") => Value::Null,
        _ => Value::from("mock"),
    }
}

/// The property's `type`; for a union like `["string", "null"]`, the first
/// non-null member.
fn schema_type(property: &Value) -> Option<&str> {
    match property.get("type")? {
        Value::String(name) => Some(name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).find(|name| *name != "null").or(Some("null")),
        _ => None,
    }
}

/// Splits `text` into at most `pieces` non-empty fragments on char boundaries,
/// the way real APIs stream tool arguments a few bytes at a time.
pub fn fragments(text: &str, pieces: usize) -> Vec<&str> {
    let pieces = pieces.max(1);
    let size = text.len().div_ceil(pieces).max(1);
    let mut result = Vec::with_capacity(pieces);
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut = cut.saturating_add(1);
        }
        let (head, tail) = rest.split_at(cut);
        result.push(head);
        rest = tail;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_fill_required_properties_with_typed_samples() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "note": {"type": ["null", "string"]},
                "optional": {"type": "string"}
            },
            "required": ["city", "days", "metric", "unit", "note"]
        });
        let tools = [OfferedTool { name: "weather", schema: Some(&schema) }];
        let call = choose_call(&tools, None).unwrap();
        assert_eq!(call.arguments, json!({"city": "mock", "days": 1, "metric": true, "unit": "c", "note": "mock"}));
    }

    #[test]
    fn a_forced_tool_wins_over_the_first_one() {
        let tools = [OfferedTool { name: "first", schema: None }, OfferedTool { name: "second", schema: None }];
        assert_eq!(choose_call(&tools, Some("second")).unwrap().name, "second");
        assert_eq!(choose_call(&tools, Some("missing")).unwrap().name, "first");
        assert_eq!(choose_call(&tools, None).unwrap().arguments, json!({}));
        assert!(choose_call(&[], None).is_none());
    }

    #[test]
    fn fragments_rejoin_to_the_original_text() {
        let text = r#"{"city":"mock","é":1}"#;
        let parts = fragments(text, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), text);
        assert_eq!(fragments("{}", 3), ["{", "}"]);
        assert!(fragments("", 3).is_empty());
    }
}
