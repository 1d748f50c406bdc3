//! Command-line parsing. Hand-rolled: the crate may not add dependencies.

use crate::controls::{Controls, KEYS};

pub const USAGE: &str = "\
tollgate-mock: a deterministic mock of the OpenAI (Chat Completions, Responses,
Embeddings) and Anthropic (Messages) APIs

USAGE:
    tollgate-mock [--listen ADDR] [--name NAME] [--require-key KEY]
                  [--fault KEY=VALUE]... [--quiet]

OPTIONS:
    --listen ADDR        address to listen on (default 127.0.0.1:18080; port 0
                         picks a free port). Once bound, prints one line:
                         `tollgate-mock listening on IP:PORT`
    --name NAME          echoed in an `x-mock-name` header on every response
    --require-key KEY    401 unless `Authorization: Bearer KEY` (OpenAI paths),
                         or `x-api-key: KEY` / `Authorization: Bearer KEY`
                         (Anthropic paths; recent SDKs send the latter)
    --fault KEY=VALUE    default for the `x-mock-KEY` request header, for every
                         request (a header still wins); repeatable
    --quiet              no per-request log lines on stderr
    -h, --help           print this help

ENDPOINTS:
    POST */chat/completions   OpenAI Chat Completions (stream or not, tools)
    POST */responses          OpenAI Responses (stream or not, function tools)
    POST */embeddings         OpenAI Embeddings (float or base64, dimensions)
    POST */messages           Anthropic Messages (stream or not, tools)
    GET  */models             OpenAI model list
    GET  /_mock/health        200 ok
    GET  /_mock/last          the last non-/_mock request as JSON
    GET  /_mock/usage         the usage of every answer sent, totals and by model (DELETE resets)

KNOBS (x-mock-KEY header or --fault KEY=VALUE):
    status=CODE               error in the endpoint's dialect (none clears)
    retry-after=SECS          retry-after on 429/503 (default 1)
    first-byte-delay-ms=N     sleep before the response
    chunk-delay-ms=N          sleep between SSE events
    reset-after-events=N      TCP RST after N SSE events (non-streaming: after
                              the head and half the body)
    omit-usage=1              no usage in the response (Responses: usage null)
    body=html                 HTML error page (status defaults to 502)
    served-model=NAME         the model reported in the response
    cached-tokens=N           OpenAI prompt_tokens_details.cached_tokens
                              (Responses: input_tokens_details.cached_tokens)
    reasoning-tokens=N        OpenAI completion_tokens_details.reasoning_tokens
                              (Responses: output_tokens_details.reasoning_tokens)
    cache-read-tokens=N       Anthropic cache_read_input_tokens
    cache-write-tokens=N      Anthropic cache_creation_input_tokens
    reply=echo                reply with the text of the last user message
                              (Responses: a string input or the last user
                              message's input_text parts; one token per word;
                              ignores max_tokens and tools; stop / end_turn /
                              completed; not for embeddings)
    delta-bytes=N             stream text in deltas of at most N bytes (N >= 1),
                              never inside a UTF-8 character; default one
                              delta per word
";

#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub name: Option<String>,
    pub require_key: Option<String>,
    /// Knob defaults from `--fault`.
    pub defaults: Controls,
    pub quiet: bool,
}

#[derive(Debug)]
pub enum Command {
    /// Boxed: the knob defaults make it far larger than `Help`.
    Serve(Box<Config>),
    Help,
}

/// Parses the arguments after the program name; `--opt value` and
/// `--opt=value` are both accepted.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = Config {
        listen: "127.0.0.1:18080".to_owned(),
        name: None,
        require_key: None,
        defaults: Controls::default(),
        quiet: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = || inline_value.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quiet" => config.quiet = true,
            "--listen" => config.listen = value()?,
            "--name" => config.name = Some(header_safe("--name", value()?)?),
            "--require-key" => config.require_key = Some(value()?),
            "--fault" => add_fault(&mut config.defaults, &value()?)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Command::Serve(Box::new(config)))
}

fn add_fault(defaults: &mut Controls, spec: &str) -> Result<(), String> {
    let (key, value) = spec.split_once('=').ok_or_else(|| format!("--fault expects KEY=VALUE, got {spec:?}"))?;
    let key = key.strip_prefix("x-mock-").unwrap_or(key);
    match defaults.set(key, value) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("unknown --fault key {key:?}; known keys: {}", KEYS.join(", "))),
        Err(message) => Err(format!("--fault {key}: {message}")),
    }
}

/// The name goes into a response header, so it must not break the header.
fn header_safe(flag: &str, value: String) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err(format!("{flag} must not contain control characters"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn all_options_are_parsed_in_both_spellings() {
        let command = parse(args(&[
            "--listen=127.0.0.1:0",
            "--name",
            "upstream-a",
            "--require-key",
            "sk-test",
            "--fault",
            "status=429",
            "--fault=x-mock-chunk-delay-ms=5",
            "--fault",
            "reply=echo",
            "--fault=delta-bytes=4",
            "--quiet",
        ]))
        .unwrap();
        let Command::Serve(config) = command else { panic!("expected a config") };
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.name.as_deref(), Some("upstream-a"));
        assert_eq!(config.require_key.as_deref(), Some("sk-test"));
        assert_eq!(config.defaults.status, Some(429));
        assert_eq!(config.defaults.chunk_delay_ms, 5);
        assert!(config.defaults.echo);
        assert_eq!(config.defaults.delta_bytes, Some(4));
        assert!(config.quiet);
    }

    #[test]
    fn mistakes_are_reported_instead_of_ignored() {
        assert!(parse(args(&["--fault", "nope=1"])).is_err());
        assert!(parse(args(&["--fault", "status"])).is_err());
        assert!(parse(args(&["--fault", "reply=sentence"])).is_err());
        assert!(parse(args(&["--fault", "delta-bytes=0"])).is_err());
        assert!(parse(args(&["--listen"])).is_err());
        assert!(parse(args(&["--bogus"])).is_err());
        assert!(parse(args(&["--name", "a\r\nb"])).is_err());
        assert!(matches!(parse(args(&["--help"])), Ok(Command::Help)));
    }
}
