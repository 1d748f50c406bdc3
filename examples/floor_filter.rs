//! The benchmarks' floor: the least a body-reading LLM filter can do in Envoy, measured in the
//! same run as Tollgate (`make bench`, target `floor`). It holds the request headers until the
//! body is in, copies the body into Wasm; holds a non-streamed answer's headers until its body is
//! in, copies it and sets one header (`x-tollgate-cost-usd: 0`); copies each event of a streamed
//! answer. No parsing, no decisions: what remains of Tollgate's figure above this one is
//! Tollgate's own work and hostcalls.
//!
//! Never loaded by a user: it lives here only to be measured. Built with
//! `scripts/build-wasm.sh --example floor_filter` (a cdylib, like the filter itself).
#![cfg(target_arch = "wasm32")]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Floor { streamed: false }) });
}}

struct Floor {
    streamed: bool,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let content_type = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "content-type").ok().flatten();
        self.streamed = content_type.is_some_and(|t| t.starts_with(b"text/event-stream"));
        if end_of_stream || self.streamed {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.streamed {
            let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size);
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "x-tollgate-cost-usd", Some("0"));
        Action::Continue
    }
}
