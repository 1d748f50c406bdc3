//! Per-request behaviour knobs: faults and usage overrides.
//!
//! Each knob is set by an `x-mock-KEY: VALUE` request header, or for every
//! request by `--fault KEY=VALUE` on the command line; a header wins.

use std::time::Duration;

/// Every knob, as spelled after `x-mock-` / in `--fault KEY=VALUE`.
pub const KEYS: [&str; 15] = [
    "status",
    "retry-after",
    "first-byte-delay-ms",
    "chunk-delay-ms",
    "reset-after-events",
    "reset-mid-event",
    "omit-usage",
    "body",
    "served-model",
    "cached-tokens",
    "reasoning-tokens",
    "cache-read-tokens",
    "cache-write-tokens",
    "reply",
    "delta-bytes",
];

const HEADER_PREFIX: &str = "x-mock-";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// Answer with this status instead of a completion (400–599 for a
    /// dialect-shaped JSON error; any 200–599 with `body=html`).
    pub status: Option<u16>,
    /// `retry-after` seconds on 429 and 503 errors (default 1).
    pub retry_after_secs: Option<u64>,
    pub first_byte_delay_ms: u64,
    pub chunk_delay_ms: u64,
    /// Reset the connection after this many SSE events (streaming), or after
    /// half the body (non-streaming).
    pub reset_after_events: Option<usize>,
    /// With `reset_after_events`: send the first half of the next event before the reset, so
    /// the stream is cut in the middle of an event.
    pub reset_mid_event: bool,
    pub omit_usage: bool,
    /// Answer with an HTML error page (status defaults to 502).
    pub html_body: bool,
    /// The `model` reported in the response, instead of the requested one.
    pub served_model: Option<String>,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// `reply=echo`: answer with the text of the last user message instead of
    /// the deterministic sentence (max_tokens and tools do not apply).
    pub echo: bool,
    /// Stream text in deltas of at most this many bytes (never inside a UTF-8
    /// character) instead of one delta per word.
    pub delta_bytes: Option<usize>,
}

impl Controls {
    /// Applies one knob. `Ok(false)` for a key that is not a knob; `Err` with a
    /// message for a knob whose value does not parse.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let value = value.trim();
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "status" => self.status = parse_status(value)?,
            "retry-after" => self.retry_after_secs = Some(parse_number(&key, value)?),
            "first-byte-delay-ms" => self.first_byte_delay_ms = parse_number(&key, value)?,
            "chunk-delay-ms" => self.chunk_delay_ms = parse_number(&key, value)?,
            "reset-after-events" => self.reset_after_events = parse_optional_count(value)?,
            "reset-mid-event" => self.reset_mid_event = parse_flag(&key, value)?,
            "omit-usage" => self.omit_usage = parse_flag(&key, value)?,
            "body" => self.html_body = parse_body_kind(value)?,
            "served-model" => self.served_model = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "cached-tokens" => self.cached_tokens = parse_number(&key, value)?,
            "reasoning-tokens" => self.reasoning_tokens = parse_number(&key, value)?,
            "cache-read-tokens" => self.cache_read_tokens = parse_number(&key, value)?,
            "cache-write-tokens" => self.cache_write_tokens = parse_number(&key, value)?,
            "reply" => self.echo = parse_reply(value)?,
            "delta-bytes" => self.delta_bytes = Some(parse_delta_bytes(value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `defaults` overridden by the request's `x-mock-*` headers. Unknown
    /// `x-mock-*` headers are ignored: they may be meant for someone else.
    pub fn for_request<'h>(
        defaults: &Controls,
        headers: impl Iterator<Item = (&'h str, &'h str)>,
    ) -> Result<Controls, String> {
        let mut controls = defaults.clone();
        for (name, value) in headers {
            let Some(key) = strip_prefix_ignore_case(name, HEADER_PREFIX) else {
                continue;
            };
            controls.set(key, value).map_err(|message| format!("invalid x-mock-{key} header: {message}"))?;
        }
        Ok(controls)
    }

    pub fn retry_after(&self) -> u64 {
        self.retry_after_secs.unwrap_or(1)
    }

    pub fn first_byte_delay(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.first_byte_delay_ms)).filter(|d| !d.is_zero())
    }

    pub fn chunk_delay(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.chunk_delay_ms)).filter(|d| !d.is_zero())
    }

    /// The status of an injected error, if this request should get one.
    /// Codes below 400 only mean something together with `body=html`.
    pub fn injected_json_error(&self) -> Option<u16> {
        self.status.filter(|status| *status >= 400 && !self.html_body)
    }

    pub fn injected_html_status(&self) -> Option<u16> {
        self.html_body.then(|| self.status.unwrap_or(502))
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| text.get(prefix.len()..)).flatten()
}

/// "none" and "0" clear a status set by `--fault`, so one request can opt out.
fn parse_status(value: &str) -> Result<Option<u16>, String> {
    if value.eq_ignore_ascii_case("none") || value == "0" {
        return Ok(None);
    }
    match value.parse::<u16>() {
        Ok(code) if (200..=599).contains(&code) => Ok(Some(code)),
        _ => Err(format!("expected an HTTP status 200-599 or none, got {value:?}")),
    }
}

fn parse_number(key: &str, value: &str) -> Result<u64, String> {
    value.parse().map_err(|_| format!("{key} expects a non-negative integer, got {value:?}"))
}

fn parse_optional_count(value: &str) -> Result<Option<usize>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| format!("reset-after-events expects a count or none, got {value:?}"))
}

fn parse_flag(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{key} expects 1 or 0, got {value:?}")),
    }
}

fn parse_body_kind(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "html" => Ok(true),
        "json" | "normal" | "none" => Ok(false),
        _ => Err(format!("body expects html or json, got {value:?}")),
    }
}

/// The only reply kind besides the default sentence is `echo`.
fn parse_reply(value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("echo") {
        Ok(true)
    } else {
        Err(format!("reply expects echo, got {value:?}"))
    }
}

fn parse_delta_bytes(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(bytes) if bytes >= 1 => Ok(bytes),
        _ => Err(format!("delta-bytes expects an integer of at least 1, got {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_override_command_line_defaults() {
        let mut defaults = Controls::default();
        assert_eq!(defaults.set("status", "503"), Ok(true));
        assert_eq!(defaults.set("chunk-delay-ms", "5"), Ok(true));
        let headers = [("X-Mock-Status", "none"), ("content-type", "application/json")];
        let controls = Controls::for_request(&defaults, headers.into_iter()).unwrap();
        assert_eq!(controls.status, None);
        assert_eq!(controls.chunk_delay_ms, 5);
    }

    #[test]
    fn unknown_keys_are_reported_and_bad_values_rejected() {
        let mut controls = Controls::default();
        assert_eq!(controls.set("no-such-knob", "1"), Ok(false));
        assert!(controls.set("status", "abc").is_err());
        assert!(controls.set("status", "99").is_err());
        let headers = [("x-mock-first-byte-delay-ms", "-1")];
        assert!(Controls::for_request(&controls, headers.into_iter()).is_err());
    }

    #[test]
    fn html_body_defaults_to_bad_gateway_and_suppresses_the_json_error() {
        let mut controls = Controls::default();
        controls.set("body", "html").unwrap();
        assert_eq!(controls.injected_html_status(), Some(502));
        controls.set("status", "429").unwrap();
        assert_eq!(controls.injected_html_status(), Some(429));
        assert_eq!(controls.injected_json_error(), None);
    }

    #[test]
    fn every_documented_key_is_accepted() {
        for key in KEYS {
            let value = if key == "body" { "json" } else { "1" };
            let mut controls = Controls::default();
            let value = match key {
                "status" => "500",
                "reply" => "echo",
                _ => value,
            };
            assert_eq!(controls.set(key, value), Ok(true), "{key}");
        }
    }

    #[test]
    fn reply_accepts_only_echo_and_delta_bytes_only_positive_counts() {
        let mut controls = Controls::default();
        assert_eq!(controls.set("reply", "echo"), Ok(true));
        assert!(controls.echo);
        assert_eq!(controls.set("delta-bytes", "3"), Ok(true));
        assert_eq!(controls.delta_bytes, Some(3));
        for bad in ["", "none", "sentence", "1"] {
            let headers = [("x-mock-reply", bad)];
            let error = Controls::for_request(&Controls::default(), headers.into_iter()).unwrap_err();
            assert!(error.starts_with("invalid x-mock-reply header"), "{error}");
        }
        for bad in ["0", "-1", "", "abc", "none"] {
            let headers = [("x-mock-delta-bytes", bad)];
            let error = Controls::for_request(&Controls::default(), headers.into_iter()).unwrap_err();
            assert!(error.starts_with("invalid x-mock-delta-bytes header"), "{error}");
        }
        let headers = [("X-Mock-Reply", "echo"), ("x-mock-delta-bytes", "1")];
        let controls = Controls::for_request(&Controls::default(), headers.into_iter()).unwrap();
        assert!(controls.echo);
        assert_eq!(controls.delta_bytes, Some(1));
    }
}
