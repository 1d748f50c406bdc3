"""`make run` (scripts/run.py): prints a ready line and a curl example, serves a completion
with cost headers, and stops both processes on Ctrl-C; with `TOLLGATE_STORE=redis` it also starts
Redis and webdis, points Envoy's webdis cluster at them, and stops them too."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

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


def test_run_with_the_redis_store_starts_redis_and_webdis_and_stops_them(tmp_path):
    ports = {name: free_port() for name in ("TOLLGATE_PORT", "TOLLGATE_ADMIN_PORT", "TOLLGATE_MOCK_PORT",
                                            "TOLLGATE_REDIS_PORT", "TOLLGATE_WEBDIS_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "TOLLGATE_STORE": "redis",
           "TOLLGATE_REDIS_DIR": str(tmp_path / "redis")}
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
        assert f"Redis on 127.0.0.1:{ports['TOLLGATE_REDIS_PORT']}" in text
        assert f"webdis on http://127.0.0.1:{ports['TOLLGATE_WEBDIS_PORT']}" in text

        webdis = http.client.HTTPConnection("127.0.0.1", ports["TOLLGATE_WEBDIS_PORT"], timeout=5)
        webdis.request("GET", "/PING")
        assert webdis.getresponse().read() == b'{"PING":[true,"PONG"]}'
        webdis.close()
        admin = http.client.HTTPConnection("127.0.0.1", ports["TOLLGATE_ADMIN_PORT"], timeout=5)
        admin.request("GET", "/config_dump?resource=static_clusters")
        clusters = json.loads(admin.getresponse().read())["configs"]
        admin.close()
        webdis_cluster = next(c["cluster"] for c in clusters if c["cluster"]["name"] == "webdis")
        address = webdis_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert address["socket_address"]["port_value"] == ports["TOLLGATE_WEBDIS_PORT"]
        response = post(ports["TOLLGATE_PORT"], "/v1/chat/completions",
                        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]})
        assert response.status == 200

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=20) == 0
        assert "stopped Envoy, tollgate-mock, webdis and Redis" in run.stdout.read()
        for port in (ports["TOLLGATE_REDIS_PORT"], ports["TOLLGATE_WEBDIS_PORT"]):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert (tmp_path / "redis" / "appendonlydir").is_dir(), "Redis kept its data in the folder it was given"
    finally:
        if run.poll() is None:
            run.kill()
