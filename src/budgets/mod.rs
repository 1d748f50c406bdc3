//! Budgets and rate limits that hold beyond one request: spend in USD over calendar windows,
//! and requests or tokens per second, minute or hour, for any scope (tenant, team, project,
//! client key, route, provider, model), counted where every worker (and, through Redis, every
//! replica) sees them.
//!
//! Pure: the exchange says what a request is ([`Facts`]) and what it may cost at most
//! ([`Need`]); this module says which counters it touches ([`Touch`]), reserves the worst case
//! against them ([`ledger::reserve`] over the proxy's shared data), and later settles them to
//! what the provider reported ([`ledger::settle`]). Refusals and the `x-ratelimit-*` headers are
//! shaped in [`reply`].
//!
//! How a request is counted, in order:
//! 1. Before it leaves: every limit that applies reserves the request's worst case (1 request;
//!    its prompt tokens; its output limit, else the route's `default_max_output_tokens`; their
//!    price). If one enforcing limit cannot take it, none keeps it and the request is refused.
//! 2. A stream whose output passes what it reserved takes more as it goes; when a limit cannot
//!    give more (or the route's `max_output_tokens` is reached), the stream is ended cleanly.
//! 3. When the answer is complete (or cut, or the client left), each counter gets the difference
//!    between what was reserved and what the provider reported (or, for a cut stream, what was
//!    relayed).

pub mod admin;
pub mod config;
pub mod lease;
pub mod ledger;
pub mod redis;
pub mod reply;
pub mod summary;
pub mod window;

use serde::Deserialize;

use crate::routing::glob::Glob;
use window::Window;

pub use config::{compile, RawBudgets};

/// What a limit counts. Spend is in pico-USD, the unit of every cost in Tollgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Spend,
    Requests,
    InputTokens,
    OutputTokens,
    TotalTokens,
}

impl Measure {
    /// The configuration field that sets it (`usd`, `requests`, …).
    pub fn field(self) -> &'static str {
        match self {
            Measure::Spend => "usd",
            Measure::Requests => "requests",
            Measure::InputTokens => "input_tokens",
            Measure::OutputTokens => "output_tokens",
            Measure::TotalTokens => "total_tokens",
        }
    }

    /// Whether a request's output moves it.
    pub fn counts_output(self) -> bool {
        matches!(self, Measure::Spend | Measure::OutputTokens | Measure::TotalTokens)
    }
}

/// Who or what a limit's counters are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Tenant,
    Team,
    Project,
    /// The hash of the client's API key (never the key).
    ClientKey,
    Route,
    Provider,
    Model,
}

impl Dimension {
    pub fn parse(name: &str) -> Option<Dimension> {
        Some(match name {
            "tenant" => Dimension::Tenant,
            "team" => Dimension::Team,
            "project" => Dimension::Project,
            "client_key" => Dimension::ClientKey,
            "route" => Dimension::Route,
            "provider" => Dimension::Provider,
            "model" => Dimension::Model,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant",
            Dimension::Team => "team",
            Dimension::Project => "project",
            Dimension::ClientKey => "client_key",
            Dimension::Route => "route",
            Dimension::Provider => "provider",
            Dimension::Model => "model",
        }
    }
}

/// One configured limit.
#[derive(Debug, Clone)]
pub struct Limit {
    pub name: String,
    pub measure: Measure,
    /// At most this much per window (pico-USD, requests or tokens).
    pub amount: u64,
    pub window: Window,
    /// A counter per distinct value of these (`by: ["tenant"]`: each tenant its own budget).
    pub by: Vec<Dimension>,
    /// Applies only to requests whose values match every glob (`match: {"model": "gpt-4o*"}`).
    pub matches: Vec<(Dimension, Glob)>,
    /// Applies only on these routes (globs on the proxy's route name).
    pub routes: Option<Vec<Glob>>,
    /// Decide and record, never refuse or cut.
    pub shadow: bool,
}

/// How much output a request without its own limit reserves, and the most any may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputPolicy {
    pub reserve: u64,
    /// The per-request ceiling: a stream is ended there whatever the budgets hold.
    pub ceiling: Option<u64>,
}

/// Where counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The proxy's shared data: exact across the workers of one Envoy or Kong node.
    Embedded,
    /// Redis behind an HTTP front (webdis), shared by every replica.
    Redis(RedisStore),
}

/// The Redis store: how to reach its HTTP front.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStore {
    /// Envoy: the cluster of the HTTP front; Kong: its `host:port`.
    pub endpoint: String,
    /// The `:authority` of calls to it.
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Slices of each counter held by the proxy, so that most requests make no call (opt-in).
    #[serde(default)]
    pub lease: Option<lease::Lease>,
}

fn default_authority() -> String {
    "webdis".to_string()
}

fn default_timeout_ms() -> u64 {
    200
}

impl RedisStore {
    fn check(&self) -> Result<(), (String, String)> {
        if self.endpoint.trim().is_empty() {
            return Err(("endpoint".into(), "names the HTTP front's cluster (Envoy) or host:port (Kong)".into()));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(("timeout_ms".into(), format!("{} is not between 1 and 60000", self.timeout_ms)));
        }
        if let Some(lease) = &self.lease {
            lease.check().map_err(|(field, reason)| (format!("lease.{field}"), reason))?;
        }
        Ok(())
    }
}

/// The compiled `budgets` configuration.
#[derive(Debug, Clone)]
pub struct Budgets {
    pub limits: Vec<Limit>,
    pub store: Store,
    /// The operators' API (`budgets.admin`): off when `None`.
    pub admin: Option<admin::AdminConfig>,
    defaults: OutputPolicy,
    routes: Vec<(Glob, OutputPolicy)>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            limits: Vec::new(),
            store: Store::Embedded,
            admin: None,
            defaults: OutputPolicy { reserve: config::DEFAULT_MAX_OUTPUT_TOKENS, ceiling: None },
            routes: Vec::new(),
        }
    }
}

/// What a request is, as limits see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub tenant: Option<&'a str>,
    pub team: Option<&'a str>,
    pub project: Option<&'a str>,
    pub client_key: Option<&'a str>,
    pub route: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
}

impl Facts<'_> {
    fn value(&self, dimension: Dimension) -> Option<&str> {
        match dimension {
            Dimension::Tenant => self.tenant,
            Dimension::Team => self.team,
            Dimension::Project => self.project,
            Dimension::ClientKey => self.client_key,
            Dimension::Route => self.route,
            Dimension::Provider => self.provider,
            Dimension::Model => self.model,
        }
    }
}

/// What a request may cost at most, or what it did cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `None`: the model has no price (a spend limit cannot count it).
    pub spend: Option<u64>,
}

impl Need {
    pub fn amount(&self, measure: Measure) -> Option<u64> {
        Some(match measure {
            Measure::Spend => self.spend?,
            Measure::Requests => self.requests,
            Measure::InputTokens => self.input_tokens,
            Measure::OutputTokens => self.output_tokens,
            Measure::TotalTokens => self.input_tokens.saturating_add(self.output_tokens),
        })
    }
}

/// One counter a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// Index into [`Budgets::limits`].
    pub limit: usize,
    /// The counter's key: the limit's name and the request's values of its `by` scopes.
    pub key: String,
    /// The window the request counts in, and when it ends (Unix seconds).
    pub window: i64,
    pub resets_at: i64,
}

/// The most output tokens one request reserves: more than any model writes, and small enough that
/// pricing them cannot overflow a pico-USD count.
pub const MAX_OUTPUT_RESERVATION: u64 = 10_000_000;

/// What stands in for a scope's value a request does not have (no tenant, no route name): such
/// requests share one counter rather than escape the limit.
pub const NO_VALUE: &str = "-";

impl Budgets {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Whether a `max_output_tokens` ceiling is set anywhere (streams are then watched even
    /// where no limit applies).
    pub fn has_ceiling(&self) -> bool {
        self.defaults.ceiling.is_some() || self.routes.iter().any(|(_, policy)| policy.ceiling.is_some())
    }

    /// Whether any limit or output setting depends on the route.
    pub fn needs_route_name(&self) -> bool {
        !self.routes.is_empty()
            || self.limits.iter().any(|l| {
                l.routes.is_some()
                    || l.by.contains(&Dimension::Route)
                    || l.matches.iter().any(|(d, _)| *d == Dimension::Route)
            })
    }

    /// The output reservation settings of a route.
    pub fn output_policy(&self, route: Option<&str>) -> OutputPolicy {
        route
            .and_then(|r| self.routes.iter().find(|(glob, _)| glob.is_match(r)))
            .map_or(self.defaults, |(_, policy)| *policy)
    }

    /// The output tokens a request reserves: its own limit (up to the ceiling), else the
    /// route's default; never more than [`MAX_OUTPUT_RESERVATION`] (a `max_tokens` of 10^12
    /// reserves that, which no budget of tokens or dollars holds: it is refused).
    pub fn output_reservation(&self, route: Option<&str>, requested: Option<u64>) -> u64 {
        let policy = self.output_policy(route);
        let wanted = requested.unwrap_or(policy.reserve);
        policy.ceiling.map_or(wanted, |ceiling| wanted.min(ceiling)).min(MAX_OUTPUT_RESERVATION)
    }

    /// Whether a limit counts tokens or dollars (then the prompt is counted for the reservation).
    pub fn counts_tokens(&self) -> bool {
        self.limits.iter().any(|l| l.measure != Measure::Requests)
    }

    /// Whether a limit is kept per client key (then the key is hashed before it is replaced).
    pub fn needs_client_key(&self) -> bool {
        self.limits
            .iter()
            .any(|l| l.by.contains(&Dimension::ClientKey) || l.matches.iter().any(|(d, _)| *d == Dimension::ClientKey))
    }

    /// The counters a request touches at `now_secs`, in configuration order.
    pub fn touches(&self, facts: &Facts<'_>, now_secs: i64) -> Vec<Touch> {
        let mut touches = Vec::new();
        for (index, limit) in self.limits.iter().enumerate() {
            if let Some(routes) = &limit.routes {
                if !facts.route.is_some_and(|r| routes.iter().any(|g| g.is_match(r))) {
                    continue;
                }
            }
            let matched =
                limit.matches.iter().all(|(d, glob)| facts.value(*d).is_some_and(|value| glob.is_match(value)));
            if !matched {
                continue;
            }
            let mut key = limit.name.clone();
            for dimension in &limit.by {
                key.push(':');
                push_escaped(&mut key, facts.value(*dimension).unwrap_or(NO_VALUE));
            }
            let window = limit.window.id(now_secs);
            touches.push(Touch { limit: index, key, window, resets_at: limit.window.end(window) });
        }
        touches
    }

    pub fn limit(&self, touch: &Touch) -> Option<&Limit> {
        self.limits.get(touch.limit)
    }
}

/// A scope value in a key: `:` separates values and `%` escapes, so both are escaped, as are
/// control characters and spaces (keys travel in HTTP paths to Redis's front).
fn push_escaped(key: &mut String, value: &str) {
    for c in value.chars() {
        if c == ':' || c == '%' || c == '/' || c.is_control() || c == ' ' {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                key.push('%');
                key.push(char::from(b"0123456789ABCDEF".get(usize::from(byte >> 4)).copied().unwrap_or(b'0')));
                key.push(char::from(b"0123456789ABCDEF".get(usize::from(byte & 15)).copied().unwrap_or(b'0')));
            }
        } else {
            key.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn budgets(limits: serde_json::Value) -> Budgets {
        compile(serde_json::from_value(json!({"limits": limits})).unwrap()).unwrap()
    }

    #[test]
    fn limits_touch_a_counter_per_scope_value_and_only_where_they_match() {
        let b = budgets(json!([
            {"name": "spend", "usd": "5", "window": "day", "by": ["tenant"]},
            {"name": "rpm", "requests": 60, "window": "minute", "by": ["client_key", "model"]},
            {"name": "gpt4", "total_tokens": 1000, "window": "hour", "match": {"model": "gpt-4o*"}},
            {"name": "team-route", "requests": 5, "window": "second", "routes": ["team-*"]}
        ]));
        let facts =
            Facts { tenant: Some("acme"), client_key: Some("k:1"), model: Some("gpt-4o-mini"), ..Facts::default() };
        let touches = b.touches(&facts, 120);
        let keys: Vec<&str> = touches.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["spend:acme", "rpm:k%3A1:gpt-4o-mini", "gpt4"]);
        assert_eq!(touches[1].window, 2);
        assert_eq!(touches[1].resets_at, 180);
        let other = Facts { model: Some("claude-haiku-4-5"), route: Some("team-a"), ..Facts::default() };
        let keys: Vec<String> = b.touches(&other, 0).into_iter().map(|t| t.key).collect();
        assert_eq!(
            keys,
            ["spend:-", "rpm:-:claude-haiku-4-5", "team-route"],
            "no tenant or key: the shared '-' counter"
        );
    }

    #[test]
    fn a_request_reserves_its_own_output_limit_up_to_the_ceiling() {
        let b = compile(
            serde_json::from_value(json!({"default_max_output_tokens": 500, "max_output_tokens": 2000})).unwrap(),
        )
        .unwrap();
        assert_eq!(b.output_reservation(None, None), 500);
        assert_eq!(b.output_reservation(None, Some(1000)), 1000);
        assert_eq!(
            b.output_reservation(None, Some(1_000_000_000_000)),
            2000,
            "an absurd max_tokens reserves the ceiling"
        );
        let open = compile(serde_json::from_value(json!({})).unwrap()).unwrap();
        assert_eq!(open.output_reservation(None, Some(1_000_000_000_000)), MAX_OUTPUT_RESERVATION);
    }

    #[test]
    fn total_tokens_add_input_and_output_and_an_unpriced_spend_is_none() {
        let need = Need { requests: 1, input_tokens: 10, output_tokens: 5, spend: None };
        assert_eq!(need.amount(Measure::TotalTokens), Some(15));
        assert_eq!(need.amount(Measure::Spend), None);
    }
}
