"""Per-tenant attribution through the real Envoy: the tenant and team from headers reach the usage
record and the labelled Prometheus metrics; nobody can spoof Tollgate's own headers; absurd
tenant values are refused, not stored."""

import http.client
import json
import time

import pytest

from conftest import post
from harness import Envoy, Mock

PATH = "/v1/chat/completions"
CHAT = {"model": "fast", "messages": [{"role": "user", "content": "Bill this to acme."}]}


@pytest.fixture(scope="module")
def providers():
    mocks = {name: Mock(name=name) for name in ("mock_provider", "openai", "anthropic")}
    yield mocks
    for mock in mocks.values():
        mock.stop()


@pytest.fixture(scope="module")
def envoy(providers):
    proxy = Envoy({name: mock.port for name, mock in providers.items()})
    yield proxy
    proxy.stop()


def prometheus(envoy):
    _, text = envoy.admin("/stats/prometheus")
    samples = {}
    for line in text.splitlines():
        if line.startswith("tollgate_") and "{" in line:
            name_labels, value = line.rsplit(" ", 1)
            samples[name_labels] = float(value)
    return samples


def records(envoy):
    found = []
    for line in envoy.log().splitlines():
        if line.startswith("{") and '"tollgate"' in line:
            record = json.loads(line)["tollgate"]
            if record not in (None, "-"):
                found.append(json.loads(record))
    return found


def wait_for_records(envoy, count):
    deadline = time.monotonic() + 10
    while len(records(envoy)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return records(envoy)


def test_tenant_and_team_reach_the_record_and_the_metrics(envoy):
    before = len(records(envoy))
    headers = {"content-type": "application/json", "x-tenant-id": "acme", "x-team": "search"}
    responses = [post(envoy.port, PATH, CHAT, headers=headers) for _ in range(3)]
    assert all(r.status == 200 for r in responses)
    record = wait_for_records(envoy, before + 3)[-1]
    assert (record["tenant"], record["team"], record["project"]) == ("acme", "search", None)

    samples = prometheus(envoy)
    labels = 'provider="openai",model="gpt-4o-mini-2024-07-18",tenant="acme"'
    input_tokens = sum(int(r.header("x-tollgate-input-tokens")) for r in responses)
    output_tokens = sum(int(r.header("x-tollgate-output-tokens")) for r in responses)
    assert samples[f'tollgate_tokens{{{labels},type="input"}}'] == input_tokens
    assert samples[f'tollgate_tokens{{{labels},type="output"}}'] == output_tokens
    assert samples[f'tollgate_requests{{{labels},outcome="complete"}}'] == 3
    cost_nano = sum(round(float(r.header("x-tollgate-cost-usd")) * 1e9) for r in responses)
    assert samples[f"tollgate_cost_nano_usd{{{labels}}}"] == cost_nano


def test_client_sent_tollgate_headers_never_reach_the_upstream(envoy, providers):
    headers = {"content-type": "application/json", "x-tollgate-tenant": "spoofed", "x-tollgate-cost-usd": "0",
               "x-tollgate-cluster": "anthropic"}
    assert post(envoy.port, PATH, {**CHAT, "model": "gpt-4o-mini"}, headers=headers).status == 200
    conn = http.client.HTTPConnection("127.0.0.1", providers["mock_provider"].port, timeout=5)
    conn.request("GET", "/_mock/last")
    seen = json.loads(conn.getresponse().read())
    conn.close()
    assert not [name for name in seen["headers"] if name.startswith("x-tollgate-")]


def test_a_megabyte_tenant_is_refused_not_stored(envoy):
    before = len(records(envoy))
    headers = {"content-type": "application/json", "x-tenant-id": "t" * 20_000}
    assert post(envoy.port, PATH, CHAT, headers=headers).status == 200
    record = wait_for_records(envoy, before + 1)[-1]
    assert record["tenant"] is None
    assert envoy.stats()["wasmcustom.tollgate.attribution_rejected"] >= 1


def test_a_tenant_named_like_a_label_is_still_tagged_right(envoy):
    headers = {"content-type": "application/json", "x-tenant-id": "model"}
    response = post(envoy.port, PATH, CHAT, headers=headers)
    assert response.status == 200
    labels = 'provider="openai",model="gpt-4o-mini-2024-07-18",tenant="model"'
    assert prometheus(envoy)[f'tollgate_requests{{{labels},outcome="complete"}}'] == 1
