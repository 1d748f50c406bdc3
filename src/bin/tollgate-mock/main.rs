//! `tollgate-mock`: a deterministic mock of the OpenAI Chat Completions,
//! Responses and Embeddings APIs and the Anthropic Messages API, for
//! `make run`, end-to-end tests through a real Envoy, and benchmarks. Std-only HTTP/1.1 so there is no runtime to tune;
//! see `cli::USAGE` for the endpoints and `x-mock-*` knobs.

mod answer;
mod anthropic;
mod anthropic_wire;
mod cli;
mod controls;
mod dialect;
mod embeddings;
mod http_request;
mod http_response;
mod openai;
mod openai_stream;
mod openai_wire;
mod responses;
mod responses_stream;
mod responses_wire;
mod server;
mod tally;
#[cfg(test)]
mod test_calls;
mod text;
mod tools;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Serve(config)) => *config,
        Ok(cli::Command::Help) => {
            let _ = std::io::stdout().write_all(cli::USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            let _ = write!(std::io::stderr(), "tollgate-mock: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(config.listen.as_str()) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "tollgate-mock: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "tollgate-mock: cannot read the bound address: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Tests and scripts wait for exactly this line to learn the port.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "tollgate-mock listening on {address}");
    let _ = stdout.flush();
    drop(stdout);
    server::serve(listener, config);
    ExitCode::SUCCESS
}
