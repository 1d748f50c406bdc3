"""`make bench`: Tollgate against bare Envoy, the mock itself and the peers, in one run.

Every target is measured with the same load generator (target/release/tollgate-load), the
same request bodies and the same connection counts, in rounds that alternate between the
targets (the order rotates each round), so machine noise lands on all of them alike.

CPU layout on the 2-core box: the proxy under test (Envoy with --concurrency 1, LiteLLM with
one worker, Portkey's single Node process) is pinned to CPU 1; the mock provider and the load
generator share CPU 0. Only one target is loaded at a time; the others sit idle.

A profile whose budgets are kept in Redis gets a real Redis and webdis (tests/e2e/harness.py's,
from redis/redis.conf and redis/webdis.json), started by the run on CPU 0 beside the mock, with
their data under target/bench/redis/ (removed afterwards).

Results go to BENCHMARKS.md (bench/report.py) and target/bench/results.json.
BENCH_QUICK=1 runs a ~3 minute smoke version with fewer and shorter rounds; BENCH_WAIT_QUIET=MINUTES
waits (at most that long) for the load average to fall under 1 before starting;
BENCH_PROFILES=skeleton,selection,... measures only those profiles of bench/profiles.toml (the
report says so).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))

from bodies import write_bodies  # noqa: E402
from harness import Envoy, Mock, Redis, Webdis, envoy_binary, release_binary  # noqa: E402

import peers  # noqa: E402
import report  # noqa: E402

OUT_DIR = REPO / "target" / "bench"
PROXY_CPU = "1"
LOAD_CPU = "0"
P99_LIMIT_US = 20_000.0
PACED_HEADER = "x-mock-chunk-delay-ms: 1"


@dataclass(frozen=True)
class Plan:
    latency_rounds: int
    latency_requests: int  # per target per round, c=1
    latency_seconds: float  # cap per batch, for slow targets
    throughput_rounds: int
    throughput_seconds: float
    concurrency: tuple[int, ...]
    stream_rounds: int
    stream_requests: int
    stream_seconds: float
    chunk_rounds: int
    chunk_seconds: float
    chunk_connections: int
    micro_budget_ms: int
    v8_runs: int


FULL = Plan(latency_rounds=10, latency_requests=2000, latency_seconds=1.0, throughput_rounds=3,
            throughput_seconds=2.0, concurrency=(1, 2, 4, 8, 16, 32, 64), stream_rounds=6, stream_requests=300,
            stream_seconds=1.0, chunk_rounds=3, chunk_seconds=3.0, chunk_connections=8, micro_budget_ms=300,
            v8_runs=3)
QUICK = Plan(latency_rounds=3, latency_requests=400, latency_seconds=0.4, throughput_rounds=1,
             throughput_seconds=1.0, concurrency=(1, 4, 16), stream_rounds=2, stream_requests=60,
             stream_seconds=0.5, chunk_rounds=1, chunk_seconds=1.5, chunk_connections=8, micro_budget_ms=60,
             v8_runs=1)


@dataclass
class Target:
    name: str
    kind: str  # direct | envoy | floor | tollgate | peer
    url: str
    pid: int  # the process whose CPU time is charged to this target
    headers: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # e.g. ip netns exec NS
    baseline: str = "direct"  # the direct target its added latency is taken over
    expect_header: str | None = None
    stream_model: str | None = None  # model name for paced streams, when not the default
    streams: bool = True
    note: str = ""
    # Processes the target relies on besides itself (Redis and webdis of a Redis-store profile):
    # their CPU is measured apart, never charged to the proxy.
    store_pids: list[int] = field(default_factory=list)
    # Checked after the warm-up: the feature really runs (None: nothing to check).
    verify: object = None


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def nice_level() -> int:
    """BENCH_NICE=N (negative needs root; default 0, off): every process the benchmark runs
    (mock, load generator, all proxies alike) gets this priority, so other work on the same
    cores delays them less. Off by default: it slows other engineers' builds, and on this
    machine it did not remove the main disturbance (their builds evicting caches)."""
    level = int(os.environ.get("BENCH_NICE", "0") or 0)
    return level if level >= 0 or os.geteuid() == 0 else 0


def pinned(cpu: str) -> list[str]:
    """Runs a command on `cpu` at the benchmark's priority; `nice` and `taskset` both exec, so
    the PID stays the command's own."""
    level = nice_level()
    return (["nice", "-n", str(level)] if level else []) + ["taskset", "-c", cpu]


def cpu_ns(pid: int) -> tuple[int, int]:
    """CPU time of process `pid`, in ns, two ways: the sum of /proc/<pid>/task/*/schedstat (the
    scheduler's exact run time, but only of threads still alive) and utime + stime from
    /proc/<pid>/stat (every thread, dead ones too, in 10 ms ticks)."""
    exact = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            exact += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        ticks = 0
    return exact, ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def cpu_used(before: tuple[int, int], after: tuple[int, int]) -> int:
    """The exact figure, unless threads exited meanwhile (the tick count then exceeds it by more
    than its own resolution allows)."""
    exact, ticks = after[0] - before[0], after[1] - before[1]
    return ticks if ticks - exact > 20_000_000 else exact


def machine_cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def own_cpu_seconds() -> float:
    """This script's CPU plus that of every child it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Bench:
    def __init__(self, plan: Plan, quick: bool):
        self.plan = plan
        self.quick = quick
        self.stoppers: list = []
        self.targets: list[Target] = []
        self.notes: list[str] = []
        self.results: dict = {"latency": {}, "throughput": {}, "stream": {}, "chunks": {}}
        self.loadgen = str(release_binary("tollgate-load"))

    # ---- processes -------------------------------------------------------------------

    def start(self) -> None:
        profiles = selected_profiles(tomllib.loads((REPO / "bench" / "profiles.toml").read_text())["profile"])
        self.results["profiles"] = profiles
        log("starting the mock provider, bare Envoy and Envoy with Tollgate")
        mock = Mock(prefix=pinned(LOAD_CPU))
        self.stoppers.append(mock.stop)
        self.mock = mock
        self.targets.append(Target("direct", "direct", f"http://127.0.0.1:{mock.port}/v1/chat/completions",
                                   mock.process.pid, note="the mock provider itself; CPU is the mock's"))
        bare = Envoy(mock.port, tollgate=False, prefix=pinned(PROXY_CPU))
        self.stoppers.append(stopped_and_removed(bare))
        self.targets.append(Target("envoy", "envoy", f"{bare.base_url}/v1/chat/completions", bare.process.pid,
                                   note="envoy/envoy.yaml without the Tollgate filter"))
        self.start_floor(mock.port)
        for profile in profiles:
            store = redis_store(profile)
            webdis = self.start_redis() if store else None
            envoy = Envoy(mock.port, filter_config=profile["config"], prefix=pinned(PROXY_CPU),
                          webdis_port=webdis.port if webdis else None)
            self.stoppers.append(stopped_and_removed(envoy))
            target = Target(f"tollgate-{profile['name']}", "tollgate", f"{envoy.base_url}/v1/chat/completions",
                            envoy.process.pid, headers=list(profile.get("headers", [])),
                            expect_header="x-tollgate-cost-usd", note=profile["what"])
            if budget_limits(profile):
                target.verify = budgets_verifier(envoy, budget_limits(profile), self.redis if store else None)
            if webdis:
                target.store_pids = [self.redis.process.pid, webdis.process.pid]
            self.targets.append(target)
        self.start_litellm(mock.port)
        self.start_portkey()

    def start_redis(self) -> Webdis:
        """One Redis and webdis for the run's Redis-store profiles (started on first use), on the
        mock's CPU, with their data under target/bench/redis/ (removed when the run stops)."""
        if getattr(self, "webdis", None):
            return self.webdis
        log("starting Redis and webdis (the Redis store's)")
        data = OUT_DIR / "redis"
        shutil.rmtree(data, ignore_errors=True)
        self.redis = Redis(data_dir=data / "redis")
        self.stoppers.append(lambda: shutil.rmtree(data, ignore_errors=True))
        self.stoppers.append(self.redis.stop)
        self.webdis = Webdis(self.redis.port, workdir=data / "webdis")
        self.stoppers.append(self.webdis.stop)
        for process in (self.redis.process, self.webdis.process):
            subprocess.run(["taskset", "-a", "-p", "-c", LOAD_CPU, str(process.pid)], check=True,
                           stdout=subprocess.DEVNULL)
        self.results["redis_store"] = {
            "redis": first_line([self.redis.binary, "--version"]),
            "webdis": "Debian package " + (debian_version("webdis") or "webdis"),
            "webdis_threads": self.webdis.config.get("threads"),
        }
        return self.webdis

    def start_floor(self, mock_port: int) -> None:
        """The same Envoy with examples/floor_filter.rs in Tollgate's place: the least a
        body-reading filter costs, so Tollgate's figures can be split into the platform's share
        and its own."""
        built = subprocess.run([str(REPO / "scripts/build-wasm.sh"), "--example", "floor_filter"], cwd=REPO,
                               capture_output=True, text=True)
        if built.returncode != 0:
            self.notes.append(f"floor filter not built, so not measured: {built.stderr.strip()[-300:]}")
            return
        module = REPO / built.stdout.strip().splitlines()[-1]
        floor = Envoy(mock_port, wasm=module, prefix=pinned(PROXY_CPU))
        self.stoppers.append(stopped_and_removed(floor))
        self.targets.append(Target("floor", "floor", f"{floor.base_url}/v1/chat/completions", floor.process.pid,
                                   expect_header="x-tollgate-cost-usd",
                                   note="examples/floor_filter.rs in Tollgate's place: holds and copies the request "
                                        "body, and a non-streamed answer's body before setting one header; copies "
                                        "each streamed event; nothing else"))

    def start_litellm(self, mock_port: int) -> None:
        if os.environ.get("BENCH_SKIP_LITELLM") == "1":
            self.notes.append("LiteLLM skipped: BENCH_SKIP_LITELLM=1.")
            return
        if not peers.litellm_version():
            self.notes.append("LiteLLM skipped: .bench-venv has no litellm (bench/setup.sh could not install it).")
            return
        log("starting LiteLLM (one worker; ready in 10-30 s)")
        try:
            litellm = peers.LiteLLM(mock_port, pinned(PROXY_CPU))
        except Exception as error:  # a peer that will not start is reported, not fatal
            self.notes.append(f"LiteLLM skipped: it did not start ({str(error).splitlines()[0]}).")
            return
        self.stoppers.append(litellm.stop)
        self.targets.append(Target("litellm", "peer", litellm.url, litellm.process.pid,
                                   headers=[f"authorization: Bearer {litellm.key}"],
                                   stream_model="gpt-4o-mini-paced",
                                   note=f"LiteLLM proxy {peers.litellm_version()}, 1 worker"))

    def start_portkey(self) -> None:
        if os.environ.get("BENCH_SKIP_PORTKEY") == "1":
            self.notes.append("Portkey skipped: BENCH_SKIP_PORTKEY=1.")
            return
        if not peers.portkey_version():
            self.notes.append("Portkey skipped: no node, or bench/node_modules has no @portkey-ai/gateway.")
            return
        if os.geteuid() != 0 or not shutil.which("ip"):
            self.notes.append("Portkey skipped: it listens on every interface, so it only runs inside a network "
                              "namespace, which needs root and `ip`.")
            return
        log("starting Portkey inside a loopback-only network namespace, with its own mock")
        try:
            namespace = peers.Namespace(f"tollgate-bench-{os.getpid()}")
        except subprocess.CalledProcessError as error:
            self.notes.append(f"Portkey skipped: could not create a network namespace ({error.stderr.strip()}).")
            return
        self.stoppers.append(namespace.delete)
        self.results["portkey_namespace"] = namespace.interfaces()
        try:
            ns_mock = peers.namespaced_mock(namespace, pinned(LOAD_CPU))
            self.stoppers.append(ns_mock.stop)
            portkey = peers.Portkey(namespace, ns_mock.port, pinned(PROXY_CPU))
        except Exception as error:
            self.notes.append(f"Portkey skipped: it did not start ({str(error).splitlines()[0]}).")
            return
        self.stoppers.append(portkey.stop)
        self.targets.append(Target("direct-ns", "direct", f"http://127.0.0.1:{ns_mock.port}/v1/chat/completions",
                                   ns_mock.process.pid, prefix=namespace.prefix, baseline="direct-ns",
                                   note="the same mock binary inside Portkey's namespace"))
        self.targets.append(Target("portkey", "peer", portkey.url, portkey.process.pid, headers=portkey.headers,
                                   prefix=namespace.prefix, baseline="direct-ns",
                                   note=f"Portkey gateway {peers.portkey_version()} on Node {node_version()}"))

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as error:  # keep stopping the rest
                print(f"bench: while stopping: {error}", file=sys.stderr)
        self.stoppers.clear()

    # ---- one measurement ---------------------------------------------------------------

    def load(self, target: Target, body: Path | None, *, connections: int = 1, requests: int | None = None,
             seconds: float | None = None, warmup: int = 0, raw: bool = False, extra_headers: tuple = (),
             path: str | None = None, expect: bool = True, timeout: float = 120) -> dict:
        url = target.url if path is None else target.url.split("/v1/", 1)[0] + path
        command = [*target.prefix, *pinned(LOAD_CPU), self.loadgen, "--url", url,
                   "--connections", str(connections), "--warmup", str(warmup)]
        command += ["--body", str(body)] if body else ["--method", "GET"]
        for header in [*target.headers, *extra_headers]:
            command += ["--header", header]
        if requests:
            command += ["--requests", str(requests)]
        if seconds:
            command += ["--duration", str(seconds)]
        if raw:
            command.append("--raw")
        if target.expect_header and body is not None and expect:
            command += ["--expect-header", target.expect_header]
        before = cpu_ns(target.pid)
        store_before = [cpu_ns(pid) for pid in target.store_pids]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        used = cpu_used(before, cpu_ns(target.pid))
        store_used = sum(cpu_used(b, cpu_ns(pid)) for b, pid in zip(store_before, target.store_pids))
        if done.returncode != 0:
            raise RuntimeError(f"tollgate-load failed on {target.name}: {done.stderr.strip()[-500:]}")
        result = json.loads(done.stdout)
        result["cpu_ns"] = used
        if target.store_pids:
            result["store_cpu_ns"] = store_used
        return result

    def rotated(self, targets: list[Target], round_index: int) -> list[Target]:
        k = round_index % len(targets)
        return targets[k:] + targets[:k]

    # ---- phases ------------------------------------------------------------------------

    def check(self, bodies: dict[str, Path]) -> None:
        """Every target answers 200 (with Tollgate's headers where expected) before timing."""
        for target in list(self.targets):
            warm = 30 if target.name == "litellm" else 200
            result = self.load(target, bodies["chat-1k"], requests=warm, warmup=1)
            if result["ok"] != warm:
                raise RuntimeError(f"{target.name} is not answering correctly: {result['error_kinds']}")
            if target.verify:
                target.verify()
            stream = self.load(target, bodies["stream-1k"], requests=3, warmup=1, expect=False)
            if stream["ok"] != 3 or stream.get("events", 0) < 3:
                target.streams = False
                kinds = ", ".join(f"{k} x{v}" for k, v in stream["error_kinds"].items()) or "no events"
                self.notes.append(f"{target.name} cannot stream here: {kinds}"
                                  + (" (Portkey 1.15.2 on Node 20: `TypeError: immutable` from Headers.append, "
                                     "see shared/research/perf.md 6.3)" if target.name == "portkey" else "") + ".")

    def idle(self, seconds: float = 2.0) -> None:
        """CPU each target's process burns with no load at all: background work of an idle peer
        on CPU 1 would be charged to whichever target is being measured."""
        before = {t.name: cpu_ns(t.pid) for t in self.targets}
        time.sleep(seconds)
        self.results["idle_cpu_share"] = {t.name: cpu_used(before[t.name], cpu_ns(t.pid)) / 1e9 / seconds
                                          for t in self.targets}

    def latency(self, bodies: dict[str, Path]) -> None:
        """One request at a time: every latency kept, pooled over rounds."""
        plan = self.plan
        workloads = [(name, bodies[name], None, self.targets) for name in ("chat-1k", "chat-32k", "chat-1m")]
        # The Wasm boundary floor: a request Tollgate lets through untouched (it inspects only
        # POST …/chat/completions), so only the per-stream VM callbacks remain.
        envoys = [t for t in self.targets if t.kind in ("envoy", "floor", "tollgate")]
        workloads.append(("get-models", None, "/v1/models", envoys))
        for name, body, path, targets in workloads:
            log(f"latency, c=1, {name}: {plan.latency_rounds} rounds x {len(targets)} targets")
            pooled: dict[str, dict] = {t.name: {"raw": [], "cpu_ns": 0, "ok": 0, "errors": 0, "round_p50": [],
                                                "store_cpu_ns": 0 if t.store_pids else None}
                                       for t in targets}
            for r in range(plan.latency_rounds):
                for target in self.rotated(targets, r):
                    result = self.load(target, body, requests=plan.latency_requests, seconds=plan.latency_seconds,
                                       warmup=1, raw=True, path=path)
                    entry = pooled[target.name]
                    entry["raw"].extend(result["raw_latency_us"])
                    entry["cpu_ns"] += result["cpu_ns"]
                    entry["ok"] += result["ok"]
                    entry["errors"] += result["errors"]
                    entry["round_p50"].append(result["latency_us"]["p50"])
                    if entry["store_cpu_ns"] is not None:
                        entry["store_cpu_ns"] += result.get("store_cpu_ns", 0)
            self.results["latency"][name] = {n: summarize(e) for n, e in pooled.items()}

    def throughput(self, bodies: dict[str, Path]) -> None:
        """Closed loop at rising concurrency; a target leaves the sweep once its p99 passes 20 ms."""
        plan = self.plan
        targets = [t for t in self.targets if t.name != "direct-ns"]
        for name in ("chat-1k", "chat-32k", "chat-1m"):
            log(f"throughput, {name}: concurrency {list(plan.concurrency)}, {plan.throughput_rounds} rounds")
            levels: dict[str, list] = {t.name: [] for t in targets}
            active = list(targets)
            for c in plan.concurrency:
                if not active:
                    break
                runs: dict[str, list] = {t.name: [] for t in active}
                for r in range(plan.throughput_rounds):
                    for target in self.rotated(active, r):
                        runs[target.name].append(self.load(target, bodies[name], connections=c,
                                                           seconds=plan.throughput_seconds, warmup=1))
                for target in list(active):
                    point = summarize_level(c, runs[target.name])
                    levels[target.name].append(point)
                    if point["p99_us"] > P99_LIMIT_US or point["errors"]:
                        active.remove(target)
            self.results["throughput"][name] = {n: summarize_throughput(points) for n, points in levels.items()}

    def streaming(self, bodies: dict[str, Path]) -> None:
        plan = self.plan
        targets = [t for t in self.targets if t.streams]
        log(f"streaming, time to first token at c=1: {plan.stream_rounds} rounds x {len(targets)} targets")
        pooled = {t.name: {"ttft": [], "latency": [], "events": 0, "streams": 0} for t in targets}
        for r in range(plan.stream_rounds):
            for target in self.rotated(targets, r):
                result = self.load(target, bodies["stream-1k"], requests=plan.stream_requests,
                                   seconds=plan.stream_seconds, warmup=3, raw=True, expect=False)
                entry = pooled[target.name]
                entry["ttft"].extend(result.get("raw_ttft_us", []))
                entry["latency"].extend(result["raw_latency_us"])
                entry["events"] += result.get("events", 0)
                entry["streams"] += result.get("streams", 0)
        self.results["stream"] = {
            n: {"ttft": percentiles(e["ttft"]), "complete": percentiles(e["latency"]),
                "events_per_stream": e["events"] / max(e["streams"], 1)}
            for n, e in pooled.items()
        }

        log(f"streaming, paced events (1 ms apart), {plan.chunk_connections} streams at once: CPU per chunk")
        paced = {}
        for target in targets:
            if target.stream_model:
                body = bodies["stream-1k"].with_name(f"stream-1k-{target.stream_model}.json")
                body.write_bytes(bodies["stream-1k"].read_bytes().replace(b'"gpt-4o-mini"',
                                                                          f'"{target.stream_model}"'.encode(), 1))
                paced[target.name] = body
            else:
                paced[target.name] = bodies["stream-1k"]
        sums = {t.name: {"cpu_ns": 0, "events": 0, "streams": 0, "gaps": [], "rounds": []} for t in targets}
        for r in range(plan.chunk_rounds):
            for target in self.rotated(targets, r):
                result = self.load(target, paced[target.name], connections=plan.chunk_connections,
                                   seconds=plan.chunk_seconds, warmup=1, extra_headers=(PACED_HEADER,),
                                   expect=False)
                entry = sums[target.name]
                entry["cpu_ns"] += result["cpu_ns"]
                entry["events"] += result.get("events", 0)
                entry["streams"] += result.get("streams", 0)
                entry["gaps"].append(result.get("event_gap_us", {}).get("p50", 0.0))
                entry["rounds"].append(result["cpu_ns"] / 1000 / max(result.get("events", 0), 1))
        self.results["chunks"] = {
            n: {"cpu_us_per_chunk": e["cpu_ns"] / 1000 / max(e["events"], 1), "events": e["events"],
                "streams": e["streams"], "gap_p50_us": statistics.median(e["gaps"]) if e["gaps"] else None,
                "rounds": e["rounds"]}
            for n, e in sums.items()
        }

    def micro(self, bodies: dict[str, Path]) -> None:
        log("Wasm micro-benchmarks (examples/per_request.rs): native, and wasm32-wasip1 under Wasmtime and V8")
        env = dict(os.environ, BENCH_BUDGET_MS=str(self.plan.micro_budget_ms))
        files = [str(bodies[n]) for n in ("chat-1k", "chat-32k", "chat-1m")]
        out: dict = {}
        built = subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "per_request"],
                               cwd=REPO, capture_output=True, text=True)
        if built.returncode == 0:
            native = subprocess.run([*pinned(LOAD_CPU), str(REPO / "target/release/examples/per_request"), "time",
                                     *files], capture_output=True, text=True, env=env, check=True)
            out["native"] = json.loads(native.stdout)
            counted = subprocess.run([str(REPO / "target/release/examples/per_request"), "hostcalls",
                                      str(bodies["chat-1k"])], capture_output=True, text=True)
            if counted.returncode == 0:
                self.results["hostcalls"] = json.loads(counted.stdout)
            else:
                self.notes.append(f"hostcalls not counted: {counted.stderr.strip()[-300:]}")
        else:
            self.notes.append(f"native micro-benchmarks not built: {built.stderr.strip()[-300:]}")
        wasm = subprocess.run([str(REPO / "scripts/build-wasm.sh"), "--example", "per_request"], cwd=REPO,
                              capture_output=True, text=True)
        python = REPO / ".bench-venv/bin/python"
        if wasm.returncode != 0:
            self.notes.append(f"wasm micro-benchmarks not built: {wasm.stderr.strip()[-300:]}")
        elif not python.exists():
            self.notes.append("wasm micro-benchmarks skipped: no .bench-venv (Wasmtime).")
        else:
            module = REPO / wasm.stdout.strip().splitlines()[-1]
            run = subprocess.run([*pinned(LOAD_CPU), str(python), str(REPO / "bench/wasm_micro.py"), str(module),
                                  str(bodies["chat-1k"].parent), *files], capture_output=True, text=True, env=env)
            if run.returncode == 0:
                out["wasm"] = json.loads(run.stdout)
                out["wasmtime"] = subprocess.run(
                    [str(python), "-c", "import importlib.metadata as m; print(m.version('wasmtime'))"],
                    capture_output=True, text=True).stdout.strip()
            else:
                self.notes.append(f"wasm micro-benchmarks failed: {run.stderr.strip()[-300:]}")
        if wasm.returncode == 0 and shutil.which("node"):
            module = REPO / wasm.stdout.strip().splitlines()[-1]
            # The headline's feature rates are differences of two best times in V8, so one
            # disturbed case moves them a lot on this shared machine: the best of a few whole runs.
            runs = []
            for _ in range(self.plan.v8_runs):
                run = subprocess.run([*pinned(LOAD_CPU), "node", "--no-warnings",
                                      str(REPO / "bench/wasm_micro_v8.mjs"), str(module),
                                      str(bodies["chat-1k"].parent), *files],
                                     capture_output=True, text=True, env=env)
                printed = complete_json(run.stdout)
                if run.returncode != 0 and printed:
                    # Seen with Node 20's WASI: a segfault after the module printed every result
                    # and returned (only after the many cold runs). The figures are its own.
                    self.notes.append(f"node exited with status {run.returncode} after printing complete V8 "
                                      "results (a crash at exit, after the cold runs; the figures are the "
                                      "module's own output).")
                if printed:
                    runs.append(printed)
                else:
                    self.notes.append(f"a V8 micro-benchmark run failed (status {run.returncode}): "
                                      f"{run.stderr.strip()[-300:]}")
            if runs:
                out["v8"] = best_of(runs)
                out["v8_runs"] = len(runs)
                out["v8_version"] = first_line(["node", "-p", "process.versions.v8"])
        self.results["micro"] = out

    def gate(self) -> None:
        log("regression gate: instruction counts under callgrind (bench/gate.py)")
        done = subprocess.run([sys.executable, str(REPO / "bench/gate.py"), "--json"], cwd=REPO,
                              capture_output=True, text=True)
        try:
            self.results["gate"] = json.loads(done.stdout)
        except json.JSONDecodeError:
            self.notes.append(f"regression gate did not run: {done.stderr.strip()[-300:]}")

    def profile(self, bodies: dict[str, Path]) -> None:
        """Where the Tollgate Envoy's CPU goes at saturation, by shared object (`perf`), so a
        missed target comes with what dominates it."""
        if not shutil.which("perf"):
            self.notes.append("no profile: `perf` is not installed.")
            return
        tollgate = [t for t in self.targets if t.kind == "tollgate"]
        bare = next((t for t in self.targets if t.kind == "envoy"), None)
        floor = [t for t in self.targets if t.kind == "floor"]
        if not tollgate or not bare:
            return
        # The first profile (the least Tollgate does) and the one judged with every feature on.
        judged = {f"tollgate-{p['name']}" for p in self.results.get("profiles", []) if "all_features" in p.get("judged_for", [])}
        profiled = [tollgate[0], *(t for t in tollgate[1:] if t.name in judged)]
        log("profiling Envoy with Tollgate and bare Envoy under load (perf, cpu-clock)")
        self.results["profile"] = {}
        for t in (bare, *floor, *profiled):
            data = OUT_DIR / f"perf-{t.name}.data"
            seconds = 2.0 if not self.quick else 1.0
            recorder = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-g",
                                         "-o", str(data), "-p", str(t.pid), "--", "sleep", str(seconds + 0.5)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)
            loaded = self.load(t, bodies["chat-1k"], connections=16, seconds=seconds, warmup=1)
            _, err = recorder.communicate(timeout=60)
            if recorder.returncode != 0:
                self.notes.append(f"no profile: perf record failed ({err.strip()[-200:]}).")
                self.results.pop("profile", None)
                return
            self.results["profile"][t.name] = {
                "dso": perf_report(data, ["--sort", "dso"]),
                "cpu_us_per_request": loaded["cpu_ns"] / 1000 / max(loaded["ok"], 1),
                "rps": loaded["rps"],
            }

    def wait_for_quiet(self) -> None:
        """BENCH_WAIT_QUIET=MINUTES: wait up to that long for the 1-minute load average to drop
        under 1 before measuring (other engineers build on this machine)."""
        minutes = float(os.environ.get("BENCH_WAIT_QUIET", "0") or 0)
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            load = float(Path("/proc/loadavg").read_text().split()[0])
            if load < 1.0:
                return
            log(f"waiting for a quieter machine: load average {load:.2f}")
            time.sleep(30)

    def run(self) -> int:
        self.wait_for_quiet()
        start_busy, start_total = machine_cpu_jiffies()
        own_start = own_cpu_seconds()
        started = time.time()
        self.results["machine"] = machine_info()
        self.results["plan"] = {"mode": "quick" if self.quick else "full", "nice": nice_level(),
                                "profile_subset": os.environ.get("BENCH_PROFILES", "").strip() or None,
                                **self.plan.__dict__}
        log(f"mode {'quick' if self.quick else 'full'}; load average at start "
            f"{self.results['machine']['loadavg_start']}")
        bodies = write_bodies(OUT_DIR / "bodies")
        try:
            self.start()
            self.results["targets"] = [{"name": t.name, "kind": t.kind, "note": t.note, "baseline": t.baseline}
                                       for t in self.targets]
            self.results["versions"] = versions()
            self.check(bodies)
            self.idle()
            self.latency(bodies)
            self.throughput(bodies)
            self.streaming(bodies)
            if os.environ.get("BENCH_PROFILE", "1") == "1":
                self.profile(bodies)
        finally:
            self.stop()
        self.micro(bodies)
        self.gate()
        end_busy, end_total = machine_cpu_jiffies()
        elapsed = time.time() - started
        tick = os.sysconf("SC_CLK_TCK")
        machine_busy = (end_busy - start_busy) / tick
        ours = own_cpu_seconds() - own_start
        self.results["machine"].update({
            "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
            "elapsed_s": elapsed,
            "other_cpu_share": max(machine_busy - ours, 0.0) / (elapsed * (os.cpu_count() or 1)),
            "bench_cpu_share": ours / (elapsed * (os.cpu_count() or 1)),
        })
        self.results["notes"] = self.notes
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "results.json").write_text(json.dumps(self.results, indent=1))
        (REPO / "BENCHMARKS.md").write_text(report.render(self.results))
        log(f"done in {elapsed / 60:.1f} min: BENCHMARKS.md, target/bench/results.json")
        return 0


# ---- statistics ------------------------------------------------------------------------


def selected_profiles(profiles: list[dict]) -> list[dict]:
    """BENCH_PROFILES=a,b,...: only those profiles, in the file's order (an unknown name is an error)."""
    wanted = [n.strip() for n in os.environ.get("BENCH_PROFILES", "").split(",") if n.strip()]
    if not wanted:
        return profiles
    unknown = set(wanted) - {p["name"] for p in profiles}
    if unknown:
        raise SystemExit(f"BENCH_PROFILES: no such profile in bench/profiles.toml: {', '.join(sorted(unknown))}")
    return [p for p in profiles if p["name"] in wanted]


def budget_limits(profile: dict) -> list[str]:
    return [limit["name"] for limit in profile["config"].get("budgets", {}).get("limits", [])]


def redis_store(profile: dict) -> dict | None:
    store = profile["config"].get("budgets", {}).get("store")
    return store.get("redis") if isinstance(store, dict) else None


def budgets_verifier(envoy: Envoy, limits: list[str], redis: Redis | None):
    """After the warm-up: every limit admitted requests (Envoy's labelled counters), none was
    refused, and a Redis store holds counters. A profile whose budgets silently did nothing
    would measure nothing."""
    def verify() -> None:
        stats = envoy.stats()
        prefix = "wasmcustom.tollgate.budget_requests.limit."
        for limit in limits:
            if not stats.get(f"{prefix}{limit}.verdict.admitted"):
                found = sorted(k for k in stats if "budget" in k)
                raise RuntimeError(f"budget limit {limit} admitted nothing during the warm-up: {found}")
        refused = {k: v for k, v in stats.items() if k.startswith(prefix) and not k.endswith(".admitted") and v}
        if refused:
            raise RuntimeError(f"the bench's budgets must never refuse or fail: {refused}")
        if redis is not None:
            keys = redis.command("KEYS", "tollgate:budget:*")
            if len([k for k in keys if not k.startswith("tollgate:budget-op:")]) < len(limits):
                raise RuntimeError(f"Redis holds no budget counters after the warm-up: {keys[:10]}")
            # The filter calls the scripts by their SHA-1, and sends one whole (EVAL) only after
            # Redis answered NOSCRIPT: at the start, once per call in flight then (settlements go
            # in batches). A SHA that is not Redis's would make every call an EVAL.
            stats = redis.command("INFO", "commandstats")
            calls = {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", stats)}
            if calls.get("evalsha", 0) < 100 or calls.get("eval", 0) * 4 > calls["evalsha"]:
                raise RuntimeError(f"the scripts are not called by their SHA-1: {calls}")
    return verify


def debian_version(package: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def stopped_and_removed(envoy: Envoy):
    """Stops `envoy`, then removes its working folder (config, log) from /tmp."""
    def stop() -> None:
        envoy.stop()
        shutil.rmtree(envoy.workdir, ignore_errors=True)
    return stop


def percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        index = max(1, min(len(ordered), -(-len(ordered) * p // 100))) - 1
        return ordered[int(index)]

    return {"n": len(ordered), "p50": rank(50), "p90": rank(90), "p99": rank(99), "max": ordered[-1],
            "mean": sum(ordered) / len(ordered)}


def summarize(entry: dict) -> dict:
    out = percentiles(entry["raw"])
    out["errors"] = entry["errors"]
    out["round_p50"] = entry.get("round_p50", [])
    out["cpu_us_per_request"] = entry["cpu_ns"] / 1000 / max(entry["ok"], 1)
    if entry.get("store_cpu_ns") is not None:
        out["store_cpu_us_per_request"] = entry["store_cpu_ns"] / 1000 / max(entry["ok"], 1)
    return out


def summarize_level(c: int, runs: list[dict]) -> dict:
    ok = sum(r["ok"] for r in runs)
    return {
        "connections": c,
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_us": statistics.median(r["latency_us"]["p50"] for r in runs),
        "p99_us": statistics.median(r["latency_us"]["p99"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "cpu_us_per_request": sum(r["cpu_ns"] for r in runs) / 1000 / max(ok, 1),
        "cpu_busy": sum(r["cpu_ns"] for r in runs) / 1e9 / max(sum(r["elapsed_s"] for r in runs), 1e-9),
        **({"store_cpu_us_per_request": sum(r["store_cpu_ns"] for r in runs) / 1000 / max(ok, 1)}
           if all("store_cpu_ns" in r for r in runs) else {}),
    }


def summarize_throughput(points: list[dict]) -> dict:
    within = [p for p in points if p["p99_us"] <= P99_LIMIT_US and not p["errors"]]
    best = max(within, key=lambda p: p["rps"]) if within else None
    peak = max(points, key=lambda p: p["rps"]) if points else None
    return {"best": best, "peak": peak, "levels": points}


# ---- machine and versions --------------------------------------------------------------


def best_of(runs: list[dict]) -> dict:
    """One micro-benchmark result from several runs: per case and body, the run with the lowest
    best time (its whole record, cold time included)."""
    merged = dict(runs[0])
    best: dict[tuple[str, str], dict] = {}
    for run in runs:
        for result in run["results"]:
            key = (result["case"], result["body"])
            if key not in best or result["ns_best"] < best[key]["ns_best"]:
                best[key] = result
    merged["results"] = [best[(r["case"], r["body"])] for r in runs[0]["results"]]
    return merged


def complete_json(stdout: str) -> dict | None:
    """The micro-benchmark's JSON, if it printed all of it."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and data.get("results") else None


def first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def node_version() -> str:
    return first_line(["node", "--version"]) if shutil.which("node") else "absent"


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def versions() -> dict:
    envoy = first_line([str(envoy_binary()), "--version"])
    match = re.search(r"/(\d+\.\d+\.\d+)/", envoy)
    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "envoy": match.group(1) if match else envoy,
        "litellm": peers.litellm_version() or "not installed",
        "portkey": peers.portkey_version() or "not installed",
        "node": node_version(),
        "rustc": first_line(["rustc", "--version"]),
        "tollgate_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "wasm_size_bytes": (REPO / "dist" / "tollgate.wasm").stat().st_size,
        "valgrind": first_line(["valgrind", "--version"]) if shutil.which("valgrind") else "absent",
    }


def perf_report(data: Path, sort: list[str], limit: int = 12) -> list[dict]:
    done = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                           "--percent-limit", "0.5", *sort], capture_output=True, text=True)
    rows = []
    for line in done.stdout.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(.*)", line)
        if match:
            rows.append({"percent": float(match.group(1)), "what": " ".join(match.group(2).split())})
    return rows[:limit]


def _interrupted(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # `kill` of make bench stops the processes it started too.
    signal.signal(signal.SIGTERM, _interrupted)
    quick = os.environ.get("BENCH_QUICK") == "1"
    bench = Bench(QUICK if quick else FULL, quick)
    try:
        return bench.run()
    except KeyboardInterrupt:
        bench.stop()
        return 130


if __name__ == "__main__":
    sys.exit(main())
