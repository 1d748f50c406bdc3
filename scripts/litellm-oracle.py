#!/usr/bin/env python3
"""Expected costs from LiteLLM itself, for tests/pricing_litellm.rs.

Run with the pricing venv (scripts/setup-pricing-venv.sh installs the pinned litellm there):

  .pricing-venv/bin/python scripts/litellm-oracle.py     writes tests/fixtures/pricing/litellm_costs.json

Each case is a model and a usage object exactly as the provider returns it (OpenAI Chat
Completions shape, or Anthropic Messages shape). LiteLLM turns the raw usage into its Usage
with its own code (Usage(**raw) for OpenAI-shaped usage, AnthropicConfig.calculate_usage for
Anthropic's) and prices it with litellm.cost_per_token; the Rust test reads the same raw usage
with Tollgate's dialect code and prices it with Tollgate's table. So the comparison covers the
difference in what the providers' numbers mean: Anthropic's input_tokens exclude cache reads and
writes, OpenAI's prompt_tokens include cached tokens, and each side normalises in its own way.

LiteLLM's float total (prompt cost + completion cost, as completion_cost adds them) is stored
as repr() text and as the nearest whole pico-USD.
"""

import datetime
import json
import os
import pathlib
import sys
from decimal import ROUND_HALF_EVEN, Decimal

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # the price list inside the wheel, never the network

import litellm  # noqa: E402
from litellm.types.utils import ModelResponse, Usage  # noqa: E402

PINNED = "1.104.5"
ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "pricing" / "litellm_costs.json"


def openai(prompt, completion, cached=None, reasoning=None, audio_in=None, audio_out=None):
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    details = {k: v for k, v in (("cached_tokens", cached), ("audio_tokens", audio_in)) if v is not None}
    if details:
        usage["prompt_tokens_details"] = details
    details = {k: v for k, v in (("reasoning_tokens", reasoning), ("audio_tokens", audio_out)) if v is not None}
    if details:
        usage["completion_tokens_details"] = details
    return usage


def anthropic(input_tokens, output, read=None, write=None, write_5m=None, write_1h=None):
    usage = {"input_tokens": input_tokens, "output_tokens": output}
    if read is not None:
        usage["cache_read_input_tokens"] = read
    if write is not None or write_5m is not None or write_1h is not None:
        usage["cache_creation_input_tokens"] = write if write is not None else (write_5m or 0) + (write_1h or 0)
    if write_5m is not None or write_1h is not None:
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": write_5m or 0, "ephemeral_1h_input_tokens": write_1h or 0}
    return usage


# (name, model as Tollgate and LiteLLM see it, LiteLLM provider, api, raw usage)
CASES = [
    # OpenAI
    ("openai gpt-4o plain", "gpt-4o", "openai", "openai.chat", openai(1234, 567)),
    ("openai gpt-4o cached", "gpt-4o", "openai", "openai.chat", openai(20480, 311, cached=19200)),
    ("openai gpt-4o-mini snapshot", "gpt-4o-mini-2024-07-18", "openai", "openai.chat", openai(8, 16)),
    ("openai gpt-4o-mini cached", "gpt-4o-mini", "openai", "openai.chat", openai(3000, 1000, cached=1536)),
    ("openai prefixed model", "openai/gpt-4o", "openai", "openai.chat", openai(777, 333, cached=128)),
    ("openai gpt-4.1 cached", "gpt-4.1", "openai", "openai.chat", openai(150000, 2048, cached=120064)),
    ("openai gpt-4.1-nano", "gpt-4.1-nano", "openai", "openai.chat", openai(99999, 8191)),
    ("openai gpt-5 reasoning", "gpt-5", "openai", "openai.chat", openai(5000, 4000, cached=1024, reasoning=3500)),
    ("openai gpt-5-mini reasoning", "gpt-5-mini", "openai", "openai.chat", openai(12345, 6789, reasoning=6000)),
    ("openai o3 reasoning", "o3", "openai", "openai.chat", openai(4321, 9876, cached=2048, reasoning=9000)),
    ("openai o4-mini reasoning", "o4-mini", "openai", "openai.chat", openai(100, 2000, reasoning=1984)),
    ("openai gpt-5.4 below 272k", "gpt-5.4", "openai", "openai.chat", openai(272000, 1000, cached=100000)),
    ("openai gpt-5.4 above 272k", "gpt-5.4", "openai", "openai.chat", openai(272001, 1000, cached=100000, reasoning=500)),
    ("openai gpt-3.5-turbo no cache price", "gpt-3.5-turbo", "openai", "openai.chat", openai(1000, 500, cached=600)),
    ("openai gpt-4o audio preview", "gpt-4o-audio-preview-2024-12-17", "openai", "openai.chat",
     openai(900, 700, audio_in=400, audio_out=650)),
    ("openai gpt-audio", "gpt-audio", "openai", "openai.chat", openai(1500, 2500, cached=256, audio_in=1000, audio_out=2000)),
    ("openai gpt-4o-mini audio", "gpt-4o-mini-audio-preview-2024-12-17", "openai", "openai.chat",
     openai(321, 123, audio_in=300, audio_out=100)),
    ("openai embedding", "text-embedding-3-small", "openai", "openai.chat", openai(8000, 0)),
    ("openai embedding large", "text-embedding-3-large", "openai", "openai.chat", openai(123457, 0)),
    ("azure gpt-4o", "azure/gpt-4o", "azure", "openai.chat", openai(2222, 1111, cached=1024)),
    ("azure gpt-4.1", "azure/gpt-4.1", "azure", "openai.chat", openai(4096, 512)),
    # Anthropic (Messages usage: input_tokens exclude cache reads and writes)
    ("anthropic sonnet-4.5 plain", "claude-sonnet-4-5", "anthropic", "anthropic.messages", anthropic(1500, 300)),
    ("anthropic sonnet-4.5 cache read", "claude-sonnet-4-5-20250929", "anthropic", "anthropic.messages",
     anthropic(21, 412, read=18000)),
    ("anthropic sonnet-4.5 cache write total only", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(50, 200, write=4000)),
    ("anthropic sonnet-4.5 cache write 5m", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(50, 200, write_5m=4000)),
    ("anthropic sonnet-4.5 cache write 1h", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(50, 200, write_1h=4000)),
    ("anthropic sonnet-4.5 read and both writes", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(123, 456, read=10000, write_5m=2000, write_1h=3000)),
    ("anthropic sonnet-4.5 at 200k", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(100000, 1000, read=50000, write_5m=50000)),
    ("anthropic sonnet-4.5 above 200k", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(100001, 1000, read=50000, write_5m=50000)),
    ("anthropic sonnet-4.5 above 200k 1h write", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(150000, 2000, read=40000, write_5m=10000, write_1h=30000)),
    ("anthropic haiku-4.5 snapshot", "claude-haiku-4-5-20251001", "anthropic", "anthropic.messages",
     anthropic(3421, 12, read=3400)),
    ("anthropic haiku-4.5 writes", "claude-haiku-4-5", "anthropic", "anthropic.messages",
     anthropic(10, 99, read=1000, write_5m=500, write_1h=250)),
    ("anthropic opus-4.7", "claude-opus-4-7", "anthropic", "anthropic.messages", anthropic(7000, 3000, read=20000)),
    ("anthropic opus-4.5 writes", "claude-opus-4-5-20251101", "anthropic", "anthropic.messages",
     anthropic(800, 1200, read=5000, write_5m=1500)),
    ("anthropic sonnet-4.6", "claude-sonnet-4-6", "anthropic", "anthropic.messages", anthropic(2500, 800, write_1h=6000)),
    ("anthropic prefixed model", "anthropic/claude-haiku-4-5", "anthropic", "anthropic.messages", anthropic(400, 40, read=300)),
    ("bedrock sonnet-4.5", "anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "anthropic.messages",
     anthropic(900, 90, read=9000, write_5m=900)),
    ("bedrock us sonnet-4.5 above 200k", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock", "anthropic.messages",
     anthropic(180000, 500, read=30000, write_1h=1000)),
    ("vertex sonnet-4.5", "vertex_ai/claude-sonnet-4-5", "vertex_ai", "anthropic.messages",
     anthropic(1000, 100, read=2000, write_5m=300, write_1h=200)),
    # Google Gemini (OpenAI-compatible usage)
    ("gemini 2.5-pro below 200k", "gemini/gemini-2.5-pro", "gemini", "openai.chat", openai(200000, 5000, cached=150000)),
    ("gemini 2.5-pro above 200k", "gemini/gemini-2.5-pro", "gemini", "openai.chat", openai(200001, 5000, cached=150000)),
    ("gemini 2.5-pro above 200k reasoning", "gemini/gemini-2.5-pro", "gemini", "openai.chat",
     openai(450000, 9000, reasoning=7000)),
    ("gemini 2.5-flash reasoning", "gemini/gemini-2.5-flash", "gemini", "openai.chat", openai(10000, 3000, reasoning=2500)),
    ("gemini 2.5-flash audio and cache", "gemini/gemini-2.5-flash", "gemini", "openai.chat",
     openai(6000, 700, cached=2000, audio_in=3000)),
    ("gemini 2.5-flash-lite", "gemini/gemini-2.5-flash-lite", "gemini", "openai.chat", openai(33333, 4444, cached=11111)),
    ("gemini 3.1-pro-preview above 200k", "gemini/gemini-3.1-pro-preview", "gemini", "openai.chat",
     openai(333333, 12345, cached=100000, reasoning=10000)),
    ("gemini 3.1-pro-preview below", "gemini/gemini-3.1-pro-preview", "gemini", "openai.chat", openai(12345, 678)),
    # DeepSeek
    ("deepseek chat cache hit", "deepseek/deepseek-chat", "deepseek", "openai.chat", openai(64000, 2000, cached=63000)),
    ("deepseek reasoner", "deepseek/deepseek-reasoner", "deepseek", "openai.chat", openai(5000, 8000, cached=1000, reasoning=6000)),
    ("deepseek v3.2", "deepseek/deepseek-v3.2", "deepseek", "openai.chat", openai(7777, 2222, cached=4444)),
    # xAI: thresholds are inclusive, reasoning is billed as output
    ("xai grok-4.20 below threshold", "xai/grok-4.20", "xai", "openai.chat", openai(199999, 1000, cached=50000)),
    ("xai grok-4.20 at threshold", "xai/grok-4.20", "xai", "openai.chat", openai(200000, 1000, cached=50000)),
    ("xai grok-4.20 above threshold reasoning", "xai/grok-4.20", "xai", "openai.chat",
     openai(250000, 3000, cached=100000, reasoning=2000)),
    ("xai grok-4.20 reasoning", "xai/grok-4.20-0309-reasoning", "xai", "openai.chat", openai(3000, 1500, reasoning=1200)),
    # Groq, Mistral and other OpenAI-compatible providers
    ("groq gpt-oss-120b", "groq/openai/gpt-oss-120b", "groq", "openai.chat", openai(2048, 1024, reasoning=512)),
    ("groq gpt-oss-20b", "groq/openai/gpt-oss-20b", "groq", "openai.chat", openai(4000, 600)),
    ("mistral large", "mistral/mistral-large-latest", "mistral", "openai.chat", openai(9000, 900, cached=3000)),
    ("mistral codestral", "mistral/codestral-latest", "mistral", "openai.chat", openai(1200, 2400)),
    ("mistral embed", "mistral/codestral-embed", "mistral", "openai.chat", openai(5000, 0)),
    ("together minimax", "together_ai/MiniMaxAI/MiniMax-M2.7", "together_ai", "openai.chat", openai(4567, 890)),
    ("fireworks default cache read", "fireworks_ai/accounts/fireworks/models/code-llama-13b", "fireworks_ai",
     "openai.chat", openai(3000, 300, cached=2000)),
    ("openrouter qwen3-max two tiers low", "openrouter/qwen/qwen3-max", "openrouter", "openai.chat", openai(30000, 1000)),
    ("openrouter qwen3-max two tiers high", "openrouter/qwen/qwen3-max", "openrouter", "openai.chat",
     openai(300000, 1000, cached=1000)),
    ("dashscope qwen-turbo reasoning", "dashscope/qwen-turbo", "dashscope", "openai.chat", openai(2000, 3000, reasoning=2500)),
]

# The client's bare model name sent to a provider: LiteLLM is given the name and the provider
# (custom_llm_provider), Tollgate the name and a provider of that name (its LiteLLM namespace is
# the provider's name when some price is keyed "<name>/…", as the filter defaults it).
# (name, bare model, provider, api, raw usage)
BARE_CASES = [
    ("bare mistral large at mistral", "mistral-large-latest", "mistral", "openai.chat", openai(9000, 900, cached=3000)),
    ("bare codestral at mistral", "codestral-latest", "mistral", "openai.chat", openai(1200, 2400)),
    ("bare deepseek chat at deepseek", "deepseek-chat", "deepseek", "openai.chat", openai(64000, 2000, cached=63000)),
    ("bare deepseek reasoner at deepseek", "deepseek-reasoner", "deepseek", "openai.chat",
     openai(5000, 8000, cached=1000, reasoning=6000)),
    ("bare gemini 2.5-pro above 200k at gemini", "gemini-2.5-pro", "gemini", "openai.chat",
     openai(250000, 5000, cached=150000)),
    ("bare gemini 2.5-flash reasoning at gemini", "gemini-2.5-flash", "gemini", "openai.chat",
     openai(10000, 3000, reasoning=2500)),
    ("bare gpt-oss at groq", "openai/gpt-oss-120b", "groq", "openai.chat", openai(2048, 1024, reasoning=512)),
    ("bare grok at xai at threshold", "grok-4.20", "xai", "openai.chat", openai(200000, 1000, cached=50000)),
    # Another provider's bare price must not win: Azure's gpt-4o-mini is dearer than OpenAI's.
    ("bare gpt-4o-mini at azure", "gpt-4o-mini", "azure", "openai.chat", openai(3000, 1000, cached=1536)),
    ("bare gpt-4o at azure", "gpt-4o", "azure", "openai.chat", openai(1234, 567)),
    ("bare deepseek via openrouter", "deepseek/deepseek-chat", "openrouter", "openai.chat", openai(7000, 700)),
    ("bare sonar at perplexity", "perplexity/sonar", "perplexity", "openai.chat", openai(1500, 500)),
    ("bare gpt-4o at openai", "gpt-4o", "openai", "openai.chat", openai(777, 333, cached=128)),
    ("bare claude at anthropic", "claude-sonnet-4-5", "anthropic", "anthropic.messages",
     anthropic(123, 456, read=10000, write_5m=2000)),
]


def one_bare_case_per_provider_prefix():
    """For every provider prefix of src/pricing/prices.json, its first model (by name) that LiteLLM
    prices above zero when given the bare name and the provider: the namespace rule over all of
    LiteLLM's providers, not just the famous ones. Prefixes LiteLLM cannot price that way are named."""
    table = json.loads((ROOT / "src" / "pricing" / "prices.json").read_text())["models"]
    usage = openai(12345, 678)
    by_prefix, missed = {}, []
    for key in sorted(table):
        prefix, _, bare = key.partition("/")
        if not bare or prefix in by_prefix:
            continue
        try:
            prompt, completion = litellm.cost_per_token(
                model=bare, custom_llm_provider=prefix, usage_object=litellm_usage("openai.chat", usage))
        except Exception:  # noqa: BLE001 - LiteLLM raises bare Exceptions for unmapped models
            continue
        if prompt + completion > 0:
            by_prefix[prefix] = (f"bare {bare} at {prefix} (every prefix)", bare, prefix, "openai.chat", usage)
    prefixes = {k.partition("/")[0] for k in table if "/" in k}
    missed = sorted(prefixes - set(by_prefix))
    return [by_prefix[p] for p in sorted(by_prefix)], missed



def litellm_usage(api, raw):
    if api == "anthropic.messages":
        return litellm.AnthropicConfig().calculate_usage(usage_object=raw, reasoning_content=None)
    return Usage(**json.loads(json.dumps(raw)))


def pico(text):
    return int((Decimal(text) * 10**12).to_integral_value(rounding=ROUND_HALF_EVEN))


def main():
    version = litellm.__version__ if hasattr(litellm, "__version__") else None
    from importlib.metadata import version as dist_version

    version = dist_version("litellm")
    if version != PINNED:
        sys.exit(f"litellm {version} installed, {PINNED} pinned: run scripts/setup-pricing-venv.sh")
    every_prefix, missed = one_bare_case_per_provider_prefix()
    bare = BARE_CASES + every_prefix
    names = [c[0] for c in CASES + bare]
    assert len(set(names)) == len(names), "case names are unique"
    cases = []
    for (name, model, provider, api, raw), sent_to_provider in [(c, False) for c in CASES] + [(c, True) for c in bare]:
        prompt, completion = litellm.cost_per_token(
            model=model, custom_llm_provider=provider, usage_object=litellm_usage(api, raw)
        )
        total = prompt + completion
        # completion_cost, LiteLLM's entry point for a whole response, must agree.
        response = ModelResponse(model=model, usage=litellm_usage(api, raw))
        whole = litellm.completion_cost(completion_response=response, model=model, custom_llm_provider=provider)
        if whole != total:
            sys.exit(f"{name}: completion_cost {whole!r} != cost_per_token {total!r}")
        if total <= 0:
            sys.exit(f"{name}: LiteLLM has no price for {model}")
        cases.append({
            "name": name,
            "model": model,
            "litellm_provider": provider,
            "api": api,
            "usage": raw,
            # Tollgate is given the bare model and a provider of this name (None: the model only).
            "tollgate_provider": provider if sent_to_provider else None,
            "litellm": {
                "prompt_cost_usd": repr(prompt),
                "completion_cost_usd": repr(completion),
                "total_usd": repr(total),
                "total_pico_usd": pico(repr(total)),
            },
        })
    doc = {
        "litellm_version": version,
        "generated": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "generated_by": "scripts/litellm-oracle.py",
        "method": "litellm.cost_per_token(model, custom_llm_provider, usage_object) on LiteLLM's own Usage "
        "from the raw provider usage (checked equal to litellm.completion_cost); total_pico_usd is the float "
        "total to the nearest pico-USD. The Rust test rounds both totals half up to whole micro-USD and "
        "requires them equal. Cases with tollgate_provider give Tollgate the bare model and that provider "
        "(priced under its LiteLLM namespace) and LiteLLM the same bare model and custom_llm_provider.",
        "cases": cases,
        "prefixes_litellm_does_not_price_by_bare_name": missed,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(cases)} cases from litellm {version} -> {OUT}")


if __name__ == "__main__":
    main()
