"""Ordered fallback with Envoy's own machinery (envoy/fallback.yaml, docs/fallback.md): an aggregate
cluster of three providers, a retry policy with `previous_priorities`, Tollgate in the downstream and
the upstream position. Three tollgate-mock instances play the providers; the primary fails in
different ways and the request must be served by the next provider in order, each attempt with
its own provider's model and credentials."""

import json
import threading
import time
import uuid

import pytest
import yaml

from conftest import mock_last, post, split_cost_comment
from harness import REPO, Envoy, Mock, envoy_version_under_test, version_key

FALLBACK_CONFIG = REPO / "envoy" / "fallback.yaml"
PATH = "/v1/chat/completions"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Which provider answers?"}]}
NAMES = ("primary", "secondary", "tertiary")
# The model each provider serves in envoy/fallback.yaml's chain.
MODELS = {"primary": "gpt-4o-mini", "secondary": "gpt-4.1-mini", "tertiary": "gpt-4.1-nano"}


def upstream_filter_counter(envoy, name):
    """A counter of the upstream (per-attempt) filter. Envoy 1.39 and later keep it at the root,
    added to the downstream filter's; Envoy 1.36 to 1.38 keep it apart, in the stats scope of the
    cluster the filter runs on (the README's Compatibility table)."""
    scope = "" if version_key(envoy_version_under_test()) >= version_key("1.39.0") else "cluster.llm_fallback."
    return envoy.stats()[f"{scope}wasmcustom.tollgate.{name}"]


class Chain:
    """Three mock providers, each with its own faults, behind a real Envoy running fallback.yaml."""

    def __init__(self, faults, template=FALLBACK_CONFIG):
        self.mocks = {}
        try:
            for name in NAMES:
                args = [arg for fault in faults.get(name, ()) for arg in ("--fault", fault)]
                self.mocks[name] = Mock(*args, name=name)
            ports = {f"provider_{name}": mock.port for name, mock in self.mocks.items()}
            self.envoy = Envoy(ports, template=template)
        except Exception:
            self.stop()
            raise

    def last(self, name):
        """What this provider received last (None when it received nothing)."""
        return mock_last(self.mocks[name])

    def received(self, name):
        return self.last(name) is not None

    def access_entry(self, request_id, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.envoy.log().splitlines():
                if line.startswith("{") and request_id in line:
                    return json.loads(line)
            time.sleep(0.05)
        raise AssertionError(f"no access-log entry for {request_id}")

    def stop(self):
        if getattr(self, "envoy", None):
            self.envoy.stop()
        for mock in self.mocks.values():
            mock.stop()


@pytest.fixture
def chain():
    started = []

    def start(faults, **kwargs):
        started.append(Chain(faults, **kwargs))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def send(chain, body=CHAT):
    request_id = str(uuid.uuid4())
    headers = {"content-type": "application/json", "x-request-id": request_id}
    return post(chain.envoy.port, PATH, body, headers=headers), request_id


@pytest.mark.parametrize("status", [429, 503, 500])
def test_a_failing_primary_falls_over_to_the_secondary(chain, status):
    providers = chain({"primary": [f"status={status}"]})
    response, request_id = send(providers)

    assert response.status == 200
    assert response.header("x-mock-name") == "secondary"
    assert response.json()["choices"][0]["message"]["content"]
    # Each attempt starts from the client's body and gets its own provider's model and key: the
    # secondary's request carries nothing of the primary's (envoy/fallback.yaml's policy).
    for name in ("primary", "secondary"):
        seen = providers.last(name)
        assert seen["body"] == json.dumps({**CHAT, "model": MODELS[name]}), name
        assert seen["headers"]["authorization"] == f"Bearer sk-demo-{name}", name
        assert seen["path"] == PATH
    assert not providers.received("tertiary")
    entry = providers.access_entry(request_id)
    assert (entry["attempts"], entry["provider"], entry["status"]) == (2, "secondary", 200)
    assert json.loads(entry["tollgate"])["outcome"] == "complete"


def test_the_chain_is_tried_in_order_until_one_answers(chain):
    providers = chain({"primary": ["status=429"], "secondary": ["status=503"]})
    for _ in range(5):
        response, request_id = send(providers)
        assert response.status == 200
        assert response.header("x-mock-name") == "tertiary"
        entry = providers.access_entry(request_id)
        assert (entry["attempts"], entry["provider"]) == (3, "tertiary")
    for name in NAMES:
        assert providers.last(name)["body"] == json.dumps({**CHAT, "model": MODELS[name]})
    assert providers.envoy.stats()["cluster.llm_fallback.upstream_rq_retry"] == 10


def test_when_every_provider_fails_the_client_gets_the_last_answer(chain):
    providers = chain({"primary": ["status=429"], "secondary": ["status=503"], "tertiary": ["status=500"]})
    response, request_id = send(providers)

    assert response.status == 500
    assert response.header("x-mock-name") == "tertiary"
    assert response.json()["error"]["type"] == "server_error"
    entry = providers.access_entry(request_id)
    assert (entry["attempts"], entry["provider"], entry["flags"]) == (3, "tertiary", "URX")


def test_a_client_error_is_not_retried(chain):
    providers = chain({"primary": ["status=400"]})
    response, _ = send(providers)
    assert (response.status, response.header("x-mock-name")) == (400, "primary")
    assert not providers.received("secondary")


def test_a_primary_slow_to_its_first_byte_falls_over_after_the_per_try_timeout(chain, tmp_path):
    # The shipped per-try budget (20 s) shortened to 1 s so the test is quick; the rest as shipped.
    config = yaml.safe_load(FALLBACK_CONFIG.read_text())
    route = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    route["retry_policy"]["per_try_timeout"] = "1s"
    template = tmp_path / "fallback.yaml"
    template.write_text(yaml.safe_dump(config))
    providers = chain({"primary": ["first-byte-delay-ms=5000"]}, template=template)

    started = time.monotonic()
    response, request_id = send(providers)
    elapsed = time.monotonic() - started

    assert response.status == 200
    assert response.header("x-mock-name") == "secondary"
    assert 1.0 <= elapsed < 3.0, f"served after {elapsed:.2f}s"
    entry = providers.access_entry(request_id)
    assert (entry["attempts"], entry["provider"]) == (2, "secondary")
    assert providers.envoy.stats()["cluster.llm_fallback.upstream_rq_per_try_timeout"] == 1


def test_a_stream_falls_over_and_reaches_the_client_unchanged(chain):
    providers = chain({"primary": ["status=429"]})
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response, request_id = send(providers, request)

    assert response.status == 200
    assert response.header("x-mock-name") == "secondary"
    assert response.header("content-type").startswith("text/event-stream")
    # What the secondary sends for its own model reaches the client byte for byte.
    direct = post(providers.mocks["secondary"].port, PATH, {**request, "model": MODELS["secondary"]})
    stream, summary = split_cost_comment(response.body)
    assert stream == direct.body
    assert summary["provider"] == "secondary"
    assert stream.rstrip().endswith(b"data: [DONE]")
    assert providers.access_entry(request_id)["attempts"] == 2


def test_fallback_holds_under_concurrency(chain):
    """Retries count against the aggregate cluster's circuit breaker; Envoy's default of 3
    concurrent retries would hand most of these clients the primary's 429."""
    providers = chain({"primary": ["status=429", "first-byte-delay-ms=300"]})
    results = []

    def one():
        response, _ = send(providers)
        results.append((response.status, response.header("x-mock-name")))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [(200, "secondary")] * 20
    assert providers.envoy.stats()["cluster.llm_fallback.upstream_rq_retry_overflow"] == 0


def upstream_filter_faulted(tmp_path, failure_mode):
    """fallback.yaml with the upstream filter's VM refusing it the request body on purpose
    (TOLLGATE_TEST_FAULTS), under `failure_mode`; the downstream filter is left as shipped."""
    config = yaml.safe_load(FALLBACK_CONFIG.read_text())
    for cluster in config["static_resources"]["clusters"]:
        for options in cluster.get("typed_extension_protocol_options", {}).values():
            for http_filter in options.get("http_filters", []):
                plugin = http_filter["typed_config"].get("config")
                if not plugin:
                    continue
                plugin["vm_config"]["environment_variables"]["key_values"]["TOLLGATE_TEST_FAULTS"] = "request_body"
                policy = json.loads(plugin["configuration"]["value"])
                policy["failure_mode"] = failure_mode
                plugin["configuration"]["value"] = json.dumps(policy)
    template = tmp_path / f"fallback-{failure_mode}.yaml"
    template.write_text(yaml.safe_dump(config))
    return template


def test_an_attempt_the_upstream_filter_cannot_prepare_follows_the_failure_mode(chain, tmp_path):
    # Closed: the upstream filter's own 500 in the client's dialect reaches the client (Envoy
    # does not retry a local reply), and no provider gets a request left unprepared.
    providers = chain({}, template=upstream_filter_faulted(tmp_path, "closed"))
    response, _ = send(providers)
    assert response.status == 500
    assert response.json()["error"]["code"] == "gateway_error"
    assert not any(providers.received(name) for name in NAMES)
    assert "attempt_body_unreadable" in providers.envoy.log()

    # Open: the attempt goes on with the client's body, addressed to its provider with its key.
    providers = chain({}, template=upstream_filter_faulted(tmp_path, "open"))
    response, _ = send(providers)
    seen = providers.last("primary")
    assert seen is not None and json.loads(seen["body"]) == CHAT, "the client's body, untouched"
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == "Bearer sk-demo-primary"
    assert upstream_filter_counter(providers.envoy, "requests_failed_open") == 1
