//! Tollgate: an LLM gateway that runs inside Envoy or Kong as a proxy-wasm HTTP filter.
//!
//! The crate has one hard boundary. Everything except `host` is pure logic that knows nothing
//! about proxy-wasm and is tested natively; `host` (built only for wasm32) maps proxy-wasm
//! callbacks onto [`exchange::Exchange`] through the [`host_io::HostIo`] trait.
//! Data flows one way: bytes → parsed request → decisions → effects on the host.

pub mod attempt;
pub mod budgets;
pub mod chain;
pub mod config;
pub mod delivery;
pub mod dialect;
pub mod estimate;
pub mod exchange;
pub mod filter;
pub mod guardrails;
pub mod host_io;
pub mod json_edit;
pub mod json_tree;
pub mod json_write;
pub mod metrics;
pub mod misconfigured;
pub mod names;
pub mod pricing;
pub mod provider_request;
pub mod reply;
pub mod response_translation;
pub mod routing;
pub mod sse;
pub mod sse_write;
pub mod stream_cut;
pub mod stream_meter;
pub mod tenant;
pub mod tokenizer;
pub mod translate;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod host;
