//! One request/response exchange: the state machine the host layer drives, callback by callback.
//!
//! Request side: recognise an LLM API call from method and path, hold its headers and body until
//! the body is complete, read it into its canonical request (and, when a consumer needs it, its
//! text), and reject what cannot be read with an error in the client's dialect. Response side: streams pass through chunk by chunk while their usage
//! is read event by event; a non-streaming JSON answer is held until complete so its usage can
//! be priced and reported in response headers (only possible while the headers are still held).
//! Every exchange ends with one usage record, exported to the proxy's logs.

pub mod admin;
mod budget;
mod guard;
mod request;
mod response;

use std::rc::Rc;

use crate::chain::ChainPlan;
use crate::config::{FailureMode, Policy};
use crate::dialect::{Api, CanonicalRequest};
use crate::guardrails::stream::StreamGuard;
use crate::guardrails::ResponseGuard;
use crate::host_io::{Flow, HostIo, HostKind};
use crate::names::Counter;
use crate::provider_request::Translation;
use crate::response_translation::StreamTranslation;
use crate::stream_cut::StreamCut;
use crate::stream_meter::StreamMeter;
use crate::tenant::Attribution;
use crate::usage::{GuardrailSummary, Outcome, TokenCounts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestPhase {
    AwaitingHeaders,
    /// Not an API call the filter inspects: every later callback continues.
    Ignored,
    /// Waiting for the whole body.
    ReadingBody,
    Done,
}

#[derive(Debug)]
enum ResponsePhase {
    AwaitingHeaders,
    /// Passed through without reading; the record (if any) is already written.
    Ignored,
    /// SSE: every chunk goes on as it arrives, read on the way (and translated into the client's
    /// dialect when the provider speaks the other one, and guarded).
    Streaming(Box<Streaming>),
    /// Waiting for the whole JSON body. `headers_held`: the response headers wait with it (Envoy),
    /// so cost headers can be added; on Kong the body is read for the record only.
    Buffering {
        headers_held: bool,
        paused_once: bool,
        size: usize,
        /// A provider error to translate into the client's dialect, not an answer to read.
        error: bool,
    },
    /// The client's answer was replaced; the rest of the provider's is dropped.
    Dropping,
    Done,
}

/// A streamed response's readers and editors, in the order a chunk meets them: the meter reads
/// (and may drop the usage chunk) in the provider's dialect, the translator turns it into the
/// client's, the guard checks what the client is about to get.
#[derive(Debug)]
struct Streaming {
    meter: StreamMeter,
    translator: Option<StreamTranslation>,
    guard: Option<StreamGuard>,
    /// Ends the client's stream where its budget does (see [`crate::stream_cut`]).
    cut: Option<StreamCut>,
    /// The stages stopped: see [`Derailed`].
    derailed: Option<Derailed>,
}

/// Why the stages of a stream stopped before its end. A stage that missed bytes, or whose
/// output the proxy did not take, can no longer frame or rewrite what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derailed {
    /// The rest goes to the client as the provider sends it.
    PassThrough,
    /// The client's stream was ended (an error event or the blocked ending); the rest is dropped.
    Ended,
    /// The client's stream was ended at its budget; the rest is dropped but still read, so the
    /// provider's usage settles the budget.
    Cut,
}

/// The provider and model a routing decision sent the request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    pub provider: String,
    pub model: String,
}

/// The per-request state machine. Created per HTTP stream by the host layer.
pub struct Exchange {
    id: u32,
    policy: Rc<Policy>,
    api: Option<Api>,
    /// Anthropic's `…/messages/count_tokens`: a Messages request to count, not to answer.
    count_tokens: bool,
    request: RequestPhase,
    response: ResponsePhase,
    /// What the request asks for, once its body has been read.
    canonical: Option<CanonicalRequest>,
    request_bytes: usize,
    /// Tollgate added `stream_options.include_usage`: the client did not ask for the usage chunk.
    strip_usage_chunk: bool,
    replied_locally: bool,
    served_by: Option<ServedBy>,
    /// The fallback chain the request was sent down, when Envoy's retries walk it.
    chain: Option<ChainPlan>,
    /// Set when the provider speaks the other dialect: its answer is translated back.
    translation: Option<Translation>,
    /// Who the request is for: tenant, team, project.
    attribution: Attribution,
    /// The response side of the guardrails (response checks, placeholders to restore).
    guard: Option<ResponseGuard>,
    /// What the guardrails decided, for the record.
    guardrails: GuardrailSummary,
    /// The client's hashed API key, when a limit is kept per key (read before credentials change).
    client_key: Option<String>,
    /// What the request holds of the budgets.
    metering: Option<Box<budget::Metering>>,
    /// A streaming request's body, kept so its prompt can be counted if the stream is cut
    /// before the provider reports usage (the proxy held the whole body anyway).
    kept_request: Option<Vec<u8>>,
    status: Option<u16>,
    started_at: u64,
    first_byte_at: Option<u64>,
    recorded: bool,
}

impl Exchange {
    pub fn new(id: u32, policy: Rc<Policy>) -> Self {
        Exchange {
            id,
            policy,
            api: None,
            count_tokens: false,
            request: RequestPhase::AwaitingHeaders,
            response: ResponsePhase::AwaitingHeaders,
            canonical: None,
            request_bytes: 0,
            strip_usage_chunk: false,
            replied_locally: false,
            served_by: None,
            chain: None,
            translation: None,
            attribution: Attribution::default(),
            guard: None,
            guardrails: GuardrailSummary::default(),
            client_key: None,
            metering: None,
            kept_request: None,
            status: None,
            started_at: 0,
            first_byte_at: None,
            recorded: false,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn policy(&self) -> &Rc<Policy> {
        &self.policy
    }

    /// The canonical request, once its body has been read.
    pub fn canonical_request(&self) -> Option<&CanonicalRequest> {
        self.canonical.as_ref()
    }

    pub fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        // The request line, as text for matching (an API path is ASCII; a byte that is not UTF-8
        // elsewhere reads as U+FFFD). Absent (a CONNECT has no `:path`) is not an API call;
        // unreadable is a failure (below), never "not an API call".
        // (A valid line is taken as it is, not copied.)
        let text = |value: Option<Vec<u8>>| {
            value
                .map(|v| {
                    String::from_utf8(v).unwrap_or_else(|bad| String::from_utf8_lossy(bad.as_bytes()).into_owned())
                })
                .unwrap_or_default()
        };
        let line =
            io.request_header_bytes(":method").and_then(|m| Ok((text(m), text(io.request_header_bytes(":path")?))));
        // Headers with Tollgate's prefix are Tollgate's to set: a client-sent cluster, tenant or
        // cost header would bypass policy or spoof attribution downstream. Kong keeps the client's
        // case (`X-Tollgate-Cluster`), so names compare without case.
        // The path is read once: its API names the dialect of any refusal, and (for a POST) the request.
        let path_api = line.as_ref().ok().and_then(|(_, path)| Api::detect_path(path));
        let dialect = path_api.unwrap_or(Api::OpenAiChat);
        let prefix = self.policy.headers.prefix.clone();
        let Some(names) = io.request_header_names() else {
            log::error!("#{} request_header_names_unreadable", self.id);
            return self.refuse_unstripped(io, dialect);
        };
        for name in names.iter().filter(|n| has_prefix(n, &prefix)) {
            if io.clear_request_header(name).is_err() {
                log::error!("#{} prefixed_header_not_removed", self.id);
                return self.refuse_unstripped(io, dialect);
            }
        }
        let (method, path) = match line {
            Ok(line) => line,
            Err(err) => {
                // Which API this is cannot be told: policy must not be skipped for it silently.
                log::error!("#{} request_line_unreadable detail={}", self.id, err.detail);
                self.started_at = io.now_nanos();
                return self.fail(io, dialect, "request_line_unreadable");
            }
        };
        let Some(api) = path_api.filter(|_| Api::is_api_method(&method)) else {
            if let Some(api) = path_api.filter(|_| body_follows(io, end_of_stream)) {
                // A body sent to an API path with another method would never be inspected.
                self.api = Some(api);
                self.started_at = io.now_nanos();
                return self.refuse_method(io, api);
            }
            self.request = RequestPhase::Ignored;
            return Flow::Continue;
        };
        self.api = Some(api);
        self.started_at = io.now_nanos();
        if api == Api::AnthropicMessages && crate::dialect::is_count_tokens(&path) {
            // Counting generates nothing and costs nothing: it gets no usage record (nor
            // metrics from one). Routed like the Messages request it counts (see request.rs).
            self.count_tokens = true;
            self.recorded = true;
        }
        if io.request_header("content-encoding").is_some_and(|e| !is_identity(&e)) {
            // A compressed body cannot be judged, and must not pass unjudged.
            return self.refuse_encoding(io, api);
        }
        let kong = io.host_kind() == HostKind::Kong;
        // Kong's headers never say end of stream, and its body step never comes for an empty
        // body (probe fact 2): there the framing headers tell.
        if end_of_stream || (kong && !body_follows(io, end_of_stream)) {
            return self.finish_request_body(io, api, 0);
        }
        let declared = io.request_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.policy.max_request_body_bytes as u64) {
            return self.reject_too_large(io, api);
        }
        self.request = RequestPhase::ReadingBody;
        if kong {
            // Kong reads the body only after the access phase, where a paused headers step
            // parks the request for good (probe fact 1). Nothing goes upstream before the body
            // step either: it comes once, with the whole body, and what it decides (headers,
            // path, upstream, a local reply) takes effect.
            return Flow::Continue;
        }
        // Hold the headers too: nothing reaches the upstream until the body has been judged.
        // (Envoy needs `allow_on_headers_stop_iteration: true` for this; see envoy/envoy.yaml.)
        Flow::Pause
    }

    /// `body_size` is the size of the body the proxy holds for us: cumulative while we pause
    /// (Envoy), the whole body in one call (Kong).
    pub fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        let (RequestPhase::ReadingBody, Some(api)) = (self.request, self.api) else {
            return Flow::Continue;
        };
        if body_size > self.policy.max_request_body_bytes {
            return self.reject_too_large(io, api);
        }
        self.request_bytes = body_size;
        if !end_of_stream {
            return Flow::Pause;
        }
        self.finish_request_body(io, api, body_size)
    }

    /// HTTP/2 requests with trailers never flag end of stream on a body callback.
    pub fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match (self.request, self.api) {
            (RequestPhase::ReadingBody, Some(api)) => self.finish_request_body(io, api, self.request_bytes),
            _ => Flow::Continue,
        }
    }

    pub fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        if self.count_tokens {
            // `{"input_tokens": N}` (or the provider's error): nothing to meter, translate or guard.
            self.response = ResponsePhase::Ignored;
            return Flow::Continue;
        }
        self.response = self.response_plan(io, end_of_stream);
        let held = matches!(self.response, ResponsePhase::Buffering { headers_held: true, .. });
        if !self.replied_locally && !held {
            // Held headers get them once the answer has settled (what is left after it).
            self.add_budget_headers(io);
        }
        match self.response {
            ResponsePhase::Buffering { headers_held: true, .. } => Flow::Pause,
            _ => Flow::Continue,
        }
    }

    pub fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        if body_size > 0 && self.first_byte_at.is_none() {
            self.first_byte_at = Some(io.now_nanos());
        }
        match &mut self.response {
            ResponsePhase::Streaming(..) => {
                self.stream_chunk(io, body_size, end_of_stream);
                Flow::Continue
            }
            ResponsePhase::Dropping => {
                if body_size > 0 {
                    if let Err(err) = io.replace_response_body(body_size, b"") {
                        log::warn!("#{} drop_response_chunk_failed detail={}", self.id, err.detail);
                    }
                }
                Flow::Continue
            }
            ResponsePhase::Buffering { headers_held, paused_once, size, error } => {
                let held = *headers_held;
                *size = body_size;
                let overflowed = !held && *paused_once && !end_of_stream;
                if overflowed {
                    // Kong's response buffers filled before the answer ended (probe fact 10).
                    return self.response_overflowed(io, body_size);
                }
                if body_size > self.policy.max_response_body_bytes {
                    // Too large for us: release it unchanged (documented).
                    io.increment(Counter::ResponsesNotInspected);
                    log::debug!("#{} response_not_inspected too_large=true", self.id);
                    self.response = ResponsePhase::Ignored;
                    self.record(io, TokenCounts::default(), None, Outcome::Complete);
                    if held {
                        self.add_budget_headers(io);
                    }
                    return Flow::Continue;
                }
                if !end_of_stream {
                    *paused_once = true;
                    return Flow::Pause;
                }
                let error = *error;
                self.response = ResponsePhase::Done;
                if error {
                    self.finish_error_body(io, body_size, held);
                } else {
                    self.finish_json_body(io, body_size, held);
                }
                if held {
                    self.add_budget_headers(io);
                }
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    /// Kong handed over a buffered answer that is not whole: its `wasm_response_body_buffers`
    /// are full and the rest follows unbuffered (probe fact 10). The record gets no tokens, and
    /// an answer that had to change (translated, or guarded: masks, placeholders to restore,
    /// blocks) cannot: the route's `failure_mode` says whether the client gets it as the
    /// provider sent it (open) or an error in its dialect in place of the body (closed; the
    /// status has left already). Counted in `responses_not_inspected` and logged either way.
    fn response_overflowed(&mut self, io: &mut dyn HostIo, body_size: usize) -> Flow {
        io.increment(Counter::ResponsesNotInspected);
        let must_change = self.translation.is_some() || self.guard.as_ref().is_some_and(ResponseGuard::enforcing);
        let closed = must_change && self.failure_mode(io) == FailureMode::Closed;
        log::warn!(
            "#{} response_not_inspected reason=kong_response_buffers_full bytes={body_size} then={}",
            self.id,
            if closed { "failed_closed" } else { "passed" }
        );
        self.record(io, TokenCounts::default(), None, Outcome::Complete);
        if !closed {
            self.response = ResponsePhase::Ignored;
            return Flow::Continue;
        }
        let api = self.api.unwrap_or(Api::OpenAiChat);
        let message = "The answer was larger than Kong's response buffers (nginx_http_wasm_response_body_buffers).";
        let reply = api.error_reply(500, "gateway_error", None, message);
        if let Err(err) = io.replace_response_body(body_size, &reply.body) {
            io.increment(Counter::ResponsesNotRewritten);
            log::warn!("#{} replace_response_body_failed detail={}", self.id, err.detail);
        }
        self.response = ResponsePhase::Dropping;
        Flow::Continue
    }

    pub fn on_response_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match &self.response {
            ResponsePhase::Streaming(..) => self.stream_chunk(io, 0, true),
            ResponsePhase::Buffering { headers_held, size, error, .. } => {
                let (held, size, error) = (*headers_held, *size, *error);
                self.response = ResponsePhase::Done;
                if error {
                    self.finish_error_body(io, size, held);
                } else {
                    self.finish_json_body(io, size, held);
                }
                if held {
                    self.add_budget_headers(io);
                }
            }
            _ => {}
        }
        Flow::Continue
    }

    /// The stream is over whether or not its end was seen (client gone, upstream reset):
    /// make sure the exchange is recorded.
    pub fn on_done(&mut self, io: &mut dyn HostIo) {
        if self.recorded {
            return;
        }
        match std::mem::replace(&mut self.response, ResponsePhase::Done) {
            ResponsePhase::Streaming(streaming) => {
                self.collect_stream_decisions(io, streaming.guard.as_ref());
                self.note_untranslatable(io, streaming.translator.as_ref());
                self.record_stream(io, &streaming.meter);
            }
            _ if self.api.is_some() && self.canonical.is_some() => {
                self.record(io, TokenCounts::default(), None, Outcome::Truncated);
            }
            _ => {}
        }
    }
}

/// Whether a header name starts with Tollgate's prefix, in any case.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.as_bytes().get(..prefix.len()).is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Whether the request has a body: Envoy says so with the headers' end of stream; Kong's headers
/// never carry it, so there the framing headers tell.
fn body_follows(io: &mut dyn HostIo, end_of_stream: bool) -> bool {
    match io.host_kind() {
        HostKind::Envoy => !end_of_stream,
        HostKind::Kong => {
            io.request_header("transfer-encoding").is_some()
                || io.request_header("content-length").is_some_and(|v| v.trim() != "0")
        }
    }
}

/// `Content-Encoding: identity` (or an empty value) is no encoding at all.
fn is_identity(encoding: &str) -> bool {
    encoding.split(',').map(str::trim).all(|e| e.is_empty() || e.eq_ignore_ascii_case("identity"))
}
