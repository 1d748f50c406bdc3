//! Guardrails: checks on the text of LLM requests and responses (personal data, secrets,
//! deny and allow patterns, word lists, prompt-injection phrases), size limits and governance
//! (parameter clamps, tool names, tool-call arguments, the model), each with an action:
//! `block`, `mask`, `mask_and_restore`, `flag`, or `clamp` for parameters; any policy or check
//! can be in `shadow` mode (decide and record, change nothing). Decisions record the check, the
//! detector, the action and a count, never the matched text.
//!
//! Pure: the exchange hands in what it read (the canonical request, the request's text with its
//! byte spans) and gets back a verdict, new bytes and decisions. Decisions on parameters and
//! tool definitions read the canonical request; masks and clamps rewrite the bytes.
//!
//! Integration, per request (see also the README's Guardrails section):
//! 1. At load: [`config::RawGuardrails`] is the `guardrails` field of the configuration;
//!    [`config::compile`] builds a [`Guardrails`] (keep it in an `Rc`).
//! 2. Request body complete and read (`dialect::parse_request`, then its text once a policy
//!    applies: [`Guardrails::applies_to`]): [`Guardrails::check_request`] → [`RequestOutcome`]: send
//!    `block` as an error in the client's dialect (status, code, message), else forward `body`
//!    if rewritten; keep `response` (a [`ResponseGuard`]) for the response.
//! 3. Non-streaming response body: [`ResponseGuard::check_body`].
//! 4. Streamed response: [`ResponseGuard::stream`] gives a [`stream::StreamGuard`]; pass every
//!    chunk through `feed` and send what it returns, then `finish` at end of stream.

pub mod config;
pub mod detect;
pub mod jsonpath;
pub mod scan;
pub mod stream;
pub mod validate;

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use crate::json_tree::{self, Kind, Tree};
use jsonpath::JsonPath;
use scan::{Found, Matcher};

use crate::dialect::text::{self, RequestText, TextSegment};
pub use crate::dialect::text::{Part, Role};
use crate::dialect::{Api, CanonicalRequest, OutputLimit, Tool};
use crate::routing::glob::Glob;

pub use config::{compile, parse, RawGuardrails};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Mask,
    MaskAndRestore,
    Flag,
    Clamp,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Mask => "mask",
            Action::MaskAndRestore => "mask_and_restore",
            Action::Flag => "flag",
            Action::Clamp => "clamp",
        }
    }
}

/// Where a check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
    Both,
}

impl Phase {
    fn covers(self, phase: Phase) -> bool {
        self == Phase::Both || self == phase
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
            Phase::Both => "both",
        }
    }
}

/// Which texts a check reads: parts and roles (absent: all), plus JSONPath-selected fields.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub roles: Option<Vec<Role>>,
    pub parts: Option<Vec<Part>>,
    pub jsonpath: Vec<JsonPath>,
}

impl Scope {
    fn admits(&self, unit: &TextSegment) -> bool {
        let part_ok = self.parts.as_ref().is_none_or(|p| p.contains(&unit.part));
        // Roles filter the texts that have one; tool definitions have none and pass.
        let role_ok = match (&self.roles, unit.role) {
            (Some(roles), Some(role)) => roles.contains(&role),
            _ => true,
        };
        part_ok && role_ok
    }
}

#[derive(Debug)]
pub struct TextCheck {
    pub matchers: Vec<Matcher>,
    /// Allow patterns: a text matching none of them is a finding.
    pub allow: Option<Box<scan::Pattern>>,
    /// The streaming hold-back automaton (every pattern this check can match).
    pub shape: Option<stream::Shape>,
    pub lookahead: usize,
    pub placeholder: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_messages: Option<u64>,
    pub max_chars: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Clamp {
    pub max_tokens: Option<u64>,
    pub temperature: Option<[f64; 2]>,
}

#[derive(Debug)]
pub enum CheckKind {
    Text(Box<TextCheck>),
    Limits(Limits),
    Clamp(Clamp),
    Tools { allow: Option<Vec<Glob>>, deny: Vec<Glob> },
    ToolArgumentsJson,
    Model,
}

#[derive(Debug)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub action: Action,
    pub on: Phase,
    pub status: u16,
    pub code: String,
    pub message: Option<String>,
    pub shadow: bool,
    pub scope: Scope,
}

impl Check {
    fn enforcing(&self) -> bool {
        !self.shadow && self.action != Action::Flag
    }

    fn text(&self) -> Option<&TextCheck> {
        match &self.kind {
            CheckKind::Text(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub routes: Option<Vec<Glob>>,
    pub checks: Vec<Check>,
}

impl Policy {
    fn applies_to(&self, route: Option<&str>) -> bool {
        match &self.routes {
            None => true,
            Some(globs) => route.is_some_and(|r| globs.iter().any(|g| g.is_match(r))),
        }
    }
}

/// The compiled `guardrails` configuration.
#[derive(Debug, Default)]
pub struct Guardrails {
    pub policies: Vec<Policy>,
    /// Most bytes of streamed text held back per text stream.
    pub max_hold: usize,
}

/// One decision, as recorded: never the matched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub policy: String,
    pub check: String,
    /// The detector or rule that found it (`email`, `max_messages`, the check's name…).
    pub detector: String,
    pub phase: Phase,
    pub action: Action,
    pub shadow: bool,
    pub count: u32,
}

impl Decision {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "policy": self.policy, "check": self.check, "detector": self.detector,
            "phase": self.phase.name(), "action": self.action.name(), "shadow": self.shadow, "count": self.count,
        })
    }
}

/// A refusal: the exchange answers the client with this error in its own dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub policy: String,
    pub check: String,
}

/// The request as the request side reads it.
pub struct RequestInput<'a> {
    /// What the request asks for (its API and model included).
    pub request: &'a CanonicalRequest,
    /// The request's text and body, read once by the caller (the token estimate shares it);
    /// `None` when the body could not be read, which refuses it when a policy applies.
    pub text: Option<&'a RequestText<'a>>,
    /// The proxy's route name (for policies with `routes`).
    pub route: Option<&'a str>,
    /// Estimated prompt tokens (for `limits.max_prompt_tokens`).
    pub prompt_tokens: u64,
    /// The model selection's allow/deny decision, for `model: "routing"` checks.
    pub model_allowed: Option<&'a dyn Fn(&str) -> bool>,
}

impl<'a> RequestInput<'a> {
    /// A request checked without a route, a prompt estimate or a model decision.
    pub fn new(request: &'a CanonicalRequest, text: Option<&'a RequestText<'a>>) -> RequestInput<'a> {
        RequestInput { request, text, route: None, prompt_tokens: 0, model_allowed: None }
    }
}

#[derive(Debug)]
pub struct RequestOutcome {
    pub block: Option<Block>,
    /// The rewritten body, when a mask or clamp changed it.
    pub body: Option<Vec<u8>>,
    pub decisions: Vec<Decision>,
    /// Response-side state (restore vault, response checks); `None` when there is nothing to do.
    pub response: Option<ResponseGuard>,
}

/// Placeholders of `mask_and_restore`: the same value always gets the same placeholder within a
/// request; the response gets the original back.
#[derive(Debug, Default, Clone)]
pub struct Vault {
    by_value: HashMap<(String, String), String>,
    by_placeholder: HashMap<String, String>,
    counters: HashMap<String, u32>,
}

impl Vault {
    pub fn placeholder(&mut self, label: &str, value: &str) -> String {
        if let Some(p) = self.by_value.get(&(label.to_string(), value.to_string())) {
            return p.clone();
        }
        let n = self.counters.entry(label.to_string()).or_insert(0);
        *n += 1;
        let placeholder = format!("[{label}_{n}]");
        self.by_value.insert((label.to_string(), value.to_string()), placeholder.clone());
        self.by_placeholder.insert(placeholder.clone(), value.to_string());
        placeholder
    }

    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder.get(placeholder).map(String::as_str)
    }

    /// The known placeholders in `text`, outside the `taken` spans (sorted, disjoint: the masks),
    /// each as the rewrite that restores its original value. `json_text`: the text is JSON
    /// (tool-call arguments), so restored values are escaped for a JSON string.
    pub(crate) fn restores(&self, text: &str, json_text: bool, taken: &[Rewrite]) -> Vec<Rewrite> {
        let mut out = Vec::new();
        if self.is_empty() {
            return out;
        }
        let bytes = text.as_bytes();
        let mut taken = taken.iter().peekable();
        for open in memchr::memchr_iter(b'[', bytes) {
            while taken.next_if(|t| t.end <= open).is_some() {}
            if out.last().is_some_and(|r: &Rewrite| open < r.end) || taken.peek().is_some_and(|t| t.start <= open) {
                continue;
            }
            let len = placeholder_len(bytes.get(open..).unwrap_or_default());
            let end = open + len;
            if len == 0 || taken.peek().is_some_and(|t| t.start < end) {
                continue;
            }
            let Some(value) = text.get(open..end).and_then(|candidate| self.original(candidate)) else { continue };
            let with = if json_text { json_tree::escape_inner(value) } else { value.to_string() };
            out.push(Rewrite { start: open, end, with });
        }
        out
    }
}

/// One change to a text: bytes `start..end` become `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub start: usize,
    pub end: usize,
    pub with: String,
}

/// `text` with `rewrites` (sorted, disjoint, on character boundaries) applied.
pub(crate) fn rewritten(text: &str, rewrites: &[Rewrite]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for rewrite in rewrites {
        out.push_str(text.get(at..rewrite.start).unwrap_or_default());
        out.push_str(&rewrite.with);
        at = at.max(rewrite.end);
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// Masks and restored placeholders of one text, in order.
pub(crate) fn merged(masks: Vec<Rewrite>, restores: Vec<Rewrite>) -> Vec<Rewrite> {
    if restores.is_empty() {
        return masks;
    }
    let mut all = masks;
    all.extend(restores);
    all.sort_by_key(|r| r.start);
    all
}

/// Length of a complete `[LABEL_N]` at the start of `s`, else 0.
fn placeholder_len(s: &[u8]) -> usize {
    let mut i = 1;
    if !s.get(i).is_some_and(u8::is_ascii_uppercase) {
        return 0;
    }
    while s.get(i).is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_') {
        i += 1;
    }
    // Must end in `_<digits>]`.
    let body = s.get(1..i).unwrap_or_default();
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let ok = digits > 0 && body.len() > digits + 1 && body.get(body.len() - digits - 1) == Some(&b'_');
    if ok && s.get(i) == Some(&b']') {
        i + 1
    } else {
        0
    }
}

/// The pattern of a placeholder, for the streaming hold-back.
pub const PLACEHOLDER_PATTERN: &str = r"\[[A-Z][A-Z0-9_]*_[0-9]+\]";

/// Counts decisions per (policy, check, detector).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    decisions: Vec<Decision>,
}

impl Tally {
    pub(crate) fn add(&mut self, policy: &Policy, check: &Check, detector: &str, phase: Phase, count: u32) {
        if count == 0 {
            return;
        }
        if let Some(d) = self
            .decisions
            .iter_mut()
            .find(|d| d.policy == policy.name && d.check == check.name && d.detector == detector && d.phase == phase)
        {
            d.count += count;
            return;
        }
        self.decisions.push(Decision {
            policy: policy.name.clone(),
            check: check.name.clone(),
            detector: detector.to_string(),
            phase,
            action: check.action,
            shadow: check.shadow,
            count,
        });
    }
}

fn block_for(policy: &Policy, check: &Check, phase: Phase, detector: &str) -> Block {
    let message = check.message.clone().unwrap_or_else(|| {
        let what = if phase == Phase::Response { "response" } else { "request" };
        format!("The {what} was blocked by guardrail {}/{} ({detector}).", policy.name, check.name)
    });
    Block {
        status: check.status,
        code: check.code.clone(),
        message,
        policy: policy.name.clone(),
        check: check.name.clone(),
    }
}

/// A finding of one text check, and which one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub policy: usize,
    pub check: usize,
    pub matcher: usize,
    pub found: Found,
}

impl Guardrails {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether any policy is limited to routes (the exchange then reads the route name).
    pub fn needs_route_name(&self) -> bool {
        self.policies.iter().any(|p| p.routes.is_some())
    }

    /// Whether any check limits the estimated prompt tokens (the exchange then counts them).
    pub fn smallest_prompt_token_limit(&self) -> Option<u64> {
        let limit = |check: &Check| match &check.kind {
            CheckKind::Limits(limits) => limits.max_prompt_tokens,
            _ => None,
        };
        self.policies.iter().flat_map(|p| &p.checks).filter_map(limit).min()
    }

    /// Whether a policy applies on `route` (the exchange reads the request's text only then).
    pub fn applies_to(&self, route: Option<&str>) -> bool {
        self.policies.iter().any(|p| p.applies_to(route))
    }

    fn active(&self, route: Option<&str>) -> Vec<usize> {
        self.policies.iter().enumerate().filter(|(_, p)| p.applies_to(route)).map(|(i, _)| i).collect()
    }

    pub(crate) fn check_at(&self, policy: usize, check: usize) -> Option<(&Policy, &Check)> {
        let p = self.policies.get(policy)?;
        Some((p, p.checks.get(check)?))
    }

    /// Finds every text-check hit in `text[from..]` for the given checks.
    pub(crate) fn hits(&self, checks: &[(usize, usize)], text: &[u8], from: usize, out: &mut Vec<Hit>) {
        let text_checks = || checks.iter().filter_map(|&(p, c)| Some((p, c, self.check_at(p, c)?.1.text()?)));
        // One split of the text into words for every check that scans it.
        let weak_starts = text_checks().any(|(_, _, t)| t.matchers.iter().any(scan::Matcher::needs_weak_starts));
        let mut words = scan::Words::new(weak_starts);
        let mut found = Vec::new();
        for (policy, check, text_check) in text_checks() {
            for (matcher_index, matcher) in text_check.matchers.iter().enumerate() {
                found.clear();
                matcher.find_all_in(text, from, &mut found, &mut words);
                out.extend(found.iter().map(|f| Hit { policy, check, matcher: matcher_index, found: *f }));
            }
        }
    }

    pub(crate) fn label_of(&self, hit: &Hit) -> Option<&scan::Label> {
        let (_, check) = self.check_at(hit.policy, hit.check)?;
        check.text()?.matchers.get(hit.matcher)?.labels().get(usize::from(hit.found.label))
    }

    /// Runs every request check on a complete request body.
    pub fn check_request(self: &Rc<Self>, input: &RequestInput<'_>) -> RequestOutcome {
        let mut outcome = RequestOutcome { block: None, body: None, decisions: Vec::new(), response: None };
        let active = self.active(input.route);
        if active.is_empty() {
            return outcome;
        }
        let text = match input.text {
            Some(text) => text,
            None => {
                outcome.block = Some(Block {
                    status: 400,
                    code: "invalid_json".into(),
                    message: "The request body could not be read for the gateway's guardrails.".into(),
                    policy: String::new(),
                    check: String::new(),
                });
                return outcome;
            }
        };
        let (tree, layout) = (text.tree(), text.layout());
        let mut tally = Tally::default();
        let mut block: Option<Block> = None;
        let mut vault = Vault::default();
        let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        let mut clamps: Vec<(&'static str, ParameterClamp)> = Vec::new();
        let note_block = |block: &mut Option<Block>, policy: &Policy, check: &Check, detector: &str| {
            if block.is_none() && check.action == Action::Block && !check.shadow {
                *block = Some(block_for(policy, check, Phase::Request, detector));
            }
        };

        // Text units each check reads: scope, parts, roles, JSONPaths.
        let mut text_checks: Vec<(usize, usize)> = Vec::new();
        for &p in &active {
            let Some(policy) = self.policies.get(p) else { continue };
            for (c, check) in policy.checks.iter().enumerate() {
                if !check.on.covers(Phase::Request) {
                    continue;
                }
                match &check.kind {
                    CheckKind::Text(_) => text_checks.push((p, c)),
                    CheckKind::Limits(limits) => {
                        let chars: u64 = layout
                            .segments
                            .iter()
                            .filter_map(|u| tree.str(u.node))
                            .map(|s| s.chars().count() as u64)
                            .sum();
                        let over = [
                            ("max_messages", limits.max_messages, layout.messages),
                            ("max_chars", limits.max_chars, chars),
                            ("max_prompt_tokens", limits.max_prompt_tokens, input.prompt_tokens),
                        ];
                        for (name, limit, value) in over {
                            if limit.is_some_and(|l| value > l) {
                                tally.add(policy, check, name, Phase::Request, 1);
                                note_block(&mut block, policy, check, name);
                            }
                        }
                    }
                    CheckKind::Clamp(clamp) => {
                        // Decided on the canonical request; the bytes are rewritten at the end.
                        let request = input.request;
                        let mut over: Vec<(&'static str, ParameterClamp)> = Vec::new();
                        if let (Some(max), Some(limit)) = (clamp.max_tokens, request.max_output_tokens) {
                            if limit.tokens > max {
                                over.push((limit.field, ParameterClamp::OutputLimit(max)));
                            }
                        }
                        if let (Some([low, high]), Some(value)) = (clamp.temperature, request.sampling.temperature) {
                            let clamped = value.max(low).min(high);
                            if clamped != value {
                                let text = serde_json::Number::from_f64(clamped).map(|n| n.to_string());
                                over.push(("temperature", ParameterClamp::Temperature(text.unwrap_or_default())));
                            }
                        }
                        for (field, rewrite) in over {
                            tally.add(policy, check, field, Phase::Request, 1);
                            note_block(&mut block, policy, check, field);
                            if check.action == Action::Clamp && !check.shadow {
                                clamps.retain(|(f, _)| *f != field);
                                clamps.push((field, rewrite));
                            }
                        }
                    }
                    CheckKind::Tools { allow, deny } => {
                        // Tools defined (the canonical request) and called (the history's text).
                        let defined = input.request.tools.iter().filter_map(Tool::name).map(Cow::Borrowed);
                        let called = layout.tool_names.iter().filter_map(|n| tree.str(*n));
                        let refused =
                            defined.chain(called).filter(|name| tool_refused(name, allow.as_deref(), deny)).count()
                                as u32;
                        tally.add(policy, check, "tool_name", Phase::Request, refused);
                        if refused > 0 {
                            note_block(&mut block, policy, check, "tool_name");
                        }
                    }
                    CheckKind::ToolArgumentsJson => {
                        let bad = layout
                            .arguments
                            .iter()
                            .filter(|n| {
                                tree.str(**n).is_none_or(|s| serde_json::from_str::<serde::de::IgnoredAny>(&s).is_err())
                            })
                            .count() as u32;
                        tally.add(policy, check, "tool_arguments", Phase::Request, bad);
                        if bad > 0 {
                            note_block(&mut block, policy, check, "tool_arguments");
                        }
                    }
                    CheckKind::Model => {
                        if let (Some(allowed), Some(model)) = (input.model_allowed, input.request.model.as_deref()) {
                            if !allowed(model) {
                                tally.add(policy, check, "model", Phase::Request, 1);
                                note_block(&mut block, policy, check, "model");
                            }
                        }
                    }
                }
            }
        }

        // Text checks: each unit once, with the checks whose scope admits it. A unit is a segment
        // of the dialect's text, or (`None`) a string only a check's JSONPath selects.
        let mut units: Vec<(usize, Option<TextSegment>)> = layout.segments.iter().map(|u| (u.node, Some(*u))).collect();
        for &(p, c) in &text_checks {
            let Some((_, check)) = self.check_at(p, c) else { continue };
            for path in &check.scope.jsonpath {
                let mut selected = Vec::new();
                for node in path.select(tree) {
                    tree.strings_under(node, &mut selected);
                }
                for node in selected {
                    if !units.iter().any(|(n, _)| *n == node) {
                        units.push((node, None));
                    }
                }
            }
        }
        units.sort_by_key(|(n, _)| *n);
        let mut hits = Vec::new();
        let mut checks: Vec<(usize, usize)> = Vec::new();
        for (node, unit) in &units {
            checks.clear();
            checks.extend(text_checks.iter().copied().filter(|&(p, c)| {
                self.check_at(p, c).is_some_and(|(_, check)| match unit {
                    None => !check.scope.jsonpath.is_empty(),
                    Some(segment) => {
                        check.scope.admits(segment)
                            || check.scope.jsonpath.iter().any(|path| selects(path, tree, *node))
                    }
                })
            }));
            if checks.is_empty() {
                continue;
            }
            let Some(text) = tree.str(*node) else {
                outcome.block = Some(Block {
                    status: 400,
                    code: "invalid_json".into(),
                    message: "The request body has a string the gateway cannot read.".into(),
                    policy: String::new(),
                    check: String::new(),
                });
                return outcome;
            };
            // Allow lists: a text that matches no allowed pattern.
            for &(p, c) in &checks {
                let Some((policy, check)) = self.check_at(p, c) else { continue };
                if let Some(allow) = check.text().and_then(|t| t.allow.as_ref()) {
                    if !text.is_empty() && allow.search(&regex_automata::Input::new(text.as_bytes())).is_none() {
                        tally.add(policy, check, &check.name, Phase::Request, 1);
                        note_block(&mut block, policy, check, &check.name);
                    }
                }
            }
            hits.clear();
            self.hits(&checks, text.as_bytes(), 0, &mut hits);
            for hit in &hits {
                let Some((policy, check)) = self.check_at(hit.policy, hit.check) else { continue };
                let detector = self.label_of(hit).map(|l| l.name.clone()).unwrap_or_default();
                tally.add(policy, check, &detector, Phase::Request, 1);
                note_block(&mut block, policy, check, &detector);
            }
            if block.is_some() || hits.is_empty() {
                continue;
            }
            let masks = self.masks(&hits, &text, Some(&mut vault));
            if !masks.is_empty() {
                if let Some(n) = tree.node(*node) {
                    edits.push((n.start, n.end, json_tree::encode_string(&rewritten(&text, &masks)).into_bytes()));
                }
            }
        }
        outcome.decisions = tally.decisions;
        if let Some(b) = block {
            outcome.block = Some(b);
            return outcome;
        }
        if !edits.is_empty() || !clamps.is_empty() {
            let mut body = json_tree::splice(text.body(), &edits);
            for (_, rewrite) in &clamps {
                let (members, value) = match rewrite {
                    ParameterClamp::Temperature(value) => (&["temperature"][..], value.clone()),
                    ParameterClamp::OutputLimit(max) => (OutputLimit::members(input.request.api), max.to_string()),
                };
                for member in members {
                    // Every member the API limits the output with, when above the bound (Chat's
                    // legacy `max_tokens` next to `max_completion_tokens` too): never raised.
                    if let ParameterClamp::OutputLimit(max) = rewrite {
                        let above =
                            tree.get(Tree::ROOT, member).and_then(|n| number(tree, n)).is_some_and(|n| n > *max as f64);
                        if !above {
                            continue;
                        }
                    }
                    if let Some(new_body) = crate::json_edit::replace_value(&body, member, &value) {
                        body = new_body;
                    }
                }
            }
            outcome.body = Some(body);
        }
        let response_checks: Vec<(usize, usize)> = active
            .iter()
            .flat_map(|&p| {
                self.policies
                    .get(p)
                    .into_iter()
                    .flat_map(move |policy| policy.checks.iter().enumerate().map(move |(c, check)| (p, c, check)))
            })
            .filter(|(_, _, check)| check.on.covers(Phase::Response))
            .map(|(p, c, _)| (p, c))
            .collect();
        if !vault.is_empty() || !response_checks.is_empty() {
            outcome.response = Some(ResponseGuard {
                guardrails: Rc::clone(self),
                api: input.request.api,
                checks: response_checks,
                vault,
                fail_closed: false,
            });
        }
        outcome
    }

    /// The enforcing mask hits of `text` as rewrites (overlaps: earliest, longest, first check
    /// wins), sorted and disjoint, on character boundaries. `vault`: `mask_and_restore`
    /// placeholders are numbered.
    pub(crate) fn masks(&self, hits: &[Hit], text: &str, mut vault: Option<&mut Vault>) -> Vec<Rewrite> {
        let mut masks: Vec<&Hit> = hits
            .iter()
            .filter(|h| {
                self.check_at(h.policy, h.check)
                    .is_some_and(|(_, c)| !c.shadow && matches!(c.action, Action::Mask | Action::MaskAndRestore))
            })
            .collect();
        let mut out = Vec::new();
        if masks.is_empty() {
            return out;
        }
        masks.sort_by_key(|h| (h.found.order, std::cmp::Reverse(h.found.end), h.policy, h.check));
        let mut at = 0;
        for hit in masks {
            // Custom ASCII-mode patterns may end inside a UTF-8 character: widen to whole ones.
            let start = floor_boundary(text, hit.found.start);
            let end = ceil_boundary(text, hit.found.end);
            if start < at {
                continue;
            }
            let Some(label) = self.label_of(hit) else { continue };
            let restore = self.check_at(hit.policy, hit.check).is_some_and(|(_, c)| c.action == Action::MaskAndRestore);
            let with = match (&mut vault, restore, text.get(start..end)) {
                (Some(v), true, Some(value)) => v.placeholder(&label.placeholder, value),
                _ => ["[", label.placeholder.as_str(), "]"].concat(),
            };
            out.push(Rewrite { start, end, with });
            at = end;
        }
        out
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i.min(text.len())
}

/// What a `clamp` rewrites.
#[derive(Debug)]
enum ParameterClamp {
    /// `temperature`, to this number.
    Temperature(String),
    /// The output limit's members, to this many tokens.
    OutputLimit(u64),
}

fn number(tree: &Tree<'_>, node: usize) -> Option<f64> {
    if tree.kind(node)? != Kind::Number {
        return None;
    }
    std::str::from_utf8(tree.raw(node)?).ok()?.parse().ok()
}

fn selects(path: &JsonPath, tree: &Tree<'_>, node: usize) -> bool {
    path.select(tree).into_iter().any(|selected| {
        let mut strings = Vec::new();
        tree.strings_under(selected, &mut strings);
        strings.contains(&node)
    })
}

fn tool_refused(name: &str, allow: Option<&[Glob]>, deny: &[Glob]) -> bool {
    deny.iter().any(|g| g.is_match(name)) || allow.is_some_and(|a| !a.iter().any(|g| g.is_match(name)))
}

/// The response side of one exchange: checks that apply to responses and the request's
/// placeholders to restore.
#[derive(Debug)]
pub struct ResponseGuard {
    guardrails: Rc<Guardrails>,
    api: Api,
    checks: Vec<(usize, usize)>,
    vault: Vault,
    /// An answer text the checks cannot read fails closed (`failure_mode: closed`).
    fail_closed: bool,
}

#[derive(Debug, Default)]
pub struct ResponseOutcome {
    pub block: Option<Block>,
    pub body: Option<Vec<u8>>,
    pub decisions: Vec<Decision>,
    /// Texts the checks could not read (not UTF-8, a lone surrogate escape).
    pub unreadable: u32,
}

/// What an answer gets when the proxy cannot hand over part of it and the route fails closed:
/// the guard cannot vouch for what it did not see.
pub fn unread_block() -> Block {
    Block {
        status: 500,
        code: "gateway_error".into(),
        message: "The gateway could not read the answer.".into(),
        policy: String::new(),
        check: "unread_answer".into(),
    }
}

/// What an answer gets when a text the enforcing checks should read cannot be read, and the
/// route fails closed: the guard cannot vouch for it.
pub(crate) fn unreadable_block() -> Block {
    Block {
        status: 500,
        code: "gateway_error".into(),
        message: "The answer held text the gateway's guardrails could not read.".into(),
        policy: String::new(),
        check: "unreadable_text".into(),
    }
}

impl ResponseGuard {
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// `closed`: an answer text the enforcing checks cannot read ends the answer with an error
    /// (the route's `failure_mode: closed`); otherwise it goes on as sent. Counted either way.
    pub fn fail_closed(&mut self, closed: bool) {
        self.fail_closed = closed;
    }

    /// Whether a check can change the answer (mask, restore, block), not only record.
    fn enforces(&self, checks: &[(usize, usize)]) -> bool {
        !self.vault.is_empty()
            || checks.iter().any(|&(p, c)| self.guardrails.check_at(p, c).is_some_and(|(_, check)| check.enforcing()))
    }

    /// Whether a check can change the answer (mask, restore, block), not only record it.
    pub fn enforcing(&self) -> bool {
        self.enforces(&self.checks)
    }

    /// A complete, non-streamed JSON response body. Bodies that are not JSON pass unchanged.
    pub fn check_body(&self, body: &[u8]) -> ResponseOutcome {
        self.check_body_in(self.api, body)
    }

    /// [`Self::check_body`] for a body in `api`'s layout (an answer that could not be
    /// translated reaches the client in the provider's dialect).
    pub fn check_body_in(&self, api: Api, body: &[u8]) -> ResponseOutcome {
        let mut outcome = ResponseOutcome::default();
        let tree = match Tree::parse(body) {
            Ok(tree) => tree,
            // Not JSON: passed unchanged (documented), nothing in it reads as an answer's text.
            Err(json_tree::JsonError::Syntax) => return outcome,
            // JSON nested deeper than the reader goes (a model-written tool input can be): its
            // text cannot be checked.
            Err(json_tree::JsonError::TooDeep) => {
                outcome.unreadable = 1;
                if self.fail_closed && self.enforces(&self.checks) {
                    outcome.block = Some(unreadable_block());
                }
                return outcome;
            }
        };
        let layout = text::response_layout(api, &tree);
        let g = &self.guardrails;
        let mut tally = Tally::default();
        let mut block = None;
        let mut edits = Vec::new();
        let mut hits = Vec::new();
        for &(p, c) in &self.checks {
            let Some((policy, check)) = g.check_at(p, c) else { continue };
            let found = match &check.kind {
                // A name that cannot be read cannot be allowed.
                CheckKind::Tools { allow, deny } => layout
                    .tool_names
                    .iter()
                    .filter(|n| tree.str(**n).is_none_or(|name| tool_refused(&name, allow.as_deref(), deny)))
                    .count() as u32,
                CheckKind::ToolArgumentsJson => layout
                    .arguments
                    .iter()
                    .filter(|n| {
                        tree.str(**n).is_none_or(|s| serde_json::from_str::<serde::de::IgnoredAny>(&s).is_err())
                    })
                    .count() as u32,
                _ => 0,
            };
            let detector = if matches!(check.kind, CheckKind::Tools { .. }) { "tool_name" } else { "tool_arguments" };
            tally.add(policy, check, detector, Phase::Response, found);
            if found > 0 && block.is_none() && check.action == Action::Block && !check.shadow {
                block = Some(block_for(policy, check, Phase::Response, detector));
            }
        }
        for unit in &layout.segments {
            let checks: Vec<(usize, usize)> = self
                .checks
                .iter()
                .copied()
                .filter(|&(p, c)| g.check_at(p, c).is_some_and(|(_, ch)| ch.text().is_some() && ch.scope.admits(unit)))
                .collect();
            if checks.is_empty() && self.vault.is_empty() {
                continue;
            }
            let Some(text) = tree.str(unit.node) else {
                outcome.unreadable += 1;
                if self.fail_closed && self.enforces(&checks) && block.is_none() {
                    block = Some(unreadable_block());
                }
                continue;
            };
            for &(p, c) in &checks {
                let Some((policy, check)) = g.check_at(p, c) else { continue };
                if let Some(allow) = check.text().and_then(|t| t.allow.as_ref()) {
                    if !text.is_empty() && allow.search(&regex_automata::Input::new(text.as_bytes())).is_none() {
                        tally.add(policy, check, &check.name, Phase::Response, 1);
                        if block.is_none() && check.action == Action::Block && !check.shadow {
                            block = Some(block_for(policy, check, Phase::Response, &check.name));
                        }
                    }
                }
            }
            hits.clear();
            g.hits(&checks, text.as_bytes(), 0, &mut hits);
            for hit in &hits {
                let Some((policy, check)) = g.check_at(hit.policy, hit.check) else { continue };
                let detector = g.label_of(hit).map(|l| l.name.clone()).unwrap_or_default();
                tally.add(policy, check, &detector, Phase::Response, 1);
                if block.is_none() && check.action == Action::Block && !check.shadow {
                    block = Some(block_for(policy, check, Phase::Response, &detector));
                }
            }
            let masks = g.masks(&hits, &text, None);
            let restores = self.vault.restores(&text, unit.json_text, &masks);
            let rewrites = merged(masks, restores);
            if !rewrites.is_empty() {
                if let Some(n) = tree.node(unit.node) {
                    edits.push((n.start, n.end, json_tree::encode_string(&rewritten(&text, &rewrites)).into_bytes()));
                }
            }
        }
        outcome.decisions = tally.decisions;
        if block.is_some() {
            outcome.block = block;
            return outcome;
        }
        if !edits.is_empty() {
            edits.sort_by_key(|e| e.0);
            outcome.body = Some(json_tree::splice(body, &edits));
        }
        outcome
    }

    /// A guard for a streamed (SSE) response.
    pub fn stream(&self) -> stream::StreamGuard {
        let mut guard =
            stream::StreamGuard::new(Rc::clone(&self.guardrails), self.api, self.checks.clone(), self.vault.clone());
        guard.fail_closed = self.fail_closed;
        guard
    }
}

#[cfg(test)]
mod tests;
