//! A configuration that does not load, on Kong: the filter loads anyway (a failing `on_configure`
//! kills Kong's nginx worker for good) and answers every request with a 500 in the client's
//! dialect naming the field, before anything reaches an upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use support::{FakeHost, Profile};
use tollgate::config;
use tollgate::filter::Filter;
use tollgate::misconfigured::{self, Misconfigured};

#[test]
fn every_request_gets_a_500_naming_the_field_in_its_dialect() {
    let error = config::compile(br#"{"max_request_body_bytes": "lots"}"#).unwrap_err().to_string();
    assert!(error.contains("max_request_body_bytes: invalid type"), "{error}");
    for (path, anthropic) in
        [("/v1/chat/completions", false), ("/v1/messages", true), ("/v1/models", false), ("/", false)]
    {
        let mut host = FakeHost::new(Profile::Kong);
        host.set_request_headers(&[(":method", "POST"), (":path", path), ("content-type", "application/json")]);
        let mut filter = Filter::Misconfigured(Misconfigured::new(1, error.as_str().into()));
        filter.on_request_headers(&mut host, false);
        let reply = host.reply.clone().expect("answered");
        assert_eq!(reply.status, 500, "{path}");
        let body = reply.json();
        if anthropic {
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "api_error");
        } else {
            assert_eq!(body["error"]["code"], misconfigured::CODE);
        }
        let message = &body["error"]["message"];
        assert!(message.as_str().unwrap().contains("max_request_body_bytes"), "{message}");
        assert!(!host.upstream_headers_released, "nothing went upstream");
    }
}
