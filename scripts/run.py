"""`make run`: the mock provider and Envoy with Tollgate on 127.0.0.1, until Ctrl-C.

Ports (override with TOLLGATE_PORT, TOLLGATE_ADMIN_PORT, TOLLGATE_MOCK_PORT):
10000 for clients, 9901 for Envoy's admin page, 18080 for the mock provider.

`TOLLGATE_STORE=redis make run` also starts Redis (its data in .run/redis/, or TOLLGATE_REDIS_DIR)
and webdis in front of it, the shared store of budgets, on 6379 and 7379 (TOLLGATE_REDIS_PORT,
TOLLGATE_WEBDIS_PORT), and counts the shipped budgets there: Envoy's `webdis` cluster points at
that webdis. The default store, `embedded`, needs neither.
"""

import json
import os
import signal
import sys
import threading
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import ENVOY_CONFIG, REPO, Envoy, Mock, Redis, Webdis  # noqa: E402

CURL = """curl -s -i http://127.0.0.1:{port}/v1/chat/completions \\
  -H 'content-type: application/json' -H 'authorization: Bearer sk-anything' \\
  -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'"""


def shipped_filter_config() -> dict:
    """Tollgate's configuration in envoy/envoy.yaml (the listener's Wasm filter)."""
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = next(f for f in manager["http_filters"] if f["name"] == "tollgate")["typed_config"]["config"]
    return json.loads(wasm["configuration"]["value"])


def main() -> int:
    port = int(os.environ.get("TOLLGATE_PORT", "10000"))
    admin_port = int(os.environ.get("TOLLGATE_ADMIN_PORT", "9901"))
    mock_port = int(os.environ.get("TOLLGATE_MOCK_PORT", "18080"))
    store = os.environ.get("TOLLGATE_STORE", "embedded")
    if store not in ("embedded", "redis"):
        print(f"TOLLGATE_STORE must be embedded or redis, not {store!r}", file=sys.stderr)
        return 2

    started = []  # what to stop, last first
    try:
        webdis_port = None
        if store == "redis":
            redis = Redis(port=int(os.environ.get("TOLLGATE_REDIS_PORT", "6379")),
                          data_dir=os.environ.get("TOLLGATE_REDIS_DIR") or REPO / ".run" / "redis")
            started.append(("Redis", redis))
            webdis = Webdis(redis.port, port=int(os.environ.get("TOLLGATE_WEBDIS_PORT", "7379")), workdir=redis.data_dir)
            started.append(("webdis", webdis))
            webdis_port = webdis.port
        mock = Mock(port=mock_port)
        started.append(("tollgate-mock", mock))
        # The shipped configuration; with Redis, its budgets counted there instead of in Envoy.
        filter_config = shipped_filter_config()
        if store == "redis":
            filter_config.setdefault("budgets", {})["store"] = {"redis": {"endpoint": "webdis"}}
        envoy = Envoy(mock.port, listen_port=port, admin_port=admin_port, log_level="info", webdis_port=webdis_port,
                      filter_config=filter_config)
        started.append(("Envoy", envoy))
    except BaseException:
        for _, process in reversed(started):
            process.stop()
        raise

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    print(f"Tollgate is ready: Envoy on http://127.0.0.1:{port} -> tollgate-mock on 127.0.0.1:{mock.port} "
          f"(Envoy admin: http://127.0.0.1:{admin_port}, log: {envoy.log_path}, access log with usage records: "
          f"{envoy.access_log_path})")
    print("Try it:\n")
    print(CURL.format(port=port))
    print("\nor with the OpenAI SDK: OpenAI(base_url='http://127.0.0.1:%d/v1', api_key='sk-anything')" % port)
    if store == "redis":
        print(f"\nBudgets' store: Redis on 127.0.0.1:{redis.port} (data and logs in {redis.data_dir}), "
              f"webdis on http://127.0.0.1:{webdis.port} (try: curl http://127.0.0.1:{webdis.port}/PING)")
    print("\nPress Ctrl-C to stop.", flush=True)

    while not stop.wait(0.5):
        exited = [name for name, process in started if process.process.poll() is not None]
        if exited:
            print(f"{', '.join(exited)} exited unexpectedly; see {envoy.log_path}"
                  + (f" and {redis.data_dir}" if store == "redis" else ""), file=sys.stderr)
            break
    for _, process in reversed(started):
        process.stop()
    names = [name for name, _ in reversed(started)]
    print("stopped " + " and ".join([", ".join(names[:-1]), names[-1]]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
