//! The guardrails in an exchange: the request checked once its body is read (refused, or
//! forwarded masked and clamped), and the response checked on its way to the client. The checks
//! themselves live in `crate::guardrails`; this maps their verdicts onto the host.

use std::rc::Rc;

use super::{Exchange, RequestPhase};
use crate::config::FailureMode;
use crate::dialect::text::RequestText;
use crate::dialect::{Api, CanonicalRequest};
use crate::guardrails::stream::StreamGuard;
use crate::guardrails::{Action, Block, Decision, Phase, RequestInput};
use crate::host_io::{Flow, HostIo};
use crate::names::{self, Counter};
use crate::usage::BlockedBy;

impl Exchange {
    /// Whether a guardrail policy applies to this request (then its text is read for the checks).
    pub(super) fn guarding(&self, io: &mut dyn HostIo) -> Option<Guarding> {
        let guardrails = &self.policy.guardrails;
        if guardrails.is_empty() {
            return None;
        }
        let route = if guardrails.needs_route_name() { io.route_name() } else { None };
        guardrails.applies_to(route.as_deref()).then_some(Guarding { route })
    }

    /// Runs the request checks on the request's text (read by the caller, shared with the token
    /// estimate). Returns the body the guardrails rewrote (masked, clamped), if they did; `Err`
    /// carries the flow of the reply that refused the request.
    pub(super) fn guard_request(
        &mut self,
        io: &mut dyn HostIo,
        request: &CanonicalRequest,
        guarding: Option<Guarding>,
        text: Option<&RequestText<'_>>,
        prompt_tokens: u64,
    ) -> Result<Option<Vec<u8>>, Flow> {
        let Some(Guarding { route }) = guarding else { return Ok(None) };
        let guardrails = Rc::clone(&self.policy.guardrails);
        let api = request.api;
        let routing = &self.policy.routing;
        let model_allowed = |model: &str| routing.model_allowed(model);
        let outcome = guardrails.check_request(&RequestInput {
            request,
            text,
            route: route.as_deref(),
            prompt_tokens,
            model_allowed: Some(&model_allowed),
        });
        self.guardrails.decisions.extend(outcome.decisions);
        if let Some(block) = outcome.block {
            io.increment(Counter::RequestsBlockedByGuardrails);
            log::debug!("#{} request_blocked policy={} check={}", self.id, block.policy, block.check);
            self.note_block(&block, Phase::Request);
            self.request = RequestPhase::Done;
            return Err(self.send(io, api.error_reply(block.status, &block.code, None, &block.message)));
        }
        self.flag_upstream(io);
        self.guard = outcome.response;
        if self.guard.is_some() {
            let closed = self.failure_mode(io) == FailureMode::Closed;
            if let Some(guard) = &mut self.guard {
                guard.fail_closed(closed);
            }
        }
        Ok(outcome.body)
    }

    /// `flag` findings travel to the upstream as one header naming the policies and checks
    /// (never the text), so services behind the proxy can act on them.
    fn flag_upstream(&mut self, io: &mut dyn HostIo) {
        let mut flagged: Vec<String> = Vec::new();
        for decision in self.guardrails.decisions.iter().filter(|d| d.action == Action::Flag && !d.shadow) {
            let name = format!("{}/{}", decision.policy, decision.check);
            if !flagged.contains(&name) {
                flagged.push(name);
            }
        }
        if flagged.is_empty() {
            return;
        }
        let header = format!("{}{}", self.policy.headers.prefix, names::HEADER_GUARDRAIL_FLAGS);
        if let Err(err) = io.set_request_header(&header, &flagged.join(",")) {
            log::warn!("#{} guardrail_flags_not_set detail={}", self.id, err.detail);
        }
    }

    pub(super) fn note_block(&mut self, block: &Block, phase: Phase) {
        if self.guardrails.blocked_by.is_none() {
            self.guardrails.blocked_by =
                Some(BlockedBy { policy: block.policy.clone(), check: block.check.clone(), phase: phase.name() });
        }
    }

    /// Checks a complete, non-streamed response as the client is about to get it. Returns the
    /// bytes to send instead (masked, restored, or the block's error), if any change.
    /// `layout`: the dialect the body is in (the client's, unless translation failed).
    pub(super) fn guard_response_body(
        &mut self,
        io: &mut dyn HostIo,
        api: Api,
        layout: Api,
        client_body: &[u8],
    ) -> Option<Replacement> {
        let guard = self.guard.as_ref()?;
        let outcome = guard.check_body_in(layout, client_body);
        self.guardrails.decisions.extend(outcome.decisions);
        self.note_unreadable_texts(io, outcome.unreadable, outcome.block.is_some());
        if let Some(block) = outcome.block {
            io.increment(Counter::ResponsesBlockedByGuardrails);
            log::debug!("#{} response_blocked policy={} check={}", self.id, block.policy, block.check);
            self.note_block(&block, Phase::Response);
            let reply = api.error_reply(block.status, &block.code, None, &block.message);
            return Some(Replacement { status: Some(reply.status), body: reply.body });
        }
        outcome.body.map(|body| Replacement { status: None, body })
    }

    /// A stream the guard ended: counted once, when it happens.
    pub(super) fn note_stream_block(&mut self, io: &mut dyn HostIo, block: &Block) {
        if self.guardrails.blocked_by.is_none() {
            io.increment(Counter::ResponsesBlockedByGuardrails);
            log::debug!("#{} stream_blocked policy={} check={}", self.id, block.policy, block.check);
            self.note_block(block, Phase::Response);
        }
    }

    /// Answer texts the guardrails could not read: counted, and logged as the failure they are
    /// (`failed_closed` when the answer was refused for it, `failed_open` when it went on).
    pub(super) fn note_unreadable_texts(&self, io: &mut dyn HostIo, count: u32, refused: bool) {
        if count == 0 {
            return;
        }
        for _ in 0..count {
            io.increment(Counter::ResponseTextsUnreadable);
        }
        let mode = if refused { "failed_closed" } else { "failed_open" };
        log::error!("#{} {mode} reason=unreadable_answer_text count={count}", self.id);
    }

    /// A stream's decisions join the request's, once, when the stream is over; texts it could
    /// not read are counted then.
    pub(super) fn collect_stream_decisions(&mut self, io: &mut dyn HostIo, guard: Option<&StreamGuard>) {
        if let Some(guard) = guard {
            let decisions: Vec<Decision> = guard.decisions();
            self.guardrails.decisions.extend(decisions);
            let refused = guard.block().is_some_and(|b| b.check == "unreadable_text");
            self.note_unreadable_texts(io, guard.unreadable(), refused);
        }
    }
}

/// A request some guardrail policy applies to, and the route name that was decided on (read
/// only when a policy is limited to routes).
pub(super) struct Guarding {
    route: Option<String>,
}

/// A response body to send instead of the provider's, and the status to send it with.
pub(super) struct Replacement {
    pub status: Option<u16>,
    pub body: Vec<u8>,
}
