//! OpenAI Responses wire types: the response object, its output items and usage, and the
//! streaming events, with the fields the real API sends (`()` serializes as JSON `null`).

use serde::Serialize;
use serde_json::Value;

/// A response object: the whole answer, and the `response` of the lifecycle events.
#[derive(Serialize)]
pub struct ResponseObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    /// `in_progress`, `completed` or `incomplete`.
    pub status: &'static str,
    pub error: (),
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's, echoed back as the real API does.
    pub instructions: Option<&'a Value>,
    pub max_output_tokens: Option<u64>,
    pub model: &'a str,
    pub output: &'a [OutputItem<'a>],
    pub parallel_tool_calls: bool,
    pub previous_response_id: (),
    pub reasoning: Reasoning,
    pub store: bool,
    pub temperature: f64,
    pub text: TextConfig,
    pub tool_choice: &'a Value,
    pub tools: &'a Value,
    pub top_p: f64,
    pub truncation: &'static str,
    /// `null` until the response is done, and under the `omit-usage` fault.
    pub usage: Option<&'a Usage>,
    pub user: (),
    pub metadata: EmptyObject,
}

#[derive(Serialize)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Serialize)]
pub struct Reasoning {
    pub effort: (),
    pub summary: (),
}

#[derive(Serialize)]
pub struct TextConfig {
    pub format: TextFormat,
}

#[derive(Serialize)]
pub struct TextFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Serializes as `{}`.
#[derive(Serialize)]
pub struct EmptyObject {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem<'a> {
    Message { id: &'a str, status: &'static str, role: &'static str, content: &'a [OutputText<'a>] },
    FunctionCall { id: &'a str, status: &'static str, arguments: &'a str, call_id: &'a str, name: &'a str },
}

/// An `output_text` content part.
#[derive(Serialize)]
pub struct OutputText<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub annotations: [(); 0],
    pub logprobs: [(); 0],
    pub text: &'a str,
}

impl<'a> OutputText<'a> {
    pub fn new(text: &'a str) -> Self {
        OutputText { kind: "output_text", annotations: [], logprobs: [], text }
    }
}

/// Responses usage: `input_tokens` include `cached_tokens`, `output_tokens` include
/// `reasoning_tokens`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
    /// Always 0: the mock never writes a cache on this API (the SDK's type has the field).
    pub cache_write_tokens: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

/// A streaming event; its `type` is also the SSE `event:` name. `sequence_number` is added
/// when the event is framed.
#[derive(Serialize)]
#[serde(tag = "type")]
pub enum Event<'a> {
    #[serde(rename = "response.created")]
    Created { response: &'a ResponseObject<'a> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: &'a ResponseObject<'a> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: u32, item: &'a OutputItem<'a> },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded { item_id: &'a str, output_index: u32, content_index: u32, part: &'a OutputText<'a> },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta { item_id: &'a str, output_index: u32, content_index: u32, delta: &'a str, logprobs: [(); 0] },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone { item_id: &'a str, output_index: u32, content_index: u32, text: &'a str, logprobs: [(); 0] },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone { item_id: &'a str, output_index: u32, content_index: u32, part: &'a OutputText<'a> },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta { item_id: &'a str, output_index: u32, delta: &'a str },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone { item_id: &'a str, output_index: u32, name: &'a str, arguments: &'a str },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: u32, item: &'a OutputItem<'a> },
    #[serde(rename = "response.completed")]
    Completed { response: &'a ResponseObject<'a> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: &'a ResponseObject<'a> },
}

impl Event<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Created { .. } => "response.created",
            Event::InProgress { .. } => "response.in_progress",
            Event::OutputItemAdded { .. } => "response.output_item.added",
            Event::ContentPartAdded { .. } => "response.content_part.added",
            Event::OutputTextDelta { .. } => "response.output_text.delta",
            Event::OutputTextDone { .. } => "response.output_text.done",
            Event::ContentPartDone { .. } => "response.content_part.done",
            Event::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Event::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            Event::OutputItemDone { .. } => "response.output_item.done",
            Event::Completed { .. } => "response.completed",
            Event::Incomplete { .. } => "response.incomplete",
        }
    }
}
