#!/usr/bin/env python3
"""Load and soak runs through a real Envoy with Tollgate, against three mock providers.

    scripts/load.py load [--requests 100000] [--concurrency 48]
    scripts/load.py soak [--seconds 600] [--rate 100] [--warmup 60]

Envoy runs the shipped envoy/envoy.yaml (its policy, two workers), with the `openai`,
`anthropic` and `mock_provider` clusters each on a tollgate-mock of its own. Requests are a
deterministic mix: OpenAI Chat and Anthropic Messages clients, streaming and not, a translated
route each way, a team route, the proxy's own route, with and without tenants. The shipped
guardrails are on: 10% of the prompts carry an email address (pseudonymised on the way up; the
mock echoes the prompt, so the placeholder comes back and must be restored, split across stream
events) and 2% an API key (refused with a 422 before any provider sees it).

Both runs then check that nothing was lost or counted twice: the tokens the three mocks
reported (their GET /_mock/usage) equal, exactly, the `tollgate_tokens` counters on Envoy's
/stats/prometheus and the sum over the access log's usage records, and the cost in the
`tollgate_cost_nano_usd` counters and in the records equals the cost of what the mocks reported
at the filter's prices (`tollgate cost`), to the pico-USD in the records and the nano-USD in the
counters (which drop each request's sub-nano remainder). Any failed or unexpected answer fails.

`soak` also samples Envoy's resident memory (/proc/PID/status VmRSS), Envoy's heap
(server.memory_allocated) and the filter's Wasm memory (tollgate.wasm_memory_bytes) every ten
seconds, and fails unless the end is within --tolerance of the value after the warm-up.

Everything listens on 127.0.0.1 only; every loop is bounded by count or time.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import itertools
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import Envoy, Mock, release_binary  # noqa: E402

TENANTS = [f"tenant-{n:02d}" for n in range(12)]
WORDS = "the quick brown fox jumps over a lazy dog while the gateway counts every token".split()

# (client API, path, model asked for): see the rules in envoy/envoy.yaml.
KINDS = [
    ("openai", "/v1/chat/completions", "fast"),              # -> openai gpt-4o-mini
    ("openai", "/v1/chat/completions", "gpt-4o-mini"),       # no rule: the proxy's own route
    ("openai", "/v1/chat/completions", "smart"),             # -> anthropic claude-haiku, translated
    ("openai", "/team-a/v1/chat/completions", "smart"),      # -> openai gpt-4.1 on team-a
    ("anthropic", "/v1/messages", "claude-haiku-4-5"),       # -> anthropic, same dialect
    ("anthropic", "/v1/messages", "fast"),                   # -> openai gpt-4o-mini, translated
]


def email_of(index: int) -> str:
    return f"user{index}@example.com"


def secret_of(index: int) -> str:
    return "sk-proj-" + hashlib.sha256(str(index).encode()).hexdigest()[:32] + "Zq"


def guardrail_case(index: int) -> str | None:
    """`email` (10%), `secret` (2%) or None: what the shipped guardrails see in request `index`."""
    roll = random.Random(f"guardrail-{index}").random()
    return "secret" if roll < 0.02 else "email" if roll < 0.12 else None


def build_request(index: int) -> tuple[str, str, dict, bytes, bool]:
    """Request `index` of the mix: (api, path, headers, body, streaming). Deterministic."""
    rng = random.Random(index)
    api, path, model = KINDS[index % len(KINDS)]
    stream = rng.random() < 0.5
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
    case = guardrail_case(index)
    max_tokens = rng.randint(4, 64)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-load-client"}
    if rng.random() < 0.6:
        headers["x-tenant-id"] = rng.choice(TENANTS)
        headers["x-team"] = "team-" + str(rng.randint(1, 3))
    if case == "email":
        text = f"{text} write to {email_of(index)}"
        headers["x-mock-reply"] = "echo"
        headers["x-mock-delta-bytes"] = str(rng.randint(1, 8))
    elif case == "secret":
        text = f"{text} my key is {secret_of(index)}"
    body: dict = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        if api == "openai" and rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    return api, path, headers, json.dumps(body).encode(), stream


def streamed_text(api: str, body: bytes) -> str:
    """The text a client assembles from the stream's events."""
    text = []
    for line in body.decode(errors="replace").splitlines():
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[len("data: "):])
        if api == "openai":
            text += [c.get("delta", {}).get("content") or "" for c in event.get("choices", [])]
        elif event.get("type") == "content_block_delta":
            text.append(event["delta"].get("text", ""))
    return "".join(text)


def check_guardrails(index: int, api: str, stream: bool, status: int, body: bytes) -> str | None:
    """The guardrails' part of the answer: a refused key, a restored email."""
    case = guardrail_case(index)
    if case == "secret":
        # OpenAI's error shape carries the reason code; Anthropic's has none (its message names
        # the policy and check).
        reason = b"secret_detected" if api == "openai" else b"guardrail privacy/secrets"
        if status != 422 or reason not in body or secret_of(index).encode() in body:
            return f"key not refused: status {status}: {body[:200]!r}"
        return None
    if case == "email":
        if stream:
            text = streamed_text(api, body)
        else:
            answer = json.loads(body)
            text = answer["choices"][0]["message"]["content"] if api == "openai" else answer["content"][0]["text"]
        if email_of(index) not in text or "[EMAIL_" in text:
            return f"email not restored: {text[-120:]!r}"
    return None


def check_answer(api: str, stream: bool, status: int, headers: dict, body: bytes) -> str | None:
    """Why the answer is not what a client expects, or None."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if not stream:
        try:
            parsed = json.loads(body)
        except ValueError:
            return f"not JSON: {body[:200]!r}"
        if "usage" not in parsed:
            return "no usage in the answer"
        cost = headers.get("x-tollgate-cost-usd")
        if cost in (None, "unknown", "unpriced"):
            return f"cost header {cost!r}"
        return None
    marker = b"\n: tollgate {"
    at = body.rfind(marker)
    if at < 0 or not body.endswith(b"}\n"):
        return f"stream without its cost line: ...{body[-200:]!r}"
    summary = json.loads(body[at + len(marker) - 1:])
    if summary.get("cost_usd") in (None, "unknown", "unpriced"):
        return f"stream cost {summary.get('cost_usd')!r}"
    ending = b"data: [DONE]" if api == "openai" else b"event: message_stop"
    if ending not in body[:at]:
        return f"stream without {ending!r}"
    return None


class Client:
    """Sends requests on one keep-alive connection; reconnects after any failure."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, index: int) -> str | None:
        api, path, headers, body, stream = build_request(index)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                answer = {k.lower(): v for k, v in response.getheaders()}
                if response.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                if guardrail_case(index) == "secret":
                    return check_guardrails(index, api, stream, response.status, data)
                return check_answer(api, stream, response.status, answer, data) or check_guardrails(
                    index, api, stream, response.status, data)
            except (http.client.HTTPException, OSError) as error:
                self.conn.close()
                self.conn = None
                # A keep-alive connection the proxy closed between two requests: retry once on a
                # fresh one (nothing was sent upstream). Anything else is an error.
                if attempt == 0 and isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError,
                                                       ConnectionResetError)):
                    continue
                return f"{type(error).__name__}: {error}"
        return "unreachable"


class Rig:
    """Three mocks and one Envoy (two workers) with the shipped configuration."""

    def __init__(self, workers: int = 2):
        self.mocks = {name: Mock(name=name) for name in ("openai", "anthropic", "mock_provider")}
        ports = {name: mock.port for name, mock in self.mocks.items()}
        self.envoy = Envoy(ports, concurrency=workers)

    def stop(self) -> None:
        self.envoy.stop()
        for mock in self.mocks.values():
            mock.stop()

    def mock_usage(self) -> list[dict]:
        tallies = []
        for mock in self.mocks.values():
            conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
            conn.request("GET", "/_mock/usage")
            tallies.append(json.loads(conn.getresponse().read()))
            conn.close()
        return tallies


def run_requests(port: int, indices, concurrency: int, rate: float | None = None, deadline: float | None = None):
    """Sends every index (or until `deadline`), `concurrency` at a time, at most `rate` per second.
    Returns (sent, errors: list of (index, reason))."""
    lock = threading.Lock()
    source = iter(indices)
    errors: list[tuple[int, str]] = []
    sent = Counter()
    started = time.monotonic()

    def next_index():
        with lock:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            index = next(source, None)
            if index is None:
                return None
            if rate:
                due = started + sent["n"] / rate
                sent["n"] += 1
            else:
                sent["n"] += 1
                due = 0
        if rate:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return index

    def worker():
        client = Client(port)
        while (index := next_index()) is not None:
            reason = client.send(index)
            if reason:
                with lock:
                    errors.append((index, reason))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent["n"], errors


def prices_pico_per_token(models: set[str]) -> dict[str, tuple[int, int]]:
    """(input, output) pico-USD per token of each model, from the filter's own table."""
    cli = release_binary("tollgate")
    rates = {}
    for model in models:
        out = subprocess.run([str(cli), "cost", "--model", model, "--input", "1", "--output", "1"],
                             capture_output=True, text=True, check=True).stdout
        per_million = json.loads(out)["usd_per_million_tokens"]
        # USD per million tokens = pico-USD per token / 10^6 ... times 10^12 / 10^6.
        rates[model] = tuple(int(Decimal(per_million[k]) * 1_000_000) for k in ("input", "output"))
    return rates


def prometheus_sums(text: str) -> dict:
    sums = Counter()
    for line in text.splitlines():
        match = re.match(r"^(tollgate_\w+)\{(.*)\} (\d+)$", line)
        if not match:
            continue
        name, labels, value = match.group(1), match.group(2), int(match.group(3))
        if name == "tollgate_tokens":
            kind = re.search(r'type="(\w+)"', labels).group(1)
            sums[f"tokens_{kind}"] += value
        elif name == "tollgate_cost_nano_usd":
            sums["cost_nano"] += value
        elif name == "tollgate_requests":
            outcome = re.search(r'outcome="(\w+)"', labels).group(1)
            sums[f"requests_{outcome}"] += value
        elif name == "tollgate_guardrail_findings":
            detector = re.search(r'detector="(\w+)"', labels).group(1)
            phase = re.search(r'phase="(\w+)"', labels).group(1)
            sums[f"findings_{detector}_{phase}"] += value
        elif name == "tollgate_guardrail_blocks":
            phase = re.search(r'phase="(\w+)"', labels).group(1)
            sums[f"blocks_{phase}"] += value
    return sums


def pico(decimal_usd: str) -> int:
    return int(Decimal(decimal_usd) * 10**12)


def reconcile(rig: Rig, requests: int, indices) -> tuple[list[str], dict]:
    """Compares the mocks' books with the filter's metrics and access log. Returns the
    discrepancies (empty when everything matches exactly) and the figures. `indices`: the
    requests sent, for what the guardrails must have found."""
    cases = Counter(guardrail_case(index) for index in indices)
    refused = cases["secret"]
    tallies = rig.mock_usage()
    by_usage = [row for tally in tallies for row in tally["by_usage"]]
    mock = {
        "answers": sum(t["answers"] for t in tallies),
        "input": sum(t["input_tokens"] for t in tallies),
        "output": sum(t["output_tokens"] for t in tallies),
    }
    rates = prices_pico_per_token({row["model"] for row in by_usage})
    expected_pico = expected_nano = 0
    for row in by_usage:
        rate_in, rate_out = rates[row["model"]]
        cost = row["input_tokens"] * rate_in + row["output_tokens"] * rate_out
        expected_pico += cost * row["answers"]
        expected_nano += cost // 1000 * row["answers"]
    # Envoy flushes the access log every 50 ms; wait until every request has its line.
    deadline = time.monotonic() + 30
    while True:
        records = [r for r in rig.envoy.access_log() if r.get("method") == "POST"]
        if len(records) >= requests or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    usage = [json.loads(r["tollgate"]) for r in records if r.get("tollgate")]
    log = {
        "lines": len(records),
        "records": len(usage),
        "input": sum(u["tokens"].get("input", {}).get("tokens", 0) for u in usage),
        "output": sum(u["tokens"].get("output", {}).get("tokens", 0) for u in usage),
        "pico": sum(pico(u["cost_usd"]) for u in usage if u.get("cost_usd")),
        "not_complete": sum(1 for u in usage if u["outcome"] != "complete"),
        "rejected": sum(1 for u in usage if u["outcome"] == "rejected"),
        "estimated": sum(1 for u in usage for c in u["tokens"].values() if c.get("source") != "provider"),
    }
    metrics = prometheus_sums(rig.envoy.admin("/stats/prometheus")[1])
    problems = []

    def same(what, got, want):
        if got != want:
            problems.append(f"{what}: {got} != {want}")

    same("mock answers with usage", mock["answers"], requests - refused)
    same("access-log lines", log["lines"], requests)
    same("usage records", log["records"], requests)
    same("records not complete (refused keys)", log["not_complete"], refused)
    same("records rejected (refused keys)", log["rejected"], refused)
    same("tollgate_guardrail_blocks{phase=request} vs keys sent", metrics["blocks_request"], refused)
    same("tollgate_guardrail_findings{detector=email,phase=request} vs emails sent",
         metrics["findings_email_request"], cases["email"])
    same("tollgate_guardrail_findings{detector=openai_key,phase=request} vs keys sent",
         metrics["findings_openai_key_request"], refused)
    same("counts estimated instead of reported", log["estimated"], 0)
    same("input tokens in the access log vs the mocks", log["input"], mock["input"])
    same("output tokens in the access log vs the mocks", log["output"], mock["output"])
    same("cost (pico-USD) in the access log vs the mocks' usage at the filter's prices", log["pico"], expected_pico)
    same("tollgate_tokens{type=input} vs the mocks", metrics["tokens_input"], mock["input"])
    same("tollgate_tokens{type=output} vs the mocks", metrics["tokens_output"], mock["output"])
    same("tollgate_cost_nano_usd vs the mocks' usage at the filter's prices", metrics["cost_nano"], expected_nano)
    same("tollgate_requests{outcome=complete}", metrics["requests_complete"], requests - refused)
    same("tollgate_requests{outcome=rejected}", metrics["requests_rejected"], refused)
    figures = {"mock": mock, "access_log": log, "metrics": dict(metrics), "guardrail_cases": dict(cases),
               "expected_pico_usd": expected_pico, "expected_nano_usd": expected_nano}
    return problems, figures


def report_errors(errors) -> None:
    kinds = Counter(reason.split(":")[0] for _, reason in errors)
    print(f"  unexpected answers: {len(errors)} {dict(kinds)}")
    for index, reason in errors[:5]:
        print(f"    request {index}: {reason}")


def load(args) -> int:
    rig = Rig(workers=args.workers)
    try:
        print(f"load: {args.requests} requests, {args.concurrency} at a time, Envoy with {args.workers} workers "
              f"on port {rig.envoy.port}, mocks on {[m.port for m in rig.mocks.values()]}")
        started = time.monotonic()
        sent, errors = run_requests(rig.envoy.port, range(args.requests), args.concurrency)
        elapsed = time.monotonic() - started
        print(f"  sent {sent} in {elapsed:.1f} s ({sent / elapsed:.0f} req/s)")
        report_errors(errors)
        problems, figures = reconcile(rig, sent, range(sent))
        failures = rig.envoy.vm_failures()
        print(f"  mocks reported {figures['mock']['input']} input and {figures['mock']['output']} output tokens "
              f"in {figures['mock']['answers']} answers")
        print(f"  access log: {figures['access_log']['records']} records, {figures['access_log']['input']} input, "
              f"{figures['access_log']['output']} output, {Decimal(figures['access_log']['pico']) / 10**12} USD")
        print(f"  metrics: {figures['metrics'].get('tokens_input')} input, {figures['metrics'].get('tokens_output')} "
              f"output, {figures['metrics'].get('cost_nano')} nano-USD (expected {figures['expected_nano_usd']})")
        print(f"  guardrails: {figures['guardrail_cases'].get('email', 0)} emails masked and restored, "
              f"{figures['guardrail_cases'].get('secret', 0)} keys refused")
        for problem in problems + failures:
            print(f"  MISMATCH {problem}")
        ok = not errors and not problems and not failures
        print(f"load: {'PASS' if ok else 'FAIL'}: {sent - len(errors)} passed, {len(errors)} failed")
        return 0 if ok else 1
    finally:
        rig.stop()


def memory_sample(rig: Rig) -> dict:
    status = Path(f"/proc/{rig.envoy.process.pid}/status").read_text()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    stats = rig.envoy.stats()
    return {"rss_bytes": rss_kib * 1024, "heap_allocated": stats.get("server.memory_allocated", 0),
            "wasm_memory": stats.get("wasmcustom.tollgate.wasm_memory_bytes", 0)}


def soak(args) -> int:
    rig = Rig(workers=args.workers)
    try:
        print(f"soak: {args.seconds} s at {args.rate} req/s ({args.warmup} s warm-up), Envoy with "
              f"{args.workers} workers, samples every {args.interval} s")
        samples: list[tuple[float, dict]] = []
        stop = threading.Event()
        started = time.monotonic()

        def sampler():
            while not stop.is_set():
                samples.append((time.monotonic() - started, memory_sample(rig)))
                stop.wait(args.interval)

        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        sent, errors = run_requests(rig.envoy.port, itertools.count(), args.concurrency, rate=args.rate,
                                    deadline=started + args.seconds)
        stop.set()
        watcher.join()
        samples.append((time.monotonic() - started, memory_sample(rig)))
        elapsed = time.monotonic() - started
        print(f"  sent {sent} in {elapsed:.0f} s ({sent / elapsed:.1f} req/s)")
        report_errors(errors)
        after_warmup = next(sample for at, sample in samples if at >= args.warmup)
        end = samples[-1][1]
        mib = 1024 * 1024
        for at, sample in samples[::6] + ([samples[-1]] if (len(samples) - 1) % 6 else []):
            print(f"    t={at:6.0f}s rss={sample['rss_bytes'] / mib:7.1f} MiB heap={sample['heap_allocated'] / mib:6.1f} MiB "
                  f"wasm={sample['wasm_memory'] / mib:5.2f} MiB")
        growth = {k: end[k] - after_warmup[k] for k in end}
        print(f"  after warm-up: rss {after_warmup['rss_bytes'] / mib:.1f} MiB, heap {after_warmup['heap_allocated'] / mib:.1f} MiB, "
              f"wasm {after_warmup['wasm_memory'] / mib:.2f} MiB")
        print(f"  at the end:    rss {end['rss_bytes'] / mib:.1f} MiB, heap {end['heap_allocated'] / mib:.1f} MiB, "
              f"wasm {end['wasm_memory'] / mib:.2f} MiB")
        flat = all(end[k] <= after_warmup[k] * (1 + args.tolerance) + args.slack_mib * mib for k in end)
        print(f"  memory {'flat' if flat else 'GREW'}: within {args.tolerance:.0%} + {args.slack_mib} MiB of the "
              f"warm-up value (growth: {', '.join(f'{k} {v / mib:+.2f} MiB' for k, v in growth.items())})")
        problems, figures = reconcile(rig, sent, range(sent))
        for problem in problems + rig.envoy.vm_failures():
            print(f"  MISMATCH {problem}")
        print(f"  totals: {figures['mock']['input']} input and {figures['mock']['output']} output tokens, "
              f"{Decimal(figures['expected_pico_usd']) / 10**12} USD, matched exactly" if not problems else "")
        if args.json:
            Path(args.json).write_text(json.dumps({"samples": samples, "figures": figures, "sent": sent,
                                                   "errors": len(errors)}, indent=1))
        ok = flat and not errors and not problems
        print(f"soak: {'PASS' if ok else 'FAIL'}: {sent - len(errors)} passed, {len(errors)} failed")
        return 0 if ok else 1
    finally:
        rig.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_load = sub.add_parser("load", help="a bounded burst at full speed")
    p_load.add_argument("--requests", type=int, default=100_000)
    p_load.add_argument("--concurrency", type=int, default=48)
    p_load.add_argument("--workers", type=int, default=2, help="Envoy worker threads (one Wasm VM each)")
    p_soak = sub.add_parser("soak", help="a steady rate for a while, watching memory")
    p_soak.add_argument("--seconds", type=int, default=600)
    p_soak.add_argument("--rate", type=float, default=100)
    p_soak.add_argument("--warmup", type=int, default=60)
    p_soak.add_argument("--interval", type=int, default=10)
    p_soak.add_argument("--concurrency", type=int, default=16)
    p_soak.add_argument("--workers", type=int, default=2)
    p_soak.add_argument("--tolerance", type=float, default=0.10, help="relative growth allowed after warm-up")
    p_soak.add_argument("--slack-mib", type=float, default=2.0, help="absolute growth allowed after warm-up")
    p_soak.add_argument("--json", help="also write the samples and totals to this file")
    args = parser.parse_args()
    return load(args) if args.command == "load" else soak(args)


if __name__ == "__main__":
    sys.exit(main())
