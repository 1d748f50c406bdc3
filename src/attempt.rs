//! One upstream attempt, for Tollgate running as an Envoy upstream HTTP filter on an aggregate
//! cluster (see docs/fallback.md). Envoy's retries walk the chain; for each attempt this sets
//! the request up for the provider the attempt goes to: its model, its path, its credentials.
//!
//! Envoy gives every attempt the original body but the *previous attempt's* headers, so the path
//! is set outright and every credential header is removed before this provider's is set. The
//! plan comes from filter state, written once by the downstream filter.

use std::rc::Rc;

use crate::chain::{ChainPlan, ChainStep};
use crate::config::Policy;
use crate::dialect::Api;
use crate::host_io::{Flow, HostIo};
use crate::names;
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

pub struct Attempt {
    id: u32,
    policy: Rc<Policy>,
    phase: Phase,
    plan: Option<(Api, Option<String>, ChainStep)>,
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
        let Some(plan) = io.read_state(names::EXPORT_CHAIN).and_then(|s| ChainPlan::from_json(&s)) else {
            return Flow::Continue;
        };
        let Some(provider) = io.upstream_provider() else {
            log::error!("#{} attempt_without_provider_metadata", self.id);
            return Flow::Continue;
        };
        let (Some(step), Some(api)) = (plan.step_for(&provider), api_named(&plan.api)) else {
            log::error!("#{} attempt_provider_not_in_chain provider={provider}", self.id);
            return Flow::Continue;
        };
        self.plan = Some((api, plan.query.clone(), step.clone()));
        if end_of_stream {
            self.finish(io, 0);
            return Flow::Continue;
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
        self.finish(io, body_size);
        Flow::Continue
    }

    pub fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        if let Phase::ReadingBody { size } = self.phase {
            self.finish(io, size);
        }
        Flow::Continue
    }

    fn finish(&mut self, io: &mut dyn HostIo, size: usize) {
        self.phase = Phase::Done;
        let Some((api, query, step)) = self.plan.clone() else { return };
        let policy = Rc::clone(&self.policy);
        let Some(provider) = policy.routing.providers.iter().find(|p| p.name == step.provider) else {
            log::error!("#{} attempt_provider_not_configured provider={}", self.id, step.provider);
            return;
        };
        let body = if size == 0 { Vec::new() } else { io.request_body(0, size).unwrap_or_default() };
        if let Err(reason) = self.prepare(io, api, provider, &step, &body, query.as_deref()) {
            // The attempt goes on unchanged: its provider's error fails it over to the next one.
            log::error!("#{} attempt_not_prepared provider={} reason={reason}", self.id, provider.name);
        }
    }

    fn prepare(
        &mut self,
        io: &mut dyn HostIo,
        api: Api,
        provider: &Provider,
        step: &ChainStep,
        body: &[u8],
        query: Option<&str>,
    ) -> Result<(), String> {
        // The body always arrives as the client sent it, so its model is the client's.
        let request = crate::dialect::parse_request(api, body).ok();
        let requested = request.as_ref().and_then(|r| r.model.clone());
        self.include_usage = request.is_some_and(|r| r.include_usage);
        let max_tokens = self.policy.default_max_tokens;
        let planned =
            provider_request::plan(api, provider, Some(&step.model), requested.as_deref(), body, query, max_tokens)
                .map_err(|refusal| refusal.message)?;
        provider_request::apply_headers(io, provider, &planned.path, true)
            .map_err(|refused| format!("headers refused: {}", refused.join(",")))?;
        if let Some(new_body) = planned.body {
            io.replace_request_body(body.len(), &new_body).map_err(|e| e.detail)?;
            if io.request_header("content-length").is_some() {
                io.set_request_header("content-length", &new_body.len().to_string()).map_err(|e| e.detail)?;
            }
        }
        log::debug!("#{} attempt provider={} model={}", self.id, provider.name, planned.model);
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
            Answer::Streaming(translator) => {
                let chunk =
                    if body_size == 0 { Vec::new() } else { io.response_body(0, body_size).unwrap_or_default() };
                let mut out = translator.feed(&chunk);
                if end_of_stream {
                    out.extend(translator.finish());
                }
                if let Err(err) = io.replace_response_body(body_size, &out) {
                    log::warn!("#{} attempt_chunk_not_translated detail={}", self.id, err.detail);
                }
                Flow::Continue
            }
            Answer::Buffering { size } => {
                *size = body_size;
                if !end_of_stream {
                    return Flow::Pause;
                }
                self.answer = Answer::AsIs;
                let body = io.response_body(0, body_size).unwrap_or_default();
                let created = io.now_nanos() / 1_000_000_000;
                match response_translation::translate_body(translation, &body, created) {
                    Ok(translated) => {
                        let replaced = io
                            .replace_response_body(body_size, &translated)
                            .and_then(|()| io.set_response_header("content-length", &translated.len().to_string()));
                        if let Err(err) = replaced {
                            log::warn!("#{} attempt_answer_not_replaced detail={}", self.id, err.detail);
                        }
                    }
                    Err(err) => log::warn!("#{} attempt_answer_not_translated reason={err}", self.id),
                }
                Flow::Continue
            }
        }
    }
}

fn api_named(name: &str) -> Option<Api> {
    [Api::OpenAiChat, Api::OpenAiResponses, Api::OpenAiEmbeddings, Api::AnthropicMessages]
        .into_iter()
        .find(|a| a.name() == name)
}
