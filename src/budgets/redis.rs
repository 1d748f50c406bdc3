//! The Redis store: the same counters kept in a Redis that every replica reaches, through its
//! HTTP front (webdis; facts in docs/redis-store.md). Pure: this module builds the calls and
//! reads their answers; the exchange sends them (`dispatch_http_call`), and the root context
//! sends the settlements that outlive a request.
//!
//! A counter is the Redis string `tollgate:budget:<key>:<window>`, expiring a minute after its
//! window. Two scripts change counters, each atomically and once per operation key (a retry gets
//! the first answer): `redis/reserve.lua` takes every counter's share or none, `redis/settle.lua`
//! adds what the request really cost minus what it reserved.
//!
//! A reservation whose answer never came (timeout, Redis away) under `fail_open` may still have
//! been applied, or be applied later (Redis runs a command the client gave up on). Its settlement
//! therefore first sends the same reservation again, with the same operation key and no caps:
//! Redis answers the first outcome if it happened, or takes it now; then the settlement is the
//! difference as usual. Each request is counted exactly once either way.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::{Digest, Sha1};

use super::ledger::{Held, Reserved, StoreError};
use super::{Budgets, Need, RedisStore, Touch};

pub const RESERVE_SCRIPT: &str = include_str!("../../redis/reserve.lua");
pub const SETTLE_SCRIPT: &str = include_str!("../../redis/settle.lua");

/// Counters outlive their window by this much (a late settlement still finds them).
const GRACE_SECS: i64 = 60;
/// How long Redis keeps an operation's answer for retries: longer than any outage a settlement
/// queue rides out.
pub const OPERATION_TTL_SECS: u64 = 86_400;
const COUNTER_PREFIX: &str = "tollgate:budget:";
const OPERATION_PREFIX: &str = "tollgate:budget-op:";

/// Every byte but `A-Z a-z 0-9 - _ ~` is percent-encoded: webdis reads `/` as a separator, `+`
/// as a space, `.` before a known extension as an output format (docs/redis-store.md).
const PATH_ARGUMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Reserve,
    Settle,
}

impl Script {
    fn text(self) -> &'static str {
        match self {
            Script::Reserve => RESERVE_SCRIPT,
            Script::Settle => SETTLE_SCRIPT,
        }
    }

    /// The script's SHA-1, as `SCRIPT LOAD` answers it. Computed once per VM: hashing a script
    /// (several KB) on every call cost about 280,000 instructions a request (`make bench-gate`).
    pub fn sha(self) -> &'static str {
        static RESERVE: OnceLock<String> = OnceLock::new();
        static SETTLE: OnceLock<String> = OnceLock::new();
        let cell = match self {
            Script::Reserve => &RESERVE,
            Script::Settle => &SETTLE,
        };
        cell.get_or_init(|| {
            let digest = Sha1::digest(self.text().as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        })
    }
}

/// One HTTP call to the store's front: a GET of `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub upstream: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    /// The name this call's answer comes wrapped in (`?jsonp=` in `path`): webdis can hand a
    /// connection the answer of a request abandoned on an earlier one, so only an answer that
    /// carries this call's name is its answer (docs/redis-store.md, "Stale answers").
    pub callback: String,
}

impl Call {
    /// A GET of `path` (a command and its arguments) to the store's front, naming its answer.
    pub fn new(store: &RedisStore, mut path: String) -> Call {
        let callback = next_callback();
        path.push_str("?jsonp=");
        path.push_str(&callback);
        Call {
            upstream: store.endpoint.clone(),
            authority: store.authority.clone(),
            path,
            timeout_ms: store.timeout_ms,
            callback,
        }
    }
}

/// A script call: its keys and arguments, sent by SHA-1 first and whole after `NOSCRIPT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    pub script: Script,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl ScriptCall {
    pub fn call(&self, store: &RedisStore, by_sha: bool) -> Call {
        let mut path = String::with_capacity(256);
        if by_sha {
            path.push_str("/EVALSHA/");
            path.push_str(self.script.sha());
        } else {
            path.push_str("/EVAL/");
            path.extend(utf8_percent_encode(self.script.text(), PATH_ARGUMENT));
        }
        path.push('/');
        path.push_str(&self.keys.len().to_string());
        for part in self.keys.iter().chain(&self.args) {
            path.push('/');
            path.extend(utf8_percent_encode(part, PATH_ARGUMENT));
        }
        Call::new(store, path)
    }
}

/// What the front answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The script's reply.
    Value(serde_json::Value),
    /// Redis does not have the script (after a restart): send it whole.
    NoScript,
    /// No answer, or not the script's: Redis away (webdis's 503), a timeout, an error reply
    /// (a corrupt counter), a refused command.
    Failed(String),
}

/// Reads the answer to the call whose answer is named `callback`: `status` is `None` when the
/// call got none (timeout, connection).
pub fn read_answer(status: Option<u16>, body: &[u8], callback: &str) -> Answer {
    let Some(status) = status else {
        return Answer::Failed("no answer (timeout or connection failure)".into());
    };
    if status != 200 {
        let why = if status == 503 { " (Redis unreachable)" } else { "" };
        return Answer::Failed(format!("HTTP {status}{why}"));
    }
    // webdis's JSONP: `<callback>(<json>);` and a newline.
    let Some(json) = body
        .strip_prefix(callback.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"("))
        .map(<[u8]>::trim_ascii_end)
        .and_then(|rest| rest.strip_suffix(b");"))
    else {
        // Whose it was, when it names one: the call it answers was logged with that name.
        let named = body.iter().position(|b| *b == b'(').and_then(|at| body.get(..at.min(64)));
        let named = named.filter(|name| name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'));
        let named = named.map_or_else(String::new, |name| format!(", named {}", String::from_utf8_lossy(name)));
        return Answer::Failed(format!(
            "an answer not named {callback} ({} bytes{named}): another call's, or not webdis's",
            body.len()
        ));
    };
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(json) else {
        return Answer::Failed(format!("an answer that is not webdis's JSON ({} bytes)", body.len()));
    };
    let Some(value) = object.into_iter().next().map(|(_, value)| value) else {
        return Answer::Failed("an empty answer".into());
    };
    // An error reply is [false, "message"]; the scripts never answer a boolean otherwise.
    if let Some([serde_json::Value::Bool(false), message]) = value.as_array().map(Vec::as_slice) {
        let message = message.as_str().unwrap_or_default();
        if message.starts_with("NOSCRIPT") {
            return Answer::NoScript;
        }
        return Answer::Failed(format!("Redis: {message}"));
    }
    Answer::Value(value)
}

/// A new operation key's id: unique per worker (a random seed from the host) and call.
pub struct Operations {
    seed: u64,
    next: u64,
}

impl Default for Operations {
    fn default() -> Self {
        Operations { seed: RandomState::new().build_hasher().finish(), next: 0 }
    }
}

impl Operations {
    pub fn issue(&mut self) -> String {
        self.next += 1;
        format!("{:016x}-{:x}", self.seed, self.next)
    }
}

thread_local! {
    static OPERATIONS: RefCell<Operations> = RefCell::new(Operations::default());
}

/// A new operation id, unique per worker and call (a Wasm VM is one thread).
pub fn next_operation() -> String {
    OPERATIONS.with(|operations| operations.borrow_mut().issue())
}

/// A name for one call's answer, unique across workers and calls: letters, digits and `_`, as
/// a JSONP name must be.
fn next_callback() -> String {
    ["t", &next_operation().replace('-', "_")].concat()
}

/// What a request reserves in Redis: its counters, and each one's share and cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub op: String,
    pub touches: Vec<Touch>,
    pub amounts: Vec<u64>,
    /// `None`: a shadow limit (counted, never refuses).
    pub caps: Vec<Option<u64>>,
    /// Shadow limits the request's spend cannot count (an unpriced model): left out.
    pub uncounted: Vec<usize>,
    pub reserved_at: i64,
    /// Leases: the slice to take for this proxy with each counter's share, and the cap the
    /// slice must fit under (the limit, shadow ones too); empty or `(0, _)`: none.
    pub slices: Vec<(u64, u64)>,
}

impl Plan {
    /// The counters a request touches and its share of each; `Err` names the enforcing spend
    /// limit an unpriced model cannot be counted against.
    pub fn new(budgets: &Budgets, touches: Vec<Touch>, need: &Need, op: String, now_secs: i64) -> Result<Plan, Touch> {
        let mut plan = Plan {
            op,
            touches: Vec::new(),
            amounts: Vec::new(),
            caps: Vec::new(),
            uncounted: Vec::new(),
            reserved_at: now_secs,
            slices: Vec::new(),
        };
        for touch in touches {
            let Some(limit) = budgets.limit(&touch) else { continue };
            match need.amount(limit.measure) {
                Some(amount) => {
                    plan.amounts.push(amount);
                    plan.caps.push((!limit.shadow).then_some(limit.amount));
                    plan.touches.push(touch);
                }
                None if limit.shadow => plan.uncounted.push(touch.limit),
                None => return Err(touch),
            }
        }
        Ok(plan)
    }

    /// The reservation call; `enforce: false` drops the caps (a settlement confirming a
    /// reservation whose answer never came: the request went on, so it counts whatever).
    pub fn reserve(&self, enforce: bool) -> ScriptCall {
        let mut args = vec![OPERATION_TTL_SECS.to_string()];
        for ((touch, amount), cap) in self.touches.iter().zip(&self.amounts).zip(&self.caps) {
            args.push(amount.to_string());
            args.push(match (enforce, cap) {
                (true, Some(cap)) => cap.to_string(),
                _ => "-1".to_string(),
            });
            args.push(ttl(touch, self.reserved_at).to_string());
        }
        // Slices only with the request's own reservation: a confirmation (`enforce: false`)
        // takes none (what a first call took comes back in its answer and is given back).
        if enforce && self.slices.iter().any(|(slice, _)| *slice > 0) {
            for index in 0..self.touches.len() {
                let (slice, cap) = self.slices.get(index).copied().unwrap_or((0, 0));
                args.push(slice.to_string());
                args.push(cap.to_string());
            }
        }
        let mut keys = vec![[OPERATION_PREFIX, &self.op].concat()];
        keys.extend(self.touches.iter().map(counter_key));
        ScriptCall { script: Script::Reserve, keys, args }
    }

    /// The slices an admitting answer granted, per counter (all 0 when it carries none).
    pub fn grants(&self, value: &serde_json::Value) -> Vec<u64> {
        let n = self.touches.len();
        let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
        (0..n).map(|i| items.get(1 + n + i).and_then(number).unwrap_or(0)).collect()
    }

    /// Reads the reservation's answer: `[1, used…]` admitted, `[0, i, used_i]` refused.
    pub fn read(&self, value: &serde_json::Value) -> Result<Reserved, StoreError> {
        let bad = || StoreError(format!("a reservation answer that is not the script's: {value}"));
        let items = value.as_array().ok_or_else(bad)?;
        let number = |item: Option<&serde_json::Value>| item.and_then(number);
        let n = self.touches.len();
        match number(items.first()) {
            // With leases, the slices granted follow the values.
            Some(1) if items.len() == n + 1 || items.len() == 2 * n + 1 => {
                let mut held = Vec::with_capacity(self.touches.len());
                for (i, touch) in self.touches.iter().enumerate() {
                    let used = number(items.get(i + 1)).ok_or_else(bad)?;
                    held.push(Held { touch: touch.clone(), amount: self.amounts.get(i).copied().unwrap_or(0), used });
                }
                Ok(Reserved::Admitted { held, over: Vec::new() })
            }
            Some(0) => {
                let index = number(items.get(1)).and_then(|i| usize::try_from(i).ok()).ok_or_else(bad)?;
                let used = number(items.get(2)).ok_or_else(bad)?;
                let touch = index.checked_sub(1).and_then(|i| self.touches.get(i)).ok_or_else(bad)?;
                let asked = self.amounts.get(index - 1).copied().unwrap_or(0);
                Ok(Reserved::Refused { touch: touch.clone(), used, asked })
            }
            _ => Err(bad()),
        }
    }
}

/// A whole number in a script's answer: Redis's decimal string, or a small integer.
fn number(item: &serde_json::Value) -> Option<u64> {
    match item {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A settlement of bare differences (`deltas`, one per counter): what slices give back to Redis,
/// and what a request reserved from a slice used beyond it. Its own operation key, as any.
pub fn adjustment(counters: Vec<(Touch, i128)>, now_secs: i64) -> Settlement {
    let clamp = |d: i128| u64::try_from(d.max(0)).unwrap_or(u64::MAX);
    let amounts = counters.iter().map(|(_, delta)| clamp(-delta)).collect();
    let actual = counters.iter().map(|(_, delta)| clamp(*delta)).collect();
    let plan = Plan {
        op: next_operation(),
        caps: vec![None; counters.len()],
        touches: counters.into_iter().map(|(touch, _)| touch).collect(),
        amounts,
        uncounted: Vec::new(),
        reserved_at: now_secs,
        slices: Vec::new(),
    };
    Settlement::new(plan, actual, true)
}

/// A settlement: each counter gets `actual − reserved` (its own operation key).
pub fn settle(op: &str, held: &[Held], actual: &[u64], now_secs: i64) -> ScriptCall {
    let mut args = vec![OPERATION_TTL_SECS.to_string()];
    let mut keys = vec![[OPERATION_PREFIX, op, "-settle"].concat()];
    for (hold, actual) in held.iter().zip(actual) {
        keys.push(counter_key(&hold.touch));
        args.push((i128::from(*actual) - i128::from(hold.amount)).to_string());
        args.push(ttl(&hold.touch, now_secs).to_string());
    }
    ScriptCall { script: Script::Settle, keys, args }
}

/// A settlement on its way to Redis, sent by the root context (it outlives its request) and
/// sent again until Redis has it: each step has its operation key, so a retry never counts twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    plan: Plan,
    /// What the request cost, per counter of the plan.
    actual: Vec<u64>,
    /// What each counter holds of the reservation: `None` until a confirmation says (the
    /// reservation's answer never came).
    held: Option<Vec<u64>>,
    by_sha: bool,
    pub attempts: u32,
}

/// What a settlement does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Redis has it.
    Done,
    /// Send the next call now (the script whole after `NOSCRIPT`, the settlement after its
    /// confirmation).
    Next,
    /// Send the same call again later.
    Later(String),
}

impl Settlement {
    /// `confirmed`: the reservation was answered (admitted); otherwise it is sent again first.
    pub fn new(plan: Plan, actual: Vec<u64>, confirmed: bool) -> Settlement {
        let held = confirmed.then(|| plan.amounts.clone());
        Settlement { plan, actual, held, by_sha: true, attempts: 0 }
    }

    pub fn script_call(&self, now_secs: i64) -> ScriptCall {
        match &self.held {
            None => self.plan.reserve(false),
            Some(held) => {
                let held: Vec<Held> = self
                    .plan
                    .touches
                    .iter()
                    .zip(held)
                    .map(|(touch, amount)| Held { touch: touch.clone(), amount: *amount, used: 0 })
                    .collect();
                settle(&self.plan.op, &held, &self.actual, now_secs)
            }
        }
    }

    pub fn call(&self, store: &RedisStore, now_secs: i64) -> Call {
        self.script_call(now_secs).call(store, self.by_sha)
    }

    pub fn on_answer(&mut self, answer: Answer) -> Progress {
        self.attempts += 1;
        match answer {
            Answer::NoScript if self.by_sha => {
                self.by_sha = false;
                Progress::Next
            }
            Answer::NoScript => Progress::Later("NOSCRIPT for a script sent whole".into()),
            Answer::Failed(why) => Progress::Later(why),
            Answer::Value(value) if self.held.is_none() => match self.plan.read(&value) {
                // The reservation happened (now or before): the settlement is the difference,
                // and slices it took for the proxy (which never heard of them) go back too.
                Ok(Reserved::Admitted { .. }) => {
                    let grants = self.plan.grants(&value);
                    self.held = Some(self.plan.amounts.iter().zip(grants).map(|(a, g)| a.saturating_add(g)).collect());
                    self.by_sha = true;
                    Progress::Next
                }
                // It had been refused before the request went on anyway: it holds nothing.
                Ok(_) => {
                    self.held = Some(vec![0; self.plan.amounts.len()]);
                    self.by_sha = true;
                    Progress::Next
                }
                Err(err) => Progress::Later(err.0),
            },
            Answer::Value(_) => Progress::Done,
        }
    }

    pub fn op(&self) -> &str {
        &self.plan.op
    }
}

/// Settlements waiting to be sent, and those sent, by call token. Bounded: past
/// [`Outbox::MAX_WAITING`] the oldest is dropped (logged; its reservation stays counted, which
/// errs on the side of the budget).
#[derive(Debug, Default)]
pub struct Outbox {
    waiting: VecDeque<Waiting>,
    in_flight: HashMap<u32, Waiting>,
}

#[derive(Debug)]
struct Waiting {
    settlement: Settlement,
    /// Not sent again before this (milliseconds of the host's clock).
    not_before_ms: u64,
    first_ms: u64,
    /// Sent: the name its answer must carry ([`Call::callback`]).
    callback: String,
}

impl Outbox {
    pub const MAX_WAITING: usize = 10_000;
    /// Calls in flight at once from one worker.
    pub const MAX_IN_FLIGHT: usize = 64;
    /// A settlement still unsent after this is dropped: the operation keys that make retries
    /// safe live [`OPERATION_TTL_SECS`] in Redis.
    const GIVE_UP_MS: u64 = (OPERATION_TTL_SECS - 3_600) * 1_000;

    /// Queues a settlement; returns the operation of one dropped to make room.
    pub fn push(&mut self, settlement: Settlement, now_ms: u64) -> Option<String> {
        let dropped = if self.waiting.len() >= Self::MAX_WAITING {
            self.waiting.pop_front().map(|w| w.settlement.op().to_string())
        } else {
            None
        };
        self.waiting.push_back(Waiting {
            settlement,
            not_before_ms: now_ms,
            first_ms: now_ms,
            callback: String::new(),
        });
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    /// Settlements due to be sent now, as many as may be in flight; each is handed back with
    /// [`Outbox::sent`] or [`Outbox::unsent`].
    pub fn due(&mut self, now_ms: u64) -> Vec<(Settlement, u64)> {
        let mut due = Vec::new();
        let room = Self::MAX_IN_FLIGHT.saturating_sub(self.in_flight.len());
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(waiting) = self.waiting.pop_front() {
            if due.len() < room && waiting.not_before_ms <= now_ms {
                due.push((waiting.settlement, waiting.first_ms));
            } else {
                kept.push_back(waiting);
            }
        }
        self.waiting = kept;
        due
    }

    pub fn sent(&mut self, token: u32, settlement: Settlement, first_ms: u64, callback: String) {
        self.in_flight.insert(token, Waiting { settlement, not_before_ms: 0, first_ms, callback });
    }

    /// A settlement the host would not send: tried again later.
    pub fn unsent(&mut self, settlement: Settlement, first_ms: u64, now_ms: u64) {
        let not_before_ms = now_ms + backoff_ms(settlement.attempts);
        self.waiting.push_back(Waiting { settlement, not_before_ms, first_ms, callback: String::new() });
    }

    /// The answer to call `token` (as [`read_answer`] takes it). Returns what to log: `Err` a
    /// settlement given up on.
    pub fn answered(
        &mut self,
        token: u32,
        status: Option<u16>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Option<String>, String> {
        let Some(mut waiting) = self.in_flight.remove(&token) else { return Ok(None) };
        let answer = read_answer(status, body, &waiting.callback);
        match waiting.settlement.on_answer(answer) {
            Progress::Done => Ok(None),
            Progress::Next => {
                waiting.not_before_ms = now_ms;
                self.waiting.push_front(waiting);
                Ok(None)
            }
            Progress::Later(why) if now_ms.saturating_sub(waiting.first_ms) > Self::GIVE_UP_MS => {
                Err(format!("op={} attempts={} last={why}", waiting.settlement.op(), waiting.settlement.attempts))
            }
            Progress::Later(why) => {
                waiting.not_before_ms = now_ms + backoff_ms(waiting.settlement.attempts);
                let note = format!("op={} attempts={} why={why}", waiting.settlement.op(), waiting.settlement.attempts);
                self.waiting.push_back(waiting);
                Ok(Some(note))
            }
        }
    }
}

/// 100 ms, doubling per attempt, at most 30 s.
fn backoff_ms(attempts: u32) -> u64 {
    (100u64 << attempts.min(9)).min(30_000)
}

pub fn counter_key(touch: &Touch) -> String {
    format!("{COUNTER_PREFIX}{}:{}", touch.key, touch.window)
}

/// Seconds a counter lives: to its window's end, plus the grace.
fn ttl(touch: &Touch, now_secs: i64) -> i64 {
    (touch.resets_at - now_secs).max(0) + GRACE_SECS
}

#[cfg(test)]
mod tests;
