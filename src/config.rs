//! Filter configuration: the JSON document given as Envoy's plugin `configuration` or Kong's
//! filter `config`, parsed once and compiled into an immutable [`Policy`].
//!
//! Typos must fail at load time, not silently change behaviour, so unknown fields are rejected
//! and every error names the field it is about.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::budgets::{self, Budgets};
use crate::guardrails::{self, Guardrails};
use crate::metrics::LabelRegistry;
use crate::names;
use crate::pricing::usd::UsdPerMillion;
use crate::pricing::{litellm, ModelPrice, PriceTable};
use crate::routing::{self, RawRouting, Routing};
use crate::tenant::{self, TenantPolicy};

/// Largest body limit accepted. Envoy must be able to buffer this much (its
/// `per_connection_buffer_limit_bytes` must be at least as large), so keep it bounded.
pub const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The configuration as written by the operator. Field names are the public contract:
/// `kong/tollgate.meta.json` mirrors them and a test keeps the two in step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_header_prefix")]
    header_prefix: String,
    #[serde(default = "default_body_limit")]
    max_request_body_bytes: usize,
    #[serde(default = "default_body_limit")]
    max_response_body_bytes: usize,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default = "default_true")]
    include_usage: bool,
    #[serde(default = "default_max_stream_event_bytes")]
    max_stream_event_bytes: usize,
    #[serde(default)]
    providers: BTreeMap<String, routing::compile::RawProvider>,
    #[serde(default)]
    targets: BTreeMap<String, routing::compile::RawTarget>,
    #[serde(default)]
    models: routing::compile::RawModels,
    #[serde(default)]
    rules: Vec<routing::compile::RawRule>,
    #[serde(default)]
    tenant: Option<tenant::RawTenant>,
    #[serde(default = "default_max_tokens")]
    default_max_tokens: u32,
    #[serde(default)]
    position: Option<String>,
    #[serde(default)]
    prices: BTreeMap<String, RawPrice>,
    /// LiteLLM's `model_prices_and_context_window.json` object (or some of its entries).
    #[serde(default)]
    litellm_prices: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    failure_mode: Option<serde_json::Value>,
    #[serde(default)]
    guardrails: guardrails::RawGuardrails,
    #[serde(default)]
    budgets: budgets::RawBudgets,
}

/// A model's prices in USD per million tokens, as the operator writes them. Absent optional
/// prices fall back as the built-in table's do (cache reads to input, and so on).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: UsdPerMillion,
    output: UsdPerMillion,
    #[serde(default)]
    cache_read: Option<UsdPerMillion>,
    #[serde(default)]
    cache_write_5m: Option<UsdPerMillion>,
    #[serde(default)]
    cache_write_1h: Option<UsdPerMillion>,
    #[serde(default)]
    reasoning: Option<UsdPerMillion>,
    #[serde(default)]
    audio_input: Option<UsdPerMillion>,
    #[serde(default)]
    audio_output: Option<UsdPerMillion>,
}

/// Names of every field `RawConfig` accepts, for the schema consistency test.
pub const FIELDS: [&str; 18] = [
    "header_prefix",
    "max_request_body_bytes",
    "max_response_body_bytes",
    "log_level",
    "include_usage",
    "max_stream_event_bytes",
    "providers",
    "targets",
    "models",
    "rules",
    "tenant",
    "default_max_tokens",
    "position",
    "prices",
    "litellm_prices",
    "failure_mode",
    "guardrails",
    "budgets",
];

fn default_header_prefix() -> String {
    "x-tollgate-".to_string()
}

fn default_body_limit() -> usize {
    4 * 1024 * 1024
}

fn default_max_tokens() -> u32 {
    4096
}

fn default_true() -> bool {
    true
}

fn default_max_stream_event_bytes() -> usize {
    1024 * 1024
}

fn default_log_level() -> String {
    "info".to_string()
}

/// A configuration that could not be loaded: the field it is about and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(f, "invalid configuration: {}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), reason: reason.into() }
}

/// Response header names, prefix applied once at load time rather than on every response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    /// The configured prefix itself: request headers starting with it are removed on the way in.
    pub prefix: String,
    pub model: String,
    pub provider: String,
    /// Request header naming the Envoy cluster for the route's `cluster_header`.
    pub cluster: String,
    pub input_tokens: String,
    pub output_tokens: String,
    pub cost_usd: String,
    pub estimated: String,
    /// Every cost header's full name by its suffix (`delivery::cost_fields`), built once at load:
    /// an answer sets up to ten, and naming each per answer cost an allocation apiece.
    pub cost: Vec<(&'static str, String)>,
}

impl HeaderNames {
    fn with_prefix(prefix: &str) -> Self {
        HeaderNames {
            prefix: prefix.to_string(),
            model: format!("{prefix}{}", names::HEADER_MODEL),
            provider: format!("{prefix}{}", names::HEADER_PROVIDER),
            cluster: format!("{prefix}{}", names::HEADER_CLUSTER),
            input_tokens: format!("{prefix}{}", names::HEADER_INPUT_TOKENS),
            output_tokens: format!("{prefix}{}", names::HEADER_OUTPUT_TOKENS),
            cost_usd: format!("{prefix}{}", names::HEADER_COST_USD),
            estimated: format!("{prefix}{}", names::HEADER_ESTIMATED),
            cost: names::COST_HEADERS.iter().map(|suffix| (*suffix, format!("{prefix}{suffix}"))).collect(),
        }
    }

    /// The full name of the cost header with this suffix (the prefix put in front when the
    /// suffix is not one of `names::COST_HEADERS`).
    pub fn cost_header(&self, suffix: &str) -> std::borrow::Cow<'_, str> {
        match self.cost.iter().find(|(known, _)| *known == suffix) {
            Some((_, name)) => std::borrow::Cow::Borrowed(name.as_str()),
            None => std::borrow::Cow::Owned([self.prefix.as_str(), suffix].concat()),
        }
    }
}

/// Where the filter runs in Envoy's chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Position {
    /// On the listener: the whole exchange (the default, and the only position on Kong).
    #[default]
    Downstream,
    /// As an upstream HTTP filter on an aggregate cluster: one fallback attempt at a time.
    Upstream,
}

/// What the filter does with a request when it cannot do its job on it (the proxy refused a
/// hostcall it needs, the body could not be read or rewritten).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Pass the request on untouched (availability first); counted in `requests_failed_open`.
    Open,
    /// Answer a 5xx in the client's dialect (policy first; the default); counted in
    /// `requests_failed_closed`.
    #[default]
    Closed,
}

/// The failure mode of each route: `default`, or the one named for the proxy's route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailurePolicy {
    pub default: FailureMode,
    /// By route name (Envoy `xds.route_name`, Kong `kong.route_name`), exact.
    pub routes: BTreeMap<String, FailureMode>,
}

impl FailurePolicy {
    /// Whether the route name is needed to decide (it costs a hostcall).
    pub fn by_route(&self) -> bool {
        !self.routes.is_empty()
    }

    pub fn mode_for(&self, route: Option<&str>) -> FailureMode {
        route.and_then(|r| self.routes.get(r)).copied().unwrap_or(self.default)
    }
}

/// The compiled configuration shared by every request of a filter instance.
#[derive(Debug, Clone)]
pub struct Policy {
    pub headers: HeaderNames,
    pub max_request_body_bytes: usize,
    pub max_response_body_bytes: usize,
    pub log_level: log::LevelFilter,
    /// Ask OpenAI streams for their final usage chunk, and hide it from clients that did not.
    pub include_usage: bool,
    /// Stream events larger than this are skipped by the usage reader (and counted).
    pub max_stream_event_bytes: usize,
    pub routing: Routing,
    /// Where the tenant, team and project of a request come from.
    pub tenant: TenantPolicy,
    /// `max_tokens` sent to Anthropic when an OpenAI client gave none (Anthropic requires it).
    pub default_max_tokens: u32,
    pub position: Position,
    pub prices: PriceTable,
    /// What loading this configuration is worth telling the operator without refusing it
    /// (models of `litellm_prices` that cannot be held exactly), logged once at load.
    pub load_notes: Vec<String>,
    /// The metric label values this VM has seen (the cardinality guard's state).
    pub labels: LabelRegistry,
    /// Open or closed when the filter cannot do its job, per route.
    pub failure: FailurePolicy,
    /// Checks on request and response text and parameters (compiled once, shared by requests).
    pub guardrails: Rc<Guardrails>,
    /// Spend budgets and rate limits, counted beyond one request.
    pub budgets: Rc<Budgets>,
}

impl Policy {
    /// The LiteLLM namespace prices are looked up under for a request routed to `provider`
    /// (`None`: the proxy's own route chose the upstream, or the provider has none).
    pub fn price_namespace(&self, provider: Option<&str>) -> Option<&str> {
        let provider = provider?;
        self.routing.providers.iter().find(|p| p.name == provider)?.litellm_provider.as_deref()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            headers: HeaderNames::with_prefix(&default_header_prefix()),
            max_request_body_bytes: default_body_limit(),
            max_response_body_bytes: default_body_limit(),
            log_level: log::LevelFilter::Info,
            include_usage: true,
            max_stream_event_bytes: default_max_stream_event_bytes(),
            routing: Routing::default(),
            tenant: TenantPolicy::default(),
            default_max_tokens: default_max_tokens(),
            position: Position::Downstream,
            prices: PriceTable::builtin(),
            load_notes: Vec::new(),
            labels: LabelRegistry::default(),
            failure: FailurePolicy::default(),
            guardrails: Rc::default(),
            budgets: Rc::default(),
        }
    }
}

/// Parse and validate a configuration document. Empty input (no configuration at all) means
/// every default. Kong may hand over the object as a JSON string holding the JSON text; both
/// forms are accepted.
pub fn compile(bytes: &[u8]) -> Result<Policy, ConfigError> {
    compile_with_env(bytes, &|name| std::env::var(name).ok())
}

/// As [`compile`], with provider credentials looked up in `env` instead of the process
/// environment (the Wasm VM's, set by Envoy's `vm_config.environment_variables`).
pub fn compile_with_env(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Policy, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("", "configuration is not valid UTF-8"))?;
    if text.trim().is_empty() {
        return Ok(Policy::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid("", format!("not valid JSON: {e}")))?;
    let value = match value {
        serde_json::Value::String(inner) => serde_json::from_str(&inner)
            .map_err(|e| invalid("", format!("configuration string is not valid JSON: {e}")))?,
        other => other,
    };
    if !value.is_object() {
        return Err(invalid("", "configuration must be a JSON object"));
    }
    let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        invalid(&field, e.into_inner().to_string())
    })?;
    compile_raw(raw, env)
}

fn compile_raw(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Policy, ConfigError> {
    validate_header_prefix(&raw.header_prefix)?;
    validate_body_limit("max_request_body_bytes", raw.max_request_body_bytes)?;
    validate_body_limit("max_response_body_bytes", raw.max_response_body_bytes)?;
    validate_body_limit("max_stream_event_bytes", raw.max_stream_event_bytes)?;
    let log_level = parse_log_level(&raw.log_level)?;
    let position = match raw.position.as_deref() {
        None | Some("downstream") => Position::Downstream,
        Some("upstream") => Position::Upstream,
        Some(other) => {
            return Err(invalid("position", format!("unknown position {other:?}: expected downstream or upstream")))
        }
    };
    if raw.default_max_tokens == 0 {
        return Err(invalid("default_max_tokens", "must be at least 1"));
    }
    let mut load_notes = Vec::new();
    let prices = compile_prices(raw.prices, raw.litellm_prices.as_ref(), &mut load_notes)?;
    let guardrails = Rc::new(guardrails::compile(raw.guardrails)?);
    let failure = compile_failure_mode(raw.failure_mode.as_ref())?;
    let mut raw_budgets = raw.budgets;
    let raw_admin = raw_budgets.admin.take();
    let mut budgets = budgets::compile(raw_budgets).map_err(|(field, reason)| invalid(&field, reason))?;
    budgets.admin = budgets::admin::compile(raw_admin, env).map_err(|(field, reason)| invalid(&field, reason))?;
    let budgets = Rc::new(budgets);
    let routing = routing::compile(
        RawRouting { providers: raw.providers, targets: raw.targets, models: raw.models, rules: raw.rules },
        env,
    )
    .map_err(|(field, reason)| invalid(&field, reason))?;
    let routing = price_namespaces(routing, &prices)?;
    Ok(Policy {
        headers: HeaderNames::with_prefix(&raw.header_prefix),
        max_request_body_bytes: raw.max_request_body_bytes,
        max_response_body_bytes: raw.max_response_body_bytes,
        log_level,
        include_usage: raw.include_usage,
        max_stream_event_bytes: raw.max_stream_event_bytes,
        routing,
        tenant: tenant::compile(raw.tenant).map_err(|(field, reason)| invalid(&field, reason))?,
        default_max_tokens: raw.default_max_tokens,
        position,
        prices,
        load_notes,
        labels: LabelRegistry::default(),
        failure,
        guardrails,
        budgets,
    })
}

/// `"open"`, `"closed"`, or `{"default": "closed", "routes": {"<route name>": "open", …}}`.
fn compile_failure_mode(raw: Option<&serde_json::Value>) -> Result<FailurePolicy, ConfigError> {
    const FIELD: &str = "failure_mode";
    let mode = |field: &str, value: &serde_json::Value| match value.as_str() {
        Some("open") => Ok(FailureMode::Open),
        Some("closed") => Ok(FailureMode::Closed),
        _ => Err(invalid(field, format!("{value} is not a failure mode: expected \"open\" or \"closed\""))),
    };
    let Some(raw) = raw else { return Ok(FailurePolicy::default()) };
    let serde_json::Value::Object(object) = raw else {
        return Ok(FailurePolicy { default: mode(FIELD, raw)?, routes: BTreeMap::new() });
    };
    if let Some(unknown) = object.keys().find(|k| !matches!(k.as_str(), "default" | "routes")) {
        return Err(invalid(FIELD, format!("unknown field `{unknown}`, expected `default` or `routes`")));
    }
    let default = match object.get("default") {
        Some(value) => mode(&format!("{FIELD}.default"), value)?,
        None => FailureMode::default(),
    };
    let mut routes = BTreeMap::new();
    match object.get("routes") {
        None => {}
        Some(serde_json::Value::Object(by_route)) => {
            for (route, value) in by_route {
                routes.insert(route.clone(), mode(&format!("{FIELD}.routes.{route}"), value)?);
            }
        }
        Some(other) => {
            return Err(invalid(&format!("{FIELD}.routes"), format!("{other} is not an object of route names")))
        }
    }
    Ok(FailurePolicy { default, routes })
}

/// The configured prices over a loaded LiteLLM price list over the built-in table. Amounts
/// of `prices` were already checked (exact decimal, not negative, whole micro-USD per million
/// tokens) while deserializing, with the field named; `litellm_prices` is converted as
/// `scripts/generate-prices.py` converts LiteLLM's file, its unrepresentable models skipped and
/// named in `notes`.
fn compile_prices(
    raw: BTreeMap<String, RawPrice>,
    litellm_prices: Option<&serde_json::Map<String, serde_json::Value>>,
    notes: &mut Vec<String>,
) -> Result<PriceTable, ConfigError> {
    let mut overrides = BTreeMap::new();
    for (model, p) in raw {
        if model.trim().is_empty() || model.trim() != model {
            return Err(invalid(
                "prices",
                format!("{model:?} is not a model name: names are not empty and have no surrounding spaces"),
            ));
        }
        let price = ModelPrice {
            cache_read: p.cache_read.map(|u| u.0),
            cache_write_5m: p.cache_write_5m.map(|u| u.0),
            cache_write_1h: p.cache_write_1h.map(|u| u.0),
            reasoning: p.reasoning.map(|u| u.0),
            audio_input: p.audio_input.map(|u| u.0),
            audio_output: p.audio_output.map(|u| u.0),
            ..ModelPrice::flat(p.input.0, p.output.0)
        };
        overrides.insert(model, price);
    }
    let conversion = match litellm_prices {
        None => None,
        Some(list) => {
            let conversion =
                litellm::convert(list).map_err(|bad| invalid(&format!("litellm_prices.{}", bad.path), bad.reason))?;
            notes.push(litellm_prices_note(&conversion));
            Some(conversion)
        }
    };
    let table = PriceTable::layered(overrides, conversion);
    if let (Some(note), Some(sha)) = (notes.last_mut(), table.litellm_prices_sha256()) {
        note.push_str(&format!("; price table {}, litellm_prices sha256 {sha}", table.version()));
    }
    Ok(table)
}

/// The load-time line for `litellm_prices`: how many models were loaded, and every model left
/// out because it cannot be held exactly, with why.
fn litellm_prices_note(conversion: &litellm::Conversion) -> String {
    let mut note = format!(
        "litellm_prices: {} models loaded, {} left out as not priced by tokens, {} skipped as not held exactly",
        conversion.models.len(),
        conversion.not_token_priced,
        conversion.skipped.len()
    );
    if !conversion.skipped.is_empty() {
        let named: Vec<String> = conversion.skipped.iter().map(|(model, why)| format!("{model} ({why})")).collect();
        note.push_str(&format!(": {}", named.join(", ")));
    }
    note
}

/// Each provider's LiteLLM namespace: its `litellm_provider`, which must be a prefix some
/// priced model is keyed under, or by default its own name when it is one.
fn price_namespaces(mut routing: Routing, prices: &PriceTable) -> Result<Routing, ConfigError> {
    for provider in &mut routing.providers {
        match provider.litellm_provider.as_deref() {
            Some(namespace) if !namespace.is_empty() && !prices.has_namespace(namespace) => {
                return Err(invalid(
                    &format!("providers.{}.litellm_provider", provider.name),
                    format!(
                        "{namespace:?} is not a LiteLLM provider prefix of the price table: no model is keyed \
                         \"{namespace}/…\" (LiteLLM's keys are like mistral/mistral-large-latest)"
                    ),
                ));
            }
            // Explicitly none: price by the model's own name only.
            Some("") => provider.litellm_provider = None,
            Some(_) => {}
            None => {
                provider.litellm_provider = prices.has_namespace(&provider.name).then(|| provider.name.clone());
            }
        }
    }
    Ok(routing)
}

/// Header names travel in HTTP/2 as lowercase tokens; anything else is rejected by the proxy
/// at request time, which is too late to tell the operator.
fn validate_header_prefix(prefix: &str) -> Result<(), ConfigError> {
    const FIELD: &str = "header_prefix";
    if prefix.is_empty() {
        return Err(invalid(FIELD, "must not be empty"));
    }
    if prefix.len() > 64 {
        return Err(invalid(FIELD, "must be at most 64 characters"));
    }
    let is_token_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c);
    if let Some(bad) = prefix.chars().find(|c| !is_token_char(*c)) {
        return Err(invalid(
            FIELD,
            format!("{bad:?} is not allowed: use lowercase letters, digits and '-' (for example \"x-tollgate-\")"),
        ));
    }
    Ok(())
}

fn validate_body_limit(field: &str, limit: usize) -> Result<(), ConfigError> {
    if limit == 0 || limit > MAX_BODY_LIMIT {
        return Err(invalid(field, format!("must be between 1 and {MAX_BODY_LIMIT} bytes, got {limit}")));
    }
    Ok(())
}

fn parse_log_level(level: &str) -> Result<log::LevelFilter, ConfigError> {
    match level {
        "trace" => Ok(log::LevelFilter::Trace),
        "debug" => Ok(log::LevelFilter::Debug),
        "info" => Ok(log::LevelFilter::Info),
        "warn" => Ok(log::LevelFilter::Warn),
        "error" => Ok(log::LevelFilter::Error),
        other => Err(invalid(
            "log_level",
            format!("unknown level {other:?}: expected one of trace, debug, info, warn, error"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> ConfigError {
        compile(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn empty_configuration_means_defaults() {
        let policy = compile(b"").unwrap();
        assert_eq!(policy.headers.cost_usd, "x-tollgate-cost-usd");
        assert_eq!(policy.max_request_body_bytes, 4 * 1024 * 1024);
        assert_eq!(policy.log_level, log::LevelFilter::Info);
        assert_eq!(compile(b"{}").unwrap().headers, policy.headers);
    }

    #[test]
    fn header_prefix_is_applied_to_every_header() {
        let policy = compile(br#"{"header_prefix": "x-ai-"}"#).unwrap();
        assert_eq!(policy.headers.model, "x-ai-model");
        assert_eq!(policy.headers.input_tokens, "x-ai-input-tokens");
        assert_eq!(policy.headers.output_tokens, "x-ai-output-tokens");
        assert_eq!(policy.headers.cost_usd, "x-ai-cost-usd");
    }

    #[test]
    fn kong_string_form_is_accepted() {
        let policy = compile(br#""{\"log_level\": \"debug\"}""#).unwrap();
        assert_eq!(policy.log_level, log::LevelFilter::Debug);
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let err = error_of(r#"{"header_prefx": "x-"}"#);
        assert!(err.reason.contains("unknown field `header_prefx`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = error_of(r#"{"max_request_body_bytes": "lots"}"#);
        assert_eq!(err.field, "max_request_body_bytes");
        assert!(err.to_string().starts_with("invalid configuration: max_request_body_bytes: invalid type"), "{err}");
    }

    #[test]
    fn out_of_range_limits_are_rejected() {
        assert_eq!(error_of(r#"{"max_request_body_bytes": 0}"#).field, "max_request_body_bytes");
        assert_eq!(error_of(r#"{"max_response_body_bytes": 999999999999}"#).field, "max_response_body_bytes");
        assert_eq!(error_of(r#"{"max_request_body_bytes": -1}"#).field, "max_request_body_bytes");
    }

    #[test]
    fn header_prefix_must_be_a_lowercase_token() {
        assert_eq!(error_of(r#"{"header_prefix": ""}"#).field, "header_prefix");
        assert!(error_of(r#"{"header_prefix": "X-Cost-"}"#).reason.contains("'X'"));
        assert!(error_of(r#"{"header_prefix": "x cost"}"#).reason.contains("' '"));
        assert!(error_of(r#"{"header_prefix": ":x-"}"#).reason.contains("':'"));
    }

    #[test]
    fn unknown_log_level_is_rejected() {
        let err = error_of(r#"{"log_level": "verbose"}"#);
        assert_eq!(err.field, "log_level");
        assert!(err.reason.contains("\"verbose\""));
    }

    #[test]
    fn configured_prices_override_the_built_in_table_exactly() {
        let policy = compile(
            br#"{"prices": {"my-llama": {"input": 0.2, "output": 0.6},
                            "gpt-4o": {"input": 2.0, "output": 8.0, "cache_read": 1.0},
                            "self-hosted": {"input": 0, "output": "0"},
                            "fancy": {"input": "0.1", "output": 0.3, "cache_write_5m": 0.125, "cache_write_1h": 0.2,
                                      "reasoning": 1, "audio_input": 0.000001, "audio_output": 12.5}}}"#,
        )
        .unwrap();
        let table = &policy.prices;
        assert_eq!(table.lookup("my-llama"), Some(ModelPrice::flat(200_000, 600_000)));
        let gpt = table.lookup("gpt-4o-2024-08-06").unwrap();
        assert_eq!((gpt.input, gpt.output, gpt.cache_read), (2_000_000, 8_000_000, Some(1_000_000)));
        assert!(gpt.tiers.is_empty());
        assert_eq!(table.lookup("self-hosted"), Some(ModelPrice::flat(0, 0)));
        let fancy = table.lookup("fancy").unwrap();
        assert_eq!(
            (fancy.input, fancy.output, fancy.cache_write_5m, fancy.cache_write_1h, fancy.reasoning),
            (100_000, 300_000, Some(125_000), Some(200_000), Some(1_000_000))
        );
        assert_eq!((fancy.audio_input, fancy.audio_output), (Some(1), Some(12_500_000)));
        // Models not configured keep the built-in prices.
        assert_eq!(table.lookup("gpt-4o-mini"), PriceTable::builtin().lookup("gpt-4o-mini"));
        assert_ne!(table.sha256(), PriceTable::builtin().sha256());
        assert_eq!(compile(b"{}").unwrap().prices, PriceTable::builtin());
    }

    #[test]
    fn bad_prices_are_refused_naming_the_field() {
        let cases = [
            (r#"{"prices": {"gpt-4o": {"input": -1, "output": 1}}}"#, "prices.gpt-4o.input", "negative"),
            (r#"{"prices": {"gpt-4o": {"input": 1, "output": 0.0000001}}}"#, "prices.gpt-4o.output", "decimal places"),
            (r#"{"prices": {"gpt-4o": {"input": "1e-3", "output": 1}}}"#, "prices.gpt-4o.input", "not a decimal"),
            (r#"{"prices": {"gpt-4o": {"input": true, "output": 1}}}"#, "prices.gpt-4o.input", "USD per million"),
            (r#"{"prices": {"gpt-4o": {"input": 1}}}"#, "prices.gpt-4o", "missing field `output`"),
            (
                r#"{"prices": {"gpt-4o": {"input": 1, "output": 1, "cached": 1}}}"#,
                "prices.gpt-4o.cached",
                "unknown field `cached`",
            ),
            (r#"{"prices": {"m": {"input": 1, "output": 1, "cache_read": -2}}}"#, "prices.m.cache_read", "negative"),
            (r#"{"prices": {"": {"input": 1, "output": 1}}}"#, "prices", "not a model name"),
            (r#"{"prices": {"gpt-4o": 2.5}}"#, "prices.gpt-4o", "invalid type"),
            (r#"{"prices": []}"#, "prices", "invalid type"),
        ];
        for (json, field, reason) in cases {
            let err = error_of(json);
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(err.reason.contains(reason), "{json}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid configuration: {field}: ")), "{err}");
        }
    }

    #[test]
    fn failure_mode_is_one_mode_or_one_per_route() {
        assert_eq!(compile(b"{}").unwrap().failure, FailurePolicy::default());
        assert_eq!(FailurePolicy::default().mode_for(Some("any")), FailureMode::Closed);
        assert_eq!(compile(br#"{"failure_mode": "open"}"#).unwrap().failure.mode_for(None), FailureMode::Open);
        let policy =
            compile(br#"{"failure_mode": {"default": "open", "routes": {"public": "closed"}}}"#).unwrap().failure;
        assert!(policy.by_route());
        assert_eq!(policy.mode_for(Some("public")), FailureMode::Closed);
        assert_eq!(policy.mode_for(Some("team-a")), FailureMode::Open);
        assert_eq!(policy.mode_for(None), FailureMode::Open);
        let only_routes = compile(br#"{"failure_mode": {"routes": {"a": "open"}}}"#).unwrap().failure;
        assert_eq!(
            (only_routes.mode_for(Some("a")), only_routes.mode_for(Some("b"))),
            (FailureMode::Open, FailureMode::Closed)
        );
        let cases = [
            (r#"{"failure_mode": "ajar"}"#, "failure_mode"),
            (r#"{"failure_mode": true}"#, "failure_mode"),
            (r#"{"failure_mode": {"default": "shut"}}"#, "failure_mode.default"),
            (r#"{"failure_mode": {"routes": {"public": 1}}}"#, "failure_mode.routes.public"),
            (r#"{"failure_mode": {"routes": ["public"]}}"#, "failure_mode.routes"),
            (r#"{"failure_mode": {"mode": "open"}}"#, "failure_mode"),
        ];
        for (json, field) in cases {
            assert_eq!(error_of(json).field, field, "{json}");
        }
    }

    #[test]
    fn non_object_and_non_json_documents_are_rejected() {
        assert!(error_of("[1,2]").reason.contains("must be a JSON object"));
        assert!(error_of("{").reason.contains("not valid JSON"));
        assert!(compile(&[0xff, 0xfe]).unwrap_err().reason.contains("UTF-8"));
    }

    #[test]
    fn providers_price_under_their_litellm_namespace() {
        let policy = compile(
            br#"{"providers": {
                "mistral": {"dialect": "openai", "cluster": "a"},
                "openai": {"dialect": "openai", "cluster": "b"},
                "eu-llm": {"dialect": "openai", "cluster": "c", "litellm_provider": "mistral"},
                "plain": {"dialect": "openai", "cluster": "d", "litellm_provider": ""}
            }}"#,
        )
        .unwrap();
        assert_eq!(policy.price_namespace(Some("mistral")), Some("mistral"), "a LiteLLM prefix by default");
        assert_eq!(policy.price_namespace(Some("openai")), None, "LiteLLM keys OpenAI's models bare");
        assert_eq!(policy.price_namespace(Some("eu-llm")), Some("mistral"));
        assert_eq!(policy.price_namespace(Some("plain")), None);
        assert_eq!(policy.price_namespace(None), None);
        let err =
            compile(br#"{"providers": {"p": {"dialect": "openai", "cluster": "a", "litellm_provider": "mistrall"}}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("providers.p.litellm_provider") && err.contains("mistrall/"), "{err}");
        // A namespace only configured prices use is still one.
        let own = br#"{"prices": {"acme/m1": {"input": 1, "output": 1}},
                      "providers": {"p": {"dialect": "openai", "cluster": "a", "litellm_provider": "acme"}}}"#;
        let policy = compile(own).unwrap();
        assert_eq!(policy.prices.find_at("m1", policy.price_namespace(Some("p"))).unwrap().key, "acme/m1");
    }
}
