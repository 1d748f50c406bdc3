//! Request-side estimate of an OpenAI Chat Completions request's prompt tokens, before the
//! provider reports them: OpenAI's published counting rules for messages (the cookbook's
//! `num_tokens_from_messages`), the widely used formula for tool definitions (the cookbook's
//! `num_tokens_for_tools`), and the vision guide's tile rule for images.

use serde_json::{Map, Value};

use super::image::{self, TileCost};
use super::{for_model, Encoding, Exactness, TokenCounter};

/// `<|start|>{role}<|message|>…<|end|>` around every message.
const TOKENS_PER_MESSAGE: u64 = 3;
/// A `name` on a message.
const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEstimate {
    /// Prompt tokens: messages + tools + images.
    pub total: u64,
    /// Message text and per-message overhead, reply priming included.
    pub messages: u64,
    /// Tool (function) definitions.
    pub tools: u64,
    /// Image parts.
    pub images: u64,
    /// Exact when the model's tokenizer is exact and every part was counted by a published rule:
    /// no tools (their formula is a fit), no image of unknown size, no tool calls or audio.
    pub exactness: Exactness,
    pub counter: TokenCounter,
}

/// Estimates the prompt tokens of a Chat Completions request body. The model is read from the
/// body (an unknown or missing model gets the unknown-model approximation).
pub fn estimate_chat_request(request: &Value) -> ChatEstimate {
    estimate(request, Counting::Tokens)
}

/// The most prompt tokens [`estimate_chat_request`] can find in `request`, without counting:
/// the same rules, with every text's bytes for its tokens (see [`TokenCounter::at_most`]).
pub fn chat_request_at_most(request: &Value) -> u64 {
    estimate(request, Counting::AtMost).total
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    Tokens,
    AtMost,
}

fn estimate(request: &Value, counting: Counting) -> ChatEstimate {
    let model = request.get("model").and_then(Value::as_str).unwrap_or("");
    let counter = for_model(model);
    let mut estimate = Estimator { counter, counting, exact: counter.exactness() == Exactness::Exact, images: 0 };
    let messages = match request.get("messages").and_then(Value::as_array) {
        Some(messages) => messages.iter().map(|m| estimate.message(m, tile_cost(model))).sum::<u64>() + REPLY_PRIMING,
        None => 0,
    };
    let tools = estimate.tools(request);
    if request.pointer("/response_format/json_schema").is_some() {
        estimate.exact = false; // structured-output schemas add tokens no rule describes
    }
    ChatEstimate {
        total: messages + tools + estimate.images,
        messages,
        tools,
        images: estimate.images,
        exactness: if estimate.exact { Exactness::Exact } else { Exactness::Approximate },
        counter,
    }
}

/// Image token prices differ by model (OpenAI's vision guide).
fn tile_cost(model: &str) -> TileCost {
    let name = model.to_ascii_lowercase();
    let name = name.rsplit('/').next().unwrap_or(&name);
    if name.starts_with("gpt-4o-mini") {
        image::GPT_4O_MINI
    } else if name.starts_with("o1") || name.starts_with("o3") {
        image::O1_O3
    } else {
        image::STANDARD
    }
}

struct Estimator {
    counter: TokenCounter,
    counting: Counting,
    exact: bool,
    images: u64,
}

impl Estimator {
    fn count(&self, text: &str) -> u64 {
        match self.counting {
            Counting::Tokens => self.counter.count(text),
            Counting::AtMost => self.counter.at_most(text.len()),
        }
    }

    fn text(&self, value: &Value) -> u64 {
        value.as_str().map_or(0, |text| self.count(text))
    }

    /// One message: overhead, every string field (role, content, name…) and content parts.
    fn message(&mut self, message: &Value, cost: TileCost) -> u64 {
        let Some(fields) = message.as_object() else {
            self.exact = false;
            return TOKENS_PER_MESSAGE;
        };
        let mut tokens = TOKENS_PER_MESSAGE;
        for (key, value) in fields {
            tokens += match (key.as_str(), value) {
                (_, Value::String(text)) => self.count(text) + u64::from(key == "name") * TOKENS_PER_NAME,
                ("content", Value::Array(parts)) => parts.iter().map(|part| self.part(part, cost)).sum(),
                (_, Value::Null) => 0,
                // tool_calls, function_call, audio: rendered in a format OpenAI does not publish.
                (_, other) => {
                    self.exact = false;
                    self.strings(other)
                }
            };
        }
        tokens
    }

    /// A content part: text counts as text; an image by the tile rule; anything else by its strings.
    fn part(&mut self, part: &Value, cost: TileCost) -> u64 {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => self.text(part.get("text").unwrap_or(&Value::Null)),
            Some("image_url") => {
                let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                let detail = part.pointer("/image_url/detail").and_then(Value::as_str).unwrap_or("auto");
                let size = image::data_url_size(url);
                if size.is_none() && detail != "low" {
                    self.exact = false;
                }
                self.images += image::tokens(cost, detail, size.unwrap_or(image::UNKNOWN_SIZE));
                0
            }
            _ => {
                self.exact = false;
                self.strings(part)
            }
        }
    }

    /// Every string inside `value`, counted as text: the fallback for parts without a rule.
    fn strings(&self, value: &Value) -> u64 {
        match value {
            Value::String(text) => self.count(text),
            Value::Array(items) => items.iter().map(|item| self.strings(item)).sum(),
            Value::Object(fields) => fields.values().map(|item| self.strings(item)).sum(),
            _ => 0,
        }
    }

    /// `tools` (or the legacy `functions`) by the cookbook's formula, fitted to gpt-4o and gpt-4.
    fn tools(&mut self, request: &Value) -> u64 {
        let functions: Vec<&Map<String, Value>> = match (request.get("tools"), request.get("functions")) {
            (Some(Value::Array(tools)), _) => {
                tools.iter().filter_map(|t| t.get("function").and_then(Value::as_object)).collect()
            }
            (_, Some(Value::Array(functions))) => functions.iter().filter_map(Value::as_object).collect(),
            _ => Vec::new(),
        };
        if functions.is_empty() {
            return 0;
        }
        self.exact = false;
        // gpt-4o-era models open each function with 7 tokens, gpt-4 and gpt-3.5 with 10.
        let func_init = if self.counter.encoding() == Some(Encoding::Cl100k) { 10 } else { 7 };
        let (prop_init, prop_key, enum_item, func_end): (u64, u64, u64, u64) = (3, 3, 3, 12);
        let enum_init_saving = 3; // the formula's enum_init is -3
        let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let mut tokens = func_end;
        for function in functions {
            let description = str_of(function.get("description"));
            let line =
                format!("{}:{}", str_of(function.get("name")), description.strip_suffix('.').unwrap_or(&description));
            tokens += func_init + self.count(&line);
            let Some(properties) =
                function.get("parameters").and_then(|p| p.get("properties")).and_then(Value::as_object)
            else {
                continue;
            };
            if !properties.is_empty() {
                tokens += prop_init;
            }
            for (name, property) in properties {
                tokens += prop_key;
                if let Some(items) = property.get("enum").and_then(Value::as_array) {
                    let values: u64 = items.iter().map(|item| enum_item + self.strings(item)).sum();
                    tokens = (tokens + values).saturating_sub(enum_init_saving);
                }
                let description = str_of(property.get("description"));
                let kind = str_of(property.get("type"));
                let line = format!("{name}:{kind}:{}", description.strip_suffix('.').unwrap_or(&description));
                tokens += self.count(&line);
            }
        }
        tokens
    }
}
