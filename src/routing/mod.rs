//! Model selection: which provider and model serve a request, decided from the requested model,
//! the route, request headers and the tenant. Pure: everything the decision needs comes in
//! through [`RoutingInput`].
//!
//! Order of evaluation: the `models` allow and deny lists (on the model the client asked for),
//! then the rules, first match wins. A rule either refuses, or names an ordered chain of targets
//! (the first serves; the rest are the fallback chain), or splits traffic by weight between
//! chains. When the prompt does not fit the chosen target's context window, the rule's
//! `overflow` targets are tried in order. No rule matching means Tollgate leaves the request's
//! destination alone.

pub mod compile;
pub mod glob;

pub use compile::{compile, RawRouting};

use glob::Glob;

/// How a provider wants its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `authorization: Bearer KEY` (OpenAI and most compatible servers).
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
}

/// The wire dialect a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// An upstream: where requests go and how they authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub dialect: Dialect,
    /// Envoy cluster (set in the cluster header) or Kong upstream.
    pub cluster: String,
    /// Path before the API's own suffix, e.g. `/v1`; `{model}` is replaced by the target model
    /// (Azure deployments: `/openai/deployments/{model}`).
    pub path_prefix: String,
    /// Query string appended to every path, e.g. `api-version=2024-10-21`.
    pub query: Option<String>,
    /// `None`: the client's own credentials go upstream unchanged.
    pub api_key: Option<String>,
    pub auth: AuthStyle,
    /// The LiteLLM provider prefix its models are priced under (`mistral` →
    /// `mistral/mistral-large-latest`): the configured `litellm_provider`, else the provider's
    /// own name when the price table knows it as one (resolved by `config`, which has the table).
    pub litellm_provider: Option<String>,
}

/// A model at a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub provider: usize,
    /// `None`: the model the client asked for, unchanged (route a model family to a provider).
    pub model: Option<String>,
    /// Largest prompt (in tokens) the model accepts, when known.
    pub context_window: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    pub models: Vec<Glob>,
    pub routes: Vec<Glob>,
    pub headers: Vec<(String, Glob)>,
    pub tenants: Vec<Glob>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitArm {
    pub chain: Vec<usize>,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ordered: the first target serves, the others are its fallback chain.
    Chain(Vec<usize>),
    /// Weighted choice between chains; sticky per value of `sticky_header` when present.
    Split {
        arms: Vec<SplitArm>,
        sticky_header: Option<String>,
    },
    Deny {
        status: u16,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matcher: Matcher,
    pub action: Action,
    pub overflow: Vec<usize>,
    /// Envoy aggregate cluster listing the chain's providers in order: Envoy's retries walk the
    /// chain and Tollgate's upstream filter adapts each attempt. Without it only the first
    /// target serves.
    pub fallback_cluster: Option<String>,
}

/// The compiled routing policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub providers: Vec<Provider>,
    pub targets: Vec<Target>,
    pub allow: Vec<Glob>,
    pub deny: Vec<Glob>,
    pub rules: Vec<Rule>,
}

/// What the decision looks at.
pub struct RoutingInput<'a> {
    /// The model the client asked for (`None` when the body names none, as on Azure).
    pub model: Option<&'a str>,
    /// The route's name (Envoy `xds.route_name`, Kong `kong.route_name`), when known.
    pub route: Option<&'a str>,
    /// A request header's value, as the bytes the client sent. Globs compare it as text (a
    /// byte that is not UTF-8 reads as U+FFFD: `*` and `?` match it, no literal does); a sticky
    /// split hashes the bytes, so two values never share a hash because of how they decode.
    pub header: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    /// The tenant the request is attributed to (see `tenant`), when known.
    pub tenant: Option<&'a str>,
    /// Estimated prompt tokens, for the context-window rule.
    pub prompt_tokens: u64,
    /// A random number, for unsticky splits.
    pub random: u64,
}

/// Why a request is refused, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// OpenAI-style error code: `model_not_allowed`, `context_length_exceeded`, …
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No rule applies: the request goes where the proxy's route sends it, unchanged.
    Untouched,
    /// Serve with `chain[0]`; the rest is the fallback chain, in order.
    Route {
        chain: Vec<usize>,
        rule: String,
        fallback_cluster: Option<String>,
    },
    Refuse(Refusal),
}

impl Routing {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.allow.is_empty() && self.deny.is_empty()
    }

    /// The smallest context window of any target (`None`: no target has one, so the prompt is
    /// never counted for routing).
    pub fn smallest_context_window(&self) -> Option<u64> {
        self.targets.iter().filter_map(|t| t.context_window).min()
    }

    /// Whether any rule looks at the route name (reading it costs a hostcall).
    pub fn needs_route_name(&self) -> bool {
        self.rules.iter().any(|r| !r.matcher.routes.is_empty())
    }

    pub fn target(&self, index: usize) -> Option<&Target> {
        self.targets.get(index)
    }

    pub fn provider_of(&self, target: &Target) -> Option<&Provider> {
        self.providers.get(target.provider)
    }

    /// The `models` allow and deny lists' verdict (also what a guardrail `model: "routing"`
    /// check asks).
    pub fn model_allowed(&self, model: &str) -> bool {
        !self.deny.iter().any(|g| g.is_match(model))
            && (self.allow.is_empty() || self.allow.iter().any(|g| g.is_match(model)))
    }

    pub fn decide(&self, input: &RoutingInput) -> Decision {
        if !self.model_allowed(input.model.unwrap_or("")) {
            let shown = input.model.map_or_else(|| "(none)".to_string(), |m| format!("'{m}'"));
            return Decision::Refuse(Refusal {
                status: 403,
                code: "model_not_allowed",
                message: format!("The model {shown} is not allowed through this gateway."),
            });
        }
        let Some(rule) = self.rules.iter().find(|rule| self.matches(&rule.matcher, input)) else {
            return Decision::Untouched;
        };
        let chain = match &rule.action {
            Action::Deny { status, message } => {
                return Decision::Refuse(Refusal {
                    status: *status,
                    code: "model_not_allowed",
                    message: message.clone(),
                })
            }
            Action::Chain(chain) => chain.clone(),
            Action::Split { arms, sticky_header } => {
                let key = sticky_header.as_deref().and_then(|h| (input.header)(h));
                let roll = key.map_or(input.random, |k| stable_hash(&k));
                pick_arm(arms, roll).to_vec()
            }
        };
        self.fit_context_window(rule, chain, input.prompt_tokens)
    }

    fn matches(&self, matcher: &Matcher, input: &RoutingInput) -> bool {
        let any = |globs: &[Glob], value: Option<&str>| {
            globs.is_empty() || value.is_some_and(|v| globs.iter().any(|g| g.is_match(v)))
        };
        any(&matcher.models, input.model)
            && any(&matcher.routes, input.route)
            && any(&matcher.tenants, input.tenant)
            && matcher
                .headers
                .iter()
                .all(|(name, glob)| (input.header)(name).is_some_and(|v| glob.is_match(&String::from_utf8_lossy(&v))))
    }

    /// Keeps the chain when its first target fits the prompt; otherwise the first overflow
    /// target that fits serves, with the rest of the overflow list as its fallback chain.
    fn fit_context_window(&self, rule: &Rule, chain: Vec<usize>, prompt_tokens: u64) -> Decision {
        let fits = |index: &usize| {
            self.targets.get(*index).and_then(|t| t.context_window).is_none_or(|window| prompt_tokens <= window)
        };
        if chain.first().is_some_and(fits) {
            return Decision::Route { chain, rule: rule.name.clone(), fallback_cluster: rule.fallback_cluster.clone() };
        }
        if let Some(at) = rule.overflow.iter().position(fits) {
            let chain = rule.overflow.get(at..).unwrap_or_default().iter().copied().filter(|t| fits(t)).collect();
            // The overflow targets are a different chain than the aggregate cluster lists.
            return Decision::Route { chain, rule: rule.name.clone(), fallback_cluster: None };
        }
        let largest = chain.iter().chain(&rule.overflow).filter_map(|i| self.targets.get(*i)?.context_window).max();
        Decision::Refuse(Refusal {
            status: 400,
            code: "context_length_exceeded",
            message: format!(
                "The prompt is about {prompt_tokens} tokens, more than any model this route may use accepts ({} tokens).",
                largest.unwrap_or(0)
            ),
        })
    }
}

fn pick_arm(arms: &[SplitArm], roll: u64) -> &[usize] {
    let total: u64 = arms.iter().map(|a| u64::from(a.weight)).sum();
    if total == 0 {
        return &[];
    }
    let mut point = roll % total;
    for arm in arms {
        let weight = u64::from(arm.weight);
        if point < weight {
            return &arm.chain;
        }
        point -= weight;
    }
    &[]
}

/// FNV-1a: stable across VMs, restarts and versions, so a sticky key keeps its target.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests;
