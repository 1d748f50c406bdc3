"""scripts/generate-prices.py: exact conversion of LiteLLM's float prices, and the reduction of
a LiteLLM entry to what Tollgate keeps (tiers, provider rules, models left out)."""

import importlib.util
import json
import pathlib
from decimal import Decimal

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("generate_prices", ROOT / "scripts" / "generate-prices.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

RATIO = Decimal("0.5")


@pytest.mark.parametrize(
    "per_token, micro",
    [
        (2.5e-06, 2_500_000),
        (1.5e-07, 150_000),
        (3e-07, 300_000),
        (1e-12, 1),
        (0.0, 0),
        (0, 0),
        (1.875e-07, 187_500),
        (1e-05, 10_000_000),
        # Float noise from computed values in LiteLLM's data is rounded away.
        (1.6000000000000001e-06, 1_600_000),
        (2.9999900000000002e-06, 2_999_990),
        (9.499999999999999e-07, 950_000),
        # 0.1 + 0.2 as a float is 0.30000000000000004: noise, not a price.
        ((0.1 + 0.2) * 1e-06, 300_000),
    ],
)
def test_float_prices_convert_exactly(per_token, micro):
    assert gen.micro_usd_per_million(per_token) == micro


@pytest.mark.parametrize("bad", [8.33333333333333e-08, 1e-13, -1e-06, "3e-07", None, True])
def test_prices_that_are_not_whole_micro_usd_per_million_are_refused(bad):
    with pytest.raises(gen.Unrepresentable):
        gen.micro_usd_per_million(bad)


def test_threshold_text():
    assert gen.threshold_tokens("200k") == 200_000
    assert gen.threshold_tokens("272k") == 272_000
    assert gen.threshold_tokens("128000") == 128_000
    with pytest.raises(gen.Unrepresentable):
        gen.threshold_tokens("0.5")


def test_an_entry_is_reduced_to_tollgates_prices_and_tiers():
    entry = {
        "litellm_provider": "anthropic", "mode": "chat", "max_input_tokens": 1_000_000,
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
        "input_cost_per_token_batches": 1.5e-06, "input_cost_per_token_priority": 5e-06,
        "input_cost_per_token_above_200k_tokens_priority": 9e-06,
    }
    assert gen.reduce_entry("claude-x", entry, RATIO) == {
        "input": 3_000_000, "output": 15_000_000, "cache_read": 300_000, "cache_write_5m": 3_750_000,
        "cache_write_1h": 6_000_000, "max_input_tokens": 1_000_000,
        "above": [{"above": 200_000, "input": 6_000_000, "output": 22_500_000, "cache_write_1h": 12_000_000}],
    }


def test_provider_rules_follow_litellm():
    xai = {"litellm_provider": "xai", "mode": "chat", "input_cost_per_token": 2e-06, "output_cost_per_token": 1e-05,
           "output_cost_per_reasoning_token": 2e-05, "input_cost_per_token_above_200k_tokens": 4e-06}
    reduced = gen.reduce_entry("xai/grok", xai, RATIO)
    assert reduced["threshold_inclusive"] is True
    assert "reasoning" not in reduced, "LiteLLM bills xAI reasoning as output"
    fireworks = {"litellm_provider": "fireworks_ai", "mode": "chat", "input_cost_per_token": 9e-07,
                 "output_cost_per_token": 9e-07}
    assert gen.reduce_entry("fireworks_ai/m", fireworks, RATIO)["cache_read"] == 450_000
    image_out = {"litellm_provider": "gemini", "mode": "chat", "input_cost_per_token": 3e-07,
                 "output_cost_per_token": 0, "output_cost_per_image_token": 3e-05}
    assert gen.reduce_entry("gemini/img", image_out, RATIO)["output"] == 30_000_000


@pytest.mark.parametrize(
    "entry",
    [
        {"mode": "chat", "output_cost_per_token": 1e-06},
        {"mode": "chat", "input_cost_per_token": 1e-06, "tiered_pricing": [{"range": [0, 1000]}]},
        {"mode": "chat", "input_cost_per_token": 1e-06, "off_peak_pricing": {"hours_utc": "16:30-00:30"}},
        {"mode": "chat", "input_cost_per_token": 1e-06, "cache_creation_input_token_cost": 8.33333333333333e-08},
        {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 0.00971},
    ],
)
def test_entries_tollgate_cannot_price_exactly_are_left_out(entry):
    with pytest.raises(gen.Unrepresentable):
        gen.reduce_entry("m", entry, RATIO)


def test_rendering_is_deterministic_and_the_hash_is_the_json_files():
    models, skipped = gen.build(
        {
            "b-model": {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
            "a-model": {"mode": "embedding", "input_cost_per_token": 2e-08},
            "image": {"mode": "image_generation", "input_cost_per_token": 1e-06},
            "odd": {"mode": "chat", "input_cost_per_token": 1e-13},
            "sample_spec": {"mode": "chat"},
        },
        RATIO,
    )
    assert list(models) == ["a-model", "b-model"] and list(skipped) == ["odd"]
    text = gen.render_json(models, "2026-01-01")
    assert json.loads(text)["models"]["a-model"] == {"input": 20_000, "output": 0}
    rust = gen.render_rust(models, "2026-01-01", "f" * 64)
    assert rust == gen.render_rust(models, "2026-01-01", "f" * 64)
    assert '("a-model", 0, 0),' in rust and 'pub const VERSION: &str = "litellm-' in rust


def test_committed_table_is_what_the_generator_writes():
    """The committed builtin.rs is the rendering of the committed prices.json."""
    doc = json.loads((ROOT / "src" / "pricing" / "prices.json").read_text())
    text = gen.render_json(doc["models"], doc["generated"])
    assert text == (ROOT / "src" / "pricing" / "prices.json").read_text()
    import hashlib

    sha = hashlib.sha256(text.encode()).hexdigest()
    assert gen.render_rust(doc["models"], doc["generated"], sha) == (ROOT / "src" / "pricing" / "builtin.rs").read_text()
