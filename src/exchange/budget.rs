//! The budgets' part of an exchange: reserve the request's worst case before it leaves, say on
//! the answer how much is left, give a stream that outgrows its reservation more (or end it),
//! and settle to what the provider reported when the exchange is recorded.

use std::rc::Rc;

use super::Exchange;
use crate::budgets::lease;
use crate::budgets::ledger::{self, Held, Reserved, StoreError};
use crate::budgets::redis::{self, Answer, Plan, Settlement};
use crate::budgets::summary::{BudgetSummary, Counted, Verdict};
use crate::budgets::{reply, Budgets, Facts, Need, RedisStore, Store, Touch, MAX_OUTPUT_RESERVATION};
use crate::config::{FailureMode, Policy};
use crate::dialect::{Api, CanonicalRequest};
use crate::estimate;
use crate::host_io::{Flow, HostIo, SharedLedger};
use crate::names::Counter;
use crate::stream_cut::StreamCut;
use crate::usage::{Count, TokenCounts};

/// What one request holds of the budgets, from its reservation to its settlement.
#[derive(Debug, Default)]
pub(super) struct Metering {
    held: Vec<Held>,
    /// The model output is priced at (what a stream's extra output costs).
    model: String,
    /// The LiteLLM namespace of the provider it goes to (`mistral` for `mistral/…` prices).
    price_namespace: Option<String>,
    /// Output tokens the reservation covers.
    output_allowed: u64,
    /// The route's `max_output_tokens`: no stream passes it.
    ceiling: Option<u64>,
    /// Output tokens a growing stream reserves at a time.
    step: u64,
    /// The request set no output limit of its own within the ceiling: the provider will not stop
    /// it where the reservation ends, so its stream is watched.
    watch_stream: bool,
    /// When the reservation was made: a stream's extra output counts in the same windows.
    reserved_at: i64,
    /// The counters were settled (the exchange was recorded): nothing more moves them.
    settled: bool,
    /// Redis: what was (or is being) reserved there, the call the request waits for, and
    /// whether Redis answered that it took it (otherwise the settlement confirms it first).
    plan: Option<Plan>,
    pending: Option<Pending>,
    confirmed: bool,
    /// Leases: the reservation was taken from this proxy's slices (no call); it settles there.
    leased: bool,
    summary: BudgetSummary,
}

/// A reservation call the request waits for.
#[derive(Debug)]
struct Pending {
    token: u32,
    /// Sent by the script's SHA-1 (a `NOSCRIPT` answer sends it whole).
    by_sha: bool,
    /// The name its answer must carry ([`redis::Call::callback`]).
    callback: String,
}

impl Exchange {
    /// Reserves the request's worst case on every limit that applies. `Some(flow)` when the
    /// request does not go on: a limit refused it (429), or the counters could not be used and
    /// the route fails closed.
    pub(super) fn reserve_budget(
        &mut self,
        io: &mut dyn HostIo,
        request: &CanonicalRequest,
        body: &[u8],
    ) -> Option<Flow> {
        let policy = Rc::clone(&self.policy);
        let budgets: &Budgets = &policy.budgets;
        if budgets.is_empty() && !budgets.has_ceiling() {
            return None;
        }
        let api = request.api;
        let route = if budgets.needs_route_name() { io.route_name() } else { None };
        let model = self.pricing_model(request);
        let provider = self
            .served_by
            .as_ref()
            .map(|s| s.provider.clone())
            .or_else(|| self.chain.as_ref().and_then(|c| c.steps.first()).map(|s| s.provider.clone()));
        let facts = Facts {
            tenant: self.attribution.tenant.as_deref(),
            team: self.attribution.team.as_deref(),
            project: self.attribution.project.as_deref(),
            client_key: self.client_key.as_deref(),
            route: route.as_deref(),
            provider: provider.as_deref(),
            model: Some(model.as_str()).filter(|m| !m.is_empty()),
        };
        let now = now_secs(io);
        let touches = budgets.touches(&facts, now);
        // A request translated for Anthropic carries the configured `default_max_tokens` when the
        // client set no limit (Anthropic requires one): the provider stops there.
        let requested = request.max_output_tokens.map(|limit| limit.tokens).or_else(|| {
            (self.translation.is_some() && api != Api::AnthropicMessages)
                .then_some(u64::from(policy.default_max_tokens))
        });
        let output_policy = budgets.output_policy(route.as_deref());
        let output = budgets.output_reservation(route.as_deref(), requested);
        let input = if budgets.counts_tokens() && !touches.is_empty() {
            estimate::request_tokens(api, &model, body, None)
        } else {
            0
        };
        let price_namespace = policy.price_namespace(provider.as_deref()).map(str::to_string);
        let spend = price(&policy, &model, price_namespace.as_deref(), input, output);
        let need = Need { requests: 1, input_tokens: input, output_tokens: output, spend };
        let watch_stream = request.stream && requested.is_none_or(|r| output_policy.ceiling.is_some_and(|c| r > c));
        let metering = Metering {
            model,
            price_namespace,
            output_allowed: output,
            ceiling: output_policy.ceiling,
            step: output_policy.reserve.max(1),
            watch_stream,
            reserved_at: now,
            summary: BudgetSummary { reserved: need, ..BudgetSummary::default() },
            ..Metering::default()
        };
        if touches.is_empty() {
            self.metering = Some(Box::new(metering));
            return None;
        }
        let reserved = match &budgets.store {
            Store::Embedded => ledger::reserve(&mut SharedLedger(io), budgets, touches, &need, now),
            Store::Redis(store) => return self.reserve_in_redis(io, store, touches, need, metering, api),
        };
        self.decide_reservation(io, api, reserved, metering)
    }

    /// Sends the reservation to Redis; the request waits in its body step for the answer
    /// ([`Exchange::on_call_answer`]).
    fn reserve_in_redis(
        &mut self,
        io: &mut dyn HostIo,
        store: &RedisStore,
        touches: Vec<Touch>,
        need: Need,
        mut metering: Metering,
        api: Api,
    ) -> Option<Flow> {
        let now = metering.reserved_at;
        let mut plan = match Plan::new(&self.policy.budgets, touches, &need, redis::next_operation(), now) {
            Ok(plan) => plan,
            Err(touch) => return self.decide_reservation(io, api, Ok(Reserved::Unpriced { touch }), metering),
        };
        if plan.touches.is_empty() {
            self.metering = Some(Box::new(metering));
            return None;
        }
        if let Some(lease) = &store.lease {
            if let Some(held) = self.reserve_from_slices(io, lease, &mut plan) {
                metering.plan = Some(plan);
                metering.leased = true;
                metering.summary.from_slices = true;
                let reserved = Ok(self.shadow_over(Reserved::Admitted { held, over: Vec::new() }));
                return self.decide_reservation(io, api, reserved, metering);
            }
        }
        let call = plan.reserve(true).call(store, true);
        metering.plan = Some(plan);
        match io.dispatch(&call) {
            Ok(token) => {
                metering.pending = Some(Pending { token, by_sha: true, callback: call.callback });
                self.metering = Some(Box::new(metering));
                Some(Flow::Pause)
            }
            Err(err) => {
                let reserved = Err(StoreError(format!("the reservation was not sent: {}", err.detail)));
                self.decide_reservation(io, api, reserved, metering)
            }
        }
    }

    /// Leases: takes the request's reservation from this proxy's slices when every counter it
    /// touches is leased and its slice holds enough (`Some`: no call); otherwise says in `plan`
    /// how much each slice lacks, for the call to Redis to top it up.
    fn reserve_from_slices(&self, io: &mut dyn HostIo, lease: &lease::Lease, plan: &mut Plan) -> Option<Vec<Held>> {
        let budgets = &self.policy.budgets;
        let slices: Vec<(u64, u64)> = plan
            .touches
            .iter()
            .map(|touch| budgets.limit(touch).map_or((0, 0), |limit| (lease.slice(limit), limit.amount)))
            .collect();
        let now_ms = io.now_nanos() / 1_000_000;
        if slices.iter().all(|(slice, _)| *slice > 0) {
            match lease::take(&mut SharedLedger(io), &plan.touches, &plan.amounts, now_ms) {
                Ok(lease::Taken::All(used)) => {
                    log::debug!("#{} budget_reserved_from_slices op={}", self.id, plan.op);
                    let held = plan.touches.iter().zip(&plan.amounts).zip(used);
                    return Some(
                        held.map(|((touch, amount), used)| Held { touch: touch.clone(), amount: *amount, used })
                            .collect(),
                    );
                }
                Ok(lease::Taken::None { orphans }) => {
                    if !orphans.is_empty() {
                        let back = orphans.into_iter().map(|(touch, amount)| (touch, -i128::from(amount))).collect();
                        io.defer_settlement(redis::adjustment(back, now_secs(io)));
                    }
                }
                // A slice that cannot be read or written: Redis decides, as without leases.
                Err(err) => log::warn!("#{} budget_slice_unusable detail={}", self.id, err.0),
            }
        }
        let shared = SharedLedger(io);
        plan.slices = plan
            .touches
            .iter()
            .zip(slices)
            .map(|(touch, (slice, cap))| if slice > 0 { (lease::wanted(&shared, touch, slice), cap) } else { (0, cap) })
            .collect();
        None
    }

    /// Leases: puts the slices Redis granted with an admitted reservation into this proxy's
    /// slices; whatever they cannot keep goes back to Redis.
    fn place_grants(&self, io: &mut dyn HostIo, plan: &Plan, grants: &[u64], held: &[Held]) {
        let Store::Redis(store) = &self.policy.budgets.store else { return };
        let Some(lease) = &store.lease else { return };
        let now_ms = io.now_nanos() / 1_000_000;
        let mut back: Vec<(Touch, i128)> = Vec::new();
        for ((touch, grant), hold) in plan.touches.iter().zip(grants).zip(held) {
            if *grant == 0 {
                continue;
            }
            let slice = self.policy.budgets.limit(touch).map_or(0, |limit| lease.slice(limit));
            let seen = hold.used.saturating_add(*grant);
            match lease::place(&mut SharedLedger(io), touch, *grant, seen, slice, now_ms) {
                Ok(returned) => back.extend(returned.into_iter().map(|(t, amount)| (t, -i128::from(amount)))),
                Err(err) => {
                    log::warn!("#{} budget_slice_unusable detail={}", self.id, err.0);
                    back.push((touch.clone(), -i128::from(*grant)));
                }
            }
            io.note_lease(&touch.key);
        }
        if !back.is_empty() {
            io.defer_settlement(redis::adjustment(back, now_secs(io)));
        }
    }

    /// The answer to the reservation this request waits for: go on, or answer the client.
    pub fn on_call_answer(&mut self, io: &mut dyn HostIo, token: u32, status: Option<u16>, body: &[u8]) {
        let Some(mut metering) = self.metering.take() else { return };
        let Some(pending) = metering.pending.take_if(|p| p.token == token) else {
            self.metering = Some(metering);
            return;
        };
        let (Some(api), Store::Redis(store)) = (self.api, &self.policy.budgets.store) else {
            self.metering = Some(metering);
            return;
        };
        let store = store.clone();
        let reserved = match (redis::read_answer(status, body, &pending.callback), &metering.plan) {
            (Answer::NoScript, Some(plan)) if pending.by_sha => {
                // Redis restarted and lost its scripts: the script itself, once.
                let call = plan.reserve(true).call(&store, false);
                match io.dispatch(&call) {
                    Ok(token) => {
                        metering.pending = Some(Pending { token, by_sha: false, callback: call.callback });
                        self.metering = Some(metering);
                        return;
                    }
                    Err(err) => Err(StoreError(format!("the reservation was not sent: {}", err.detail))),
                }
            }
            (Answer::Value(value), Some(plan)) => plan.read(&value).map(|reserved| {
                let Reserved::Admitted { mut held, over } = reserved else { return reserved };
                let grants = plan.grants(&value);
                // What the counters hold for this request's reservation, without the slices.
                for (hold, grant) in held.iter_mut().zip(&grants) {
                    hold.used = hold.used.saturating_sub(*grant);
                }
                self.place_grants(io, plan, &grants, &held);
                self.shadow_over(Reserved::Admitted { held, over })
            }),
            (Answer::NoScript, _) => Err(StoreError("Redis answered NOSCRIPT for a script sent whole".into())),
            (Answer::Failed(why), _) => Err(StoreError(why)),
            (Answer::Value(_), None) => Err(StoreError("an answer without a reservation".into())),
        };
        if reserved.as_ref().is_ok_and(|r| matches!(r, Reserved::Admitted { .. })) {
            metering.confirmed = true;
        }
        if self.decide_reservation(io, api, reserved, *metering).is_none() {
            if let Err(err) = io.resume_request() {
                log::error!("#{} resume_failed detail={}", self.id, err.detail);
            }
        }
    }

    /// Shadow limits a Redis reservation passed (Redis counts them without a cap).
    fn shadow_over(&self, reserved: Reserved) -> Reserved {
        let Reserved::Admitted { held, mut over } = reserved else { return reserved };
        let budgets = &self.policy.budgets;
        for hold in &held {
            if budgets.limit(&hold.touch).is_some_and(|l| l.shadow && hold.used > l.amount) {
                over.push(hold.touch.limit);
            }
        }
        Reserved::Admitted { held, over }
    }

    /// What the counters said: admit (keep what is held), refuse (429), or let `failure_mode`
    /// decide (an unpriced model, a store that failed).
    fn decide_reservation(
        &mut self,
        io: &mut dyn HostIo,
        api: Api,
        reserved: Result<Reserved, StoreError>,
        mut metering: Metering,
    ) -> Option<Flow> {
        let policy = Rc::clone(&self.policy);
        let budgets: &Budgets = &policy.budgets;
        let now = metering.reserved_at;
        match reserved {
            Ok(Reserved::Admitted { held, over }) => {
                metering.summary.counted = held.iter().filter_map(|h| counted(budgets, &h.touch)).collect();
                metering.summary.shadow_over =
                    over.iter().filter_map(|i| budgets.limits.get(*i)).map(|l| l.name.clone()).collect();
                if !over.is_empty() {
                    log::info!("#{} budget_shadow_over limits={}", self.id, metering.summary.shadow_over.join(","));
                }
                metering.held = held;
                self.metering = Some(Box::new(metering));
                None
            }
            Ok(Reserved::Refused { touch, used, asked }) => {
                let limit = budgets.limit(&touch)?;
                io.increment(Counter::RequestsRefusedByBudget);
                log::info!("#{} budget_refused limit={} used={used} asked={asked}", self.id, limit.name);
                let refusal = reply::refusal(api, limit, used, asked, touch.resets_at, now);
                metering.summary.verdict = Verdict::Refused;
                // Nothing was kept: nothing to settle.
                metering.plan = None;
                metering.summary.decided_by = Some(limit.name.clone());
                metering.summary.counted = counted(budgets, &touch).into_iter().collect();
                self.metering = Some(Box::new(metering));
                let headers: Vec<(&str, &str)> =
                    refusal.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                Some(self.send_with(io, refusal.reply, &headers))
            }
            Ok(Reserved::Unpriced { touch }) => {
                let name = budgets.limit(&touch).map_or("-", |l| l.name.as_str());
                log::warn!("#{} budget_unpriced limit={name} model={}", self.id, metering.model);
                metering.summary.verdict = Verdict::Unpriced;
                metering.summary.decided_by = Some(name.to_string());
                self.metering = Some(Box::new(metering));
                self.budget_failed(io, api, "budget_model_unpriced")
            }
            Err(err) => {
                io.increment(Counter::BudgetStoreErrors);
                log::error!("#{} budget_store_failed detail={}", self.id, err.0);
                metering.summary.verdict = Verdict::StoreFailed;
                self.metering = Some(Box::new(metering));
                self.budget_failed(io, api, "budget_store_failed")
            }
        }
    }

    /// The budgets could not decide: the route's `failure_mode` does.
    fn budget_failed(&mut self, io: &mut dyn HostIo, api: Api, reason: &str) -> Option<Flow> {
        match self.failure_mode(io) {
            FailureMode::Open => {
                io.increment(Counter::RequestsFailedOpen);
                log::error!("#{} failed_open reason={reason}", self.id);
                None
            }
            FailureMode::Closed => Some(self.fail(io, api, reason)),
        }
    }

    /// The model a request is priced at: where it was routed, else what it asked for.
    fn pricing_model(&self, request: &CanonicalRequest) -> String {
        self.served_by
            .as_ref()
            .map(|s| s.model.clone())
            .or_else(|| self.chain.as_ref().and_then(|c| c.steps.first()).map(|s| s.model.clone()))
            .or_else(|| request.model.clone())
            .unwrap_or_default()
    }

    /// OpenAI's `x-ratelimit-*` headers for the enforced limit closest to exhaustion. A provider's
    /// own header of the same name is kept under Tollgate's prefix (`x-tollgate-upstream-…`).
    pub(super) fn add_budget_headers(&self, io: &mut dyn HostIo) {
        let Some(metering) = &self.metering else { return };
        let budgets = &self.policy.budgets;
        let enforced = metering
            .held
            .iter()
            .filter_map(|h| budgets.limit(&h.touch).filter(|l| !l.shadow).map(|l| (l, h.used, &h.touch)));
        let Some((limit, used, touch)) = reply::closest(enforced) else { return };
        let now = now_secs(io);
        let prefix = &self.policy.headers.prefix;
        for (name, value) in reply::rate_headers(limit, used, touch.resets_at, now) {
            if let Some(upstream) = io.response_header(&name) {
                super::response::set_header(self.id, io, &[prefix.as_str(), "upstream-", &name].concat(), &upstream);
            }
            super::response::set_header(self.id, io, &name, &value);
        }
        super::response::set_header(self.id, io, &[prefix.as_str(), "budget"].concat(), &limit.name);
    }

    /// The stage that ends a stream at its allowance, when the request's output is not bounded
    /// by its own limit: in the client's dialect, counting with the model's tokenizer.
    pub(super) fn stream_cut(&self) -> Option<StreamCut> {
        let metering = self.metering.as_ref()?;
        let watched = metering.watch_stream
            && (metering.ceiling.is_some()
                || metering
                    .held
                    .iter()
                    .any(|h| self.policy.budgets.limit(&h.touch).is_some_and(|l| l.measure.counts_output())));
        let api = self.api?;
        // The client asked for Chat's usage chunk itself (not Tollgate, to read usage).
        let usage_chunk = api == Api::OpenAiChat && self.canonical.as_ref().is_some_and(|r| r.include_usage);
        watched.then(|| {
            StreamCut::new(
                api,
                &metering.model,
                metering.output_allowed,
                self.policy.max_stream_event_bytes,
                usage_chunk,
            )
        })
    }

    /// Settles the reservation to what the exchange did cost and returns the record's summary.
    pub(super) fn settle_budget(
        &mut self,
        io: &mut dyn HostIo,
        tokens: &TokenCounts,
        cost: Option<u64>,
    ) -> Option<BudgetSummary> {
        let mut metering = self.metering.take()?;
        if metering.settled {
            self.metering = Some(metering);
            return None;
        }
        metering.settled = true;
        let reserved = metering.summary.reserved;
        let known = tokens.input.is_some() || tokens.output.is_some();
        let actual = if known {
            Need {
                requests: 1,
                input_tokens: tokens.input.map_or(0, |c| c.tokens),
                output_tokens: tokens.output.map_or(0, |c| c.tokens),
                spend: cost,
            }
        } else if self.replied_locally || self.status.is_some_and(|s| s >= 400) || self.status.is_none() {
            // Nothing was generated (refused here, an error, or no answer at all).
            Need { requests: 1, input_tokens: 0, output_tokens: 0, spend: Some(0) }
        } else {
            // An answer whose usage could not be read: it keeps what it reserved.
            Need { requests: 1, ..reserved }
        };
        if let Some(plan) = metering.plan.take() {
            // Redis: the root context sends it (after confirming a reservation never answered).
            let budgets = &self.policy.budgets;
            let closed = metering.summary.verdict == Verdict::StoreFailed && self.replied_locally;
            let amounts: Vec<u64> = plan
                .touches
                .iter()
                .zip(&plan.amounts)
                .map(|(touch, reserved)| match budgets.limit(touch) {
                    // Refused for want of the store: whatever Redis took goes back.
                    _ if closed => 0,
                    Some(limit) => actual.amount(limit.measure).unwrap_or(*reserved),
                    None => *reserved,
                })
                .collect();
            for ((hold, counted), amount) in
                metering.held.iter_mut().zip(metering.summary.counted.iter_mut()).zip(&amounts)
            {
                // What the counter will hold once the settlement lands (others may move it too).
                hold.used = hold.used.saturating_sub(hold.amount).saturating_add(*amount);
                let limit = budgets.limit(&hold.touch).map_or(0, |l| l.amount);
                counted.remaining = Some(limit.saturating_sub(hold.used));
            }
            if metering.leased {
                self.settle_in_slices(io, &plan, &amounts);
            } else {
                io.defer_settlement(Settlement::new(plan, amounts, metering.confirmed));
            }
            // The record says what the counters get: nothing at all for a closed refusal (not
            // even the request), as the settlement's amounts above.
            metering.summary.settled = Some(if closed {
                Need { requests: 0, input_tokens: 0, output_tokens: 0, spend: Some(0) }
            } else {
                actual
            });
        } else if !metering.held.is_empty() {
            let budgets = &self.policy.budgets;
            let now = now_secs(io);
            match ledger::settle(&mut SharedLedger(io), budgets, &metering.held, &actual, now) {
                Ok(after) => {
                    for ((hold, used), counted) in
                        metering.held.iter_mut().zip(after).zip(metering.summary.counted.iter_mut())
                    {
                        let amount = budgets.limit(&hold.touch).map_or(0, |l| l.amount);
                        counted.remaining = Some(amount.saturating_sub(used));
                        hold.used = used;
                    }
                    metering.summary.settled = Some(actual);
                }
                Err(err) => {
                    io.increment(Counter::BudgetStoreErrors);
                    log::error!("#{} budget_settle_failed detail={}", self.id, err.0);
                }
            }
        }
        let summary = metering.summary.clone();
        self.metering = Some(metering);
        Some(summary)
    }
}

impl Exchange {
    /// Leases: a request reserved from this proxy's slices settles there: what it did not use
    /// goes back to the slice, what it used beyond its reservation is taken from the slice;
    /// what the slice cannot take or cover (its window moved on) goes to Redis, off the path.
    fn settle_in_slices(&self, io: &mut dyn HostIo, plan: &Plan, amounts: &[u64]) {
        let now_ms = io.now_nanos() / 1_000_000;
        let mut back: Vec<(Touch, i128)> = Vec::new();
        for ((touch, reserved), actual) in plan.touches.iter().zip(&plan.amounts).zip(amounts) {
            let delta = i128::from(*actual) - i128::from(*reserved);
            let left = if delta < 0 {
                lease::give(&mut SharedLedger(io), touch, reserved - actual, now_ms).map(|left| -i128::from(left))
            } else {
                lease::take_up_to(&mut SharedLedger(io), touch, actual - reserved, now_ms).map(i128::from)
            };
            match left {
                Ok(0) => {}
                Ok(left) => back.push((touch.clone(), left)),
                Err(err) => {
                    log::warn!("#{} budget_slice_unusable detail={}", self.id, err.0);
                    back.push((touch.clone(), delta));
                }
            }
        }
        if !back.is_empty() {
            io.defer_settlement(redis::adjustment(back, now_secs(io)));
        }
    }
}

/// A stream's extra output: asked by the stream's cutter when the output would reach `needed`
/// tokens. Takes another step on every counter output moves, up to the ceiling; `None` ends
/// the stream. `fail_open`: when the counters cannot be written, the stream goes on (uncounted past its
/// reservation, logged and counted in `budget_store_errors`) rather than ending.
pub(super) fn grow(
    io: &mut dyn HostIo,
    policy: &Policy,
    metering: &mut Metering,
    needed: u64,
    fail_open: bool,
) -> Option<u64> {
    if metering.ceiling.is_some_and(|ceiling| needed > ceiling) {
        metering.summary.decided_by = Some("max_output_tokens".into());
        return None;
    }
    if let Store::Redis(_) = policy.budgets.store {
        // More would need a call to Redis in the response phase, which Kong does not allow and
        // which would stall the stream: on the Redis store a stream has what it reserved.
        metering.summary.decided_by = Some(closest_output_limit(policy, metering));
        return None;
    }
    let mut allowed = metering.output_allowed.saturating_add(metering.step).max(needed).min(MAX_OUTPUT_RESERVATION);
    if let Some(ceiling) = metering.ceiling {
        allowed = allowed.min(ceiling);
    }
    let more = allowed.saturating_sub(metering.output_allowed);
    let need = Need {
        requests: 0,
        input_tokens: 0,
        output_tokens: more,
        spend: price(policy, &metering.model, metering.price_namespace.as_deref(), 0, more),
    };
    let now = metering.reserved_at;
    match ledger::extend(&mut SharedLedger(io), &policy.budgets, &mut metering.held, &need, now) {
        Ok(true) => {
            metering.output_allowed = allowed;
            metering.summary.reserved.output_tokens = metering.summary.reserved.output_tokens.saturating_add(more);
            metering.summary.reserved.spend =
                metering.summary.reserved.spend.zip(need.spend).map(|(a, b)| a.saturating_add(b));
            Some(allowed)
        }
        Ok(false) => {
            metering.summary.decided_by = Some(closest_output_limit(policy, metering));
            None
        }
        Err(err) => {
            io.increment(Counter::BudgetStoreErrors);
            log::error!("budget_extend_failed detail={} then={}", err.0, if fail_open { "continued" } else { "ended" });
            if fail_open {
                metering.output_allowed = allowed;
                return Some(allowed);
            }
            metering.summary.verdict = Verdict::StoreFailed;
            None
        }
    }
}

/// Marks a stream as ended by its budget.
pub(super) fn note_cut(metering: &mut Metering, output_tokens: u64) {
    metering.summary.verdict = Verdict::Cut;
    metering.summary.cut_at = Some(output_tokens);
}

/// The name of the enforced output-moving limit closest to exhaustion.
fn closest_output_limit(policy: &Policy, metering: &Metering) -> String {
    let budgets = &policy.budgets;
    let candidates = metering.held.iter().filter_map(|h| {
        budgets.limit(&h.touch).filter(|l| !l.shadow && l.measure.counts_output()).map(|l| (l, h.used, ()))
    });
    reply::closest(candidates).map_or_else(|| "budget".to_string(), |(l, _, ())| l.name.clone())
}

fn counted(budgets: &Budgets, touch: &Touch) -> Option<Counted> {
    let limit = budgets.limit(touch)?;
    let scope = touch.key.strip_prefix(limit.name.as_str()).unwrap_or_default().trim_start_matches(':');
    Some(Counted {
        limit: limit.name.clone(),
        scope: if scope.is_empty() { "all".into() } else { scope.into() },
        remaining: None,
        spend: limit.measure == crate::budgets::Measure::Spend,
        shadow: limit.shadow,
    })
}

/// The price of `input` prompt and `output` generated tokens of `model` at a provider whose
/// LiteLLM namespace is `namespace`, in pico-USD.
fn price(policy: &Policy, model: &str, namespace: Option<&str>, input: u64, output: u64) -> Option<u64> {
    let tokens = TokenCounts {
        input: Some(Count::estimated(input)),
        output: Some(Count::estimated(output)),
        ..TokenCounts::default()
    };
    policy.prices.cost_for(model, namespace, &tokens).map(|cost| cost.pico_usd)
}

fn now_secs(io: &dyn HostIo) -> i64 {
    i64::try_from(io.now_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
}
