"""Starts and stops the real processes: the mock provider and Envoy with the Tollgate filter.

Used by the end-to-end tests (each test gets its own ports and Envoy --base-id) and by
`make run`. Missing binaries are an error, never a skip.
"""

from __future__ import annotations

import copy
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ENVOY_CONFIG = REPO / "envoy" / "envoy.yaml"
WASM = REPO / "dist" / "tollgate.wasm"

_base_ids = itertools.count(os.getpid() % 4000 * 10 + 1)


def envoy_binary() -> Path:
    path = Path(os.environ.get("ENVOY_BIN") or REPO / ".venv" / "bin" / "envoy")
    if not path.exists():
        raise RuntimeError(f"Envoy not found at {path}: run `make setup` or set ENVOY_BIN")
    return path


def release_binary(name: str) -> Path:
    path = REPO / "target" / "release" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make build`")
    return path


def wasm_module() -> Path:
    if not WASM.exists():
        raise RuntimeError(f"{WASM} is missing: run `make build`")
    return WASM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Mock:
    """tollgate-mock on a port of its own. `prefix` runs it through another command, e.g.
    `taskset -c 0` (the benchmarks pin CPUs) or `ip netns exec NS`; both exec, so the
    process is still the mock's."""

    def __init__(self, *args: str, port: int = 0, name: str | None = None, prefix: Sequence[str] = ()):
        command = [*prefix, str(release_binary("tollgate-mock")), "--listen", f"127.0.0.1:{port}", "--quiet", *args]
        if name:
            command += ["--name", name]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "listening on" not in line:
            _stop(self.process)
            raise RuntimeError(f"tollgate-mock did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        _stop(self.process)


def _wasm_configs(http_filters: list) -> list[dict]:
    return [f["typed_config"]["config"] for f in http_filters if f.get("typed_config", {}).get("config")]


def render_envoy_config(
    template: Path,
    listen_port: int,
    admin_port: int,
    upstream_port: int | dict[str, int],
    filter_config: dict | None = None,
    tollgate: bool = True,
    vm_env: dict[str, str] | None = None,
    wasm: Path | None = None,
) -> dict:
    """The shipped config with test ports, an absolute .wasm path and optionally another
    filter configuration. Everything else stays as shipped, so tests exercise the real file.

    `upstream_port` is one port for every endpoint, or a port per cluster name (clusters without
    endpoints of their own, such as aggregate clusters, are left alone). The .wasm path is also
    replaced in clusters' upstream HTTP filters; `filter_config` applies to the listener's filter.
    With `tollgate=False` the Wasm filter is removed: the same Envoy without Tollgate, which
    the benchmarks compare against; `wasm` loads another module in its place (the benchmarks'
    floor filter)."""
    def module() -> str:
        return str(wasm or wasm_module())

    config = copy.deepcopy(yaml.safe_load(template.read_text()))
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = listen_port
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                http_filters = network_filter["typed_config"].get("http_filters", [])
                if not tollgate:
                    http_filters[:] = [f for f in http_filters if not _is_wasm(f)]
                for http_filter in http_filters:
                    plugin = http_filter["typed_config"].get("config")
                    if not plugin:
                        continue
                    plugin["vm_config"]["code"]["local"]["filename"] = module()
                    if filter_config is not None:
                        plugin["configuration"]["value"] = json.dumps(filter_config)
                    if vm_env:
                        variables = plugin["vm_config"].setdefault("environment_variables", {})
                        variables.setdefault("key_values", {}).update(vm_env)
    for cluster in config["static_resources"]["clusters"]:
        for options in cluster.get("typed_extension_protocol_options", {}).values():
            for plugin in _wasm_configs(options.get("http_filters", [])):
                plugin["vm_config"]["code"]["local"]["filename"] = module()
        if "load_assignment" not in cluster:
            continue
        port = upstream_port if isinstance(upstream_port, int) else upstream_port[cluster["name"]]
        for endpoints in cluster["load_assignment"]["endpoints"]:
            for endpoint in endpoints["lb_endpoints"]:
                endpoint["endpoint"]["address"]["socket_address"]["port_value"] = port
    return config


def _is_wasm(http_filter: dict) -> bool:
    return http_filter["typed_config"]["@type"].endswith("envoy.extensions.filters.http.wasm.v3.Wasm")


# Every Envoy started in this test session, so that tests/e2e/test_zz_no_secrets.py can scan
# what each of them wrote (log, access log, stats) for secrets after the others ran.
STARTED: list["Envoy"] = []

# Lines Envoy 1.40 writes when a Wasm VM fails: it counts nothing in /stats (no counter moves
# when a VM traps; vm_reload* only move with failure_policy FAIL_RELOAD), so the log is the proof.
# (Seen here: "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable".)
VM_FAILURE_MARKERS = ("tollgate panicked", "Function: proxy_on_")


class Envoy:
    """A real Envoy running a rendered copy of envoy/envoy.yaml, one worker thread."""

    def __init__(
        self,
        upstream_port: int | dict[str, int],
        filter_config: dict | None = None,
        template: Path = ENVOY_CONFIG,
        listen_port: int | None = None,
        admin_port: int | None = None,
        log_level: str = "warning",
        tollgate: bool = True,
        prefix: Sequence[str] = (),
        vm_env: dict[str, str] | None = None,
        concurrency: int = 1,
        wasm: Path | None = None,
    ):
        self.port = listen_port or free_port()
        self.admin_port = admin_port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="tollgate-envoy-"))
        config = render_envoy_config(
            template, self.port, self.admin_port, upstream_port, filter_config, tollgate, vm_env, wasm
        )
        config_path = self.workdir / "envoy.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = self.workdir / "envoy.log"
        self._log = open(self.log_path, "w")
        command = [
            *prefix,
            str(envoy_binary()),
            "-c", str(config_path),
            "--base-id", str(next(_base_ids)),
            "--concurrency", str(concurrency),
            # Access-log lines are read by tests (and watched by people running `make run`).
            "--file-flush-interval-msec", "50",
            "--log-level", log_level,
            "--component-log-level", "wasm:debug" if log_level != "warning" else "wasm:info",
        ]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        STARTED.append(self)
        self._wait_ready()
        self.vms_at_start = self.stats().get("wasm.envoy.wasm.runtime.v8.active", 0)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if self.admin("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Envoy not ready after {timeout}s:\n{self.log()[-3000:]}")

    def admin(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges by name."""
        _, text = self.admin("/stats?format=json")
        return {s["name"]: s.get("value", 0) for s in json.loads(text)["stats"] if "value" in s}

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def vm_failures(self) -> list[str]:
        """Evidence that a Tollgate Wasm VM failed: log lines Envoy or the panic hook wrote, Wasm
        reload and load failures, and fewer live VMs than at start. Empty when all is well."""
        evidence = [line for line in self.log().splitlines() if any(m in line for m in VM_FAILURE_MARKERS)]
        stats = self.stats()
        for name in ("wasm.tollgate.vm_reload", "wasm.tollgate.vm_reload_failure", "wasm.remote_load_fetch_failures"):
            if stats.get(name, 0):
                evidence.append(f"{name} = {stats[name]}")
        active = stats.get("wasm.envoy.wasm.runtime.v8.active", 0)
        if active < self.vms_at_start:
            evidence.append(f"wasm.envoy.wasm.runtime.v8.active fell from {self.vms_at_start} to {active}")
        return evidence

    def access_log(self) -> list[dict]:
        """The JSON access-log lines (Envoy's stdout shares the log file)."""
        records = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
        return records

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        # What the metrics said at the end is kept beside the log, for the secrets scan.
        if self.process.poll() is None:
            for path, name in (("/stats", "stats.txt"), ("/stats/prometheus", "prometheus.txt")):
                try:
                    (self.workdir / name).write_text(self.admin(path)[1])
                except OSError:
                    pass
        _stop(self.process)
        self._log.close()
