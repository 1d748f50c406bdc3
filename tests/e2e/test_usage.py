"""The usage record through a real Envoy: printed by the shipped JSON access log for every
request, right for streams (with and without the client asking for usage), for both SDKs, and
still closed when a stream is cut."""

import http.client
import json
import socket
import time
import uuid

import anthropic
import openai
import pytest

from conftest import post

MESSAGES = [{"role": "user", "content": "Count the tokens of this request, please."}]


def access_log(envoy):
    """Every access-log entry so far, with Tollgate's record parsed (None when absent)."""
    entries = []
    for line in envoy.log().splitlines():
        if line.startswith("{") and '"tollgate"' in line:
            entry = json.loads(line)
            record = entry["tollgate"]
            entries.append((entry, json.loads(record) if record not in (None, "-") else None))
    return entries


def record_of(envoy, request_id, timeout=10.0):
    """The access-log entry and usage record of the request sent with `x-request-id: request_id`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry, record in access_log(envoy):
            if entry["request_id"] == request_id:
                return entry, record
        time.sleep(0.05)
    raise AssertionError(f"no access-log entry for {request_id}")


@pytest.fixture
def request_id():
    return f"tollgate-test-{uuid.uuid4()}"


def direct_usage(mock, **request):
    return post(mock.port, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, **request}).json()["usage"]


@pytest.fixture
def openai_client(envoy, request_id):
    return openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0,
                         default_headers={"x-request-id": request_id})


def test_non_streaming_record_matches_the_headers(envoy, openai_client, request_id):
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    entry, record = record_of(envoy, request_id)
    assert entry["status"] == 200
    assert record["outcome"] == "complete" and record["streaming"] is False
    assert record["tokens"]["input"] == {"tokens": int(raw.headers["x-tollgate-input-tokens"]), "source": "provider"}
    assert record["cost_usd"] == raw.headers["x-tollgate-cost-usd"]
    assert "Count the tokens" not in json.dumps(record), "no prompt text in the record"


def test_stream_without_include_usage_is_counted_and_the_client_sees_no_usage_chunk(envoy, mock, openai_client, request_id):
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(chunk.usage is None for chunk in chunks), "the usage chunk Tollgate asked for is hidden"
    assert all(chunk.choices for chunk in chunks)
    _, record = record_of(envoy, request_id)
    usage = direct_usage(mock, stream=False)
    assert record["streaming"] is True and record["outcome"] == "complete"
    assert record["tokens"]["input"] == {"tokens": usage["prompt_tokens"], "source": "provider"}
    assert record["tokens"]["output"] == {"tokens": usage["completion_tokens"], "source": "provider"}
    assert float(record["cost_usd"]) > 0


def test_stream_with_include_usage_keeps_the_clients_usage_chunk(envoy, openai_client, request_id):
    chunks = list(openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    _, record = record_of(envoy, request_id)
    assert record["tokens"]["output"]["tokens"] == chunks[-1].usage.completion_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_usage_is_recorded_with_cache_tokens(envoy, stream, request_id):
    client = anthropic.Anthropic(base_url=envoy.base_url, api_key="sk-ant-test", max_retries=0,
                                 default_headers={"x-mock-cache-read-tokens": "300", "x-mock-cache-write-tokens": "40",
                                                  "x-request-id": request_id})
    request = dict(model="claude-haiku-4-5", max_tokens=32, messages=MESSAGES)
    if stream:
        with client.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**request)
    _, record = record_of(envoy, request_id)
    usage = message.usage
    assert record["api"] == "anthropic.messages"
    assert record["streaming"] is stream
    expected_input = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert record["tokens"]["input"] == {"tokens": expected_input, "source": "provider"}
    assert record["tokens"]["cache_read"] == {"tokens": 300, "source": "provider"}
    assert record["tokens"]["cache_write_5m"] == {"tokens": 40, "source": "provider"}
    assert record["tokens"]["output"] == {"tokens": usage.output_tokens, "source": "provider"}


def test_upstream_reset_mid_stream_still_closes_the_record(envoy, request_id):
    request = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(request),
                 headers={"content-type": "application/json", "x-mock-reset-after-events": "3", "x-request-id": request_id})
    response = conn.getresponse()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        response.read()
    conn.close()
    _, record = record_of(envoy, request_id)
    assert record["outcome"] == "truncated"
    assert record["tokens"]["output"]["source"] == "estimated"
    assert record["tokens"]["output"]["tokens"] > 0
    assert post(envoy.port, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES}).status == 200


def test_client_disconnect_mid_stream_still_closes_the_record(envoy, request_id):
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=10) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      f"x-request-id: {request_id}\r\nx-mock-chunk-delay-ms: 200\r\ncontent-length: {len(body)}\r\n\r\n{body}").encode())
        received = b""
        while b"data: " not in received:
            chunk = sock.recv(4096)
            assert chunk, "the stream started"
            received += chunk
    _, record = record_of(envoy, request_id)
    assert record["outcome"] == "truncated"
    assert record["streaming"] is True
