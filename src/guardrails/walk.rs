//! Where the text is in each API's request and response bodies: every string a guardrail may
//! read or rewrite, with the part of the body it belongs to and the role that wrote it.
//!
//! | part | OpenAI Chat | OpenAI Responses | Anthropic Messages |
//! |------|-------------|------------------|--------------------|
//! | `system` | `system` / `developer` messages | `instructions`, `system` / `developer` items | `system` |
//! | `messages` | `content` (string or text parts), `refusal` | `input` (string or message items' text parts) | `text` and `thinking` blocks |
//! | `tool_calls` | `tool_calls[].function.arguments` | `function_call.arguments` | every string in `tool_use.input` |
//! | `tool_results` | `tool` messages | `function_call_output.output` | `tool_result.content` |
//! | `tools` | every string in `tools` (names, descriptions, schemas) | same | same |
//!
//! Tool results have role `tool` in every dialect; tool calls role `assistant`.

use super::{Part, Role};
use crate::dialect::Api;
use crate::json_tree::{Kind, NodeId, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextUnit {
    pub node: NodeId,
    pub part: Part,
    pub role: Option<Role>,
    /// The string holds JSON text (tool-call arguments): restored values are JSON-escaped.
    pub json_text: bool,
}

#[derive(Debug, Default)]
pub struct Shape {
    pub texts: Vec<TextUnit>,
    pub messages: u64,
    /// Tool names: defined in `tools` (request) or called (history, response).
    pub tool_names: Vec<NodeId>,
    /// Tool-call arguments that are JSON text and should parse.
    pub arguments: Vec<NodeId>,
}

impl Shape {
    fn text(&mut self, node: NodeId, part: Part, role: Option<Role>) {
        self.texts.push(TextUnit { node, part, role, json_text: false });
    }

    fn strings(&mut self, tree: &Tree<'_>, node: NodeId, part: Part, role: Option<Role>) {
        let mut found = Vec::new();
        tree.strings_under(node, &mut found);
        for n in found {
            self.text(n, part, role);
        }
    }

    fn arguments(&mut self, node: NodeId) {
        self.texts.push(TextUnit { node, part: Part::ToolCalls, role: Some(Role::Assistant), json_text: true });
        self.arguments.push(node);
    }
}

fn role_of(tree: &Tree<'_>, message: NodeId) -> Option<Role> {
    tree.get_str(message, "role").and_then(|r| Role::parse(&r))
}

fn is_string(tree: &Tree<'_>, node: Option<NodeId>) -> Option<NodeId> {
    node.filter(|n| tree.kind(*n) == Some(Kind::String))
}

/// Text parts of a content value: a string, or an array of parts with `text`.
fn content(tree: &Tree<'_>, shape: &mut Shape, node: NodeId, part: Part, role: Option<Role>) {
    match tree.kind(node) {
        Some(Kind::String) => shape.text(node, part, role),
        Some(Kind::Array) => {
            for item in tree.children(node) {
                if let Some(text) = is_string(tree, tree.get(item, "text")) {
                    shape.text(text, part, role);
                }
                if let Some(refusal) = is_string(tree, tree.get(item, "refusal")) {
                    shape.text(refusal, part, role);
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

fn tools(tree: &Tree<'_>, shape: &mut Shape, root: NodeId) {
    let Some(tools) = tree.get(root, "tools") else { return };
    shape.strings(tree, tools, Part::Tools, None);
    for tool in tree.children(tools) {
        // Chat: {"type":"function","function":{"name"}}; Responses and Anthropic: {"name"}.
        let name = tree.get(tool, "function").and_then(|f| tree.get(f, "name")).or_else(|| tree.get(tool, "name"));
        if let Some(name) = is_string(tree, name) {
            shape.tool_names.push(name);
        }
    }
}

pub fn request(api: Api, tree: &Tree<'_>) -> Shape {
    let mut shape = Shape::default();
    let root = Tree::ROOT;
    match api {
        Api::OpenAiChat => {
            if let Some(messages) = tree.get(root, "messages") {
                for message in tree.children(messages) {
                    shape.messages += 1;
                    chat_message(tree, &mut shape, message);
                }
            }
            tools(tree, &mut shape, root);
        }
        Api::OpenAiResponses => {
            if let Some(instructions) = is_string(tree, tree.get(root, "instructions")) {
                shape.text(instructions, Part::System, Some(Role::System));
            }
            if let Some(input) = tree.get(root, "input") {
                match tree.kind(input) {
                    Some(Kind::String) => {
                        shape.messages += 1;
                        shape.text(input, Part::Messages, Some(Role::User));
                    }
                    Some(Kind::Array) => {
                        for item in tree.children(input) {
                            shape.messages += 1;
                            responses_item(tree, &mut shape, item);
                        }
                    }
                    _ => {}
                }
            }
            tools(tree, &mut shape, root);
        }
        Api::AnthropicMessages => {
            if let Some(system) = tree.get(root, "system") {
                content(tree, &mut shape, system, Part::System, Some(Role::System));
            }
            if let Some(messages) = tree.get(root, "messages") {
                for message in tree.children(messages) {
                    shape.messages += 1;
                    let role = role_of(tree, message);
                    if let Some(content) = tree.get(message, "content") {
                        anthropic_content(tree, &mut shape, content, role);
                    }
                }
            }
            tools(tree, &mut shape, root);
        }
        Api::OpenAiEmbeddings => {
            if let Some(input) = tree.get(root, "input") {
                match tree.kind(input) {
                    Some(Kind::String) => {
                        shape.messages += 1;
                        shape.text(input, Part::Messages, Some(Role::User));
                    }
                    Some(Kind::Array) => {
                        for item in tree.children(input) {
                            if tree.kind(item) == Some(Kind::String) {
                                shape.messages += 1;
                                shape.text(item, Part::Messages, Some(Role::User));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    shape
}

fn chat_message(tree: &Tree<'_>, shape: &mut Shape, message: NodeId) {
    let role = role_of(tree, message);
    if let Some(c) = tree.get(message, "content") {
        content(tree, shape, c, part_for(role), role);
    }
    if let Some(refusal) = is_string(tree, tree.get(message, "refusal")) {
        shape.text(refusal, Part::Messages, role);
    }
    if let Some(calls) = tree.get(message, "tool_calls") {
        for call in tree.children(calls) {
            let function = tree.get(call, "function");
            if let Some(name) = is_string(tree, function.and_then(|f| tree.get(f, "name"))) {
                shape.tool_names.push(name);
            }
            if let Some(args) = is_string(tree, function.and_then(|f| tree.get(f, "arguments"))) {
                shape.arguments(args);
            }
        }
    }
    // Legacy `function_call` on assistant messages.
    if let Some(call) = tree.get(message, "function_call") {
        if let Some(args) = is_string(tree, tree.get(call, "arguments")) {
            shape.arguments(args);
        }
    }
}

fn responses_item(tree: &Tree<'_>, shape: &mut Shape, item: NodeId) {
    let kind = tree.get_str(item, "type");
    match kind.as_deref() {
        Some("function_call") | Some("custom_tool_call") => {
            if let Some(name) = is_string(tree, tree.get(item, "name")) {
                shape.tool_names.push(name);
            }
            if let Some(args) = is_string(tree, tree.get(item, "arguments")) {
                shape.arguments(args);
            }
            if let Some(input) = is_string(tree, tree.get(item, "input")) {
                shape.text(input, Part::ToolCalls, Some(Role::Assistant));
            }
        }
        Some("function_call_output") | Some("custom_tool_call_output") => {
            if let Some(output) = tree.get(item, "output") {
                content(tree, shape, output, Part::ToolResults, Some(Role::Tool));
            }
        }
        _ => {
            // A message item (`type: "message"` or no type with a role).
            let role = role_of(tree, item);
            if let Some(c) = tree.get(item, "content") {
                content(tree, shape, c, part_for(role), role);
            }
        }
    }
}

fn anthropic_content(tree: &Tree<'_>, shape: &mut Shape, node: NodeId, role: Option<Role>) {
    if tree.kind(node) == Some(Kind::String) {
        shape.text(node, Part::Messages, role);
        return;
    }
    for block in tree.children(node) {
        match tree.get_str(block, "type").as_deref() {
            Some("text") => {
                if let Some(text) = is_string(tree, tree.get(block, "text")) {
                    shape.text(text, Part::Messages, role);
                }
            }
            Some("tool_use") | Some("server_tool_use") => {
                if let Some(name) = is_string(tree, tree.get(block, "name")) {
                    shape.tool_names.push(name);
                }
                if let Some(input) = tree.get(block, "input") {
                    shape.strings(tree, input, Part::ToolCalls, Some(Role::Assistant));
                }
            }
            Some("tool_result") => {
                if let Some(c) = tree.get(block, "content") {
                    match tree.kind(c) {
                        Some(Kind::String) => shape.text(c, Part::ToolResults, Some(Role::Tool)),
                        _ => {
                            for inner in tree.children(c) {
                                if let Some(text) = is_string(tree, tree.get(inner, "text")) {
                                    shape.text(text, Part::ToolResults, Some(Role::Tool));
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
pub fn response(api: Api, tree: &Tree<'_>) -> Shape {
    let mut shape = Shape::default();
    let root = Tree::ROOT;
    let assistant = Some(Role::Assistant);
    match api {
        Api::OpenAiChat => {
            if let Some(choices) = tree.get(root, "choices") {
                for choice in tree.children(choices) {
                    if let Some(message) = tree.get(choice, "message") {
                        chat_message(tree, &mut shape, message);
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
                                content(tree, &mut shape, c, Part::Messages, assistant);
                            }
                        }
                        Some("function_call") | Some("custom_tool_call") => responses_item(tree, &mut shape, item),
                        _ => {}
                    }
                }
            }
        }
        Api::AnthropicMessages => {
            if let Some(c) = tree.get(root, "content") {
                anthropic_content(tree, &mut shape, c, assistant);
            }
        }
        Api::OpenAiEmbeddings => {}
    }
    shape
}
