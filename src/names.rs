//! Every externally visible name that is not configurable: header suffixes and counter names.
//! Header names are prefixed at configure time (see `config::Policy::headers`).

/// Suffixes appended to the configured header prefix (default `x-tollgate-`).
pub const HEADER_MODEL: &str = "model";
pub const HEADER_PROVIDER: &str = "provider";
/// Request header Tollgate sets to the chosen provider's Envoy cluster (route `cluster_header`).
pub const HEADER_CLUSTER: &str = "cluster";
pub const HEADER_INPUT_TOKENS: &str = "input-tokens";
pub const HEADER_OUTPUT_TOKENS: &str = "output-tokens";
pub const HEADER_COST_USD: &str = "cost-usd";
pub const HEADER_CACHED_INPUT_TOKENS: &str = "cached-input-tokens";
pub const HEADER_CACHE_WRITE_TOKENS: &str = "cache-write-tokens";
pub const HEADER_REASONING_TOKENS: &str = "reasoning-tokens";
/// `input=…; cached_input=…; cache_write=…; output=…; reasoning=…` in USD.
pub const HEADER_COST_BREAKDOWN: &str = "cost-breakdown";
/// The price table's version, so a cost can be traced to the prices that made it.
pub const HEADER_PRICE_TABLE: &str = "price-table";

/// Value of the cost header when the served model has no price.
pub const COST_UNPRICED: &str = "unpriced";
/// Value of the cost header when the response carried no usage to price.
pub const COST_UNKNOWN: &str = "unknown";

/// Key under which the usage record is exported: Envoy filter state `wasm.tollgate.usage`
/// (`%FILTER_STATE(wasm.tollgate.usage:PLAIN)%` in access logs), Kong `kong.ctx.shared.tollgate_usage`.
pub const EXPORT_USAGE: &str = "tollgate.usage";

/// Filter-state key of a fallback plan, written by the downstream filter and read by the
/// upstream filter on every attempt (no dot: Envoy reads dotted keys back as paths).
pub const EXPORT_CHAIN: &str = "tollgate_chain";

/// Counters the filter increments. Envoy shows them as `wasmcustom.<name>`, Kong as
/// `pw:<filter>:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// An LLM API request whose body was read and understood.
    RequestsInspected,
    /// Rejected with 400: the body was empty, not JSON, or had fields of the wrong type.
    RequestsRejectedInvalidBody,
    /// Rejected with 413: the body exceeded `max_request_body_bytes`.
    RequestsRejectedTooLarge,
    /// Refused by the model policy (allow/deny lists, deny rules, context window).
    RequestsRefusedByPolicy,
    /// A tenant, team or project value refused (control characters, over 128 bytes).
    AttributionRejected,
    /// A successful non-streaming response that carried no usage object.
    ResponsesWithoutUsage,
    /// A response whose served model is not in the price table.
    ResponsesUnpriced,
    /// A non-streaming response that was passed through without reading it (too large, or not JSON).
    ResponsesNotInspected,
}

impl Counter {
    pub const ALL: [Counter; 8] = [
        Counter::RequestsInspected,
        Counter::RequestsRejectedInvalidBody,
        Counter::RequestsRejectedTooLarge,
        Counter::RequestsRefusedByPolicy,
        Counter::AttributionRejected,
        Counter::ResponsesWithoutUsage,
        Counter::ResponsesUnpriced,
        Counter::ResponsesNotInspected,
    ];

    pub fn metric_name(self) -> &'static str {
        match self {
            Counter::RequestsInspected => "tollgate.requests_inspected",
            Counter::RequestsRejectedInvalidBody => "tollgate.requests_rejected_invalid_body",
            Counter::RequestsRejectedTooLarge => "tollgate.requests_rejected_too_large",
            Counter::RequestsRefusedByPolicy => "tollgate.requests_refused_by_policy",
            Counter::AttributionRejected => "tollgate.attribution_rejected",
            Counter::ResponsesWithoutUsage => "tollgate.responses_without_usage",
            Counter::ResponsesUnpriced => "tollgate.responses_unpriced",
            Counter::ResponsesNotInspected => "tollgate.responses_not_inspected",
        }
    }
}
