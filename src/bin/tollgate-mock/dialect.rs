//! The request flow shared by every endpoint of the two API dialects.
//!
//! Order matters and mirrors a real provider: knobs are read first (a bad
//! `x-mock-*` value is the test's mistake, reported as 400), then the API key
//! is checked, then injected faults fire, and only then is the body looked at,
//! so a fault test does not depend on sending a valid body.

use crate::cli::Config;
use crate::controls::Controls;
use crate::http_request::Head;
use crate::http_response::{Reply, Response};
use crate::text::{fnv1a64, make_id};
use crate::{anthropic, openai};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiEndpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    Models,
    Messages,
    CountTokens,
}

impl ApiEndpoint {
    pub fn dialect(self) -> Dialect {
        match self {
            ApiEndpoint::ChatCompletions | ApiEndpoint::Responses | ApiEndpoint::Embeddings | ApiEndpoint::Models => {
                Dialect::OpenAi
            }
            ApiEndpoint::Messages | ApiEndpoint::CountTokens => Dialect::Anthropic,
        }
    }
}

/// One API request, as the dialect handlers see it.
pub struct ApiCall<'a> {
    pub body: &'a [u8],
    /// Seeds every id in the response, so equal bodies give equal bytes.
    pub body_hash: u64,
    /// `req_…`, sent as `x-request-id` (OpenAI) / `request-id` (Anthropic).
    pub request_id: String,
    pub controls: Controls,
}

/// Serves an API endpoint. Also returns the knobs in force, which decide
/// delays and resets when the reply is written.
pub fn serve(endpoint: ApiEndpoint, head: &Head<'_>, body: &[u8], config: &Config) -> (Reply, Controls) {
    let body_hash = fnv1a64(body);
    let mut call = ApiCall {
        body,
        body_hash,
        request_id: make_id("req_", body_hash ^ 0x5eed, 24),
        controls: config.defaults.clone(),
    };
    let dialect = endpoint.dialect();
    match Controls::for_request(&config.defaults, head.headers.iter().copied()) {
        Ok(controls) => call.controls = controls,
        Err(message) => return (Reply::Full(dialect.error(400, &message, &call)), call.controls),
    }
    let reply = match preflight(dialect, head, config, &call) {
        Some(refusal) => Reply::Full(refusal),
        None => match endpoint {
            ApiEndpoint::ChatCompletions => openai::chat_completions(&call),
            ApiEndpoint::Responses => crate::responses::responses(&call),
            ApiEndpoint::Embeddings => crate::embeddings::embeddings(&call),
            ApiEndpoint::Models => Reply::Full(openai::models(&call)),
            ApiEndpoint::Messages => anthropic::messages(&call),
            ApiEndpoint::CountTokens => anthropic::count_tokens(&call),
        },
    };
    (reply, call.controls)
}

/// The response that pre-empts the real work, if any: auth failure or an
/// injected fault.
fn preflight(dialect: Dialect, head: &Head<'_>, config: &Config, call: &ApiCall<'_>) -> Option<Response> {
    if let Some(key) = config.require_key.as_deref() {
        let refusal = match dialect {
            Dialect::OpenAi => openai::authorize(head, key, call),
            Dialect::Anthropic => anthropic::authorize(head, key, call),
        };
        if refusal.is_some() {
            return refusal;
        }
    }
    if let Some(status) = call.controls.injected_html_status() {
        return Some(html_error_page(status));
    }
    let status = call.controls.injected_json_error()?;
    Some(match dialect {
        Dialect::OpenAi => openai::injected_error(status, call),
        Dialect::Anthropic => anthropic::injected_error(status, call),
    })
}

impl Dialect {
    pub fn error(self, status: u16, message: &str, call: &ApiCall<'_>) -> Response {
        match self {
            Dialect::OpenAi => openai::error_response(status, message, None, None, call),
            Dialect::Anthropic => anthropic::error_response(status, message, call),
        }
    }
}

/// `retry-after` goes on 429 and 503, the statuses clients back off on.
pub fn with_retry_after(response: Response, controls: &Controls) -> Response {
    if matches!(response.status, 429 | 503) {
        response.with_header("retry-after", controls.retry_after().to_string())
    } else {
        response
    }
}

/// What a load balancer in front of a provider sends when the upstream dies:
/// the "upstream answered HTML, not JSON" case.
fn html_error_page(status: u16) -> Response {
    let reason = crate::http_response::reason_phrase(status);
    let page = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>tollgate-mock</center>\r\n\
         </body>\r\n</html>\r\n"
    );
    Response::new(status, "text/html", page.into_bytes())
}
