"""Every kind of bad input gets its documented outcome through the real Envoy, and the same
worker (Envoy runs one) keeps serving good requests afterwards."""

import http.client
import json
import socket

import openai
import pytest

from conftest import post

PATH = "/v1/chat/completions"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response, status, code):
    assert response.status == status, response.body
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["message"]


@pytest.fixture(scope="module")
def small_limit_envoy(mock):
    from harness import Envoy

    proxy = Envoy(mock.port, filter_config={"max_request_body_bytes": 1000, "log_level": "debug"}, log_level="debug")
    yield proxy
    proxy.stop()


def test_invalid_json_is_a_400_in_openai_shape(envoy):
    assert_openai_error(post(envoy.port, PATH, b'{"model": "gpt-4o-mini", "messages": ['), 400, "invalid_json")


def test_empty_body_is_a_400(envoy):
    response = post(envoy.port, PATH, b"")
    assert_openai_error(response, 400, "invalid_json")
    assert "empty" in response.json()["error"]["message"]


def test_non_object_json_is_a_400(envoy):
    assert_openai_error(post(envoy.port, PATH, b"[1, 2, 3]"), 400, "invalid_json")


def test_invalid_utf8_is_a_400(envoy):
    assert_openai_error(post(envoy.port, PATH, b'{"model": "\xff\xfe", "messages": []}'), 400, "invalid_json")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_body_is_inspected_whatever_the_content_type(envoy, content_type):
    headers = {"content-type": content_type} if content_type else {}
    good = post(envoy.port, PATH, CHAT, headers=headers)
    assert good.status == 200
    assert good.header("x-tollgate-cost-usd")
    assert_openai_error(post(envoy.port, PATH, b"model=gpt-4o", headers=headers), 400, "invalid_json")


def test_declared_oversize_body_is_a_413(small_limit_envoy):
    body = json.dumps({**CHAT, "padding": "x" * 2000})
    assert_openai_error(post(small_limit_envoy.port, PATH, body), 413, "request_too_large")


def test_chunked_oversize_body_is_a_413(small_limit_envoy):
    conn = http.client.HTTPConnection("127.0.0.1", small_limit_envoy.port, timeout=10)
    chunks = (b'{"model": "gpt-4o-mini", "padding": "' + b"x" * 400 for _ in range(5))
    conn.request("POST", PATH, body=chunks, headers={"content-type": "application/json"}, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_body_over_envoys_own_buffer_limit_gets_the_filters_413(envoy):
    # The filter answers as soon as it sees the declared length, before the 9 MiB arrive (Envoy's
    # own limit is 8 MiB), so read the answer after the first bytes instead of sending it all.
    declared = 9 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=10) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     f"content-length: {declared}\r\n\r\n".encode() + b'{"model": "gpt-4o", "pad": "' + b"x" * 65536)
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"request_too_large" in body


def test_response_without_usage_reports_cost_unknown(envoy):
    response = post(envoy.port, PATH, CHAT, headers={"content-type": "application/json", "x-mock-omit-usage": "1"})
    assert response.status == 200
    assert "usage" not in response.json()
    assert response.header("x-tollgate-cost-usd") == "unknown"
    assert response.header("x-tollgate-input-tokens") is None
    assert response.header("x-tollgate-model") == "gpt-4o-mini-2024-07-18"


def test_unpriced_model_is_reported_as_unpriced(envoy):
    response = post(envoy.port, PATH, {**CHAT, "model": "my-local-llama"})
    assert response.status == 200
    assert response.header("x-tollgate-cost-usd") == "unpriced"
    assert int(response.header("x-tollgate-output-tokens")) > 0


def test_upstream_429_passes_through_with_retry_after(envoy):
    headers = {"content-type": "application/json", "x-mock-status": "429", "x-mock-retry-after": "7"}
    response = post(envoy.port, PATH, CHAT, headers=headers)
    assert response.status == 429
    assert response.header("retry-after") == "7"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.header("x-tollgate-cost-usd") is None
    client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0,
                           default_headers={"x-mock-status": "429"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**CHAT)


def test_html_error_page_from_upstream_passes_through(envoy):
    headers = {"content-type": "application/json", "x-mock-body": "html", "x-mock-status": "502"}
    response = post(envoy.port, PATH, CHAT, headers=headers)
    assert response.status == 502
    assert b"<html" in response.body.lower()


def test_debug_log_has_the_numbers_but_no_prompt_text(small_limit_envoy):
    secret = "the-launch-code-is-4242"
    response = post(small_limit_envoy.port, PATH, {**CHAT, "messages": [{"role": "user", "content": secret}]})
    assert response.status == 200
    log = small_limit_envoy.log()
    assert "request api=openai.chat model=gpt-4o-mini stream=false" in log
    usage_lines = [line.split(" usage ", 1)[1] for line in log.splitlines() if " usage {" in line]
    record = json.loads(usage_lines[-1])
    assert record["tokens"]["input"]["tokens"] == int(response.header("x-tollgate-input-tokens"))
    assert record["cost_usd"] == response.header("x-tollgate-cost-usd")
    assert secret not in log


def test_zz_after_all_bad_input_the_worker_still_serves_and_no_vm_failed(envoy, small_limit_envoy):
    for proxy in (envoy, small_limit_envoy):
        good = post(proxy.port, PATH, CHAT)
        assert good.status == 200 and good.header("x-tollgate-cost-usd")
        assert proxy.vm_failures() == []
    stats = envoy.stats()
    assert stats["wasmcustom.tollgate.requests_rejected_invalid_body"] >= 5
    assert stats["wasmcustom.tollgate.requests_rejected_too_large"] >= 1
    assert stats["wasmcustom.tollgate.responses_without_usage"] >= 1
    assert stats["wasmcustom.tollgate.responses_unpriced"] >= 1
    assert stats["wasmcustom.tollgate.requests_inspected"] >= 5
