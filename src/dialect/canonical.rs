//! The canonical request: what a request asks for, in one shape whatever its API (OpenAI Chat
//! Completions, Responses, Embeddings, Anthropic Messages), read in the one strict pass that
//! also validates the body (see `strict`). Each API's members are read where that API puts them;
//! only small values are built (the model, numbers, the stop list, tool names and the tool
//! choice), never the messages, and never a tree of the tools: a 1 MB body costs one walk.
//!
//! The canonical request is for readers (model selection, the usage record, the guardrails'
//! decisions). The text of messages and tools, with byte spans, is read on demand
//! ([`CanonicalRequest::text`]): it costs a walk of every value, which model selection does not
//! need. Rewriters work on the bytes (masking, the model rewrite) or on full values
//! (translation): nothing is ever re-serialised from this.
//!
//! A member of the wrong type is refused with the field named (OpenAI's `param`), as the provider
//! would refuse it; the message names the field and the kinds of value, never the value.
//! `null` is the same as absent.

use std::borrow::Cow;

use serde::de::{MapAccess, SeqAccess};

use super::strict::{self, Leaf, LeafReader, Read, Reader};
use super::text::RequestText;
use super::Api;
use crate::json_tree::JsonError;

/// What a request asks for, read from its body.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalRequest {
    /// The API the body was read as (which members mean what).
    pub api: Api,
    /// Absent on Azure OpenAI, where the deployment in the path names the model.
    pub model: Option<String>,
    pub stream: bool,
    /// The client asked for OpenAI's final usage chunk (Chat's `stream_options.include_usage`).
    pub include_usage: bool,
    /// The most tokens the answer may have: Chat `max_completion_tokens` or the legacy
    /// `max_tokens` (the larger, when both are there), Responses `max_output_tokens`, Anthropic
    /// `max_tokens`. Read by the guardrails' `clamp`.
    pub max_output_tokens: Option<OutputLimit>,
    pub sampling: Sampling,
    /// The tools the request defines, in order. Read by the guardrails' `tools` check.
    pub tools: Vec<Tool>,
    /// No decision reads it yet: read so that every dialect's choice is one value, and refused
    /// when of the wrong type before any copy of the request is made (routed, translated).
    pub tool_choice: Option<ToolChoice>,
}

/// A request's output limit and the member it was read from (which a clamp rewrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    pub tokens: u64,
    pub field: &'static str,
}

impl OutputLimit {
    /// Every member that limits the output in `api`'s requests (Chat has two), for a rewriter
    /// that must bound them all.
    pub fn members(api: Api) -> &'static [&'static str] {
        match api {
            Api::OpenAiChat => &["max_completion_tokens", "max_tokens"],
            Api::OpenAiResponses => &["max_output_tokens"],
            Api::AnthropicMessages => &["max_tokens"],
            Api::OpenAiEmbeddings => &[],
        }
    }
}

/// Sampling parameters, each where its API has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    /// Chat, Responses, Anthropic. Read by the guardrails' `clamp`.
    pub temperature: Option<f64>,
    /// Chat, Responses, Anthropic. No decision reads it yet (type-checked like the rest).
    pub top_p: Option<f64>,
    /// Anthropic. No decision reads it yet (type-checked like the rest).
    pub top_k: Option<u64>,
    /// Chat `stop` (a string or an array of strings), Anthropic `stop_sequences`. No decision
    /// reads it yet (type-checked like the rest).
    pub stop: Vec<String>,
    /// Chat. No decision reads it yet (type-checked like the rest).
    pub seed: Option<i64>,
}

/// A tool a request defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// A function (or custom tool) the client runs, by the name the model calls it by: Chat
    /// `function.name` (`custom.name`; a flat `name`, which some compatible servers take),
    /// Responses and Anthropic `name` (Anthropic's server tools have one too).
    Named(String),
    /// A tool the provider runs that has no name, by its `type` (Responses `web_search`,
    /// `file_search`, `mcp`, …).
    BuiltIn(String),
}

impl Tool {
    /// The name the model calls it by; `None` for built-in tools, which have none.
    pub fn name(&self) -> Option<&str> {
        match self {
            Tool::Named(name) => Some(name),
            Tool::BuiltIn(_) => None,
        }
    }
}

/// Which tool the model must (or may) call, the same across dialects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides: OpenAI `"auto"`, Anthropic `{"type": "auto"}`.
    Auto,
    /// No tool: OpenAI `"none"`, Anthropic `{"type": "none"}`.
    None,
    /// Some tool must be called: OpenAI `"required"`, Anthropic `{"type": "any"}`.
    Required,
    /// This tool must be called: Chat `{"type": "function", "function": {"name"}}`, Responses
    /// `{"type": "function", "name"}`, Anthropic `{"type": "tool", "name"}`.
    Tool(String),
    /// A choice no other variant expresses, by its mode or `type` (OpenAI's `allowed_tools`,
    /// Responses' built-in tool types, a mode this version does not know; empty when an object
    /// had no `type`). The provider judges it.
    Other(String),
}

/// Why a request body could not be read. The message is safe to show the client: it never
/// quotes the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub message: String,
    /// The request field at fault, when there is one (OpenAI's `param`).
    pub param: Option<&'static str>,
}

impl CanonicalRequest {
    /// A request of `api` that asks for nothing in particular.
    pub fn new(api: Api) -> CanonicalRequest {
        CanonicalRequest {
            api,
            model: None,
            stream: false,
            include_usage: false,
            max_output_tokens: None,
            sampling: Sampling::default(),
            tools: Vec::new(),
            tool_choice: None,
        }
    }

    /// The text segments of `body`, the body this request was read from. A walk of every value,
    /// so only for a consumer that needs the text (a token estimate, the guardrails): read it
    /// once and share it.
    pub fn text<'a>(&self, body: &'a [u8]) -> Result<RequestText<'a>, JsonError> {
        RequestText::read(self.api, body)
    }
}

/// Reads a request body of `api` into its canonical request, validating the whole body (valid
/// JSON, an object, no duplicate key at any depth) in the same pass.
pub fn parse_request(api: Api, body: &[u8]) -> Result<CanonicalRequest, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError {
            message: "The request body is empty: send a JSON object with `model` and the input.".to_string(),
            param: None,
        });
    }
    let mut reading = Reading { request: CanonicalRequest::new(api), legacy_max_tokens: None, error: None };
    let is_object = strict::walk(body, &mut reading).map_err(|e| BodyError {
        message: if strict::is_duplicate_key(&e) {
            format!(
                "The request body has a duplicate key in an object (line {} column {}): each key may appear only once.",
                e.line(),
                e.column()
            )
        } else {
            format!("The request body is not valid JSON ({}).", describe_json_error(&e))
        },
        param: None,
    })?;
    if !is_object {
        return Err(BodyError { message: "The request body must be a JSON object.".to_string(), param: None });
    }
    if let Some(error) = reading.error {
        return Err(BodyError { message: error.message(), param: Some(error.param) });
    }
    let mut request = reading.request;
    // Chat's two limits: the larger stands. A provider may read either (OpenAI-compatible
    // servers that predate `max_completion_tokens` read only `max_tokens`), so a bound, such as
    // a guardrail clamp, must hold for the larger.
    if let Some(tokens) = reading.legacy_max_tokens {
        if request.max_output_tokens.is_none_or(|limit| tokens > limit.tokens) {
            request.max_output_tokens = Some(OutputLimit { tokens, field: "max_tokens" });
        }
    }
    Ok(request)
}

/// serde_json's message without the offending text; position only.
fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// The top-level members each API's canonical request reads.
#[derive(Debug, Clone, Copy)]
enum Field {
    Model,
    Stream,
    StreamOptions,
    /// The API's output limit, by its member's name.
    MaxTokens(&'static str),
    /// Chat's deprecated `max_tokens`, used when `max_completion_tokens` is absent.
    LegacyMaxTokens,
    Temperature,
    TopP,
    TopK,
    Stop,
    StopSequences,
    Seed,
    Tools,
    ToolChoice,
}

fn field(api: Api, key: &str) -> Option<Field> {
    use Api::{AnthropicMessages as Anthropic, OpenAiChat as Chat, OpenAiResponses as Responses};
    let generates = api != Api::OpenAiEmbeddings;
    Some(match (api, key) {
        (_, "model") => Field::Model,
        (_, "stream") => Field::Stream,
        (Chat, "stream_options") => Field::StreamOptions,
        (Chat, "max_completion_tokens") => Field::MaxTokens("max_completion_tokens"),
        (Chat, "max_tokens") => Field::LegacyMaxTokens,
        (Responses, "max_output_tokens") => Field::MaxTokens("max_output_tokens"),
        (Anthropic, "max_tokens") => Field::MaxTokens("max_tokens"),
        (_, "temperature") if generates => Field::Temperature,
        (_, "top_p") if generates => Field::TopP,
        (Anthropic, "top_k") => Field::TopK,
        (Chat, "stop") => Field::Stop,
        (Anthropic, "stop_sequences") => Field::StopSequences,
        (Chat, "seed") => Field::Seed,
        (_, "tools") if generates => Field::Tools,
        (_, "tool_choice") if generates => Field::ToolChoice,
        _ => return None,
    })
}

/// The walk's state: the request so far and the first member of the wrong type.
struct Reading {
    request: CanonicalRequest,
    legacy_max_tokens: Option<u64>,
    error: Option<FieldError>,
}

impl Reading {
    /// The value, or the first error (later ones are dropped: the client fixes one at a time).
    fn take<T>(&mut self, read: Result<T, FieldError>) -> Option<T> {
        match read {
            Ok(value) => Some(value),
            Err(error) => {
                self.error.get_or_insert(error);
                None
            }
        }
    }

    /// A top-level scalar member, converted by `convert`.
    fn scalar<'de, A, T>(
        &mut self,
        map: &mut A,
        key: &'static str,
        convert: fn(Leaf<'de>) -> Result<Option<T>, Mismatch>,
    ) -> Result<Option<T>, A::Error>
    where
        A: MapAccess<'de>,
    {
        let leaf = map.next_value_seed(Read(LeafReader))?;
        Ok(self.take(convert(leaf).map_err(|m| m.at(key, key))).flatten())
    }
}

impl strict::Members for Reading {
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let Some(field) = field(self.request.api, key) else { return Ok(false) };
        match field {
            Field::Model => self.request.model = self.scalar(map, "model", string)?,
            Field::Stream => self.request.stream = self.scalar(map, "stream", boolean)?.unwrap_or(false),
            Field::StreamOptions => {
                let read = map.next_value_seed(Read(StreamOptionsReader))?;
                self.request.include_usage = self.take(read).flatten().unwrap_or(false);
            }
            Field::MaxTokens(name) => {
                let tokens = self.scalar(map, name, count)?;
                self.request.max_output_tokens = tokens.map(|tokens| OutputLimit { tokens, field: name });
            }
            Field::LegacyMaxTokens => self.legacy_max_tokens = self.scalar(map, "max_tokens", count)?,
            Field::Temperature => self.request.sampling.temperature = self.scalar(map, "temperature", number)?,
            Field::TopP => self.request.sampling.top_p = self.scalar(map, "top_p", number)?,
            Field::TopK => self.request.sampling.top_k = self.scalar(map, "top_k", count)?,
            Field::Seed => self.request.sampling.seed = self.scalar(map, "seed", integer)?,
            Field::Stop | Field::StopSequences => {
                let (param, one_string) =
                    if matches!(field, Field::Stop) { ("stop", true) } else { ("stop_sequences", false) };
                let read = map.next_value_seed(Read(StringsReader { param, one_string }))?;
                self.request.sampling.stop = self.take(read).unwrap_or_default();
            }
            Field::Tools => {
                let read = map.next_value_seed(Read(ToolsReader { api: self.request.api }))?;
                self.request.tools = self.take(read).unwrap_or_default();
            }
            Field::ToolChoice => {
                let read = map.next_value_seed(Read(ToolChoiceReader { api: self.request.api }))?;
                self.request.tool_choice = self.take(read).flatten();
            }
        }
        Ok(true)
    }
}

/// A member of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldError {
    /// The top-level member (OpenAI's `param`).
    param: &'static str,
    /// Where in it (`tools[2].function.name`).
    path: Cow<'static, str>,
    expected: &'static str,
    found: &'static str,
}

impl FieldError {
    fn message(&self) -> String {
        format!("Invalid type for `{}`: expected {}, got {}.", self.path, self.expected, self.found)
    }
}

/// What a value should have been and what it was.
#[derive(Debug, Clone, Copy)]
struct Mismatch {
    expected: &'static str,
    found: &'static str,
}

impl Mismatch {
    fn at(self, param: &'static str, path: impl Into<Cow<'static, str>>) -> FieldError {
        FieldError { param, path: path.into(), expected: self.expected, found: self.found }
    }
}

fn mismatch<T>(expected: &'static str, leaf: &Leaf<'_>) -> Result<T, Mismatch> {
    Err(Mismatch { expected, found: leaf.kind() })
}

fn string(leaf: Leaf<'_>) -> Result<Option<String>, Mismatch> {
    match leaf {
        Leaf::Null => Ok(None),
        Leaf::Str(s) => Ok(Some(s.into_owned())),
        other => mismatch("a string", &other),
    }
}

fn boolean(leaf: Leaf<'_>) -> Result<Option<bool>, Mismatch> {
    match leaf {
        Leaf::Null => Ok(None),
        Leaf::Bool(b) => Ok(Some(b)),
        other => mismatch("a boolean", &other),
    }
}

fn number(leaf: Leaf<'_>) -> Result<Option<f64>, Mismatch> {
    match leaf {
        Leaf::Null => Ok(None),
        Leaf::Unsigned(n) => Ok(Some(n as f64)),
        Leaf::Signed(n) => Ok(Some(n as f64)),
        Leaf::Float(n) => Ok(Some(n)),
        other => mismatch("a number", &other),
    }
}

/// A whole number written as a float (`100.0`, `1e3`), as lenient servers accept it.
fn whole(n: f64) -> Option<f64> {
    (n.fract() == 0.0 && n.is_finite()).then_some(n)
}

/// A count of tokens: a non-negative integer.
fn count(leaf: Leaf<'_>) -> Result<Option<u64>, Mismatch> {
    const EXPECTED: &str = "a non-negative integer";
    match leaf {
        Leaf::Null => Ok(None),
        Leaf::Unsigned(n) => Ok(Some(n)),
        Leaf::Float(n) => match whole(n).filter(|n| *n >= 0.0 && *n < u64::MAX as f64) {
            Some(n) => Ok(Some(n as u64)),
            None => Err(Mismatch { expected: EXPECTED, found: "a number with a fraction or out of range" }),
        },
        Leaf::Signed(_) => Err(Mismatch { expected: EXPECTED, found: "a negative number" }),
        other => mismatch(EXPECTED, &other),
    }
}

fn integer(leaf: Leaf<'_>) -> Result<Option<i64>, Mismatch> {
    const EXPECTED: &str = "an integer";
    let out_of_range = Mismatch { expected: EXPECTED, found: "a number with a fraction or out of range" };
    match leaf {
        Leaf::Null => Ok(None),
        Leaf::Signed(n) => Ok(Some(n)),
        Leaf::Unsigned(n) => i64::try_from(n).map(Some).map_err(|_| out_of_range),
        Leaf::Float(n) => match whole(n).filter(|n| *n >= i64::MIN as f64 && *n < i64::MAX as f64) {
            Some(n) => Ok(Some(n as i64)),
            None => Err(out_of_range),
        },
        other => mismatch(EXPECTED, &other),
    }
}

/// Chat's `stream_options`: its `include_usage`.
struct StreamOptionsReader;

impl<'de> Reader<'de> for StreamOptionsReader {
    type Value = Result<Option<bool>, FieldError>;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value {
        match leaf {
            Leaf::Null => Ok(None),
            other => mismatch("an object", &other).map_err(|m| m.at("stream_options", "stream_options")),
        }
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut include_usage = Ok(None);
        strict::object(map, |key, map| {
            if key != "include_usage" {
                return Ok(false);
            }
            let leaf = map.next_value_seed(Read(LeafReader))?;
            include_usage = boolean(leaf).map_err(|m| m.at("stream_options", "stream_options.include_usage"));
            Ok(true)
        })?;
        Ok(include_usage)
    }
}

/// A list of strings (Anthropic `stop_sequences`); with `one_string`, a single string is a list
/// of one (Chat `stop`).
struct StringsReader {
    param: &'static str,
    one_string: bool,
}

impl StringsReader {
    fn expected(&self) -> &'static str {
        if self.one_string {
            "a string or an array of strings"
        } else {
            "an array of strings"
        }
    }
}

impl<'de> Reader<'de> for StringsReader {
    type Value = Result<Vec<String>, FieldError>;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value {
        match leaf {
            Leaf::Null => Ok(Vec::new()),
            Leaf::Str(s) if self.one_string => Ok(vec![s.into_owned()]),
            other => mismatch(self.expected(), &other).map_err(|m| m.at(self.param, self.param)),
        }
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut strings = Vec::new();
        let mut error = None;
        let mut index = 0;
        while let Some(leaf) = seq.next_element_seed(Read(LeafReader))? {
            match leaf {
                Leaf::Str(s) => strings.push(s.into_owned()),
                other if error.is_none() => {
                    let m = Mismatch { expected: "a string", found: other.kind() };
                    error = Some(m.at(self.param, format!("{}[{index}]", self.param)));
                }
                _ => {}
            }
            index += 1;
        }
        Ok(error.map_or(Ok(strings), Err))
    }
}

/// `tools`: each tool's name (or built-in type).
struct ToolsReader {
    api: Api,
}

impl<'de> Reader<'de> for ToolsReader {
    type Value = Result<Vec<Tool>, FieldError>;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value {
        match leaf {
            Leaf::Null => Ok(Vec::new()),
            other => mismatch("an array", &other).map_err(|m| m.at("tools", "tools")),
        }
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tools = Vec::new();
        let mut error = None;
        let mut index = 0;
        while let Some(read) = seq.next_element_seed(Read(ToolReader { api: self.api, index }))? {
            match read {
                Ok(Some(tool)) => tools.push(tool),
                Ok(None) => {}
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            index += 1;
        }
        Ok(error.map_or(Ok(tools), Err))
    }
}

/// One tool definition. A tool with neither a name nor a built-in type is left out (its
/// provider refuses it).
struct ToolReader {
    api: Api,
    index: usize,
}

impl<'de> Reader<'de> for ToolReader {
    type Value = Result<Option<Tool>, FieldError>;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value {
        let index = self.index;
        mismatch("an object", &leaf).map_err(|m| m.at("tools", format!("tools[{index}]")))
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let index = self.index;
        let named = read_named(map, self.api, "tools", &format!("tools[{index}]"))?;
        let Named { kind, name } = match named {
            Ok(named) => named,
            Err(error) => return Ok(Err(error)),
        };
        Ok(Ok(match (name, kind) {
            (Some(name), _) => Some(Tool::Named(name)),
            (None, Some(kind)) if !matches!(kind.as_str(), "function" | "custom") => Some(Tool::BuiltIn(kind)),
            _ => None,
        }))
    }
}

/// An object's `type` and the name it gives, wherever its dialect puts it: in Chat, `function`
/// or `custom` hold the name (a flat `name` is taken when they do not); elsewhere `name`.
struct Named {
    kind: Option<String>,
    name: Option<String>,
}

fn read_named<'de, A: MapAccess<'de>>(
    map: A,
    api: Api,
    param: &'static str,
    path: &str,
) -> Result<Result<Named, FieldError>, A::Error> {
    let mut kind = None;
    let mut flat = None;
    let mut nested = None;
    let mut error = None;
    strict::object(map, |key, map| {
        let member = match key {
            "type" => &mut kind,
            "name" => &mut flat,
            "function" | "custom" if api == Api::OpenAiChat => {
                match map.next_value_seed(Read(NameReader))? {
                    Ok(name) => nested = name.or(nested.take()),
                    Err((suffix, m)) => {
                        error.get_or_insert_with(|| m.at(param, format!("{path}.{key}{suffix}")));
                    }
                }
                return Ok(true);
            }
            _ => return Ok(false),
        };
        match string(map.next_value_seed(Read(LeafReader))?) {
            Ok(value) => *member = value,
            Err(m) => {
                error.get_or_insert_with(|| m.at(param, format!("{path}.{key}")));
            }
        }
        Ok(true)
    })?;
    Ok(match error {
        Some(error) => Err(error),
        None => Ok(Named { kind, name: nested.or(flat) }),
    })
}

/// The `name` of Chat's `function` and `custom` objects. An error says where: the object itself
/// (`""`) or its `.name`.
struct NameReader;

impl<'de> Reader<'de> for NameReader {
    type Value = Result<Option<String>, (&'static str, Mismatch)>;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value {
        match leaf {
            Leaf::Null => Ok(None),
            other => mismatch("an object", &other).map_err(|m| ("", m)),
        }
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut name = Ok(None);
        strict::object(map, |key, map| {
            if key != "name" {
                return Ok(false);
            }
            name = string(map.next_value_seed(Read(LeafReader))?).map_err(|m| (".name", m));
            Ok(true)
        })?;
        Ok(name)
    }
}

/// `tool_choice`: OpenAI's mode string or object, Anthropic's object.
struct ToolChoiceReader {
    api: Api,
}

impl<'de> Reader<'de> for ToolChoiceReader {
    type Value = Result<Option<ToolChoice>, FieldError>;

    fn leaf(self, leaf: Leaf<'de>) -> Self::Value {
        let anthropic = self.api == Api::AnthropicMessages;
        match leaf {
            Leaf::Null => Ok(None),
            Leaf::Str(mode) if !anthropic => Ok(Some(match mode.as_ref() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                _ => ToolChoice::Other(mode.into_owned()),
            })),
            other => {
                let expected = if anthropic { "an object" } else { "a string or an object" };
                mismatch(expected, &other).map_err(|m| m.at("tool_choice", "tool_choice"))
            }
        }
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let Named { kind, name } = match read_named(map, self.api, "tool_choice", "tool_choice")? {
            Ok(named) => named,
            Err(error) => return Ok(Err(error)),
        };
        let kind = kind.unwrap_or_default();
        let anthropic = self.api == Api::AnthropicMessages;
        Ok(Ok(Some(match (anthropic, kind.as_str(), name) {
            (true, "auto", _) => ToolChoice::Auto,
            (true, "none", _) => ToolChoice::None,
            (true, "any", _) => ToolChoice::Required,
            (true, "tool", Some(name)) | (false, "function" | "custom", Some(name)) => ToolChoice::Tool(name),
            _ => ToolChoice::Other(kind),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APIS: [Api; 4] = [Api::OpenAiChat, Api::OpenAiResponses, Api::OpenAiEmbeddings, Api::AnthropicMessages];
    const GENERATING: [Api; 3] = [Api::OpenAiChat, Api::OpenAiResponses, Api::AnthropicMessages];

    fn read(api: Api, body: &str) -> CanonicalRequest {
        parse_request(api, body.as_bytes()).unwrap_or_else(|e| panic!("{api:?} {body}: {}", e.message))
    }

    fn refused(api: Api, body: &str) -> BodyError {
        parse_request(api, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn reads_model_stream_and_include_usage() {
        let request = read(Api::OpenAiChat, r#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#);
        assert_eq!(
            request,
            CanonicalRequest {
                model: Some("gpt-4o-mini".into()),
                stream: true,
                ..CanonicalRequest::new(Api::OpenAiChat)
            }
        );
        let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        assert!(read(Api::OpenAiChat, body).include_usage);
        for api in APIS {
            assert_eq!(read(api, r#"{"messages":[{"role":"user","content":"hi"}]}"#), CanonicalRequest::new(api));
            assert_eq!(read(api, r#"{"model":"m","stream":true}"#).model.as_deref(), Some("m"), "{api:?}");
            assert!(read(api, r#"{"model":"m","stream":true}"#).stream, "{api:?}");
        }
        // `stream_options` is Chat's: other APIs leave it to their provider.
        assert!(!read(Api::OpenAiResponses, r#"{"stream_options":{"include_usage":true}}"#).include_usage);
        assert!(parse_request(Api::OpenAiResponses, br#"{"stream_options":{"include_usage":1}}"#).is_ok());
    }

    #[test]
    fn null_is_the_same_as_absent() {
        let body = r#"{"model":null,"stream":null,"stream_options":null,"max_tokens":null,"max_completion_tokens":null,
            "temperature":null,"top_p":null,"stop":null,"seed":null,"tools":null,"tool_choice":null}"#;
        assert_eq!(read(Api::OpenAiChat, body), CanonicalRequest::new(Api::OpenAiChat));
        let body = r#"{"max_tokens":null,"top_k":null,"stop_sequences":null,"tools":null,"tool_choice":null}"#;
        assert_eq!(read(Api::AnthropicMessages, body), CanonicalRequest::new(Api::AnthropicMessages));
    }

    #[test]
    fn empty_and_invalid_bodies_are_errors_that_do_not_quote_the_body() {
        for api in APIS {
            assert!(refused(api, "").message.contains("empty"));
            assert!(refused(api, "  \n").message.contains("empty"));
            let err = refused(api, "{\"model\": \"secret-prompt");
            assert!(err.message.contains("not valid JSON"));
            assert!(!err.message.contains("secret-prompt"));
            assert!(refused(api, "[1]").message.contains("JSON object"));
            assert!(refused(api, "{} trailing").message.contains("not valid JSON"));
            assert_eq!(refused(api, "{} trailing").param, None);
        }
    }

    #[test]
    fn the_output_limit_is_read_where_each_api_puts_it() {
        let limit = |api, body| read(api, body).max_output_tokens.map(|l| (l.tokens, l.field));
        assert_eq!(limit(Api::OpenAiChat, r#"{"max_completion_tokens":100}"#), Some((100, "max_completion_tokens")));
        assert_eq!(limit(Api::OpenAiChat, r#"{"max_tokens":50}"#), Some((50, "max_tokens")));
        // With both, the larger stands, whatever their order: a provider may read either.
        let both = r#"{"max_tokens":50,"max_completion_tokens":100}"#;
        assert_eq!(limit(Api::OpenAiChat, both), Some((100, "max_completion_tokens")));
        let both = r#"{"max_completion_tokens":100,"max_tokens":50}"#;
        assert_eq!(limit(Api::OpenAiChat, both), Some((100, "max_completion_tokens")));
        let both = r#"{"max_completion_tokens":50,"max_tokens":5000}"#;
        assert_eq!(limit(Api::OpenAiChat, both), Some((5000, "max_tokens")));
        assert_eq!(limit(Api::OpenAiResponses, r#"{"max_output_tokens":7}"#), Some((7, "max_output_tokens")));
        assert_eq!(limit(Api::OpenAiResponses, r#"{"max_tokens":7}"#), None, "not a Responses member");
        assert_eq!(limit(Api::AnthropicMessages, r#"{"max_tokens":1024}"#), Some((1024, "max_tokens")));
        assert_eq!(limit(Api::AnthropicMessages, r#"{"max_output_tokens":9}"#), None);
        assert_eq!(limit(Api::OpenAiEmbeddings, r#"{"max_tokens":9}"#), None, "embeddings generate nothing");
        // A whole number written as a float is a count, as lenient servers read it.
        assert_eq!(limit(Api::AnthropicMessages, r#"{"max_tokens":1e3}"#), Some((1000, "max_tokens")));
        for bad in ["-1", "1.5", "\"10\"", "true", "[10]"] {
            let err = refused(Api::AnthropicMessages, &format!(r#"{{"max_tokens":{bad}}}"#));
            assert_eq!(err.param, Some("max_tokens"), "{bad}");
            assert!(err.message.contains("expected a non-negative integer"), "{}", err.message);
        }
        let err = refused(Api::OpenAiChat, r#"{"max_completion_tokens":10,"max_tokens":"ten"}"#);
        assert_eq!(err.param, Some("max_tokens"), "the deprecated member is type-checked too");
    }

    #[test]
    fn sampling_parameters_are_read_where_each_api_has_them() {
        for api in GENERATING {
            let sampling = read(api, r#"{"temperature":0.5,"top_p":1}"#).sampling;
            assert_eq!((sampling.temperature, sampling.top_p), (Some(0.5), Some(1.0)), "{api:?}");
        }
        let embeddings = read(Api::OpenAiEmbeddings, r#"{"temperature":"hot","top_p":[]}"#).sampling;
        assert_eq!(embeddings, Sampling::default(), "not an embeddings member: not read, not judged");

        let anthropic = read(Api::AnthropicMessages, r#"{"top_k":40,"stop_sequences":["\n\nHuman:","END"]}"#).sampling;
        assert_eq!(anthropic.top_k, Some(40));
        assert_eq!(anthropic.stop, ["\n\nHuman:", "END"]);
        assert_eq!(read(Api::OpenAiChat, r#"{"top_k":"x"}"#).sampling.top_k, None, "top_k is Anthropic's");

        let chat = read(Api::OpenAiChat, r#"{"seed":-7,"stop":"END"}"#).sampling;
        assert_eq!((chat.seed, chat.stop), (Some(-7), vec!["END".to_string()]), "stop as a string is a list of one");
        assert_eq!(read(Api::OpenAiChat, r#"{"stop":["a","b"]}"#).sampling.stop, ["a", "b"]);
        assert_eq!(read(Api::OpenAiChat, r#"{"seed":42.0}"#).sampling.seed, Some(42));
        assert!(read(Api::OpenAiResponses, r#"{"seed":"x","stop":5}"#).sampling.stop.is_empty());
    }

    #[test]
    fn wrong_types_are_refused_naming_the_field_and_never_quoting_the_value() {
        let cases: &[(Api, &str, &str, &str)] = &[
            (Api::OpenAiChat, r#"{"model": 42}"#, "model", "`model`: expected a string, got a number"),
            (Api::OpenAiEmbeddings, r#"{"model": ["secret"]}"#, "model", "got an array"),
            (Api::OpenAiChat, r#"{"model": "m", "stream": "secret"}"#, "stream", "expected a boolean, got a string"),
            (
                Api::OpenAiChat,
                r#"{"stream_options": {"include_usage": 1}}"#,
                "stream_options",
                "`stream_options.include_usage`",
            ),
            (Api::OpenAiChat, r#"{"stream_options": "secret"}"#, "stream_options", "expected an object"),
            (Api::OpenAiChat, r#"{"temperature": "secret"}"#, "temperature", "expected a number"),
            (Api::OpenAiResponses, r#"{"top_p": {"secret": 1}}"#, "top_p", "got an object"),
            (Api::AnthropicMessages, r#"{"top_k": -1}"#, "top_k", "got a negative number"),
            (Api::OpenAiChat, r#"{"seed": "secret"}"#, "seed", "expected an integer"),
            (Api::OpenAiChat, r#"{"stop": 5}"#, "stop", "expected a string or an array of strings"),
            (Api::OpenAiChat, r#"{"stop": ["a", 5]}"#, "stop", "`stop[1]`: expected a string, got a number"),
            (
                Api::AnthropicMessages,
                r#"{"stop_sequences": "secret"}"#,
                "stop_sequences",
                "expected an array of strings",
            ),
            (Api::OpenAiResponses, r#"{"tools": {"secret": 1}}"#, "tools", "`tools`: expected an array"),
            (
                Api::OpenAiChat,
                r#"{"tools": [{"type": "function", "function": {"name": "f"}}, "secret"]}"#,
                "tools",
                "`tools[1]`: expected an object",
            ),
            (
                Api::OpenAiChat,
                r#"{"tools": [{"type": "function", "function": {"name": 7}}]}"#,
                "tools",
                "`tools[0].function.name`",
            ),
            (
                Api::OpenAiChat,
                r#"{"tools": [{"type": "function", "function": "secret"}]}"#,
                "tools",
                "`tools[0].function`: expected an object",
            ),
            (Api::AnthropicMessages, r#"{"tools": [{"name": false}]}"#, "tools", "`tools[0].name`: expected a string"),
            (Api::OpenAiResponses, r#"{"tools": [{"type": 3}]}"#, "tools", "`tools[0].type`"),
            (Api::OpenAiChat, r#"{"tool_choice": 1}"#, "tool_choice", "expected a string or an object"),
            (Api::AnthropicMessages, r#"{"tool_choice": "auto"}"#, "tool_choice", "expected an object, got a string"),
            (
                Api::AnthropicMessages,
                r#"{"tool_choice": {"type": "tool", "name": 1}}"#,
                "tool_choice",
                "`tool_choice.name`",
            ),
            (
                Api::OpenAiChat,
                r#"{"tool_choice": {"type": "function", "function": {"name": []}}}"#,
                "tool_choice",
                "`tool_choice.function.name`",
            ),
        ];
        for (api, body, param, message) in cases {
            let err = refused(*api, body);
            assert_eq!(err.param, Some(*param), "{body}");
            assert!(err.message.starts_with("Invalid type for `"), "{}", err.message);
            assert!(err.message.contains(message), "{body}: {}", err.message);
            assert!(!err.message.contains("secret"), "never quotes the body: {}", err.message);
        }
    }

    #[test]
    fn the_first_wrong_member_is_named_and_broken_json_wins_over_wrong_types() {
        let err = refused(Api::OpenAiChat, r#"{"stream": 1, "model": 2}"#);
        assert_eq!(err.param, Some("stream"));
        let err = refused(Api::OpenAiChat, r#"{"model": 2, "messages": [}"#);
        assert_eq!(err.param, None);
        assert!(err.message.contains("not valid JSON"));
        let err = refused(Api::OpenAiChat, r#"{"model": 2, "model": "a"}"#);
        assert!(err.message.contains("duplicate key"), "{}", err.message);
    }

    #[test]
    fn tools_are_named_where_each_api_names_them() {
        let chat = r#"{"tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "custom", "custom": {"name": "grammar"}},
            {"type": "function", "name": "flat"},
            {"type": "function", "function": {"description": "no name"}}]}"#;
        assert_eq!(
            read(Api::OpenAiChat, chat).tools,
            [Tool::Named("get_weather".into()), Tool::Named("grammar".into()), Tool::Named("flat".into())]
        );
        let responses = r#"{"tools": [{"type": "function", "name": "lookup", "parameters": {}},
            {"type": "web_search_preview"}, {"type": "mcp", "server_label": "x"}, {"type": "custom", "name": "g"}]}"#;
        assert_eq!(
            read(Api::OpenAiResponses, responses).tools,
            [
                Tool::Named("lookup".into()),
                Tool::BuiltIn("web_search_preview".into()),
                Tool::BuiltIn("mcp".into()),
                Tool::Named("g".into())
            ]
        );
        let anthropic = r#"{"tools": [{"name": "get_weather", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}"#;
        let tools = read(Api::AnthropicMessages, anthropic).tools;
        assert_eq!(tools, [Tool::Named("get_weather".into()), Tool::Named("web_search".into())]);
        assert_eq!(tools.iter().filter_map(Tool::name).collect::<Vec<_>>(), ["get_weather", "web_search"]);
        assert_eq!(Tool::BuiltIn("mcp".into()).name(), None);
        // Anthropic tools have no `function` wrapper: one there is not read.
        let odd = r#"{"tools": [{"name": "n", "function": 5}]}"#;
        assert_eq!(read(Api::AnthropicMessages, odd).tools, [Tool::Named("n".into())]);
    }

    #[test]
    fn tool_choice_is_one_value_across_dialects() {
        let choice = |api, body: &str| read(api, &format!(r#"{{"tool_choice": {body}}}"#)).tool_choice;
        for api in [Api::OpenAiChat, Api::OpenAiResponses] {
            assert_eq!(choice(api, r#""auto""#), Some(ToolChoice::Auto));
            assert_eq!(choice(api, r#""none""#), Some(ToolChoice::None));
            assert_eq!(choice(api, r#""required""#), Some(ToolChoice::Required));
            assert_eq!(choice(api, r#""sometimes""#), Some(ToolChoice::Other("sometimes".into())));
            assert_eq!(choice(api, r#"{"type": "allowed_tools"}"#), Some(ToolChoice::Other("allowed_tools".into())));
        }
        let chat = r#"{"type": "function", "function": {"name": "get_weather"}}"#;
        assert_eq!(choice(Api::OpenAiChat, chat), Some(ToolChoice::Tool("get_weather".into())));
        let chat = r#"{"type": "custom", "custom": {"name": "grammar"}}"#;
        assert_eq!(choice(Api::OpenAiChat, chat), Some(ToolChoice::Tool("grammar".into())));
        let responses = r#"{"type": "function", "name": "lookup"}"#;
        assert_eq!(choice(Api::OpenAiResponses, responses), Some(ToolChoice::Tool("lookup".into())));
        let built_in = r#"{"type": "web_search_preview"}"#;
        assert_eq!(choice(Api::OpenAiResponses, built_in), Some(ToolChoice::Other("web_search_preview".into())));
        let anthropic = Api::AnthropicMessages;
        assert_eq!(choice(anthropic, r#"{"type": "auto", "disable_parallel_tool_use": true}"#), Some(ToolChoice::Auto));
        assert_eq!(choice(anthropic, r#"{"type": "any"}"#), Some(ToolChoice::Required));
        assert_eq!(choice(anthropic, r#"{"type": "none"}"#), Some(ToolChoice::None));
        assert_eq!(choice(anthropic, r#"{"type": "tool", "name": "f"}"#), Some(ToolChoice::Tool("f".into())));
        assert_eq!(choice(anthropic, r#"{"name": "f"}"#), Some(ToolChoice::Other(String::new())));
        assert_eq!(choice(Api::OpenAiEmbeddings, r#"5"#), None, "embeddings have no tools");
    }

    #[test]
    fn duplicate_keys_are_refused_whichever_copy_a_parser_would_keep() {
        for api in APIS {
            for body in [r#"{"model": "gpt-4.1", "model": "gpt-4o-mini"}"#, r#"{"model": "a", "mo\u0064el": "b"}"#] {
                let err = refused(api, body);
                assert!(err.message.contains("duplicate key"), "{}", err.message);
                assert!(!err.message.contains("gpt-4"), "the message never quotes the body");
                assert_eq!(err.param, None);
            }
            let nested = r#"{"model": "m", "messages": [{"role": "user", "content": "a", "content": "b"}]}"#;
            assert!(refused(api, nested).message.contains("line 1 column"));
        }
        // Inside the members the canonical request reads, too.
        for (api, body) in [
            (Api::OpenAiChat, r#"{"tools": [{"type": "function", "function": {"name": "a", "name": "b"}}]}"#),
            (Api::AnthropicMessages, r#"{"tools": [{"name": "a", "name": "b"}]}"#),
            (Api::AnthropicMessages, r#"{"tool_choice": {"type": "tool", "name": "a", "name": "b"}}"#),
            (Api::OpenAiChat, r#"{"stream_options": {"include_usage": true, "include_usage": false}}"#),
            (Api::OpenAiChat, r#"{"tool_choice": {"type": "function", "function": {"name": "a"}, "type": "none"}}"#),
        ] {
            assert!(refused(api, body).message.contains("duplicate key"), "{body}");
        }
    }

    #[test]
    fn invalid_utf8_inside_strings_is_rejected() {
        assert!(parse_request(Api::OpenAiChat, b"{\"model\": \"\xff\"}")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        let tools = b"{\"tools\": [{\"name\": \"\xff\"}]}";
        assert!(parse_request(Api::AnthropicMessages, tools).unwrap_err().message.contains("not valid JSON"));
    }

    #[test]
    fn a_hundred_thousand_messages_are_read_without_building_them() {
        let messages = vec![r#"{"role":"user","content":"x"}"#; 100_000].join(",");
        let body = format!(r#"{{"model":"m","messages":[{messages}],"stream":true}}"#);
        let request = read(Api::OpenAiChat, &body);
        assert_eq!((request.model.as_deref(), request.stream), (Some("m"), true));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_request(Api::OpenAiChat, body.as_bytes()).is_err());
        let body = format!("{{\"tools\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_request(Api::OpenAiChat, body.as_bytes()).is_err());
    }

    #[test]
    fn the_text_is_read_on_demand_for_the_requests_api() {
        let body = br#"{"system":"s","messages":[{"role":"user","content":"hi"}]}"#;
        let request = parse_request(Api::AnthropicMessages, body).unwrap();
        let text = request.text(body).unwrap();
        let texts: Vec<_> = text.segments().iter().filter_map(|s| text.text(s)).collect();
        assert_eq!(texts, ["s", "hi"]);
    }
}
