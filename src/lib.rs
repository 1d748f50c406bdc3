//! Tollgate: an LLM gateway that runs inside Envoy or Kong as a proxy-wasm HTTP filter.
//!
//! The crate has one hard boundary. Everything except `host` is pure logic that knows nothing
//! about proxy-wasm and is tested natively; `host` (built only for wasm32) maps proxy-wasm
//! callbacks onto [`exchange::Exchange`] through the [`host_io::HostIo`] trait.
//! Data flows one way: bytes → parsed request → decisions → effects on the host.

pub mod config;
pub mod dialect;
pub mod estimate;
pub mod exchange;
pub mod guardrails;
pub mod host_io;
pub mod json_edit;
pub mod names;
pub mod pricing;
pub mod reply;
pub mod routing;
pub mod sse;
pub mod stream_meter;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod host;
