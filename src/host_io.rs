//! The port between the pure logic and a proxy. `Exchange` talks to the proxy only through
//! [`HostIo`]; the wasm build implements it over proxy-wasm hostcalls, and the native tests
//! implement it with a fake host that models Envoy's and Kong's buffering.

use crate::budgets::redis::{Call, Settlement};
use crate::metrics::Update;
use crate::names::Counter;

/// Which proxy runs the filter. They differ in what a filter may do in each phase
/// (Kong rejects `Pause` from response headers, so cost headers cannot wait for the body there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Envoy,
    Kong,
}

/// What the filter asks the proxy to do after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let the headers or body chunk go on.
    Continue,
    /// Hold it: in a headers callback, hold the headers; in a body callback, buffer the body.
    Pause,
}

/// A hostcall the proxy refused. The host layer says which call and why in `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub detail: String,
}

/// Everything the request state machine needs from the proxy.
pub trait HostIo {
    fn host_kind(&mut self) -> HostKind;
    /// Monotonic enough for durations: the proxy's clock, in nanoseconds.
    fn now_nanos(&self) -> u64;
    /// A request header's value as text, for headers whose values are ASCII by protocol
    /// (framing, content type, credentials): bytes that are not UTF-8 read as U+FFFD, and a value
    /// the proxy would not hand over reads as absent. Values a client chooses freely (a tenant)
    /// and `:method`/`:path` are read with [`HostIo::request_header_bytes`].
    fn request_header(&self, name: &str) -> Option<String>;
    /// A request header's value as the client sent it (HTTP allows bytes that are not UTF-8:
    /// obs-text); `Ok(None)` when absent, `Err` when the proxy would not hand it over.
    fn request_header_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Only while the request headers are held (or in the request body phase on Kong).
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// The proxy's own removal. On Kong it does not take the header away from what goes
    /// upstream (probe fact 4): use [`HostIo::clear_request_header`].
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// Takes a request header's value away from what reaches the upstream. Envoy removes the
    /// header. Kong's host marks a removed header unused, and nginx still sends it upstream with
    /// its value (probe fact 4); there its value is replaced by an empty one instead, which the
    /// upstream receives as an empty header: nothing the client sent in it gets through.
    fn clear_request_header(&mut self, name: &str) -> Result<(), HostError> {
        match self.host_kind() {
            HostKind::Envoy => self.remove_request_header(name),
            HostKind::Kong => self.set_request_header(name, ""),
        }
    }
    /// The path (and query) the upstream request goes to. Envoy: `:path`. Kong's host maps
    /// `:path` to nginx's `$uri`, which Kong's `proxy_pass` does not use, and traps on a path with
    /// a query (probe fact 5): there the path goes to `$upstream_uri`, what Kong proxies to.
    fn set_upstream_path(&mut self, path: &str) -> Result<(), HostError>;
    /// Names of every request header, for removing those a client may not send; `None` when the
    /// proxy would not list them.
    fn request_header_names(&self) -> Option<Vec<String>>;
    /// The name of the route the proxy matched (Envoy `xds.route_name`, Kong `kong.route_name`).
    fn route_name(&mut self) -> Option<String>;
    /// Sends the request to `cluster`: on Envoy by setting `header` for the route's
    /// `cluster_header`; on Kong by setting the service's upstream.
    fn route_to(&mut self, header: &str, cluster: &str) -> Result<(), HostError>;
    /// Envoy only: the provider of the endpoint this request (or attempt) went to, from the
    /// endpoint metadata `filter_metadata.tollgate.provider`.
    fn upstream_provider(&self) -> Option<String>;
    /// A value in the request's dynamic metadata (Envoy), `path` = namespace then keys, as the
    /// proxy serialises it: a string's bytes; a number or boolean in its binary form.
    fn metadata_value(&self, path: &[String]) -> Option<Vec<u8>>;
    /// A value another Tollgate filter exported for this request (Envoy filter state).
    fn read_state(&self, key: &str) -> Option<String>;
    fn response_header(&self, name: &str) -> Option<String>;
    /// Only while the response headers have not left the proxy.
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError>;
    /// Adds a response trailer at the end of the response body (Envoy over HTTP/2).
    fn add_response_trailer(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// Bytes `start..start+len` of the request body the proxy currently holds.
    fn request_body(&self, start: usize, len: usize) -> Option<Vec<u8>>;
    /// `proxy_set_buffer_bytes` on the request body: `bytes` at start 0, `size` as the host
    /// reads it (Envoy: how many held bytes are replaced; Kong: the most bytes of `bytes` kept).
    fn set_request_body(&mut self, size: usize, bytes: &[u8]) -> Result<(), HostError>;
    /// Replaces the whole request body the proxy holds (`held` bytes long) with `bytes`.
    fn replace_request_body(&mut self, held: usize, bytes: &[u8]) -> Result<(), HostError> {
        let size = self.replaced_size(held, bytes.len());
        self.set_request_body(size, bytes)
    }
    /// Bytes `start..start+len` of the response body the proxy currently holds (the current
    /// chunk, or everything buffered while the filter paused).
    fn response_body(&self, start: usize, len: usize) -> Option<Vec<u8>>;
    /// `proxy_set_buffer_bytes` on the response body (see [`HostIo::set_request_body`]).
    fn set_response_body(&mut self, size: usize, bytes: &[u8]) -> Result<(), HostError>;
    /// Replaces the response body the proxy currently holds (`held` bytes: the current chunk
    /// when streaming) with `bytes`.
    fn replace_response_body(&mut self, held: usize, bytes: &[u8]) -> Result<(), HostError> {
        let size = self.replaced_size(held, bytes.len());
        self.set_response_body(size, bytes)
    }
    /// The `size` that replaces `held` bytes with `new` bytes. Envoy replaces `size` held bytes;
    /// Kong's host keeps at most `size` bytes of the new data (probe fact 3), so a body that grows
    /// (an inserted `include_usage`, a longer model name, a restored value) needs the new length.
    fn replaced_size(&mut self, held: usize, new: usize) -> usize {
        match self.host_kind() {
            HostKind::Envoy => held,
            HostKind::Kong => held.max(new),
        }
    }
    /// Answer the client directly; the request never reaches the upstream.
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    fn increment(&mut self, counter: Counter);
    /// Adds to a labelled counter or records a histogram sample (see `metrics`).
    fn emit(&mut self, update: &Update);
    /// Hands a value to the proxy's logging (Envoy filter state `wasm.<key>`, Kong
    /// `kong.ctx.shared`), for access logs and log plugins.
    fn export(&mut self, key: &str, value: &str);
    /// [`HostIo::export`] for a value the request cannot do without (the fallback plan the
    /// upstream filter reads): `Err` when the proxy refused it.
    fn export_required(&mut self, key: &str, value: &str) -> Result<(), HostError>;
    /// The proxy's shared data (every worker of one proxy sees it): a value and its
    /// compare-and-swap token; `Ok(None)` when the key does not exist.
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes a shared-data value if its token is still `cas` (0: whatever it is).
    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError>;
    /// Sends `call` (a GET to the budgets' store); its answer comes back to the filter's
    /// `on_call_answer` with the token returned here.
    fn dispatch(&mut self, call: &Call) -> Result<u32, HostError>;
    /// Lets a request that waited in its body step for a call's answer go on.
    fn resume_request(&mut self) -> Result<(), HostError>;
    /// Hands a settlement to the root context, which sends it until the store has it (it
    /// outlives its request: a call of the request's own would be cancelled with it).
    fn defer_settlement(&mut self, settlement: Settlement);
    /// Leases: this worker put a slice of counter `key` in the shared data; its root context
    /// gives it back to the store when it goes idle.
    fn note_lease(&mut self, _key: &str) {}
}

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedSetError {
    /// Another worker wrote the value since it was read.
    CasMismatch,
    Refused(HostError),
}

/// The budgets' ledger over a proxy's shared data.
pub struct SharedLedger<'a>(pub &'a mut dyn HostIo);

impl crate::budgets::ledger::SharedData for SharedLedger<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        self.0.shared_get(key).map_err(|e| e.detail)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), crate::budgets::ledger::SetError> {
        use crate::budgets::ledger::SetError;
        self.0.shared_set(key, value, cas).map_err(|e| match e {
            SharedSetError::CasMismatch => SetError::Mismatch,
            SharedSetError::Refused(error) => SetError::Failed(error.detail),
        })
    }
}

/// Header pairs in the proxy-wasm wire format (used for local replies): a u32 count, then a
/// (u32 name length, u32 value length) per pair, then each name and value NUL-terminated.
pub fn encode_header_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(n, v)| n.len() + v.len() + 10).sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    let len_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    bytes.extend_from_slice(&len_u32(pairs.len()));
    for (name, value) in pairs {
        bytes.extend_from_slice(&len_u32(name.len()));
        bytes.extend_from_slice(&len_u32(value.len()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Header pairs from the proxy-wasm pairs layout (the inverse of [`encode_header_pairs`]):
/// names as text (HTTP tokens are ASCII), values as the bytes they are. `None` when the buffer
/// is malformed (never a panic).
pub fn decode_header_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut pairs = Vec::with_capacity(count.min(256));
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    for index in 0..count {
        let sizes_at = 4 + index * 8;
        let (name_len, value_len) = (read_u32(sizes_at)?, read_u32(sizes_at + 4)?);
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        let value_at = data.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(value_at..value_at.checked_add(value_len)?)?;
        pairs.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        data = value_at.checked_add(value_len)?.checked_add(1)?;
    }
    Some(pairs)
}

/// A header map as this filter last saw it: read with one hostcall (`get_header_map_pairs`)
/// and kept in step with the filter's own edits, so that every later read costs no hostcall.
/// Nothing else edits the map between the filter's callbacks of one direction. Names compare
/// without case (Kong keeps the client's case); the first of repeated headers is the value, as
/// `get_header_map_value` answers on Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSnapshot {
    pairs: Vec<(String, Vec<u8>)>,
}

impl HeaderSnapshot {
    pub fn decode(bytes: &[u8]) -> Option<HeaderSnapshot> {
        decode_header_pairs(bytes).map(|pairs| HeaderSnapshot { pairs })
    }

    /// `Some(value or absence)` when the snapshot can answer; `None` when the host must be
    /// asked: Kong leaves pseudo-headers (`:path`, `:method`, `:status`) out of the pairs.
    pub fn lookup(&self, name: &str) -> Option<Option<&[u8]>> {
        match self.pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, value)) => Some(Some(value)),
            None if name.starts_with(':') => None,
            None => Some(None),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.pairs.iter().map(|(name, _)| name.clone()).collect()
    }

    /// As `replace_header_map_value` does: every copy goes, one value stays.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.pairs.push((name.to_string(), value.as_bytes().to_vec()));
    }

    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pairs_decode_from_their_layout_and_damage_is_none() {
        let pairs = [(":path", "/v1"), ("x-tollgate-tenant", "acme"), ("a", "")];
        let bytes = encode_header_pairs(&pairs);
        let decoded = decode_header_pairs(&bytes).unwrap();
        assert_eq!(decoded, pairs.map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
        assert_eq!(decode_header_pairs(&[0, 0, 0, 0]), Some(Vec::new()));
        for damaged in [&bytes[..bytes.len() - 3], &[1, 2][..], &[255, 255, 255, 255][..], &[]] {
            assert_eq!(decode_header_pairs(damaged), None, "{damaged:?}");
        }
    }

    #[test]
    fn a_snapshot_answers_like_the_host_and_follows_the_filters_edits() {
        let bytes = encode_header_pairs(&[(":path", "/v1"), ("X-Tenant", "acme"), ("x-tenant", "other")]);
        let mut headers = HeaderSnapshot::decode(&bytes).unwrap();
        assert_eq!(headers.lookup(":path"), Some(Some(&b"/v1"[..])));
        assert_eq!(headers.lookup("x-tenant"), Some(Some(&b"acme"[..])), "any case, first copy");
        assert_eq!(headers.lookup("content-length"), Some(None));
        assert_eq!(headers.lookup(":method"), None, "a pseudo-header not in the pairs is asked of the host");
        headers.set("x-tenant", "new");
        assert_eq!(headers.lookup("X-TENANT"), Some(Some(&b"new"[..])));
        assert_eq!(headers.names(), [":path", "x-tenant"]);
        headers.remove("x-tenant");
        assert_eq!(headers.lookup("x-tenant"), Some(None));
        assert_eq!(HeaderSnapshot::decode(&bytes[..5]), None);
    }

    #[test]
    fn header_values_keep_bytes_that_are_not_utf8() {
        // encode_header_pairs takes text; build the layout by hand for obs-text values.
        let mut bytes = vec![2, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0];
        bytes.extend_from_slice(b"a\0caf\xe9\0b\0caf\xe8\0");
        let headers = HeaderSnapshot::decode(&bytes).unwrap();
        assert_eq!(headers.lookup("a"), Some(Some(&b"caf\xe9"[..])));
        assert_eq!(headers.lookup("b"), Some(Some(&b"caf\xe8"[..])), "two values never collapse into one");
    }

    #[test]
    fn header_pairs_use_the_abi_layout() {
        let bytes = encode_header_pairs(&[("a", "bc")]);
        assert_eq!(bytes, [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]);
        assert_eq!(encode_header_pairs(&[]), [0, 0, 0, 0]);
    }
}
