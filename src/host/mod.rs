//! The only code that names proxy-wasm. It registers the filter with the SDK's dispatcher and
//! maps each callback onto `Exchange`; hostcalls go through `abi`, which returns statuses
//! instead of panicking as the SDK's helpers do.

mod abi;
mod http;
mod logger;
mod proxy_io;
mod root;

use proxy_wasm::traits::RootContext;

proxy_wasm::main! {{
    logger::install();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::FilterRoot::new()) });
}}
