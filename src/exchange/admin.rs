//! A request to the budgets' admin API (`budgets.admin.path`): answered by the filter from the
//! counters, never forwarded upstream. On the embedded store the answer is immediate; on the
//! Redis store the request waits in its headers step for one call to the store's HTTP front.

use std::rc::Rc;

use crate::budgets::admin::{self, index, Answer, Request};
use crate::budgets::ledger::StoreError;
use crate::budgets::redis::{read_answer, Answer as StoreAnswer};
use crate::budgets::{Budgets, Store};
use crate::config::Policy;
use crate::host_io::{Flow, HostIo, HostKind, SharedLedger};

/// One admin request, from its headers to its answer.
pub struct BudgetAdmin {
    id: u32,
    policy: Rc<Policy>,
    /// The Redis call the request waits for.
    pending: Option<Pending>,
}

struct Pending {
    token: u32,
    request: Request,
    now_secs: i64,
    by_sha: bool,
    /// The name its answer must carry ([`crate::budgets::redis::Call::callback`]).
    callback: String,
}

impl BudgetAdmin {
    /// Takes the request when its path is the admin API's (and the API is configured).
    pub fn claim(id: u32, policy: &Rc<Policy>, io: &dyn HostIo) -> Option<BudgetAdmin> {
        let config = policy.budgets.admin.as_ref()?;
        let path = io.request_header_bytes(":path").ok().flatten()?;
        config.claims(&String::from_utf8_lossy(&path)).then(|| BudgetAdmin {
            id,
            policy: Rc::clone(policy),
            pending: None,
        })
    }

    pub fn on_request_headers(&mut self, io: &mut dyn HostIo) -> Flow {
        let policy = Rc::clone(&self.policy);
        let budgets: &Budgets = &policy.budgets;
        let Some(config) = budgets.admin.as_ref() else { return Flow::Pause };
        let text =
            |name: &str| io.request_header_bytes(name).ok().flatten().map(|v| String::from_utf8_lossy(&v).into_owned());
        let (method, path) = (text(":method").unwrap_or_default(), text(":path").unwrap_or_default());
        if let Err(answer) = config.authorize(text("authorization").as_deref()) {
            log::warn!("#{} budget_admin_refused status={} method={method}", self.id, answer.status);
            return self.answer(io, &answer);
        }
        let request = match admin::parse(budgets, &method, &path) {
            Ok(request) => request,
            Err(answer) => return self.answer(io, &answer),
        };
        let now_secs = i64::try_from(io.now_nanos() / 1_000_000_000).unwrap_or(i64::MAX);
        match &budgets.store {
            Store::Embedded => {
                let answer = embedded(io, budgets, &request, now_secs);
                self.log(&request, &answer);
                self.answer(io, &answer)
            }
            Store::Redis(_) if io.host_kind() == HostKind::Kong => {
                // Kong parks a request paused in its headers step for good (probe fact 1).
                let message = "On Kong the Redis store's counters are read with redis-cli (README, Operators).";
                self.answer(io, &Answer::error(501, message))
            }
            Store::Redis(_) => self.send(io, request, now_secs, true),
        }
    }

    /// Nothing of an admin request goes upstream: the body waits with the headers.
    pub fn on_request_body(&mut self) -> Flow {
        Flow::Pause
    }

    /// Redis's answer: the operator's.
    pub fn on_call_answer(&mut self, io: &mut dyn HostIo, token: u32, status: Option<u16>, body: &[u8]) {
        let Some(pending) = self.pending.take_if(|p| p.token == token) else { return };
        let policy = Rc::clone(&self.policy);
        let budgets: &Budgets = &policy.budgets;
        let answer = match read_answer(status, body, &pending.callback) {
            StoreAnswer::NoScript if pending.by_sha => {
                // Redis restarted and lost its scripts: the script itself, once.
                self.send(io, pending.request, pending.now_secs, false);
                return;
            }
            StoreAnswer::Value(value) => {
                match admin::redis::read(&value, budgets, &pending.request, pending.now_secs) {
                    Ok(limits) => finish(&pending.request, "redis", pending.now_secs, &limits),
                    Err(why) => store_error(&why),
                }
            }
            StoreAnswer::NoScript => store_error("Redis answered NOSCRIPT for a script sent whole"),
            StoreAnswer::Failed(why) => store_error(&why),
        };
        self.log(&pending.request, &answer);
        self.answer(io, &answer);
    }

    fn send(&mut self, io: &mut dyn HostIo, request: Request, now_secs: i64, by_sha: bool) -> Flow {
        let Store::Redis(store) = &self.policy.budgets.store else { return Flow::Pause };
        let call = admin::redis::call(store, &self.policy.budgets, &request, now_secs, by_sha);
        match io.dispatch(&call) {
            Ok(token) => {
                self.pending = Some(Pending { token, request, now_secs, by_sha, callback: call.callback });
                Flow::Pause
            }
            Err(err) => self.answer(io, &store_error(&format!("the call to Redis was not sent: {}", err.detail))),
        }
    }

    fn answer(&mut self, io: &mut dyn HostIo, answer: &Answer) -> Flow {
        let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(err) = io.send_reply(answer.status, &headers, &answer.body) {
            log::error!("#{} local_reply_failed status={} detail={}", self.id, answer.status, err.detail);
        }
        // Answered or not, an admin request never reaches the upstream.
        Flow::Pause
    }

    /// Resets are logged (what was reset, never the token): the audit trail.
    fn log(&self, request: &Request, answer: &Answer) {
        if request.reset {
            log::warn!(
                "#{} budget_admin_reset limit={} scope={} status={}",
                self.id,
                request.limit.as_deref().unwrap_or("-"),
                request.scope.as_deref().unwrap_or("*"),
                answer.status
            );
        }
    }
}

fn embedded(io: &mut dyn HostIo, budgets: &Budgets, request: &Request, now_secs: i64) -> Answer {
    let mut store = SharedLedger(io);
    let mut limits = Vec::new();
    for limit in request.limits(budgets) {
        let counters = if request.reset {
            index::reset(&mut store, limit, request.scope.as_deref(), now_secs)
        } else {
            index::show(&store, limit, request.scope.as_deref(), now_secs)
        };
        match counters {
            Ok(counters) => limits.push((limit, counters)),
            Err(StoreError(why)) => return store_error(&why),
        }
    }
    finish(request, "embedded", now_secs, &limits)
}

fn finish(
    request: &Request,
    store: &str,
    now_secs: i64,
    limits: &[(&crate::budgets::Limit, admin::Counters)],
) -> Answer {
    if request.reset && request.scope.is_some() && limits.iter().all(|(_, c)| c.counters.is_empty()) {
        return Answer::error(404, "no counter for this scope in the current window: nothing to reset");
    }
    if request.reset && request.quiet {
        return admin::no_content();
    }
    admin::render(store, now_secs, limits, request.reset)
}

fn store_error(why: &str) -> Answer {
    Answer::error(503, &format!("the budgets' store could not be read: {why}"))
}
