#!/usr/bin/env python3
"""Regenerate Tollgate's built-in price table from LiteLLM's price list.

LiteLLM (MIT) ships `model_prices_and_context_window_backup.json` inside its wheel on PyPI.
This script reads it from the pinned wheel and writes two files:

  src/pricing/prices.json   the reduced table, one model per line; its sha256 is the table's
                            content hash
  src/pricing/builtin.rs    the same data as a compact Rust static (no parsing at VM start-up),
                            with the version and the hash as constants

Usage:
  scripts/generate-prices.py                 download the pinned wheel (pip) and regenerate
  scripts/generate-prices.py --wheel W.whl   use a wheel already on disk
  scripts/generate-prices.py --check         regenerate in memory with the committed date and
                                             fail if the committed files differ

Standard library only (the wheel is a zip file). src/pricing/litellm.rs is the same conversion in
Rust (configuration's `litellm_prices`, `tollgate prices import`); tests/pricing_import.rs requires
it to produce this script's prices.json from the same file: change one, change both. Prices are converted exactly: a per-token
float is formatted with repr() (the shortest text that reads back as the same float, which is
the text LiteLLM's JSON holds) and its decimal digits are scaled to integer micro-USD per
million tokens. Float noise left in LiteLLM's data by computed values (1.6000000000000001e-06)
is rounded away; a price with a real fraction of a micro-USD per million tokens cannot be held
exactly, and its model is left out (unpriced) rather than priced wrongly.
"""

import argparse
import datetime
import hashlib
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile
from decimal import Decimal

LITELLM_VERSION = "1.104.5"
PRICE_FILE = "litellm/model_prices_and_context_window_backup.json"
CONSTANTS_FILE = "litellm/constants.py"

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "src" / "pricing" / "prices.json"
RUST_OUT = ROOT / "src" / "pricing" / "builtin.rs"

# Modes whose cost is a function of token counts, which is what Tollgate reads.
MODES = ("chat", "completion", "responses", "embedding")
# Key suffixes of prices that apply only to other service tiers or to batches.
NON_STANDARD = ("_batches", "_priority", "_flex", "_ultrafast", "_balanced", "_fast", "_decisions")
# Residue (in micro-USD per million tokens) below which a non-integer is float noise.
NOISE = Decimal("0.000001")
# Prices are stored as u32 in builtin.rs; one value is reserved for "absent".
U32_NONE = 0xFFFF_FFFF
FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning", "audio_input", "audio_output")
TIER_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")


class Unrepresentable(ValueError):
    """A price that is not a whole number of micro-USD per million tokens."""


def micro_usd_per_million(per_token):
    """USD per token (LiteLLM's float, or int) -> exact integer micro-USD per million tokens."""
    if isinstance(per_token, bool) or not isinstance(per_token, (int, float)):
        raise Unrepresentable(f"not a number: {per_token!r}")
    scaled = Decimal(repr(per_token)) * 10**12
    if scaled < 0:
        raise Unrepresentable(f"negative price: {per_token!r}")
    whole = scaled.to_integral_value()
    if scaled != whole:
        if abs(scaled - whole) > NOISE:
            raise Unrepresentable(f"{per_token!r} USD/token is {scaled} micro-USD per million tokens")
    return int(whole)


def threshold_tokens(text):
    """LiteLLM's `_above_200k_tokens` threshold text (`200k`, `128000`) -> tokens."""
    value = Decimal(text[:-1]) * 1000 if text.endswith("k") else Decimal(text)
    if value != value.to_integral_value() or value <= 0:
        raise Unrepresentable(f"threshold {text!r}")
    return int(value)


def reduce_entry(key, entry, fireworks_cache_ratio):
    """The prices Tollgate needs from one LiteLLM entry, or raise with the reason to skip it."""
    provider = entry.get("litellm_provider", "")
    if entry.get("tiered_pricing") is not None:
        raise Unrepresentable("range-tiered pricing (tiered_pricing)")
    if entry.get("off_peak_pricing") is not None:
        raise Unrepresentable("time-of-day pricing (off_peak_pricing)")
    if entry.get("input_cost_per_token") is None:
        raise Unrepresentable("no input_cost_per_token")
    if provider.startswith("vertex_ai") and any(k.endswith("_above_128k_tokens") for k in entry):
        raise Unrepresentable("Vertex AI 128k pricing (priced by LiteLLM's own Vertex path)")

    def price(name):
        value = entry.get(name)
        return None if value is None else micro_usd_per_million(value)

    out = {"input": price("input_cost_per_token")}
    output = price("output_cost_per_token")
    # LiteLLM: a model without an output token price bills output at its image-token price.
    if not output:
        output = price("output_cost_per_image_token") or output
    out["output"] = output or 0
    out["cache_read"] = price("cache_read_input_token_cost")
    if out["cache_read"] is None and provider == "fireworks_ai":
        # LiteLLM's default for Fireworks: cache reads at a fixed share of the input price.
        exact = Decimal(out["input"]) * fireworks_cache_ratio
        if exact != exact.to_integral_value():
            raise Unrepresentable("default Fireworks cache-read price")
        out["cache_read"] = int(exact)
    out["cache_write_5m"] = price("cache_creation_input_token_cost")
    out["cache_write_1h"] = price("cache_creation_input_token_cost_above_1hr")
    # LiteLLM bills xAI reasoning tokens as ordinary output tokens.
    out["reasoning"] = None if provider == "xai" else price("output_cost_per_reasoning_token")
    out["audio_input"] = price("input_cost_per_audio_token")
    out["audio_output"] = price("output_cost_per_audio_token")

    tiers = []
    for name, value in entry.items():
        match = re.fullmatch(r"input_cost_per_token_above_(\d+k?)_tokens", name)
        if not match or value is None:
            continue
        t = match.group(1)
        tier = {
            "above": threshold_tokens(t),
            "input": micro_usd_per_million(value),
            "output": price(f"output_cost_per_token_above_{t}_tokens"),
            "cache_read": price(f"cache_read_input_token_cost_above_{t}_tokens"),
            "cache_write_5m": price(f"cache_creation_input_token_cost_above_{t}_tokens"),
            "cache_write_1h": price(f"cache_creation_input_token_cost_above_1hr_above_{t}_tokens"),
        }
        tiers.append({k: v for k, v in tier.items() if v is not None})
    tiers.sort(key=lambda tier: tier["above"])
    if len({tier["above"] for tier in tiers}) != len(tiers):
        raise Unrepresentable("two tiers with the same threshold")

    reduced = {k: v for k, v in out.items() if v is not None}
    if tiers:
        reduced["above"] = tiers
    if provider == "xai":
        # xAI bills the higher tier once the prompt reaches the threshold (LiteLLM: >=).
        reduced["threshold_inclusive"] = True
    max_input = entry.get("max_input_tokens")
    if isinstance(max_input, int) and not isinstance(max_input, bool) and 0 < max_input < 2**32:
        reduced["max_input_tokens"] = max_input
    for field in FIELDS:
        if reduced.get(field, 0) >= U32_NONE:
            raise Unrepresentable(f"{field} price too large for the compact table")
    # Tier rows are u32 too (src/pricing/litellm.rs refuses the same).
    if any(tier.get(f, 0) >= U32_NONE for tier in tiers for f in ("above",) + TIER_FIELDS):
        raise Unrepresentable("tier price or threshold too large for the compact table")
    return reduced


def read_wheel(path):
    with zipfile.ZipFile(path) as wheel:
        prices = json.loads(wheel.read(PRICE_FILE))
        constants = wheel.read(CONSTANTS_FILE).decode()
    match = re.search(r"^FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO(?::\s*\w+)?\s*=\s*([0-9.]+)\s*$", constants, re.M)
    if not match:
        sys.exit("FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO not found in litellm/constants.py")
    return prices, Decimal(match.group(1))


def download_wheel(directory):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         f"litellm=={LITELLM_VERSION}", "-d", directory],
        check=True,
    )
    wheels = sorted(pathlib.Path(directory).glob(f"litellm-{LITELLM_VERSION}-*.whl"))
    if not wheels:
        sys.exit(f"pip did not download litellm {LITELLM_VERSION}")
    return wheels[0]


def build(prices, fireworks_ratio):
    models, skipped = {}, {}
    for key in sorted(prices):
        entry = prices[key]
        if key == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        try:
            models[key] = reduce_entry(key, entry, fireworks_ratio)
        except Unrepresentable as reason:
            skipped[key] = str(reason)
    return models, skipped


def render_json(models, generated):
    lines = [
        "{",
        f'"source": "LiteLLM model_prices_and_context_window.json (MIT), litellm {LITELLM_VERSION} wheel",',
        f'"litellm_version": "{LITELLM_VERSION}",',
        f'"generated": "{generated}",',
        '"unit": "micro-USD per million tokens",',
        '"models": {',
    ]
    items = [f"{json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}" for key, value in models.items()]
    lines.append(",\n".join(items))
    lines.append("}}")
    return "\n".join(lines) + "\n"


def rust_str(text):
    return json.dumps(text)  # a JSON string of printable ASCII is a valid Rust string literal


def render_rust(models, generated, sha256):
    def opt(value):
        return U32_NONE if value is None else value

    rows, row_index, tiers, tier_index, names = [], {}, [], {}, []
    for key, m in models.items():
        tier_rows = tuple(tuple(opt(t.get(f)) for f in ("above",) + TIER_FIELDS) for t in m.get("above", []))
        if tier_rows not in tier_index:
            tier_index[tier_rows] = (len(tiers), len(tier_rows))
            tiers.extend(tier_rows)
        start, count = tier_index[tier_rows] if tier_rows else (0, 0)
        row = tuple(opt(m.get(f)) for f in FIELDS) + (start, count, int(m.get("threshold_inclusive", False)))
        if row not in row_index:
            row_index[row] = len(rows)
            rows.append(row)
        names.append((key, row_index[row], m.get("max_input_tokens", 0)))
    assert len(rows) < 2**16 and len(tiers) < 2**16
    if not all(k.isascii() and k.isprintable() for k, _, _ in names):
        sys.exit("model names must be printable ASCII")

    out = [
        "// @generated by scripts/generate-prices.py from LiteLLM's price list. Do not edit:",
        "// change the script or the pinned LiteLLM version and regenerate.",
        "",
        "//! The built-in price table: prices in micro-USD per million tokens, `NONE` where LiteLLM",
        "//! has no price. Rows are shared by every model with the same prices.",
        "",
        "#![allow(clippy::unreadable_literal)]",
        "",
        "use super::table::{Row, TierRow, NONE};",
        "",
        f'pub const LITELLM_VERSION: &str = "{LITELLM_VERSION}";',
        f'pub const GENERATED: &str = "{generated}";',
        "/// The table's version, for response headers and usage records.",
        f'pub const VERSION: &str = "litellm-{LITELLM_VERSION}+{generated}";',
        "/// sha256 of `src/pricing/prices.json`, the same data as text.",
        f'pub const SHA256: &str = "{sha256}";',
        f"pub const MODEL_COUNT: usize = {len(names)};",
        "",
        "/// (model, index into ROWS, max_input_tokens or 0), sorted by model name (bytes).",
        "pub static MODELS: &[(&str, u16, u32)] = &[",
    ]
    out += [f"    ({rust_str(k)}, {r}, {mx})," for k, r, mx in names]
    out += ["];", "", "pub static ROWS: &[Row] = &["]
    for row in rows:
        p = ["NONE" if v == U32_NONE else str(v) for v in row[: len(FIELDS)]]
        start, count, inclusive = row[len(FIELDS):]
        out.append(
            "    Row { "
            + ", ".join(f"{f}: {v}" for f, v in zip(FIELDS, p))
            + f", tiers: ({start}, {count}), threshold_inclusive: {'true' if inclusive else 'false'} }},"
        )
    out += ["];", "", "pub static TIERS: &[TierRow] = &["]
    for tier in tiers:
        p = ["NONE" if v == U32_NONE else str(v) for v in tier]
        out.append("    TierRow { " + ", ".join(f"{f}: {v}" for f, v in zip(("above",) + TIER_FIELDS, p)) + " },")
    out += ["];", ""]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", help="a litellm wheel already downloaded")
    parser.add_argument("--date", help="generation date to record (default: today, UTC)")
    parser.add_argument("--check", action="store_true", help="fail if the committed files are not what this generates")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(tmp)
        prices, fireworks_ratio = read_wheel(wheel)
    models, skipped = build(prices, fireworks_ratio)

    generated = args.date
    if args.check and generated is None:
        generated = json.loads(JSON_OUT.read_text())["generated"]
    generated = generated or datetime.datetime.now(datetime.timezone.utc).date().isoformat()

    text = render_json(models, generated)
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    rust = render_rust(models, generated, sha256)
    if args.check:
        stale = [p for p, new in ((JSON_OUT, text), (RUST_OUT, rust)) if not p.exists() or p.read_text() != new]
        if stale:
            sys.exit(f"out of date: {', '.join(str(p.relative_to(ROOT)) for p in stale)}")
        print(f"up to date: {len(models)} models, sha256 {sha256}")
        return
    JSON_OUT.write_text(text)
    RUST_OUT.write_text(rust)
    reasons = {}
    for reason in skipped.values():
        reasons[reason.split(":")[0]] = reasons.get(reason.split(":")[0], 0) + 1
    print(f"litellm {LITELLM_VERSION}, generated {generated}: {len(models)} models, sha256 {sha256}")
    print(f"skipped {len(skipped)}: " + "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main()
