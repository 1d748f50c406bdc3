"""The peers Tollgate is compared with, run against the same mock provider binary:
LiteLLM proxy (Python, from .bench-venv) and Portkey gateway (Node, from bench/node_modules).

Portkey binds every interface and has no host option, and this workplace allows traffic only
to loopback or to namespaces we create. So Portkey runs inside a network namespace of its own
that has nothing but a loopback interface, with its own tollgate-mock instance (same binary,
same flags), and the load generator enters that namespace to measure it: every byte stays on
a loopback device. Its added latency is taken over that namespace's own direct-to-mock figure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from harness import REPO, Mock, free_port

BENCH_VENV = REPO / ".bench-venv"
PORTKEY_DIR = REPO / "bench" / "node_modules" / "@portkey-ai" / "gateway"
PORTKEY_PORT = 8787


def stop_process(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: only this process, by its PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"not ready after {timeout:.0f}s:\n{log.read_text(errors='replace')[-2000:]}")


def litellm_version() -> str | None:
    python = BENCH_VENV / "bin" / "python"
    if not (BENCH_VENV / "bin" / "litellm").exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


class LiteLLM:
    """LiteLLM proxy, one worker (one process), pointed at the mock. The model `gpt-4o-mini`
    is the plain route; `gpt-4o-mini-paced` is the same upstream with the mock's
    chunk-delay header added by LiteLLM itself, because LiteLLM does not forward client
    headers upstream (the streaming per-chunk run needs the mock to pace its events)."""

    def __init__(self, mock_port: int, prefix: list[str]):
        self.workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-litellm-"))
        self.port = free_port()
        self.key = "sk-bench-" + secrets.token_hex(16)
        base = {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mock_port}/v1",
                "api_key": "sk-upstream-fake"}
        config = {
            "model_list": [
                {"model_name": "gpt-4o-mini", "litellm_params": dict(base)},
                {"model_name": "gpt-4o-mini-paced",
                 "litellm_params": dict(base, extra_headers={"x-mock-chunk-delay-ms": "1"})},
            ],
            "litellm_settings": {"callbacks": [], "num_retries": 0, "request_timeout": 60, "telemetry": False},
            "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        }
        (self.workdir / "config.yaml").write_text(yaml.safe_dump(config))
        env = dict(os.environ, LITELLM_MASTER_KEY=self.key, LITELLM_LOG="ERROR")
        # Bundled copies instead of fetches at startup (perf.md section 6.2).
        for name in ("MODEL_COST_MAP", "ANTHROPIC_BETA_HEADERS", "BLOG_POSTS", "POLICY_TEMPLATES",
                     "AUTOROUTER_PRESETS"):
            env[f"LITELLM_LOCAL_{name}"] = "True"
        self.log_path = self.workdir / "litellm.log"
        self._log = open(self.log_path, "w")
        command = [*prefix, str(BENCH_VENV / "bin" / "litellm"), "--config", str(self.workdir / "config.yaml"),
                   "--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1"]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.workdir)
        try:
            _wait_http(f"http://127.0.0.1:{self.port}/health/liveliness", self.process, self.log_path, 120)
        except Exception:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def portkey_version() -> str | None:
    package = PORTKEY_DIR / "package.json"
    if not package.exists() or not shutil.which("node"):
        return None
    return json.loads(package.read_text())["version"]


class Namespace:
    """A network namespace with only a loopback interface."""

    def __init__(self, name: str):
        self.name = name
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
        try:
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            self.delete()
            raise

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def interfaces(self) -> str:
        out = subprocess.run(["ip", "-n", self.name, "-brief", "link"], capture_output=True, text=True)
        return out.stdout.strip()

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


class Portkey:
    """Portkey gateway inside `namespace`, routing to the mock at 127.0.0.1:mock_port there
    (per request, with its x-portkey-provider and x-portkey-custom-host headers)."""

    def __init__(self, namespace: Namespace, mock_port: int, prefix: list[str]):
        self.workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-portkey-"))
        self.log_path = self.workdir / "portkey.log"
        self._log = open(self.log_path, "w")
        self.mock_port = mock_port
        command = [*namespace.prefix, *prefix, shutil.which("node") or "node",
                   str(PORTKEY_DIR / "build" / "start-server.js"), f"--port={PORTKEY_PORT}", "--headless"]
        env = dict(os.environ, NODE_ENV="production")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.workdir)
        self.namespace = namespace
        try:
            self._wait_ready()
        except Exception:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        probe = [*self.namespace.prefix, "python3", "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {PORTKEY_PORT}), 1)"]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Portkey exited:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            if subprocess.run(probe, capture_output=True).returncode == 0:
                return
            time.sleep(0.25)
        raise RuntimeError("Portkey not listening after 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{PORTKEY_PORT}/v1/chat/completions"

    @property
    def headers(self) -> list[str]:
        return ["x-portkey-provider: openai", f"x-portkey-custom-host: http://127.0.0.1:{self.mock_port}/v1",
                "authorization: Bearer sk-upstream-fake"]

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def namespaced_mock(namespace: Namespace, prefix: list[str]) -> Mock:
    return Mock(prefix=[*namespace.prefix, *prefix])
