//! `log` records to the proxy's log, and a panic hook that reports at critical level with the
//! context that was running, so a dead VM leaves a trace naming the request.

use std::cell::Cell;

use super::abi;

const CRITICAL: u32 = 5;

struct ProxyLogger;

static LOGGER: ProxyLogger = ProxyLogger;

thread_local! {
    /// The context whose callback is running, for the panic report.
    static CURRENT_CONTEXT: Cell<u32> = const { Cell::new(0) };
}

impl log::Log for ProxyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

pub fn install() {
    // A second install in the same VM only fails to replace the first, which is fine.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        let context = CURRENT_CONTEXT.with(Cell::get);
        abi::log(CRITICAL, &format!("#{context} tollgate panicked: {info}"));
    }));
}

pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

pub fn enter_context(id: u32) {
    CURRENT_CONTEXT.with(|c| c.set(id));
}
