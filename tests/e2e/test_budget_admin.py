"""The budgets' admin API and `tollgate budgets show|reset`, through a real Envoy, on both stores.

Oracles from outside the API: the usage records Envoy logged (what each request settled), the
count of requests the test made, Redis itself (its keys read with the server's own protocol, not
through the filter), and the official OpenAI SDK's typed errors (a refusal is RateLimitError, a
reset lets the next request through). The CLI is the built binary, as an operator runs it.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
import uuid
from decimal import Decimal

import openai
import pytest

from conftest import usage_records, wait_until
from harness import Envoy, Redis, Webdis, release_binary
from test_budgets import records_of, room_in_window, with_budgets

TOKEN = f"admin-{uuid.uuid4().hex}"
PATH = "/tollgate/budgets"
LIMITS = [
    {"name": "spend", "usd": "0.01", "window": "day", "by": ["tenant"]},
    {"name": "rpm", "requests": 2, "window": "minute", "by": ["tenant"]},
]
PICO = Decimal(10) ** 12


def budgets(store: dict | None = None) -> dict:
    config = {"default_max_output_tokens": 50, "limits": LIMITS,
              "admin": {"path": PATH, "token": {"env": "TOLLGATE_ADMIN_TOKEN"}}}
    if store:
        config["store"] = store
    return with_budgets(config)


def cli(envoy, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "TOLLGATE_ADMIN_TOKEN": token}
    return subprocess.run([str(release_binary("tollgate")), "budgets", *args, "--url", f"{envoy.base_url}{PATH}"],
                          capture_output=True, text=True, env=env, timeout=30)


def show(envoy, *args: str) -> dict:
    result = cli(envoy, "show", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def counter(answer: dict, limit: str, scope: str) -> dict | None:
    entry = next(l for l in answer["data"] if l["name"] == limit)
    return next((c for c in entry["counters"] if c["scope"] == scope), None)


def client(envoy, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0,
                         default_headers={"x-tenant-id": tenant})


def ask(envoy, tenant: str):
    return client(envoy, tenant).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}], max_tokens=20)


def settled_usd(records: list[dict]) -> Decimal:
    return sum((Decimal(r["budget"]["settled"]["usd"]) for r in records), Decimal(0))


def raw(envoy, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def spend_then_check(envoy, read_store) -> str:
    """Two requests of a new tenant; what `show` reports is what the records settled and what the
    store holds (`read_store(limit, scope)` reads it from outside the filter). Returns the tenant."""
    room_in_window(60, 15)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    for _ in range(2):
        ask(envoy, tenant)
    records = records_of(envoy, tenant, 2)
    spent = settled_usd(records)
    assert spent > 0
    # The store gets the settlement after the answer (Redis: within about 20 ms).
    assert wait_until(lambda: read_store("spend", tenant) == int(spent * PICO)), (read_store("spend", tenant), spent)
    answer = show(envoy)
    spend = counter(answer, "spend", tenant)
    assert spend["used"] == int(spent * PICO) == read_store("spend", tenant)
    assert Decimal(spend["used_usd"]) == spent
    assert Decimal(spend["remaining_usd"]) == Decimal("0.01") - spent
    rpm = counter(answer, "rpm", tenant)
    assert rpm == {"scope": tenant, "used": 2, "remaining": 0} and read_store("rpm", tenant) == 2
    # One scope, and the table an operator reads.
    assert show(envoy, "--limit", "rpm", "--scope", tenant)["data"][0]["counters"] == [rpm]
    table = cli(envoy, "show", "--limit", "spend", "--scope", tenant)
    assert table.returncode == 0, table.stderr
    row = table.stdout.splitlines()[1].split()
    assert row[:2] == ["spend", tenant] and Decimal(row[2]) == spent and row[4:6] == ["0.01", "usd"], table.stdout
    return tenant


def reset_then_admitted(envoy, read_store, tenant: str) -> None:
    """The third request of the minute is refused; a reset of its scope lets the next one in."""
    with pytest.raises(openai.RateLimitError):
        ask(envoy, tenant)
    result = cli(envoy, "reset", "--limit", "rpm", "--scope", tenant)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("reset")
    assert result.stdout.splitlines()[2].split()[:3] == ["rpm", tenant, "2"], result.stdout
    assert read_store("rpm", tenant) in (0, None)
    ask(envoy, tenant)
    assert wait_until(lambda: read_store("rpm", tenant) == 1)
    assert counter(show(envoy, "--limit", "rpm"), "rpm", tenant)["used"] == 1


def refused_without_the_token(envoy, read_store, tenant: str) -> None:
    before = read_store("rpm", tenant)
    wrong = cli(envoy, "reset", "--limit", "rpm", "--scope", tenant, token="admin-not-the-token-at-all")
    assert wrong.returncode == 1 and "HTTP 403" in wrong.stderr, wrong.stderr
    status, headers, body = raw(envoy, "GET", PATH)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert tenant.encode() not in body and b"used" not in body
    status, _, body = raw(envoy, "DELETE", f"{PATH}?limit=rpm", {"authorization": "Bearer nope"})
    assert status == 403 and tenant.encode() not in body
    assert read_store("rpm", tenant) == before, "nothing was reset"


# --- The embedded store ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(mock):
    proxy = Envoy(mock.port, filter_config=budgets(), concurrency=2, vm_env={"TOLLGATE_ADMIN_TOKEN": TOKEN})
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == []


def test_embedded_store_show_reset_and_refusals(embedded):
    # The shared data is the filter's alone: the records (what each request settled) are the oracle.
    def read_store(limit, scope):
        admitted = [r for r in usage_records(embedded)
                    if r.get("tenant") == scope and (r.get("budget") or {}).get("verdict") == "admitted"]
        return len(admitted) if limit == "rpm" else int(settled_usd(admitted) * PICO)

    tenant = spend_then_check(embedded, read_store)
    with pytest.raises(openai.RateLimitError):
        ask(embedded, tenant)
    result = cli(embedded, "reset", "--limit", "rpm", "--scope", tenant)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].split()[:3] == ["rpm", tenant, "2"], result.stdout
    assert counter(show(embedded, "--limit", "rpm"), "rpm", tenant) is None, "reset: nothing in this window"
    ask(embedded, tenant)
    assert counter(show(embedded, "--limit", "rpm"), "rpm", tenant)["used"] == 1
    status, _, body = raw(embedded, "GET", PATH, {"authorization": "Bearer wrong-token-wrong-token"})
    assert status == 403 and tenant.encode() not in body
    wrong = cli(embedded, "reset", "--limit", "rpm", "--scope", tenant, token="admin-not-the-token-at-all")
    assert wrong.returncode == 1 and "HTTP 403" in wrong.stderr, wrong.stderr
    assert raw(embedded, "GET", PATH)[0] == 401
    assert counter(show(embedded, "--limit", "rpm"), "rpm", tenant)["used"] == 1, "nothing was reset"


def test_the_make_run_demo_answers_with_its_demo_token(mock):
    """envoy/envoy.yaml as shipped: the admin API on /tollgate/budgets with the demo token."""
    proxy = Envoy(mock.port)
    try:
        demo = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-test", max_retries=0,
                             default_headers={"x-tenant-id": "demo"})
        demo.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
        result = cli(proxy, "show", "--json", token="tollgate-demo-admin-token")
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert [l["name"] for l in answer["data"]] == ["demo-daily", "demo-rpm"]
        assert counter(answer, "demo-rpm", "demo")["used"] == 1
        assert wait_until(lambda: usage_records(proxy))
        record = usage_records(proxy)[-1]
        assert counter(answer, "demo-daily", "demo")["used_usd"] == record["budget"]["settled"]["usd"]
    finally:
        proxy.stop()


# --- The Redis store -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_envoy(mock):
    server = Redis()
    front = Webdis(server.port)
    proxy = Envoy(mock.port, filter_config=budgets({"redis": {"endpoint": "webdis", "timeout_ms": 2000}}),
                  concurrency=2, vm_env={"TOLLGATE_ADMIN_TOKEN": TOKEN}, webdis_port=front.port)
    yield proxy, server
    failures = proxy.vm_failures()
    proxy.stop()
    front.stop()
    server.stop()
    assert failures == []


def test_redis_store_show_reset_and_refusals(redis_envoy):
    envoy, server = redis_envoy

    def read_store(limit, scope):
        """The counter as Redis holds it, read with Redis's own protocol (no webdis, no filter)."""
        window = int(time.time() // 60) if limit == "rpm" else int(time.time() // 86400)
        value = server.command("GET", f"tollgate:budget:{limit}:{scope}:{window}")
        return None if value is None else int(value.decode() if isinstance(value, bytes) else value)

    tenant = spend_then_check(envoy, read_store)
    reset_then_admitted(envoy, read_store, tenant)
    refused_without_the_token(envoy, read_store, tenant)
    # Resetting a whole limit deletes every scope's key of it, and only that limit's.
    other = f"t-{uuid.uuid4().hex[:10]}"
    ask(envoy, other)
    assert wait_until(lambda: read_store("spend", other))
    result = cli(envoy, "reset", "--limit", "spend")
    assert result.returncode == 0, result.stderr
    assert read_store("spend", other) is None and read_store("spend", tenant) is None
    assert read_store("rpm", other) == 1
