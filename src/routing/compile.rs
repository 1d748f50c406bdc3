//! The routing part of the configuration as written, and its compilation into [`Routing`].
//! Every error names the field (`rules[2].targets[0]: unknown target "fsat"`), and never
//! contains a secret.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::glob::Glob;
use super::{Action, AuthStyle, Dialect, Matcher, Provider, Routing, Rule, SplitArm, Target};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub models: RawModels,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    dialect: String,
    cluster: String,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    api_key: Option<RawSecret>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    litellm_provider: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    provider: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    context_window: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    split: Option<Vec<RawSplitArm>>,
    #[serde(default)]
    sticky_header: Option<String>,
    #[serde(default)]
    deny: Option<RawDeny>,
    #[serde(default)]
    overflow: Vec<String>,
    #[serde(default)]
    fallback_cluster: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    model: OneOrMany,
    #[serde(default)]
    route: OneOrMany,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tenant: OneOrMany,
}

/// A string or a list of strings.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn globs(&self) -> Vec<Glob> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(one) => vec![Glob::new(one)],
            OneOrMany::Many(many) => many.iter().map(|p| Glob::new(p)).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitArm {
    targets: Vec<String>,
    weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeny {
    #[serde(default = "default_deny_status")]
    status: u16,
    #[serde(default)]
    message: Option<String>,
}

fn default_deny_status() -> u16 {
    403
}

/// Field path and reason of a routing error.
pub type RoutingError = (String, String);

fn err(field: impl Into<String>, reason: impl Into<String>) -> RoutingError {
    (field.into(), reason.into())
}

/// `env` looks up the VM's environment (Envoy `vm_config.environment_variables`).
pub fn compile(raw: RawRouting, env: &dyn Fn(&str) -> Option<String>) -> Result<Routing, RoutingError> {
    let mut routing = Routing::default();
    for (name, provider) in &raw.providers {
        routing.providers.push(compile_provider(name, provider, env)?);
    }
    for (name, target) in &raw.targets {
        let field = format!("targets.{name}");
        let provider = routing
            .providers
            .iter()
            .position(|p| p.name == target.provider)
            .ok_or_else(|| err(format!("{field}.provider"), format!("unknown provider {:?}", target.provider)))?;
        if target.model.as_deref() == Some("") {
            return Err(err(format!("{field}.model"), "must not be empty (leave it out to keep the client's model)"));
        }
        if target.context_window == Some(0) {
            return Err(err(format!("{field}.context_window"), "must be at least 1"));
        }
        routing.targets.push(Target {
            name: name.clone(),
            provider,
            model: target.model.clone(),
            context_window: target.context_window,
        });
    }
    routing.allow = raw.models.allow.iter().map(|p| Glob::new(p)).collect();
    routing.deny = raw.models.deny.iter().map(|p| Glob::new(p)).collect();
    for (index, rule) in raw.rules.iter().enumerate() {
        routing.rules.push(compile_rule(index, rule, &routing.targets, &routing.providers)?);
    }
    Ok(routing)
}

fn compile_provider(
    name: &str,
    raw: &RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, RoutingError> {
    let field = format!("providers.{name}");
    let dialect = match raw.dialect.as_str() {
        "openai" => Dialect::OpenAi,
        "anthropic" => Dialect::Anthropic,
        other => {
            return Err(err(
                format!("{field}.dialect"),
                format!("unknown dialect {other:?}: expected openai or anthropic"),
            ))
        }
    };
    if raw.cluster.is_empty() {
        return Err(err(format!("{field}.cluster"), "must name the Envoy cluster (or Kong upstream) of this provider"));
    }
    let path_prefix = raw.path_prefix.clone().unwrap_or_else(|| "/v1".to_string());
    if !path_prefix.starts_with('/') || path_prefix.ends_with('/') || path_prefix.contains(['?', '#', ' ']) {
        return Err(err(format!("{field}.path_prefix"), "must start with '/', not end with '/', and hold no query"));
    }
    let auth = match raw.auth.as_deref() {
        None if dialect == Dialect::Anthropic => AuthStyle::XApiKey,
        None | Some("bearer") => AuthStyle::Bearer,
        Some("api-key") => AuthStyle::ApiKey,
        Some("x-api-key") => AuthStyle::XApiKey,
        Some(other) => {
            return Err(err(
                format!("{field}.auth"),
                format!("unknown style {other:?}: expected bearer, api-key or x-api-key"),
            ))
        }
    };
    let api_key = match &raw.api_key {
        None => None,
        Some(RawSecret { env: Some(var), value: None }) => {
            Some(env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                err(format!("{field}.api_key.env"), format!("environment variable {var} is not set in the Wasm VM"))
            })?)
        }
        Some(RawSecret { env: None, value: Some(value) }) if !value.is_empty() => Some(value.clone()),
        Some(_) => return Err(err(format!("{field}.api_key"), "give exactly one of env (a variable name) or value")),
    };
    if let Some(key) = &api_key {
        if key.chars().any(|c| c.is_control()) {
            return Err(err(format!("{field}.api_key"), "contains control characters"));
        }
    }
    Ok(Provider {
        name: name.to_string(),
        dialect,
        cluster: raw.cluster.clone(),
        path_prefix,
        query: raw.query.clone().filter(|q| !q.is_empty()),
        api_key,
        auth,
        litellm_provider: raw.litellm_provider.clone(),
    })
}

fn target_indices(field: &str, names: &[String], targets: &[Target]) -> Result<Vec<usize>, RoutingError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            targets
                .iter()
                .position(|t| &t.name == name)
                .ok_or_else(|| err(format!("{field}[{i}]"), format!("unknown target {name:?}")))
        })
        .collect()
}

fn compile_rule(index: usize, raw: &RawRule, targets: &[Target], providers: &[Provider]) -> Result<Rule, RoutingError> {
    let field = format!("rules[{index}]");
    let mut headers = Vec::new();
    for (name, pattern) in &raw.matcher.headers {
        check_header_name(&format!("{field}.match.headers.{name}"), name)?;
        headers.push((name.clone(), Glob::new(pattern)));
    }
    let matcher = Matcher {
        models: raw.matcher.model.globs(),
        routes: raw.matcher.route.globs(),
        headers,
        tenants: raw.matcher.tenant.globs(),
    };
    let action = match (&raw.targets, &raw.split, &raw.deny) {
        (Some(names), None, None) => {
            if names.is_empty() {
                return Err(err(format!("{field}.targets"), "must name at least one target"));
            }
            Action::Chain(target_indices(&format!("{field}.targets"), names, targets)?)
        }
        (None, Some(arms), None) => {
            let mut compiled = Vec::new();
            for (i, arm) in arms.iter().enumerate() {
                let arm_field = format!("{field}.split[{i}]");
                if arm.targets.is_empty() {
                    return Err(err(format!("{arm_field}.targets"), "must name at least one target"));
                }
                if arm.weight == 0 {
                    return Err(err(format!("{arm_field}.weight"), "must be at least 1"));
                }
                compiled.push(SplitArm {
                    chain: target_indices(&format!("{arm_field}.targets"), &arm.targets, targets)?,
                    weight: arm.weight,
                });
            }
            if compiled.is_empty() {
                return Err(err(format!("{field}.split"), "must have at least one arm"));
            }
            if let Some(header) = &raw.sticky_header {
                check_header_name(&format!("{field}.sticky_header"), header)?;
            }
            Action::Split { arms: compiled, sticky_header: raw.sticky_header.clone() }
        }
        (None, None, Some(deny)) => {
            if !(400..500).contains(&deny.status) {
                return Err(err(format!("{field}.deny.status"), "must be a 4xx status"));
            }
            Action::Deny {
                status: deny.status,
                message: deny
                    .message
                    .clone()
                    .unwrap_or_else(|| "This model is not allowed through this gateway.".into()),
            }
        }
        _ => return Err(err(field, "give exactly one of targets, split or deny")),
    };
    if raw.sticky_header.is_some() && !matches!(action, Action::Split { .. }) {
        return Err(err(format!("{field}.sticky_header"), "only applies to split"));
    }
    let fallback_cluster = match (&raw.fallback_cluster, &action) {
        (None, _) => None,
        (Some(cluster), Action::Chain(chain)) if chain.len() >= 2 && !cluster.is_empty() => {
            // Each attempt sets its own provider's key and removes every other credential; a
            // client key removed for one attempt could not come back for the next.
            if let Some(bare) = chain
                .iter()
                .filter_map(|t| targets.get(*t))
                .find(|t| providers.get(t.provider).is_some_and(|p| p.api_key.is_none()))
            {
                return Err(err(
                    format!("{field}.fallback_cluster"),
                    format!("every provider in a fallback chain needs an api_key; target {:?} has none", bare.name),
                ));
            }
            Some(cluster.clone())
        }
        _ => {
            return Err(err(
                format!("{field}.fallback_cluster"),
                "needs targets with at least two entries, and a cluster name",
            ))
        }
    };
    Ok(Rule {
        name: raw.name.clone().unwrap_or_else(|| format!("rules[{index}]")),
        matcher,
        action,
        overflow: target_indices(&format!("{field}.overflow"), &raw.overflow, targets)?,
        fallback_cluster,
    })
}

fn check_header_name(field: &str, name: &str) -> Result<(), RoutingError> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(err(field, format!("{name:?} is not a lowercase HTTP header name")))
    }
}
