"""The budgets' shared store: the Lua scripts redis/reserve.lua and redis/settle.lua on a real Redis,
reached through a real webdis the way the filter reaches it (HTTP GET paths, EVALSHA after SCRIPT
LOAD, EVAL on NOSCRIPT), and what webdis does when Redis stops, hangs or comes back.
The contract and the measurements behind it: docs/redis-store.md."""

import http.client
import json
import os
import re
import signal
import threading
import time
import uuid

import pytest

from harness import REDIS_DIR, Redis, Webdis, webdis_path

RESERVE = (REDIS_DIR / "reserve.lua").read_text()
SETTLE = (REDIS_DIR / "settle.lua").read_text()
HOUR = 3600


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


class Store:
    """What the filter does: SCRIPT LOAD once, EVALSHA, and EVAL when Redis answers NOSCRIPT."""

    def __init__(self, webdis):
        self.webdis = webdis
        self.sha = {}

    def load(self, name, script):
        status, sha = self.webdis.command("SCRIPT", "LOAD", script)
        assert status == 200 and re.fullmatch(r"[0-9a-f]{40}", sha), sha
        self.sha[name] = sha

    def run(self, name, script, keys, args, timeout=10.0):
        """(HTTP status, the reply under "EVALSHA"/"EVAL")."""
        if name not in self.sha:
            self.load(name, script)
        status, reply = self.webdis.command("EVALSHA", self.sha[name], len(keys), *keys, *args, timeout=timeout)
        if isinstance(reply, list) and reply[:1] == [False] and str(reply[1]).startswith("NOSCRIPT"):
            status, reply = self.webdis.command("EVAL", script, len(keys), *keys, *args, timeout=timeout)
        return status, reply

    def reserve(self, op, counters, op_ttl=HOUR):
        """counters: [(key, amount, cap, ttl)]"""
        args = [op_ttl] + [str(v) for key, amount, cap, ttl in counters for v in (amount, cap, ttl)]
        return self.run("reserve", RESERVE, [op] + [c[0] for c in counters], args)

    def settle(self, op, counters, op_ttl=HOUR):
        """counters: [(key, delta, ttl)]"""
        args = [op_ttl] + [str(v) for key, delta, ttl in counters for v in (delta, ttl)]
        return self.run("settle", SETTLE, [op] + [c[0] for c in counters], args)


@pytest.fixture
def store(webdis):
    return Store(webdis)


def op():
    return f"tollgate:budget-op:{uuid.uuid4()}"


def counter(name="c"):
    return f"tollgate:budget:test:{name}:{uuid.uuid4().hex[:12]}:20260101"


def error(reply):
    """The text of an error reply (webdis: [false, "TEXT"]), else None."""
    return reply[1] if isinstance(reply, list) and len(reply) == 2 and reply[0] is False else None


# --- reserve -------------------------------------------------------------------------------------

def test_reserve_admits_within_every_cap_and_answers_the_values_after(store, redis):
    a, b = counter("a"), counter("b")
    assert store.reserve(op(), [(a, 300, 1000, 60), (b, 5, 10, 60)]) == (200, [1, "300", "5"])
    assert store.reserve(op(), [(a, 700, 1000, 60), (b, 5, 10, 60)]) == (200, [1, "1000", "10"])
    assert redis.command("GET", a) == "1000" and redis.command("GET", b) == "10"


def test_a_refusal_names_the_first_refusing_counter_and_changes_nothing(store, redis):
    a, b, c = counter("a"), counter("b"), counter("c")
    store.reserve(op(), [(a, 10, 100, 60), (b, 90, 100, 60), (c, 1, -1, 60)])
    ttl_before = redis.command("TTL", a)
    # b would reach 101: refused by counter 2, whose value is 90; a and c keep theirs.
    assert store.reserve(op(), [(a, 11, 100, 60), (b, 11, 100, 60), (c, 1, -1, 60)]) == (200, [0, 2, "90"])
    assert [redis.command("GET", k) for k in (a, b, c)] == ["10", "90", "1"]
    assert redis.command("TTL", a) <= ttl_before
    # Exactly at the cap is admitted.
    assert store.reserve(op(), [(b, 10, 100, 60)]) == (200, [1, "100"])


def test_shadow_counters_count_past_their_cap_and_never_refuse(store, redis):
    shadow, enforcing = counter("shadow"), counter("enforcing")
    for used in range(1, 6):
        assert store.reserve(op(), [(shadow, 100, -1, 60), (enforcing, 1, 10, 60)]) == (200, [1, str(100 * used), str(used)])
    assert redis.command("GET", shadow) == "500"


def test_reserve_sets_a_ttl_only_where_there_is_none(store, redis):
    fresh, timed, untimed = counter("fresh"), counter("timed"), counter("untimed")
    redis.command("SET", timed, "5", "EX", "1000")
    redis.command("SET", untimed, "5")
    store.reserve(op(), [(fresh, 1, -1, 500), (timed, 1, -1, 500), (untimed, 1, -1, 500)])
    assert 495 <= redis.command("TTL", fresh) <= 500
    assert 995 <= redis.command("TTL", timed) <= 1000, "an existing TTL is kept"
    assert 495 <= redis.command("TTL", untimed) <= 500, "a counter without TTL gets one"


def test_a_counter_named_twice_takes_both_amounts(store, redis):
    a = counter()
    assert store.reserve(op(), [(a, 6, 10, 60), (a, 6, 10, 60)]) == (200, [0, 2, "0"])
    assert redis.command("GET", a) is None
    assert store.reserve(op(), [(a, 5, 10, 60), (a, 5, 10, 60)]) == (200, [1, "10", "10"])


def test_amounts_past_2_to_the_53_stay_exact(store, redis):
    """Lua's numbers are doubles: a $10,000 budget in pico-dollars (10^16) is past 2^53."""
    a = counter()
    cap = 10_000 * 10**12
    assert store.reserve(op(), [(a, 2**53 + 1, cap, 60)]) == (200, [1, str(2**53 + 1)])
    assert store.reserve(op(), [(a, 2, cap, 60)]) == (200, [1, str(2**53 + 3)])
    assert store.reserve(op(), [(a, cap - 2**53 - 3, cap, 60)]) == (200, [1, str(cap)])
    assert store.reserve(op(), [(a, 1, cap, 60)]) == (200, [0, 1, str(cap)])
    assert store.settle(op(), [(a, -(2**53), 60)]) == (200, [str(cap - 2**53)])
    assert redis.command("GET", a) == str(cap - 2**53)
    top = counter()
    redis.command("SET", top, str(2**63 - 2))
    assert store.reserve(op(), [(top, 1, -1, 60)]) == (200, [1, str(2**63 - 1)])
    assert error(store.reserve(op(), [(top, 1, -1, 60)])[1]) == f"TOLLGATE_OVERFLOW {top}"
    assert redis.command("GET", top) == str(2**63 - 1)


# --- settle --------------------------------------------------------------------------------------

def test_settle_adds_deltas_and_never_goes_below_zero(store, redis):
    a, b = counter("a"), counter("b")
    store.reserve(op(), [(a, 100, 1000, 60), (b, 100, 1000, 60)])
    assert store.settle(op(), [(a, -30, 60), (b, 25, 60)]) == (200, ["70", "125"])
    assert store.settle(op(), [(a, -500, 60)]) == (200, ["0"])
    assert redis.command("GET", a) == "0" and redis.command("GET", b) == "125"


def test_settle_leaves_a_missing_counter_alone_unless_the_delta_is_positive(store, redis):
    rolled_over, created = counter("rolled"), counter("created")
    assert store.settle(op(), [(rolled_over, -40, 60), (created, 40, 300)]) == (200, ["0", "40"])
    assert redis.command("EXISTS", rolled_over) == 0
    assert redis.command("GET", created) == "40"
    assert 295 <= redis.command("TTL", created) <= 300
    assert store.settle(op(), [(rolled_over, 0, 60)]) == (200, ["0"])
    assert redis.command("EXISTS", rolled_over) == 0


def test_settle_sets_a_ttl_only_where_there_is_none(store, redis):
    timed, untimed = counter("timed"), counter("untimed")
    redis.command("SET", timed, "50", "EX", "1000")
    redis.command("SET", untimed, "50")
    store.settle(op(), [(timed, -10, 200), (untimed, -10, 200)])
    assert 995 <= redis.command("TTL", timed) <= 1000
    assert 195 <= redis.command("TTL", untimed) <= 200


# --- corruption and bad arguments ----------------------------------------------------------------

@pytest.mark.parametrize("damage", [("SET", "x1"), ("SET", "-5"), ("SET", "1.5"), ("SET", ""), ("SET", "9223372036854775808"),
                                    ("SET", "12345678901234567890"), ("HSET", "f", "1"), ("RPUSH", "1")],
                         ids=lambda d: " ".join(d))
def test_a_corrupted_counter_is_an_error_reply_and_nothing_changes(store, redis, damage):
    good, bad = counter("good"), counter("bad")
    redis.command("SET", good, "5")
    redis.command(damage[0], bad, *damage[1:])
    before = redis.command("DUMP", bad)
    for status, reply in (store.reserve(op(), [(good, 1, 100, 60), (bad, 1, 100, 60)]),
                          store.reserve(op(), [(good, 1, -1, 60), (bad, 1, -1, 60)]),
                          store.settle(op(), [(good, 1, 60), (bad, -1, 60)])):
        assert status == 200
        assert error(reply) == f"TOLLGATE_CORRUPT {bad}"
    assert redis.command("GET", good) == "5"
    assert redis.command("DUMP", bad) == before


@pytest.mark.parametrize("script, keys, args, what", [
    ("reserve", [], [], "ARGV needs 1 + 3 per counter (or 1 + 5 with leases), got 0"),
    ("reserve", ["k"], [HOUR, 1, 2], "ARGV needs 1 + 3 per counter (or 1 + 5 with leases), got 3"),
    ("reserve", ["k"], [HOUR, 1, 2, 60, "x", 5], "ARGV[5] (slice of k)"),
    ("reserve", ["k"], [HOUR, 1, 2, 60, 5, -1], "ARGV[6] (slice cap of k)"),
    ("reserve", ["k"], [0, 1, 2, 60], "ARGV[1] (operation TTL)"),
    ("reserve", ["k"], [HOUR, -1, 2, 60], "ARGV[2] (amount of k)"),
    ("reserve", ["k"], [HOUR, "1e3", 2, 60], "ARGV[2] (amount of k)"),
    ("reserve", ["k"], [HOUR, 2**63, 2, 60], "ARGV[2] (amount of k)"),
    ("reserve", ["k"], [HOUR, 1, -2, 60], "ARGV[3] (cap of k)"),
    ("reserve", ["k"], [HOUR, 1, 2, 0], "ARGV[4] (TTL of k)"),
    ("reserve", ["k"], [HOUR, 1, 2, ""], "ARGV[4] (TTL of k)"),
    ("settle", ["k"], [HOUR, "+1", 60], "ARGV[2] (delta of k)"),
    ("settle", ["k"], [HOUR, "--1", 60], "ARGV[2] (delta of k)"),
    ("settle", ["k"], [HOUR, -(2**63), 60], "ARGV[2] (delta of k)"),
    ("settle", ["k"], [HOUR, 1, "x"], "ARGV[3] (TTL of k)"),
])
def test_arguments_that_break_the_contract_are_refused_by_name(store, redis, script, keys, args, what):
    keys = [f"tollgate:budget:test:{k}" for k in keys]
    what = what.replace("of k)", f"of {keys[0]})") if keys else what
    source = RESERVE if script == "reserve" else SETTLE
    status, reply = store.run(script, source, [op()] + keys, [str(a) for a in args])
    assert status == 200 and error(reply) == f"TOLLGATE_BADARG {what}"
    assert all(redis.command("EXISTS", k) == 0 for k in keys)


def test_no_operation_key_is_refused(store):
    status, reply = store.run("settle", SETTLE, [], [])
    assert error(reply) == "TOLLGATE_BADARG KEYS needs the operation key first"


# --- idempotence ---------------------------------------------------------------------------------

def test_a_retried_reservation_gets_the_first_answer_and_counts_once(store, redis):
    a, operation = counter(), op()
    first = store.reserve(operation, [(a, 7, 10, 60)])
    assert first == (200, [1, "7"])
    assert store.reserve(operation, [(a, 7, 10, 60)]) == first
    assert redis.command("GET", a) == "7"
    assert 3595 <= redis.command("TTL", operation) <= HOUR
    refused = op()
    assert store.reserve(refused, [(a, 7, 10, 60)]) == (200, [0, 1, "7"])
    store.settle(op(), [(a, -7, 60)])
    assert store.reserve(refused, [(a, 7, 10, 60)]) == (200, [0, 1, "7"]), "a refusal is an answer too"
    assert redis.command("GET", a) == "0"


def test_a_retried_settlement_gets_the_first_answer_and_counts_once(store, redis):
    a, b, operation = counter("a"), counter("b"), op()
    store.reserve(op(), [(a, 100, -1, 60), (b, 100, -1, 60)])
    first = store.settle(operation, [(a, -60, 60), (b, 5, 60)])
    assert first == (200, ["40", "105"])
    store.reserve(op(), [(a, 1, -1, 60)])
    assert store.settle(operation, [(a, -60, 60), (b, 5, 60)]) == first
    assert redis.command("GET", a) == "41" and redis.command("GET", b) == "105"


def test_an_operation_key_holding_something_else_is_corrupt(store, redis):
    a, operation = counter(), op()
    store.settle(operation, [(a, 5, 60)])
    assert error(store.reserve(operation, [(a, 1, 10, 60)])[1]) == f"TOLLGATE_CORRUPT {operation}"
    garbage = op()
    redis.command("SET", garbage, "something")
    assert error(store.settle(garbage, [(a, 1, 60)])[1]) == f"TOLLGATE_CORRUPT {garbage}"
    assert redis.command("GET", a) == "5"


def test_a_reservation_that_timed_out_is_retried_without_double_counting(store, redis, webdis):
    """webdis has no timeout of its own: a request to a hung Redis waits, and still runs when Redis
    wakes up, after the caller gave up. The retry with the same operation key is answered from
    the first run's record."""
    a, operation = counter(), op()
    store.load("reserve", RESERVE)
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError):
            webdis.command("EVALSHA", store.sha["reserve"], 2, operation, a, HOUR, 3, 10, 60, timeout=0.5)
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    assert store.reserve(operation, [(a, 3, 10, 60)]) == (200, [1, "3"])
    assert redis.command("GET", a) == "3"


# --- concurrency ---------------------------------------------------------------------------------

def test_64_concurrent_reservations_against_a_cap_that_fits_10_admit_exactly_10(store, redis, webdis):
    a, b = counter("team"), counter("tenant")
    store.load("reserve", RESERVE)
    path = lambda: webdis_path("EVALSHA", store.sha["reserve"], 3, op(), a, b, HOUR, 25, 250, 60, 1, -1, 60)  # noqa: E731
    start = threading.Barrier(64)
    answers = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", webdis.port, timeout=30)
        try:
            request = path()
            start.wait()
            conn.request("GET", request)
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read())["EVALSHA"]))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 64 and all(status == 200 for status, _ in answers)
    admitted = sorted(int(reply[1]) for _, reply in answers if reply[0] == 1)
    refused = [reply for _, reply in answers if reply[0] == 0]
    assert admitted == [25 * i for i in range(1, 11)], "each admission saw a distinct value: one at a time"
    assert len(refused) == 54 and all(reply == [0, 1, "250"] for reply in refused)
    assert redis.command("GET", a) == "250" and redis.command("GET", b) == "10"


# --- webdis: the shapes the filter parses ----------------------------------------------------------

def test_script_load_evalsha_and_noscript(store, redis, webdis):
    status, sha = webdis.command("SCRIPT", "LOAD", "return 1")
    assert (status, sha) == (200, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    assert webdis.command("EVALSHA", sha, 0) == (200, 1)
    redis.command("SCRIPT", "FLUSH")
    assert webdis.command("EVALSHA", sha, 0) == (200, [False, "NOSCRIPT No matching script. Please use EVAL."])
    # The fallback: EVAL runs it and caches it, so EVALSHA works again.
    a = counter()
    assert store.reserve(op(), [(a, 1, 5, 60)]) == (200, [1, "1"])
    assert webdis.command("EVALSHA", store.sha["reserve"], 2, op(), a, HOUR, 1, 5, 60) == (200, [1, "2"])


@pytest.mark.parametrize("script, body", [
    ("return 42", b'{"EVAL":42}'),
    ("return -7", b'{"EVAL":-7}'),
    ("return 'text'", b'{"EVAL":"text"}'),
    ("return nil", b'{"EVAL":null}'),
    ("return {}", b'{"EVAL":[]}'),
    ("return {1, 'two', false, 4}", b'{"EVAL":[1,"two",null,4]}'),
    ("return {1, nil, 3}", b'{"EVAL":[1]}'),
    ("return redis.status_reply('FINE')", b'{"EVAL":[true,"FINE"]}'),
    ("return redis.error_reply('TOLLGATE_CORRUPT k')", b'{"EVAL":[false,"TOLLGATE_CORRUPT k"]}'),
    ("return redis.error_reply('X')", b'{"EVAL":[false,"ERR X"]}'),
    ("return 2^53 + 1", b'{"EVAL":9007199254740992}'),
])
def test_json_shapes_of_replies(webdis, script, body):
    status, headers, got = webdis.request("GET", webdis_path("EVAL", script, 0))
    assert (status, got) == (200, body)
    assert headers["content-type"] == "application/json"


def test_nested_arrays_come_back_as_null_so_the_scripts_answer_flat_arrays(webdis):
    """webdis 0.1.9 (Debian 12) drops nested arrays (newer webdis expands them)."""
    assert webdis.command("EVAL", "return {1, {2, 3}, 4}", 0) == (200, [1, None, 4])


def test_a_runtime_error_in_a_script_is_an_error_reply(webdis):
    status, reply = webdis.command("EVAL", "error('boom')", 0)
    assert status == 200 and reply[0] is False and reply[1].startswith("ERR user_script:1: boom")


@pytest.mark.parametrize("value", ["a/b", "a:b", "100%", "a b", "a+b", "a?b#c&d=e", "gpt-4.1", "x.json", "x.raw", "x.txt",
                                   "é € 😀 日本", "", "tollgate:budget:tenant:acme corp/©:2026-01"])
def test_arguments_reach_redis_intact_when_percent_encoded(webdis, value):
    assert webdis.command("EVAL", "return ARGV[1]", 0, value) == (200, value)
    # Trailing position and middle position alike.
    assert webdis.command("EVAL", "return ARGV", 0, value, "end") == (200, [value, "end"])


def test_unencoded_characters_that_webdis_reads_itself(webdis):
    raw = lambda tail: webdis.request("GET", webdis_path("EVAL", "return ARGV", 0) + "/" + tail)[2]  # noqa: E731
    assert raw("a+b") == b'{"EVAL":["a b"]}', "+ is a space"
    assert raw("a.json") == b'{"EVAL":["a"]}', "a known extension on the last argument is an output format"
    assert raw("a.txt") == b"a"
    assert raw("a?b=c") == b'{"EVAL":["a"]}', "? starts a query string"
    assert raw("a/") == b'{"EVAL":["a",""]}', "a trailing / is one more (empty) argument"


def test_the_put_form_takes_the_last_argument_verbatim_from_the_body(webdis):
    body = "a/b c+d%2F.json é".encode()
    status, _, got = webdis.request("PUT", webdis_path("EVAL", "return ARGV", 0, "first"), body=body,
                                    headers={"content-length": str(len(body))})
    assert status == 200 and json.loads(got) == {"EVAL": ["first", body.decode()]}


def test_webdis_keeps_http_1_1_connections_alive(webdis):
    conn = http.client.HTTPConnection("127.0.0.1", webdis.port, timeout=10)
    try:
        for i in range(100):
            conn.request("GET", webdis_path("PING"))
            response = conn.getresponse()
            assert response.read() == b'{"PING":[true,"PONG"]}'
            assert response.getheader("connection") == "Keep-Alive"
        assert conn.sock is not None, "the same socket served all 100"
    finally:
        conn.close()


def test_webdis_refuses_every_command_its_acl_does_not_name(webdis):
    for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("SET", "tollgate:budget:x", "1"), ("KEYS", "*"),
                    ("INFO",), ("DEBUG", "SLEEP", "0"), ("MULTI",), ("SHUTDOWN",)):
        status, _, body = webdis.request("GET", webdis_path(*command))
        assert (status, body) == (403, b""), command
    assert webdis.command("PING") == (200, [True, "PONG"])


def test_redis_confines_what_an_eval_through_webdis_may_do(webdis, redis):
    redis.command("SET", "other:key", "kept")
    status, reply = webdis.command("EVAL", "return redis.call('FLUSHALL')", 0)
    assert status == 200 and error(reply).startswith("ERR The user executing the script can't run this command")
    status, reply = webdis.command("EVAL", "return redis.call('SET', KEYS[1], 'x')", 1, "other:key")
    assert error(reply).startswith("NOPERM")
    status, reply = webdis.command("SCRIPT", "FLUSH")
    assert error(reply).startswith("NOPERM")
    assert redis.command("GET", "other:key") == "kept"


def test_shipped_scripts_share_one_copy_of_their_helpers():
    def helpers(source):
        return source[source.index("-- helpers: begin"):source.index("-- helpers: end")]
    assert helpers(RESERVE) == helpers(SETTLE)


# --- Redis away ----------------------------------------------------------------------------------

def test_redis_stopped_gives_503_at_once_and_webdis_reconnects_when_it_returns(store, redis, webdis):
    a = counter()
    store.reserve(op(), [(a, 5, 100, 600)])
    conn = http.client.HTTPConnection("127.0.0.1", webdis.port, timeout=10)
    try:
        redis.stop()
        for _ in range(5):
            started = time.monotonic()
            conn.request("GET", webdis_path("EVALSHA", store.sha["reserve"], 2, op(), a, HOUR, 1, 100, 600))
            response = conn.getresponse()
            assert (response.status, response.read()) == (503, b"")
            assert time.monotonic() - started < 0.5
        redis.start()
        started = time.monotonic()
        while True:
            conn.request("GET", webdis_path("GET", a))
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                break
            assert time.monotonic() - started < 2, "webdis reconnects within its 100 ms retry"
            time.sleep(0.01)
        assert json.loads(body) == {"GET": "5"}, "the counter survived the restart (append-only file)"
    finally:
        conn.close()
        if not redis.running:
            redis.start()
    # Scripts are not kept across a restart: EVALSHA answers NOSCRIPT and the store falls back to EVAL.
    # webdis keeps 2 threads x 4 pooled connections, each reconnecting on its own: one that answered
    # the GET above does not mean every one is back (a CI run met a 503 here), so wait for a 200.
    started = time.monotonic()
    while (answer := webdis.command("EVALSHA", store.sha["reserve"], 2, op(), a, HOUR, 1, 100, 600))[0] != 200:
        assert answer[0] == 503 and time.monotonic() - started < 2, answer
        time.sleep(0.01)
    assert error(answer[1]).startswith("NOSCRIPT"), answer
    assert store.reserve(op(), [(a, 1, 100, 600)]) == (200, [1, "6"])


def test_an_abandoned_requests_answer_can_reach_the_next_connection_and_only_its_jsonp_name_tells(redis, webdis):
    """webdis 0.1.9: a client gives up on a request while Redis hangs and closes its connection; a
    new connection sends another. When Redis resumes, the new connection may get the abandoned
    request's answer (as often as not here), and its own command may never run. `?jsonp=NAME`
    wraps each answer in the name its request chose: the filter names every call and takes only
    an answer with its call's name (docs/redis-store.md, "Stale answers")."""
    stale = 0
    for trial in range(40):
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            abandoned = http.client.HTTPConnection("127.0.0.1", webdis.port, timeout=0.2)
            abandoned.request("GET", webdis_path("EVAL", "return 'abandoned'", 0) + f"?jsonp=a{trial}")
            try:
                abandoned.getresponse().read()  # nothing while Redis is stopped (or, under load, an earlier answer)
            except TimeoutError:
                pass
            abandoned.close()
            time.sleep(0.05)
            conn = http.client.HTTPConnection("127.0.0.1", webdis.port, timeout=10)
            conn.request("GET", webdis_path("EVAL", "return 'mine'", 0) + f"?jsonp=b{trial}")
            time.sleep(0.1)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        body = conn.getresponse().read()
        conn.close()
        # Its own answer, or one abandoned (in this trial or an earlier one).
        assert body == f'b{trial}({{"EVAL":"mine"}});\n'.encode() or re.fullmatch(rb'a\d+\(\{"EVAL":"abandoned"\}\);\n', body)
        stale += body.startswith(b"a")
        if stale:
            break
    # The misdelivery is a race inside webdis: 40 trials usually show it, not always (a CI run saw
    # none). What must hold either way is asserted above: every answer names its own request.
    if not stale:
        pytest.skip("webdis did not hand an abandoned answer to another connection in 40 trials this run")


def test_a_request_in_flight_when_redis_dies_gets_503(redis, webdis):
    os.kill(redis.process.pid, signal.SIGSTOP)
    killer = threading.Timer(0.5, redis.kill)
    killer.start()
    try:
        started = time.monotonic()
        status, _, body = webdis.request("GET", webdis_path("GET", "tollgate:budget:x"), timeout=10)
        assert (status, body) == (503, b"")
        assert 0.4 < time.monotonic() - started < 5
    finally:
        killer.join()
        redis.start()
