"""`make bench-gate`: the per-request path's instruction count against a committed baseline.

Wall-clock time on a shared 2-core machine drifts by 20%; instruction counts do not. This runs
examples/per_request.rs (`count` mode: Exchange driven through the fake Envoy of the lifecycle
tests) under `valgrind --tool=callgrind` twice per case, with N and N + STEP iterations, so
start-up work cancels out and what is left is the cost of one request (or one streamed chunk).
A case more than `tolerance` above bench/gate-baseline.json fails the gate.

The counts are for the native x86_64 build of the same Rust code that goes into the .wasm;
they track changes in the filter's own work, not V8's or Envoy's.

usage: gate.py [--update | --add-new] [--json]
  --update   write the measured counts as the new baseline (after an intended change)
  --add-new  add baselines for cases that have none (a new case), leaving every other one as it is
  --json     print the results as JSON (for bench/run.py) instead of a table
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bodies import write_bodies  # noqa: E402

BASELINE = REPO / "bench" / "gate-baseline.json"
HARNESS = REPO / "target" / "release" / "examples" / "per_request"
DEFAULT_TOLERANCE = 0.03
WARM = 20
STEP = 200

# (name, case in examples/per_request.rs, request body); the stream cases bring their own
# request. The feature cases run at 1 KB and 32 KB only: 32 KB already shows their cost per
# byte, and a 1 MB token count under callgrind would double the gate's time.
CASES = [
    ("exchange/chat-1k", "exchange", "chat-1k"),
    ("exchange/chat-32k", "exchange", "chat-32k"),
    ("exchange/chat-1m", "exchange", "chat-1m"),
    ("stream_chunk", "stream_chunk", "chat-1k"),
    ("select_model/chat-1k", "select_model", "chat-1k"),
    ("select_model/chat-32k", "select_model", "chat-32k"),
    ("translate/chat-1k", "translate", "chat-1k"),
    ("translate/chat-32k", "translate", "chat-32k"),
    ("count_tokens/chat-1k", "count_tokens", "chat-1k"),
    ("count_tokens/chat-32k", "count_tokens", "chat-32k"),
    ("scan_guardrails/chat-1k", "scan_guardrails", "chat-1k"),
    ("scan_guardrails/chat-32k", "scan_guardrails", "chat-32k"),
    ("scan_guardrails_stream", "scan_guardrails_stream", "chat-1k"),
    # Budgets' hot path: reserve and settle three counters in the shared data (compare-and-swap),
    # and for Redis the reservation's and settlement's calls built and their answers read.
    ("budgets/chat-1k", "budgets", "chat-1k"),
    ("budgets/chat-32k", "budgets", "chat-32k"),
    ("budgets_redis/chat-1k", "budgets_redis", "chat-1k"),
    ("budgets_redis/chat-32k", "budgets_redis", "chat-32k"),
]
# Cases measured per streamed chunk (1,000 per call).
STREAM_CASES = {"stream_chunk", "scan_guardrails_stream"}


def instructions(case: str, n: int, body: Path, workdir: Path) -> tuple[int, int]:
    """Total instructions of one run of N iterations, and the units (requests or chunks) per call."""
    out_file = workdir / f"callgrind.{case}.{n}.out"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--cache-sim=no",
         str(HARNESS), "count", case, str(n), str(body)],
        capture_output=True, text=True, check=True,
    )
    match = re.search(r"^summary:\s*(\d+)", out_file.read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError(f"no summary in callgrind output for {case}: {done.stderr[-500:]}")
    return int(match.group(1)), int(done.stdout.strip() or 1)


def measure() -> dict[str, dict]:
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "per_request"], cwd=REPO, check=True)
    # The feature cases' policies do what they measure: checked once, natively (it would cost
    # every callgrind run a second of start-up).
    subprocess.run([str(HARNESS), "check"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tollgate-gate-") as tmp:
        workdir = Path(tmp)
        bodies = write_bodies(workdir / "bodies")
        for name, case, body in CASES:
            # A 1 MB request is 400x the work of a 1 KB one: fewer iterations give the same precision.
            warm, steps = (WARM, STEP) if body != "chat-1m" else (2, 5)
            if case in STREAM_CASES:
                warm, steps = 2, 10
            low, units = instructions(case, warm, bodies[body], workdir)
            high, _ = instructions(case, warm + steps, bodies[body], workdir)
            per_unit = (high - low) / (steps * units)
            results[name] = {"instructions": round(per_unit), "units_per_call": units}
    return results


def compare(results: dict, baseline: dict) -> list[dict]:
    tolerance = baseline.get("tolerance", DEFAULT_TOLERANCE)
    rows = []
    for name, result in results.items():
        base = baseline.get("cases", {}).get(name)
        row = {"case": name, "instructions": result["instructions"], "baseline": base, "tolerance": tolerance}
        if base:
            change = result["instructions"] / base - 1
            row["change"] = change
            row["verdict"] = "fail" if change > tolerance else ("improved" if change < -tolerance else "ok")
        else:
            row["verdict"] = "new"
        rows.append(row)
    return rows


def main() -> int:
    args = set(sys.argv[1:])
    if not shutil.which("valgrind"):
        print("bench-gate: valgrind is not installed (apt-get install valgrind, or run bench/setup.sh)",
              file=sys.stderr)
        return 2
    results = measure()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    if "--add-new" in args:
        baseline = json.loads(BASELINE.read_text())
        added = {name: r["instructions"] for name, r in results.items() if name not in baseline["cases"]}
        if added and baseline.get("rustc") != rustc:
            print(f"bench-gate: the baseline was made with {baseline.get('rustc')}, this is {rustc}: "
                  "new cases would not compare alike; use --update", file=sys.stderr)
            return 2
        baseline["cases"].update(added)
        BASELINE.write_text(json.dumps(baseline, indent=2) + "\n")
        print(f"bench-gate: added {', '.join(added) or 'nothing'} to {BASELINE.relative_to(REPO)}")
        return 0
    if "--update" in args:
        old = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
        baseline = {
            "about": "Instructions per request (per chunk for the stream cases) of examples/per_request.rs under "
                     "callgrind; written by `python3 bench/gate.py --update`, checked by `make bench-gate`.",
            "tolerance": old.get("tolerance", DEFAULT_TOLERANCE),
            "rustc": rustc,
            "machine": platform.machine(),
            "cases": {name: r["instructions"] for name, r in results.items()},
        }
        BASELINE.write_text(json.dumps(baseline, indent=2) + "\n")
        print(f"bench-gate: wrote {BASELINE.relative_to(REPO)}")
        return 0
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    rows = compare(results, baseline)
    failed = any(r["verdict"] == "fail" for r in rows)
    if "--json" in args:
        print(json.dumps({"rows": rows, "rustc": rustc, "baseline_rustc": baseline.get("rustc"),
                          "passed": not failed}))
    else:
        if baseline.get("rustc") and baseline["rustc"] != rustc:
            print(f"bench-gate: note: baseline made with {baseline['rustc']}, this is {rustc}")
        for r in rows:
            base = f"{r['baseline']:>12,}" if r["baseline"] else f"{'-':>12}"
            change = f"{r['change']:+.2%}" if "change" in r else ""
            print(f"{r['case']:<24} {r['instructions']:>12,} {base} {change:>8}  {r['verdict']}")
        print(f"bench-gate: {'FAILED' if failed else 'passed'} (tolerance {rows[0]['tolerance']:.0%})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
