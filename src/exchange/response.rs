//! The response half of an exchange: what to hold, streams read as they flow, the usage record
//! and the cost headers.

use std::rc::Rc;

use super::budget;
use super::guard::Replacement;
use super::{Derailed, Exchange, ResponsePhase, ServedBy, Streaming};
use crate::config::FailureMode;
use crate::delivery;
use crate::dialect::Api;
use crate::estimate;
use crate::guardrails;
use crate::guardrails::ResponseGuard;
use crate::host_io::{HostIo, HostKind};
use crate::metrics;
use crate::names::{self, Counter};
use crate::provider_request::Translation;
use crate::response_translation::{self, StreamTranslation};
use crate::stream_meter::{ChunkEdit, StreamMeter};
use crate::usage::{Count, Outcome, TokenCounts, UsageRecord};

impl Exchange {
    pub(super) fn response_plan(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> ResponsePhase {
        // Our own local replies come back through the response callbacks too.
        if self.replied_locally {
            return ResponsePhase::Ignored;
        }
        let (Some(request), Some(api)) = (&self.canonical, self.api) else {
            return ResponsePhase::Ignored;
        };
        let stream_requested = request.stream;
        if let Some(plan) = &self.chain {
            // Only the final attempt's answer reaches this filter: credit the provider that gave it.
            if let Some(provider) = io.upstream_provider() {
                match plan.step_for(&provider) {
                    Some(step) => self.served_by = Some(ServedBy { provider, model: step.model.clone() }),
                    // Not one of the plan's providers: credit none rather than a model of "".
                    None => log::warn!("#{} served_by_unknown_provider provider={provider}", self.id),
                }
            }
        }
        let status = io.response_header(":status").and_then(|s| s.parse::<u16>().ok());
        self.status = status;
        let translation = self.translation;
        let upstream_api = translation.map_or(api, Translation::upstream_api);
        let include_usage = request.include_usage;
        let held_on_this_host = io.host_kind() == HostKind::Envoy;
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            self.record(io, TokenCounts::default(), None, Outcome::UpstreamError);
            if translation.is_some() && !end_of_stream {
                // The provider's error goes to the client in the client's dialect.
                self.drop_content_length(io);
                return ResponsePhase::Buffering {
                    headers_held: held_on_this_host,
                    paused_once: false,
                    size: 0,
                    error: true,
                };
            }
            return ResponsePhase::Ignored;
        }
        let content_type = io.response_header("content-type").unwrap_or_default().to_ascii_lowercase();
        // What the answer is, not what was asked for: a JSON answer to a stream request (an
        // upstream that ignores `stream`) is read, priced and guarded as the JSON it is.
        let json_answer = content_type.contains("json");
        if (stream_requested && !json_answer) || content_type.starts_with("text/event-stream") {
            let strip = self.strip_usage_chunk && api == Api::OpenAiChat && translation.is_none();
            let guard = self.guard.as_ref().map(ResponseGuard::stream);
            if strip || translation.is_some() || guard.is_some() {
                // Chunks change size: a declared length would no longer be true.
                self.drop_content_length(io);
            }
            let meter = StreamMeter::new(upstream_api, strip, self.policy.max_stream_event_bytes);
            let translator = translation
                .map(|t| StreamTranslation::new(t, include_usage, self.created(), self.policy.max_stream_event_bytes));
            let cut = self.stream_cut();
            return ResponsePhase::Streaming(Box::new(Streaming { meter, translator, guard, cut, derailed: None }));
        }
        if end_of_stream {
            self.record(io, TokenCounts::default(), None, Outcome::Complete);
            return ResponsePhase::Ignored;
        }
        let declared = io.response_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let too_large = declared.is_some_and(|len| len > self.policy.max_response_body_bytes as u64);
        // Guarded responses are read whatever their Content-Type says (a JSON body labelled
        // text/plain must not pass unchecked); what is not JSON passes unchanged.
        let not_json = !content_type.is_empty() && !content_type.contains("json") && self.guard.is_none();
        if too_large || not_json {
            io.increment(Counter::ResponsesNotInspected);
            log::debug!("#{} response_not_inspected too_large={too_large} not_json={not_json}", self.id);
            self.record(io, TokenCounts::default(), None, Outcome::Complete);
            return ResponsePhase::Ignored;
        }
        if translation.is_some() || (self.guard.is_some() && !held_on_this_host) {
            self.drop_content_length(io);
        }
        // Kong refuses Pause from response headers, and headers cannot change once the body has
        // started, so there the body is read for the record (and translated) only.
        ResponsePhase::Buffering { headers_held: held_on_this_host, paused_once: false, size: 0, error: false }
    }

    fn drop_content_length(&self, io: &mut dyn HostIo) {
        if io.response_header("content-length").is_some() {
            if let Err(err) = io.remove_response_header("content-length") {
                log::warn!("#{} remove_content_length_failed detail={}", self.id, err.detail);
            }
        }
    }

    pub(super) fn stream_chunk(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) {
        let ResponsePhase::Streaming(streaming) = &mut self.response else {
            return;
        };
        let chunk = if body_size == 0 { Some(Vec::new()) } else { io.response_body(0, body_size) };
        let mut edit = match (streaming.derailed, chunk) {
            (None, Some(chunk)) => self.run_stages(io, chunk, end_of_stream),
            (None, None) => self.derail_unread(io),
            (Some(Derailed::PassThrough), _) => None,
            (Some(Derailed::Ended), _) => Some(Vec::new()),
            (Some(Derailed::Cut), chunk) => {
                // The client's stream has ended; the provider's usage is still read.
                if let Some(chunk) = chunk {
                    streaming.meter.feed(&chunk);
                }
                if end_of_stream {
                    streaming.meter.finish();
                }
                Some(Vec::new())
            }
        };
        if end_of_stream {
            if let ResponsePhase::Streaming(streaming) = std::mem::replace(&mut self.response, ResponsePhase::Done) {
                self.collect_stream_decisions(io, streaming.guard.as_ref());
                self.note_untranslatable(io, streaming.translator.as_ref());
                let record = self.record_stream(io, &streaming.meter);
                if let (Some(out), Some(cut)) = (&mut edit, streaming.cut.as_ref()) {
                    // A cut Chat stream ends now, its usage (if asked) known: its client stayed
                    // until the provider's usage was read.
                    let count = |c: Option<Count>| c.map_or(0, |c| c.tokens);
                    out.extend(cut.at_the_providers_end(count(record.tokens.input), count(record.tokens.output)));
                }
                // The stream's cost, in-band at its very end: a comment line SSE parsers skip.
                // A stream that passes as the provider sends it gets nothing added.
                if let (Some(out), false) = (&mut edit, streaming.derailed == Some(Derailed::PassThrough)) {
                    out.extend(delivery::stream_comment(&record, self.policy.prices.version()));
                }
                self.add_cost_trailers(io, &record);
            }
        }
        if let Some(bytes) = edit {
            if let Err(err) = io.replace_response_body(body_size, &bytes) {
                io.increment(Counter::ResponsesNotRewritten);
                // The stages assumed their output went out: from here the provider's bytes pass
                // as they are, and the client's stream may be damaged where they held bytes.
                log::error!("#{} replace_response_chunk_failed detail={} then=pass_through", self.id, err.detail);
                if let ResponsePhase::Streaming(streaming) = &mut self.response {
                    streaming.derailed = Some(Derailed::PassThrough);
                }
            }
        }
    }

    /// One chunk through the stages: the meter (provider's dialect), the translator, the guard.
    /// Returns the bytes to send instead of the chunk, if they differ.
    fn run_stages(&mut self, io: &mut dyn HostIo, chunk: Vec<u8>, end_of_stream: bool) -> Option<Vec<u8>> {
        let watched = matches!(&self.response, ResponsePhase::Streaming(s) if s.cut.is_some());
        let fail_open = watched && self.failure_mode(io) == FailureMode::Open;
        let policy = Rc::clone(&self.policy);
        let ResponsePhase::Streaming(streaming) = &mut self.response else {
            return None;
        };
        let Streaming { meter, translator, guard, cut, derailed } = streaming.as_mut();
        let mut edit = meter.feed(&chunk);
        if end_of_stream {
            if let ChunkEdit::Replace(tail) = meter.finish() {
                let mut out = match edit {
                    ChunkEdit::Unchanged => chunk.clone(),
                    ChunkEdit::Replace(bytes) => bytes,
                };
                out.extend_from_slice(&tail);
                edit = ChunkEdit::Replace(out);
            }
        }
        if let Some(translator) = translator {
            // The meter read the provider's own events; the client gets them translated.
            let mut out = translator.feed(&chunk);
            if end_of_stream {
                out.extend(translator.finish());
            }
            edit = ChunkEdit::Replace(out);
        }
        let mut blocked = None;
        if let Some(guard) = guard {
            // The guard reads what the client is about to get: translated, usage chunk removed.
            let client_bytes = match &edit {
                ChunkEdit::Unchanged => chunk.as_slice(),
                ChunkEdit::Replace(bytes) => bytes.as_slice(),
            };
            let mut out = guard.feed(client_bytes);
            if end_of_stream {
                out.extend(guard.finish());
            }
            if out != client_bytes {
                edit = ChunkEdit::Replace(out);
            }
            blocked = guard.block().cloned();
        }
        if let Some(cut) = cut {
            // Last: the budget reads what the client is about to get.
            let client_bytes = match &edit {
                ChunkEdit::Unchanged => chunk.as_slice(),
                ChunkEdit::Replace(bytes) => bytes.as_slice(),
            };
            let mut metering = self.metering.as_deref_mut();
            let mut more =
                |needed: u64| metering.as_deref_mut().and_then(|m| budget::grow(io, &policy, m, needed, fail_open));
            let mut out = cut.feed(client_bytes, &mut more);
            if end_of_stream {
                out.extend(cut.finish());
            }
            if cut.is_cut() {
                *derailed = Some(Derailed::Cut);
                if let Some(metering) = self.metering.as_deref_mut() {
                    budget::note_cut(metering, cut.output_tokens());
                }
                log::info!("#{} stream_cut output_tokens={} allowed={}", self.id, cut.output_tokens(), cut.allowed());
            }
            if out != client_bytes {
                edit = ChunkEdit::Replace(out);
            }
        }
        if let Some(block) = blocked {
            self.note_stream_block(io, &block);
        }
        match edit {
            ChunkEdit::Unchanged if end_of_stream => Some(chunk),
            ChunkEdit::Unchanged => None,
            ChunkEdit::Replace(bytes) => Some(bytes),
        }
    }

    /// The proxy could not hand over a chunk. The stages would be out of step from here on: a
    /// translated or enforcing-guarded stream that fails closed ends now (an error event, or the
    /// blocked ending) and drops the rest; otherwise the rest passes as the provider sends it.
    /// Counted in `responses_not_inspected`, logged at error level either way.
    fn derail_unread(&mut self, io: &mut dyn HostIo) -> Option<Vec<u8>> {
        io.increment(Counter::ResponsesNotInspected);
        let closed = self.failure_mode(io) == FailureMode::Closed;
        let ResponsePhase::Streaming(streaming) = &mut self.response else {
            return None;
        };
        let ending = if let Some(translator) = &mut streaming.translator {
            // The provider's dialect is no use to the client: end it in the client's.
            Some(translator.end_with_error("The gateway could not read the provider's stream."))
        } else {
            match &mut streaming.guard {
                Some(guard) if closed && guard.enforces() => Some(guard.end_with(guardrails::unread_block())),
                _ => None,
            }
        };
        let blocked = streaming.guard.as_ref().and_then(|g| g.block().cloned());
        streaming.derailed = Some(if ending.is_some() { Derailed::Ended } else { Derailed::PassThrough });
        let mode = if ending.is_some() { "failed_closed" } else { "failed_open" };
        log::error!("#{} {mode} reason=response_chunk_unreadable", self.id);
        if let Some(block) = blocked {
            self.note_stream_block(io, &block);
        }
        ending
    }

    /// Provider events translation could not read: the client's stream was ended with an error
    /// at the first (counted, logged once the stream is over).
    pub(super) fn note_untranslatable(&self, io: &mut dyn HostIo, translator: Option<&StreamTranslation>) {
        if let Some(notes) = translator.map(StreamTranslation::notes).filter(|n| !n.is_empty()) {
            log::debug!("#{} translation_notes {}", self.id, notes.join("; "));
        }
        let count = translator.map_or(0, StreamTranslation::unreadable);
        if count > 0 {
            io.increment(Counter::StreamEventsUntranslatable);
            log::warn!("#{} stream_event_untranslatable count={count}", self.id);
        }
    }

    /// The model whose tokenizer counts what the provider did not: the one routed to, else the
    /// one asked for.
    pub(super) fn counting_model(&self) -> Option<String> {
        self.served_by
            .as_ref()
            .map(|s| s.model.clone())
            .or_else(|| self.canonical.as_ref().and_then(|r| r.model.clone()))
    }

    /// HTTP/2 clients of Envoy also get the cost as response trailers; elsewhere the proxy
    /// refuses and the comment line carries it alone.
    fn add_cost_trailers(&self, io: &mut dyn HostIo, record: &UsageRecord) {
        let headers = &self.policy.headers;
        for (suffix, value) in delivery::cost_fields(record, self.policy.prices.version()) {
            if io.add_response_trailer(&headers.cost_header(suffix), &value).is_err() {
                log::debug!("#{} trailers_not_supported", self.id);
                return;
            }
        }
    }

    pub(super) fn record_stream(&mut self, io: &mut dyn HostIo, meter: &StreamMeter) -> UsageRecord {
        let mut tokens = meter.tokens();
        if tokens.output.is_none() {
            let (kept, total) = meter.generated();
            let model = meter.model().map(str::to_string).or_else(|| self.counting_model()).unwrap_or_default();
            tokens.output = Some(Count::estimated(estimate::text_tokens(&model, kept, total)));
        }
        let outcome = if meter.completed() { Outcome::Complete } else { Outcome::Truncated };
        if meter.oversized_events() > 0 {
            log::warn!("#{} stream_events_too_large count={}", self.id, meter.oversized_events());
        }
        let served = meter.model().map(str::to_string);
        self.record(io, tokens, served, outcome)
    }

    pub(super) fn finish_json_body(&mut self, io: &mut dyn HostIo, size: usize, headers_held: bool) {
        let Some(api) = self.api else { return };
        let upstream_api = self.translation.map_or(api, Translation::upstream_api);
        let Some(body) = io.response_body(0, size) else {
            return self.unread_body(io, api, size, headers_held);
        };
        let mut replacement: Option<Replacement> = None;
        // The guard reads the answer as the client gets it; one that could not be translated
        // reaches the client in the provider's dialect, and is read that way.
        let mut layout = api;
        if let Some(translation) = self.translation {
            match response_translation::translate_answer(translation, &body, self.created()) {
                Ok(translated) => {
                    if !translated.notes.is_empty() {
                        log::debug!("#{} translation_notes {}", self.id, translated.notes.join("; "));
                    }
                    replacement = Some(Replacement { status: None, body: translated.body });
                }
                Err(err) => {
                    log::warn!("#{} response_not_translated reason={err}", self.id);
                    layout = upstream_api;
                }
            }
        }
        let client_body = replacement.as_ref().map_or(body.as_slice(), |r| r.body.as_slice());
        if let Some(guarded) = self.guard_response_body(io, api, layout, client_body) {
            replacement = Some(guarded);
        }
        if let Some(replacement) = replacement {
            if let (Some(status), true) = (replacement.status, headers_held) {
                // A blocked answer: the guardrail's error, with its status (Kong: the status
                // was already sent, only the body changes).
                if let Err(err) = io.set_response_header(":status", &status.to_string()) {
                    log::warn!("#{} blocked_status_not_set detail={}", self.id, err.detail);
                }
            }
            self.replace_body(io, size, &replacement.body, headers_held);
        }
        let Some(parsed) = upstream_api.read_response(&body) else {
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

    /// The proxy could not hand over a whole answer. One that must be translated or guarded
    /// cannot reach the client as it should: it fails as the route's `failure_mode` says
    /// (closed: a 500 in the client's dialect; open: passed as sent). Counted and logged.
    fn unread_body(&mut self, io: &mut dyn HostIo, api: Api, size: usize, headers_held: bool) {
        io.increment(Counter::ResponsesNotInspected);
        let must_change = self.translation.is_some() || self.guard.as_ref().is_some_and(ResponseGuard::enforcing);
        let closed = must_change && self.failure_mode(io) == FailureMode::Closed;
        log::error!(
            "#{} {} reason=response_body_unreadable",
            self.id,
            if closed { "failed_closed" } else { "failed_open" }
        );
        if closed {
            let reply = api.error_reply(500, "gateway_error", None, "The gateway could not read the answer.");
            if headers_held {
                if let Err(err) = io.set_response_header(":status", &reply.status.to_string()) {
                    log::warn!("#{} failed_status_not_set detail={}", self.id, err.detail);
                }
            }
            self.replace_body(io, size, &reply.body, headers_held);
        }
        self.record(io, TokenCounts::default(), None, Outcome::Complete);
    }

    /// A provider's error in the client's dialect (the status too, where the headers are held).
    pub(super) fn finish_error_body(&mut self, io: &mut dyn HostIo, size: usize, headers_held: bool) {
        let (Some(translation), Some(status)) = (self.translation, self.status) else { return };
        let body = if size == 0 { Some(Vec::new()) } else { io.response_body(0, size) };
        let Some(body) = body else {
            // The provider's own words are worth more than a made-up message: left as they are.
            io.increment(Counter::ResponsesNotInspected);
            log::warn!("#{} error_body_unreadable status={status}", self.id);
            return;
        };
        let reply = response_translation::translate_error(translation, status, &body);
        if headers_held && reply.status != status {
            if let Err(err) = io.set_response_header(":status", &reply.status.to_string()) {
                log::warn!("#{} error_status_not_translated detail={}", self.id, err.detail);
            }
        }
        self.replace_body(io, size, &reply.body, headers_held);
    }

    fn replace_body(&self, io: &mut dyn HostIo, held: usize, bytes: &[u8], headers_held: bool) {
        if let Err(err) = io.replace_response_body(held, bytes) {
            io.increment(Counter::ResponsesNotRewritten);
            log::warn!("#{} replace_response_body_failed detail={}", self.id, err.detail);
            return;
        }
        if headers_held {
            if let Err(err) = io.set_response_header("content-length", &bytes.len().to_string()) {
                log::warn!("#{} content_length_not_set detail={}", self.id, err.detail);
            }
        }
    }

    pub(super) fn set_cost_headers(&self, io: &mut dyn HostIo, record: &UsageRecord) {
        let headers = &self.policy.headers;
        for (suffix, value) in delivery::cost_fields(record, self.policy.prices.version()) {
            set_header(self.id, io, &headers.cost_header(suffix), &value);
        }
    }

    /// Builds the exchange's one usage record, exports it and logs it (numbers only, never text).
    /// A translated answer's `created` (Unix seconds): when the request came in, as a provider
    /// stamps it, read from the clock once per request.
    fn created(&self) -> u64 {
        self.started_at / 1_000_000_000
    }

    pub(super) fn record(
        &mut self,
        io: &mut dyn HostIo,
        mut tokens: TokenCounts,
        served: Option<String>,
        outcome: Outcome,
    ) -> UsageRecord {
        let requested = self.canonical.as_ref().and_then(|r| r.model.clone());
        let routed = self.served_by.as_ref().map(|s| s.model.clone());
        let served = served.or(routed).or_else(|| requested.clone());
        if outcome == Outcome::Truncated && tokens.input.is_none() {
            // The prompt was never reported: count what the client sent, with the model's tokenizer.
            if let (Some(api), Some(body)) = (self.api, self.kept_request.as_deref()) {
                let model = served.clone().or_else(|| self.counting_model()).unwrap_or_default();
                tokens.input = Some(Count::estimated(estimate::request_tokens(api, &model, body, None)));
            }
        }
        let namespace = self.policy.price_namespace(self.served_by.as_ref().map(|s| s.provider.as_str()));
        let priced = served.as_deref().and_then(|m| self.policy.prices.find_at(m, namespace));
        let counted = tokens.input.is_some() || tokens.output.is_some();
        let cost = priced.as_ref().filter(|_| counted).map(|p| crate::pricing::cost_at(&p.price, &tokens));
        let priced_as = priced.filter(|_| counted).map(|p| p.key.to_string());
        let budget = if self.recorded { None } else { self.settle_budget(io, &tokens, cost.map(|c| c.pico_usd)) };
        let now = io.now_nanos();
        let millis = |from: u64, to: u64| to.saturating_sub(from) / 1_000_000;
        let record = UsageRecord {
            api: self.api.map_or("unknown", Api::name),
            model_requested: requested,
            model_served: served,
            provider: self.served_by.as_ref().map(|s| s.provider.clone()),
            tenant: self.attribution.tenant.clone(),
            team: self.attribution.team.clone(),
            project: self.attribution.project.clone(),
            streaming: self.canonical.as_ref().is_some_and(|r| r.stream),
            status: self.status,
            outcome,
            tokens,
            cost,
            priced_as,
            time_to_first_token_ms: self.first_byte_at.map(|at| millis(self.started_at, at)),
            duration_ms: Some(millis(self.started_at, now)),
            guardrails: self.guardrails.clone(),
            budget,
        };
        if !self.recorded {
            self.recorded = true;
            let json = record.to_json_string();
            log::debug!("#{} usage {json}", self.id);
            io.export(names::EXPORT_USAGE, &json);
            for (key, pointer) in names::EXPORT_SCALARS {
                if let Some(scalar) = record.scalar(pointer) {
                    io.export(key, &scalar);
                }
            }
            for update in metrics::updates(&record, &self.policy.labels) {
                io.emit(&update);
            }
        }
        record
    }
}

/// A header the proxy refuses is logged, never fatal: the response still reaches the client.
pub(super) fn set_header(id: u32, io: &mut dyn HostIo, name: &str, value: &str) {
    if let Err(err) = io.set_response_header(name, value) {
        log::warn!("#{id} set_response_header_failed name={name} detail={}", err.detail);
    }
}
