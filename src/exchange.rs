//! One request/response exchange: the state machine the host layer drives, callback by callback.
//!
//! Request side: recognise an LLM API call from method and path, buffer its body (the proxy
//! holds it while we answer `Pause`), read `model` and `stream`, and reject what cannot be read
//! with an error in the client's dialect. Response side: streams pass through chunk by chunk;
//! a non-streaming JSON answer is held until complete so its usage can be priced and reported
//! in response headers, which is only possible while the headers themselves are still held.

use std::rc::Rc;

use crate::config::Policy;
use crate::dialect::openai::{self, ChatRequest};
use crate::dialect::Api;
use crate::host_io::{Flow, HostIo, HostKind};
use crate::names::{self, Counter};
use crate::reply::{self, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestPhase {
    AwaitingHeaders,
    /// Not an API call the filter inspects: every later callback continues.
    Ignored,
    /// Waiting for the whole body; `size` is what the proxy holds so far.
    ReadingBody {
        size: usize,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponsePhase {
    AwaitingHeaders,
    Ignored,
    /// SSE: every chunk goes on as it arrives.
    Streaming,
    /// Headers held; waiting for the whole JSON body.
    Buffering {
        size: usize,
    },
    Done,
}

/// The per-request state machine. Created per HTTP stream by the host layer.
pub struct Exchange {
    id: u32,
    policy: Rc<Policy>,
    request: RequestPhase,
    response: ResponsePhase,
    chat: Option<ChatRequest>,
    replied_locally: bool,
}

impl Exchange {
    pub fn new(id: u32, policy: Rc<Policy>) -> Self {
        Exchange {
            id,
            policy,
            request: RequestPhase::AwaitingHeaders,
            response: ResponsePhase::AwaitingHeaders,
            chat: None,
            replied_locally: false,
        }
    }

    /// The parsed request, once its body has been read.
    pub fn chat_request(&self) -> Option<&ChatRequest> {
        self.chat.as_ref()
    }

    pub fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        let method = io.request_header(":method").unwrap_or_default();
        let path = io.request_header(":path").unwrap_or_default();
        if Api::detect(&method, &path).is_none() {
            self.request = RequestPhase::Ignored;
            return Flow::Continue;
        }
        if end_of_stream {
            return self.finish_request_body(io, 0);
        }
        let declared = io.request_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.policy.max_request_body_bytes as u64) {
            return self.reject_too_large(io);
        }
        // Hold the headers too: nothing reaches the upstream until the body has been judged.
        // (Envoy needs `allow_on_headers_stop_iteration: true` for this; see envoy/envoy.yaml.)
        self.request = RequestPhase::ReadingBody { size: 0 };
        Flow::Pause
    }

    /// `body_size` is the size of the body the proxy holds for us: cumulative while we pause
    /// (Envoy), the whole body in one call (Kong).
    pub fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        let RequestPhase::ReadingBody { .. } = self.request else {
            return Flow::Continue;
        };
        if body_size > self.policy.max_request_body_bytes {
            return self.reject_too_large(io);
        }
        self.request = RequestPhase::ReadingBody { size: body_size };
        if !end_of_stream {
            return Flow::Pause;
        }
        self.finish_request_body(io, body_size)
    }

    /// HTTP/2 requests with trailers never flag end of stream on a body callback.
    pub fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match self.request {
            RequestPhase::ReadingBody { size } => self.finish_request_body(io, size),
            _ => Flow::Continue,
        }
    }

    fn finish_request_body(&mut self, io: &mut dyn HostIo, size: usize) -> Flow {
        self.request = RequestPhase::Done;
        let body = if size == 0 { Some(Vec::new()) } else { io.request_body(0, size) };
        let Some(body) = body else {
            // Kong spills bodies above nginx's client_body_buffer_size to a file it will not hand over.
            log::warn!("#{} request_body_unreadable bytes={size}", self.id);
            return self.reject_too_large(io);
        };
        match openai::parse_chat_request(&body) {
            Ok(chat) => {
                io.increment(Counter::RequestsInspected);
                log::debug!(
                    "#{} request model={} stream={} bytes={}",
                    self.id,
                    chat.model.as_deref().unwrap_or("-"),
                    chat.stream,
                    body.len()
                );
                self.chat = Some(chat);
                Flow::Continue
            }
            Err(err) => {
                io.increment(Counter::RequestsRejectedInvalidBody);
                log::debug!("#{} request_rejected reason=invalid_body bytes={}", self.id, body.len());
                let code = if err.param.is_some() { "invalid_type" } else { "invalid_json" };
                self.send(io, reply::openai_error(400, "invalid_request_error", code, err.param, &err.message))
            }
        }
    }

    fn reject_too_large(&mut self, io: &mut dyn HostIo) -> Flow {
        self.request = RequestPhase::Done;
        io.increment(Counter::RequestsRejectedTooLarge);
        log::debug!("#{} request_rejected reason=too_large limit={}", self.id, self.policy.max_request_body_bytes);
        let message = format!(
            "The request body is larger than this gateway accepts ({} bytes).",
            self.policy.max_request_body_bytes
        );
        self.send(io, reply::openai_error(413, "invalid_request_error", "request_too_large", None, &message))
    }

    fn send(&mut self, io: &mut dyn HostIo, reply: Reply) -> Flow {
        let headers = [("content-type", "application/json")];
        match io.send_reply(reply.status, &headers, &reply.body) {
            Ok(()) => {
                self.replied_locally = true;
                // The reply replaces the request: nothing more may reach the upstream.
                Flow::Pause
            }
            Err(err) => {
                log::error!("#{} local_reply_failed status={} detail={}", self.id, reply.status, err.detail);
                Flow::Continue
            }
        }
    }

    pub fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        self.response = self.response_plan(io, end_of_stream);
        match self.response {
            ResponsePhase::Buffering { .. } => Flow::Pause,
            _ => Flow::Continue,
        }
    }

    fn response_plan(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> ResponsePhase {
        // Our own local replies come back through the response callbacks too.
        if self.replied_locally {
            return ResponsePhase::Ignored;
        }
        let Some(chat) = &self.chat else {
            return ResponsePhase::Ignored;
        };
        let status = io.response_header(":status").and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        if !(200..300).contains(&status) {
            return ResponsePhase::Ignored;
        }
        let content_type = io.response_header("content-type").unwrap_or_default().to_ascii_lowercase();
        if chat.stream || content_type.starts_with("text/event-stream") {
            return ResponsePhase::Streaming;
        }
        if end_of_stream {
            return ResponsePhase::Ignored;
        }
        if io.host_kind() == HostKind::Kong {
            // Kong refuses Pause from response headers, and headers cannot change once the body
            // has started, so cost cannot be reported in headers there.
            log::debug!("#{} response_headers_not_held host=kong", self.id);
            return ResponsePhase::Ignored;
        }
        let declared = io.response_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let too_large = declared.is_some_and(|len| len > self.policy.max_response_body_bytes as u64);
        let not_json = !content_type.is_empty() && !content_type.contains("json");
        if too_large || not_json {
            io.increment(Counter::ResponsesNotInspected);
            log::debug!("#{} response_not_inspected too_large={too_large} not_json={not_json}", self.id);
            return ResponsePhase::Ignored;
        }
        ResponsePhase::Buffering { size: 0 }
    }

    pub fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        let ResponsePhase::Buffering { .. } = self.response else {
            return Flow::Continue;
        };
        if body_size > self.policy.max_response_body_bytes {
            // Give up on headers and release what is held, unchanged.
            io.increment(Counter::ResponsesNotInspected);
            log::debug!("#{} response_not_inspected too_large=true", self.id);
            self.response = ResponsePhase::Ignored;
            return Flow::Continue;
        }
        self.response = ResponsePhase::Buffering { size: body_size };
        if !end_of_stream {
            return Flow::Pause;
        }
        self.finish_response_body(io, body_size);
        Flow::Continue
    }

    pub fn on_response_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        if let ResponsePhase::Buffering { size } = self.response {
            self.finish_response_body(io, size);
        }
        Flow::Continue
    }

    fn finish_response_body(&mut self, io: &mut dyn HostIo, size: usize) {
        self.response = ResponsePhase::Done;
        let parsed = io.response_body(0, size).and_then(|body| openai::parse_chat_response(&body));
        let Some(parsed) = parsed else {
            io.increment(Counter::ResponsesNotInspected);
            log::debug!("#{} response_not_inspected reason=not_a_chat_completion", self.id);
            return;
        };
        let requested = self.chat.as_ref().and_then(|c| c.model.clone());
        let model = parsed.model.or(requested).unwrap_or_else(|| "unknown".to_string());
        let headers = &self.policy.headers;
        set_header(self.id, io, &headers.model, &model);
        let Some(usage) = parsed.usage else {
            set_header(self.id, io, &headers.cost_usd, names::COST_UNKNOWN);
            io.increment(Counter::ResponsesWithoutUsage);
            log::debug!("#{} usage model={model} usage=missing", self.id);
            return;
        };
        let cost = self.policy.prices.cost(&model, usage);
        let cost_text = cost.map_or_else(|| names::COST_UNPRICED.to_string(), |c| c.usd_string());
        set_header(self.id, io, &headers.input_tokens, &usage.input.to_string());
        set_header(self.id, io, &headers.output_tokens, &usage.output.to_string());
        set_header(self.id, io, &headers.cost_usd, &cost_text);
        if cost.is_none() {
            io.increment(Counter::ResponsesUnpriced);
        }
        log::debug!(
            "#{} usage model={model} input_tokens={} cached_input_tokens={} output_tokens={} cost_usd={cost_text}",
            self.id,
            usage.input,
            usage.cached_input,
            usage.output
        );
    }
}

/// A header the proxy refuses is logged, never fatal: the response still reaches the client.
fn set_header(id: u32, io: &mut dyn HostIo, name: &str, value: &str) {
    if let Err(err) = io.set_response_header(name, value) {
        log::warn!("#{id} set_response_header_failed name={name} detail={}", err.detail);
    }
}
