//! Filter configuration: the JSON document given as Envoy's plugin `configuration` or Kong's
//! filter `config`, parsed once and compiled into an immutable [`Policy`].
//!
//! Typos must fail at load time, not silently change behaviour, so unknown fields are rejected
//! and every error names the field it is about.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

use crate::names;
use crate::pricing::PriceTable;
use crate::routing::{self, RawRouting, Routing};

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
    tenant_header: Option<String>,
    #[serde(default = "default_max_tokens")]
    default_max_tokens: u32,
    #[serde(default)]
    position: Option<String>,
}

/// Names of every field `RawConfig` accepts, for the schema consistency test.
pub const FIELDS: [&str; 13] = [
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
    "tenant_header",
    "default_max_tokens",
    "position",
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
    pub model: String,
    pub provider: String,
    /// Request header naming the Envoy cluster for the route's `cluster_header`.
    pub cluster: String,
    pub input_tokens: String,
    pub output_tokens: String,
    pub cost_usd: String,
}

impl HeaderNames {
    fn with_prefix(prefix: &str) -> Self {
        HeaderNames {
            model: format!("{prefix}{}", names::HEADER_MODEL),
            provider: format!("{prefix}{}", names::HEADER_PROVIDER),
            cluster: format!("{prefix}{}", names::HEADER_CLUSTER),
            input_tokens: format!("{prefix}{}", names::HEADER_INPUT_TOKENS),
            output_tokens: format!("{prefix}{}", names::HEADER_OUTPUT_TOKENS),
            cost_usd: format!("{prefix}{}", names::HEADER_COST_USD),
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
    /// `max_tokens` sent to Anthropic when an OpenAI client gave none (Anthropic requires it).
    pub default_max_tokens: u32,
    pub position: Position,
    pub prices: PriceTable,
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
            default_max_tokens: default_max_tokens(),
            position: Position::Downstream,
            prices: PriceTable::builtin(),
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
    let routing = routing::compile(
        RawRouting {
            providers: raw.providers,
            targets: raw.targets,
            models: raw.models,
            rules: raw.rules,
            tenant_header: raw.tenant_header,
        },
        env,
    )
    .map_err(|(field, reason)| invalid(&field, reason))?;
    Ok(Policy {
        headers: HeaderNames::with_prefix(&raw.header_prefix),
        max_request_body_bytes: raw.max_request_body_bytes,
        max_response_body_bytes: raw.max_response_body_bytes,
        log_level,
        include_usage: raw.include_usage,
        max_stream_event_bytes: raw.max_stream_event_bytes,
        routing,
        default_max_tokens: raw.default_max_tokens,
        position,
        prices: PriceTable::builtin(),
    })
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
    fn non_object_and_non_json_documents_are_rejected() {
        assert!(error_of("[1,2]").reason.contains("must be a JSON object"));
        assert!(error_of("{").reason.contains("not valid JSON"));
        assert!(compile(&[0xff, 0xfe]).unwrap_err().reason.contains("UTF-8"));
    }
}
