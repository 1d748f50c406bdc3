//! The request half of an exchange: reading the body, the model policy's decision and its
//! effects (model, path, credentials, cluster), and local replies.

use std::rc::Rc;

use super::{Exchange, RequestPhase, ServedBy};
use crate::chain::{ChainPlan, ChainStep};
use crate::config::FailureMode;
use crate::dialect::{self, Api, CanonicalRequest};
use crate::estimate;
use crate::host_io::{Flow, HostIo, HostKind};
use crate::names::{self, Counter};
use crate::provider_request;
use crate::reply::Reply;
use crate::routing::{self, Decision, Dialect, Refusal, RoutingInput};
use crate::usage::{Outcome, TokenCounts};

impl Exchange {
    pub(super) fn finish_request_body(&mut self, io: &mut dyn HostIo, api: Api, size: usize) -> Flow {
        self.request = RequestPhase::Done;
        self.request_bytes = size;
        let body = if size == 0 { Some(Vec::new()) } else { io.request_body(0, size) };
        let Some(body) = body else {
            // Kong spills bodies above nginx's client_body_buffer_size to a file it will not hand
            // over: there, failing closed is the documented 413 (the buffer is too small).
            if io.host_kind() == HostKind::Kong && self.failure_mode(io) == FailureMode::Closed {
                log::warn!("#{} request_body_unreadable bytes={size}", self.id);
                let flow = self.reject_spilled(io, api, size);
                self.count_failed_closed(io);
                return flow;
            }
            return self.fail(io, api, "request_body_unreadable");
        };
        let request = match dialect::parse_request(api, &body) {
            Ok(request) => request,
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
            request.model.as_deref().unwrap_or("-"),
            request.stream,
            body.len()
        );
        self.canonical = Some(request.clone());
        self.attribute(io);
        let held = body.len();
        let (prompt_tokens, guarded) = {
            // The request's text, read once and only for a consumer that needs it: the guardrails,
            // or a prompt estimate that counts it. Model selection alone never walks the text.
            let token_limit = self.prompt_token_limit();
            let guarding = self.guarding(io);
            let needs_text = guarding.is_some() || (token_limit.is_some() && estimate::counts_text(api));
            let text = if needs_text { request.text(&body).ok() } else { None };
            let model = request.model.as_deref().unwrap_or("");
            let prompt_tokens = token_limit
                .map_or(0, |limit| estimate::prompt_tokens_for_limits(api, model, &body, text.as_ref(), limit));
            match self.guard_request(io, &request, guarding, text.as_ref(), prompt_tokens) {
                Ok(guarded) => (prompt_tokens, guarded),
                Err(refused) => return refused,
            }
        };
        // From here on the body is what the guardrails let through (masked, clamped).
        let guarded_changed = guarded.is_some();
        let mut body = guarded.unwrap_or(body);
        if request.stream {
            self.kept_request = Some(body.clone());
        }
        let mut rewritten: Option<Vec<u8>> = None;
        match self.decide_route(io, &request, prompt_tokens) {
            Decision::Untouched => {}
            Decision::Refuse(refusal) => {
                io.increment(Counter::RequestsRefusedByPolicy);
                log::debug!("#{} request_refused code={}", self.id, refusal.code);
                return self.send(io, api.error_reply(refusal.status, refusal.code, Some("model"), &refusal.message));
            }
            Decision::Route { chain, rule, fallback_cluster } => {
                let incoming = Incoming { request: &request, body: &body };
                if self.count_tokens && self.counts_locally(&chain) {
                    return self.count_locally(io, &incoming, &chain, &rule);
                }
                let routed = match fallback_cluster {
                    // Counting is routed to the chain's first target only: the fallback filter
                    // prepares Messages attempts, and a count needs no fallback.
                    _ if self.count_tokens => self.apply_route(io, &incoming, &chain, &rule),
                    Some(cluster) if chain.len() > 1 && io.host_kind() == HostKind::Envoy => {
                        self.apply_chain(io, &incoming, &chain, &cluster, &rule).map(|()| None)
                    }
                    // Kong has no per-attempt hook: the first target serves (documented).
                    _ => self.apply_route(io, &incoming, &chain, &rule),
                };
                match routed {
                    Ok(new_body) => rewritten = new_body,
                    Err(refusal) => {
                        return self.send(io, api.error_reply(refusal.status, refusal.code, None, &refusal.message))
                    }
                }
            }
        }
        let same_dialect = self.translation.is_none();
        if api == Api::OpenAiChat
            && same_dialect
            && request.stream
            && !request.include_usage
            && self.policy.include_usage
        {
            let current = rewritten.as_deref().unwrap_or(&body);
            if let Some(with_usage) = dialect::openai::with_include_usage(current) {
                rewritten = Some(with_usage);
                self.strip_usage_chunk = true;
            }
        }
        let rewritten_here = rewritten.is_some();
        let new_body = match rewritten {
            Some(new_body) => Some(new_body),
            None if guarded_changed => Some(std::mem::take(&mut body)),
            None => None,
        };
        if let Some(new_body) = &new_body {
            let required = self.served_by.is_some() || self.translation.is_some() || guarded_changed;
            if !self.replace_request_body(io, held, new_body) && required {
                // The routed model, translation or masking is not in the body: the provider would
                // get a request it was not meant to get.
                return self.fail(io, api, "request_body_not_replaced");
            }
        }
        if !self.count_tokens {
            // Last, once the request is what the provider gets: counting generates nothing.
            // The prompt is counted in the client's dialect (the body before routing rewrote it).
            let client_body = if rewritten_here { &body } else { new_body.as_ref().unwrap_or(&body) };
            if let Some(flow) = self.reserve_budget(io, &request, client_body) {
                return flow;
            }
        }
        Flow::Continue
    }

    /// The smallest limit the prompt's tokens are compared with (a context window, a guardrail's
    /// `max_prompt_tokens`); `None` when nothing compares them, and then they are not estimated.
    /// A prompt whose upper bound is within it is not counted (counting costs time).
    fn prompt_token_limit(&self) -> Option<u64> {
        let routing = self.policy.routing.smallest_context_window();
        let guardrails = self.policy.guardrails.smallest_prompt_token_limit();
        routing.into_iter().chain(guardrails).min()
    }

    /// The failure mode of this request's route.
    pub(super) fn failure_mode(&self, io: &mut dyn HostIo) -> FailureMode {
        let failure = &self.policy.failure;
        let route = if failure.by_route() { io.route_name() } else { None };
        failure.mode_for(route.as_deref())
    }

    /// The filter cannot do its job on this request: pass it on untouched (open) or refuse it
    /// with a 5xx in the client's dialect (closed), as the route's `failure_mode` says.
    pub(super) fn fail(&mut self, io: &mut dyn HostIo, api: Api, reason: &str) -> Flow {
        self.request = RequestPhase::Done;
        match self.failure_mode(io) {
            FailureMode::Open => {
                io.increment(Counter::RequestsFailedOpen);
                log::error!("#{} failed_open reason={reason}", self.id);
                Flow::Continue
            }
            FailureMode::Closed => {
                log::error!("#{} failed_closed reason={reason}", self.id);
                let message = "The gateway could not process this request.";
                let flow = self.send(io, api.error_reply(500, "gateway_error", None, message));
                self.count_failed_closed(io);
                flow
            }
        }
    }

    /// A request failed closed is counted once: by `send_with` when even the refusal could not
    /// be sent, else here.
    fn count_failed_closed(&self, io: &mut dyn HostIo) {
        if self.replied_locally {
            io.increment(Counter::RequestsFailedClosed);
        }
    }

    /// Client-sent headers with Tollgate's prefix could not be removed (or listed): always
    /// closed, whatever `failure_mode` says, since they could pick a cluster or spoof a tenant.
    pub(super) fn refuse_unstripped(&mut self, io: &mut dyn HostIo, api: Api) -> Flow {
        self.request = RequestPhase::Done;
        let message = "The gateway could not process this request.";
        let flow = self.send(io, api.error_reply(500, "gateway_error", None, message));
        self.count_failed_closed(io);
        flow
    }

    /// A request with a body to an API path, sent with another method than POST.
    pub(super) fn refuse_method(&mut self, io: &mut dyn HostIo, api: Api) -> Flow {
        self.request = RequestPhase::Done;
        io.increment(Counter::RequestsRejectedInvalidBody);
        log::debug!("#{} request_rejected reason=method", self.id);
        let reply = api.error_reply(405, "method_not_allowed", None, "This API takes requests with a body as POST.");
        self.send_with(io, reply, &[("allow", "POST")])
    }

    /// A compressed request body (`Content-Encoding` other than `identity`).
    pub(super) fn refuse_encoding(&mut self, io: &mut dyn HostIo, api: Api) -> Flow {
        self.request = RequestPhase::Done;
        io.increment(Counter::RequestsRejectedInvalidBody);
        log::debug!("#{} request_rejected reason=content_encoding", self.id);
        let message = "Compressed request bodies are not accepted: send the body without Content-Encoding.";
        self.send(io, api.error_reply(415, "unsupported_content_encoding", None, message))
    }

    /// Reads who the request is for before anything (credentials included) is rewritten.
    fn attribute(&mut self, io: &mut dyn HostIo) {
        let policy = Rc::clone(&self.policy);
        let io_ref: &dyn HostIo = io;
        let id = self.id;
        let header = |name: &str| header_bytes(id, io_ref, name);
        let metadata = |path: &[String]| io_ref.metadata_value(path);
        self.attribution = policy.tenant.attribute(&header, &metadata);
        if policy.budgets.needs_client_key() {
            self.client_key = crate::tenant::client_key_hash(&header);
        }
        if self.attribution.rejected {
            io.increment(Counter::AttributionRejected);
            log::debug!("#{} attribution_rejected", self.id);
        }
    }

    pub(super) fn decide_route(&self, io: &mut dyn HostIo, request: &CanonicalRequest, prompt_tokens: u64) -> Decision {
        let routing = &self.policy.routing;
        if routing.is_empty() {
            return Decision::Untouched;
        }
        let route = if routing.needs_route_name() { io.route_name() } else { None };
        // The request's start time is as random as a new clock read, and costs no hostcall.
        let random = routing::stable_hash(&(self.started_at ^ u64::from(self.id)).to_le_bytes());
        let io: &dyn HostIo = io;
        let header = |name: &str| header_bytes(self.id, io, name);
        routing.decide(&RoutingInput {
            model: request.model.as_deref(),
            route: route.as_deref(),
            header: &header,
            tenant: self.attribution.tenant.as_deref(),
            prompt_tokens,
            random,
        })
    }

    /// Sends the request to the chosen target: its model in the body, its path, its
    /// credentials (replacing the client's), its cluster. Returns the rewritten body, if any.
    pub(super) fn apply_route(
        &mut self,
        io: &mut dyn HostIo,
        incoming: &Incoming,
        chain: &[usize],
        rule: &str,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let Incoming { request, body } = *incoming;
        let api = request.api;
        let policy = Rc::clone(&self.policy);
        let routing = &policy.routing;
        let (target, provider) = chain
            .first()
            .and_then(|i| routing.target(*i))
            .and_then(|t| Some((t, routing.provider_of(t)?)))
            .ok_or_else(routing_error)?;
        let query = client_query(io)?;
        let mut planned = provider_request::plan(
            api,
            provider,
            target.model.as_deref(),
            request.model.as_deref(),
            body,
            query.as_deref(),
            policy.default_max_tokens,
        )?;
        if self.count_tokens {
            planned.path = provider_request::count_tokens_path(&planned.path);
        }
        let applied = provider_request::apply_headers(io, provider, &planned.path, api, None).and_then(|removed| {
            io.route_to(&policy.headers.cluster, &provider.cluster)
                .map(|()| removed)
                .map_err(|_| vec!["cluster".into()])
        });
        let removed = match applied {
            Ok(removed) => removed,
            Err(refused) => {
                // Never log header values: they may be credentials.
                log::error!("#{} route_not_applied headers={}", self.id, refused.join(","));
                return Err(routing_error());
            }
        };
        if !removed.is_empty() {
            log::debug!("#{} headers_not_for_provider removed={}", self.id, removed.join(","));
        }
        log::debug!(
            "#{} routed rule={rule} target={} provider={} model={}",
            self.id,
            target.name,
            provider.name,
            planned.model
        );
        if !planned.notes.is_empty() {
            // What translation dropped or changed (never any text), so it is not lost unseen.
            log::debug!("#{} translation_notes direction=request notes={}", self.id, planned.notes.join("; "));
        }
        self.served_by = Some(ServedBy { provider: provider.name.clone(), model: planned.model });
        self.translation = planned.translation;
        Ok(planned.body)
    }

    /// Whether a count_tokens request routed to `chain` is answered by Tollgate: its first
    /// target's provider has no such endpoint (OpenAI and compatible servers do not).
    fn counts_locally(&self, chain: &[usize]) -> bool {
        let routing = &self.policy.routing;
        let provider = chain.first().and_then(|i| routing.target(*i)).and_then(|t| routing.provider_of(t));
        provider.is_some_and(|p| p.dialect != Dialect::Anthropic)
    }

    /// Anthropic's count_tokens for a model an OpenAI-compatible provider serves: answered here,
    /// `{"input_tokens": N}` as Anthropic's API answers, N the prompt as that provider would count
    /// it (the request translated to Chat Completions, counted by OpenAI's rules with the
    /// model's tokenizer), and `x-tollgate-estimated: true` to say whose count it is.
    fn count_locally(&mut self, io: &mut dyn HostIo, incoming: &Incoming, chain: &[usize], rule: &str) -> Flow {
        let Incoming { request, body } = *incoming;
        let api = request.api;
        let policy = Rc::clone(&self.policy);
        let routing = &policy.routing;
        let Some((target, provider)) =
            chain.first().and_then(|i| routing.target(*i)).and_then(|t| Some((t, routing.provider_of(t)?)))
        else {
            let refusal = routing_error();
            return self.send(io, api.error_reply(refusal.status, refusal.code, None, &refusal.message));
        };
        let planned = provider_request::plan(
            api,
            provider,
            target.model.as_deref(),
            request.model.as_deref(),
            body,
            None,
            policy.default_max_tokens,
        );
        let planned = match planned {
            Ok(planned) => planned,
            // What the provider could not be asked, it cannot count either: the same 400.
            Err(refusal) => {
                return self.send(io, api.error_reply(refusal.status, refusal.code, None, &refusal.message))
            }
        };
        let translated = planned.body.as_deref().unwrap_or(body);
        let tokens = estimate::request_tokens(Api::OpenAiChat, &planned.model, translated, None);
        log::debug!(
            "#{} count_tokens_estimated rule={rule} target={} model={} tokens={tokens}",
            self.id,
            target.name,
            planned.model
        );
        let reply = Reply { status: 200, body: format!("{{\"input_tokens\":{tokens}}}").into_bytes() };
        let headers = &policy.headers;
        let extra = [
            (headers.estimated.as_str(), "true"),
            (headers.provider.as_str(), provider.name.as_str()),
            (headers.model.as_str(), planned.model.as_str()),
        ];
        self.send_with(io, reply, &extra)
    }

    /// Sends the request to an Envoy aggregate cluster whose retries walk the chain; Tollgate's
    /// upstream filter adapts each attempt from the plan left in filter state. Every provider
    /// must be able to serve the request: an attempt cannot be skipped once Envoy makes it.
    pub(super) fn apply_chain(
        &mut self,
        io: &mut dyn HostIo,
        incoming: &Incoming,
        chain: &[usize],
        cluster: &str,
        rule: &str,
    ) -> Result<(), Refusal> {
        let Incoming { request, body } = *incoming;
        let api = request.api;
        let policy = Rc::clone(&self.policy);
        let routing = &policy.routing;
        let mut steps = Vec::new();
        for target in chain.iter().filter_map(|i| routing.target(*i)) {
            let provider = routing.provider_of(target).ok_or_else(routing_error)?;
            // Validate now, while a clear error can still reach the client.
            let max_tokens = policy.default_max_tokens;
            provider_request::plan(
                api,
                provider,
                target.model.as_deref(),
                request.model.as_deref(),
                body,
                None,
                max_tokens,
            )?;
            let model = target.model.clone().or_else(|| request.model.clone()).unwrap_or_default();
            steps.push(ChainStep { provider: provider.name.clone(), model });
        }
        let headers = provider_request::client_dialect_headers(io);
        let plan = ChainPlan { api: api.name().to_string(), query: client_query(io)?, headers, steps };
        if let Err(err) = io.export_required(names::EXPORT_CHAIN, &plan.to_json()) {
            // Without the plan every attempt would reach its provider unprepared.
            log::error!("#{} chain_plan_not_exported detail={}", self.id, err.detail);
            return Err(routing_error());
        }
        for name in ["authorization", "x-api-key", "api-key"] {
            if io.request_header(name).is_some() && io.clear_request_header(name).is_err() {
                log::error!("#{} client_credential_not_removed header={name}", self.id);
                return Err(routing_error());
            }
        }
        if io.route_to(&policy.headers.cluster, cluster).is_err() {
            log::error!("#{} route_not_applied headers=cluster", self.id);
            return Err(routing_error());
        }
        log::debug!("#{} routed rule={rule} fallback_cluster={cluster} steps={}", self.id, plan.steps.len());
        self.chain = Some(plan);
        Ok(())
    }

    /// False when the proxy refused the new body (the original goes on).
    pub(super) fn replace_request_body(&mut self, io: &mut dyn HostIo, held: usize, new_body: &[u8]) -> bool {
        let replaced =
            io.replace_request_body(held, new_body).and_then(|()| match io.request_header("content-length") {
                Some(_) => io.set_request_header("content-length", &new_body.len().to_string()),
                None => Ok(()),
            });
        if let Err(err) = replaced {
            log::warn!("#{} request_body_not_replaced detail={}", self.id, err.detail);
            self.strip_usage_chunk = false;
            return false;
        }
        true
    }

    pub(super) fn reject_too_large(&mut self, io: &mut dyn HostIo, api: Api) -> Flow {
        self.request = RequestPhase::Done;
        io.increment(Counter::RequestsRejectedTooLarge);
        log::debug!("#{} request_rejected reason=too_large limit={}", self.id, self.policy.max_request_body_bytes);
        let message = format!(
            "The request body is larger than this gateway accepts ({} bytes).",
            self.policy.max_request_body_bytes
        );
        self.send(io, api.error_reply(413, "request_too_large", None, &message))
    }

    /// Kong (nginx) wrote a body longer than its `client_body_buffer_size` to a file, which the
    /// filter cannot read (probe fact 9): the limit that was hit is the host's, named as the
    /// setting that raises it.
    fn reject_spilled(&mut self, io: &mut dyn HostIo, api: Api, size: usize) -> Flow {
        self.request = RequestPhase::Done;
        io.increment(Counter::RequestsRejectedTooLarge);
        let message = format!(
            "The request body ({size} bytes) is larger than Kong keeps in memory for the gateway to read: \
             raise nginx_http_client_body_buffer_size (kong.conf) to at least {} bytes.",
            self.policy.max_request_body_bytes
        );
        self.send(io, api.error_reply(413, "request_too_large", None, &message))
    }

    pub(super) fn send(&mut self, io: &mut dyn HostIo, reply: Reply) -> Flow {
        self.send_with(io, reply, &[])
    }

    pub(super) fn send_with(&mut self, io: &mut dyn HostIo, reply: Reply, extra: &[(&str, &str)]) -> Flow {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(extra);
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
                self.request = RequestPhase::Done;
                // Nothing can answer the client; what remains is whether the request goes on.
                match self.failure_mode(io) {
                    FailureMode::Open => {
                        io.increment(Counter::RequestsFailedOpen);
                        Flow::Continue
                    }
                    FailureMode::Closed => {
                        // Held, it never reaches the upstream; the proxy's timeouts end it.
                        io.increment(Counter::RequestsFailedClosed);
                        Flow::Pause
                    }
                }
            }
        }
    }
}

/// The request as read: what it asks for (its API included), and its bytes.
#[derive(Clone, Copy)]
pub(super) struct Incoming<'a> {
    request: &'a CanonicalRequest,
    body: &'a [u8],
}

fn routing_error() -> Refusal {
    Refusal { status: 500, code: "routing_error", message: "The gateway could not route this request.".into() }
}

/// The query string the client sent, copied byte for byte into the provider's path. One that
/// is not UTF-8 (raw bytes, which a URL may not hold: Envoy refuses such a request line itself,
/// nginx lets it through) is refused rather than forwarded altered.
fn client_query(io: &dyn HostIo) -> Result<Option<String>, Refusal> {
    let path = io.request_header_bytes(":path").map_err(|_| routing_error())?.unwrap_or_default();
    let Some(at) = path.iter().position(|&b| b == b'?') else { return Ok(None) };
    let query = path.get(at + 1..).unwrap_or_default().to_vec();
    String::from_utf8(query).map(Some).map_err(|_| Refusal {
        status: 400,
        code: "invalid_request",
        message: "The query string is not UTF-8: percent-encode its bytes.".into(),
    })
}

/// A request header as the client sent it; a read the proxy refuses is absent, and logged.
fn header_bytes(id: u32, io: &dyn HostIo, name: &str) -> Option<Vec<u8>> {
    io.request_header_bytes(name).unwrap_or_else(|err| {
        log::warn!("#{id} request_header_unreadable name={name} detail={}", err.detail);
        None
    })
}
