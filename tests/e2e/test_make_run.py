"""`make run` (scripts/run.py): prints a ready line and a curl example, serves a completion
with cost headers, and stops both processes on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

from conftest import post
from harness import REPO, free_port


def test_run_serves_a_completion_with_cost_headers_and_stops_on_ctrl_c():
    ports = {"TOLLGATE_PORT": free_port(), "TOLLGATE_ADMIN_PORT": free_port(), "TOLLGATE_MOCK_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    run = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, "run.py ended early:\n" + "".join(output)
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Tollgate is ready" in text
        assert f"curl -s -i http://127.0.0.1:{ports['TOLLGATE_PORT']}/v1/chat/completions" in text

        response = post(ports["TOLLGATE_PORT"], "/v1/chat/completions",
                        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]})
        assert response.status == 200
        assert response.header("x-tollgate-cost-usd")
        assert response.header("x-tollgate-model") == "gpt-4o-mini-2024-07-18"

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=20) == 0
        assert "stopped Envoy and tollgate-mock" in run.stdout.read()
        for port in (ports["TOLLGATE_PORT"], ports["TOLLGATE_MOCK_PORT"]):
            try:
                post(port, "/v1/chat/completions", {}, timeout=2)
                raise AssertionError(f"port {port} still answers after Ctrl-C")
            except ConnectionRefusedError:
                pass
    finally:
        if run.poll() is None:
            run.kill()
