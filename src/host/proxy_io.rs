//! `HostIo` over proxy-wasm hostcalls, plus the per-VM facts every request shares
//! (which proxy this is, metric ids).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use super::abi;
use crate::budgets::redis::{Call, Outbox, Settlement};
use crate::host_io::{encode_header_pairs, HeaderSnapshot, HostError, HostIo, HostKind, SharedSetError};
use crate::metrics::{Kind, Update};
use crate::names::Counter;

/// Facts about the running proxy, learnt lazily inside the first request: on Kong, property
/// reads outside a request crash the worker.
#[derive(Default)]
pub struct HostState {
    kind: Cell<Option<HostKind>>,
    metrics_supported: Cell<Option<bool>>,
    /// `None` once defining failed, so it is not retried on every request.
    counters: RefCell<HashMap<Counter, Option<u32>>>,
    /// Labelled metrics by full name (bounded by the label registry's cardinality guard).
    labelled: RefCell<HashMap<String, Option<u32>>>,
    faults: Cell<Faults>,
    /// The linear memory size last reported in the `tollgate.wasm_memory_bytes` gauge, and the
    /// gauge's id (`None` inside once defining it failed).
    memory_reported: Cell<u64>,
    memory_gauge: Cell<Option<Option<u32>>>,
    /// Kong's `kong.route_name` was found missing (logged once per worker).
    route_name_missing_said: Cell<bool>,
    /// Budget settlements for the Redis store, sent by the root context.
    pub outbox: RefCell<Outbox>,
    /// Leases: the counters whose slices this worker topped up; its root context gives idle
    /// ones back (any worker may; the compare-and-swap lets one take each).
    pub lease_keys: RefCell<BTreeSet<String>>,
}

/// Hostcalls to refuse on purpose, to test `failure_mode` against a real proxy: named in the
/// Wasm VM's environment variable `TOLLGATE_TEST_FAULTS` (comma-separated `request_body`,
/// `replace_request_body`, `send_reply`, `route_name`), which only the operator sets. Never
/// set in production.
/// `panic` panics in the first request's headers callback, to prove the panic hook and the
/// tests' VM-failure checks work.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    request_body: bool,
    replace_request_body: bool,
    send_reply: bool,
    route_name: bool,
    pub panic: bool,
}

impl Faults {
    pub const VARIABLE: &'static str = "TOLLGATE_TEST_FAULTS";

    pub fn parse(list: &str) -> Faults {
        let named = |name: &str| list.split(',').any(|f| f.trim() == name);
        Faults {
            request_body: named("request_body"),
            replace_request_body: named("replace_request_body"),
            send_reply: named("send_reply"),
            route_name: named("route_name"),
            panic: named("panic"),
        }
    }

    pub fn any(self) -> bool {
        self.request_body || self.replace_request_body || self.send_reply || self.route_name || self.panic
    }
}

impl HostState {
    pub fn set_faults(&self, faults: Faults) {
        self.faults.set(faults);
    }

    pub fn faults(&self) -> Faults {
        self.faults.get()
    }
}

pub struct ProxyIo {
    host: Rc<HostState>,
    /// The request's and the response's headers, read once each: a hostcall per header read
    /// was a third of the filter's hostcalls per request.
    request_headers: RefCell<Snapshot>,
    response_headers: RefCell<Snapshot>,
    /// The route's name as last read: routing, guardrails and the failure mode may each ask.
    /// Forgotten when the filter edits a request header, since Envoy then matches the route again.
    route_name: RefCell<Option<Option<String>>>,
    /// A route-name read failed in this request (logged and counted once).
    route_name_failed: Cell<bool>,
}

#[derive(Default)]
enum Snapshot {
    #[default]
    Unread,
    Held(HeaderSnapshot),
    /// The host refused the pairs or sent a malformed buffer: ask per header, as before.
    Unavailable,
}

impl ProxyIo {
    pub fn new(host: Rc<HostState>) -> Self {
        ProxyIo {
            host,
            request_headers: RefCell::default(),
            response_headers: RefCell::default(),
            route_name: RefCell::default(),
            route_name_failed: Cell::new(false),
        }
    }

    fn snapshot(&self, map_type: u32) -> &RefCell<Snapshot> {
        if map_type == abi::MAP_HTTP_REQUEST_HEADERS {
            &self.request_headers
        } else {
            &self.response_headers
        }
    }

    /// Reads the map's pairs on first use.
    fn load(&self, map_type: u32) {
        let cell = self.snapshot(map_type);
        if matches!(*cell.borrow(), Snapshot::Unread) {
            let read = abi::get_header_pairs(map_type).ok().and_then(|bytes| HeaderSnapshot::decode(&bytes));
            *cell.borrow_mut() = read.map_or(Snapshot::Unavailable, Snapshot::Held);
        }
    }

    /// Keeps a held snapshot in step with an edit the host accepted; a request edit also forgets
    /// the route name.
    fn edited(&self, map_type: u32, name: &str, value: Option<&str>) {
        if map_type == abi::MAP_HTTP_REQUEST_HEADERS {
            self.route_name.replace(None);
        }
        if let Snapshot::Held(headers) = &mut *self.snapshot(map_type).borrow_mut() {
            match value {
                Some(value) => headers.set(name, value),
                None => headers.remove(name),
            }
        }
    }

    fn replace_header(&self, map_type: u32, name: &str, value: &str) -> Result<(), u32> {
        abi::replace_header(map_type, name, value)?;
        self.edited(map_type, name, Some(value));
        Ok(())
    }

    fn remove_header(&self, map_type: u32, name: &str) -> Result<(), u32> {
        abi::remove_header(map_type, name)?;
        self.edited(map_type, name, None);
        Ok(())
    }

    pub fn faults(&self) -> Faults {
        self.host.faults()
    }

    /// Reports this VM's linear memory (the Wasm heap: it only grows) in the gauge
    /// `tollgate.wasm_memory_bytes` whenever it has grown, so a soak test can watch it. With
    /// several workers the gauge shows the VM that grew last.
    pub fn note_memory(&mut self) {
        let bytes = memory_bytes();
        if bytes <= self.host.memory_reported.get() || !self.metrics_supported() {
            return;
        }
        self.host.memory_reported.set(bytes);
        let id = match self.host.memory_gauge.get() {
            Some(id) => id,
            None => {
                let id = abi::define_metric(abi::METRIC_GAUGE, "tollgate.wasm_memory_bytes").ok();
                self.host.memory_gauge.set(Some(id));
                id
            }
        };
        if let Some(id) = id {
            abi::record_metric(id, bytes);
        }
    }

    /// A header's value as the bytes the proxy holds: from the snapshot, or (for what the
    /// snapshot cannot answer) one hostcall.
    fn header_bytes(&self, map_type: u32, name: &str) -> Result<Option<Vec<u8>>, u32> {
        self.load(map_type);
        if let Snapshot::Held(headers) = &*self.snapshot(map_type).borrow() {
            if let Some(answer) = headers.lookup(name) {
                return Ok(answer.map(<[u8]>::to_vec));
            }
        }
        abi::get_header(map_type, name)
    }

    fn header(&self, map_type: u32, name: &str) -> Option<String> {
        match self.header_bytes(map_type, name) {
            Ok(value) => value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            Err(status) => {
                log::debug!("get_header_failed name={name} status={status}");
                None
            }
        }
    }

    fn body(&self, buffer_type: u32, start: usize, len: usize) -> Option<Vec<u8>> {
        match abi::get_buffer(buffer_type, start, len) {
            Ok(bytes) if bytes.len() == len => Some(bytes),
            Ok(bytes) => {
                log::debug!("get_body_short wanted={len} got={}", bytes.len());
                None
            }
            Err(status) => {
                log::debug!("get_body_failed status={status}");
                None
            }
        }
    }

    /// Kong before 3.8 has no metrics hostcalls: calling one traps.
    fn metrics_supported(&mut self) -> bool {
        if let Some(known) = self.host.metrics_supported.get() {
            return known;
        }
        let supported = match self.host_kind() {
            HostKind::Envoy => true,
            HostKind::Kong => match abi::get_property(&["kong", "version"]).ok().flatten() {
                Some(version) => kong_has_metrics(&String::from_utf8_lossy(&version)),
                None => {
                    // Kong's Lua layer answers `kong.version` (probe fact 6). Without it nothing
                    // tells whether the metric hostcalls exist (they trap before Kong 3.8), so
                    // none is made; said once per worker, since nothing can count it.
                    log::warn!("kong.version not found: Tollgate's metrics are off in this worker");
                    false
                }
            },
        };
        self.host.metrics_supported.set(Some(supported));
        supported
    }
}

fn memory_bytes() -> u64 {
    (core::arch::wasm32::memory_size(0) as u64).saturating_mul(65536)
}

fn kong_has_metrics(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.trim().parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (3, 8)
}

impl HostIo for ProxyIo {
    fn host_kind(&mut self) -> HostKind {
        if let Some(kind) = self.host.kind.get() {
            return kind;
        }
        // nginx variables exist only on Kong's host (ngx_wasm_module); Envoy answers NotFound.
        let kind = match abi::get_property(&["ngx", "hostname"]) {
            Ok(Some(_)) => HostKind::Kong,
            _ => HostKind::Envoy,
        };
        self.host.kind.set(Some(kind));
        kind
    }

    fn now_nanos(&self) -> u64 {
        abi::now_nanos()
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.header(abi::MAP_HTTP_REQUEST_HEADERS, name)
    }

    fn request_header_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.header_bytes(abi::MAP_HTTP_REQUEST_HEADERS, name)
            .map_err(|status| HostError { detail: format!("get request header status {status}") })
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.replace_header(abi::MAP_HTTP_REQUEST_HEADERS, name, value)
            .map_err(|status| HostError { detail: format!("replace request header status {status}") })
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.remove_header(abi::MAP_HTTP_REQUEST_HEADERS, name)
            .map_err(|status| HostError { detail: format!("remove request header status {status}") })
    }

    fn request_header_names(&self) -> Option<Vec<String>> {
        self.load(abi::MAP_HTTP_REQUEST_HEADERS);
        match &*self.request_headers.borrow() {
            Snapshot::Held(headers) => Some(headers.names()),
            // Per-header reads still work, but nothing lists the names.
            _ => None,
        }
    }

    fn upstream_provider(&self) -> Option<String> {
        let path = ["xds", "upstream_host_metadata", "filter_metadata", "tollgate", "provider"];
        let value = abi::get_property(&path).ok().flatten()?;
        String::from_utf8(value).ok()
    }

    fn metadata_value(&self, path: &[String]) -> Option<Vec<u8>> {
        let mut full = vec!["metadata", "filter_metadata"];
        full.extend(path.iter().map(String::as_str));
        abi::get_property(&full).ok().flatten()
    }

    fn read_state(&self, key: &str) -> Option<String> {
        let value = abi::get_property(&[key]).ok().flatten()?;
        String::from_utf8(value).ok()
    }

    fn route_name(&mut self) -> Option<String> {
        if let Some(known) = self.route_name.borrow().as_ref() {
            return known.clone();
        }
        let path: &[&str] = match self.host_kind() {
            HostKind::Envoy => &["xds", "route_name"],
            HostKind::Kong => &["kong", "route_name"],
        };
        let read = if self.host.faults.get().route_name { Err(0) } else { abi::get_property(path) };
        let kong = self.host_kind() == HostKind::Kong;
        let name = match read {
            // Every Kong request has a route: no name means Kong's Lua layer, which answers
            // `kong.*`, did not (probe fact 6). Said once per worker, counted every time.
            Ok(None) if kong => {
                if !self.host.route_name_missing_said.replace(true) {
                    log::warn!("kong.route_name not found: route rules and route policies see no route");
                }
                self.increment(Counter::RouteNamesUnreadable);
                None
            }
            // A route's name is a protobuf string (Envoy) or Lua string (Kong): UTF-8.
            Ok(value) => value.and_then(|value| String::from_utf8(value).ok()),
            Err(status) => {
                // Not "no route": per-route rules, guardrail policies and failure modes are then
                // decided as for a request without one. Said once per request.
                if !self.route_name_failed.replace(true) {
                    log::warn!("route_name_unreadable status={status}: deciding as for no route");
                    self.increment(Counter::RouteNamesUnreadable);
                }
                None
            }
        };
        self.route_name.replace(Some(name.clone()));
        name
    }

    fn route_to(&mut self, header: &str, cluster: &str) -> Result<(), HostError> {
        let result = match self.host_kind() {
            // The route's `cluster_header` reads this; editing headers clears Envoy's route cache.
            HostKind::Envoy => self.replace_header(abi::MAP_HTTP_REQUEST_HEADERS, header, cluster),
            HostKind::Kong => abi::set_property(&["kong", "service", "upstream"], cluster.as_bytes()),
        };
        result.map_err(|status| HostError { detail: format!("route_to status {status}") })
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.header(abi::MAP_HTTP_RESPONSE_HEADERS, name)
    }

    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.replace_header(abi::MAP_HTTP_RESPONSE_HEADERS, name, value)
            .map_err(|status| HostError { detail: format!("replace_header_map_value status {status}") })
    }

    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError> {
        self.remove_header(abi::MAP_HTTP_RESPONSE_HEADERS, name)
            .map_err(|status| HostError { detail: format!("remove response header status {status}") })
    }

    fn add_response_trailer(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        // Kong's host never runs trailer callbacks and has no trailers map: do not try.
        if self.host_kind() == HostKind::Kong {
            return Err(HostError { detail: "no trailers on kong".into() });
        }
        abi::add_header(abi::MAP_HTTP_RESPONSE_TRAILERS, name, value)
            .map_err(|status| HostError { detail: format!("add trailer status {status}") })
    }

    fn request_body(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        if self.host.faults.get().request_body {
            return None;
        }
        self.body(abi::BUFFER_HTTP_REQUEST_BODY, start, len)
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        abi::get_shared_data(key).map_err(|status| HostError { detail: format!("get shared data status {status}") })
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        abi::set_shared_data(key, value, cas).map_err(|status| match status {
            abi::STATUS_CAS_MISMATCH => SharedSetError::CasMismatch,
            other => SharedSetError::Refused(HostError { detail: format!("set shared data status {other}") }),
        })
    }

    fn dispatch(&mut self, call: &Call) -> Result<u32, HostError> {
        dispatch(call)
    }

    fn resume_request(&mut self) -> Result<(), HostError> {
        abi::resume_request().map_err(|status| HostError { detail: format!("resume status {status}") })
    }

    fn note_lease(&mut self, key: &str) {
        if !self.host.lease_keys.borrow().contains(key) {
            self.host.lease_keys.borrow_mut().insert(key.to_string());
        }
    }

    fn defer_settlement(&mut self, settlement: Settlement) {
        let now = self.now_nanos() / 1_000_000;
        if let Some(dropped) = self.host.outbox.borrow_mut().push(settlement, now) {
            log::error!("budget_settlement_dropped op={dropped} reason=queue_full");
        }
    }

    fn set_request_body(&mut self, size: usize, bytes: &[u8]) -> Result<(), HostError> {
        if self.host.faults.get().replace_request_body {
            return Err(HostError { detail: "refused by TOLLGATE_TEST_FAULTS".into() });
        }
        abi::set_buffer(abi::BUFFER_HTTP_REQUEST_BODY, 0, size, bytes)
            .map_err(|status| HostError { detail: format!("set request body status {status}") })
    }

    fn set_response_body(&mut self, size: usize, bytes: &[u8]) -> Result<(), HostError> {
        abi::set_buffer(abi::BUFFER_HTTP_RESPONSE_BODY, 0, size, bytes)
            .map_err(|status| HostError { detail: format!("set response body status {status}") })
    }

    fn set_upstream_path(&mut self, path: &str) -> Result<(), HostError> {
        match self.host_kind() {
            HostKind::Envoy => self.set_request_header(":path", path),
            // Kong proxies to `$upstream_uri` (set by its Lua access phase, before the chain
            // runs); a variable made by `set` is writable through the `ngx.` properties.
            HostKind::Kong => abi::set_property(&["ngx", "upstream_uri"], path.as_bytes())
                .map_err(|status| HostError { detail: format!("set ngx.upstream_uri status {status}") }),
        }
    }

    fn response_body(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        self.body(abi::BUFFER_HTTP_RESPONSE_BODY, start, len)
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        if self.host.faults.get().send_reply {
            return Err(HostError { detail: "refused by TOLLGATE_TEST_FAULTS".into() });
        }
        abi::send_local_response(status, "tollgate", body, &encode_header_pairs(headers))
            .map_err(|status| HostError { detail: format!("send_local_response status {status}") })
    }

    fn emit(&mut self, update: &Update) {
        if !self.metrics_supported() {
            return;
        }
        let metric_type = match update.kind {
            Kind::Counter => abi::METRIC_COUNTER,
            Kind::Gauge => abi::METRIC_GAUGE,
            Kind::Histogram => abi::METRIC_HISTOGRAM,
        };
        let known = self.host.labelled.borrow().get(&update.name).copied();
        let id = known.unwrap_or_else(|| {
            let id = abi::define_metric(metric_type, &update.name).ok();
            self.host.labelled.borrow_mut().insert(update.name.clone(), id);
            id
        });
        match (id, update.kind) {
            (Some(id), Kind::Counter) => abi::increment_metric(id, i64::try_from(update.value).unwrap_or(i64::MAX)),
            (Some(id), Kind::Histogram | Kind::Gauge) => abi::record_metric(id, update.value),
            (None, _) => {}
        }
    }

    fn export(&mut self, key: &str, value: &str) {
        if let Err(err) = self.export_required(key, value) {
            log::debug!("export_failed key={key} detail={}", err.detail);
        }
    }

    fn export_required(&mut self, key: &str, value: &str) -> Result<(), HostError> {
        let result = match self.host_kind() {
            HostKind::Envoy => abi::set_property(&[key], value.as_bytes()),
            // Kong keeps per-request values for Lua log plugins in kong.ctx.shared; any other
            // property path is refused there. Dots would read as nesting, so they become '_'.
            HostKind::Kong => abi::set_property(&["kong", "ctx", "shared", &key.replace('.', "_")], value.as_bytes()),
        };
        result.map_err(|status| HostError { detail: format!("set_property status {status}") })
    }

    fn increment(&mut self, counter: Counter) {
        if !self.metrics_supported() {
            return;
        }
        let id = *self
            .host
            .counters
            .borrow_mut()
            .entry(counter)
            .or_insert_with(|| abi::define_metric(abi::METRIC_COUNTER, counter.metric_name()).ok());
        if let Some(id) = id {
            abi::increment_metric(id, 1);
        }
    }
}

/// A GET to the budgets' store front (`call.upstream`: an Envoy cluster, or Kong's `host:port`).
/// From a request's body step or the root's tick only: Kong allows no dispatch elsewhere. The
/// SDK's own call, not a raw import: its dispatcher must know the token to route the answer
/// (and it panics only on statuses neither host returns: they answer Ok, BadArgument or
/// InternalFailure).
pub fn dispatch(call: &Call) -> Result<u32, HostError> {
    let headers = vec![(":method", "GET"), (":path", call.path.as_str()), (":authority", call.authority.as_str())];
    let timeout = std::time::Duration::from_millis(call.timeout_ms);
    proxy_wasm::hostcalls::dispatch_http_call(&call.upstream, headers, None, vec![], timeout)
        .map_err(|status| HostError { detail: format!("dispatch to {} status {status:?}", call.upstream) })
}

/// The answer of a finished call: its status (`None`: no answer: timeout, connection failure,
/// Kong's `:dispatch_status`) and its body.
pub fn call_answer(body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = abi::get_header(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
        .ok()
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok().and_then(|s| s.trim().parse::<u16>().ok()));
    let body = if body_size == 0 {
        Vec::new()
    } else {
        // A body the host would not hand over reads as empty: not the store's JSON, so the call
        // counts as failed (never as an answer).
        abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size).unwrap_or_default()
    };
    (status, body)
}
