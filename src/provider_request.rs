//! What a request must look like for one provider and model: the body's model, the path, the
//! credentials. Shared by the single-filter route (decided and applied once) and by each
//! fallback attempt (applied per attempt by the upstream filter).

use crate::dialect::Api;
use crate::host_io::HostIo;
use crate::json_edit;
use crate::json_tree;
use crate::routing::{AuthStyle, Dialect, Provider, Refusal};
use crate::translate::{self, TranslateError, TranslateErrorKind};

/// Sent when Tollgate turns a request into Anthropic's API and the client named no version.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Every credential header of every dialect.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// Headers of OpenAI's API (its SDK sends them from `organization`, `project`, and for betas):
/// they mean nothing to Anthropic, which is not sent them.
pub const OPENAI_HEADERS: [&str; 3] = ["openai-organization", "openai-project", "openai-beta"];

/// Headers of Anthropic's API (its SDK always sends `anthropic-version`, and `anthropic-beta`
/// for betas): they mean nothing to an OpenAI-compatible server, which is not sent them.
pub const ANTHROPIC_HEADERS: [&str; 3] =
    ["anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access"];

/// The headers that belong to the API of a client of `api`.
fn dialect_headers(api: Api) -> &'static [&'static str] {
    match api {
        Api::AnthropicMessages => &ANTHROPIC_HEADERS,
        Api::OpenAiChat | Api::OpenAiResponses | Api::OpenAiEmbeddings => &OPENAI_HEADERS,
    }
}

/// The client's headers of either dialect, as sent: a fallback plan keeps them, since each
/// attempt starts from the previous attempt's headers and must put back what its provider takes.
pub fn client_dialect_headers(io: &dyn HostIo) -> Vec<(String, String)> {
    OPENAI_HEADERS
        .iter()
        .chain(&ANTHROPIC_HEADERS)
        .filter_map(|name| Some((name.to_string(), io.request_header(name)?)))
        .collect()
}

/// A request that crosses dialects, and so does its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// An OpenAI Chat client served by an Anthropic provider.
    OpenAiToAnthropic,
    /// An Anthropic client served by an OpenAI(-compatible) provider.
    AnthropicToOpenAi,
}

impl Translation {
    /// The API the provider speaks (what its answer is read as).
    pub fn upstream_api(self) -> Api {
        match self {
            Translation::OpenAiToAnthropic => Api::AnthropicMessages,
            Translation::AnthropicToOpenAi => Api::OpenAiChat,
        }
    }
}

/// The request as one provider must receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    pub path: String,
    /// `None` when the body needs no change.
    pub body: Option<Vec<u8>>,
    pub model: String,
    pub translation: Option<Translation>,
    /// What translation dropped or changed (see `translate::Translated::notes`), for the log.
    pub notes: Vec<String>,
}

/// The translation a client of `api` needs to be served by a provider of `dialect`: `Ok(None)`
/// when the provider speaks it, `Err(())` when no translation exists.
fn translation_for(api: Api, dialect: Dialect) -> Result<Option<Translation>, ()> {
    match (api.native_to(dialect), api) {
        (true, _) => Ok(None),
        (false, Api::OpenAiChat) => Ok(Some(Translation::OpenAiToAnthropic)),
        (false, Api::AnthropicMessages) => Ok(Some(Translation::AnthropicToOpenAi)),
        (false, _) => Err(()),
    }
}

/// The provider's path for `api` (its own, or the one it is translated to) and `model`. The
/// query is the provider's own (`query`), else the client's; but a client's query is its own
/// API's (`?beta=true` of Anthropic's SDK, Azure's `api-version`) and never goes to a provider
/// of the other dialect.
pub fn path(api: Api, provider: &Provider, model: &str, client_query: Option<&str>) -> String {
    let translation = translation_for(api, provider.dialect).ok().flatten();
    let suffix = translation.map_or(api, Translation::upstream_api).path_suffix();
    let mut path = format!("{}{}", provider.path_prefix.replace("{model}", model), suffix);
    let client_query = client_query.filter(|_| translation.is_none());
    if let Some(query) = provider.query.as_deref().or(client_query) {
        path = format!("{path}?{query}");
    }
    path
}

/// Plans the request for `provider` serving `model` (`None`: keep the client's model). A client
/// of the other dialect's API is translated (OpenAI Chat ⇄ Anthropic Messages); other
/// combinations are refused.
pub fn plan(
    api: Api,
    provider: &Provider,
    model: Option<&str>,
    requested: Option<&str>,
    body: &[u8],
    client_query: Option<&str>,
    default_max_tokens: u32,
) -> Result<ProviderRequest, Refusal> {
    let model = model.or(requested).unwrap_or_default().to_string();
    let translation = translation_for(api, provider.dialect).map_err(|()| Refusal {
        status: 400,
        code: "unsupported_api",
        message: format!("The {} API cannot be served by provider '{}'.", api.name(), provider.name),
    })?;
    let (body, notes) = match translation {
        None if requested == Some(model.as_str()) || model.is_empty() => (None, Vec::new()),
        None => {
            let quoted = json_tree::encode_string(&model);
            let edited = json_edit::replace_value(body, "model", &quoted)
                .or_else(|| json_edit::insert_first(body, "model", &quoted))
                // The routed model must be in the body: never the client's model to this provider.
                .ok_or_else(model_not_written)?;
            (Some(edited), Vec::new())
        }
        Some(Translation::OpenAiToAnthropic) => {
            let translated = translate::openai_chat_to_anthropic(body, &model, default_max_tokens).map_err(refusal)?;
            (Some(translated.body), translated.notes)
        }
        Some(Translation::AnthropicToOpenAi) => {
            let translated = translate::anthropic_to_openai_chat(body, &model).map_err(refusal)?;
            (Some(translated.body), translated.notes)
        }
    };
    let path = path(api, provider, &model, client_query);
    Ok(ProviderRequest { path, body, model, translation, notes })
}

/// Anthropic's count_tokens path for a provider's Messages path (`/v1/messages?q` →
/// `/v1/messages/count_tokens?q`).
pub fn count_tokens_path(messages_path: &str) -> String {
    match messages_path.split_once('?') {
        Some((path, query)) => format!("{path}/count_tokens?{query}"),
        None => format!("{messages_path}/count_tokens"),
    }
}

/// The body is not a JSON object the model can be written into (the proxy handed over none).
fn model_not_written() -> Refusal {
    Refusal { status: 500, code: "routing_error", message: "The gateway could not route this request.".into() }
}

/// A request the other dialect cannot express: a 400 naming the field, in the client's words.
fn refusal(error: TranslateError) -> Refusal {
    let code = match error.kind {
        TranslateErrorKind::InvalidJson => "invalid_json",
        TranslateErrorKind::InvalidField => "invalid_request",
        TranslateErrorKind::Unsupported => "unsupported_by_provider",
    };
    Refusal { status: 400, code, message: error.to_string() }
}

/// Removes every credential header of every dialect (for an attempt whose provider is not
/// known: nobody else's key may go to its host). Returns the names the proxy refused.
pub fn remove_credentials(io: &mut dyn HostIo) -> Result<(), Vec<String>> {
    let refused: Vec<String> = CREDENTIAL_HEADERS
        .into_iter()
        .filter(|name| io.request_header(name).is_some() && io.clear_request_header(name).is_err())
        .map(str::to_string)
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused)
    }
}

/// Sets the path, the provider's credentials and its dialect's headers for a client of `api`.
/// Toward a provider of the other dialect, the client's dialect headers are removed
/// (`openai-organization` means nothing to Anthropic, `anthropic-beta` nothing to OpenAI);
/// Anthropic gets `anthropic-version` when the client named none. `attempt`: this is a fallback
/// attempt, starting from the previous attempt's headers, and these are the client's dialect
/// headers as sent (from the plan): every credential header goes even when the provider has no
/// key, and the dialect headers are put back as this provider takes them. Returns the dialect
/// headers removed; `Err` the names of headers the proxy refused (never values: secrets).
pub fn apply_headers(
    io: &mut dyn HostIo,
    provider: &Provider,
    path: &str,
    api: Api,
    attempt: Option<&[(String, String)]>,
) -> Result<Vec<String>, Vec<String>> {
    let mut refused = Vec::new();
    let mut removed = Vec::new();
    let translated = !api.native_to(provider.dialect);
    let foreign: &[&str] = if translated { dialect_headers(api) } else { &[] };
    let candidates: Vec<&str> = match attempt {
        Some(_) => OPENAI_HEADERS.iter().chain(&ANTHROPIC_HEADERS).copied().collect(),
        None => foreign.to_vec(),
    };
    for name in candidates {
        if io.request_header(name).is_some() {
            match io.clear_request_header(name) {
                Ok(()) if foreign.contains(&name) => removed.push(name.to_string()),
                Ok(()) => {}
                Err(_) => refused.push(name.to_string()),
            }
        }
    }
    for (name, value) in attempt.into_iter().flatten().filter(|(name, _)| !foreign.contains(&name.as_str())) {
        if io.set_request_header(name, value).is_err() {
            refused.push(name.clone());
        }
    }
    if provider.api_key.is_some() || attempt.is_some() {
        for name in CREDENTIAL_HEADERS {
            if io.request_header(name).is_some() && io.clear_request_header(name).is_err() {
                refused.push(name.to_string());
            }
        }
    }
    if io.set_upstream_path(path).is_err() {
        refused.push(":path".to_string());
    }
    let mut set = |io: &mut dyn HostIo, name: &str, value: &str| {
        if io.set_request_header(name, value).is_err() {
            refused.push(name.to_string());
        }
    };
    if let Some(key) = &provider.api_key {
        match provider.auth {
            AuthStyle::Bearer => set(io, "authorization", &format!("Bearer {key}")),
            AuthStyle::ApiKey => set(io, "api-key", key),
            AuthStyle::XApiKey => set(io, "x-api-key", key),
        }
    }
    if provider.dialect == Dialect::Anthropic && io.request_header("anthropic-version").is_none() {
        set(io, "anthropic-version", ANTHROPIC_VERSION);
    }
    if refused.is_empty() {
        Ok(removed)
    } else {
        Err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(dialect: Dialect, prefix: &str, query: Option<&str>) -> Provider {
        Provider {
            name: "p".into(),
            dialect,
            cluster: "c".into(),
            path_prefix: prefix.into(),
            query: query.map(str::to_string),
            api_key: Some("k".into()),
            auth: AuthStyle::Bearer,
            litellm_provider: None,
        }
    }

    #[test]
    fn plans_path_and_model_for_the_provider() {
        let azure = provider(Dialect::OpenAi, "/openai/deployments/{model}", Some("api-version=1"));
        let planned =
            plan(Api::OpenAiChat, &azure, Some("dep"), Some("gpt-4o"), br#"{"model":"gpt-4o"}"#, Some("x=1"), 64)
                .unwrap();
        assert_eq!(planned.path, "/openai/deployments/dep/chat/completions?api-version=1");
        assert_eq!(planned.body.as_deref(), Some(&br#"{"model":"dep"}"#[..]));
    }

    #[test]
    fn keeps_the_body_when_the_model_is_unchanged_and_the_clients_query_without_one_of_its_own() {
        let openai = provider(Dialect::OpenAi, "/v1", None);
        let planned =
            plan(Api::OpenAiEmbeddings, &openai, None, Some("m"), br#"{"model":"m"}"#, Some("x=1"), 64).unwrap();
        assert_eq!(planned.path, "/v1/embeddings?x=1");
        assert_eq!(planned.body, None);
    }

    #[test]
    fn a_model_that_cannot_be_written_into_the_body_is_an_error_never_the_clients_model() {
        let openai = provider(Dialect::OpenAi, "/v1", None);
        for body in [&b""[..], b"[]", b"garbage"] {
            let refusal = plan(Api::OpenAiChat, &openai, Some("gpt-4o"), Some("fast"), body, None, 64).unwrap_err();
            assert_eq!((refusal.status, refusal.code), (500, "routing_error"), "{body:?}");
        }
    }

    #[test]
    fn refuses_an_api_the_provider_cannot_serve() {
        let anthropic = provider(Dialect::Anthropic, "/v1", None);
        let refusal = plan(Api::OpenAiResponses, &anthropic, None, Some("m"), b"{}", None, 64).unwrap_err();
        assert_eq!(refusal.code, "unsupported_api");
    }

    #[test]
    fn an_openai_chat_request_to_anthropic_is_translated_to_its_messages_api() {
        let anthropic = provider(Dialect::Anthropic, "/v1", None);
        let body =
            br#"{"model":"smart","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}"#;
        let planned =
            plan(Api::OpenAiChat, &anthropic, Some("claude-haiku-4-5"), Some("smart"), body, None, 64).unwrap();
        assert_eq!(planned.path, "/v1/messages");
        assert_eq!(planned.translation, Some(Translation::OpenAiToAnthropic));
        let sent: serde_json::Value = serde_json::from_slice(&planned.body.unwrap()).unwrap();
        assert_eq!(sent["model"], "claude-haiku-4-5");
        assert_eq!(sent["max_tokens"], 64);
        assert_eq!(sent["system"], "Be brief.");
    }

    #[test]
    fn what_the_other_dialect_cannot_express_is_refused_naming_the_field() {
        let anthropic = provider(Dialect::Anthropic, "/v1", None);
        let refusal =
            plan(Api::OpenAiChat, &anthropic, Some("c"), None, br#"{"messages":[],"n":2}"#, None, 64).unwrap_err();
        assert_eq!((refusal.status, refusal.code), (400, "unsupported_by_provider"));
        assert!(refusal.message.contains('n'), "{}", refusal.message);
    }
}
