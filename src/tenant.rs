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
    /// A configured source gave a value that was refused (too long, control characters).
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
    /// `header` reads a request header, `metadata` a dynamic-metadata path.
    pub fn attribute(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        metadata: &dyn Fn(&[String]) -> Option<String>,
    ) -> Attribution {
        let mut attribution = Attribution::default();
        let mut keep = |value: Option<String>| -> Option<String> {
            let value = value?;
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
            Some(TenantSource::Header(name)) => header(name),
            Some(TenantSource::Metadata(path)) => metadata(path),
            Some(TenantSource::ApiKey) => client_key(header).map(|key| hashed_key(&key)),
        };
        let tenant = keep(tenant);
        let team = keep(self.team_header.as_deref().and_then(header));
        let project = keep(self.project_header.as_deref().and_then(header));
        Attribution { tenant, team, project, ..attribution }
    }
}

fn client_key(header: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let bearer = header("authorization").and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    });
    bearer.or_else(|| header("x-api-key")).or_else(|| header("api-key")).filter(|k| !k.is_empty())
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

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    fn no_metadata(_: &[String]) -> Option<String> {
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
        let metadata =
            |path: &[String]| (path.last().map(String::as_str) == Some("sub")).then(|| "user-42".to_string());
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
    fn config_errors_name_the_field() {
        let bad = |value: serde_json::Value| compile(Some(serde_json::from_value(value).unwrap())).unwrap_err().0;
        assert_eq!(bad(json!({"header": "x", "api_key": true})), "tenant");
        assert_eq!(bad(json!({"header": "X-Tenant"})), "tenant.header");
        assert_eq!(bad(json!({"metadata": ["only-namespace"]})), "tenant.metadata");
        assert_eq!(bad(json!({"api_key": true, "team_header": "Bad Header"})), "tenant.team_header");
    }
}
