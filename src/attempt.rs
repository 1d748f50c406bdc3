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
use crate::provider_request;
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

pub struct Attempt {
    id: u32,
    policy: Rc<Policy>,
    phase: Phase,
    plan: Option<(Api, Option<String>, ChainStep)>,
}

impl Attempt {
    pub fn new(id: u32, policy: Rc<Policy>) -> Self {
        Attempt { id, policy, phase: Phase::AwaitingHeaders, plan: None }
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
        &self,
        io: &mut dyn HostIo,
        api: Api,
        provider: &Provider,
        step: &ChainStep,
        body: &[u8],
        query: Option<&str>,
    ) -> Result<(), String> {
        // The body always arrives as the client sent it, so its model is the client's.
        let requested = crate::dialect::parse_request(body).ok().and_then(|f| f.model);
        let planned = provider_request::plan(api, provider, Some(&step.model), requested.as_deref(), body, query)
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
        Ok(())
    }
}

fn api_named(name: &str) -> Option<Api> {
    [Api::OpenAiChat, Api::OpenAiResponses, Api::OpenAiEmbeddings, Api::AnthropicMessages]
        .into_iter()
        .find(|a| a.name() == name)
}
