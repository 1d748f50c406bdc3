//! OpenAI Chat Completions wire types, fields in the order the real API sends
//! them. `()` serializes as JSON `null`, for fields the API always sends as null.

use serde::Serialize;

#[derive(Serialize)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<&'a Usage>,
    pub service_tier: &'static str,
    pub system_fingerprint: &'static str,
}

#[derive(Serialize)]
pub struct Choice<'a> {
    pub index: u32,
    pub message: Message<'a>,
    pub logprobs: (),
    pub finish_reason: &'static str,
}

#[derive(Serialize)]
pub struct Message<'a> {
    pub role: &'static str,
    /// Null when the reply is a tool call.
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<[ToolCall<'a>; 1]>,
    pub refusal: (),
    pub annotations: [(); 0],
}

#[derive(Serialize)]
pub struct ToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: Function<'a>,
}

#[derive(Serialize)]
pub struct Function<'a> {
    pub name: &'a str,
    /// A JSON document, as a string.
    pub arguments: &'a str,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Includes `reasoning_tokens`.
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// A subset of `prompt_tokens`.
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct CompletionTokensDetails {
    /// A subset of `completion_tokens`.
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
pub struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub service_tier: &'static str,
    pub system_fingerprint: &'static str,
    pub choices: &'a [ChunkChoice<'a>],
    /// Absent unless `stream_options.include_usage`; then `null` on every
    /// chunk except the last, usage-only one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: (),
    pub finish_reason: Option<&'static str>,
}

/// Only the fields a given chunk carries are present.
#[derive(Serialize, Default)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// `Some(None)` is an explicit `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    /// `Some(())` is an explicit `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<()>,
}

#[derive(Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Serialize)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: &'a [Model],
}

#[derive(Serialize)]
pub struct Model {
    pub id: &'static str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
