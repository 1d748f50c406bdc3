//! The port between the pure logic and a proxy. `Exchange` talks to the proxy only through
//! [`HostIo`]; the wasm build implements it over proxy-wasm hostcalls, and the native tests
//! implement it with a fake host that models Envoy's and Kong's buffering.

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
    fn request_header(&self, name: &str) -> Option<String>;
    /// Only while the request headers are held (or in the request body phase on Kong).
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// Names of every request header, for removing those a client may not send.
    fn request_header_names(&self) -> Vec<String>;
    /// The name of the route the proxy matched (Envoy `xds.route_name`, Kong `kong.route_name`).
    fn route_name(&mut self) -> Option<String>;
    /// Sends the request to `cluster`: on Envoy by setting `header` for the route's
    /// `cluster_header`; on Kong by setting the service's upstream.
    fn route_to(&mut self, header: &str, cluster: &str) -> Result<(), HostError>;
    /// Envoy only: the provider of the endpoint this request (or attempt) went to, from the
    /// endpoint metadata `filter_metadata.tollgate.provider`.
    fn upstream_provider(&self) -> Option<String>;
    /// A string in the request's dynamic metadata (Envoy), `path` = namespace then keys.
    fn metadata_value(&self, path: &[String]) -> Option<String>;
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
    /// Replaces the whole request body the proxy holds (`held` bytes long).
    fn replace_request_body(&mut self, held: usize, bytes: &[u8]) -> Result<(), HostError>;
    /// Bytes `start..start+len` of the response body the proxy currently holds (the current
    /// chunk, or everything buffered while the filter paused).
    fn response_body(&self, start: usize, len: usize) -> Option<Vec<u8>>;
    /// Replaces the response body the proxy currently holds (`held` bytes: the current chunk
    /// when streaming).
    fn replace_response_body(&mut self, held: usize, bytes: &[u8]) -> Result<(), HostError>;
    /// Answer the client directly; the request never reaches the upstream.
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    fn increment(&mut self, counter: Counter);
    /// Adds to a labelled counter or records a histogram sample (see `metrics`).
    fn emit(&mut self, update: &Update);
    /// Hands a value to the proxy's logging (Envoy filter state `wasm.<key>`, Kong
    /// `kong.ctx.shared`), for access logs and log plugins.
    fn export(&mut self, key: &str, value: &str);
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

/// Header names from the proxy-wasm pairs layout (the inverse of [`encode_header_pairs`]).
/// A malformed buffer yields the names read before the damage, never a panic.
pub fn decode_header_names(bytes: &[u8]) -> Vec<String> {
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let Some(count) = read_u32(0) else { return Vec::new() };
    let mut names = Vec::new();
    let mut data = count.saturating_mul(8).saturating_add(4);
    for index in 0..count {
        let sizes_at = 4 + index * 8;
        let (Some(name_len), Some(value_len)) = (read_u32(sizes_at), read_u32(sizes_at + 4)) else { break };
        let Some(name) = bytes.get(data..data.saturating_add(name_len)) else { break };
        names.push(String::from_utf8_lossy(name).into_owned());
        data = data.saturating_add(name_len).saturating_add(1).saturating_add(value_len).saturating_add(1);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_decode_from_the_pairs_layout() {
        let bytes = encode_header_pairs(&[(":path", "/v1"), ("x-tollgate-tenant", "acme"), ("a", "")]);
        assert_eq!(decode_header_names(&bytes), [":path", "x-tollgate-tenant", "a"]);
        assert_eq!(decode_header_names(&bytes[..bytes.len() - 8]), [":path", "x-tollgate-tenant"]);
        assert!(decode_header_names(&[1, 2]).is_empty());
        assert!(decode_header_names(&[255, 255, 255, 255]).is_empty());
    }

    #[test]
    fn header_pairs_use_the_abi_layout() {
        let bytes = encode_header_pairs(&[("a", "bc")]);
        assert_eq!(bytes, [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]);
        assert_eq!(encode_header_pairs(&[]), [0, 0, 0, 0]);
    }
}
