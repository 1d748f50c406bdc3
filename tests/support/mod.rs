//! A fake proxy that drives `Exchange` through whole requests the way Envoy or Kong would, and
//! records what a client and an upstream would have seen. State-based: tests inspect the
//! outcome, not the order of hostcalls.
//!
//! Host facts modelled (see ../shared/research/kong.md and the Envoy e2e tests):
//! - Envoy: while the filter pauses a body, the host keeps buffering and reports the cumulative
//!   size; after `Continue` it reports per-chunk sizes. Headers held with `Pause` are released
//!   (with any changes) when a later callback continues. Headers already sent cannot change.
//! - Kong (ngx_wasm_module at the commit Kong 3.9 ships), fact by fact as a Kong-equivalent host
//!   showed them (../shared/research/kong-host-probe.md, "fact N"; tests/kong_host.rs holds one
//!   test per fact): `eof` is always false in header callbacks; a `Pause` from the request
//!   headers parks the request for good (1), and so does one from the body step (the same
//!   yield in the content phase, read in source); an empty body never gets a body step (2), any other
//!   comes in one call, and a body over `client_body_buffer_size` cannot be read (9); a body
//!   replacement keeps at most `size` bytes (3); a removed request header still goes upstream
//!   with its value (4); `:path` does not change the upstream path, which follows
//!   `$upstream_uri`, and a path with a query traps (5); `kong.*` properties need Kong's Lua
//!   layer, which can be switched off (6); local replies gain a trailing newline (8); a response
//!   body `Pause` buffers once, up to `wasm_response_body_buffers` (10); `Pause` from response
//!   headers is an error; a final 0-byte `eof` call ends every response; header writes during
//!   the response body trap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly
#![allow(dead_code)] // each test crate uses its own part of the fake host

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use tollgate::budgets::redis::{Call, Settlement};
use tollgate::config::{self, Policy};
use tollgate::exchange::Exchange;
use tollgate::host_io::{Flow, HostError, HostIo, HostKind, SharedSetError};
use tollgate::metrics::Kind;
use tollgate::names::Counter;

/// What the fake proxy drives: an `Exchange`, or in tests/kong_host.rs a probe filter that
/// shows one fact of the host.
pub trait Stream {
    fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow;
    fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow;
    fn on_request_trailers(&mut self, _io: &mut dyn HostIo) -> Flow {
        Flow::Continue
    }
    fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow;
    fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow;
    fn on_done(&mut self, _io: &mut dyn HostIo) {}
    fn on_call_answer(&mut self, _io: &mut dyn HostIo, _token: u32, _status: Option<u16>, _body: &[u8]) {}
}

impl Stream for Exchange {
    fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        Exchange::on_request_headers(self, io, end_of_stream)
    }
    fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        Exchange::on_request_body(self, io, body_size, end_of_stream)
    }
    fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        Exchange::on_request_trailers(self, io)
    }
    fn on_call_answer(&mut self, io: &mut dyn HostIo, token: u32, status: Option<u16>, body: &[u8]) {
        Exchange::on_call_answer(self, io, token, status, body)
    }
    fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        Exchange::on_response_headers(self, io, end_of_stream)
    }
    fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        Exchange::on_response_body(self, io, body_size, end_of_stream)
    }
    fn on_done(&mut self, io: &mut dyn HostIo) {
        Exchange::on_done(self, io)
    }
}

impl Stream for tollgate::filter::Filter {
    fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        tollgate::filter::Filter::on_request_headers(self, io, end_of_stream)
    }
    fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        tollgate::filter::Filter::on_request_body(self, io, body_size, end_of_stream)
    }
    fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        tollgate::filter::Filter::on_request_trailers(self, io)
    }
    fn on_call_answer(&mut self, io: &mut dyn HostIo, token: u32, status: Option<u16>, body: &[u8]) {
        tollgate::filter::Filter::on_call_answer(self, io, token, status, body)
    }
    fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        tollgate::filter::Filter::on_response_headers(self, io, end_of_stream)
    }
    fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        tollgate::filter::Filter::on_response_body(self, io, body_size, end_of_stream)
    }
    fn on_done(&mut self, io: &mut dyn HostIo) {
        tollgate::filter::Filter::on_done(self, io)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Envoy,
    /// Envoy, ending each body with a separate empty end-of-stream call (HTTP/2 style).
    EnvoyEmptyEnd,
    Kong,
}

impl Profile {
    pub fn is_kong(self) -> bool {
        self == Profile::Kong
    }
}

/// The hosts every flow test runs on. A test whose subject is how Envoy hands over a body
/// (chunks, cumulative sizes, the separate empty end-of-stream call of HTTP/2) uses `ALL_HOSTS`.
pub const HOSTS: [Profile; 2] = [Profile::Envoy, Profile::Kong];
pub const ALL_HOSTS: [Profile; 3] = [Profile::Envoy, Profile::EnvoyEmptyEnd, Profile::Kong];

/// Every case on every host of `HOSTS`: one loop instead of two.
pub fn each_host<T: Clone>(cases: impl IntoIterator<Item = T>) -> Vec<(Profile, T)> {
    let cases: Vec<T> = cases.into_iter().collect();
    HOSTS.iter().flat_map(|&host| cases.iter().cloned().map(move |case| (host, case))).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("local reply is JSON")
    }
}

/// The settings of Kong's host the filter depends on, and whether its Lua layer is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KongHost {
    /// nginx's `client_body_buffer_size`: a longer body is written to a file the filter cannot
    /// read (fact 9). `kong/kong.conf` sets 4 MiB.
    pub client_body_buffer_size: usize,
    /// `wasm_response_body_buffers`, number × size in bytes (fact 10). Default 4 × 4 KiB.
    pub response_buffers: usize,
    /// Kong's Lua layer answers `kong.route_name`, `kong.version`, `kong.service.upstream` (fact 6).
    pub lua: bool,
}

impl Default for KongHost {
    fn default() -> Self {
        KongHost { client_body_buffer_size: 4 << 20, response_buffers: 4 * 4096, lua: true }
    }
}

/// Shared data: key → (value, compare-and-swap token).
pub type SharedMap = Rc<RefCell<HashMap<String, (Vec<u8>, u32)>>>;

pub struct FakeHost {
    pub profile: Profile,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    request_buffer: Vec<u8>,
    response_buffer: Vec<u8>,
    response_headers_sent: bool,
    in_response_body: bool,
    pub reply: Option<LocalReply>,
    pub counters: HashMap<Counter, u64>,
    /// Things the real host would refuse, trap on, or hang at.
    pub violations: Vec<String>,
    /// Request body sizes and end-of-stream flags, as the filter was shown them.
    pub request_body_calls: Vec<(usize, bool)>,
    /// What reached the upstream.
    pub upstream_headers_released: bool,
    pub upstream_body: Vec<u8>,
    /// What reached the client, and how the body arrived (one entry per release).
    pub client_headers: Option<Vec<(String, String)>>,
    pub client_body_releases: Vec<Vec<u8>>,
    /// Request headers as they left for the upstream.
    pub upstream_headers: Vec<(String, String)>,
    /// Values handed to the proxy's logging (filter state / kong.ctx.shared).
    pub exports: HashMap<String, String>,
    /// The proxy clock, in nanoseconds; tests move it with `advance_ms`.
    pub clock: u64,
    /// The route the proxy matched, as the filter would read it.
    pub route_name: Option<String>,
    /// Kong: the upstream the filter chose.
    pub kong_upstream: Option<String>,
    /// Envoy: the provider named in the metadata of the endpoint the attempt went to.
    pub upstream_provider: Option<String>,
    /// Dynamic metadata by path joined with `/` (namespace first), as other filters wrote it
    /// (Envoy hands a number or boolean over in binary).
    pub metadata: HashMap<String, Vec<u8>>,
    /// Request headers the filter reads as other bytes than the text the test sent: values that
    /// are not UTF-8 (HTTP allows them), or `None` for a header the proxy refuses to read (Kong
    /// reads each pseudo-header with its own hostcall).
    pub raw_request_headers: Vec<(String, Option<Vec<u8>>)>,
    /// Labelled metrics: counters summed, histogram samples summed too.
    pub metrics: HashMap<String, u64>,
    /// Response trailers the filter added.
    pub trailers: Vec<(String, String)>,
    /// Response body calls (0-based, counted by what reached the client so far) whose chunk this
    /// host cannot hand over: `get_buffer_bytes` fails for them.
    pub unreadable_response_chunks: Vec<usize>,
    /// Response body calls (counted the same way) whose chunk this host refuses to replace.
    pub unwritable_response_chunks: Vec<usize>,
    /// Hostcalls this host refuses, to test `failure_mode`: `request_body`,
    /// `replace_request_body`, `send_reply`, `replace_response_body`, `request_header_names`,
    /// `export` (a value the request cannot do without), `response_body`.
    pub refuse: Vec<&'static str>,
    /// Every `HostIo` call the filter made, by kind (examples/per_request.rs reports them).
    pub hostcalls: Hostcalls,
    /// Kong: its settings and Lua layer.
    pub kong: KongHost,
    /// The proxy's shared data (every worker's): share one `Rc` between hosts to model workers.
    pub shared: SharedMap,
    /// Calls the filter dispatched (token, call), the times it resumed a waiting request, and
    /// the settlements it handed to the root context.
    pub calls: Vec<(u32, Call)>,
    answered: usize,
    pub resumed: u32,
    /// The request waits (paused) for a call's answer.
    pub waiting: bool,
    pub settlements: Vec<Settlement>,
    /// Kong: headers the filter removed. nginx still sends them upstream with their values
    /// (fact 4); the filter no longer reads them.
    kong_removed: Vec<(String, String)>,
    /// Kong: the client's path, and `$upstream_uri` as the filter set it (fact 5).
    kong_path: Option<String>,
    pub kong_upstream_uri: Option<String>,
}

/// The kinds of `HostIo` call, each with the proxy-wasm hostcall it becomes on Envoy
/// (src/host/proxy_io.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostcall {
    HostKind,
    NowNanos,
    RequestHeader,
    SetRequestHeader,
    RemoveRequestHeader,
    RequestHeaderNames,
    /// The first read of the request's headers (any of the three above).
    RequestHeaderMap,
    RouteName,
    RouteTo,
    UpstreamProvider,
    MetadataValue,
    ReadState,
    ResponseHeader,
    /// The first read of the response's headers.
    ResponseHeaderMap,
    SetResponseHeader,
    RemoveResponseHeader,
    AddResponseTrailer,
    RequestBody,
    ReplaceRequestBody,
    ResponseBody,
    ReplaceResponseBody,
    SendReply,
    Increment,
    EmitCounter,
    EmitGauge,
    EmitHistogram,
    Export,
    SharedData,
    Dispatch,
}

impl Hostcall {
    pub const ALL: [Hostcall; 29] = [
        Hostcall::HostKind,
        Hostcall::NowNanos,
        Hostcall::RequestHeaderMap,
        Hostcall::RequestHeader,
        Hostcall::SetRequestHeader,
        Hostcall::RemoveRequestHeader,
        Hostcall::RequestHeaderNames,
        Hostcall::RouteName,
        Hostcall::RouteTo,
        Hostcall::UpstreamProvider,
        Hostcall::MetadataValue,
        Hostcall::ReadState,
        Hostcall::ResponseHeaderMap,
        Hostcall::ResponseHeader,
        Hostcall::SetResponseHeader,
        Hostcall::RemoveResponseHeader,
        Hostcall::AddResponseTrailer,
        Hostcall::RequestBody,
        Hostcall::ReplaceRequestBody,
        Hostcall::ResponseBody,
        Hostcall::ReplaceResponseBody,
        Hostcall::SendReply,
        Hostcall::Increment,
        Hostcall::EmitCounter,
        Hostcall::EmitGauge,
        Hostcall::EmitHistogram,
        Hostcall::Export,
        Hostcall::SharedData,
        Hostcall::Dispatch,
    ];

    /// The `HostIo` method.
    pub fn name(self) -> &'static str {
        match self {
            Hostcall::HostKind => "host_kind",
            Hostcall::NowNanos => "now_nanos",
            Hostcall::RequestHeader => "request_header",
            Hostcall::SetRequestHeader => "set_request_header",
            Hostcall::RemoveRequestHeader => "remove_request_header",
            Hostcall::RequestHeaderNames => "request_header_names",
            Hostcall::RequestHeaderMap => "(request headers, first read)",
            Hostcall::ResponseHeaderMap => "(response headers, first read)",
            Hostcall::RouteName => "route_name",
            Hostcall::RouteTo => "route_to",
            Hostcall::UpstreamProvider => "upstream_provider",
            Hostcall::MetadataValue => "metadata_value",
            Hostcall::ReadState => "read_state",
            Hostcall::ResponseHeader => "response_header",
            Hostcall::SetResponseHeader => "set_response_header",
            Hostcall::RemoveResponseHeader => "remove_response_header",
            Hostcall::AddResponseTrailer => "add_response_trailer",
            Hostcall::RequestBody => "request_body",
            Hostcall::ReplaceRequestBody => "replace_request_body",
            Hostcall::ResponseBody => "response_body",
            Hostcall::ReplaceResponseBody => "replace_response_body",
            Hostcall::SendReply => "send_reply",
            Hostcall::Increment => "increment",
            Hostcall::EmitCounter => "emit (counter)",
            Hostcall::EmitGauge => "emit (gauge)",
            Hostcall::EmitHistogram => "emit (histogram)",
            Hostcall::Export => "export",
            Hostcall::SharedData => "shared_get / shared_set",
            Hostcall::Dispatch => "dispatch / resume_request",
        }
    }

    /// What Envoy sees (src/host/proxy_io.rs). Metric ids are defined once per VM and cached,
    /// as is the host kind, so those cost no hostcall per request; each header map is read
    /// once, whole, and header reads are answered from that copy.
    pub fn on_envoy(self) -> &'static str {
        match self {
            Hostcall::HostKind => "none (cached per VM)",
            Hostcall::RequestHeader | Hostcall::ResponseHeader | Hostcall::RequestHeaderNames => {
                "none (from the map read once)"
            }
            Hostcall::RequestHeaderMap | Hostcall::ResponseHeaderMap => "proxy_get_header_map_pairs",
            Hostcall::NowNanos => "proxy_get_current_time_nanoseconds",
            Hostcall::SetRequestHeader | Hostcall::SetResponseHeader | Hostcall::RouteTo => {
                "proxy_replace_header_map_value"
            }
            Hostcall::RemoveRequestHeader | Hostcall::RemoveResponseHeader => "proxy_remove_header_map_value",
            Hostcall::RouteName | Hostcall::UpstreamProvider | Hostcall::MetadataValue | Hostcall::ReadState => {
                "proxy_get_property"
            }
            Hostcall::AddResponseTrailer => "proxy_add_header_map_value",
            Hostcall::RequestBody | Hostcall::ResponseBody => "proxy_get_buffer_bytes",
            Hostcall::ReplaceRequestBody | Hostcall::ReplaceResponseBody => "proxy_set_buffer_bytes",
            Hostcall::SendReply => "proxy_send_local_response",
            Hostcall::Increment | Hostcall::EmitCounter => "proxy_increment_metric",
            Hostcall::EmitHistogram | Hostcall::EmitGauge => "proxy_record_metric",
            Hostcall::Export => "proxy_set_property",
            Hostcall::SharedData => "proxy_get_shared_data / proxy_set_shared_data",
            Hostcall::Dispatch => "proxy_http_call / proxy_continue_stream",
        }
    }
}

/// A counter per `Hostcall` kind: `Cell`s, since some `HostIo` methods take `&self`.
#[derive(Debug, Default)]
pub struct Hostcalls([Cell<u64>; Hostcall::ALL.len()]);

impl Hostcalls {
    fn note(&self, call: Hostcall) {
        let cell = &self.0[call as usize];
        cell.set(cell.get() + 1);
    }

    pub fn count(&self, call: Hostcall) -> u64 {
        self.0[call as usize].get()
    }

    /// The kinds called at least once, with their counts, in `Hostcall::ALL` order.
    pub fn made(&self) -> Vec<(Hostcall, u64)> {
        Hostcall::ALL.iter().map(|&c| (c, self.count(c))).filter(|&(_, n)| n > 0).collect()
    }

    /// Calls that are hostcalls on Envoy.
    pub fn total(&self) -> u64 {
        Hostcall::ALL.iter().filter(|c| !c.on_envoy().starts_with("none")).map(|&c| self.count(c)).sum()
    }

    /// A header read: the first of each map reads the whole map.
    fn note_header_read(&self, call: Hostcall, map: Hostcall) {
        self.note(call);
        if self.count(map) == 0 {
            self.note(map);
        }
    }
}

pub fn policy(config_json: &str) -> Rc<Policy> {
    Rc::new(config::compile(config_json.as_bytes()).expect("test config is valid"))
}

impl FakeHost {
    pub fn new(profile: Profile) -> Self {
        FakeHost {
            profile,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            request_buffer: Vec::new(),
            response_buffer: Vec::new(),
            response_headers_sent: false,
            in_response_body: false,
            reply: None,
            counters: HashMap::new(),
            violations: Vec::new(),
            request_body_calls: Vec::new(),
            upstream_headers_released: false,
            upstream_body: Vec::new(),
            client_headers: None,
            client_body_releases: Vec::new(),
            upstream_headers: Vec::new(),
            exports: HashMap::new(),
            clock: 1_000_000_000,
            route_name: None,
            kong_upstream: None,
            upstream_provider: None,
            metadata: HashMap::new(),
            raw_request_headers: Vec::new(),
            metrics: HashMap::new(),
            trailers: Vec::new(),
            refuse: Vec::new(),
            unreadable_response_chunks: Vec::new(),
            unwritable_response_chunks: Vec::new(),
            hostcalls: Hostcalls::default(),
            kong: KongHost::default(),
            shared: Rc::default(),
            calls: Vec::new(),
            answered: 0,
            resumed: 0,
            waiting: false,
            settlements: Vec::new(),
            kong_removed: Vec::new(),
            kong_path: None,
            kong_upstream_uri: None,
        }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.clock += ms * 1_000_000;
    }

    /// The exported usage record, parsed.
    pub fn record(&self) -> serde_json::Value {
        let json = self.exports.get("tollgate.usage").expect("a usage record was exported");
        serde_json::from_str(json).expect("the record is JSON")
    }

    /// Drives callbacks by hand (for the upstream position): the headers the proxy holds.
    pub fn set_request_headers(&mut self, headers: &[(&str, &str)]) {
        self.request_headers = owned(headers);
    }

    pub fn set_request_buffer(&mut self, body: &[u8]) {
        self.request_buffer = body.to_vec();
    }

    pub fn request_buffer(&self) -> &[u8] {
        &self.request_buffer
    }

    /// Drives response callbacks by hand (for the upstream position).
    pub fn set_response_headers(&mut self, headers: &[(&str, &str)]) {
        self.response_headers = owned(headers);
    }

    pub fn set_response_buffer(&mut self, body: &[u8]) {
        self.response_buffer = body.to_vec();
    }

    pub fn response_buffer(&self) -> &[u8] {
        &self.response_buffer
    }

    pub fn request_header_value(&self, name: &str) -> Option<String> {
        find(&self.request_headers, name)
    }

    pub fn request_headers_snapshot(&self) -> Vec<(String, String)> {
        self.request_headers.clone()
    }

    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value sent upstream under `name`: on Kong a removed header still goes (fact 4), so
    /// a name can go twice.
    pub fn upstream_values(&self, name: &str) -> Vec<&str> {
        self.upstream_headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// A request header the filter keeps from the upstream (a client's credential, a client-sent
    /// `x-tollgate-*`, the client's API's headers toward the other dialect) carries no value
    /// there. Envoy removes it. Kong's host sends removed headers on (fact 4), so the filter
    /// empties them (README, Kong: "the upstream may see the header's name, never what the
    /// client put in it").
    pub fn assert_withheld(&self, name: &str) {
        let values = self.upstream_values(name);
        match self.profile {
            Profile::Kong => assert!(values.iter().all(|v| v.is_empty()), "{name} went upstream as {values:?}"),
            Profile::Envoy | Profile::EnvoyEmptyEnd => assert!(values.is_empty(), "{name} went upstream as {values:?}"),
        }
    }

    /// `assert_withheld` for every header whose name starts with `prefix`, in any case.
    pub fn assert_withheld_prefix(&self, prefix: &str) {
        for (name, _) in &self.upstream_headers {
            if name.to_ascii_lowercase().starts_with(prefix) {
                self.assert_withheld(name);
            }
        }
    }

    /// The cluster the filter chose. Envoy: the `x-tollgate-cluster` header the route's
    /// `cluster_header` reads. Kong: `kong.service.upstream` (README, Kong: "Tollgate sets
    /// `kong.service.upstream` to the provider's `cluster`"), and no such header goes upstream.
    pub fn upstream_cluster(&self) -> Option<&str> {
        match self.profile {
            Profile::Kong => {
                self.assert_withheld("x-tollgate-cluster");
                self.kong_upstream.as_deref()
            }
            Profile::Envoy | Profile::EnvoyEmptyEnd => self.upstream_header("x-tollgate-cluster"),
        }
    }

    /// A response header Tollgate adds from the answer (model, tokens, cost, provider, price
    /// table): `expected` on Envoy; never on Kong, whose response headers leave before the body
    /// is read (README, Kong: "the cost headers are not added on Kong"; the usage record is).
    pub fn assert_cost_header(&self, name: &str, expected: Option<&str>) {
        let expected = if self.profile.is_kong() { None } else { expected };
        assert_eq!(self.client_header(name), expected, "{name} on {:?}", self.profile);
    }

    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters.get(&counter).copied().unwrap_or(0)
    }

    pub fn client_header(&self, name: &str) -> Option<&str> {
        let headers = self.client_headers.as_ref()?;
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn client_body(&self) -> Vec<u8> {
        self.client_body_releases.concat()
    }

    /// A streamed body without the cost comment line Tollgate appends at its end.
    pub fn client_stream(&self) -> Vec<u8> {
        let body = self.client_body();
        let marker = b": tollgate {";
        match body.windows(marker.len()).rposition(|w| w == marker) {
            Some(at) if body.ends_with(b"}\n") => body[..at].to_vec(),
            _ => body,
        }
    }

    /// `set_request_header` and Envoy's `route_to`, which is one hostcall, not two.
    fn put_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self.upstream_headers_released {
            self.violations.push(format!("request header {name} set after the headers went upstream"));
            return Err(HostError { detail: "headers already sent".into() });
        }
        self.request_headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.request_headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn kong(&self) -> bool {
        self.profile == Profile::Kong
    }

    /// Kong's request: the headers step (in the access phase, as Kong attaches filters), then,
    /// for a body that is not empty, one body step with all of it; what goes upstream is built
    /// after that (headers, path and body as the filter left them).
    fn kong_request(&mut self, ex: &mut dyn Stream, chunks: &[&[u8]]) {
        self.kong_path = find(&self.request_headers, ":path");
        let length: usize = chunks.iter().map(|c| c.len()).sum();
        if length > 0
            && find(&self.request_headers, "content-length").is_none()
            && find(&self.request_headers, "transfer-encoding").is_none()
        {
            // A body always comes framed: the client's HTTP stack said how (tests often leave
            // the header out; Envoy does not need it).
            self.request_headers.push(("content-length".into(), length.to_string()));
        }
        let flow = ex.on_request_headers(self, false);
        if self.reply.is_some() {
            return self.answer_with_local_reply(ex);
        }
        if flow == Flow::Pause {
            // Fact 1: the body is read after the access phase, which a paused headers step
            // never leaves: the request hangs, and hung requests exhaust the worker.
            self.violations.push("kong: Pause from on_request_headers parks the request forever (fact 1)".into());
            return;
        }
        let body = chunks.concat();
        if !body.is_empty() {
            // Fact 2: no body step for an empty body; any other arrives whole, with eof.
            self.request_buffer = body;
            let size = self.request_buffer.len();
            self.request_body_calls.push((size, true));
            let flow = ex.on_request_body(self, size, true);
            if self.reply.is_some() {
                return self.answer_with_local_reply(ex);
            }
            if flow == Flow::Pause {
                // The body step runs in the content phase, where a Pause yields the request
                // (NGX_AGAIN) until a dispatch resumes it, as in the headers step (fact 1; read in
                // ngx_http_proxy_wasm.c): nothing goes upstream, and nothing ends the request,
                // unless a call is out: its answer resumes it (`answer_call`).
                if self.unanswered() == 0 {
                    self.violations.push("kong: Pause from on_request_body parks the request forever (fact 1)".into());
                }
                self.waiting = true;
                return;
            }
        }
        self.release_upstream_headers();
        self.upstream_body.append(&mut self.request_buffer);
    }

    /// Sends a request through the filter: headers, then the body in `chunks`. Envoy lowercases
    /// header names; Kong (nginx) keeps the client's case.
    pub fn request(&mut self, ex: &mut dyn Stream, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.request_headers = if self.kong() { as_sent(headers) } else { owned(headers) };
        if self.kong() {
            return self.kong_request(ex, chunks);
        }
        let headers_end = chunks.is_empty();
        let flow = ex.on_request_headers(self, headers_end);
        if self.reply.is_some() {
            return self.answer_with_local_reply(ex);
        }
        if flow == Flow::Continue {
            self.release_upstream_headers();
        }
        if chunks.is_empty() {
            return;
        }
        match self.profile {
            Profile::Kong => {}
            Profile::Envoy | Profile::EnvoyEmptyEnd => {
                let empty_end = self.profile == Profile::EnvoyEmptyEnd;
                let mut paused = false;
                for (i, chunk) in chunks.iter().enumerate() {
                    if !paused {
                        self.request_buffer.clear();
                    }
                    self.request_buffer.extend_from_slice(chunk);
                    let end = i + 1 == chunks.len() && !empty_end;
                    paused = self.request_body_call(ex, end) == Flow::Pause;
                    if self.reply.is_some() {
                        return self.answer_with_local_reply(ex);
                    }
                }
                if empty_end {
                    if !paused {
                        self.request_buffer.clear();
                    }
                    paused = self.request_body_call(ex, true) == Flow::Pause;
                }
                if paused && self.reply.is_none() {
                    if self.unanswered() == 0 {
                        self.violations.push("request still paused after end of stream: it would hang".into());
                    }
                    self.waiting = true;
                    return;
                }
            }
        }
        if self.reply.is_some() {
            self.answer_with_local_reply(ex);
        }
    }

    /// Calls dispatched and not answered yet.
    pub fn unanswered(&self) -> usize {
        self.calls.len() - self.answered
    }

    /// The answer to call `token` reaches the filter (from the host's event loop), as webdis
    /// sends it: a 200's body wrapped in the call's JSONP name (`?jsonp=` in its path). A request
    /// that waited for it goes upstream once the filter resumes it, or gets the local reply the
    /// filter sent.
    pub fn answer_call(&mut self, ex: &mut dyn Stream, token: u32, status: Option<u16>, body: &[u8]) {
        let named = match (status, self.calls.iter().find(|(t, _)| *t == token)) {
            (Some(200), Some((_, call))) => [call.callback.as_bytes(), b"(", body, b");\n"].concat(),
            _ => body.to_vec(),
        };
        self.answer_call_raw(ex, token, status, &named);
    }

    /// [`FakeHost::answer_call`] with the body exactly as given.
    pub fn answer_call_raw(&mut self, ex: &mut dyn Stream, token: u32, status: Option<u16>, body: &[u8]) {
        self.answered += 1;
        let resumed = self.resumed;
        ex.on_call_answer(self, token, status, body);
        if self.reply.is_some() {
            self.waiting = false;
            return self.answer_with_local_reply(ex);
        }
        if self.waiting && self.resumed > resumed {
            self.waiting = false;
            self.release_upstream_headers();
            self.upstream_body.append(&mut self.request_buffer);
        }
    }

    fn request_body_call(&mut self, ex: &mut dyn Stream, end: bool) -> Flow {
        let size = self.request_buffer.len();
        self.request_body_calls.push((size, end));
        let flow = ex.on_request_body(self, size, end);
        if flow == Flow::Continue && self.reply.is_none() {
            self.release_upstream_headers();
            self.upstream_body.append(&mut self.request_buffer);
        }
        flow
    }

    fn release_upstream_headers(&mut self) {
        if !self.upstream_headers_released {
            self.upstream_headers_released = true;
            self.upstream_headers = self.request_headers.clone();
            if self.kong() {
                // Fact 4: nginx sends removed headers too. Fact 5: Kong proxies to
                // `$upstream_uri`, the client's path unless the filter set it.
                self.upstream_headers.extend(self.kong_removed.iter().cloned());
                let path = self.kong_upstream_uri.clone().or_else(|| self.kong_path.clone());
                self.upstream_headers.retain(|(n, _)| n != ":path");
                self.upstream_headers.extend(path.map(|p| (":path".to_string(), p)));
            }
        }
    }

    /// Request trailers after the body chunks (HTTP/2): no body call carries end of stream.
    pub fn request_with_trailers(&mut self, ex: &mut dyn Stream, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.request_headers = owned(headers);
        if ex.on_request_headers(self, false) == Flow::Continue {
            self.release_upstream_headers();
        }
        let mut paused = false;
        for chunk in chunks {
            if !paused {
                self.request_buffer.clear();
            }
            self.request_buffer.extend_from_slice(chunk);
            paused = self.request_body_call(ex, false) == Flow::Pause;
        }
        if ex.on_request_trailers(self) == Flow::Continue && self.reply.is_none() {
            self.release_upstream_headers();
            self.upstream_body.append(&mut self.request_buffer);
        } else if self.reply.is_none() {
            self.violations.push("request still paused after trailers: it would hang".into());
        }
        if self.reply.is_some() {
            self.answer_with_local_reply(ex);
        }
    }

    /// The host runs the response callbacks for the filter's own local reply too.
    fn answer_with_local_reply(&mut self, ex: &mut dyn Stream) {
        let Some(reply) = self.reply.clone() else {
            return;
        };
        let status = reply.status.to_string();
        let mut headers = vec![(":status", status.as_str())];
        headers.extend(reply.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.deliver_response(ex, &headers, &[&reply.body]);
    }

    /// Sends the upstream's response through the filter, then ends the stream (`on_log`).
    pub fn response(&mut self, ex: &mut dyn Stream, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.deliver_response(ex, headers, chunks);
        ex.on_done(self);
    }

    /// The upstream sends `chunks` and then the connection drops: no end of stream, only `on_log`.
    pub fn response_cut(&mut self, ex: &mut dyn Stream, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.response_headers = owned(headers);
        if ex.on_response_headers(self, false) == Flow::Continue {
            self.send_response_headers();
        }
        self.in_response_body = true;
        for chunk in chunks {
            self.response_buffer = chunk.to_vec();
            let size = self.response_buffer.len();
            ex.on_response_body(self, size, false);
            let released = std::mem::take(&mut self.response_buffer);
            self.client_body_releases.push(released);
        }
        self.in_response_body = false;
        ex.on_done(self);
    }

    fn deliver_response(&mut self, ex: &mut dyn Stream, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.response_headers = owned(headers);
        let headers_end = chunks.is_empty() && !self.kong();
        let flow = ex.on_response_headers(self, headers_end);
        if flow == Flow::Pause && self.kong() {
            self.violations.push("kong: bad on_response_headers return action PAUSE".into());
        }
        if flow == Flow::Continue || self.kong() {
            self.send_response_headers();
        }
        if chunks.is_empty() && !self.kong() {
            if !self.response_headers_sent {
                self.violations.push("response headers still held after end of stream: it would hang".into());
            }
            return;
        }
        self.in_response_body = true;
        match self.profile {
            Profile::Kong => self.kong_response_body(ex, chunks),
            Profile::Envoy | Profile::EnvoyEmptyEnd => self.envoy_response_body(ex, chunks),
        }
        self.in_response_body = false;
    }

    fn envoy_response_body(&mut self, ex: &mut dyn Stream, chunks: &[&[u8]]) {
        let empty_end = self.profile == Profile::EnvoyEmptyEnd;
        let mut paused = false;
        for (i, chunk) in chunks.iter().enumerate() {
            if !paused {
                self.response_buffer.clear();
            }
            self.response_buffer.extend_from_slice(chunk);
            let end = i + 1 == chunks.len() && !empty_end;
            paused = self.response_body_call(ex, end) == Flow::Pause;
        }
        if empty_end {
            if !paused {
                self.response_buffer.clear();
            }
            paused = self.response_body_call(ex, true) == Flow::Pause;
        }
        if paused {
            self.violations.push("response still paused after end of stream: it would hang".into());
        }
    }

    fn response_body_call(&mut self, ex: &mut dyn Stream, end: bool) -> Flow {
        let size = self.response_buffer.len();
        let flow = ex.on_response_body(self, size, end);
        if flow == Flow::Continue {
            self.send_response_headers();
            let released = std::mem::take(&mut self.response_buffer);
            self.client_body_releases.push(released);
        }
        flow
    }

    fn kong_response_body(&mut self, ex: &mut dyn Stream, chunks: &[&[u8]]) {
        let mut buffering = false;
        let mut buffered_once = false;
        for chunk in chunks {
            if buffering {
                self.response_buffer.extend_from_slice(chunk);
                if self.response_buffer.len() < self.kong.response_buffers {
                    continue;
                }
                // Buffers full: the filter sees what was gathered, with eof=false.
                buffering = false;
            } else {
                self.response_buffer = chunk.to_vec();
            }
            let size = self.response_buffer.len();
            let flow = ex.on_response_body(self, size, false);
            if flow == Flow::Pause && !buffered_once {
                buffering = true;
                buffered_once = true;
                continue;
            }
            let released = std::mem::take(&mut self.response_buffer);
            self.client_body_releases.push(released);
        }
        // The last call carries what is still buffered (if any) and eof.
        if !buffering {
            self.response_buffer.clear();
        }
        let size = self.response_buffer.len();
        ex.on_response_body(self, size, true);
        let released = std::mem::take(&mut self.response_buffer);
        self.client_body_releases.push(released);
    }

    /// `proxy_set_buffer_bytes(start 0, size, bytes)` on a body of `held` bytes: Envoy replaces
    /// `size` held bytes (the filter always replaces them all); Kong keeps at most `size` bytes of
    /// `bytes` (fact 3, read in source: `body->len = min(len, size)`).
    fn set_buffer(&mut self, which: &str, held: usize, size: usize, bytes: &[u8]) -> Vec<u8> {
        if self.kong() {
            return bytes.get(..size.min(bytes.len())).unwrap_or_default().to_vec();
        }
        if size != held {
            self.violations.push(format!("{which} body replaced with a wrong held size {size}"));
        }
        bytes.to_vec()
    }

    fn send_response_headers(&mut self) {
        if !self.response_headers_sent {
            self.response_headers_sent = true;
            self.client_headers = Some(self.response_headers.clone());
        }
    }
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect()
}

fn as_sent(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn find(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

impl HostIo for FakeHost {
    fn host_kind(&mut self) -> HostKind {
        self.hostcalls.note(Hostcall::HostKind);
        if self.kong() {
            HostKind::Kong
        } else {
            HostKind::Envoy
        }
    }

    fn now_nanos(&self) -> u64 {
        self.hostcalls.note(Hostcall::NowNanos);
        self.clock
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.hostcalls.note_header_read(Hostcall::RequestHeader, Hostcall::RequestHeaderMap);
        match self.raw_request_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, raw)) => raw.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
            None => find(&self.request_headers, name),
        }
    }

    fn request_header_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.hostcalls.note_header_read(Hostcall::RequestHeader, Hostcall::RequestHeaderMap);
        match self.raw_request_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, Some(raw))) => Ok(Some(raw.clone())),
            Some((_, None)) => Err(HostError { detail: "refused by the test".into() }),
            None => Ok(find(&self.request_headers, name).map(String::into_bytes)),
        }
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::SetRequestHeader);
        if self.kong() && name == ":path" && value.contains('?') {
            // Fact 5 (read in source): "NYI - cannot set request path with querystring".
            self.violations.push("kong traps: :path set with a query string (fact 5)".into());
            return Err(HostError { detail: "trap".into() });
        }
        self.put_request_header(name, value)
    }

    fn set_upstream_path(&mut self, path: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::SetRequestHeader);
        if self.kong() {
            if self.upstream_headers_released {
                self.violations.push("kong: $upstream_uri set after the request went upstream".into());
                return Err(HostError { detail: "request already sent".into() });
            }
            self.kong_upstream_uri = Some(path.to_string());
            return Ok(());
        }
        self.put_request_header(":path", path)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::RemoveRequestHeader);
        if self.upstream_headers_released {
            self.violations.push(format!("request header {name} removed after the headers went upstream"));
            return Err(HostError { detail: "headers already sent".into() });
        }
        if self.kong() {
            // Fact 4: the header is marked unused; nginx still sends it, value and all.
            let removed: Vec<(String, String)> =
                self.request_headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).cloned().collect();
            self.kong_removed.extend(removed);
        }
        self.request_headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn route_name(&mut self) -> Option<String> {
        self.hostcalls.note(Hostcall::RouteName);
        if self.kong() && !self.kong.lua {
            // Fact 6: without Kong's Lua layer `kong.route_name` is not found; the host layer
            // says so and counts it (src/host/proxy_io.rs).
            self.increment(Counter::RouteNamesUnreadable);
            return None;
        }
        self.route_name.clone()
    }

    fn request_header_names(&self) -> Option<Vec<String>> {
        self.hostcalls.note_header_read(Hostcall::RequestHeaderNames, Hostcall::RequestHeaderMap);
        if self.refuse.contains(&"request_header_names") {
            return None;
        }
        Some(self.request_headers.iter().map(|(n, _)| n.clone()).collect())
    }

    fn upstream_provider(&self) -> Option<String> {
        self.hostcalls.note(Hostcall::UpstreamProvider);
        self.upstream_provider.clone()
    }

    fn metadata_value(&self, path: &[String]) -> Option<Vec<u8>> {
        self.hostcalls.note(Hostcall::MetadataValue);
        self.metadata.get(&path.join("/")).cloned()
    }

    fn read_state(&self, key: &str) -> Option<String> {
        self.hostcalls.note(Hostcall::ReadState);
        self.exports.get(key).cloned()
    }

    fn route_to(&mut self, header: &str, cluster: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::RouteTo);
        if self.kong() {
            self.kong_upstream = Some(cluster.to_string());
            return Ok(());
        }
        self.put_request_header(header, cluster)
    }

    fn add_response_trailer(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::AddResponseTrailer);
        if self.kong() {
            return Err(HostError { detail: "no trailers".into() });
        }
        self.trailers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::RemoveResponseHeader);
        if self.response_headers_sent {
            self.violations.push(format!("response header {name} removed after the headers were sent"));
            return Err(HostError { detail: "headers already sent".into() });
        }
        self.response_headers.retain(|(n, _)| n != name);
        Ok(())
    }

    fn set_request_body(&mut self, size: usize, bytes: &[u8]) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::ReplaceRequestBody);
        if self.refuse.contains(&"replace_request_body") {
            return Err(HostError { detail: "refused".into() });
        }
        self.request_buffer = self.set_buffer("request", self.request_buffer.len(), size, bytes);
        Ok(())
    }

    fn set_response_body(&mut self, size: usize, bytes: &[u8]) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::ReplaceResponseBody);
        if self.refuse.contains(&"replace_response_body")
            || self.unwritable_response_chunks.contains(&self.client_body_releases.len())
        {
            return Err(HostError { detail: "refused by the test".into() });
        }
        self.response_buffer = self.set_buffer("response", self.response_buffer.len(), size, bytes);
        Ok(())
    }

    fn emit(&mut self, update: &tollgate::metrics::Update) {
        self.hostcalls.note(match update.kind {
            Kind::Counter => Hostcall::EmitCounter,
            Kind::Gauge => Hostcall::EmitGauge,
            Kind::Histogram => Hostcall::EmitHistogram,
        });
        match update.kind {
            Kind::Gauge => {
                self.metrics.insert(update.name.clone(), update.value);
            }
            _ => *self.metrics.entry(update.name.clone()).or_insert(0) += update.value,
        }
    }

    fn export(&mut self, key: &str, value: &str) {
        self.hostcalls.note(Hostcall::Export);
        self.exports.insert(key.to_string(), value.to_string());
    }

    fn dispatch(&mut self, call: &Call) -> Result<u32, HostError> {
        self.hostcalls.note(Hostcall::Dispatch);
        if self.refuse.contains(&"dispatch") {
            return Err(HostError { detail: "refused by the test".into() });
        }
        if self.in_response_body {
            self.violations.push("dispatch from a response callback: Kong has no yield there".into());
        }
        let token = self.calls.len() as u32 + 1;
        self.calls.push((token, call.clone()));
        Ok(token)
    }

    fn resume_request(&mut self) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::Dispatch);
        self.resumed += 1;
        Ok(())
    }

    fn defer_settlement(&mut self, settlement: Settlement) {
        self.settlements.push(settlement);
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.hostcalls.note(Hostcall::SharedData);
        if self.refuse.contains(&"shared_data") {
            return Err(HostError { detail: "refused by the test".into() });
        }
        Ok(self.shared.borrow().get(key).cloned())
    }

    /// Envoy's and Kong's shared data: a write with a token other than 0 must carry the value's
    /// current token; a key that does not exist takes any write; each write gives a new token.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        self.hostcalls.note(Hostcall::SharedData);
        if self.refuse.contains(&"shared_data") {
            return Err(SharedSetError::Refused(HostError { detail: "refused by the test".into() }));
        }
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, token)| *token);
        if let (Some(current), true) = (current, cas != 0) {
            if current != cas {
                return Err(SharedSetError::CasMismatch);
            }
        }
        let token = shared.values().map(|(_, t)| *t).max().unwrap_or(0) + 1;
        shared.insert(key.to_string(), (value.to_vec(), token));
        Ok(())
    }

    fn export_required(&mut self, key: &str, value: &str) -> Result<(), HostError> {
        if self.refuse.contains(&"export") {
            self.hostcalls.note(Hostcall::Export);
            return Err(HostError { detail: "refused by the test".into() });
        }
        self.export(key, value);
        Ok(())
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.hostcalls.note_header_read(Hostcall::ResponseHeader, Hostcall::ResponseHeaderMap);
        find(&self.response_headers, name)
    }

    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::SetResponseHeader);
        if self.kong() && self.in_response_body {
            self.violations.push(format!("kong traps: response header {name} set during the response body"));
            return Err(HostError { detail: "trap".into() });
        }
        if self.response_headers_sent {
            self.violations.push(format!("response header {name} set after the headers were sent"));
            return Err(HostError { detail: "headers already sent".into() });
        }
        self.response_headers.retain(|(n, _)| n != name);
        self.response_headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn request_body(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        self.hostcalls.note(Hostcall::RequestBody);
        if self.refuse.contains(&"request_body") {
            return None;
        }
        if self.kong() && self.request_buffer.len() > self.kong.client_body_buffer_size {
            // Fact 9: "cannot read request body buffered to file".
            return None;
        }
        self.request_buffer.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    }

    fn response_body(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        self.hostcalls.note(Hostcall::ResponseBody);
        if self.refuse.contains(&"response_body")
            || self.unreadable_response_chunks.contains(&self.client_body_releases.len())
        {
            return None;
        }
        self.response_buffer.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        self.hostcalls.note(Hostcall::SendReply);
        if self.refuse.contains(&"send_reply") {
            return Err(HostError { detail: "refused".into() });
        }
        if self.reply.is_some() {
            self.violations.push("second local reply (kong traps)".into());
            return Err(HostError { detail: "already replied".into() });
        }
        if self.in_response_body {
            self.violations.push("local reply during the response body".into());
            return Err(HostError { detail: "response already sent".into() });
        }
        let mut body = body.to_vec();
        if self.kong() && !body.is_empty() {
            // Fact 8: ngx_wasm_module ends a local reply's body with a newline.
            body.push(b'\n');
        }
        self.reply = Some(LocalReply { status, headers: owned(headers), body });
        Ok(())
    }

    fn increment(&mut self, counter: Counter) {
        self.hostcalls.note(Hostcall::Increment);
        *self.counters.entry(counter).or_insert(0) += 1;
    }
}
