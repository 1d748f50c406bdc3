//! The root context: loads the configuration once per filter instance and creates one
//! `HttpFilter` per request.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::http::HttpFilter;
use super::proxy_io::{Faults, HostState};
use super::{abi, logger};
use crate::budgets::lease;
use crate::budgets::ledger;
use crate::budgets::redis;
use crate::budgets::{RedisStore, Store};
use crate::config::{self, Policy};
use crate::tokenizer;

pub struct FilterRoot {
    loaded: Loaded,
    host: Rc<HostState>,
    /// The Redis store settlements go to, when budgets use it.
    redis: Option<RedisStore>,
    /// Leases: when idle slices were last looked for (milliseconds of the host's clock).
    last_sweep_ms: u64,
}

/// How often queued settlements are sent to Redis.
const SETTLEMENT_TICK_MS: u32 = 20;
/// Leases: idle slices are looked for at most this often (each is one shared-data read).
const SWEEP_MS: u64 = 100;

/// What `on_configure` left for the requests.
#[derive(Clone)]
pub enum Loaded {
    /// Not configured yet: requests pass untouched.
    Nothing,
    Policy(Rc<Policy>),
    /// Kong only: the configuration failed; every request gets a 500 naming the field.
    Refused(Rc<str>),
}

impl FilterRoot {
    pub fn new() -> Self {
        FilterRoot { loaded: Loaded::Nothing, host: Rc::new(HostState::default()), redis: None, last_sweep_ms: 0 }
    }
}

/// Whether this root context runs on Kong's host, asked only when a configuration failed.
/// Property reads outside a request can crash Kong 3.9's worker, except `plugin_root_id`, which
/// its host answers there with a context number (`"0"`); Envoy answers the configured `root_id`
/// (`tollgate` in the shipped configurations).
fn on_kong() -> bool {
    abi::get_property(&["plugin_root_id"])
        .ok()
        .flatten()
        .is_some_and(|id| !id.is_empty() && id.iter().all(u8::is_ascii_digit))
}

impl Context for FilterRoot {
    /// A settlement's answer.
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let (status, body) = super::proxy_io::call_answer(body_size);
        let now_ms = abi::now_nanos() / 1_000_000;
        match self.host.outbox.borrow_mut().answered(token_id, status, &body, now_ms) {
            Ok(None) => {}
            Ok(Some(retry)) => log::warn!("budget_settlement_retry {retry}"),
            Err(gave_up) => log::error!("budget_settlement_dropped {gave_up}"),
        }
    }
}

impl RootContext for FilterRoot {
    /// Builds the tokenizer tables once per VM, so that no request pays for them.
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let started = std::time::Instant::now();
        if tokenizer::warm_up() {
            log::info!("token counting tables built in {} ms", started.elapsed().as_millis());
        } else {
            log::error!("token counting tables could not be built; counts fall back to bytes / 4");
        }
        true
    }

    /// Read no properties here: on Kong, property reads outside a request crash the worker.
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(status) => {
                log::error!("cannot read the plugin configuration (status {status})");
                return false;
            }
        };
        let started = std::time::Instant::now();
        match config::compile(&bytes) {
            Ok(policy) => {
                logger::set_level(policy.log_level);
                log::info!(
                    "tollgate: configuration loaded ({} bytes in {} ms)",
                    bytes.len(),
                    started.elapsed().as_millis()
                );
                for note in &policy.load_notes {
                    log::warn!("tollgate: {note}");
                }
                let faults = std::env::var(Faults::VARIABLE).map(|list| Faults::parse(&list)).unwrap_or_default();
                if faults.any() {
                    log::warn!("tollgate: {} is set: refusing hostcalls on purpose ({faults:?})", Faults::VARIABLE);
                }
                self.host.set_faults(faults);
                let leased = matches!(&policy.budgets.store, Store::Redis(store) if store.lease.is_some());
                if !policy.budgets.is_empty() && (policy.budgets.store == Store::Embedded || leased) {
                    // The counters' creation lock must exist before any request takes it.
                    if let Err(err) = ledger::prepare(&mut RootShared) {
                        log::error!("tollgate: budgets: the shared data cannot be written ({})", err.0);
                    }
                }
                if let Store::Redis(store) = &policy.budgets.store {
                    // Settlements go to Redis from here, on a tick, and are retried until it has them.
                    self.redis = Some(store.clone());
                    if let Err(status) = abi::set_tick_period_ms(SETTLEMENT_TICK_MS) {
                        log::error!("tollgate: budgets: no tick for settlements (status {status})");
                    }
                }
                self.loaded = Loaded::Policy(Rc::new(policy));
                true
            }
            Err(err) if on_kong() => {
                // Refusing here would leave the nginx worker dead ("cannot be respawned"): load,
                // and answer every request with the error instead.
                log::error!("{err} (every request through this filter is answered 500 until it is fixed)");
                self.loaded = Loaded::Refused(Rc::from(err.to_string()));
                true
            }
            Err(err) => {
                log::error!("{err}");
                false
            }
        }
    }

    /// Sends the settlements that are due.
    fn on_tick(&mut self) {
        let Some(store) = &self.redis else { return };
        let now_ms = abi::now_nanos() / 1_000_000;
        let now_secs = i64::try_from(now_ms / 1_000).unwrap_or(i64::MAX);
        if let Some(lease) = &store.lease {
            if now_ms.saturating_sub(self.last_sweep_ms) >= SWEEP_MS {
                self.last_sweep_ms = now_ms;
                self.give_back_idle_slices(lease.idle_ms, now_ms);
            }
        }
        let due = self.host.outbox.borrow_mut().due(now_ms);
        for (settlement, first_ms) in due {
            let call = settlement.call(store, now_secs);
            match super::proxy_io::dispatch(&call) {
                Ok(token) => self.host.outbox.borrow_mut().sent(token, settlement, first_ms, call.callback),
                Err(err) => {
                    log::warn!("budget_settlement_unsent op={} detail={}", settlement.op(), err.detail);
                    self.host.outbox.borrow_mut().unsent(settlement, first_ms, now_ms);
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Always a context (the SDK panics on None); without a policy it passes everything.
        Some(Box::new(HttpFilter::new(context_id, self.loaded.clone(), self.host.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl FilterRoot {
    /// Leases: slices this worker topped up that no request used for `idle_ms` (or whose window
    /// ended) go back to Redis through the settlement queue; keys of ended windows are forgotten.
    fn give_back_idle_slices(&self, idle_ms: u64, now_ms: u64) {
        let keys: Vec<String> = self.host.lease_keys.borrow().iter().cloned().collect();
        let mut back = Vec::new();
        for key in keys {
            match lease::reclaim(&mut RootShared, &key, now_ms, idle_ms) {
                Ok(reclaimed) => {
                    if let Some((counter, amount)) = reclaimed.back {
                        back.push((counter, -i128::from(amount)));
                    }
                    if reclaimed.ended {
                        self.host.lease_keys.borrow_mut().remove(&key);
                    }
                }
                Err(err) => log::warn!("budget_slice_unusable detail={}", err.0),
            }
        }
        if !back.is_empty() {
            let now_secs = i64::try_from(now_ms / 1_000).unwrap_or(i64::MAX);
            let settlement = redis::adjustment(back, now_secs);
            if let Some(dropped) = self.host.outbox.borrow_mut().push(settlement, now_ms) {
                log::error!("budget_settlement_dropped op={dropped} reason=queue_full");
            }
        }
    }
}

/// The proxy's shared data from the root context (no request's `HostIo` exists there).
struct RootShared;

impl ledger::SharedData for RootShared {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        abi::get_shared_data(key).map_err(|status| format!("get shared data status {status}"))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), ledger::SetError> {
        abi::set_shared_data(key, value, cas).map_err(|status| match status {
            abi::STATUS_CAS_MISMATCH => ledger::SetError::Mismatch,
            other => ledger::SetError::Failed(format!("set shared data status {other}")),
        })
    }
}
