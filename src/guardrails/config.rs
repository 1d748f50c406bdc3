//! The `guardrails` configuration as written (serde, unknown fields rejected) and its
//! compilation into [`Guardrails`]: every regular expression and word list is built here, once,
//! and every mistake is reported with the field it is about
//! (`guardrails.policies[0].checks[2].deny[1]: unclosed group`).

use serde::Deserialize;

use super::detect;
use super::jsonpath::JsonPath;
use super::scan::{self, Detectors, Label, Matcher};
use super::{Action, Check, CheckKind, Clamp, Guardrails, Limits, Part, Phase, Policy, Role, Scope, TextCheck};
use crate::config::ConfigError;
use crate::routing::glob::Glob;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrails {
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    /// Longest stretch of streamed text held back while it may still become a finding.
    #[serde(default = "default_hold")]
    pub max_stream_hold_bytes: usize,
}

fn default_hold() -> usize {
    16 * 1024
}

/// An absent `guardrails` field: no policies, the documented hold-back.
impl Default for RawGuardrails {
    fn default() -> Self {
        RawGuardrails { policies: Vec::new(), max_stream_hold_bytes: default_hold() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    /// Route-name globs; absent: every route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    #[serde(default)]
    pub shadow: bool,
    pub checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: String,
    #[serde(default)]
    pub detectors: Option<Vec<String>>,
    #[serde(default)]
    pub phrases: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default = "yes")]
    pub whole_words: bool,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub clamp: Option<RawClamp>,
    #[serde(default)]
    pub tools: Option<RawTools>,
    #[serde(default)]
    pub tool_arguments: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub scope: Option<RawScope>,
    #[serde(default)]
    pub on: Option<String>,
    pub action: String,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub placeholder: Option<String>,
    #[serde(default)]
    pub shadow: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub parts: Option<Vec<String>>,
    #[serde(default)]
    pub jsonpath: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_messages: Option<u64>,
    #[serde(default)]
    pub max_chars: Option<u64>,
    #[serde(default)]
    pub max_prompt_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClamp {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<[f64; 2]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTools {
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), reason: reason.into() }
}

/// Parses a `guardrails` value on its own (the exchange's config parser will embed
/// [`RawGuardrails`] in its own document; this is for tests and tools).
pub fn parse(value: serde_json::Value) -> Result<Guardrails, ConfigError> {
    let raw: RawGuardrails = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "guardrails".to_string() } else { format!("guardrails.{path}") };
        err(&field, e.into_inner().to_string())
    })?;
    compile(raw)
}

/// Compiles the configuration. Errors name the field, prefixed with `guardrails`.
pub fn compile(raw: RawGuardrails) -> Result<Guardrails, ConfigError> {
    if raw.max_stream_hold_bytes < 256 || raw.max_stream_hold_bytes > 1 << 20 {
        return Err(err("guardrails.max_stream_hold_bytes", "must be between 256 and 1048576"));
    }
    let mut policies = Vec::new();
    for (p, raw_policy) in raw.policies.into_iter().enumerate() {
        let field = format!("guardrails.policies[{p}]");
        if raw_policy.name.is_empty() {
            return Err(err(&format!("{field}.name"), "must not be empty"));
        }
        if policies.iter().any(|other: &Policy| other.name == raw_policy.name) {
            return Err(err(&format!("{field}.name"), format!("duplicate policy name {:?}", raw_policy.name)));
        }
        let routes = raw_policy.routes.map(|r| r.iter().map(|g| Glob::new(g)).collect());
        let mut checks = Vec::new();
        for (c, raw_check) in raw_policy.checks.into_iter().enumerate() {
            let field = format!("{field}.checks[{c}]");
            if checks.iter().any(|other: &Check| other.name == raw_check.name) {
                return Err(err(&format!("{field}.name"), format!("duplicate check name {:?}", raw_check.name)));
            }
            checks.push(compile_check(&field, raw_check, raw_policy.shadow)?);
        }
        policies.push(Policy { name: raw_policy.name, routes, checks });
    }
    Ok(Guardrails { policies, max_hold: raw.max_stream_hold_bytes })
}

fn compile_check(field: &str, raw: RawCheck, policy_shadow: bool) -> Result<Check, ConfigError> {
    if raw.name.is_empty() || raw.name.len() > 64 {
        return Err(err(&format!("{field}.name"), "must be 1 to 64 characters"));
    }
    let action = match raw.action.as_str() {
        "block" => Action::Block,
        "mask" => Action::Mask,
        "mask_and_restore" => Action::MaskAndRestore,
        "flag" => Action::Flag,
        "clamp" => Action::Clamp,
        other => {
            return Err(err(
                &format!("{field}.action"),
                format!("unknown action {other:?}: expected block, mask, mask_and_restore, flag or clamp"),
            ))
        }
    };
    let status = raw.status.unwrap_or(400);
    if ![400, 403, 422].contains(&status) {
        return Err(err(&format!("{field}.status"), "must be 400, 403 or 422"));
    }
    if raw.status.is_some() && action != Action::Block {
        return Err(err(&format!("{field}.status"), "only a block has a status"));
    }
    let code = raw.code.clone().unwrap_or_else(|| "guardrail_violation".to_string());
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(err(&format!("{field}.code"), "letters, digits and '_' only, at most 64"));
    }
    let placeholder = match &raw.placeholder {
        Some(p) => {
            let ok = !p.is_empty()
                && p.len() <= 32
                && p.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
                && p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(err(
                    &format!("{field}.placeholder"),
                    "upper-case letters, digits and '_', starting with a letter, at most 32",
                ));
            }
            p.clone()
        }
        None => {
            raw.name.to_ascii_uppercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
        }
    };
    let kinds = [
        raw.detectors.is_some() || raw.deny.is_some() || raw.keywords.is_some(),
        raw.allow.is_some(),
        raw.limits.is_some(),
        raw.clamp.is_some(),
        raw.tools.is_some(),
        raw.tool_arguments.is_some(),
        raw.model.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        1 => {}
        0 => {
            return Err(err(
                field,
                "says nothing to check: give detectors, deny, keywords, allow, limits, clamp, tools, tool_arguments or model",
            ))
        }
        _ => {
            return Err(err(
                field,
                "mixes kinds of check: detectors, deny and keywords may go together; allow, limits, clamp, tools, tool_arguments and model each need their own check",
            ))
        }
    }
    if raw.phrases.is_some() && !raw.detectors.as_ref().is_some_and(|d| d.iter().any(|n| n == "prompt_injection")) {
        return Err(err(&format!("{field}.phrases"), "only used with the prompt_injection detector"));
    }
    let allowed_actions: &[Action];
    let default_on;
    let kind = if raw.detectors.is_some() || raw.deny.is_some() || raw.keywords.is_some() || raw.allow.is_some() {
        let text = compile_text(field, &raw, &placeholder)?;
        if text.allow.is_some() {
            allowed_actions = &[Action::Block, Action::Flag];
            default_on = Phase::Request;
        } else {
            allowed_actions = &[Action::Block, Action::Mask, Action::MaskAndRestore, Action::Flag];
            default_on = if action == Action::MaskAndRestore { Phase::Request } else { Phase::Both };
        }
        CheckKind::Text(Box::new(text))
    } else if let Some(limits) = &raw.limits {
        allowed_actions = &[Action::Block, Action::Flag];
        default_on = Phase::Request;
        if limits.max_messages.is_none() && limits.max_chars.is_none() && limits.max_prompt_tokens.is_none() {
            return Err(err(&format!("{field}.limits"), "give max_messages, max_chars or max_prompt_tokens"));
        }
        CheckKind::Limits(Limits {
            max_messages: limits.max_messages,
            max_chars: limits.max_chars,
            max_prompt_tokens: limits.max_prompt_tokens,
        })
    } else if let Some(clamp) = &raw.clamp {
        allowed_actions = &[Action::Clamp, Action::Block, Action::Flag];
        default_on = Phase::Request;
        if let Some([low, high]) = clamp.temperature {
            if !(low.is_finite() && high.is_finite() && low <= high && low >= 0.0) {
                return Err(err(&format!("{field}.clamp.temperature"), "must be [min, max] with 0 <= min <= max"));
            }
        }
        if clamp.max_tokens == Some(0) {
            return Err(err(&format!("{field}.clamp.max_tokens"), "must be at least 1"));
        }
        CheckKind::Clamp(Clamp { max_tokens: clamp.max_tokens, temperature: clamp.temperature })
    } else if let Some(tools) = &raw.tools {
        allowed_actions = &[Action::Block, Action::Flag];
        default_on = Phase::Both;
        if tools.allow.is_none() && tools.deny.is_none() {
            return Err(err(&format!("{field}.tools"), "give allow or deny"));
        }
        let globs = |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().map(|g| Glob::new(g)).collect());
        CheckKind::Tools { allow: globs(&tools.allow), deny: globs(&tools.deny).unwrap_or_default() }
    } else if let Some(mode) = &raw.tool_arguments {
        allowed_actions = &[Action::Block, Action::Flag];
        default_on = Phase::Both;
        if mode != "json" {
            return Err(err(&format!("{field}.tool_arguments"), "the only mode is \"json\""));
        }
        CheckKind::ToolArgumentsJson
    } else {
        allowed_actions = &[Action::Block, Action::Flag];
        default_on = Phase::Request;
        if raw.model.as_deref() != Some("routing") {
            return Err(err(
                &format!("{field}.model"),
                "the only value is \"routing\" (the model selection's allow and deny lists)",
            ));
        }
        CheckKind::Model
    };
    if !allowed_actions.contains(&action) {
        let names: Vec<&str> = allowed_actions.iter().map(|a| a.name()).collect();
        return Err(err(
            &format!("{field}.action"),
            format!("{} is not possible here: use {}", action.name(), names.join(", ")),
        ));
    }
    let on = match raw.on.as_deref() {
        None => default_on,
        Some("request") => Phase::Request,
        Some("response") => Phase::Response,
        Some("both") => Phase::Both,
        Some(other) => {
            return Err(err(&format!("{field}.on"), format!("unknown {other:?}: expected request, response or both")))
        }
    };
    if action == Action::MaskAndRestore && on != Phase::Request {
        return Err(err(
            &format!("{field}.on"),
            "mask_and_restore masks requests and restores responses: use \"request\"",
        ));
    }
    if on != Phase::Request && matches!(kind, CheckKind::Limits(_) | CheckKind::Clamp(_) | CheckKind::Model) {
        return Err(err(&format!("{field}.on"), "this check only applies to requests"));
    }
    let scope = compile_scope(field, raw.scope.as_ref())?;
    if scope.is_some() && !matches!(kind, CheckKind::Text(_)) {
        return Err(err(&format!("{field}.scope"), "only text checks have a scope"));
    }
    Ok(Check {
        name: raw.name,
        kind,
        action,
        on,
        status,
        code,
        message: raw.message,
        shadow: raw.shadow || policy_shadow,
        scope: scope.unwrap_or_default(),
    })
}

fn compile_text(field: &str, raw: &RawCheck, placeholder: &str) -> Result<TextCheck, ConfigError> {
    let mut matchers = Vec::new();
    let mut shapes = Vec::new();
    let mut lookahead = 0;
    if let Some(names) = &raw.detectors {
        if names.is_empty() {
            return Err(err(&format!("{field}.detectors"), "must not be empty"));
        }
        let mut builtin: Vec<&str> = Vec::new();
        let mut injection = false;
        for (i, name) in names.iter().enumerate() {
            if name == "prompt_injection" {
                injection = true;
                continue;
            }
            let Some(expanded) = detect::expand(name) else {
                return Err(err(
                    &format!("{field}.detectors[{i}]"),
                    format!(
                        "unknown detector {name:?}: expected pii, secrets, prompt_injection or one of {}",
                        builtin_names()
                    ),
                ));
            };
            builtin.extend(expanded);
        }
        if !builtin.is_empty() {
            let detectors = Detectors::new(&builtin).map_err(|e| err(&format!("{field}.detectors"), e))?;
            shapes.extend(detectors.patterns());
            lookahead = detect::LOOKAHEAD;
            matchers.push(Matcher::Detectors(detectors));
        }
        if injection {
            let phrases: Vec<String> = match &raw.phrases {
                Some(list) if list.iter().all(|p| p.trim().is_empty()) => {
                    return Err(err(&format!("{field}.phrases"), "must not be empty"))
                }
                Some(list) => list.clone(),
                None => detect::INJECTION_PHRASES.iter().map(|p| p.to_string()).collect(),
            };
            let pattern = scan::phrases_pattern(&phrases);
            let regex =
                scan::build_regexes(std::slice::from_ref(&pattern)).map_err(|e| err(&format!("{field}.phrases"), e))?;
            shapes.push(pattern);
            let label = Label { name: "prompt_injection".into(), placeholder: "PROMPT_INJECTION".into() };
            matchers.push(Matcher::Patterns { regex, labels: vec![label] });
        }
    }
    if let Some(patterns) = &raw.deny {
        if patterns.is_empty() {
            return Err(err(&format!("{field}.deny"), "must not be empty"));
        }
        for (i, pattern) in patterns.iter().enumerate() {
            scan::build_regexes(std::slice::from_ref(pattern)).map_err(|e| err(&format!("{field}.deny[{i}]"), e))?;
        }
        let regex = scan::build_regexes(patterns).map_err(|e| err(&format!("{field}.deny"), e))?;
        let labels =
            patterns.iter().map(|_| Label { name: raw.name.clone(), placeholder: placeholder.to_string() }).collect();
        shapes.extend(patterns.iter().cloned());
        matchers.push(Matcher::Patterns { regex, labels });
    }
    if let Some(words) = &raw.keywords {
        if words.is_empty() || words.iter().any(|w| w.is_empty()) {
            return Err(err(&format!("{field}.keywords"), "must be a non-empty list of non-empty words"));
        }
        let label = Label { name: raw.name.clone(), placeholder: placeholder.to_string() };
        let matcher = Matcher::keywords(words, raw.case_sensitive, raw.whole_words, label)
            .map_err(|e| err(&format!("{field}.keywords"), e))?;
        shapes.extend(matcher.shape_patterns(words, raw.case_sensitive));
        lookahead = lookahead.max(matcher.lookahead());
        matchers.push(matcher);
    }
    let allow = match &raw.allow {
        Some(patterns) if patterns.is_empty() => return Err(err(&format!("{field}.allow"), "must not be empty")),
        Some(patterns) => {
            for (i, pattern) in patterns.iter().enumerate() {
                scan::build_regexes(std::slice::from_ref(pattern))
                    .map_err(|e| err(&format!("{field}.allow[{i}]"), e))?;
            }
            Some(scan::build_regexes(patterns).map_err(|e| err(&format!("{field}.allow"), e))?)
        }
        None => None,
    };
    let shape = if shapes.is_empty() {
        None
    } else {
        Some(super::stream::Shape::new(&shapes).map_err(|e| err(field, format!("streaming automaton: {e}")))?)
    };
    Ok(TextCheck { matchers, allow, shape, lookahead, placeholder: placeholder.to_string() })
}

fn builtin_names() -> String {
    detect::BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

fn compile_scope(field: &str, raw: Option<&RawScope>) -> Result<Option<Scope>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut scope = Scope::default();
    if let Some(roles) = &raw.roles {
        let mut set = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let Some(r) = Role::parse(role) else {
                return Err(err(
                    &format!("{field}.scope.roles[{i}]"),
                    format!("unknown role {role:?}: expected system, developer, user, assistant or tool"),
                ));
            };
            set.push(r);
        }
        scope.roles = Some(set);
    }
    if let Some(parts) = &raw.parts {
        let mut set = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let Some(p) = Part::parse(part) else {
                return Err(err(
                    &format!("{field}.scope.parts[{i}]"),
                    format!("unknown part {part:?}: expected messages, system, tools, tool_calls or tool_results"),
                ));
            };
            set.push(p);
        }
        scope.parts = Some(set);
    }
    if let Some(paths) = &raw.jsonpath {
        for (i, path) in paths.iter().enumerate() {
            let compiled = JsonPath::parse(path).map_err(|e| err(&format!("{field}.scope.jsonpath[{i}]"), e))?;
            scope.jsonpath.push(compiled);
        }
        if raw.parts.is_none() {
            scope.parts = Some(Vec::new());
        }
    }
    Ok(Some(scope))
}
