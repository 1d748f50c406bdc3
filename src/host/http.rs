//! One HTTP stream: each proxy-wasm callback becomes a call on `Exchange`, and its `Flow`
//! becomes an `Action`. Nothing is decided here.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::logger;
use super::proxy_io::{HostState, ProxyIo};
use super::root::Loaded;
use crate::filter::Filter;
use crate::host_io::Flow;
use crate::misconfigured::Misconfigured;

pub struct HttpFilter {
    id: u32,
    filter: Option<Filter>,
    io: ProxyIo,
}

impl HttpFilter {
    pub fn new(id: u32, loaded: Loaded, host: Rc<HostState>) -> Self {
        let filter = match loaded {
            Loaded::Nothing => None,
            Loaded::Policy(policy) => Some(Filter::new(id, policy)),
            Loaded::Refused(error) => Some(Filter::Misconfigured(Misconfigured::new(id, error))),
        };
        HttpFilter { id, filter, io: ProxyIo::new(host) }
    }

    fn drive(&mut self, step: impl FnOnce(&mut Filter, &mut ProxyIo) -> Flow) -> Action {
        logger::enter_context(self.id);
        let Some(filter) = self.filter.as_mut() else {
            return Action::Continue;
        };
        match step(filter, &mut self.io) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}

impl Context for HttpFilter {
    /// A budget store's answer (the request waits for it in its body step).
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let (status, body) = super::proxy_io::call_answer(body_size);
        self.drive(|filter, io| {
            filter.on_call_answer(io, token_id, status, &body);
            Flow::Continue
        });
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.io.faults().panic {
            logger::enter_context(self.id);
            #[allow(clippy::panic)] // TOLLGATE_TEST_FAULTS=panic: the test of the panic hook itself
            {
                panic!("TOLLGATE_TEST_FAULTS=panic");
            }
        }
        self.drive(|ex, io| ex.on_request_headers(io, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.drive(|ex, io| ex.on_request_body(io, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.drive(|ex, io| ex.on_request_trailers(io))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.drive(|ex, io| ex.on_response_headers(io, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.drive(|ex, io| ex.on_response_body(io, body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.drive(|ex, io| ex.on_response_trailers(io))
    }

    fn on_log(&mut self) {
        self.drive(|ex, io| {
            ex.on_done(io);
            Flow::Continue
        });
        self.io.note_memory();
    }
}
