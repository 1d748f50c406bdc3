"""Latency of one budget reservation (redis/reserve.lua by EVALSHA, three counters, a new operation
key each time) through webdis and straight to Redis, on loopback: the numbers of
docs/redis-store.md. Starts its own Redis and webdis (tests/e2e/harness.py).

    .venv/bin/python scripts/redis-latency.py [--calls 5000] [--clients 32]

Sequential: one keep-alive connection per side, one call at a time, in rounds of --round calls
that alternate between webdis and Redis (so both see the same background load; the load average
is printed). Concurrent: --clients processes, each with its own connection, all at once. Both clients are minimal Python socket loops (the
same cost on both sides of the comparison); docs/redis-store.md also has wrk and redis-benchmark.
"""

import argparse
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import REDIS_DIR, Redis, Webdis, _resp_command, webdis_path  # noqa: E402

COUNTERS = [f"tollgate:budget:bench:{name}:20260101" for name in ("tenant", "team", "key")]
HOUR = "3600"


def reserve_args(sha):
    args = [HOUR]
    for _ in COUNTERS:
        args += ["1", "-1", "86400"]
    return ["EVALSHA", sha, str(1 + len(COUNTERS)), f"tollgate:budget-op:{uuid.uuid4()}", *COUNTERS, *args]


class HttpClient:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def call(self, args):
        self.sock.sendall(b"GET " + webdis_path(*args).encode() + b" HTTP/1.1\r\nHost: webdis\r\n\r\n")
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += self.sock.recv(65536)
        body, self.buffer = rest[:length], rest[length:]
        if not head.startswith(b"HTTP/1.1 200") or not body.startswith(b'{"EVALSHA":[1,'):
            raise RuntimeError(f"unexpected answer: {head[:40]!r} {body[:80]!r}")


class RespClient:
    def __init__(self, port, password):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.sock.sendall(_resp_command(["AUTH", "tollgate-admin", password]))
        self.reader.readline()

    def call(self, args):
        self.sock.sendall(_resp_command(args))
        # The answer is a flat array: its header, then one line (integer) or two (bulk) per element.
        header = self.reader.readline()
        if not header.startswith(b"*") or int(header[1:]) < 1:
            raise RuntimeError(f"unexpected answer: {header!r}")
        for _ in range(int(header[1:])):
            if self.reader.readline().startswith(b"$"):
                self.reader.readline()


def measure(client, sha, calls):
    timings = []
    for _ in range(calls):
        args = reserve_args(sha)
        started = time.perf_counter_ns()
        client.call(args)
        timings.append(time.perf_counter_ns() - started)
    return timings


def worker(kind, port, password, sha, calls, start, queue):
    client = HttpClient(port) if kind == "webdis" else RespClient(port, password)
    start.wait()
    queue.put(measure(client, sha, calls))


def concurrent(kind, port, password, sha, clients, calls):
    start = multiprocessing.Barrier(clients + 1)
    queue = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=worker, args=(kind, port, password, sha, calls, start, queue))
                 for _ in range(clients)]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    timings = [t for _ in processes for t in queue.get()]
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
    return timings, len(timings) / elapsed


def summary(timings):
    ordered = sorted(timings)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return f"n={len(ordered):>6}  p50 {pick(0.50):7.0f} µs  p90 {pick(0.90):7.0f} µs  p99 {pick(0.99):7.0f} µs  " \
           f"mean {statistics.fmean(ordered) / 1000:7.0f} µs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--round", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--concurrent-calls", type=int, default=300, help="calls per client in the concurrent run")
    options = parser.parse_args()

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    redis = Redis()
    webdis = Webdis(redis.port)
    try:
        print(f"machine: {os.cpu_count()} CPUs, {cpu}; "
              f"{redis.command('INFO', 'server').split('redis_version:')[1].split()[0]} Redis, webdis 0.1.9 "
              f"({webdis.config['threads']} threads, pool {webdis.config['pool_size']})")
        sha = redis.command("SCRIPT", "LOAD", (REDIS_DIR / "reserve.lua").read_text())
        password = redis._password
        print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
        clients = {"webdis": HttpClient(webdis.port), "redis": RespClient(redis.port, password)}
        timings = {kind: [] for kind in clients}
        for kind, client in clients.items():
            measure(client, sha, 500)  # warm-up
        for _ in range(max(1, options.calls // options.round)):
            for kind, client in clients.items():
                timings[kind] += measure(client, sha, options.round)
        for kind in clients:
            print(f"sequential  {kind:<7} {summary(timings[kind])}")
        for kind, port in (("webdis", webdis.port), ("redis", redis.port)):
            timings, rate = concurrent(kind, port, password, sha, options.clients, options.concurrent_calls)
            print(f"{options.clients} clients {kind:<7} {summary(timings)}  {rate:7.0f} calls/s")
        print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    finally:
        webdis.stop()
        redis.stop()


if __name__ == "__main__":
    main()
