//! What clients see of limits: refusals shaped like the provider's own, so each SDK raises its
//! usual typed error, and OpenAI's `x-ratelimit-*` headers for the limit closest to exhaustion.
//!
//! - A rate limit (a second, minute or hour window) is OpenAI's and Anthropic's 429: OpenAI
//!   `{"type": "requests" | "tokens", "code": "rate_limit_exceeded"}`, Anthropic
//!   `rate_limit_error`; `retry-after` is the seconds until the window ends. SDKs retry it.
//! - A budget (spend in USD, or any limit over a day, week or month) is a quota: OpenAI's 429
//!   `insufficient_quota` (its spend limits' type), Anthropic's 429 `rate_limit_error` (what its
//!   own enforced spend limit answers); `retry-after` says when the window ends, and
//!   `x-should-retry: false` tells both SDKs not to retry what will not succeed before then.

use super::window::Window;
use super::{Limit, Measure};
use crate::dialect::Api;
use crate::pricing::usd_string;
use crate::reply::{self, Reply};

/// A refusal: the reply and the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reply: Reply,
    pub headers: Vec<(String, String)>,
}

/// Whether a limit is a quota (nothing to retry before its window ends) rather than a rate.
pub fn is_quota(limit: &Limit) -> bool {
    limit.measure == Measure::Spend
        || matches!(limit.window, Window::Day { .. } | Window::Week { .. } | Window::Month { .. })
}

/// The refusal for a request `limit` could not take (`used` held, `asked` more).
pub fn refusal(api: Api, limit: &Limit, used: u64, asked: u64, resets_at: i64, now_secs: i64) -> Refusal {
    let wait = (resets_at - now_secs).max(1);
    let quota = is_quota(limit);
    let message = format!(
        "{} {} of {} {} per {}: this request needs {}, {} remain. It resets in {}.",
        if quota { "Budget" } else { "Rate limit" },
        limit.name,
        amount_text(limit.measure, limit.amount),
        unit(limit.measure),
        limit.window.name(),
        amount_text(limit.measure, asked),
        amount_text(limit.measure, limit.amount.saturating_sub(used)),
        duration(wait),
    );
    let reply = match api {
        Api::AnthropicMessages => reply::anthropic_error(429, "rate_limit_error", &message),
        _ if quota => reply::openai_error(429, "insufficient_quota", "budget_exceeded", None, &message),
        _ => {
            let error_type = if limit.measure == Measure::Requests { "requests" } else { "tokens" };
            reply::openai_error(429, error_type, "rate_limit_exceeded", None, &message)
        }
    };
    let mut headers = vec![("retry-after".to_string(), wait.to_string())];
    if quota {
        headers.push(("x-should-retry".to_string(), "false".to_string()));
    }
    headers.extend(rate_headers(limit, used, resets_at, now_secs));
    Refusal { reply, headers }
}

/// OpenAI's rate-limit headers for one limit: `x-ratelimit-limit-<unit>`,
/// `x-ratelimit-remaining-<unit>`, `x-ratelimit-reset-<unit>` (a duration: `59s`, `6m0s`,
/// `1h2m3s`), the unit one of `requests`, `tokens` (total), `input-tokens`, `output-tokens`,
/// `usd` (decimal USD).
pub fn rate_headers(limit: &Limit, used: u64, resets_at: i64, now_secs: i64) -> Vec<(String, String)> {
    let suffix = match limit.measure {
        Measure::Requests => "requests",
        Measure::TotalTokens => "tokens",
        Measure::InputTokens => "input-tokens",
        Measure::OutputTokens => "output-tokens",
        Measure::Spend => "usd",
    };
    vec![
        (["x-ratelimit-limit-", suffix].concat(), amount_text(limit.measure, limit.amount)),
        (["x-ratelimit-remaining-", suffix].concat(), amount_text(limit.measure, limit.amount.saturating_sub(used))),
        (["x-ratelimit-reset-", suffix].concat(), duration((resets_at - now_secs).max(0))),
    ]
}

/// Of several (limit, used) pairs, the one closest to exhaustion: the smallest share left.
pub fn closest<'a, T>(candidates: impl Iterator<Item = (&'a Limit, u64, T)>) -> Option<(&'a Limit, u64, T)> {
    candidates.min_by(|(a, used_a, _), (b, used_b, _)| {
        let left_a = u128::from(a.amount.saturating_sub(*used_a));
        let left_b = u128::from(b.amount.saturating_sub(*used_b));
        (left_a * u128::from(b.amount)).cmp(&(left_b * u128::from(a.amount)))
    })
}

fn unit(measure: Measure) -> &'static str {
    match measure {
        Measure::Spend => "USD",
        Measure::Requests => "requests",
        Measure::InputTokens => "input tokens",
        Measure::OutputTokens => "output tokens",
        Measure::TotalTokens => "tokens",
    }
}

fn amount_text(measure: Measure, amount: u64) -> String {
    match measure {
        Measure::Spend => usd_string(amount),
        _ => amount.to_string(),
    }
}

/// A duration as OpenAI writes its resets: `7s`, `6m0s`, `2h5m9s`.
pub fn duration(secs: i64) -> String {
    let (hours, minutes, seconds) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budgets::compile;
    use serde_json::{json, Value};

    fn limit(value: Value) -> Limit {
        compile(serde_json::from_value(json!({"limits": [value]})).unwrap()).unwrap().limits.remove(0)
    }

    #[test]
    fn a_rate_limit_is_a_retryable_429_in_each_dialect() {
        let rpm = limit(json!({"name": "rpm", "requests": 60, "window": "minute"}));
        let refusal = refusal(Api::OpenAiChat, &rpm, 60, 1, 120, 100);
        let body: Value = serde_json::from_slice(&refusal.reply.body).unwrap();
        assert_eq!(refusal.reply.status, 429);
        assert_eq!(body["error"]["type"], "requests");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(refusal.headers.contains(&("retry-after".into(), "20".into())));
        assert!(!refusal.headers.iter().any(|(n, _)| n == "x-should-retry"));
        assert!(refusal.headers.contains(&("x-ratelimit-remaining-requests".into(), "0".into())));
        let anthropic = super::refusal(Api::AnthropicMessages, &rpm, 60, 1, 120, 100);
        let body: Value = serde_json::from_slice(&anthropic.reply.body).unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }

    #[test]
    fn a_budget_is_an_insufficient_quota_429_not_to_be_retried() {
        let spend = limit(json!({"name": "acme-daily", "usd": "5", "window": "day"}));
        let refusal = refusal(Api::OpenAiChat, &spend, 4_999_000_000_000, 2_000_000_000, 86_400, 3_600);
        let body: Value = serde_json::from_slice(&refusal.reply.body).unwrap();
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["code"], "budget_exceeded");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("Budget acme-daily of 5.0 USD per day") && message.contains("23h0m0s"), "{message}");
        assert!(refusal.headers.contains(&("x-should-retry".into(), "false".into())));
        assert!(refusal.headers.contains(&("x-ratelimit-remaining-usd".into(), "0.001".into())));
    }

    #[test]
    fn the_closest_limit_is_the_smallest_share_left() {
        let big = limit(json!({"name": "big", "requests": 1000, "window": "minute"}));
        let small = limit(json!({"name": "small", "requests": 10, "window": "minute"}));
        let pick = closest([(&big, 900, "big"), (&small, 5, "small")].into_iter()).unwrap();
        assert_eq!(pick.2, "big", "10% left beats 50% left");
    }

    #[test]
    fn durations_read_like_openais() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(360), "6m0s");
        assert_eq!(duration(7_509), "2h5m9s");
    }
}
