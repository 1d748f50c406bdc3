//! A filter whose configuration could not be loaded, where refusing the configuration would take
//! the proxy down (Kong: a failing `on_configure` kills the nginx worker for good). It loads
//! anyway and answers every request with a 500 in the client's dialect that names the field, so
//! the node keeps serving its other routes and the operator sees what to fix.

use crate::dialect::Api;
use crate::host_io::{Flow, HostIo};

/// The `code` of the error every request gets.
pub const CODE: &str = "gateway_misconfigured";

#[derive(Debug)]
pub struct Misconfigured {
    id: u32,
    /// The configuration error, field first (`guardrails.policies[0]…: …`).
    error: std::rc::Rc<str>,
}

impl Misconfigured {
    pub fn new(id: u32, error: std::rc::Rc<str>) -> Self {
        Misconfigured { id, error }
    }

    /// Every request is answered here, before anything reaches an upstream.
    pub fn on_request_headers(&mut self, io: &mut dyn HostIo) -> Flow {
        let path = io.request_header(":path").unwrap_or_else(|| "/".to_string());
        let api = Api::detect_path(&path).unwrap_or(Api::OpenAiChat);
        let message = format!("The gateway's configuration could not be loaded: {}", self.error);
        let reply = api.error_reply(500, CODE, None, &message);
        log::debug!("#{} refused reason=misconfigured", self.id);
        let headers = [("content-type", "application/json")];
        if let Err(err) = io.send_reply(reply.status, &headers, &reply.body) {
            log::error!("#{} misconfigured_reply_refused detail={}", self.id, err.detail);
        }
        Flow::Pause
    }
}
