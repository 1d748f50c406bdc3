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
/// Request header toward the upstream: the `policy/check` pairs whose `flag` found something.
pub const HEADER_GUARDRAIL_FLAGS: &str = "guardrail-flags";
pub const HEADER_CACHED_INPUT_TOKENS: &str = "cached-input-tokens";
pub const HEADER_CACHE_WRITE_TOKENS: &str = "cache-write-tokens";
pub const HEADER_REASONING_TOKENS: &str = "reasoning-tokens";
/// `input=…; cached_input=…; cache_write=…; output=…; reasoning=…` in USD.
pub const HEADER_COST_BREAKDOWN: &str = "cost-breakdown";
/// The price table's version, so a cost can be traced to the prices that made it.
pub const HEADER_PRICE_TABLE: &str = "price-table";
/// Every suffix `delivery::cost_fields` may give (the cost headers and trailers).
pub const COST_HEADERS: [&str; 10] = [
    HEADER_MODEL,
    HEADER_PROVIDER,
    HEADER_INPUT_TOKENS,
    HEADER_OUTPUT_TOKENS,
    HEADER_CACHED_INPUT_TOKENS,
    HEADER_CACHE_WRITE_TOKENS,
    HEADER_REASONING_TOKENS,
    HEADER_COST_USD,
    HEADER_COST_BREAKDOWN,
    HEADER_PRICE_TABLE,
];
/// On an answer Tollgate gave itself from its own count (`true`): Anthropic's count_tokens for a
/// model served by a provider without such an endpoint.
pub const HEADER_ESTIMATED: &str = "estimated";

/// Value of the cost header when the served model has no price.
pub const COST_UNPRICED: &str = "unpriced";
/// Value of the cost header when the response carried no usage to price.
pub const COST_UNKNOWN: &str = "unknown";

/// Key under which the usage record is exported: Envoy filter state `wasm.tollgate.usage`
/// (`%FILTER_STATE(wasm.tollgate.usage:PLAIN)%` in access logs), Kong `kong.ctx.shared.tollgate_usage`.
pub const EXPORT_USAGE: &str = "tollgate.usage";

/// Scalar copies of fields of the usage record, exported next to it under these keys for what
/// cannot parse JSON: Envoy tracing `custom_tags` (`%FILTER_STATE(wasm.tollgate.cost_usd:PLAIN)%`),
/// Kong log plugins (`kong.ctx.shared.tollgate_cost_usd`). Each names its field by JSON pointer;
/// a field that is null or absent is not exported.
pub const EXPORT_SCALARS: [(&str, &str); 7] = [
    ("tollgate.provider", "/provider"),
    ("tollgate.model_requested", "/model_requested"),
    ("tollgate.model_served", "/model_served"),
    ("tollgate.tenant", "/tenant"),
    ("tollgate.input_tokens", "/tokens/input/tokens"),
    ("tollgate.output_tokens", "/tokens/output/tokens"),
    ("tollgate.cost_usd", "/cost_usd"),
];

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
    /// The filter could not do its job on a request and, `failure_mode` being `open`, let it
    /// through untouched.
    RequestsFailedOpen,
    /// The filter could not do its job on a request and, `failure_mode` being `closed`, refused it.
    RequestsFailedClosed,
    /// Refused by a guardrail `block` (the labelled `guardrail_blocks` says which).
    RequestsBlockedByGuardrails,
    /// A response replaced by a guardrail's error, or a stream a guardrail ended.
    ResponsesBlockedByGuardrails,
    /// A response body the filter had to change (translation, a guardrail's mask, restore or
    /// block, the usage chunk removed, the cost line) that the proxy refused to change: the
    /// provider's bytes went on as they were.
    ResponsesNotRewritten,
    /// An answer's text the guardrails could not read (not UTF-8, a lone surrogate escape): the
    /// answer failed closed (an error, or the stream ended), or went on as sent under
    /// `failure_mode: open`.
    ResponseTextsUnreadable,
    /// A provider's stream event that could not be read for translation, or whose content the
    /// client's dialect cannot carry: the client's stream ended there with an error event in its
    /// dialect.
    StreamEventsUntranslatable,
    /// A request whose route name the proxy would not hand over: rules matching on `route`,
    /// route-limited guardrail policies and per-route failure modes were decided as for a
    /// request without a route.
    RouteNamesUnreadable,
    /// Refused with a 429 by a budget or rate limit (the labelled `budget_requests` says which).
    RequestsRefusedByBudget,
    /// The budgets' counters could not be read or written (reserve, grow, settle): the route's
    /// `failure_mode` decided.
    BudgetStoreErrors,
}

impl Counter {
    pub const ALL: [Counter; 18] = [
        Counter::RequestsInspected,
        Counter::RequestsRejectedInvalidBody,
        Counter::RequestsRejectedTooLarge,
        Counter::RequestsRefusedByPolicy,
        Counter::AttributionRejected,
        Counter::ResponsesWithoutUsage,
        Counter::ResponsesUnpriced,
        Counter::ResponsesNotInspected,
        Counter::RequestsFailedOpen,
        Counter::RequestsFailedClosed,
        Counter::RequestsBlockedByGuardrails,
        Counter::ResponsesBlockedByGuardrails,
        Counter::ResponsesNotRewritten,
        Counter::ResponseTextsUnreadable,
        Counter::StreamEventsUntranslatable,
        Counter::RouteNamesUnreadable,
        Counter::RequestsRefusedByBudget,
        Counter::BudgetStoreErrors,
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
            Counter::RequestsFailedOpen => "tollgate.requests_failed_open",
            Counter::RequestsFailedClosed => "tollgate.requests_failed_closed",
            Counter::RequestsBlockedByGuardrails => "tollgate.requests_blocked_by_guardrails",
            Counter::ResponsesBlockedByGuardrails => "tollgate.responses_blocked_by_guardrails",
            Counter::ResponsesNotRewritten => "tollgate.responses_not_rewritten",
            Counter::ResponseTextsUnreadable => "tollgate.response_texts_unreadable",
            Counter::StreamEventsUntranslatable => "tollgate.stream_events_untranslatable",
            Counter::RouteNamesUnreadable => "tollgate.route_names_unreadable",
            Counter::RequestsRefusedByBudget => "tollgate.requests_refused_by_budget",
            Counter::BudgetStoreErrors => "tollgate.budget_store_errors",
        }
    }
}
