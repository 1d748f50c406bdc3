//! One request/response exchange: the state machine the host layer drives, callback by callback.
//!
//! Request side: recognise an LLM API call from method and path, hold its headers and body until
//! the body is complete, read `model` and `stream`, and reject what cannot be read with an error
//! in the client's dialect. Response side: streams pass through chunk by chunk while their usage
//! is read event by event; a non-streaming JSON answer is held until complete so its usage can
//! be priced and reported in response headers (only possible while the headers are still held).
//! Every exchange ends with one usage record, exported to the proxy's logs.

use std::rc::Rc;

use crate::config::Policy;
use crate::dialect::{self, Api, RequestFacts};
use crate::estimate;
use crate::host_io::{Flow, HostIo, HostKind};
use crate::json_edit;
use crate::names::{self, Counter};
use crate::reply::Reply;
use crate::routing::{self, AuthStyle, Decision, Dialect, Refusal, RoutingInput};
use crate::stream_meter::{ChunkEdit, StreamMeter};
use crate::usage::{Count, Outcome, TokenCounts, UsageRecord};

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
    /// SSE: every chunk goes on as it arrives, read on the way.
    Streaming(Box<StreamMeter>),
    /// Waiting for the whole JSON body. `headers_held`: the response headers wait with it (Envoy),
    /// so cost headers can be added; on Kong the body is read for the record only.
    Buffering {
        headers_held: bool,
        paused_once: bool,
        size: usize,
    },
    Done,
}

/// Sent when Tollgate turns a request into Anthropic's API and the client named no version.
const ANTHROPIC_VERSION: &str = "2023-06-01";

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
    request: RequestPhase,
    response: ResponsePhase,
    facts: Option<RequestFacts>,
    request_bytes: usize,
    /// Tollgate added `stream_options.include_usage`: the client did not ask for the usage chunk.
    strip_usage_chunk: bool,
    replied_locally: bool,
    served_by: Option<ServedBy>,
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
            request: RequestPhase::AwaitingHeaders,
            response: ResponsePhase::AwaitingHeaders,
            facts: None,
            request_bytes: 0,
            strip_usage_chunk: false,
            replied_locally: false,
            served_by: None,
            status: None,
            started_at: 0,
            first_byte_at: None,
            recorded: false,
        }
    }

    /// The parsed request, once its body has been read.
    pub fn request_facts(&self) -> Option<&RequestFacts> {
        self.facts.as_ref()
    }

    pub fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        if !self.policy.routing.providers.is_empty() {
            // Only Tollgate picks the cluster: a client-sent cluster header would bypass policy.
            let header = &self.policy.headers.cluster;
            if io.request_header(header).is_some() && io.remove_request_header(header).is_err() {
                log::error!("#{} cluster_header_not_removed", self.id);
                return self.send(io, Reply::internal_error());
            }
        }
        let method = io.request_header(":method").unwrap_or_default();
        let path = io.request_header(":path").unwrap_or_default();
        let Some(api) = Api::detect(&method, &path) else {
            self.request = RequestPhase::Ignored;
            return Flow::Continue;
        };
        self.api = Some(api);
        self.started_at = io.now_nanos();
        if end_of_stream {
            return self.finish_request_body(io, api, 0);
        }
        let declared = io.request_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.policy.max_request_body_bytes as u64) {
            return self.reject_too_large(io, api);
        }
        // Hold the headers too: nothing reaches the upstream until the body has been judged.
        // (Envoy needs `allow_on_headers_stop_iteration: true` for this; see envoy/envoy.yaml.)
        self.request = RequestPhase::ReadingBody;
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

    fn finish_request_body(&mut self, io: &mut dyn HostIo, api: Api, size: usize) -> Flow {
        self.request = RequestPhase::Done;
        self.request_bytes = size;
        let body = if size == 0 { Some(Vec::new()) } else { io.request_body(0, size) };
        let Some(body) = body else {
            // Kong spills bodies above nginx's client_body_buffer_size to a file it will not hand over.
            log::warn!("#{} request_body_unreadable bytes={size}", self.id);
            return self.reject_too_large(io, api);
        };
        let facts = match dialect::parse_request(&body) {
            Ok(facts) => facts,
            Err(err) => {
                io.increment(Counter::RequestsRejectedInvalidBody);
                log::debug!("#{} request_rejected reason=invalid_body bytes={}", self.id, body.len());
                let code = if err.param.is_some() { "invalid_type" } else { "invalid_json" };
                return self.send(io, api.error_reply(400, code, err.param, &err.message));
            }
        };
        io.increment(Counter::RequestsInspected);
        log::debug!(
            "#{} request api={} model={} stream={} bytes={}",
            self.id,
            api.name(),
            facts.model.as_deref().unwrap_or("-"),
            facts.stream,
            body.len()
        );
        self.facts = Some(facts.clone());
        let mut rewritten: Option<Vec<u8>> = None;
        match self.decide_route(io, &facts, body.len()) {
            Decision::Untouched => {}
            Decision::Refuse(refusal) => {
                io.increment(Counter::RequestsRefusedByPolicy);
                log::debug!("#{} request_refused code={}", self.id, refusal.code);
                return self.send(io, api.error_reply(refusal.status, refusal.code, Some("model"), &refusal.message));
            }
            Decision::Route { chain, rule } => match self.apply_route(io, api, &facts, &body, &chain, &rule) {
                Ok(new_body) => rewritten = new_body,
                Err(refusal) => {
                    return self.send(io, api.error_reply(refusal.status, refusal.code, None, &refusal.message))
                }
            },
        }
        if api == Api::OpenAiChat && facts.stream && !facts.include_usage && self.policy.include_usage {
            let current = rewritten.as_deref().unwrap_or(&body);
            if let Some(with_usage) = dialect::openai::with_include_usage(current) {
                rewritten = Some(with_usage);
                self.strip_usage_chunk = true;
            }
        }
        if let Some(new_body) = rewritten {
            self.replace_request_body(io, body.len(), &new_body);
        }
        Flow::Continue
    }

    fn decide_route(&self, io: &mut dyn HostIo, facts: &RequestFacts, body_bytes: usize) -> Decision {
        let routing = &self.policy.routing;
        if routing.is_empty() {
            return Decision::Untouched;
        }
        let route = if routing.needs_route_name() { io.route_name() } else { None };
        let random = routing::stable_hash(&(io.now_nanos() ^ u64::from(self.id)).to_le_bytes());
        let io: &dyn HostIo = io;
        let header = |name: &str| io.request_header(name);
        routing.decide(&RoutingInput {
            model: facts.model.as_deref(),
            route: route.as_deref(),
            header: &header,
            prompt_tokens: estimate::request_tokens(body_bytes),
            random,
        })
    }

    /// Sends the request to the chosen target: its model in the body, its path, its
    /// credentials (replacing the client's), its cluster. Returns the rewritten body, if any.
    fn apply_route(
        &mut self,
        io: &mut dyn HostIo,
        api: Api,
        facts: &RequestFacts,
        body: &[u8],
        chain: &[usize],
        rule: &str,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let policy = Rc::clone(&self.policy);
        let routing = &policy.routing;
        let (target, provider) = chain
            .first()
            .and_then(|i| routing.target(*i))
            .and_then(|t| Some((t, routing.provider_of(t)?)))
            .ok_or_else(|| Refusal { status: 500, code: "routing_error", message: "No target to route to.".into() })?;
        if !api.native_to(provider.dialect) {
            return Err(Refusal {
                status: 400,
                code: "unsupported_api",
                message: format!("The {} API cannot be served by provider '{}'.", api.name(), provider.name),
            });
        }
        let model = target.model.clone().or_else(|| facts.model.clone()).unwrap_or_default();
        let new_body = if facts.model.as_deref() == Some(model.as_str()) || model.is_empty() {
            None
        } else {
            let quoted = serde_json::Value::String(model.clone()).to_string();
            json_edit::replace_value(body, "model", &quoted).or_else(|| json_edit::insert_first(body, "model", &quoted))
        };
        let mut path = format!("{}{}", provider.path_prefix.replace("{model}", &model), api.path_suffix());
        let client_query = io.request_header(":path").and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()));
        if let Some(query) = provider.query.clone().or(client_query) {
            path = format!("{path}?{query}");
        }
        let mut failures = Vec::new();
        let mut set = |io: &mut dyn HostIo, name: &str, value: &str| {
            if io.set_request_header(name, value).is_err() {
                failures.push(name.to_string());
            }
        };
        set(io, ":path", &path);
        if let Some(key) = &provider.api_key {
            for name in ["authorization", "x-api-key", "api-key"] {
                let _ = io.remove_request_header(name);
            }
            match provider.auth {
                AuthStyle::Bearer => set(io, "authorization", &format!("Bearer {key}")),
                AuthStyle::ApiKey => set(io, "api-key", key),
                AuthStyle::XApiKey => set(io, "x-api-key", key),
            }
        }
        if provider.dialect == Dialect::Anthropic && io.request_header("anthropic-version").is_none() {
            set(io, "anthropic-version", ANTHROPIC_VERSION);
        }
        if let Err(err) = io.route_to(&policy.headers.cluster, &provider.cluster) {
            failures.push(format!("cluster ({})", err.detail));
        }
        if !failures.is_empty() {
            // Never log header values: they may be credentials.
            log::error!("#{} route_not_applied headers={}", self.id, failures.join(","));
            return Err(Refusal {
                status: 500,
                code: "routing_error",
                message: "The gateway could not route this request.".into(),
            });
        }
        log::debug!("#{} routed rule={rule} target={} provider={} model={model}", self.id, target.name, provider.name);
        self.served_by = Some(ServedBy { provider: provider.name.clone(), model });
        Ok(new_body)
    }

    fn replace_request_body(&mut self, io: &mut dyn HostIo, held: usize, new_body: &[u8]) {
        let replaced =
            io.replace_request_body(held, new_body).and_then(|()| match io.request_header("content-length") {
                Some(_) => io.set_request_header("content-length", &new_body.len().to_string()),
                None => Ok(()),
            });
        if let Err(err) = replaced {
            log::warn!("#{} request_body_not_replaced detail={}", self.id, err.detail);
            self.strip_usage_chunk = false;
        }
    }

    fn reject_too_large(&mut self, io: &mut dyn HostIo, api: Api) -> Flow {
        self.request = RequestPhase::Done;
        io.increment(Counter::RequestsRejectedTooLarge);
        log::debug!("#{} request_rejected reason=too_large limit={}", self.id, self.policy.max_request_body_bytes);
        let message = format!(
            "The request body is larger than this gateway accepts ({} bytes).",
            self.policy.max_request_body_bytes
        );
        self.send(io, api.error_reply(413, "request_too_large", None, &message))
    }

    fn send(&mut self, io: &mut dyn HostIo, reply: Reply) -> Flow {
        let headers = [("content-type", "application/json")];
        match io.send_reply(reply.status, &headers, &reply.body) {
            Ok(()) => {
                self.replied_locally = true;
                self.status = Some(reply.status);
                self.record(io, TokenCounts::default(), None, Outcome::Rejected);
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
            ResponsePhase::Buffering { headers_held: true, .. } => Flow::Pause,
            _ => Flow::Continue,
        }
    }

    fn response_plan(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> ResponsePhase {
        // Our own local replies come back through the response callbacks too.
        if self.replied_locally {
            return ResponsePhase::Ignored;
        }
        let (Some(facts), Some(api)) = (&self.facts, self.api) else {
            return ResponsePhase::Ignored;
        };
        let stream_requested = facts.stream;
        let status = io.response_header(":status").and_then(|s| s.parse::<u16>().ok());
        self.status = status;
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            self.record(io, TokenCounts::default(), None, Outcome::UpstreamError);
            return ResponsePhase::Ignored;
        }
        let content_type = io.response_header("content-type").unwrap_or_default().to_ascii_lowercase();
        if stream_requested || content_type.starts_with("text/event-stream") {
            let strip = self.strip_usage_chunk && api == Api::OpenAiChat;
            if strip {
                // Chunks may shrink: a declared length would no longer be true.
                if let Err(err) = io.remove_response_header("content-length") {
                    log::warn!("#{} remove_content_length_failed detail={}", self.id, err.detail);
                }
            }
            return ResponsePhase::Streaming(Box::new(StreamMeter::new(
                api,
                strip,
                self.policy.max_stream_event_bytes,
            )));
        }
        if end_of_stream {
            self.record(io, TokenCounts::default(), None, Outcome::Complete);
            return ResponsePhase::Ignored;
        }
        let declared = io.response_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let too_large = declared.is_some_and(|len| len > self.policy.max_response_body_bytes as u64);
        let not_json = !content_type.is_empty() && !content_type.contains("json");
        if too_large || not_json {
            io.increment(Counter::ResponsesNotInspected);
            log::debug!("#{} response_not_inspected too_large={too_large} not_json={not_json}", self.id);
            self.record(io, TokenCounts::default(), None, Outcome::Complete);
            return ResponsePhase::Ignored;
        }
        // Kong refuses Pause from response headers, and headers cannot change once the body has
        // started, so there the body is read for the record only.
        let headers_held = io.host_kind() == HostKind::Envoy;
        ResponsePhase::Buffering { headers_held, paused_once: false, size: 0 }
    }

    pub fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        if body_size > 0 && self.first_byte_at.is_none() {
            self.first_byte_at = Some(io.now_nanos());
        }
        match &mut self.response {
            ResponsePhase::Streaming(_) => {
                self.stream_chunk(io, body_size, end_of_stream);
                Flow::Continue
            }
            ResponsePhase::Buffering { headers_held, paused_once, size } => {
                let held = *headers_held;
                *size = body_size;
                let gave_up =
                    body_size > self.policy.max_response_body_bytes || (!held && *paused_once && !end_of_stream);
                if gave_up {
                    // Too large for us (or for Kong's response buffers): release it unchanged.
                    io.increment(Counter::ResponsesNotInspected);
                    log::debug!("#{} response_not_inspected too_large=true", self.id);
                    self.response = ResponsePhase::Ignored;
                    self.record(io, TokenCounts::default(), None, Outcome::Complete);
                    return Flow::Continue;
                }
                if !end_of_stream {
                    *paused_once = true;
                    return Flow::Pause;
                }
                self.response = ResponsePhase::Done;
                self.finish_json_body(io, body_size, held);
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    pub fn on_response_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match &self.response {
            ResponsePhase::Streaming(_) => self.stream_chunk(io, 0, true),
            ResponsePhase::Buffering { headers_held, size, .. } => {
                let (held, size) = (*headers_held, *size);
                self.response = ResponsePhase::Done;
                self.finish_json_body(io, size, held);
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
            ResponsePhase::Streaming(meter) => self.record_stream(io, &meter),
            _ if self.api.is_some() && self.facts.is_some() => {
                self.record(io, TokenCounts::default(), None, Outcome::Truncated);
            }
            _ => {}
        }
    }

    fn stream_chunk(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) {
        let ResponsePhase::Streaming(meter) = &mut self.response else {
            return;
        };
        let chunk = if body_size == 0 { Vec::new() } else { io.response_body(0, body_size).unwrap_or_default() };
        let mut edit = meter.feed(&chunk);
        if end_of_stream {
            if let ChunkEdit::Replace(tail) = meter.finish() {
                let mut out = match edit {
                    ChunkEdit::Unchanged => chunk,
                    ChunkEdit::Replace(bytes) => bytes,
                };
                out.extend_from_slice(&tail);
                edit = ChunkEdit::Replace(out);
            }
        }
        if let ChunkEdit::Replace(bytes) = edit {
            if let Err(err) = io.replace_response_body(body_size, &bytes) {
                log::warn!("#{} replace_response_chunk_failed detail={}", self.id, err.detail);
            }
        }
        if end_of_stream {
            if let ResponsePhase::Streaming(meter) = std::mem::replace(&mut self.response, ResponsePhase::Done) {
                self.record_stream(io, &meter);
            }
        }
    }

    fn record_stream(&mut self, io: &mut dyn HostIo, meter: &StreamMeter) {
        let mut tokens = meter.tokens();
        if tokens.output.is_none() {
            tokens.output = Some(Count::estimated(estimate::text_tokens(meter.generated().1)));
        }
        let outcome = if meter.completed() { Outcome::Complete } else { Outcome::Truncated };
        if meter.oversized_events() > 0 {
            log::warn!("#{} stream_events_too_large count={}", self.id, meter.oversized_events());
        }
        let served = meter.model().map(str::to_string);
        self.record(io, tokens, served, outcome);
    }

    fn finish_json_body(&mut self, io: &mut dyn HostIo, size: usize, headers_held: bool) {
        let Some(api) = self.api else { return };
        let parsed = io.response_body(0, size).and_then(|body| api.read_response(&body));
        let Some(parsed) = parsed else {
            io.increment(Counter::ResponsesNotInspected);
            log::debug!("#{} response_not_inspected reason=not_json", self.id);
            self.record(io, TokenCounts::default(), None, Outcome::Complete);
            return;
        };
        let record = self.record(io, parsed.tokens, parsed.model, Outcome::Complete);
        if parsed.tokens.is_empty() {
            io.increment(Counter::ResponsesWithoutUsage);
        } else if record.cost.is_none() {
            io.increment(Counter::ResponsesUnpriced);
        }
        if headers_held {
            self.set_cost_headers(io, &record);
        }
    }

    fn set_cost_headers(&self, io: &mut dyn HostIo, record: &UsageRecord) {
        let headers = &self.policy.headers;
        let model = record.model_served.as_deref().or(record.model_requested.as_deref()).unwrap_or("unknown");
        set_header(self.id, io, &headers.model, model);
        if let Some(provider) = &record.provider {
            set_header(self.id, io, &headers.provider, provider);
        }
        let (Some(input), Some(output)) = (record.tokens.input, record.tokens.output) else {
            set_header(self.id, io, &headers.cost_usd, names::COST_UNKNOWN);
            return;
        };
        set_header(self.id, io, &headers.input_tokens, &input.tokens.to_string());
        set_header(self.id, io, &headers.output_tokens, &output.tokens.to_string());
        let cost = record.cost.map_or_else(|| names::COST_UNPRICED.to_string(), |c| c.usd_string());
        set_header(self.id, io, &headers.cost_usd, &cost);
    }

    /// Builds the exchange's one usage record, exports it and logs it (numbers only, never text).
    fn record(
        &mut self,
        io: &mut dyn HostIo,
        mut tokens: TokenCounts,
        served: Option<String>,
        outcome: Outcome,
    ) -> UsageRecord {
        let requested = self.facts.as_ref().and_then(|f| f.model.clone());
        let routed = self.served_by.as_ref().map(|s| s.model.clone());
        let served = served.or(routed).or_else(|| requested.clone());
        if outcome == Outcome::Truncated && tokens.input.is_none() {
            tokens.input = Some(Count::estimated(estimate::request_tokens(self.request_bytes)));
        }
        let cost = served.as_deref().and_then(|m| self.policy.prices.cost(m, &tokens));
        let now = io.now_nanos();
        let millis = |from: u64, to: u64| to.saturating_sub(from) / 1_000_000;
        let record = UsageRecord {
            api: self.api.map_or("unknown", Api::name),
            model_requested: requested,
            model_served: served,
            provider: self.served_by.as_ref().map(|s| s.provider.clone()),
            streaming: self.facts.as_ref().is_some_and(|f| f.stream),
            status: self.status,
            outcome,
            tokens,
            cost,
            time_to_first_token_ms: self.first_byte_at.map(|at| millis(self.started_at, at)),
            duration_ms: Some(millis(self.started_at, now)),
        };
        if !self.recorded {
            self.recorded = true;
            let json = record.to_json().to_string();
            log::debug!("#{} usage {json}", self.id);
            io.export(names::EXPORT_USAGE, &json);
        }
        record
    }
}

/// A header the proxy refuses is logged, never fatal: the response still reaches the client.
fn set_header(id: u32, io: &mut dyn HostIo, name: &str, value: &str) {
    if let Err(err) = io.set_response_header(name, value) {
        log::warn!("#{id} set_response_header_failed name={name} detail={}", err.detail);
    }
}
