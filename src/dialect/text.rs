//! Where the text is in each API's request and response bodies: every string a reader may count
//! or a guardrail may read or rewrite, with the part of the body it belongs to, the role that
//! wrote it and its byte span (through the [`Tree`] it was found in).
//!
//! | part | OpenAI Chat | OpenAI Responses | Anthropic Messages |
//! |------|-------------|------------------|--------------------|
//! | `system` | `system` / `developer` messages | `instructions`, `system` / `developer` items | `system` |
//! | `messages` | `content` (string or text parts), `refusal` | `input` (string or message items' text parts) | `text` blocks |
//! | `tool_calls` | `tool_calls[].function.arguments` | `function_call.arguments` | every string in `tool_use.input` |
//! | `tool_results` | `tool` messages | `function_call_output.output` | `tool_result.content` |
//! | `tools` | every string in `tools` (names, descriptions, schemas) | same | same |
//!
//! OpenAI Embeddings: every string of `input` is a `messages` segment (role `user`).
//! Tool results have role `tool` in every dialect; tool calls role `assistant`.
//!
//! Finding the text is a walk of the whole body (a span tree of every value), so it is done only
//! for a consumer that needs it (a token estimate, the guardrails), once per request:
//! [`RequestText`] holds the tree and its segments for all of them.

use std::borrow::Cow;
use std::ops::Range;

use super::Api;
use crate::json_tree::{JsonError, Kind, NodeId, Tree};

/// The part of a body a text belongs to (a guardrail's `scope.parts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Messages,
    System,
    Tools,
    ToolCalls,
    ToolResults,
}

impl Part {
    /// The configuration's name of a part.
    pub fn parse(name: &str) -> Option<Part> {
        Some(match name {
            "messages" => Part::Messages,
            "system" => Part::System,
            "tools" => Part::Tools,
            "tool_calls" => Part::ToolCalls,
            "tool_results" => Part::ToolResults,
            _ => return None,
        })
    }
}

/// Who wrote a text, across dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        Some(match name {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" | "model" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            _ => return None,
        })
    }
}

/// One string of text in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSegment {
    /// The string's node in the tree it was found in (its span, quotes included, is the node's).
    pub node: NodeId,
    pub part: Part,
    pub role: Option<Role>,
    /// The string holds JSON text (tool-call arguments): restored values are JSON-escaped.
    pub json_text: bool,
}

/// Where the text of one body is.
#[derive(Debug, Default)]
pub struct TextLayout {
    pub segments: Vec<TextSegment>,
    /// Messages (or input items) in the body.
    pub messages: u64,
    /// Names of the tools called (a request's history, a response). The tools a request defines
    /// are the canonical request's.
    pub tool_names: Vec<NodeId>,
    /// Tool-call arguments that are JSON text and should parse.
    pub arguments: Vec<NodeId>,
    /// Embeddings input given as token ids (arrays of integers): already tokens, no text.
    pub token_ids: u64,
}

impl TextLayout {
    fn text(&mut self, node: NodeId, part: Part, role: Option<Role>) {
        self.segments.push(TextSegment { node, part, role, json_text: false });
    }

    fn strings(&mut self, tree: &Tree<'_>, node: NodeId, part: Part, role: Option<Role>) {
        let mut found = Vec::new();
        tree.strings_under(node, &mut found);
        for n in found {
            self.text(n, part, role);
        }
    }

    fn arguments(&mut self, node: NodeId) {
        self.segments.push(TextSegment { node, part: Part::ToolCalls, role: Some(Role::Assistant), json_text: true });
        self.arguments.push(node);
    }
}

/// The text of one request body: its span tree and where the text lies in it.
#[derive(Debug)]
pub struct RequestText<'a> {
    tree: Tree<'a>,
    layout: TextLayout,
}

impl<'a> RequestText<'a> {
    /// Walks `body`, a request of `api`, for its text.
    pub fn read(api: Api, body: &'a [u8]) -> Result<RequestText<'a>, JsonError> {
        let tree = Tree::parse(body)?;
        let layout = request_layout(api, &tree);
        Ok(RequestText { tree, layout })
    }

    /// The body the text was read from.
    pub fn body(&self) -> &'a [u8] {
        self.tree.src
    }

    pub fn tree(&self) -> &Tree<'a> {
        &self.tree
    }

    pub fn layout(&self) -> &TextLayout {
        &self.layout
    }

    pub fn segments(&self) -> &[TextSegment] {
        &self.layout.segments
    }

    /// The segment's decoded text; `None` when its string cannot be decoded (invalid UTF-8).
    pub fn text(&self, segment: &TextSegment) -> Option<Cow<'a, str>> {
        self.tree.str(segment.node)
    }

    /// The segment's byte span in the body, quotes included.
    pub fn span(&self, segment: &TextSegment) -> Option<Range<usize>> {
        self.tree.node(segment.node).map(|n| n.start..n.end)
    }
}

fn role_of(tree: &Tree<'_>, message: NodeId) -> Option<Role> {
    tree.get_str(message, "role").and_then(|r| Role::parse(&r))
}

fn is_string(tree: &Tree<'_>, node: Option<NodeId>) -> Option<NodeId> {
    node.filter(|n| tree.kind(*n) == Some(Kind::String))
}

/// Text parts of a content value: a string, or an array of parts with `text`.
fn content(tree: &Tree<'_>, layout: &mut TextLayout, node: NodeId, part: Part, role: Option<Role>) {
    match tree.kind(node) {
        Some(Kind::String) => layout.text(node, part, role),
        Some(Kind::Array) => {
            for item in tree.children(node) {
                if let Some(text) = is_string(tree, tree.get(item, "text")) {
                    layout.text(text, part, role);
                }
                if let Some(refusal) = is_string(tree, tree.get(item, "refusal")) {
                    layout.text(refusal, part, role);
                }
            }
        }
        _ => {}
    }
}

fn part_for(role: Option<Role>) -> Part {
    match role {
        Some(Role::System | Role::Developer) => Part::System,
        Some(Role::Tool) => Part::ToolResults,
        _ => Part::Messages,
    }
}

/// Every string of the tool definitions: names, descriptions, schemas.
fn tools(tree: &Tree<'_>, layout: &mut TextLayout, root: NodeId) {
    if let Some(tools) = tree.get(root, "tools") {
        layout.strings(tree, tools, Part::Tools, None);
    }
}

/// Where the text of a request body is.
fn request_layout(api: Api, tree: &Tree<'_>) -> TextLayout {
    let mut layout = TextLayout::default();
    let root = Tree::ROOT;
    match api {
        Api::OpenAiChat => {
            if let Some(messages) = tree.get(root, "messages") {
                for message in tree.children(messages) {
                    layout.messages += 1;
                    chat_message(tree, &mut layout, message);
                }
            }
            tools(tree, &mut layout, root);
        }
        Api::OpenAiResponses => {
            if let Some(instructions) = is_string(tree, tree.get(root, "instructions")) {
                layout.text(instructions, Part::System, Some(Role::System));
            }
            if let Some(input) = tree.get(root, "input") {
                match tree.kind(input) {
                    Some(Kind::String) => {
                        layout.messages += 1;
                        layout.text(input, Part::Messages, Some(Role::User));
                    }
                    Some(Kind::Array) => {
                        for item in tree.children(input) {
                            layout.messages += 1;
                            responses_item(tree, &mut layout, item);
                        }
                    }
                    _ => {}
                }
            }
            tools(tree, &mut layout, root);
        }
        Api::AnthropicMessages => {
            if let Some(system) = tree.get(root, "system") {
                content(tree, &mut layout, system, Part::System, Some(Role::System));
            }
            if let Some(messages) = tree.get(root, "messages") {
                for message in tree.children(messages) {
                    layout.messages += 1;
                    let role = role_of(tree, message);
                    if let Some(content) = tree.get(message, "content") {
                        anthropic_content(tree, &mut layout, content, role);
                    }
                }
            }
            tools(tree, &mut layout, root);
        }
        Api::OpenAiEmbeddings => {
            if let Some(input) = tree.get(root, "input") {
                embeddings_input(tree, &mut layout, input);
            }
        }
    }
    layout
}

/// `input`: a string, an array of strings, an array of token ids (one input), or an array of
/// arrays of token ids. Only strings are text (and count as messages); token ids are counted.
fn embeddings_input(tree: &Tree<'_>, layout: &mut TextLayout, input: NodeId) {
    match tree.kind(input) {
        Some(Kind::String) => {
            layout.messages += 1;
            layout.text(input, Part::Messages, Some(Role::User));
        }
        Some(Kind::Array) => {
            let mut token_ids = 0;
            for item in tree.children(input) {
                match tree.kind(item) {
                    Some(Kind::String) => {
                        layout.messages += 1;
                        layout.text(item, Part::Messages, Some(Role::User));
                    }
                    Some(Kind::Number) => token_ids += 1,
                    Some(Kind::Array) => {
                        let ids = tree.children(item).filter(|id| tree.kind(*id) == Some(Kind::Number)).count();
                        layout.token_ids += ids as u64;
                    }
                    _ => {}
                }
            }
            layout.token_ids += token_ids;
        }
        _ => {}
    }
}

fn chat_message(tree: &Tree<'_>, layout: &mut TextLayout, message: NodeId) {
    let [role, content_node, refusal, tool_calls, function_call] =
        tree.members(message, ["role", "content", "refusal", "tool_calls", "function_call"]);
    let role = role.and_then(|r| tree.str(r)).and_then(|r| Role::parse(&r));
    if let Some(c) = content_node {
        content(tree, layout, c, part_for(role), role);
    }
    if let Some(refusal) = is_string(tree, refusal) {
        layout.text(refusal, Part::Messages, role);
    }
    if let Some(calls) = tool_calls {
        for call in tree.children(calls) {
            let function = tree.get(call, "function");
            if let Some(name) = is_string(tree, function.and_then(|f| tree.get(f, "name"))) {
                layout.tool_names.push(name);
            }
            if let Some(args) = is_string(tree, function.and_then(|f| tree.get(f, "arguments"))) {
                layout.arguments(args);
            }
        }
    }
    // Legacy `function_call` on assistant messages.
    if let Some(call) = function_call {
        if let Some(args) = is_string(tree, tree.get(call, "arguments")) {
            layout.arguments(args);
        }
    }
}

fn responses_item(tree: &Tree<'_>, layout: &mut TextLayout, item: NodeId) {
    let kind = tree.get_str(item, "type");
    match kind.as_deref() {
        Some("function_call") | Some("custom_tool_call") => {
            if let Some(name) = is_string(tree, tree.get(item, "name")) {
                layout.tool_names.push(name);
            }
            if let Some(args) = is_string(tree, tree.get(item, "arguments")) {
                layout.arguments(args);
            }
            if let Some(input) = is_string(tree, tree.get(item, "input")) {
                layout.text(input, Part::ToolCalls, Some(Role::Assistant));
            }
        }
        Some("function_call_output") | Some("custom_tool_call_output") => {
            if let Some(output) = tree.get(item, "output") {
                content(tree, layout, output, Part::ToolResults, Some(Role::Tool));
            }
        }
        _ => {
            // A message item (`type: "message"` or no type with a role).
            let role = role_of(tree, item);
            if let Some(c) = tree.get(item, "content") {
                content(tree, layout, c, part_for(role), role);
            }
        }
    }
}

fn anthropic_content(tree: &Tree<'_>, layout: &mut TextLayout, node: NodeId, role: Option<Role>) {
    if tree.kind(node) == Some(Kind::String) {
        layout.text(node, Part::Messages, role);
        return;
    }
    for block in tree.children(node) {
        match tree.get_str(block, "type").as_deref() {
            Some("text") => {
                if let Some(text) = is_string(tree, tree.get(block, "text")) {
                    layout.text(text, Part::Messages, role);
                }
            }
            Some("tool_use") | Some("server_tool_use") => {
                if let Some(name) = is_string(tree, tree.get(block, "name")) {
                    layout.tool_names.push(name);
                }
                if let Some(input) = tree.get(block, "input") {
                    layout.strings(tree, input, Part::ToolCalls, Some(Role::Assistant));
                }
            }
            Some("tool_result") => {
                if let Some(c) = tree.get(block, "content") {
                    match tree.kind(c) {
                        Some(Kind::String) => layout.text(c, Part::ToolResults, Some(Role::Tool)),
                        _ => {
                            for inner in tree.children(c) {
                                if let Some(text) = is_string(tree, tree.get(inner, "text")) {
                                    layout.text(text, Part::ToolResults, Some(Role::Tool));
                                }
                            }
                        }
                    }
                }
            }
            // Thinking text is signed by the provider: read, never rewritten (see README).
            _ => {}
        }
    }
}

/// A non-streaming response body: the generated text, tool calls and their arguments.
pub fn response_layout(api: Api, tree: &Tree<'_>) -> TextLayout {
    let mut layout = TextLayout::default();
    let root = Tree::ROOT;
    let assistant = Some(Role::Assistant);
    match api {
        Api::OpenAiChat => {
            if let Some(choices) = tree.get(root, "choices") {
                for choice in tree.children(choices) {
                    if let Some(message) = tree.get(choice, "message") {
                        chat_message(tree, &mut layout, message);
                    }
                }
            }
        }
        Api::OpenAiResponses => {
            if let Some(output) = tree.get(root, "output") {
                for item in tree.children(output) {
                    match tree.get_str(item, "type").as_deref() {
                        Some("message") => {
                            if let Some(c) = tree.get(item, "content") {
                                content(tree, &mut layout, c, Part::Messages, assistant);
                            }
                        }
                        Some("function_call") | Some("custom_tool_call") => responses_item(tree, &mut layout, item),
                        _ => {}
                    }
                }
            }
        }
        Api::AnthropicMessages => {
            if let Some(c) = tree.get(root, "content") {
                anthropic_content(tree, &mut layout, c, assistant);
            }
        }
        Api::OpenAiEmbeddings => {}
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(api: Api, body: &str) -> Vec<(Part, Option<Role>, String)> {
        let text = RequestText::read(api, body.as_bytes()).unwrap();
        text.segments().iter().map(|s| (s.part, s.role, text.text(s).unwrap().into_owned())).collect()
    }

    #[test]
    fn spans_point_at_the_strings_in_the_body_and_text_is_decoded() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9 \"ok\""}]}"#;
        let text = RequestText::read(Api::OpenAiChat, body).unwrap();
        let [segment] = text.segments() else { panic!("one segment") };
        let span = text.span(segment).unwrap();
        assert_eq!(&body[span], br#""caf\u00e9 \"ok\"""#);
        assert_eq!(text.text(segment).unwrap(), "café \"ok\"");
        assert_eq!((segment.part, segment.role), (Part::Messages, Some(Role::User)));
        assert_eq!(text.body(), &body[..]);
    }

    #[test]
    fn each_api_has_its_text_where_its_documentation_puts_it() {
        let anthropic = r#"{"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"hi"},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"q":"x"}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"42"}]}],
            "tools":[{"name":"f","input_schema":{"type":"object"}}]}"#;
        assert_eq!(
            segments(Api::AnthropicMessages, anthropic),
            [
                (Part::System, Some(Role::System), "Be brief.".into()),
                (Part::Messages, Some(Role::User), "hi".into()),
                (Part::ToolCalls, Some(Role::Assistant), "x".into()),
                (Part::ToolResults, Some(Role::Tool), "42".into()),
                (Part::Tools, None, "f".into()),
                (Part::Tools, None, "object".into()),
            ]
        );
        let responses = r#"{"instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},
            {"type":"function_call_output","call_id":"c","output":"42"}]}"#;
        assert_eq!(
            segments(Api::OpenAiResponses, responses),
            [
                (Part::System, Some(Role::System), "Be brief.".into()),
                (Part::Messages, Some(Role::User), "hi".into()),
                (Part::ToolResults, Some(Role::Tool), "42".into()),
            ]
        );
        let chat = r#"{"messages":[{"role":"system","content":"s"},{"role":"assistant","content":null,
            "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#;
        let text = RequestText::read(Api::OpenAiChat, chat.as_bytes()).unwrap();
        assert_eq!(text.layout().messages, 2);
        assert_eq!(text.layout().arguments.len(), 1);
        assert!(text.segments().iter().any(|s| s.json_text && s.part == Part::ToolCalls));
    }

    #[test]
    fn embeddings_input_is_text_or_counted_token_ids() {
        assert_eq!(
            segments(Api::OpenAiEmbeddings, r#"{"input":"one"}"#),
            [(Part::Messages, Some(Role::User), "one".into())]
        );
        let text = RequestText::read(Api::OpenAiEmbeddings, br#"{"input":["a","b"]}"#).unwrap();
        assert_eq!((text.segments().len(), text.layout().messages, text.layout().token_ids), (2, 2, 0));
        let text = RequestText::read(Api::OpenAiEmbeddings, br#"{"input":[1,2,3]}"#).unwrap();
        assert_eq!((text.segments().len(), text.layout().token_ids), (0, 3));
        let text = RequestText::read(Api::OpenAiEmbeddings, br#"{"input":[[1,2],[3]]}"#).unwrap();
        assert_eq!(text.layout().token_ids, 3);
    }

    #[test]
    fn a_body_that_is_not_json_has_no_text() {
        assert!(RequestText::read(Api::OpenAiChat, b"{\"messages\": [").is_err());
    }
}
