"""Budgets and rate limits on the embedded store (the proxy's shared data), through a real Envoy,
spoken by the official SDKs.

Oracles from outside the filter: the SDKs' typed exceptions (`openai.RateLimitError`,
`anthropic.RateLimitError`), their own retry logic and stream parsers; the mock provider's own
tally (`/_mock/usage`) priced at LiteLLM's published prices (sdk_apis.LITELLM); OpenAI's tiktoken
for what a client received; the clock (when a window ends) and arithmetic on the configured
limits. What the filter wrote (usage records in Envoy's access log, headers, metrics) is checked
against them. Each test has tenants of its own, so counters never carry over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import anthropic
import openai
import pytest
import yaml

from conftest import post, prometheus_samples, usage_records, wait_until
from harness import ENVOY_CONFIG, REPO, Envoy
from sdk_apis import ECHO, LITELLM, expected_cost, mock_usage

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}
HELLO = [{"role": "user", "content": "Hello!"}]
MINI = LITELLM["gpt-4o-mini-2024-07-18"]
# A long prompt of distinct words: the mock's echo answers with it word by word (one delta each).
LONG = " ".join(f"word{i}" for i in range(200))


# --- Helpers -------------------------------------------------------------------------------------


def shipped_filter_config() -> dict:
    """The Tollgate configuration of envoy/envoy.yaml."""
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    tollgate = next(f for f in manager["http_filters"] if f["name"] == "tollgate")
    return json.loads(tollgate["typed_config"]["config"]["configuration"]["value"])


def with_budgets(budgets: dict) -> dict:
    """The shipped configuration (providers, rules, guardrails) with these budgets instead of its demo."""
    config = shipped_filter_config()
    config["budgets"] = budgets
    return config


def new_tenant(kind: str = "t") -> str:
    """A tenant of its own; its prefix says which of LIMITS applies to it."""
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def room_in_window(seconds: int, need: float) -> None:
    """Waits, if need be, until the current fixed window (counted since 1970, UTC, as Tollgate's
    are) has at least `need` seconds left, so that a test's requests all count in one window."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.05)


def seconds_left(seconds: int) -> float:
    return seconds - time.time() % seconds


def openai_client(envoy, tenant: str, max_retries: int = 0, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=max_retries,
                         default_headers={"x-tenant-id": tenant, **headers})


def team_a_client(envoy, tenant: str, **headers) -> openai.OpenAI:
    """An OpenAI client on the route team-a (paths under /team-a/)."""
    return openai.OpenAI(base_url=f"{envoy.base_url}/team-a/v1", api_key="sk-test", max_retries=0,
                         default_headers={"x-tenant-id": tenant, **headers})


def anthropic_client(envoy, tenant: str, max_retries: int = 0, **headers) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=envoy.base_url, api_key="sk-ant-test", max_retries=max_retries,
                               default_headers={"x-tenant-id": tenant, **headers})


def records_of(envoy, tenant: str, count: int) -> list[dict]:
    """The tenant's usage records once there are `count` of them (in request order), and no more."""
    def mine():
        return [r for r in usage_records(envoy) if r.get("tenant") == tenant]

    wait_until(lambda: len(mine()) >= count)
    time.sleep(0.15)  # three access-log flushes: anything more would show
    records = mine()
    assert len(records) == count, [r.get("status") for r in records]
    return records


def attempts(envoy, request_id: str, at_least: int = 1) -> list[int]:
    """The statuses Envoy logged for every attempt that carried `x-request-id: request_id`."""
    def mine():
        return [int(e["status"]) for e in envoy.access_log() if e.get("request_id") == request_id]

    wait_until(lambda: len(mine()) >= at_least)
    time.sleep(0.15)
    return mine()


def usd(text) -> Decimal:
    return Decimal(str(text))


def tally_cost(tally: dict) -> Decimal:
    """What the mock reported, priced at LiteLLM's prices."""
    return sum((expected_cost(row) * row["answers"] for row in tally["by_usage"]), Decimal(0))


def only_row(tally: dict) -> dict:
    rows = tally["by_usage"]
    assert len(rows) == 1 and rows[0]["answers"] == 1, rows
    return rows[0]


def duration_seconds(text: str) -> int:
    """OpenAI's reset durations (`7s`, `6m0s`, `1h8m7s`) in seconds."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+)s", text)
    assert match, text
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@pytest.fixture(scope="module")
def tiktoken_o200k():
    """OpenAI's own tokenizer for gpt-4o-mini, offline: tiktoken reads the vocabulary committed in
    vocab/ from its cache (named by the sha1 of its URL) and checks it against its own sha256."""
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    shutil.copy(REPO / "vocab" / "o200k_base.tiktoken", os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()))
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    try:
        import tiktoken

        yield tiktoken.get_encoding("o200k_base")
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
        shutil.rmtree(cache, ignore_errors=True)


# One Envoy (four workers) for every test of limits: each limit applies to the tenants named after
# it (`match`), a counter per tenant (`by`), so tests never share a counter.
LIMITS = [
    {"name": "rpm", "requests": 3, "window": "minute"},
    {"name": "tiny", "usd": "0.000001", "window": "minute"},
    {"name": "rps", "requests": 1, "window": "second"},
    {"name": "daily", "usd": "0.0001", "window": "day"},
    {"name": "burst", "requests": 10, "window": "hour"},
    # About ten and a half reservations of a gpt-4o-mini request asking for 100 output tokens.
    {"name": "pool", "usd": "0.000644", "window": "day"},
    {"name": "out", "output_tokens": 35, "window": "hour"},
    {"name": "trial", "requests": 2, "window": "hour", "shadow": True},
]
BUDGETS = {
    "default_max_output_tokens": 50,
    "routes": {"team-a": {"default_max_output_tokens": 10}},
    "limits": [{**limit, "by": ["tenant"], "match": {"tenant": f"{limit['name']}-*"}} for limit in LIMITS],
}


def amount(name: str) -> Decimal:
    return Decimal(next(limit["usd"] for limit in LIMITS if limit["name"] == name))


@pytest.fixture(scope="module")
def limited(mock):
    proxy = Envoy(mock.port, filter_config=with_budgets(BUDGETS), concurrency=4)
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this module"


# --- 1. Refusals, in each SDK's terms, and what the SDKs retry -------------------------------------


def test_a_request_limit_refuses_the_fourth_request_with_each_sdks_rate_limit_error(limited, mock):
    room_in_window(60, 5)
    mock_usage(mock, reset=True)

    acme = new_tenant("rpm")
    client = openai_client(limited, acme)
    for n in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(2 - n)
        assert raw.headers["x-tollgate-budget"] == "rpm"
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = refused.value
    assert (error.code, error.type) == ("rate_limit_exceeded", "requests")
    assert "rpm" in error.message
    headers = error.response.headers
    # retry-after is the seconds to the end of the minute (a rate limit: no x-should-retry).
    assert abs(int(headers["retry-after"]) - seconds_left(60)) <= 2
    assert "x-should-retry" not in headers
    assert headers["x-ratelimit-remaining-requests"] == "0"

    globex = new_tenant("rpm")  # a counter of its own: three more
    client = anthropic_client(limited, globex)
    for _ in range(3):
        assert client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=HELLO).content
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=HELLO)
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert "x-should-retry" not in refused.value.response.headers

    for tenant in (acme, globex):
        records = records_of(limited, tenant, 4)
        assert [r["status"] for r in records] == [200, 200, 200, 429]
        assert [r["budget"]["verdict"] for r in records] == ["admitted"] * 3 + ["refused"]
        assert records[-1]["budget"]["decided_by"] == "rpm"
    assert mock_usage(mock)["answers"] == 6, "the refused requests never reached the provider"


def test_a_budget_refusal_is_not_retried_by_either_sdk(limited, mock):
    # `tiny`: a spend limit per minute that no request fits. Its retry-after (at most 60 s) is one
    # both SDKs would wait out and retry by default; only `x-should-retry: false` stops them.
    mock_usage(mock, reset=True)
    def ask_openai(request_id):
        client = openai_client(limited, new_tenant("tiny"), 2, **{"x-request-id": request_id})
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    def ask_anthropic(request_id):
        client = anthropic_client(limited, new_tenant("tiny"), 2, **{"x-request-id": request_id})
        client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=HELLO)

    calls = {"openai": (openai.RateLimitError, ask_openai), "anthropic": (anthropic.RateLimitError, ask_anthropic)}
    for name, (error_type, call) in calls.items():
        request_id = f"budget-{name}-{uuid.uuid4()}"
        with pytest.raises(error_type) as refused:
            call(request_id)
        headers = refused.value.response.headers
        assert headers["x-should-retry"] == "false"
        assert 0 < int(headers["retry-after"]) <= 60, "a wait the SDK would otherwise retry after"
        assert attempts(limited, request_id) == [429], f"{name}: one attempt, not retried"
        if name == "openai":
            assert (refused.value.code, refused.value.type) == ("budget_exceeded", "insufficient_quota")
        else:
            assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert mock_usage(mock)["answers"] == 0


def test_a_rate_limit_refusal_is_retried_after_retry_after_and_then_served(limited):
    # `rps`, one request a second: the second request of a second is refused with retry-after 1,
    # which both SDKs wait out (default retries) and retry in the next second, where it is admitted.
    def ask_openai(tenant, request_id):
        client = openai_client(limited, tenant, 2, **{"x-request-id": request_id})
        return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices[0].message.content

    def ask_anthropic(tenant, request_id):
        client = anthropic_client(limited, tenant, 2, **{"x-request-id": request_id})
        return lambda: client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=HELLO).content[0].text

    for name, ask in (("openai", ask_openai), ("anthropic", ask_anthropic)):
        tenant = new_tenant("rps")
        first, second = (f"rate-{name}-{n}-{uuid.uuid4()}" for n in (1, 2))
        ask_first, ask_second = ask(tenant, first), ask(tenant, second)
        time.sleep(1 - time.time() % 1 + 0.01)  # both first attempts early in one second
        assert ask_first()
        started = time.monotonic()
        assert ask_second(), f"{name}: served after its retry"
        assert time.monotonic() - started >= 0.9, f"{name}: waited out retry-after before retrying"
        assert attempts(limited, first) == [200]
        assert attempts(limited, second, at_least=2) == [429, 200], f"{name}: refused once, retried once"


# --- 2. A spend budget: refused at the right request, and the books agree ------------------------


def test_a_spend_budget_admits_while_the_worst_case_fits_and_the_books_agree_to_the_pico_dollar(limited, mock):
    # `daily`: $0.0001 a day; requests without an output limit reserve 50 output tokens.
    limit = amount("daily")
    room_in_window(86400, 30)
    mock_usage(mock, reset=True)
    tenant = new_tenant("daily")
    client = openai_client(limited, tenant)
    prompts = ["Hello!", "Tell me about budgets, please.", "What is a pico-dollar worth today, in words?"]
    answers = []  # (streamed, response headers), in order
    refusal = None
    for n in range(30):
        request = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": prompts[n % 3]}])
        streamed = n % 2 == 1
        try:
            if streamed:
                with client.chat.completions.with_streaming_response.create(**request, stream=True) as raw:
                    chunks = list(raw.parse())
                    headers = raw.headers
                assert chunks[-1].choices[0].finish_reason == "stop"
            else:
                raw = client.chat.completions.with_raw_response.create(**request)
                assert raw.parse().choices[0].finish_reason == "stop"
                headers = raw.headers
        except openai.RateLimitError as error:
            refusal = error
            break
        answers.append((streamed, headers))
    assert refusal is not None, "the budget ran out"
    assert (refusal.code, refusal.type) == ("budget_exceeded", "insufficient_quota")
    assert refusal.response.headers["x-should-retry"] == "false"

    records = records_of(limited, tenant, len(answers) + 1)
    admitted, refused = records[:-1], records[-1]
    spent = Decimal(0)
    for (streamed, headers), record in zip(answers, admitted):
        budget, reserved = record["budget"], record["budget"]["reserved"]
        assert budget["verdict"] == "admitted"
        # The worst case: at least the prompt the provider counted, the default output limit,
        # priced at LiteLLM's prices; it fitted in what was left.
        assert reserved["output_tokens"] == 50
        assert reserved["input_tokens"] >= record["tokens"]["input"]["tokens"]
        assert usd(reserved["usd"]) == MINI.cost(reserved["input_tokens"], 50)
        assert limit - spent >= usd(reserved["usd"])
        assert headers["x-ratelimit-limit-usd"] == str(limit)
        if streamed:  # a stream's headers go out after its reservation
            assert usd(headers["x-ratelimit-remaining-usd"]) == limit - spent - usd(reserved["usd"])
        cost = usd(record["cost_usd"])
        assert usd(budget["settled"]["usd"]) == cost
        spent += cost
        if not streamed:  # a whole answer's after it settled
            assert usd(headers["x-ratelimit-remaining-usd"]) == limit - spent
    # Refused exactly when its worst case no longer fitted.
    assert refused["budget"]["verdict"] == "refused" and refused["budget"]["decided_by"] == "daily"
    assert limit - spent < usd(refused["budget"]["reserved"]["usd"])
    assert usd(refusal.response.headers["x-ratelimit-remaining-usd"]) == limit - spent

    # The books: the provider's own tally at LiteLLM's prices == the records' costs == what was settled.
    tally = mock_usage(mock)
    assert tally["answers"] == len(answers)
    assert tally_cost(tally) == spent == sum(usd(r["budget"]["settled"]["usd"]) for r in admitted)
    assert spent <= limit


# --- 3. Concurrency: four workers, one limit -----------------------------------------------------


def race(envoy, count: int, body: dict, headers: dict) -> list[tuple]:
    """`count` requests on `count` connections, released together: each response, and the seconds
    from the release to its end."""
    barrier = threading.Barrier(count)
    starts = []

    def one(_):
        barrier.wait()
        starts.append(time.monotonic())
        response = post(envoy.port, CHAT, body, headers={**JSON, **headers})
        return response, time.monotonic()

    with ThreadPoolExecutor(count) as pool:
        ended = list(pool.map(one, range(count)))
    released = min(starts)
    return [(response, end - released) for response, end in ended]


def connections_by_worker(envoy) -> dict[str, int]:
    """The connections each of Envoy's worker threads accepted on the client listener so far."""
    prefix = f"listener.127.0.0.1_{envoy.port}.worker_"
    return {name: value for name, value in envoy.stats().items()
            if name.startswith(prefix) and name.endswith(".downstream_cx_total")}


def race_on_workers(envoy, count: int, body: dict, headers: dict) -> list[tuple]:
    """`race`, checking that Envoy spread the connections over several of its workers."""
    before = connections_by_worker(envoy)
    responses = race(envoy, count, body, headers)
    after = connections_by_worker(envoy)
    busy = [name for name, value in after.items() if value > before.get(name, 0)]
    assert len(after) == 4 and len(busy) >= 2, f"connections by worker: {before} -> {after}"
    return responses


# Answers held at the provider for HELD seconds: every admitted request is still in flight (its
# reservation unsettled) while the others arrive and are decided.
HELD = 2.0
SLOW = {"x-mock-first-byte-delay-ms": str(int(HELD * 1000))}


def test_64_concurrent_requests_on_four_workers_admit_exactly_the_request_limit(limited, mock):
    # `burst`: 10 requests an hour.
    room_in_window(3600, 60)
    mock_usage(mock, reset=True)
    tenant = new_tenant("burst")
    responses = [r for r, _ in race_on_workers(limited, 64, {"model": "gpt-4o-mini", "messages": HELLO},
                                               {"x-tenant-id": tenant, **SLOW})]
    assert Counter(r.status for r in responses) == {200: 10, 429: 54}
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in responses if r.status == 429)
    records = records_of(limited, tenant, 64)
    assert Counter(r["budget"]["verdict"] for r in records) == {"admitted": 10, "refused": 54}
    assert mock_usage(mock)["answers"] == 10


def test_a_spend_budget_under_64_concurrent_requests_never_admits_past_it(limited, mock):
    # `pool`: each request asks for 100 output tokens, a reservation of about $0.0000614 at
    # gpt-4o-mini's price; the budget holds about ten and a half of them.
    limit = amount("pool")
    room_in_window(86400, 60)
    mock_usage(mock, reset=True)
    tenant = new_tenant("pool")
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 100}
    raced = race_on_workers(limited, 64, body, {"x-tenant-id": tenant, **SLOW})
    responses = [r for r, _ in raced]
    statuses = Counter(r.status for r in responses)
    assert set(statuses) == {200, 429}
    assert all(r.json()["error"]["code"] == "budget_exceeded" for r in responses if r.status == 429)
    # Every refusal came back before any admitted answer could have settled (each is held HELD s
    # at the provider): every decision saw the others' reservations, never a settlement.
    assert max(seconds for r, seconds in raced if r.status == 429) < HELD

    records = records_of(limited, tenant, 64)
    admitted = [r for r in records if r["status"] == 200]
    assert len(admitted) == statuses[200]
    reservation = usd(admitted[0]["budget"]["reserved"]["usd"])
    assert reservation == MINI.cost(admitted[0]["budget"]["reserved"]["input_tokens"], 100)
    assert all(usd(r["budget"]["reserved"]["usd"]) == reservation <= limit for r in records)
    # So the budget admitted exactly as many reservations as it holds, no more, no fewer.
    assert len(admitted) == int(limit // reservation) == 10
    spent = sum(usd(r["cost_usd"]) for r in admitted)
    assert spent <= limit
    assert tally_cost(mock_usage(mock)) == spent, "the provider's tally at LiteLLM's prices"
    # The counter holds exactly what was spent: a whole answer's header says what is left after it.
    last = post(limited.port, CHAT, body, headers={**JSON, "x-tenant-id": tenant})
    assert last.status == 200
    assert usd(last.header("x-ratelimit-remaining-usd")) == limit - spent - usd(last.header("x-tollgate-cost-usd"))


# --- 4. Streams ended at the output ceiling, in each SDK -----------------------------------------

# The provider still generating when the client's stream is cut, as a real one is: 2 ms between
# events makes the provider's end (its usage) come well after the cut on every run, not only on
# a loaded machine. OpenAI's Python SDK closes the connection at `[DONE]`: a `[DONE]` sent at the
# cut reset the provider before its usage came (the record said output 1, message_start's).
GENERATING = {**ECHO, "x-mock-chunk-delay-ms": "2"}


@pytest.fixture(scope="module")
def ceiling(mock):
    """An Envoy where no request may have more than 20 output tokens (no limits)."""
    proxy = Envoy(mock.port, filter_config=with_budgets({"max_output_tokens": 20}))
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this module"


def events_tokens(encoding, chunks) -> int:
    """The output tokens of a Chat stream's events, each counted on its own (as a provider counts
    them as it writes them, and as Tollgate counts a stream it may have to end)."""
    return sum(len(encoding.encode(c.choices[0].delta.content or "")) for c in chunks if c.choices)


def next_event_tokens(encoding, text: str) -> int:
    """The tokens of the echo's next event after `text` (the mock sends a word and its space)."""
    return len(encoding.encode(LONG.split()[len(text.split())] + " "))


def assert_cut_at_the_ceiling(envoy, tenant: str, tally: dict, ceiling: int = 20) -> dict:
    """The record of a stream ended at the ceiling: decided by it, with the provider's full usage."""
    record = records_of(envoy, tenant, 1)[0]
    row = only_row(tally)
    budget = record["budget"]
    assert (budget["verdict"], budget["decided_by"]) == ("cut", "max_output_tokens")
    assert 0 < budget["cut_at_output_tokens"] <= ceiling
    # The provider generated everything it was asked for: the record and the books have its count.
    assert row["output_tokens"] > 150
    assert record["tokens"]["output"] == {"tokens": row["output_tokens"], "source": "provider"}
    assert usd(record["cost_usd"]) == expected_cost(row)
    assert "settled" not in budget, "no limit, no counter to settle"
    return record


def test_an_openai_chat_stream_is_ended_at_the_ceiling_with_finish_reason_length(ceiling, mock, tiktoken_o200k):
    tenant = new_tenant()
    mock_usage(mock, reset=True)
    stream = openai_client(ceiling, tenant, **GENERATING).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}], stream=True)
    chunks = list(stream)  # the SDK's own parser: no exception, the stream ends normally
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert text and LONG.startswith(text)
    counted = events_tokens(tiktoken_o200k, chunks)
    assert counted <= 20 < counted + next_event_tokens(tiktoken_o200k, text)
    record = assert_cut_at_the_ceiling(ceiling, tenant, mock_usage(mock))
    assert record["budget"]["cut_at_output_tokens"] == counted


def test_an_anthropic_stream_asking_for_more_than_the_ceiling_ends_with_max_tokens(ceiling, mock):
    tenant = new_tenant()
    mock_usage(mock, reset=True)
    with anthropic_client(ceiling, tenant, **ECHO).messages.stream(
        model="claude-haiku-4-5", max_tokens=4096, messages=[{"role": "user", "content": LONG}]
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "max_tokens"
    text = "".join(block.text for block in message.content)
    assert text and LONG.startswith(text)
    assert len(text.split()) <= 20, "each word is at least a token"
    assert_cut_at_the_ceiling(ceiling, tenant, mock_usage(mock))


def test_an_openai_responses_stream_ends_incomplete_at_max_output_tokens(ceiling, mock, tiktoken_o200k):
    tenant = new_tenant()
    mock_usage(mock, reset=True)
    client = openai_client(ceiling, tenant, **ECHO)
    # The SDK's accumulator; its get_final_response() wants `response.completed`, which an
    # incomplete response (the provider's own, too) never sends: the last event is what a client reads.
    with client.responses.stream(model="gpt-4o-mini", input=LONG) as stream:
        events = list(stream)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.id == events[0].response.id
    assert text and LONG.startswith(text)
    counted = sum(len(tiktoken_o200k.encode(e.delta)) for e in events if e.type == "response.output_text.delta")
    assert counted <= 20 < counted + next_event_tokens(tiktoken_o200k, text)
    record = assert_cut_at_the_ceiling(ceiling, tenant, mock_usage(mock))
    assert record["budget"]["cut_at_output_tokens"] == counted


def test_a_cut_responses_stream_carries_the_text_it_sent_in_its_incomplete_response(ceiling, mock):
    client = openai_client(ceiling, new_tenant(), **ECHO)
    with client.responses.stream(model="gpt-4o-mini", input=LONG) as stream:
        events = list(stream)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text
    assert events[-1].response.output_text == text


def test_a_cut_chat_stream_still_sends_the_usage_chunk_the_client_asked_for(ceiling):
    chunks = list(openai_client(ceiling, new_tenant(), **ECHO).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}], stream=True,
        stream_options={"include_usage": True}))
    ending = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert ending == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    # The provider's own figures: what it generated (and bills), the part cut off included.
    assert chunks[-1].usage.completion_tokens > 20


def test_a_translated_stream_ends_in_the_clients_dialect(ceiling, mock):
    # `smart` is routed to claude-haiku-4-5 (envoy/envoy.yaml): Anthropic's stream, cut, read as Chat.
    tenant = new_tenant()
    mock_usage(mock, reset=True)
    chunks = list(openai_client(ceiling, tenant, **GENERATING).chat.completions.create(
        model="smart", messages=[{"role": "user", "content": LONG}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert text and LONG.startswith(text)
    assert len(text.split()) <= 20
    record = assert_cut_at_the_ceiling(ceiling, tenant, mock_usage(mock))
    assert record["model_served"] == "claude-haiku-4-5"



def test_a_client_that_leaves_after_the_cut_is_recorded_from_the_text_read_not_message_starts_1(ceiling, mock):
    # Anthropic's message_start says `output_tokens: 1`, a placeholder; the count comes in the
    # final message_delta. The client leaves at the cut (closing the connection), Envoy resets the
    # provider's stream long before that: the record estimates the output from the text read.
    tenant = new_tenant()
    mock_usage(mock, reset=True)
    stream = openai_client(ceiling, tenant, **ECHO, **{"x-mock-chunk-delay-ms": "20"}).chat.completions.create(
        model="smart", messages=[{"role": "user", "content": LONG}], stream=True)
    text = ""
    for chunk in stream:
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        if chunk.choices and chunk.choices[0].finish_reason == "length":
            break
    stream.close()
    record = records_of(ceiling, tenant, 1)[0]
    assert record["outcome"] == "truncated"
    assert (record["budget"]["verdict"], record["budget"]["decided_by"]) == ("cut", "max_output_tokens")
    output = record["tokens"]["output"]
    assert output["source"] == "estimated", output
    # At least every word the client got (each is a token or more); at most what the provider
    # generated in all (its tally), give or take the approximate tokenizer's 10%.
    assert len(text.split()) <= output["tokens"] <= only_row(mock_usage(mock))["output_tokens"] * 1.1


# --- 5. A tenant's output-token budget ends its stream ---------------------------------------------


def test_a_stream_is_ended_where_its_tenants_output_budget_runs_out(limited, mock, tiktoken_o200k):
    # `out`: 35 output tokens an hour. On the route team-a a request without an output limit
    # reserves 10 and grows by 10 while the budget holds them (10, 20, 30; 40 does not fit): it is
    # ended before the event that would pass 30.
    room_in_window(3600, 30)
    mock_usage(mock, reset=True)
    tenant = new_tenant("out")
    client = team_a_client(limited, tenant, **GENERATING)
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert text and LONG.startswith(text)
    # Counted per event with OpenAI's tokenizer: the events the client got fit in 30, the next
    # one would not have; the record says where it was cut.
    counted = events_tokens(tiktoken_o200k, chunks)
    assert counted <= 30 < counted + next_event_tokens(tiktoken_o200k, text)
    assert len(tiktoken_o200k.encode(text)) <= counted
    record = records_of(limited, tenant, 1)[0]
    assert (record["budget"]["verdict"], record["budget"]["decided_by"]) == ("cut", "out")
    assert record["budget"]["cut_at_output_tokens"] == counted
    row = only_row(mock_usage(mock))
    assert record["tokens"]["output"]["tokens"] == row["output_tokens"] == record["budget"]["settled"]["output_tokens"]

    # The counter was settled to what the provider generated (past 35): the next request waits
    # for the hour, a rate limit on tokens.
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    assert (refused.value.code, refused.value.type) == ("rate_limit_exceeded", "tokens")
    assert refused.value.response.headers["x-ratelimit-remaining-output-tokens"] == "0"
    assert abs(int(refused.value.response.headers["retry-after"]) - seconds_left(3600)) <= 2
    # Another tenant has its own budget.
    other = team_a_client(limited, new_tenant("out")).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=5)
    assert other.choices[0].message.content


# --- 6. Shadow limits ------------------------------------------------------------------------------


def test_a_shadow_limit_never_refuses_and_records_and_counts_what_it_would_have(limited):
    # `trial`: 2 requests an hour, in shadow.
    room_in_window(3600, 30)
    refused_before = limited.stats().get("wasmcustom.tollgate.requests_refused_by_budget", 0)
    tenant = new_tenant("trial")
    client = openai_client(limited, tenant)
    for _ in range(5):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
        assert raw.parse().choices[0].message.content
        assert not [name for name in raw.headers if name.startswith("x-ratelimit-")], "shadow limits set no headers"
        assert "x-tollgate-budget" not in raw.headers
    records = records_of(limited, tenant, 5)
    assert [r["status"] for r in records] == [200] * 5
    assert [r["budget"]["verdict"] for r in records] == ["admitted"] * 5
    assert [r["budget"].get("shadow_over") for r in records] == [None, None, ["trial"], ["trial"], ["trial"]]

    stats = limited.stats()
    assert stats["wasmcustom.tollgate.budget_requests.limit.trial.verdict.shadow_over"] == 3
    samples = prometheus_samples(limited)
    assert samples['tollgate_budget_requests{limit="trial",verdict="shadow_over"}'] == 3
    assert samples['tollgate_budget_requests{limit="trial",verdict="admitted"}'] == 2
    assert stats.get("wasmcustom.tollgate.requests_refused_by_budget", 0) == refused_before


# --- 7. The `make run` demo, as the README tells it -----------------------------------------------


def readme_demo() -> tuple[str, str, str]:
    """The README's curl (section "Two commands") and its demo's answer (section "How a request is
    counted"): the example block split into the first answer's lines and the refusal's."""
    readme = (REPO / "README.md").read_text()
    curl = re.search(r"```sh\n(curl -s -i http://127\.0\.0\.1:10000/v1/chat/completions.*?)\n```",
                     readme, re.S).group(1)
    at = readme.index("`make run` ships a demo")
    example = re.search(r"```\n(.*?)\n```", readme[at:], re.S).group(1)
    first, refusal = example.split("\n…\n")
    return curl, first, refusal


def run_curl(command: str) -> tuple[str, dict, str]:
    """`curl -s -i` run by a shell: its status line, headers and body."""
    output = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True).stdout
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    status, *lines = head.split("\n")
    return status, {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}, body


def assert_like_the_readme(example: str, status: str, headers: dict, body: str) -> None:
    """The README's status line and headers, exactly, except those that tell the time: those must
    say when the UTC day ends."""
    head, _, readme_body = example.partition("\n\n")
    readme_status, *readme_headers = head.split("\n")
    assert status == readme_status
    for line in readme_headers:
        name, value = line.split(": ", 1)
        assert name in headers, f"README shows {name}, the answer has no such header"
        if name == "retry-after":
            assert abs(int(headers[name]) - seconds_left(86400)) <= 2
        elif name == "x-ratelimit-reset-usd":
            assert abs(duration_seconds(headers[name]) - seconds_left(86400)) <= 2
        else:
            assert headers[name] == value, name
    if readme_body:
        readme_body = json.loads(readme_body)
        answer = json.loads(body)
        readme_message = re.sub(r"resets in \S+\.$", f"resets in {headers['x-ratelimit-reset-usd']}.",
                                readme_body["error"]["message"])
        assert answer == {**readme_body, "error": {**readme_body["error"], "message": readme_message}}


def test_the_make_run_demo_refuses_the_sixth_request_as_the_readme_shows(start_envoy):
    room_in_window(86400, 30)
    envoy = start_envoy()  # envoy/envoy.yaml as shipped, its demo budgets included
    curl, first, refusal = readme_demo()
    command = curl.replace("127.0.0.1:10000", f"127.0.0.1:{envoy.port}") + " -H 'x-tenant-id: demo'"
    answers = [run_curl(command) for _ in range(6)]

    assert_like_the_readme(first, *answers[0])
    spent = Decimal(0)
    for status, headers, _ in answers[:5]:
        assert status == "HTTP/1.1 200 OK"
        assert (headers["x-ratelimit-limit-usd"], headers["x-tollgate-budget"]) == ("0.0002", "demo-daily")
        spent += usd(headers["x-tollgate-cost-usd"])
        assert usd(headers["x-ratelimit-remaining-usd"]) == Decimal("0.0002") - spent
    assert_like_the_readme(refusal, *answers[5])
    body = json.loads(answers[5][2])
    assert (body["error"]["type"], body["error"]["code"]) == ("insufficient_quota", "budget_exceeded")
