//! The JSONPath subset guardrail scopes use to reach custom fields of a request or response:
//! `$`, `.name`, `['name']`, `[index]`, `[*]`, `.*` and recursive descent `..name` / `..*`.
//! Filters and slices are refused at load. Evaluated on the span tree, so the strings found can
//! be edited in place. (The full `jsonpath-rust` crate was measured and not taken: see the
//! README's dependency notes.)

use crate::json_tree::{Kind, NodeId, Tree};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    Wildcard,
    /// `..` followed by a key or `*`.
    Descend(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'$') {
            return Err("must start with $".into());
        }
        let mut steps = Vec::new();
        let mut at = 1;
        let name_end = |from: usize| {
            let mut i = from;
            while bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-' || *b >= 0x80) {
                i += 1;
            }
            i
        };
        while at < bytes.len() {
            match (bytes.get(at), bytes.get(at + 1)) {
                (Some(b'.'), Some(b'.')) => {
                    at += 2;
                    if bytes.get(at) == Some(&b'*') {
                        at += 1;
                        steps.push(Step::Descend(None));
                    } else {
                        let end = name_end(at);
                        if end == at {
                            return Err(format!("expected a name after '..' at {at}"));
                        }
                        steps.push(Step::Descend(Some(text.get(at..end).unwrap_or_default().to_string())));
                        at = end;
                    }
                }
                (Some(b'.'), Some(b'*')) => {
                    at += 2;
                    steps.push(Step::Wildcard);
                }
                (Some(b'.'), _) => {
                    let end = name_end(at + 1);
                    if end == at + 1 {
                        return Err(format!("expected a name after '.' at {at}"));
                    }
                    steps.push(Step::Key(text.get(at + 1..end).unwrap_or_default().to_string()));
                    at = end;
                }
                (Some(b'['), _) => {
                    let close = text.get(at..).and_then(|t| t.find(']')).map(|i| at + i).ok_or("unclosed '['")?;
                    let inner = text.get(at + 1..close).unwrap_or_default().trim();
                    let step = if inner == "*" {
                        Step::Wildcard
                    } else if let Ok(index) = inner.parse::<usize>() {
                        Step::Index(index)
                    } else if inner.len() >= 2
                        && ((inner.starts_with('\'') && inner.ends_with('\''))
                            || (inner.starts_with('"') && inner.ends_with('"')))
                    {
                        Step::Key(inner.get(1..inner.len() - 1).unwrap_or_default().to_string())
                    } else {
                        return Err(format!("unsupported selector [{inner}]: use a name, an index or *"));
                    };
                    steps.push(step);
                    at = close + 1;
                }
                _ => return Err(format!("unexpected character at {at}")),
            }
        }
        Ok(JsonPath { steps })
    }

    /// Nodes the path selects.
    pub fn select(&self, tree: &Tree<'_>) -> Vec<NodeId> {
        let mut current = vec![Tree::ROOT];
        for step in &self.steps {
            let mut next = Vec::new();
            for &node in &current {
                match step {
                    Step::Key(key) => next.extend(tree.get(node, key)),
                    Step::Index(index) => {
                        if tree.kind(node) == Some(Kind::Array) {
                            next.extend(tree.children(node).nth(*index));
                        }
                    }
                    Step::Wildcard => next.extend(tree.children(node)),
                    Step::Descend(key) => descend(tree, node, key.as_deref(), &mut next),
                }
            }
            next.sort_unstable();
            next.dedup();
            current = next;
        }
        current
    }
}

fn descend(tree: &Tree<'_>, node: NodeId, key: Option<&str>, out: &mut Vec<NodeId>) {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        for child in tree.children(n) {
            let matches = match key {
                None => true,
                Some(k) => tree.key(child).is_some_and(|name| name == k),
            };
            if matches {
                out.push(child);
            }
            stack.push(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(path: &str, doc: &str) -> Vec<String> {
        let tree = Tree::parse(doc.as_bytes()).unwrap();
        JsonPath::parse(path)
            .unwrap()
            .select(&tree)
            .into_iter()
            .filter_map(|n| tree.str(n).map(|s| s.into_owned()))
            .collect()
    }

    #[test]
    fn selects_keys_indices_wildcards_and_descendants() {
        let doc = r#"{"metadata": {"note": "a", "tags": ["b", "c"]}, "x": {"note": "d"}}"#;
        assert_eq!(strings("$.metadata.note", doc), ["a"]);
        assert_eq!(strings("$['metadata']['tags'][1]", doc), ["c"]);
        assert_eq!(strings("$.metadata.tags[*]", doc), ["b", "c"]);
        assert_eq!(strings("$..note", doc), ["a", "d"]);
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        assert!(JsonPath::parse("metadata").is_err());
        assert!(JsonPath::parse("$.a[?(@.b)]").is_err());
        assert!(JsonPath::parse("$.a[").is_err());
        assert!(JsonPath::parse("$.").is_err());
    }
}
