//! `tollgate`: the command-line companion of the filter. It runs the filter's own code, so what
//! it accepts is exactly what the filter accepts.

use std::process::ExitCode;

const USAGE: &str = "usage: tollgate check-config FILE [--skip-env]

commands:
  check-config FILE   validate a filter configuration (JSON) exactly as the filter does at load;
                      provider keys named by `api_key.env` must be set in this environment, as
                      they must be in the proxy's Wasm VM (--skip-env: assume they are)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check-config", path] => check_config(path, false),
        ["check-config", path, "--skip-env"] | ["check-config", "--skip-env", path] => check_config(path, true),
        ["-h"] | ["--help"] | ["help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(path: &str, skip_env: bool) -> ExitCode {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("{path}: cannot read: {err}");
            return ExitCode::from(2);
        }
    };
    let env = |name: &str| if skip_env { Some("placeholder".to_string()) } else { std::env::var(name).ok() };
    match tollgate::config::compile_with_env(&bytes, &env) {
        Ok(_) => {
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{path}: {err}");
            ExitCode::FAILURE
        }
    }
}
