"""OpenAI Chat Completions through a real Envoy with Tollgate, against the mock provider."""

import http.client
import json
import subprocess
import time

import openai
import pytest

from conftest import post, split_cost_comment

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the gateway."}]}
PATH = "/v1/chat/completions"

# The built-in table's gpt-4o-mini prices: $0.15 and $0.60 per million tokens.
INPUT_PICO_USD, OUTPUT_PICO_USD = 150_000, 600_000


def usd(pico):
    whole, fraction = divmod(pico, 10**12)
    return f"{whole}.{str(fraction).zfill(12).rstrip('0') or '0'}"


def test_non_streaming_response_carries_model_tokens_and_cost(envoy, mock):
    direct = post(mock.port, PATH, CHAT)
    through = post(envoy.port, PATH, CHAT)

    assert through.status == 200
    assert through.body == direct.body, "the filter changes no byte of the completion"
    usage = direct.json()["usage"]
    assert through.header("x-tollgate-model") == "gpt-4o-mini-2024-07-18"
    assert through.header("x-tollgate-input-tokens") == str(usage["prompt_tokens"])
    assert through.header("x-tollgate-output-tokens") == str(usage["completion_tokens"])
    expected = usage["prompt_tokens"] * INPUT_PICO_USD + usage["completion_tokens"] * OUTPUT_PICO_USD
    assert through.header("x-tollgate-cost-usd") == usd(expected)


def test_configured_prices_take_precedence_over_the_built_in_table(start_envoy):
    proxy = start_envoy({"prices": {"gpt-4o-mini": {"input": 0.1, "output": "0.2"},
                                    "my-llama": {"input": 0, "output": 0}}})
    response = post(proxy.port, PATH, CHAT)
    usage = response.json()["usage"]
    # The override covers the served snapshot gpt-4o-mini-2024-07-18 too, to the pico-dollar.
    assert response.header("x-tollgate-model") == "gpt-4o-mini-2024-07-18"
    assert response.header("x-tollgate-cost-usd") == usd(usage["prompt_tokens"] * 100_000
                                                         + usage["completion_tokens"] * 200_000)
    # Zero is a price (self-hosted), not "unpriced".
    free = post(proxy.port, PATH, CHAT, headers={"x-mock-served-model": "my-llama"})
    assert free.header("x-tollgate-model") == "my-llama"
    assert free.header("x-tollgate-cost-usd") == "0.0"


def test_streaming_response_passes_unbuffered_and_unchanged(envoy, mock):
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    slow = {"content-type": "application/json", "x-mock-chunk-delay-ms": "150"}
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=30)
    started = time.monotonic()
    conn.request("POST", PATH, body=json.dumps(request), headers=slow)
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("x-tollgate-cost-usd") is None
    first = response.readline()
    first_at = time.monotonic() - started
    rest = response.read()
    total = time.monotonic() - started
    conn.close()

    assert first.startswith(b"data: ")
    # The mock waits 150 ms between events; a buffering filter would hold the first one to the end.
    assert total - first_at > 0.5, f"first event at {first_at:.3f}s, end at {total:.3f}s"
    direct = post(mock.port, PATH, request)
    stream, summary = split_cost_comment(first + rest)
    assert stream == direct.body, "every byte of the stream as the provider sent it"
    usage = [json.loads(line[6:]) for line in direct.body.split(b"\n") if line.startswith(b"data: {")][-1]["usage"]
    assert summary["input_tokens"] == usage["prompt_tokens"]
    assert summary["output_tokens"] == usage["completion_tokens"]
    assert float(summary["cost_usd"]) > 0


def test_openai_sdk_non_streaming(envoy):
    client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-tollgate-model"] == completion.model
    assert raw.headers["x-tollgate-output-tokens"] == str(completion.usage.completion_tokens)
    assert float(raw.headers["x-tollgate-cost-usd"]) > 0


def test_openai_sdk_streaming_with_usage(envoy, mock):
    client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0)
    stream = client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    direct = openai.OpenAI(base_url=f"http://127.0.0.1:{mock.port}/v1", api_key="sk-test", max_retries=0)
    expected = direct.chat.completions.create(**CHAT)
    assert text == expected.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens


def test_openai_sdk_raises_a_clean_error_for_a_rejected_request(envoy):
    client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=["not", "a", "string"], messages=[])
    assert raised.value.status_code == 400
    assert raised.value.body["param"] == "model"


def test_other_paths_pass_through(envoy, mock):
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    conn.request("GET", "/v1/models")
    response = conn.getresponse()
    assert response.status == 200
    assert b'"object"' in response.read()
    assert response.getheader("x-tollgate-model") is None
    conn.close()


def test_http2_clients_also_get_the_streams_cost_as_trailers(envoy):
    """Envoy over HTTP/2 (h2c here) can carry trailers; curl prints them after the body."""
    request = json.dumps({**CHAT, "stream": True})
    result = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-D", "/dev/stderr", "-o", "/dev/null",
         "-H", "content-type: application/json", "--data", request, f"http://127.0.0.1:{envoy.port}{PATH}"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    headers = result.stderr.lower()
    assert "http/2 200" in headers
    assert "x-tollgate-cost-usd: 0.0" in headers, headers
    assert "x-tollgate-output-tokens:" in headers
