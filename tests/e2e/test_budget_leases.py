"""Leases on the Redis store (store.redis.lease), through two real Envoys sharing one real Redis
behind a real webdis.

Oracles from outside the filter: Redis's own command counters (`INFO commandstats`: how many
scripts the proxies really ran), Redis's counters themselves (read directly, not through the
filter), the mock provider's own tally, and arithmetic on the configured limits. What the filter
wrote (usage records in each Envoy's access log) is checked against them.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from conftest import post, usage_records, wait_until
from harness import Envoy, Redis, Webdis
from sdk_apis import mock_usage
from test_budgets import with_budgets
from test_redis_store import RESERVE, Store, op
from test_redis_store import counter as new_counter

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}
HELLO = [{"role": "user", "content": "Hello!"}]
IDLE_MS = 1500
LIMITS = [
    # A slice is a fifth of each limit: 200 requests, 2 requests, $0.20.
    {"name": "calls", "requests": 1000, "window": "hour"},
    {"name": "burst", "requests": 10, "window": "hour"},
    {"name": "spend", "usd": "1", "window": "day", "match": {"tenant": "burst-*"}},
]
BUDGETS = {
    "store": {"redis": {"endpoint": "webdis", "timeout_ms": 2000, "lease": {"fraction": 0.2, "idle_ms": IDLE_MS}}},
    "limits": [{"match": {"tenant": f"{limit['name']}-*"}, **limit, "by": ["tenant"]} for limit in LIMITS],
}
HELD = 2.0
SLOW = {"x-mock-first-byte-delay-ms": str(int(HELD * 1000))}


@pytest.fixture(scope="module")
def redis():
    server = Redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webdis(redis):
    front = Webdis(redis.port)
    yield front
    front.stop()


@pytest.fixture(scope="module")
def proxies(mock, webdis):
    """Two Envoys (two workers each) sharing one Redis."""
    pair = [Envoy(mock.port, filter_config=with_budgets(BUDGETS), concurrency=2, webdis_port=webdis.port)
            for _ in range(2)]
    yield pair
    failures = [failure for proxy in pair for failure in proxy.vm_failures()]
    for proxy in pair:
        proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this module"


def script_calls(redis) -> int:
    """Scripts Redis ran (EVALSHA and EVAL), by its own count."""
    stats = redis.command("INFO", "commandstats")
    stats = stats.decode() if isinstance(stats, bytes) else stats
    return sum(int(n) for n in re.findall(r"^cmdstat_(?:evalsha|eval):calls=(\d+)", stats, re.M))


def counter(redis, limit: str, tenant: str, window_secs: int) -> int:
    value = redis.command("GET", f"tollgate:budget:{limit}:{tenant}:{int(time.time()) // window_secs}")
    return int(value or 0)


def records_of(envoys, tenant: str, count: int) -> list[dict]:
    def mine():
        return [r for envoy in envoys for r in usage_records(envoy) if r.get("tenant") == tenant]

    wait_until(lambda: len(mine()) >= count)
    time.sleep(0.15)
    records = mine()
    assert len(records) == count, [r.get("status") for r in records]
    return records


def room_in_window(seconds: int, need: float) -> None:
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.05)


def pico(text) -> int:
    return int(Decimal(str(text)) * 10**12)


# --- the script: slices taken atomically, only where they fit ----------------------------------------


def reserve_leased(store, operation, counters, op_ttl=3600):
    """counters: [(key, amount, cap, ttl, slice, slice_cap)]"""
    args = [op_ttl] + [str(v) for key, amount, cap, ttl, *_ in counters for v in (amount, cap, ttl)]
    args += [str(v) for *_, slice_, slice_cap in counters for v in (slice_, slice_cap)]
    return store.run("reserve", RESERVE, [operation] + [c[0] for c in counters], args)


def test_the_script_takes_a_slice_only_where_it_fits_under_the_limit(webdis, redis):
    store = Store(webdis)
    a, b = new_counter("a"), new_counter("b")
    # Both fit: each counter takes the request's amount and its slice.
    assert reserve_leased(store, op(), [(a, 1, 10, 60, 2, 10), (b, 5, 100, 60, 20, 100)]) == \
        (200, [1, "3", "25", "2", "20"])
    # a: 3 + 1 + 2 = 6 fits; b: 25 + 5 + 80 = 110 does not: b takes the request's 5 alone.
    assert reserve_leased(store, op(), [(a, 1, 10, 60, 2, 10), (b, 5, 100, 60, 80, 100)]) == \
        (200, [1, "6", "30", "2", "0"])
    # A refusal takes no slice and changes nothing.
    assert reserve_leased(store, op(), [(a, 1, 10, 60, 2, 10), (b, 71, 100, 60, 0, 100)]) == (200, [0, 2, "30"])
    assert (redis.command("GET", a), redis.command("GET", b)) == ("6", "30")
    # A shadow counter (cap -1) counts past its limit, but its slice still must fit under it.
    s = new_counter("shadow")
    assert reserve_leased(store, op(), [(s, 9, -1, 60, 5, 10)]) == (200, [1, "9", "0"])
    assert reserve_leased(store, op(), [(s, 9, -1, 60, 5, 10)]) == (200, [1, "18", "0"])


def test_a_retried_leased_reservation_gets_its_first_answer_slices_included(webdis, redis):
    store = Store(webdis)
    a, operation = new_counter("a"), op()
    first = reserve_leased(store, operation, [(a, 1, 10, 60, 4, 10)])
    assert first == (200, [1, "5", "4"])
    # The confirmation a settlement sends (no caps, no slices) gets the same answer, slices and all.
    assert store.reserve(operation, [(a, 1, -1, 60)]) == first
    assert redis.command("GET", a) == "5"


# --- through Envoy ---------------------------------------------------------------------------------


def test_requests_served_from_slices_make_no_call_to_redis(proxies, redis, mock):
    room_in_window(3600, 60)
    tenant = f"calls-{uuid.uuid4().hex[:12]}"
    headers = {**JSON, "x-tenant-id": tenant}
    before = script_calls(redis)
    for _ in range(100):
        response = post(proxies[0].port, CHAT, {"model": "gpt-4o-mini", "messages": HELLO}, headers=headers)
        assert response.status == 200, response.body
    during = script_calls(redis) - before
    # Without leases: 100 reservations and 100 settlements. With them: one call topped the slice
    # up (its own settlement follows), and the slice (200 requests) held the other 99. On a Redis
    # that has not seen the scripts yet, each is asked by SHA-1 first (NOSCRIPT), then sent whole.
    assert during <= 4, f"{during} scripts for 100 requests"
    records = records_of(proxies, tenant, 100)
    assert Counter(r["budget"]["verdict"] for r in records) == {"admitted": 100}
    assert sum(1 for r in records if r["budget"].get("from_slices")) == 99
    # Once the slice is idle it goes back: Redis counts exactly the 100 requests.
    assert wait_until(lambda: counter(redis, "calls", tenant, 3600) == 100, timeout=5), \
        counter(redis, "calls", tenant, 3600)
    assert script_calls(redis) - before <= 6


def race(envoys, count: int, body: dict, headers: dict) -> list:
    """`count` requests released together, alternating between the Envoys."""
    barrier = threading.Barrier(count)

    def one(i):
        barrier.wait()
        return post(envoys[i % len(envoys)].port, CHAT, body, headers={**JSON, **headers}, timeout=60)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_two_envoys_with_leases_never_admit_past_a_limit_and_the_books_agree(proxies, redis, mock):
    # `burst`: 10 requests an hour, slices of 2; `spend`: $1 a day, never reached here.
    room_in_window(3600, 60)
    mock_usage(mock, reset=True)
    tenant = f"burst-{uuid.uuid4().hex[:12]}"
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 20}
    responses = race(proxies, 64, body, {"x-tenant-id": tenant, **SLOW})
    statuses = Counter(r.status for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    # Never past the limit; at most R x slice (2 x 2) refused early, by slices one Envoy held
    # while the other ran out.
    assert 10 - 2 * 2 <= statuses[200] <= 10, statuses
    records = records_of(proxies, tenant, 64)
    admitted = [r for r in records if r["status"] == 200]
    assert len(admitted) == statuses[200] == mock_usage(mock)["answers"]

    # After settlement and the slices' return, Redis holds exactly what was admitted and spent.
    spent = sum(pico(r["cost_usd"]) for r in admitted)

    def books():
        return counter(redis, "burst", tenant, 3600), counter(redis, "spend", tenant, 86400)

    assert wait_until(lambda: books() == (len(admitted), spent), timeout=5), (books(), len(admitted), spent)


def test_a_slice_serves_while_redis_is_away(proxies, redis, mock):
    # Requests that fit the slice need no call: Redis stopped does not touch them (a top-up
    # would follow the route's failure_mode). The first request takes the slice.
    room_in_window(3600, 60)
    tenant = f"calls-{uuid.uuid4().hex[:12]}"
    headers = {**JSON, "x-tenant-id": tenant}
    ask = lambda: post(proxies[1].port, CHAT, {"model": "gpt-4o-mini", "messages": HELLO}, headers=headers)  # noqa: E731
    assert ask().status == 200
    redis.stop()
    try:
        # Within idle_ms of each other, so the slice stays with the proxy.
        served = [ask().status for _ in range(5)]
    finally:
        redis.start()
    assert served == [200] * 5, served
    records = records_of(proxies, tenant, 6)
    assert Counter(r["budget"]["verdict"] for r in records) == {"admitted": 6}
