//! `tollgate`: the command-line companion of the filter. It runs the filter's own code, so what
//! it accepts is exactly what the filter accepts.

use std::process::ExitCode;

mod cli;

const USAGE: &str = "usage: tollgate check-config FILE [--skip-env]
       tollgate count-tokens --model MODEL < TEXT
       tollgate count-tokens --messages [--model MODEL] < CHAT_REQUEST_JSON
       tollgate cost --model M --input N --output N [--cached-input N] [--cache-write N]
                     [--cache-write-1h N] [--reasoning N] [--audio-input N] [--audio-output N]
                     [--provider NAME] [--config FILE]
       tollgate prices import LITELLM_JSON [--models GLOB]... [--section litellm_prices|prices]
       tollgate report --from ACCESS_LOG [--since TIME] [--until TIME]
                       [--by tenant|model|route|provider] [--csv FILE] [--config FILE]
       tollgate budgets show --url URL [--limit L [--scope S]] [--token-env VAR] [--json]
       tollgate budgets reset --url URL --limit L [--scope S] [--token-env VAR] [--json]

commands:
  count-tokens        count the tokens of the text on stdin for MODEL and print
                      `<count> <exact|approximate> <tokenizer>`; with --messages, read an OpenAI
                      Chat Completions request and print its prompt-token estimate as JSON
                      (--model overrides the request's model)
  check-config FILE   validate a filter configuration (JSON) exactly as the filter does at load;
                      provider keys named by `api_key.env` must be set in this environment, as
                      they must be in the proxy's Wasm VM (--skip-env: assume they are)
  cost                price token counts as the filter does and print the breakdown as JSON.
                      --input counts every prompt token (cache reads, cache writes and audio
                      are parts of it, like OpenAI's prompt_tokens); --output every generated
                      token (reasoning and audio are parts of it). --cache-write is the 5-minute
                      cache write. --config applies a configuration's `prices` and
                      `litellm_prices`; --provider prices the model as sent to that provider
                      (its LiteLLM namespace: `mistral-large-latest` at provider `mistral` is
                      `mistral/mistral-large-latest`), a configured provider with --config
  prices import       convert LiteLLM's model_prices_and_context_window.json as the filter's
                      `litellm_prices` does and print a configuration section to paste:
                      a `litellm_prices` object with the LiteLLM entries of the models matched
                      by --models (globs, `*` any run of characters; default every model), or,
                      with --section prices, a `prices` object in USD per million tokens
                      (flat prices: long-context tiers need litellm_prices). Models that cannot
                      be held exactly are left out and named on standard error
  report              chargeback from Envoy's JSON access log (one usage record per line, as
                      envoy/envoy.yaml prints it; - reads standard input): requests, tokens,
                      exact cost and unpriced requests per tenant (default), model, route or
                      provider, with totals. --since/--until: RFC 3339 times (or dates),
                      from included, until excluded. --csv FILE also writes the rows as CSV
                      (--csv - prints only the CSV). --config FILE adds spend against budget:
                      per USD limit and scope, what the records settled in the limit's window
                      (the one --until ends in, else the current one), the budget, the share used
  budgets             read (show) or reset a budget's counters through the filter's admin API
                      (budgets.admin), whichever store the proxy uses. --url is the admin path
                      (http://127.0.0.1:10000/tollgate/budgets); the token is read from
                      $TOLLGATE_ADMIN_TOKEN (--token-env VAR to name another). Without --scope a
                      reset empties every counter of the limit. --json prints the API's answer";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check-config", path] => cli::check_config::run(path, false),
        ["check-config", path, "--skip-env"] | ["check-config", "--skip-env", path] => {
            cli::check_config::run(path, true)
        }
        ["cost", options @ ..] => cli::cost::run(options),
        ["prices", "import", options @ ..] => cli::prices::import(options),
        ["count-tokens", "--model", model] => cli::count_tokens::count_text(model),
        ["count-tokens", "--messages"] => cli::count_tokens::count_messages(None),
        ["count-tokens", "--messages", "--model", model] | ["count-tokens", "--model", model, "--messages"] => {
            cli::count_tokens::count_messages(Some(model))
        }
        ["report", options @ ..] => cli::report::run(options),
        ["budgets", options @ ..] => cli::budgets::run(options),
        ["translate", rest @ ..] => cli::translate::run(rest),
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
