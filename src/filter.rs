//! What runs for one HTTP stream, by the filter's position: on the listener (`downstream`, the
//! default) a whole exchange; as an Envoy upstream HTTP filter (`upstream`) one attempt of a
//! fallback chain. The host layer drives either through the same callbacks.

use std::rc::Rc;

use crate::attempt::Attempt;
use crate::config::{Policy, Position};
use crate::exchange::admin::BudgetAdmin;
use crate::exchange::Exchange;
use crate::host_io::{Flow, HostIo};
use crate::misconfigured::Misconfigured;

pub enum Filter {
    Exchange(Box<Exchange>),
    Attempt(Box<Attempt>),
    /// The configuration did not load (Kong only: Envoy refuses it at load).
    Misconfigured(Misconfigured),
    /// A request to the budgets' admin API, answered by the filter.
    Admin(Box<BudgetAdmin>),
}

impl Filter {
    pub fn new(id: u32, policy: Rc<Policy>) -> Self {
        match policy.position {
            Position::Downstream => Filter::Exchange(Box::new(Exchange::new(id, policy))),
            Position::Upstream => Filter::Attempt(Box::new(Attempt::new(id, policy))),
        }
    }

    pub fn on_request_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        if let Filter::Exchange(ex) = self {
            if let Some(admin) = BudgetAdmin::claim(ex.id(), ex.policy(), io) {
                *self = Filter::Admin(Box::new(admin));
            }
        }
        match self {
            Filter::Exchange(ex) => ex.on_request_headers(io, end_of_stream),
            Filter::Attempt(at) => at.on_request_headers(io, end_of_stream),
            Filter::Misconfigured(refusal) => refusal.on_request_headers(io),
            Filter::Admin(admin) => admin.on_request_headers(io),
        }
    }

    pub fn on_request_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        match self {
            Filter::Exchange(ex) => ex.on_request_body(io, body_size, end_of_stream),
            Filter::Attempt(at) => at.on_request_body(io, body_size, end_of_stream),
            Filter::Misconfigured(_) => Flow::Continue,
            Filter::Admin(admin) => admin.on_request_body(),
        }
    }

    pub fn on_request_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match self {
            Filter::Exchange(ex) => ex.on_request_trailers(io),
            Filter::Attempt(at) => at.on_request_trailers(io),
            Filter::Misconfigured(_) => Flow::Continue,
            Filter::Admin(admin) => admin.on_request_body(),
        }
    }

    pub fn on_response_headers(&mut self, io: &mut dyn HostIo, end_of_stream: bool) -> Flow {
        match self {
            Filter::Exchange(ex) => ex.on_response_headers(io, end_of_stream),
            Filter::Attempt(at) => at.on_response_headers(io, end_of_stream),
            Filter::Misconfigured(_) | Filter::Admin(_) => Flow::Continue,
        }
    }

    pub fn on_response_body(&mut self, io: &mut dyn HostIo, body_size: usize, end_of_stream: bool) -> Flow {
        match self {
            Filter::Exchange(ex) => ex.on_response_body(io, body_size, end_of_stream),
            Filter::Attempt(at) => at.on_response_body(io, body_size, end_of_stream),
            Filter::Misconfigured(_) | Filter::Admin(_) => Flow::Continue,
        }
    }

    pub fn on_response_trailers(&mut self, io: &mut dyn HostIo) -> Flow {
        match self {
            Filter::Exchange(ex) => ex.on_response_trailers(io),
            Filter::Attempt(at) => at.on_response_trailers(io),
            Filter::Misconfigured(_) | Filter::Admin(_) => Flow::Continue,
        }
    }

    /// The answer to a call the request made (a budget reservation).
    pub fn on_call_answer(&mut self, io: &mut dyn HostIo, token: u32, status: Option<u16>, body: &[u8]) {
        match self {
            Filter::Exchange(ex) => ex.on_call_answer(io, token, status, body),
            Filter::Admin(admin) => admin.on_call_answer(io, token, status, body),
            _ => {}
        }
    }

    pub fn on_done(&mut self, io: &mut dyn HostIo) {
        if let Filter::Exchange(ex) = self {
            ex.on_done(io);
        }
    }
}
