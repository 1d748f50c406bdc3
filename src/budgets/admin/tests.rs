use super::*;
use serde_json::json;

fn config() -> AdminConfig {
    let raw: RawAdmin = serde_json::from_value(json!({"token": {"value": "0123456789abcdef"}})).unwrap();
    compile(Some(raw), &|_| None).unwrap().unwrap()
}

#[test]
fn times_are_rfc3339_in_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_796_644_800), "2026-12-07T12:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
}

#[test]
fn the_path_is_claimed_with_or_without_its_query_or_a_trailing_slash_and_nothing_under_it() {
    let config = config();
    assert_eq!(config.path, DEFAULT_PATH);
    for path in ["/tollgate/budgets", "/tollgate/budgets/", "/tollgate/budgets?limit=x"] {
        assert!(config.claims(path), "{path}");
    }
    for path in ["/tollgate/budgetsx", "/tollgate/budgets/x", "/v1/chat/completions", "/tollgate"] {
        assert!(!config.claims(path), "{path}");
    }
}

#[test]
fn only_the_bearer_token_itself_is_authorized() {
    let config = config();
    assert_eq!(config.authorize(Some("Bearer 0123456789abcdef")), Ok(()));
    assert_eq!(config.authorize(Some("bearer  0123456789abcdef ")), Ok(()));
    for wrong in ["Bearer 0123456789abcde", "Bearer 0123456789abcdefg", "Basic 0123456789abcdef"] {
        let status = config.authorize(Some(wrong)).unwrap_err().status;
        assert!(status == 403 || status == 401, "{wrong}: {status}");
    }
    assert_eq!(config.authorize(None).unwrap_err().status, 401);
    assert!(!format!("{config:?}").contains("0123456789abcdef"), "the token is never printed");
}

#[test]
fn keys_split_into_limit_and_scope() {
    assert_eq!(split_key("rpm:acme:gpt-4o"), ("rpm", "acme:gpt-4o"));
    assert_eq!(split_key("all"), ("all", ""));
    assert_eq!(key("all", ""), "all");
    assert_eq!(key("rpm", "k%3A1"), "rpm:k%3A1");
}
