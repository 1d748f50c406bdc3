//! `tollgate translate`: a debugging tool (documented in the README, not in the usage text)
//! that runs the translation module on stdin, streams included, chunk by chunk as they arrive.

use std::io::{Read, Write};
use std::process::ExitCode;

use tollgate::translate::{self, AnthropicToOpenAiStream, OpenAiToAnthropicStream, SseTranslator, TranslateError};

const TRANSLATE_USAGE: &str = "usage: tollgate translate --from KIND --to KIND [options] < input > output

kinds (in pairs):
  openai-chat-request   <-> anthropic-request
  openai-chat-response  <-> anthropic-response
  openai-chat-stream    <-> anthropic-stream
  openai-error          <-> anthropic-error

options:
  --model M           requests: the upstream model (default: the request's own);
                      responses and streams: the model name shown to the client
  --max-tokens N      max_tokens when an OpenAI request sets none (default 4096)
  --created N         the `created` time of OpenAI responses and chunks (default 0)
  --include-usage     OpenAI streams: end with the usage chunk
  --status N          errors: the upstream's HTTP status (the client's is printed on stderr)
  --max-event-bytes N streams: the largest upstream event (default 1048576)";

struct TranslateArgs<'a> {
    from: &'a str,
    to: &'a str,
    model: Option<&'a str>,
    max_tokens: u32,
    created: u64,
    include_usage: bool,
    status: Option<u16>,
    max_event_bytes: usize,
}

fn parse_translate_args<'a>(args: &[&'a str]) -> Result<TranslateArgs<'a>, String> {
    let mut parsed = TranslateArgs {
        from: "",
        to: "",
        model: None,
        max_tokens: 4096,
        created: 0,
        include_usage: false,
        status: None,
        max_event_bytes: 1 << 20,
    };
    let mut rest = args.iter();
    while let Some(&flag) = rest.next() {
        if flag == "--include-usage" {
            parsed.include_usage = true;
            continue;
        }
        let value = *rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| value.parse::<u64>().map_err(|_| format!("{what} must be a number, not {value:?}"));
        match flag {
            "--from" => parsed.from = value,
            "--to" => parsed.to = value,
            "--model" => parsed.model = Some(value),
            "--max-tokens" => parsed.max_tokens = u32::try_from(number(flag)?).map_err(|e| e.to_string())?,
            "--created" => parsed.created = number(flag)?,
            "--status" => parsed.status = Some(u16::try_from(number(flag)?).map_err(|e| e.to_string())?),
            "--max-event-bytes" => {
                parsed.max_event_bytes = usize::try_from(number(flag)?).map_err(|e| e.to_string())?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}

pub fn run(args: &[&str]) -> ExitCode {
    let args = match parse_translate_args(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n\n{TRANSLATE_USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match (args.from, args.to) {
        ("anthropic-stream", "openai-chat-stream") => {
            let inner = AnthropicToOpenAiStream::new(args.model, args.created, args.include_usage);
            return pipe_stream(SseTranslator::new(inner, args.max_event_bytes));
        }
        ("openai-chat-stream", "anthropic-stream") => {
            return pipe_stream(SseTranslator::new(OpenAiToAnthropicStream::new(args.model), args.max_event_bytes));
        }
        (from, to) => read_stdin().map(|input| whole_body(&args, from, to, &input)),
    };
    match result {
        Ok(Some(Ok(translated))) => {
            for note in &translated.notes {
                eprintln!("note: {note}");
            }
            write_stdout(&translated.body)
        }
        Ok(Some(Err(error))) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Ok(None) => {
            eprintln!("cannot translate {} to {}\n\n{TRANSLATE_USAGE}", args.from, args.to);
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("cannot read stdin: {err}");
            ExitCode::from(2)
        }
    }
}

/// Requests, responses and errors: one whole body in, one out. `None` for an unknown pair.
fn whole_body(
    args: &TranslateArgs,
    from: &str,
    to: &str,
    input: &[u8],
) -> Option<Result<translate::Translated, TranslateError>> {
    let own_model = || {
        serde_json::from_slice::<serde_json::Value>(input)
            .ok()
            .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_default()
    };
    let upstream_model = args.model.map(str::to_string).unwrap_or_else(own_model);
    let error = |reply: tollgate::reply::Reply| {
        eprintln!("status: {}", reply.status);
        Ok(translate::Translated { body: reply.body, notes: Vec::new() })
    };
    let status = args.status.unwrap_or(500);
    Some(match (from, to) {
        ("openai-chat-request", "anthropic-request") => {
            translate::openai_chat_to_anthropic(input, &upstream_model, args.max_tokens)
        }
        ("anthropic-request", "openai-chat-request") => translate::anthropic_to_openai_chat(input, &upstream_model),
        ("anthropic-response", "openai-chat-response") => {
            translate::anthropic_response_to_openai_chat(input, args.model, args.created)
        }
        ("openai-chat-response", "anthropic-response") => {
            translate::openai_chat_response_to_anthropic(input, args.model)
        }
        ("anthropic-error", "openai-error") => error(translate::anthropic_error_to_openai(status, input)),
        ("openai-error", "anthropic-error") => error(translate::openai_error_to_anthropic(status, input)),
        _ => return None,
    })
}

fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin().lock().read_to_end(&mut input)?;
    Ok(input)
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cannot write stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Streams: each chunk read from stdin is translated and written at once, so a live stream
/// piped in (`curl -N … | tollgate translate …`) comes out live.
fn pipe_stream<T: translate::EventTranslator>(mut translator: SseTranslator<T>) -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                eprintln!("cannot read stdin: {err}");
                return ExitCode::from(2);
            }
        };
        let output = translator.feed(buffer.get(..read).unwrap_or_default());
        if let Err(err) = stdout.write_all(&output).and_then(|()| stdout.flush()) {
            eprintln!("cannot write stdout: {err}");
            return ExitCode::FAILURE;
        }
    }
    let output = translator.finish();
    drop(stdout);
    write_stdout(&output)
}
