"""Fixtures: a mock provider and a real Envoy with the filter, per test module, plus a factory
for tests that need their own configuration."""

import http.client
import json
import shutil
import time

import pytest

from harness import (
    CONFIG_NEEDS_ENVOY, STARTED, TEMP_DIRS, Envoy, Mock, envoy_binary, envoy_version_under_test, version_key,
)

# Modules that run a shipped config which needs a newer Envoy than this run's are not collected:
# on such an Envoy the config cannot load (test_envoy_versions.py proves it is refused, and why).
MODULE_RUNS_CONFIG = {"test_tracing.py": "tracing.yaml"}
collect_ignore = [
    module for module, config in MODULE_RUNS_CONFIG.items()
    if version_key(envoy_version_under_test()) < version_key(CONFIG_NEEDS_ENVOY.get(config, "0"))
]


def pytest_report_header(config):
    line = f"Envoy {envoy_version_under_test()}: {envoy_binary()}"
    return line + (f"; not collected, the Envoy is too old for them: {', '.join(collect_ignore)}" if collect_ignore else "")

# Every response an Envoy gave through `post` (status, headers, body), for the secrets scan in
# test_zz_no_secrets.py. Responses from the mock itself (which echoes what it received) are not kept.
RESPONSES: list = []

# Values a guardrail matched (and redacted or refused), appended by the guardrails' tests: the
# secrets scan (test_zz_no_secrets.py) fails if any of them shows up in what Envoy produced.
GUARDRAIL_MATCHES: list = []


def pytest_sessionfinish(session, exitstatus):
    """A passing run removes its Envoys' working folders (config, log, final stats) and its Redis and
    webdis folders from /tmp; a failing one keeps them to read. The secrets scan reads them before
    this, at the run's end."""
    if exitstatus == 0:
        for proxy in STARTED:
            shutil.rmtree(proxy.workdir, ignore_errors=True)
        for folder in TEMP_DIRS:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mock():
    provider = Mock()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def envoy(mock):
    proxy = Envoy(mock.port)
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this module"


@pytest.fixture
def start_envoy(mock):
    """Starts an Envoy with another filter configuration; stopped after the test."""
    started = []

    def start(filter_config=None, **kwargs):
        proxy = Envoy(mock.port, filter_config=filter_config, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    failures = [line for proxy in started for line in proxy.vm_failures()]
    for proxy in started:
        proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this test"


# The clusters of envoy/envoy.yaml that providers route to, each played by a mock of that name.
CLUSTERS = ("mock_provider", "openai", "anthropic")


@pytest.fixture(scope="module")
def providers():
    """A mock for each cluster of envoy/envoy.yaml, named after it (its answers carry
    `x-mock-name`), so a test sees which provider the policy chose."""
    mocks = {}
    try:
        for name in CLUSTERS:
            mocks[name] = Mock(name=name)
        yield mocks
    finally:
        for mock in mocks.values():
            mock.stop()


@pytest.fixture(scope="module")
def routed(providers):
    """The shipped Envoy with each cluster served by its own mock (`providers`)."""
    proxy = Envoy({name: mock.port for name, mock in providers.items()})
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this module"


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


def post(port, path, body, headers=None, timeout=30):
    """A plain HTTP POST; `body` may be bytes, str or a JSON-able object."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers or {"content-type": "application/json"})
        response = conn.getresponse()
        result = Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        if any(e.port == port for e in STARTED):
            RESPONSES.append(result)
        return result
    finally:
        conn.close()


def mock_last(mock, timeout=10):
    """The last request `mock` received (`GET /_mock/last`: method, path, headers, body), or
    None when it has received none."""
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=timeout)
    try:
        conn.request("GET", "/_mock/last")
        response = conn.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    finally:
        conn.close()


def split_cost_comment(stream: bytes):
    """A streamed body and the cost summary Tollgate appends as its last line (an SSE comment)."""
    marker = b": tollgate {"
    at = stream.rfind(marker)
    assert at >= 0 and stream.endswith(b"}\n"), "the stream ends with Tollgate's cost comment"
    return stream[:at], json.loads(stream[at + len(b": tollgate "):])


def prometheus_samples(envoy):
    """Tollgate's labelled series on the Envoy's /stats/prometheus: {'name{labels}': value}."""
    _, text = envoy.admin("/stats/prometheus")
    samples = {}
    for line in text.splitlines():
        if line.startswith("tollgate_") and "{" in line:
            name_labels, value = line.rsplit(" ", 1)
            samples[name_labels] = float(value)
    return samples


def usage_records(envoy):
    """The usage records in the Envoy's JSON access log, parsed, in order."""
    return [json.loads(line["tollgate"]) for line in envoy.access_log() if line.get("tollgate") not in (None, "-")]


def wait_until(predicate, timeout=10):
    """`predicate()` once it is truthy (Envoy flushes its access log every 50 ms), else its last value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def wait_for_records(envoy, count):
    """The usage records once there are at least `count` of them."""
    wait_until(lambda: len(usage_records(envoy)) >= count)
    return usage_records(envoy)
