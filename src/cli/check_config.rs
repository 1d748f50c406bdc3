//! `tollgate check-config`: the filter's own configuration parser, before deployment.

use std::process::ExitCode;

pub fn run(path: &str, skip_env: bool) -> ExitCode {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("{path}: cannot read: {err}");
            return ExitCode::from(2);
        }
    };
    let env =
        |name: &str| if skip_env { Some("placeholder-not-a-secret".to_string()) } else { std::env::var(name).ok() };
    match tollgate::config::compile_with_env(&bytes, &env) {
        Ok(policy) => {
            for note in &policy.load_notes {
                eprintln!("{path}: {note}");
            }
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{path}: {err}");
            ExitCode::FAILURE
        }
    }
}
