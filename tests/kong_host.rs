//! Kong's Wasm host as the fake proxy models it, fact by fact, and the filter on that model.
//!
//! Kong cannot be installed on these machines, so `tests/support`'s fake Kong is the only Kong
//! the tests have. Its behaviour comes from a Kong-equivalent host (nginx with Kong 3.9's
//! ngx_wasm_module, Wasmtime 26, the `kong` property namespace, filters attached in the access
//! phase) that ran the release `.wasm`: ../shared/research/kong-host-probe.md, "fact N" below.
//!
//! Part one is the conformance table: one test per fact, each driving the fake host with a
//! small probe filter that does exactly what the fact is about, so the model can be read against
//! the probe row by row. Part two runs the filter through that host: the hang, the truncation
//! and the header leak the probe saw must not happen, and every setting a Kong operator makes
//! (`kong/kong.conf`) is what the model assumes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

mod support;

use std::rc::Rc;

use serde_json::{json, Value};
use support::{FakeHost, KongHost, Profile, Stream};
use tollgate::config::{self, Policy};
use tollgate::exchange::Exchange;
use tollgate::host_io::{Flow, HostIo};
use tollgate::names::Counter;

/// What a probe does to the host in the step it acts in.
type Act = Box<dyn FnMut(&mut dyn HostIo)>;

/// A filter that does one scripted thing per step and notes the calls it got.
#[derive(Default)]
struct Probe {
    pause_headers: bool,
    pause_body: bool,
    pause_first_response_body: bool,
    /// Run in the request body step (or the headers step, when `in_headers`).
    act: Option<Act>,
    in_headers: bool,
    body_calls: Vec<(usize, bool)>,
    /// What the body step read of the body (`None`: the host would not hand it over).
    read: Option<Option<Vec<u8>>>,
    response_calls: Vec<(usize, bool)>,
    paused_response: bool,
}

impl Stream for Probe {
    fn on_request_headers(&mut self, io: &mut dyn HostIo, _end_of_stream: bool) -> Flow {
        if self.in_headers {
            if let Some(act) = self.act.as_mut() {
                act(io);
            }
        }
        if self.pause_headers {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        self.body_calls.push((body_size, end_of_stream));
        self.read = Some(io.request_body(0, body_size));
        if !self.in_headers {
            if let Some(act) = self.act.as_mut() {
                act(io);
            }
        }
        if self.pause_body {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    fn on_response_headers(&mut self, _io: &mut dyn HostIo, _end_of_stream: bool) -> Flow {
        Flow::Continue
    }

    fn on_response_body(&mut self, _io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        self.response_calls.push((body_size, end_of_stream));
        if self.pause_first_response_body && !self.paused_response {
            self.paused_response = true;
            return Flow::Pause;
        }
        Flow::Continue
    }
}

fn probe_acting(act: impl FnMut(&mut dyn HostIo) + 'static) -> Probe {
    Probe { act: Some(Box::new(act)), ..Probe::default() }
}

const POST: [(&str, &str); 3] =
    [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];
const BODY: &[u8] = br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#;

fn kong() -> FakeHost {
    FakeHost::new(Profile::Kong)
}

// ---- Part one: the host, fact by fact ----

/// Fact 1: a Pause from the request headers step parks the request (the body is read after the
/// access phase, which it never leaves); with Continue, the body comes in one body step.
#[test]
fn fact_1_a_paused_headers_step_parks_the_request_and_a_continued_one_gets_the_body_whole() {
    let mut host = kong();
    let mut probe = Probe { pause_headers: true, ..Probe::default() };
    host.request(&mut probe, &POST, &[&BODY[..10], &BODY[10..]]);
    assert!(host.violations.iter().any(|v| v.contains("fact 1")), "{:?}", host.violations);
    assert!(probe.body_calls.is_empty() && !host.upstream_headers_released, "nothing moves");

    let mut host = kong();
    let mut probe = probe_acting(|io| io.set_request_header("x-set-in-body", "yes").unwrap());
    host.request(&mut probe, &POST, &[&BODY[..10], &BODY[10..]]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    assert_eq!(probe.body_calls, [(BODY.len(), true)], "one call, the whole body, end of stream");
    assert_eq!(host.upstream_header("x-set-in-body"), Some("yes"), "header changes in the body step reach upstream");
    assert_eq!(host.upstream_body, BODY);
}

/// Fact 1, in the body step (read in source, not probed: ngx_http_proxy_wasm.c turns a Pause in
/// the content phase, where the body step runs, into the same yield): the request is parked too.
#[test]
fn fact_1_a_paused_body_step_parks_the_request_too() {
    let mut host = kong();
    let mut probe = Probe { pause_body: true, ..Probe::default() };
    host.request(&mut probe, &POST, &[BODY]);
    assert!(host.violations.iter().any(|v| v.contains("on_request_body")), "{:?}", host.violations);
    assert!(!host.upstream_headers_released && host.upstream_body.is_empty(), "nothing goes upstream");
}

/// Fact 2: an empty body never gets a body step.
#[test]
fn fact_2_an_empty_body_gets_no_body_step() {
    let mut host = kong();
    let mut probe = Probe::default();
    host.request(&mut probe, &POST, &[]);
    assert!(probe.body_calls.is_empty());
    assert!(host.upstream_headers_released && host.upstream_body.is_empty());
}

/// Fact 3: `set_buffer(start 0, size, data)` keeps at most `size` bytes of `data`.
#[test]
fn fact_3_a_body_replacement_keeps_at_most_size_bytes() {
    let longer = [BODY, b" and more"].concat();
    for (size, kept) in [(BODY.len(), BODY.len()), (longer.len(), longer.len())] {
        let mut host = kong();
        let data = longer.clone();
        let mut probe = probe_acting(move |io| io.set_request_body(size, &data).unwrap());
        host.request(&mut probe, &POST, &[BODY]);
        assert_eq!(host.upstream_body, longer[..kept], "size {size}");
    }
}

/// Fact 4: a removed request header still goes upstream with its value; an emptied one goes
/// with no value.
#[test]
fn fact_4_a_removed_header_still_goes_upstream_with_its_value() {
    let mut host = kong();
    let mut probe = probe_acting(|io| {
        io.remove_request_header("x-api-key").unwrap();
        io.set_request_header("authorization", "").unwrap();
    });
    let headers = [&POST[..], &[("x-api-key", "client-secret"), ("authorization", "Bearer client-token")]].concat();
    host.request(&mut probe, &headers, &[BODY]);
    assert_eq!(host.upstream_header("x-api-key"), Some("client-secret"), "removal does not remove");
    assert_eq!(host.upstream_header("authorization"), Some(""), "an emptied value is gone");
}

/// Fact 5: `:path` does not change the upstream path (Kong proxies to `$upstream_uri`), and a
/// path with a query traps; `$upstream_uri` set by the filter is the path that goes upstream.
#[test]
fn fact_5_the_upstream_path_follows_upstream_uri_not_the_path_header() {
    let mut host = kong();
    let mut probe = probe_acting(|io| io.set_request_header(":path", "/v1/messages").unwrap());
    host.request(&mut probe, &POST, &[BODY]);
    assert_eq!(host.upstream_header(":path"), Some("/v1/chat/completions"));

    let mut host = kong();
    let mut probe = probe_acting(|io| assert!(io.set_request_header(":path", "/v1/messages?beta=true").is_err()));
    host.request(&mut probe, &POST, &[BODY]);
    assert!(host.violations.iter().any(|v| v.contains("fact 5")), "{:?}", host.violations);

    let mut host = kong();
    let mut probe = probe_acting(|io| io.set_upstream_path("/v1/messages?beta=true").unwrap());
    host.request(&mut probe, &POST, &[BODY]);
    assert_eq!(host.upstream_header(":path"), Some("/v1/messages?beta=true"));
}

/// Fact 6: `kong.*` properties need Kong's Lua layer; without it the route's name is not found
/// (and the host layer counts it).
#[test]
fn fact_6_kong_properties_need_the_lua_layer() {
    for lua in [true, false] {
        let mut host = kong();
        host.kong = KongHost { lua, ..KongHost::default() };
        host.route_name = Some("team-a".into());
        assert_eq!(host.route_name(), lua.then(|| "team-a".to_string()));
        assert_eq!(host.counter(Counter::RouteNamesUnreadable), u64::from(!lua));
    }
}

/// Fact 7 (a failing `on_configure` kills the worker) is the host layer's: tests/misconfigured.rs.
/// Fact 8: a local reply from the headers step works; its body gains a newline.
#[test]
fn fact_8_a_local_reply_from_the_headers_step_gains_a_newline() {
    let mut host = kong();
    let mut probe = Probe {
        in_headers: true,
        act: Some(Box::new(|io: &mut dyn HostIo| io.send_reply(415, &[], b"{}").unwrap())),
        ..Probe::default()
    };
    host.request(&mut probe, &POST, &[BODY]);
    let reply = host.reply.clone().unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (415, &b"{}\n"[..]));
    assert!(!host.upstream_headers_released);
}

/// Fact 9: a body over `client_body_buffer_size` is spilled to a file the filter cannot read.
#[test]
fn fact_9_a_body_over_the_client_body_buffer_cannot_be_read() {
    for (buffer, readable) in [(BODY.len(), true), (BODY.len() - 1, false)] {
        let mut host = kong();
        host.kong.client_body_buffer_size = buffer;
        let mut probe = Probe::default();
        host.request(&mut probe, &POST, &[BODY]);
        assert_eq!(probe.read, Some(readable.then(|| BODY.to_vec())), "buffer {buffer}");
    }
}

/// Fact 10: response buffering holds at most `wasm_response_body_buffers`; a longer answer comes
/// in a call without end of stream, then unbuffered, then an empty end-of-stream call.
#[test]
fn fact_10_response_buffering_follows_wasm_response_body_buffers() {
    let answer = vec![b'x'; 60_000];
    let chunks: Vec<&[u8]> = answer.chunks(4_000).collect();
    // The probe, with 4 x 4 KiB: 3,938 bytes (paused), then 20,306 without end of stream, then
    // 8 KiB chunks, then an empty end-of-stream call.
    for (buffers, calls) in
        [(4 * 4096, vec![(4_000, false), (20_000, false)]), (8 << 20, vec![(4_000, false), (60_000, true)])]
    {
        let mut host = kong();
        host.kong.response_buffers = buffers;
        let mut probe = Probe { pause_first_response_body: true, ..Probe::default() };
        host.request(&mut probe, &POST, &[BODY]);
        host.response(&mut probe, &[(":status", "200")], &chunks);
        assert_eq!(probe.response_calls[..2], calls[..], "buffers {buffers}");
        if buffers < answer.len() {
            assert_eq!(probe.response_calls.last(), Some(&(0, true)), "an empty end-of-stream call ends it");
        }
        assert_eq!(host.client_body(), answer, "nothing lost either way");
    }
}

// ---- Part two: the filter on that host ----

fn policy(config: Value) -> Rc<Policy> {
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-openai-provider".to_string());
    Rc::new(config::compile_with_env(config.to_string().as_bytes(), &env).unwrap())
}

fn routed() -> Value {
    json!({
        "providers": {
            "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"env": "OPENAI_API_KEY"}},
            "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"value": "sk-ant-provider"}},
            "azure": {"dialect": "openai", "cluster": "azure", "path_prefix": "/openai/deployments/{model}",
                      "query": "api-version=2024-10-21", "auth": "api-key", "api_key": {"value": "azure-key"}}
        },
        "targets": {
            "mini": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"},
            "haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"},
            "azure-4o": {"provider": "azure", "model": "gpt4o-prod"}
        },
        "rules": [
            {"match": {"model": "m"}, "targets": ["mini"]},
            {"match": {"model": "claude"}, "targets": ["haiku"]},
            {"match": {"model": "azure"}, "targets": ["azure-4o"]}
        ]
    })
}

fn send(host: &mut FakeHost, policy: Rc<Policy>, path: &str, extra: &[(&str, &str)], body: &Value) -> Exchange {
    let mut ex = Exchange::new(1, policy);
    let body = body.to_string();
    let mut headers = vec![(":method", "POST"), (":path", path), ("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    host.request(&mut ex, &headers, &[body.as_bytes()]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    ex
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// The hang (fact 1): the filter never pauses Kong's headers step, and every POST goes on.
#[test]
fn no_post_hangs() {
    for body in [chat("gpt-4o-mini", false), chat("gpt-4o-mini", true), json!({"x": 1}), json!("")] {
        let mut host = kong();
        send(&mut host, policy(json!({})), "/v1/chat/completions", &[], &body);
        assert!(host.upstream_headers_released || host.reply.is_some(), "{body}");
    }
    // An empty POST gets no body step (fact 2): decided from the headers.
    let mut host = kong();
    let mut ex = Exchange::new(1, policy(json!({})));
    host.request(&mut ex, &[(":method", "POST"), (":path", "/v1/chat/completions")], &[]);
    assert!(host.violations.is_empty(), "{:?}", host.violations);
    assert_eq!(host.reply.clone().unwrap().json()["error"]["code"], "invalid_json");
}

/// The truncation (fact 3): every body that grows reaches its reader whole.
#[test]
fn bodies_that_grow_arrive_whole() {
    // `include_usage` inserted, and a model name longer than the one the client sent.
    let mut host = kong();
    send(&mut host, policy(routed()), "/v1/chat/completions", &[], &chat("m", true));
    let sent: Value = serde_json::from_slice(&host.upstream_body).expect("the whole body reached the upstream");
    assert_eq!(sent["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(sent["stream_options"]["include_usage"], true);

    // A placeholder restored to the longer value it stands for, in an answer and in a stream.
    let privacy = json!({"guardrails": {"policies": [{"name": "p", "checks": [
        {"name": "pii", "detectors": ["email"], "action": "mask_and_restore"}]}]}});
    let prompt =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "I am jane.doe@example.com"}]});
    let mut host = kong();
    let mut ex = send(&mut host, policy(privacy.clone()), "/v1/chat/completions", &[], &prompt);
    let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello [EMAIL_1]!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}});
    host.response(
        &mut ex,
        &[(":status", "200"), ("content-type", "application/json")],
        &[answer.to_string().as_bytes()],
    );
    let got: Value = serde_json::from_slice(&host.client_body()).expect("the whole answer reached the client");
    assert_eq!(got["choices"][0]["message"]["content"], "Hello jane.doe@example.com!");

    let mut streaming = prompt.clone();
    streaming["stream"] = json!(true);
    let mut host = kong();
    let mut ex = send(&mut host, policy(privacy), "/v1/chat/completions", &[], &streaming);
    let event = |text: &str| format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": text}}]}));
    let stream = [event("Hello [EMA"), event("IL_1]!"), "data: [DONE]\n\n".to_string()].concat();
    host.response(&mut ex, &[(":status", "200"), ("content-type", "text/event-stream")], &[stream.as_bytes()]);
    let text = String::from_utf8(host.client_stream()).unwrap();
    assert!(text.contains("jane.doe@example.com") && text.ends_with("data: [DONE]\n\n"), "{text}");
}

/// The header leak (fact 4): neither the client's credentials nor a spoofed `x-tollgate-*`
/// value reaches the provider, whatever case the client wrote them in.
#[test]
fn client_credentials_and_spoofed_headers_never_reach_the_provider() {
    let client =
        [("Authorization", "Bearer client-secret"), ("X-Api-Key", "client-secret"), ("X-Tollgate-Tenant", "spoofed")];
    for (model, provider_header, provider_key) in [
        ("m", "authorization", "Bearer sk-openai-provider"),
        ("claude", "x-api-key", "sk-ant-provider"),
        ("azure", "api-key", "azure-key"),
    ] {
        let mut host = kong();
        send(&mut host, policy(routed()), "/v1/chat/completions", &client, &chat(model, false));
        for (name, value) in &host.upstream_headers {
            assert!(!value.contains("client-secret") && !value.contains("spoofed"), "{model}: {name}: {value}");
        }
        assert_eq!(host.upstream_header(provider_header), Some(provider_key), "{model}");
        assert_eq!(
            host.kong_upstream.as_deref(),
            Some(if model == "m" {
                "openai"
            } else if model == "claude" {
                "anthropic"
            } else {
                "azure"
            })
        );
    }
}

/// The path (fact 5): a translated request and a provider's own path and query reach Kong's
/// upstream request through `$upstream_uri`; `:path` with a query would trap.
#[test]
fn the_translated_path_and_the_providers_query_reach_the_upstream() {
    for (path, model, upstream) in [
        ("/v1/chat/completions", "claude", "/v1/messages"),
        ("/v1/chat/completions", "azure", "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"),
        ("/v1/messages", "m", "/v1/chat/completions"),
    ] {
        let mut host = kong();
        let body = if path == "/v1/messages" {
            json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
        } else {
            chat(model, false)
        };
        send(&mut host, policy(routed()), path, &[], &body);
        assert_eq!(host.upstream_header(":path"), Some(upstream), "{path} {model}");
    }
}

/// Fact 9: a body nginx spilled to a file gets a 413 that names the host's limit, the setting
/// that raises it, never forwarded.
#[test]
fn a_body_kong_did_not_keep_gets_a_413_naming_the_hosts_setting() {
    let mut host = kong();
    host.kong.client_body_buffer_size = 64;
    send(&mut host, policy(json!({})), "/v1/chat/completions", &[], &chat("gpt-4o-mini", false));
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 413);
    let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("nginx_http_client_body_buffer_size"), "{message}");
    assert!(host.upstream_body.is_empty());
}

/// Fact 10: an answer larger than Kong's response buffers cannot be changed; one that had to be
/// (a placeholder to restore) fails as the route says, counted: closed, an error in its place;
/// open, as the provider sent it.
#[test]
fn an_answer_over_kongs_response_buffers_fails_visibly_when_it_had_to_change() {
    let prompt =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "I am jane.doe@example.com"}]});
    let long = "word ".repeat(8_000);
    let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("[EMAIL_1] {long}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    .to_string();
    let chunks: Vec<&[u8]> = answer.as_bytes().chunks(4_000).collect();
    for mode in ["closed", "open"] {
        let config = json!({"failure_mode": mode, "guardrails": {"policies": [{"name": "p", "checks": [
            {"name": "pii", "detectors": ["email"], "action": "mask_and_restore"}]}]}});
        let mut host = kong();
        let mut ex = send(&mut host, policy(config), "/v1/chat/completions", &[], &prompt);
        host.response(&mut ex, &[(":status", "200"), ("content-type", "application/json")], &chunks);
        assert!(host.violations.is_empty(), "{:?}", host.violations);
        assert_eq!(host.counter(Counter::ResponsesNotInspected), 1, "{mode}");
        let body = host.client_body();
        if mode == "closed" {
            let error: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(error["error"]["code"], "gateway_error");
        } else {
            assert_eq!(body, answer.as_bytes(), "as the provider sent it");
        }
    }
    // With the buffers kong/kong.conf sets (8 x 1 MiB) the same answer is restored.
    let config = json!({"guardrails": {"policies": [{"name": "p", "checks": [
        {"name": "pii", "detectors": ["email"], "action": "mask_and_restore"}]}]}});
    let mut host = kong();
    host.kong.response_buffers = 8 << 20;
    let mut ex = send(&mut host, policy(config), "/v1/chat/completions", &[], &prompt);
    host.response(&mut ex, &[(":status", "200"), ("content-type", "application/json")], &chunks);
    let got: Value = serde_json::from_slice(&host.client_body()).unwrap();
    assert!(got["choices"][0]["message"]["content"].as_str().unwrap().starts_with("jane.doe@example.com "));
}

/// Fact 11: streams pass event by event, never held; the usage chunk Tollgate asked for is
/// removed and the cost line ends the stream.
#[test]
fn streams_pass_chunk_by_chunk() {
    let mut host = kong();
    let mut ex = send(&mut host, policy(json!({})), "/v1/chat/completions", &[], &chat("gpt-4o-mini", true));
    let events = [
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n",
    ];
    let chunks: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
    host.response(&mut ex, &[(":status", "200"), ("content-type", "text/event-stream")], &chunks);
    assert_eq!(host.client_body_releases[0], events[0].as_bytes(), "the first event left at once");
    assert_eq!(host.client_stream(), [events[0], events[1], events[3]].concat().as_bytes());
    assert!(String::from_utf8(host.client_body()).unwrap().contains(": tollgate {"));
}
