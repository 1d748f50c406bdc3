"""`make run`: the mock provider and Envoy with Tollgate on 127.0.0.1, until Ctrl-C.

Ports (override with TOLLGATE_PORT, TOLLGATE_ADMIN_PORT, TOLLGATE_MOCK_PORT):
10000 for clients, 9901 for Envoy's admin page, 18080 for the mock provider.
"""

import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from harness import Envoy, Mock  # noqa: E402

CURL = """curl -s -i http://127.0.0.1:{port}/v1/chat/completions \\
  -H 'content-type: application/json' -H 'authorization: Bearer sk-anything' \\
  -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'"""


def main() -> int:
    port = int(os.environ.get("TOLLGATE_PORT", "10000"))
    admin_port = int(os.environ.get("TOLLGATE_ADMIN_PORT", "9901"))
    mock_port = int(os.environ.get("TOLLGATE_MOCK_PORT", "18080"))

    mock = Mock(port=mock_port)
    try:
        envoy = Envoy(mock.port, listen_port=port, admin_port=admin_port, log_level="info")
    except Exception:
        mock.stop()
        raise

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    print(f"Tollgate is ready: Envoy on http://127.0.0.1:{port} -> tollgate-mock on 127.0.0.1:{mock.port} "
          f"(Envoy admin: http://127.0.0.1:{admin_port}, log: {envoy.log_path})")
    print("Try it:\n")
    print(CURL.format(port=port))
    print("\nor with the OpenAI SDK: OpenAI(base_url='http://127.0.0.1:%d/v1', api_key='sk-anything')" % port)
    print("\nPress Ctrl-C to stop.", flush=True)

    while not stop.wait(0.5):
        if envoy.process.poll() is not None or mock.process.poll() is not None:
            print("a process exited unexpectedly; see", envoy.log_path, file=sys.stderr)
            break
    envoy.stop()
    mock.stop()
    print("stopped Envoy and tollgate-mock", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
