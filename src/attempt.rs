//! One upstream attempt, for Tollgate running as an Envoy upstream HTTP filter on an aggregate
//! cluster (see docs/fallback.md). Envoy's retries walk the chain; for each attempt this sets
//! the request up for the provider the attempt goes to: its model, its path, its credentials.
//!
//! Envoy gives every attempt the original body but the *previous attempt's* headers, so the path
//! is set outright and every credential header is removed before this provider's is set. The
//! plan comes from filter state, written once by the downstream filter.
//!
//! An attempt that cannot be prepared never goes on as the previous attempt left it (that
//! would send the previous provider's path, and perhaps its key, to this provider's host): it
//! follows the route's `failure_mode`, like the downstream filter.

use std::rc::Rc;

use crate::chain::{ChainPlan, ChainStep};
use crate::config::{FailureMode, Policy};
use crate::dialect::Api;
use crate::host_io::{Flow, HostIo};
use crate::names::{self, Counter};
use crate::provider_request::{self, Translation};
use crate::response_translation::{self, StreamTranslation};
use crate::routing::Provider;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitingHeaders,
    /// Not a Tollgate chain, or nothing to do: everything continues.
    PassThrough,
    ReadingBody {
        size: usize,
    },
    Done,
}

/// What happens to this attempt's answer.
enum Answer {
    /// Same dialect, or an error status: it goes to the client as the provider sent it.
    AsIs,
    /// A stream translated into the client's dialect, chunk by chunk.
    Streaming(Box<StreamTranslation>),
    /// A complete answer held (headers too) until it can be translated whole.
    Buffering { size: usize },
}

/// This attempt's part of the plan: the client's API, query and dialect headers, and its step.
#[derive(Clone)]
struct Step {
    api: Api,
    query: Option<String>,
    headers: Vec<(String, String)>,
    step: ChainStep,
}

pub struct Attempt {
    id: u32,
    policy: Rc<Policy>,
    phase: Phase,
    plan: Option<Step>,
    /// Set when this attempt's provider speaks the other dialect.
    translation: Option<Translation>,
    include_usage: bool,
    answer: Answer,
}

impl Attempt {
    pub fn new(id: u32, policy: Rc<Policy>) -> Self {
        Attempt {
            id,
            policy,
            phase: Phase::AwaitingHeaders,
            plan: None,
            translation: None,
            include_usage: false,
            answer: Answer::AsIs,
        }
    }

    pub fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        self.phase = Phase::PassThrough;
        // No plan: the downstream filter did not send this request down a chain.
        let Some(exported) = io.read_state(names::EXPORT_CHAIN) else {
            return Flow::Continue;
        };
        let Some(plan) = ChainPlan::from_json(&exported) else {
            log::error!("#{} attempt_plan_unreadable", self.id);
            let api = io.request_header(":path").and_then(|p| Api::detect_path(&p)).unwrap_or(Api::OpenAiChat);
            return self.fail(io, api, None, "attempt_plan_unreadable");
        };
        let api = api_named(&plan.api).unwrap_or(Api::OpenAiChat);
        let Some(provider) = io.upstream_provider() else {
            log::error!("#{} attempt_without_provider_metadata", self.id);
            return self.fail(io, api, None, "attempt_without_provider_metadata");
        };
        let (Some(step), Some(api)) = (plan.step_for(&provider), api_named(&plan.api)) else {
            log::error!("#{} attempt_provider_not_in_chain provider={provider}", self.id);
            return self.fail(io, api, None, "attempt_provider_not_in_chain");
        };
        self.plan = Some(Step { api, query: plan.query.clone(), headers: plan.headers.clone(), step: step.clone() });
        if end_of_stream {
            return self.finish(io, 0);
        }
        // Hold the headers: content-length can only be corrected while they are held.
        self.phase = Phase::ReadingBody { size: 0 };
        Flow::Pause
    }

    pub fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        if !matches!(self.phase, Phase::ReadingBody { .. }) {
            return Flow::Continue;
        }
        self.phase = Phase::ReadingBody { size: body_size };
        if !end_of_stream {
            return Flow::Pause;
        }
        self.finish(io, body_size)
    }

    pub fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match self.phase {
            Phase::ReadingBody { size } => self.finish(io, size),
            _ => Flow::Continue,
        }
    }

    fn finish(&mut self, io: &mut dyn HostIo, size: usize) -> Flow {
        self.phase = Phase::Done;
        let Some(Step { api, query, headers, step }) = self.plan.clone() else { return Flow::Continue };
        let policy = Rc::clone(&self.policy);
        let Some(provider) = policy.routing.providers.iter().find(|p| p.name == step.provider) else {
            log::error!("#{} attempt_provider_not_configured provider={}", self.id, step.provider);
            return self.fail(io, api, None, "attempt_provider_not_configured");
        };
        let target = For { provider, model: &step.model, query: query.as_deref(), headers: &headers };
        let body = if size == 0 { Some(Vec::new()) } else { io.request_body(0, size) };
        let Some(body) = body else {
            log::error!("#{} attempt_body_unreadable provider={} bytes={size}", self.id, provider.name);
            return self.fail(io, api, Some(target), "attempt_body_unreadable");
        };
        match self.prepare(io, api, &target, &body) {
            Ok(()) => Flow::Continue,
            Err(reason) => {
                log::error!("#{} attempt_not_prepared provider={} reason={reason}", self.id, provider.name);
                self.fail(io, api, Some(target), "attempt_not_prepared")
            }
        }
    }

    /// The attempt cannot be prepared for its provider. Closed: a 500 in the client's dialect
    /// (it goes straight to the client, Envoy does not retry a local reply). Open: the attempt
    /// goes on with the client's body, but addressed to this provider (its path, only its
    /// credentials) when it is known, or with no credential at all when it is not, never with
    /// what the previous attempt left. Counted either way.
    fn fail(&mut self, io: &mut dyn HostIo, api: Api, provider: Option<For>, reason: &str) -> Flow {
        self.phase = Phase::Done;
        let failure = &self.policy.failure;
        let route = if failure.by_route() { io.route_name() } else { None };
        match failure.mode_for(route.as_deref()) {
            FailureMode::Open => {
                io.increment(Counter::RequestsFailedOpen);
                log::error!("#{} failed_open reason={reason}", self.id);
                let addressed = match provider {
                    Some(For { provider, model, query, headers }) => {
                        let path = provider_request::path(api, provider, model, query);
                        provider_request::apply_headers(io, provider, &path, api, Some(headers)).map(|_| ())
                    }
                    None => provider_request::remove_credentials(io),
                };
                if let Err(refused) = addressed {
                    log::error!("#{} attempt_headers_not_applied headers={}", self.id, refused.join(","));
                }
                Flow::Continue
            }
            FailureMode::Closed => {
                io.increment(Counter::RequestsFailedClosed);
                log::error!("#{} failed_closed reason={reason}", self.id);
                let reply = api.error_reply(500, "gateway_error", None, "The gateway could not process this request.");
                if let Err(err) = io.send_reply(reply.status, &[("content-type", "application/json")], &reply.body) {
                    // Held, it never reaches a provider unprepared; Envoy's timeouts end it.
                    log::error!("#{} local_reply_failed status=500 detail={}", self.id, err.detail);
                }
                Flow::Pause
            }
        }
    }

    fn prepare(&mut self, io: &mut dyn HostIo, api: Api, target: &For, body: &[u8]) -> Result<(), String> {
        let For { provider, model, query, headers } = *target;
        // The body always arrives as the client sent it, so its model is the client's.
        let request = crate::dialect::parse_request(api, body).ok();
        let requested = request.as_ref().and_then(|r| r.model.clone());
        self.include_usage = request.is_some_and(|r| r.include_usage);
        let max_tokens = self.policy.default_max_tokens;
        let planned = provider_request::plan(api, provider, Some(model), requested.as_deref(), body, query, max_tokens)
            .map_err(|refusal| refusal.message)?;
        provider_request::apply_headers(io, provider, &planned.path, api, Some(headers))
            .map_err(|refused| format!("headers refused: {}", refused.join(",")))?;
        if let Some(new_body) = planned.body {
            io.replace_request_body(body.len(), &new_body).map_err(|e| e.detail)?;
            if io.request_header("content-length").is_some() {
                io.set_request_header("content-length", &new_body.len().to_string()).map_err(|e| e.detail)?;
            }
        }
        log::debug!("#{} attempt provider={} model={}", self.id, provider.name, planned.model);
        if !planned.notes.is_empty() {
            log::debug!("#{} translation_notes direction=request notes={}", self.id, planned.notes.join("; "));
        }
        self.translation = planned.translation;
        Ok(())
    }

    pub fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        let Some(translation) = self.translation else {
            return Flow::Continue;
        };
        let status = io.response_header(":status").and_then(|s| s.parse::<u16>().ok());
        // Errors stay as the provider sent them: holding a retriable error's headers could keep
        // Envoy from retrying it. Its status still tells the client's SDK what happened.
        if end_of_stream || !status.is_some_and(|s| (200..300).contains(&s)) {
            return Flow::Continue;
        }
        if io.response_header("content-length").is_some() && io.remove_response_header("content-length").is_err() {
            log::warn!("#{} attempt_content_length_not_removed", self.id);
        }
        let content_type = io.response_header("content-type").unwrap_or_default().to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            // Not held: holding a stream's headers would keep Envoy's per-try timer running.
            let created = io.now_nanos() / 1_000_000_000;
            let max = self.policy.max_stream_event_bytes;
            self.answer =
                Answer::Streaming(Box::new(StreamTranslation::new(translation, self.include_usage, created, max)));
            return Flow::Continue;
        }
        self.answer = Answer::Buffering { size: 0 };
        Flow::Pause
    }

    pub fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        let Some(translation) = self.translation else {
            return Flow::Continue;
        };
        match &mut self.answer {
            Answer::AsIs => Flow::Continue,
            Answer::Streaming(..) => {
                self.stream_chunk(io, body_size, end_of_stream);
                Flow::Continue
            }
            Answer::Buffering { size } => {
                *size = body_size;
                if !end_of_stream {
                    return Flow::Pause;
                }
                self.finish_answer(io, translation, body_size);
                Flow::Continue
            }
        }
    }

    /// An upstream that ends its answer with trailers (HTTP/2) never flags end of stream on a
    /// body callback: the trailers end it, so a translated stream still gets its closing
    /// events and a held answer is still translated.
    pub fn on_response_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        let Some(translation) = self.translation else {
            return Flow::Continue;
        };
        match self.answer {
            Answer::AsIs => {}
            Answer::Streaming(..) => self.stream_chunk(io, 0, true),
            Answer::Buffering { size } => self.finish_answer(io, translation, size),
        }
        Flow::Continue
    }

    fn stream_chunk(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) {
        let Answer::Streaming(translator) = &mut self.answer else { return };
        let chunk = if body_size == 0 { Some(Vec::new()) } else { io.response_body(0, body_size) };
        let out = match chunk {
            Some(chunk) => {
                let mut out = translator.feed(&chunk);
                if end_of_stream {
                    out.extend(translator.finish());
                }
                out
            }
            None => {
                // Translating nothing in its place would leave a hole in the client's stream,
                // and passing it on would put the provider's dialect in it: end it, visibly
                // (as the downstream filter does with a stream chunk it cannot read).
                io.increment(Counter::ResponsesNotInspected);
                log::error!("#{} failed_closed reason=attempt_chunk_unreadable bytes={body_size}", self.id);
                translator.end_with_error("The gateway could not read the provider's stream.")
            }
        };
        if translator.unreadable() > 0 && end_of_stream {
            io.increment(Counter::StreamEventsUntranslatable);
            log::warn!("#{} stream_event_untranslatable count={}", self.id, translator.unreadable());
        }
        if end_of_stream && !translator.notes().is_empty() {
            log::debug!("#{} translation_notes direction=response notes={}", self.id, translator.notes().join("; "));
        }
        if let Err(err) = io.replace_response_body(body_size, &out) {
            io.increment(Counter::ResponsesNotRewritten);
            log::warn!("#{} attempt_chunk_not_translated detail={}", self.id, err.detail);
        }
    }

    fn finish_answer(&mut self, io: &mut dyn HostIo, translation: Translation, size: usize) {
        self.answer = Answer::AsIs;
        let body = if size == 0 { Some(Vec::new()) } else { io.response_body(0, size) };
        let Some(body) = body else {
            // It cannot be translated: as the downstream filter does, by the route's failure
            // mode, a 500 in the client's dialect (closed) or the provider's answer as sent (open).
            io.increment(Counter::ResponsesNotInspected);
            let failure = &self.policy.failure;
            let route = if failure.by_route() { io.route_name() } else { None };
            if failure.mode_for(route.as_deref()) == FailureMode::Open {
                log::error!("#{} failed_open reason=attempt_answer_unreadable bytes={size}", self.id);
                return;
            }
            log::error!("#{} failed_closed reason=attempt_answer_unreadable bytes={size}", self.id);
            let api = self.plan.as_ref().map_or(Api::OpenAiChat, |plan| plan.api);
            let reply = api.error_reply(500, "gateway_error", None, "The gateway could not read the answer.");
            self.replace_answer(io, size, Some(reply.status), &reply.body);
            return;
        };
        let created = io.now_nanos() / 1_000_000_000;
        match response_translation::translate_answer(translation, &body, created) {
            Ok(translated) => {
                if !translated.notes.is_empty() {
                    log::debug!(
                        "#{} translation_notes direction=response notes={}",
                        self.id,
                        translated.notes.join("; ")
                    );
                }
                self.replace_answer(io, size, None, &translated.body);
            }
            Err(err) => log::warn!("#{} attempt_answer_not_translated reason={err}", self.id),
        }
    }

    fn replace_answer(&self, io: &mut dyn HostIo, size: usize, status: Option<u16>, body: &[u8]) {
        let replaced = io.replace_response_body(size, body).and_then(|()| {
            if let Some(status) = status {
                io.set_response_header(":status", &status.to_string())?;
            }
            io.set_response_header("content-length", &body.len().to_string())
        });
        if let Err(err) = replaced {
            io.increment(Counter::ResponsesNotRewritten);
            log::warn!("#{} attempt_answer_not_replaced detail={}", self.id, err.detail);
        }
    }
}

/// Who an attempt is for, once its provider is known: what addresses the request to it.
#[derive(Clone, Copy)]
struct For<'a> {
    provider: &'a Provider,
    model: &'a str,
    query: Option<&'a str>,
    headers: &'a [(String, String)],
}

fn api_named(name: &str) -> Option<Api> {
    [Api::OpenAiChat, Api::OpenAiResponses, Api::OpenAiEmbeddings, Api::AnthropicMessages]
        .into_iter()
        .find(|a| a.name() == name)
}
