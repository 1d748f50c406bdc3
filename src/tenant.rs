//! Who a request is for: the tenant every cost is attributed to, and optional team and project
//! labels. The tenant comes from one configured source: a request header, metadata an
//! authentication filter wrote (Envoy `jwt_authn`), or the client's own API key, which is kept
//! only as a truncated SHA-256 hash.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Longest tenant, team or project value kept; longer ones are refused, not truncated, so two
/// tenants can never collapse into one.
pub const MAX_VALUE_BYTES: usize = 128;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    metadata: Option<Vec<String>>,
    #[serde(default)]
    api_key: Option<bool>,
    #[serde(default)]
    team_header: Option<String>,
    #[serde(default)]
    project_header: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    Header(String),
    /// A path into Envoy's dynamic metadata: namespace, then keys.
    Metadata(Vec<String>),
    /// The client's API key (`authorization: Bearer`, `x-api-key` or `api-key`), hashed.
    ApiKey,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    pub source: Option<TenantSource>,
    pub team_header: Option<String>,
    pub project_header: Option<String>,
}

/// Who the request is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub project: Option<String>,
    /// A configured source gave a value that was refused (too long, control characters, bytes
    /// that are not UTF-8).
    pub rejected: bool,
}

pub fn compile(raw: Option<RawTenant>) -> Result<TenantPolicy, (String, String)> {
    let Some(raw) = raw else { return Ok(TenantPolicy::default()) };
    let source = match (raw.header, raw.metadata, raw.api_key.unwrap_or(false)) {
        (Some(header), None, false) => {
            check_header("tenant.header", &header)?;
            Some(TenantSource::Header(header))
        }
        (None, Some(path), false) => {
            if path.len() < 2 || path.iter().any(String::is_empty) {
                return Err(("tenant.metadata".into(), "give the metadata namespace and at least one key".into()));
            }
            Some(TenantSource::Metadata(path))
        }
        (None, None, true) => Some(TenantSource::ApiKey),
        (None, None, false) => None,
        _ => return Err(("tenant".into(), "give exactly one of header, metadata or api_key".into())),
    };
    for (field, header) in [("tenant.team_header", &raw.team_header), ("tenant.project_header", &raw.project_header)] {
        if let Some(header) = header {
            check_header(field, header)?;
        }
    }
    Ok(TenantPolicy { source, team_header: raw.team_header, project_header: raw.project_header })
}

fn check_header(field: &str, name: &str) -> Result<(), (String, String)> {
    let ok =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err((field.to_string(), format!("{name:?} is not a lowercase header name")))
    }
}

impl TenantPolicy {
    /// `header` reads a request header, `metadata` a dynamic-metadata path, each as the bytes
    /// the proxy holds. A value that is not UTF-8 (obs-text in a header, a number or boolean
    /// claim in metadata, which the proxy hands over in binary) is refused like one with
    /// control characters: read lossily, two tenants would collapse into one.
    pub fn attribute(
        &self,
        header: &dyn Fn(&str) -> Option<Vec<u8>>,
        metadata: &dyn Fn(&[String]) -> Option<Vec<u8>>,
    ) -> Attribution {
        let mut attribution = Attribution::default();
        let mut keep = |value: Option<Result<String, NotText>>| -> Option<String> {
            let Ok(value) = value? else {
                attribution.rejected = true;
                return None;
            };
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            if value.len() > MAX_VALUE_BYTES || value.chars().any(char::is_control) {
                attribution.rejected = true;
                return None;
            }
            Some(value.to_string())
        };
        let tenant = match &self.source {
            None => None,
            Some(TenantSource::Header(name)) => text(header(name)),
            Some(TenantSource::Metadata(path)) => text(metadata(path)),
            Some(TenantSource::ApiKey) => client_key(header).map(|key| key.map(|key| hashed_key(&key))),
        };
        let tenant = keep(tenant);
        let team = keep(self.team_header.as_deref().and_then(|name| text(header(name))));
        let project = keep(self.project_header.as_deref().and_then(|name| text(header(name))));
        Attribution { tenant, team, project, ..attribution }
    }
}

/// A value whose bytes are not UTF-8.
struct NotText;

fn text(value: Option<Vec<u8>>) -> Option<Result<String, NotText>> {
    value.map(|bytes| String::from_utf8(bytes).map_err(|_| NotText))
}

/// The client's own key: `authorization: Bearer`, else `x-api-key`, else `api-key`.
fn client_key(header: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<Result<String, NotText>> {
    let bearer = match text(header("authorization")) {
        Some(Ok(value)) => value
            .trim()
            .split_once(' ')
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then(|| Ok(token.trim().to_string()))),
        refused @ Some(Err(_)) => refused,
        None => None,
    };
    bearer
        .or_else(|| text(header("x-api-key")))
        .or_else(|| text(header("api-key")))
        .filter(|key| key.as_ref().map_or(true, |k| !k.is_empty()))
}

/// The hashed key of the client's credential (`authorization: Bearer`, `x-api-key`, `api-key`),
/// for limits kept per client key; `None` without one, or with one that is not text.
pub fn client_key_hash(header: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<String> {
    client_key(header)?.ok().map(|key| hashed_key(&key))
}

/// `key-` and the first 16 hex digits of SHA-256: stable per key, useless to an attacker.
pub fn hashed_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: serde_json::Value) -> TenantPolicy {
        compile(Some(serde_json::from_value(value).unwrap())).unwrap()
    }

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<Vec<u8>> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes().to_vec())
    }

    fn no_metadata(_: &[String]) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn tenant_and_labels_from_headers() {
        let policy = policy(json!({"header": "x-tenant", "team_header": "x-team", "project_header": "x-project"}));
        let got = policy.attribute(&headers(&[("x-tenant", " acme "), ("x-team", "search")]), &no_metadata);
        assert_eq!(got.tenant.as_deref(), Some("acme"));
        assert_eq!(got.team.as_deref(), Some("search"));
        assert_eq!(got.project, None);
    }

    #[test]
    fn tenant_from_jwt_metadata() {
        let policy = policy(json!({"metadata": ["envoy.filters.http.jwt_authn", "jwt_payload", "sub"]}));
        let metadata = |path: &[String]| (path.last().map(String::as_str) == Some("sub")).then(|| b"user-42".to_vec());
        assert_eq!(policy.attribute(&headers(&[]), &metadata).tenant.as_deref(), Some("user-42"));
    }

    #[test]
    fn tenant_from_the_api_key_is_a_hash_never_the_key() {
        let policy = policy(json!({"api_key": true}));
        let bearer = policy.attribute(&headers(&[("authorization", "Bearer sk-secret-1")]), &no_metadata);
        let anthropic = policy.attribute(&headers(&[("x-api-key", "sk-secret-1")]), &no_metadata);
        let tenant = bearer.tenant.unwrap();
        assert_eq!(Some(tenant.clone()), anthropic.tenant, "the same key is the same tenant whatever the header");
        assert!(tenant.starts_with("key-") && tenant.len() == 20);
        assert!(!tenant.contains("secret"));
        assert_ne!(
            policy.attribute(&headers(&[("authorization", "Bearer sk-other")]), &no_metadata).tenant,
            Some(tenant)
        );
    }

    #[test]
    fn control_characters_and_huge_values_are_refused_not_truncated() {
        let policy = policy(json!({"header": "x-tenant"}));
        let huge: &'static str = Box::leak("a".repeat(10_000).into_boxed_str());
        for bad in ["acme\u{7}", "ac\nme", huge] {
            let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("x-tenant", bad)]));
            let got = policy.attribute(&headers(pairs), &no_metadata);
            assert_eq!(got.tenant, None);
            assert!(got.rejected);
        }
    }

    #[test]
    fn values_that_are_not_utf8_are_refused_never_collapsed() {
        let by_header = policy(json!({"header": "x-tenant", "team_header": "x-team"}));
        let raw = |value: &'static [u8]| move |name: &str| (name == "x-tenant").then(|| value.to_vec());
        for value in [&b"caf\xe9"[..], b"caf\xe8"] {
            let got = by_header.attribute(&raw(value), &no_metadata);
            assert_eq!(got.tenant, None);
            assert!(got.rejected, "{value:?} is refused and counted, not read as caf\u{FFFD}");
        }
        // A JWT claim that is a number: Envoy hands over the double's 8 bytes.
        let by_claim = policy(json!({"metadata": ["jwt", "payload", "sub"]}));
        for claim in [1_700_000_000.0_f64, 42.0, 0.1] {
            let bytes = claim.to_le_bytes().to_vec();
            let got = by_claim.attribute(&headers(&[]), &move |_: &[String]| Some(bytes.clone()));
            assert_eq!(got.tenant, None);
            assert!(got.rejected, "claim {claim}");
        }
        let by_key = policy(json!({"api_key": true}));
        let got = by_key.attribute(&|name: &str| (name == "x-api-key").then(|| b"sk-\xff".to_vec()), &no_metadata);
        assert!(got.rejected && got.tenant.is_none(), "a key that is not UTF-8 is refused, not hashed lossily");
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |value: serde_json::Value| compile(Some(serde_json::from_value(value).unwrap())).unwrap_err().0;
        assert_eq!(bad(json!({"header": "x", "api_key": true})), "tenant");
        assert_eq!(bad(json!({"header": "X-Tenant"})), "tenant.header");
        assert_eq!(bad(json!({"metadata": ["only-namespace"]})), "tenant.metadata");
        assert_eq!(bad(json!({"api_key": true, "team_header": "Bad Header"})), "tenant.team_header");
    }
}
