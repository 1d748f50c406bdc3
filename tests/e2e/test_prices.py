"""Prices through a real Envoy: a bare model name sent to a provider is priced under that
provider's LiteLLM namespace (`mistral-large-latest` at provider `mistral` is LiteLLM's
`mistral/mistral-large-latest`), and a LiteLLM price list loaded through configuration
(`litellm_prices`) prices what the built-in table does not.

Expected costs are computed here from LiteLLM's own price file (the pinned release's
model_prices_and_context_window.json, tests/fixtures/pricing/, as LiteLLM ships it), in exact
decimals from the file's text: never from Tollgate's code or tables."""

import gzip
import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from harness import REPO

LITELLM_FILE = REPO / "tests" / "fixtures" / "pricing" / "litellm-1.104.5-model_prices_and_context_window.json.gz"
MESSAGES = [{"role": "user", "content": "Price this answer, please."}]


def litellm_list() -> dict:
    # parse_float=Decimal keeps the digits LiteLLM wrote: its per-token prices, exactly.
    return json.loads(gzip.decompress(LITELLM_FILE.read_bytes()), parse_float=Decimal)


def litellm_cost(entry: dict, usage) -> Decimal:
    """LiteLLM's price of a plain (uncached, untiered) usage: tokens times its per-token prices."""
    assert not (usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens)
    return (Decimal(entry["input_cost_per_token"]) * usage.prompt_tokens
            + Decimal(entry["output_cost_per_token"]) * usage.completion_tokens)


def routed_to_mistral(**extra) -> dict:
    """A `mistral` provider (played by the mock) that serves every `mistral-*` model as named."""
    return {
        "providers": {"mistral": {"dialect": "openai", "cluster": "mock_provider"}},
        "targets": {"mistral": {"provider": "mistral"}},
        "rules": [{"name": "mistral", "match": {"model": "mistral-*"}, "targets": ["mistral"]}],
        **extra,
    }


def chat(proxy, model):
    client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    return raw, raw.parse()


def record_of(proxy, cost_header, timeout=10.0):
    """The usage record the access log printed for the answer that carried `cost_header`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in proxy.access_log():
            record = entry.get("tollgate")
            if record not in (None, "-"):
                record = json.loads(record)
                if record.get("cost_usd") == cost_header:
                    return record
        time.sleep(0.05)
    raise AssertionError("no usage record with that cost")


def test_a_bare_mistral_model_at_a_mistral_provider_costs_what_litellm_says(start_envoy):
    proxy = start_envoy(routed_to_mistral())
    raw, completion = chat(proxy, "mistral-large-latest")
    assert raw.headers["x-tollgate-provider"] == "mistral"
    entry = litellm_list()["mistral/mistral-large-latest"]
    expected = litellm_cost(entry, completion.usage)
    assert expected > 0
    assert Decimal(raw.headers["x-tollgate-cost-usd"]) == expected
    record = record_of(proxy, raw.headers["x-tollgate-cost-usd"])
    assert record["priced_as"] == "mistral/mistral-large-latest"
    assert record["provider"] == "mistral"


def test_the_same_model_is_unpriced_without_a_namespace(start_envoy):
    config = routed_to_mistral()
    config["providers"]["mistral"]["litellm_provider"] = ""
    proxy = start_envoy(config)
    raw, _ = chat(proxy, "mistral-large-latest")
    assert raw.headers["x-tollgate-cost-usd"] == "unpriced", "LiteLLM has no bare mistral-large-latest"


def test_a_litellm_price_list_in_the_configuration_prices_without_a_rebuild(start_envoy):
    # As a newer LiteLLM release would have it: a model the built-in table lacks, and a new price.
    newer = {
        "mistral/mistral-large-3000": {"litellm_provider": "mistral", "mode": "chat",
                                       "input_cost_per_token": 3e-07, "output_cost_per_token": 9e-07},
        "mistral/mistral-large-latest": {"litellm_provider": "mistral", "mode": "chat",
                                         "input_cost_per_token": 4e-07, "output_cost_per_token": 1.2e-06},
    }
    proxy = start_envoy(routed_to_mistral(litellm_prices=newer))
    as_written = json.loads(json.dumps(newer), parse_float=Decimal)
    for model in ("mistral-large-3000", "mistral-large-latest"):
        raw, completion = chat(proxy, model)
        expected = litellm_cost(as_written[f"mistral/{model}"], completion.usage)
        assert Decimal(raw.headers["x-tollgate-cost-usd"]) == expected, model
        assert "+litellm_prices." in raw.headers["x-tollgate-price-table"]
        assert record_of(proxy, raw.headers["x-tollgate-cost-usd"])["priced_as"] == f"mistral/{model}"
    assert "litellm_prices: 2 models loaded" in proxy.log()


def vm_memory_kib(proxy) -> int:
    """Envoy's resident memory (the Wasm VMs' linear memories live in it)."""
    status = Path(f"/proc/{proxy.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_the_whole_litellm_file_loads_and_what_it_costs_per_vm(start_envoy):
    """The full pinned file inline (2.9 MB of JSON): it loads and prices, and its load time and
    memory are measured against the same Envoy without it (printed; README "Prices")."""
    whole = json.loads(gzip.decompress(LITELLM_FILE.read_bytes()))
    measured = {}
    for name, config in (("without", routed_to_mistral()), ("with", routed_to_mistral(litellm_prices=whole))):
        started = time.monotonic()
        proxy = start_envoy(config)
        ready = time.monotonic() - started
        raw, completion = chat(proxy, "mistral-large-latest")
        stats = proxy.stats()
        vms = stats.get("wasm.envoy.wasm.runtime.v8.active", 1)
        heap = max((v for k, v in stats.items() if k.endswith("tollgate.wasm_memory_bytes")), default=0)
        loads = [int(ms) for ms in re.findall(r"configuration loaded \(\d+ bytes in (\d+) ms\)", proxy.log())]
        measured[name] = (ready, vm_memory_kib(proxy), vms, raw.headers["x-tollgate-price-table"], loads, heap)
        if name == "with":
            expected = litellm_cost(litellm_list()["mistral/mistral-large-latest"], completion.usage)
            assert Decimal(raw.headers["x-tollgate-cost-usd"]) == expected
            assert "models loaded" in proxy.log()

    (ready0, rss0, vms, _, loads0, heap0), (ready1, rss1, _, table, loads1, heap1) = measured["without"], measured["with"]
    assert "+litellm_prices." in table
    assert loads1, "each VM logs how long its configuration took"
    report = (f"full LiteLLM file inline: configuration loaded in {max(loads1)} ms per VM (vs {max(loads0, default=0)} ms) "
              f"; Wasm linear memory {heap1 / 2**20:.1f} MiB vs {heap0 / 2**20:.1f} MiB per VM"
              f"; ready in {ready1:.2f}s vs {ready0:.2f}s without; "
              f"Envoy RSS {rss1 / 1024:.1f} MiB vs {rss0 / 1024:.1f} MiB ({vms} Tollgate VMs: "
              f"{(rss1 - rss0) / 1024 / max(vms, 1):.1f} MiB per VM)")
    print(report)
    if os.environ.get("TOLLGATE_PRICES_REPORT"):
        Path(os.environ["TOLLGATE_PRICES_REPORT"]).write_text(report + "\n")
