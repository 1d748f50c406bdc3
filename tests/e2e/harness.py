"""Starts and stops the real processes: the mock provider, Envoy with the Tollgate filter, and
Redis with webdis in front of it (the budgets' shared store).

Used by the end-to-end tests (each test gets its own ports and Envoy --base-id) and by
`make run`. Missing binaries are an error, never a skip.
"""

from __future__ import annotations

import copy
import http.client
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import yaml

REPO = Path(__file__).resolve().parents[2]
ENVOY_CONFIG = REPO / "envoy" / "envoy.yaml"
WASM = REPO / "dist" / "tollgate.wasm"
# redis.conf, webdis.json and the budget scripts (reserve.lua, settle.lua).
REDIS_DIR = REPO / "redis"
# The cluster of envoy/envoy.yaml the filter reaches webdis through.
WEBDIS_CLUSTER = "webdis"

_base_ids = itertools.count(os.getpid() % 4000 * 10 + 1)


def next_base_id() -> int:
    """A --base-id no other Envoy of this test run uses (so their shared memory never collides)."""
    return next(_base_ids)


# The Envoy releases the tests run on, oldest first; scripts/setup-envoys.sh installs each into
# .envoy/<version>/. The newest is also the one in .venv (requirements.txt), which `make run` uses.
ENVOY_VERSIONS = [
    line.strip()
    for line in (REPO / "tests" / "e2e" / "envoy-versions.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


# Shipped configs that need a newer Envoy than the oldest supported, with the oldest release each
# loads on (the README's Compatibility table says why). Every other config loads on every release.
CONFIG_NEEDS_ENVOY = {"tracing.yaml": "1.37.0"}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def envoy_version_under_test() -> str:
    """The release this run's Envoys are: TOLLGATE_ENVOY_VERSION (`make test-e2e` sets it for its
    run on the oldest), else the newest, the one in .venv."""
    version = os.environ.get("TOLLGATE_ENVOY_VERSION") or ENVOY_VERSIONS[-1]
    if version not in ENVOY_VERSIONS:
        raise RuntimeError(f"TOLLGATE_ENVOY_VERSION={version} is not one of {ENVOY_VERSIONS}")
    return version


def envoy_binary(version: str | None = None) -> Path:
    """The envoy of `version`, installed in .envoy/<version>/. Without one, this run's: ENVOY_BIN
    if set, else .envoy/$TOLLGATE_ENVOY_VERSION, else .venv's (the newest)."""
    if version is None and os.environ.get("ENVOY_BIN"):
        path = Path(os.environ["ENVOY_BIN"])
    elif version is None and not os.environ.get("TOLLGATE_ENVOY_VERSION"):
        path = REPO / ".venv" / "bin" / "envoy"
    else:
        path = REPO / ".envoy" / (version or envoy_version_under_test()) / "bin" / "envoy"
    if not path.exists():
        raise RuntimeError(f"Envoy not found at {path}: run `make setup` or set ENVOY_BIN")
    return path


def release_binary(name: str) -> Path:
    path = REPO / "target" / "release" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make build`")
    return path


def system_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: run `make setup` (scripts/setup-redis.sh installs the Debian package {package})")
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
    webdis_port: int | None = None,
) -> dict:
    """The shipped config with test ports, an absolute .wasm path and optionally another
    filter configuration. Everything else stays as shipped, so tests exercise the real file.

    `upstream_port` is one port for every endpoint, or a port per cluster name (clusters without
    endpoints of their own, such as aggregate clusters, are left alone). The `webdis` cluster is
    not an upstream: it gets `webdis_port`, or keeps its shipped port when that is None. The .wasm path is also
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
        if cluster["name"] == WEBDIS_CLUSTER:
            if webdis_port is None:
                continue
            port = webdis_port
        else:
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
        webdis_port: int | None = None,
    ):
        # Ports are picked free, then bound by Envoy a moment later: another test run on the same
        # machine may take one in between. Envoy then exits ("cannot bind"); start again on others.
        STARTED.append(self)
        for attempt in range(1, 4):
            self.port = listen_port or free_port()
            self.admin_port = admin_port or free_port()
            try:
                self._start(template, upstream_port, filter_config, tollgate, vm_env, wasm, webdis_port, prefix, concurrency,
                            log_level)
                break
            except RuntimeError as error:
                if attempt == 3 or (listen_port and admin_port) or "cannot bind" not in str(error):
                    raise
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.vms_at_start = self.stats().get("wasm.envoy.wasm.runtime.v8.active", 0)

    def _start(self, template, upstream_port, filter_config, tollgate, vm_env, wasm, webdis_port, prefix, concurrency,
               log_level):
        self.workdir = Path(tempfile.mkdtemp(prefix="tollgate-envoy-"))
        config = render_envoy_config(
            template, self.port, self.admin_port, upstream_port, filter_config, tollgate, vm_env, wasm, webdis_port
        )
        config_path = self.workdir / "envoy.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = self.workdir / "envoy.log"
        self._log = open(self.log_path, "w")
        # The access log (stdout) apart from Envoy's own log (stderr): in one file, a long access-log
        # line written in pieces can be interleaved with a log line from another thread (a CI run
        # lost a usage record that way).
        self.access_log_path = self.workdir / "access.log"
        self._access = open(self.access_log_path, "w")
        self.base_id = next_base_id()
        command = [
            *prefix,
            str(envoy_binary()),
            "-c", str(config_path),
            "--base-id", str(self.base_id),
            "--concurrency", str(concurrency),
            # Access-log lines are read by tests (and watched by people running `make run`).
            "--file-flush-interval-msec", "50",
            "--log-level", log_level,
            "--component-log-level", "wasm:debug" if log_level != "warning" else "wasm:info",
        ]
        self.process = subprocess.Popen(command, stdout=self._access, stderr=self._log, cwd=REPO)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                self._access.close()
                raise RuntimeError(f"Envoy exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                # Ready, and this Envoy's admin (not another process that got the port first).
                if self.admin("/ready")[0] == 200 and self._admin_is_ours():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Envoy not ready after {timeout}s:\n{self.log()[-3000:]}")

    def _admin_is_ours(self) -> bool:
        options = json.loads(self.admin("/server_info")[1]).get("command_line_options", {})
        return str(options.get("base_id")) == str(self.base_id)

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
        """Everything Envoy wrote: its own log, then the access log."""
        for stream in (self._log, self._access):
            if not stream.closed:
                stream.flush()
        return self.log_path.read_text(errors="replace") + self.access_log_path.read_text(errors="replace")

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
        """The JSON access-log lines (Envoy's stdout)."""
        records = []
        for line in self.access_log_path.read_text(errors="replace").splitlines():
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
        self._access.close()


# Temporary folders of the Redis and webdis processes started in this test session: removed when
# the session passes (conftest.py), kept to read when it fails.
TEMP_DIRS: list[Path] = []


class RedisError(Exception):
    """An error reply from Redis (`-ERR …`, `-NOPERM …`)."""


def _temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    TEMP_DIRS.append(path)
    return path


def _resp_command(args: Sequence[str | bytes | int]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _resp_reply(reader):
    """One reply from a socket file as Python values (bulk strings as str, or as bytes
    when they are not UTF-8); an error reply is raised as RedisError."""
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_resp_reply(reader) for _ in range(count)]
    raise ConnectionError(f"unexpected reply from Redis: {line!r}")


class Redis:
    """redis-server (Debian's, found on the PATH) running redis/redis.conf on a port of its own,
    with its data in `data_dir` (a new temporary folder unless given; `make run` uses .run/redis/).

    The shipped config confines the default account (what webdis uses) to tollgate:* keys and the
    budget scripts' commands; this class adds an account `tollgate-admin` with a random password
    for `command()`, so tests can look at and damage anything. `stop()` then `start()` bring the
    same server back on the same port with the same data (the append-only file)."""

    def __init__(self, port: int = 0, data_dir: Path | str | None = None):
        self.binary = system_binary("redis-server", "redis-server")
        self.port = port or free_port()
        self.data_dir = Path(data_dir) if data_dir else _temp_dir("tollgate-redis-")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "redis.log"
        self.config_path = self.data_dir / "redis.conf"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self, timeout: float = 15.0) -> None:
        """Starts (again) on the same port and data folder; returns once it answers PING."""
        self._password = secrets.token_hex(16)
        self.config_path.write_text(
            "# Written by tests/e2e/harness.py at every start: the shipped config, this port and folder.\n"
            f'include "{REDIS_DIR / "redis.conf"}"\n'
            f"port {self.port}\n"
            f'dir "{self.data_dir}"\n'
            f'logfile "{self.log_path}"\n'
            f"user tollgate-admin on >{self._password} ~* &* +@all\n"
        )
        self.config_path.chmod(0o600)
        self.process = subprocess.Popen([self.binary, str(self.config_path)], cwd=self.data_dir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}:\n"
                                   f"{stderr}{self.log()[-2000:]}")
            try:
                if self.command("PING") == "PONG":
                    return
            except (OSError, RedisError):
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server not ready on port {self.port} after {timeout}s:\n{self.log()[-2000:]}")

    def command(self, *args: str | bytes | int, timeout: float = 5.0):
        """One command on a new connection as `tollgate-admin`; an error reply raises RedisError."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(_resp_command(["AUTH", "tollgate-admin", self._password]) + _resp_command(args))
            reader = sock.makefile("rb")
            _resp_reply(reader)
            return _resp_reply(reader)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None:
            _stop(self.process)
            if self.process.stderr:
                self.process.stderr.close()

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (the last second of writes may be lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def webdis_path(*args: str | int) -> str:
    """The GET path that runs a command through webdis: every argument percent-encoded whole
    (RFC 3986 unreserved characters stay, `.` too is encoded: webdis reads a trailing `.json`,
    `.raw`, `.txt`… on the last argument as an output format). See docs/redis-store.md."""
    return "/" + "/".join(quote(str(arg), safe="").replace(".", "%2E") for arg in args)


class Webdis:
    """webdis (Debian's, on the PATH) in front of a Redis, from redis/webdis.json with its own
    port, no daemon, and its log in `workdir` (a new temporary folder unless given)."""

    def __init__(self, redis_port: int, port: int = 0, workdir: Path | str | None = None, **config):
        self.binary = system_binary("webdis", "webdis")
        self.port = port or free_port()
        self.workdir = Path(workdir) if workdir else _temp_dir("tollgate-webdis-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "webdis.log"
        self.config = json.loads((REDIS_DIR / "webdis.json").read_text())
        self.config.update(redis_host="127.0.0.1", redis_port=redis_port, http_host="127.0.0.1",
                           http_port=self.port, daemonize=False, logfile=str(self.log_path))
        self.config.update(config)
        self.config_path = self.workdir / "webdis.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self, timeout: float = 15.0) -> None:
        """Starts webdis; returns once it answers HTTP on its port (200, or 503 while Redis is away).
        webdis exits with status 0 when its port is taken, and runs on 0.0.0.0:7379 when its config
        file cannot be read: both are checked."""
        self.process = subprocess.Popen([self.binary, str(self.config_path)], cwd=self.workdir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"webdis exited with {self.process.returncode} (port {self.port} taken?):\n"
                                   f"{stderr}{self.log()[-2000:]}")
            try:
                status, _, _ = self.request("GET", "/PING", timeout=2)
                if status in (200, 503) and self.process.poll() is None:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"webdis not answering on port {self.port} after {timeout}s:\n{self.log()[-2000:]}")

    def request(self, method: str, path: str, body: bytes | str | None = None, timeout: float = 10.0,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a new connection: (status, headers with lower-case names, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def command(self, *args: str | int, timeout: float = 10.0):
        """Runs a command by the GET path form; returns (HTTP status, the JSON value under the
        command's name, or None when the body is not JSON)."""
        status, _, body = self.request("GET", webdis_path(*args), timeout=timeout)
        try:
            return status, json.loads(body)[str(args[0])]
        except (ValueError, KeyError):
            return status, None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            if self.process.stderr:
                self.process.stderr.close()
