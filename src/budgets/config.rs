//! The `budgets` field of the configuration: limits, what they count and over which window,
//! which requests they apply to, how much output a request reserves, and where the counters
//! live. Compiled once at load; every error names the field (`budgets.limits[1].window: …`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::window::Window;
use super::{Budgets, Dimension, Limit, Measure, OutputPolicy, RedisStore, Store};
use crate::routing::glob::Glob;

/// The largest amount any limit may hold: counters are u64 and sums must not overflow.
const MAX_AMOUNT: u64 = 1 << 62;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    #[serde(default)]
    store: Option<serde_json::Value>,
    #[serde(default)]
    default_max_output_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    routes: BTreeMap<String, RawOutput>,
    #[serde(default)]
    limits: Vec<RawLimit>,
    /// Compiled with the environment (its token may come from it), in `config`.
    #[serde(default)]
    pub admin: Option<super::admin::RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default)]
    default_max_output_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: String,
    #[serde(default)]
    usd: Option<serde_json::Value>,
    #[serde(default)]
    requests: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    window: String,
    #[serde(default)]
    utc_offset: Option<String>,
    #[serde(default)]
    by: Vec<String>,
    #[serde(rename = "match", default)]
    matches: BTreeMap<String, String>,
    #[serde(default)]
    routes: Option<Vec<String>>,
    #[serde(default)]
    shadow: bool,
}

/// Output tokens a request without an output limit reserves when nothing else is configured.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

pub fn compile(raw: RawBudgets) -> Result<Budgets, (String, String)> {
    let field = |rest: &str| format!("budgets.{rest}");
    let store = compile_store(raw.store.as_ref())?;
    let defaults = output_policy(
        raw.default_max_output_tokens,
        raw.max_output_tokens,
        OutputPolicy { reserve: DEFAULT_MAX_OUTPUT_TOKENS, ceiling: None },
        "budgets",
    )?;
    let mut routes = Vec::new();
    for (route, output) in raw.routes {
        let at = field(&format!("routes.{route}"));
        routes.push((
            Glob::new(&route),
            output_policy(output.default_max_output_tokens, output.max_output_tokens, defaults, &at)?,
        ));
    }
    let mut limits = Vec::new();
    for (i, limit) in raw.limits.into_iter().enumerate() {
        let at = |rest: &str| field(&format!("limits[{i}]{rest}"));
        limits.push(compile_limit(limit, &at)?);
    }
    for (i, limit) in limits.iter().enumerate() {
        if limits.iter().take(i).any(|other| other.name == limit.name) {
            return Err((
                field(&format!("limits[{i}].name")),
                format!("{:?} is the name of an earlier limit", limit.name),
            ));
        }
    }
    Ok(Budgets { limits, store, defaults, routes, admin: None })
}

fn output_policy(
    reserve: Option<u64>,
    ceiling: Option<u64>,
    inherited: OutputPolicy,
    at: &str,
) -> Result<OutputPolicy, (String, String)> {
    for (name, value) in [("default_max_output_tokens", reserve), ("max_output_tokens", ceiling)] {
        if let Some(value) = value {
            if value == 0 || value > 10_000_000 {
                return Err((format!("{at}.{name}"), format!("{value} is not between 1 and 10000000 tokens")));
            }
        }
    }
    let ceiling = ceiling.or(inherited.ceiling);
    let reserve = reserve.unwrap_or(inherited.reserve);
    Ok(OutputPolicy { reserve: ceiling.map_or(reserve, |c| reserve.min(c)), ceiling })
}

fn compile_limit(raw: RawLimit, at: &dyn Fn(&str) -> String) -> Result<Limit, (String, String)> {
    let name = raw.name.trim();
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err((at(".name"), format!("{:?} is not a limit name: 1 to 64 of A-Z a-z 0-9 - _ .", raw.name)));
    }
    let mut measures = Vec::new();
    if let Some(usd) = &raw.usd {
        measures.push((Measure::Spend, parse_pico_usd(usd).map_err(|e| (at(".usd"), e))?));
    }
    for (measure, value) in [
        (Measure::Requests, raw.requests),
        (Measure::InputTokens, raw.input_tokens),
        (Measure::OutputTokens, raw.output_tokens),
        (Measure::TotalTokens, raw.total_tokens),
    ] {
        if let Some(value) = value {
            measures.push((measure, value));
        }
    }
    let [(measure, amount)] = measures[..] else {
        return Err((
            at(""),
            "a limit counts exactly one of usd, requests, input_tokens, output_tokens, total_tokens".to_string(),
        ));
    };
    if amount == 0 || amount > MAX_AMOUNT {
        return Err((
            at(&format!(".{}", measure.field())),
            format!("{amount} is not a limit: at least 1, at most 2^62"),
        ));
    }
    if let Some(offset) = raw.utc_offset.as_deref() {
        super::window::parse_offset(offset).map_err(|e| (at(".utc_offset"), e))?;
    }
    let window = Window::parse(&raw.window, raw.utc_offset.as_deref()).map_err(|e| (at(".window"), e))?;
    let mut by = Vec::new();
    for (j, dimension) in raw.by.iter().enumerate() {
        let parsed =
            Dimension::parse(dimension).ok_or_else(|| (at(&format!(".by[{j}]")), unknown_dimension(dimension)))?;
        if by.contains(&parsed) {
            return Err((at(&format!(".by[{j}]")), format!("{dimension:?} is listed twice")));
        }
        by.push(parsed);
    }
    let mut matches = Vec::new();
    for (dimension, pattern) in raw.matches {
        let parsed = Dimension::parse(&dimension)
            .ok_or_else(|| (at(&format!(".match.{dimension}")), unknown_dimension(&dimension)))?;
        matches.push((parsed, Glob::new(&pattern)));
    }
    let routes = raw.routes.map(|routes| routes.iter().map(|r| Glob::new(r)).collect());
    Ok(Limit { name: name.to_string(), measure, amount, window, by, matches, routes, shadow: raw.shadow })
}

fn unknown_dimension(name: &str) -> String {
    format!("unknown scope {name:?}: expected tenant, team, project, client_key, route, provider or model")
}

/// A spend amount in USD (`"25"`, `"0.50"`, `12.5`) as pico-USD, exactly: plain decimals of at
/// most 12 places, no floats on the way (a JSON number is read as the digits it prints as).
pub fn parse_pico_usd(value: &serde_json::Value) -> Result<u64, String> {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.to_string(),
        other => return Err(format!("{other} is not an amount of USD (for example \"25.00\")")),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || (text.contains('.') && fraction.is_empty()) {
        return Err(format!("{text:?} is not a decimal amount of USD (for example \"25.00\")"));
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 12 {
        return Err(format!("{text} has more than 12 decimal places (amounts are whole pico-USD)"));
    }
    let whole: u64 = whole.parse().map_err(|_| format!("{text} is too large"))?;
    let mut pico = 0u64;
    for position in 0..12 {
        pico = pico * 10 + fraction.as_bytes().get(position).map_or(0, |b| u64::from(b - b'0'));
    }
    whole
        .checked_mul(1_000_000_000_000)
        .and_then(|w| w.checked_add(pico))
        .filter(|total| *total <= MAX_AMOUNT)
        .ok_or_else(|| format!("{text} USD is more than a budget can hold"))
}

/// `"embedded"` (the default), or `{"redis": {"endpoint", "authority", "timeout_ms", "lease"}}`.
fn compile_store(raw: Option<&serde_json::Value>) -> Result<Store, (String, String)> {
    const FIELD: &str = "budgets.store";
    match raw {
        None => Ok(Store::Embedded),
        Some(serde_json::Value::String(kind)) if kind == "embedded" => Ok(Store::Embedded),
        Some(serde_json::Value::Object(object)) if object.len() == 1 && object.contains_key("redis") => {
            let redis: RedisStore =
                serde_path_to_error::deserialize(object.get("redis").unwrap_or(&serde_json::Value::Null))
                    .map_err(|e| (format!("{FIELD}.redis.{}", e.path()), e.into_inner().to_string()))?;
            redis.check().map_err(|(field, reason)| (format!("{FIELD}.redis.{field}"), reason))?;
            Ok(Store::Redis(redis))
        }
        Some(other) => {
            Err((FIELD.to_string(), format!("{other} is not a store: expected \"embedded\" or {{\"redis\": {{…}}}}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compiled(value: serde_json::Value) -> Result<Budgets, (String, String)> {
        compile(serde_json::from_value(value).map_err(|e| (String::new(), e.to_string()))?)
    }

    #[test]
    fn usd_amounts_are_exact() {
        assert_eq!(parse_pico_usd(&json!("25")), Ok(25_000_000_000_000));
        assert_eq!(parse_pico_usd(&json!("0.000000000001")), Ok(1));
        assert_eq!(parse_pico_usd(&json!(12.5)), Ok(12_500_000_000_000));
        assert!(parse_pico_usd(&json!("0.0000000000001")).is_err());
        assert!(parse_pico_usd(&json!("-1")).is_err());
        assert!(parse_pico_usd(&json!("1e3")).is_err());
        assert!(parse_pico_usd(&json!("99999999")).is_err(), "over 2^62 pico-USD");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"limits": [{"name": "a", "requests": 5, "window": "fortnight"}]}), "budgets.limits[0].window"),
            (json!({"limits": [{"name": "a", "requests": 0, "window": "minute"}]}), "budgets.limits[0].requests"),
            (json!({"limits": [{"name": "a", "requests": 1, "usd": "1", "window": "day"}]}), "budgets.limits[0]"),
            (json!({"limits": [{"name": "a", "window": "day"}]}), "budgets.limits[0]"),
            (json!({"limits": [{"name": "a b", "requests": 1, "window": "day"}]}), "budgets.limits[0].name"),
            (
                json!({"limits": [{"name": "a", "requests": 1, "window": "day", "by": ["colour"]}]}),
                "budgets.limits[0].by[0]",
            ),
            (
                json!({"limits": [{"name": "a", "requests": 1, "window": "day", "match": {"tenant": "x", "size": "y"}}]}),
                "budgets.limits[0].match.size",
            ),
            (json!({"limits": [{"name": "a", "usd": "x", "window": "day"}]}), "budgets.limits[0].usd"),
            // A window of zero, or of no length at all, is not a window.
            (json!({"limits": [{"name": "a", "requests": 5, "window": "0"}]}), "budgets.limits[0].window"),
            (json!({"limits": [{"name": "a", "requests": 5, "window": "0s"}]}), "budgets.limits[0].window"),
            (json!({"limits": [{"name": "a", "requests": 5, "window": ""}]}), "budgets.limits[0].window"),
            (json!({"limits": [{"name": "a", "usd": "0", "window": "day"}]}), "budgets.limits[0].usd"),
            (json!({"limits": [{"name": "a", "usd": "-1", "window": "day"}]}), "budgets.limits[0].usd"),
            (
                json!({"limits": [{"name": "a", "usd": "1", "window": "day", "utc_offset": "+25:00"}]}),
                "budgets.limits[0].utc_offset",
            ),
            (
                json!({"limits": [{"name": "a", "requests": 1, "window": "day"}, {"name": "a", "requests": 2, "window": "day"}]}),
                "budgets.limits[1].name",
            ),
            (json!({"default_max_output_tokens": 0}), "budgets.default_max_output_tokens"),
            (json!({"routes": {"team-*": {"max_output_tokens": 0}}}), "budgets.routes.team-*.max_output_tokens"),
            (json!({"store": "memcached"}), "budgets.store"),
            (json!({"store": {"redis": {"endpoint": ""}}}), "budgets.store.redis.endpoint"),
            (json!({"store": {"redis": {"endpoint": "webdis", "timeout_ms": 0}}}), "budgets.store.redis.timeout_ms"),
        ];
        for (config, field) in cases {
            let (got, reason) = compiled(config.clone()).unwrap_err();
            assert_eq!(got, field, "{config} → {reason}");
        }
    }

    #[test]
    fn output_reservations_inherit_and_respect_the_ceiling() {
        let budgets = compiled(json!({"default_max_output_tokens": 2000, "max_output_tokens": 8000,
            "routes": {"team-*": {"default_max_output_tokens": 100000}, "cheap": {"max_output_tokens": 500}}}))
        .unwrap();
        assert_eq!(budgets.output_policy(None), OutputPolicy { reserve: 2000, ceiling: Some(8000) });
        assert_eq!(budgets.output_policy(Some("team-a")), OutputPolicy { reserve: 8000, ceiling: Some(8000) });
        assert_eq!(budgets.output_policy(Some("cheap")), OutputPolicy { reserve: 500, ceiling: Some(500) });
        let plain = compiled(json!({})).unwrap();
        assert_eq!(plain.output_policy(None), OutputPolicy { reserve: DEFAULT_MAX_OUTPUT_TOKENS, ceiling: None });
    }
}
