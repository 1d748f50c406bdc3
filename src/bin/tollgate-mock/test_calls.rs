//! What the dialects' unit tests share: one API call built from a JSON body and control
//! headers, and the JSON of a successful complete answer.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use serde_json::Value;

use crate::controls::Controls;
use crate::dialect::ApiCall;
use crate::http_response::Reply;
use crate::text::fnv1a64;

/// `handler`'s reply to `body` sent with the mock's control `headers`.
pub fn answer(handler: fn(&ApiCall<'_>) -> Reply, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let controls = Controls::for_request(&Controls::default(), headers.iter().copied()).unwrap();
    let body = body.to_string();
    let call = ApiCall {
        body: body.as_bytes(),
        body_hash: fnv1a64(body.as_bytes()),
        request_id: "req_test".to_owned(),
        controls,
    };
    handler(&call)
}

/// The body of a complete 200 answer, as JSON.
pub fn full(reply: Reply) -> Value {
    let Reply::Full(response) = reply else { panic!("expected a full response") };
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    serde_json::from_slice(&response.body).unwrap()
}
