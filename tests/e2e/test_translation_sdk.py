"""The official SDKs parse what the translation module produces.

Each test runs `tollgate translate` (the module's debugging command) on a committed fixture and
serves the output from a local HTTP server, in small chunks, to the real `openai` or `anthropic`
client, which parses it with its own models and stream classes: `ChatCompletion`,
`ChatCompletionChunk` and the `chat.completions.stream()` accumulator; `Message`, the
`RawMessageStreamEvent` types and the `messages.stream()` accumulator. Errors must raise the SDK's
usual exceptions. The last tests run whole exchanges: SDK → request translated → the mock
provider of the other API → answer translated back → SDK.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import openai
import pytest
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from harness import release_binary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CREATED = 1753982400
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def translate(source: str, target: str, data: bytes, *options: str) -> tuple[bytes, str]:
    """Runs `tollgate translate`; returns its stdout and stderr."""
    done = subprocess.run(
        [str(release_binary("tollgate")), "translate", "--from", source, "--to", target, *options],
        input=data,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout, done.stderr.decode()


def translate_fixture(source: str, target: str, fixture: str, *options: str) -> bytes:
    return translate(source, target, (FIXTURES / fixture).read_bytes(), *options)[0]


class Canned:
    """A local HTTP server answering every POST with one prepared response, written in small
    chunks so that the SDKs' SSE decoders see events split across reads."""

    def __init__(self):
        self.status, self.content_type, self.body = 200, "application/json", b"{}"
        self.requests: list[dict] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                canned.requests.append(json.loads(self.rfile.read(length) or b"null"))
                status, content_type, body = canned.respond(canned.requests[-1], self.headers)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), 61):
                    self.wfile.write(body[start : start + 61])
                    self.wfile.flush()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def respond(self, request: dict, headers) -> tuple[int, str, bytes]:
        return self.status, self.content_type, self.body

    def answer(self, body: bytes, status: int = 200, stream: bool = False) -> None:
        self.status, self.body = status, body
        self.content_type = "text/event-stream" if stream else "application/json"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    canned = Canned()
    yield canned
    canned.stop()


def openai_client(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)


def anthropic_client(port: int) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="sk-test", max_retries=0)


ASK_OPENAI = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather in Paris and Zürich?"}]}
ASK_ANTHROPIC = {"model": "claude-haiku-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Weather?"}]}


# ---- Anthropic answers, OpenAI clients ----


def test_the_openai_sdk_parses_a_translated_anthropic_response_with_tool_calls(server):
    server.answer(translate_fixture("anthropic-response", "openai-chat-response", "translate/anthropic_response.json",
                                    "--created", str(CREATED)))
    completion = openai_client(server.port).chat.completions.create(**ASK_OPENAI)
    assert isinstance(completion, ChatCompletion)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather in Zürich and Paris — one moment ☕."
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "Zürich, Switzerland"}),
        ("toolu_01Ab2CdEfGhIjKlMnOpQrStU", "get_weather", {"location": "Paris, France", "unit": "celsius"}),
    ]
    assert completion.id == "chatcmpl-01XFDUDYJgAACzvnptvVoYEL"
    assert completion.created == CREATED
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1496, 89)
    assert completion.usage.prompt_tokens_details.cached_tokens == 1024


def test_the_openai_sdk_streams_a_translated_anthropic_stream_chunk_by_chunk(server):
    server.answer(translate_fixture("anthropic-stream", "openai-chat-stream", "translate/anthropic_stream_tools.sse",
                                    "--include-usage", "--created", str(CREATED)), stream=True)
    chunks = list(openai_client(server.port).chat.completions.create(
        **ASK_OPENAI, tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True}))
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I'll check the weather in Paris and Zürich — one moment ☕."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1496


def test_the_openai_stream_helper_accumulates_translated_tool_calls(server):
    server.answer(translate_fixture("anthropic-stream", "openai-chat-stream", "translate/anthropic_stream_tools.sse",
                                    "--include-usage"), stream=True)
    with openai_client(server.port).chat.completions.stream(
            **ASK_OPENAI, tools=[WEATHER_TOOL], stream_options={"include_usage": True}) as stream:
        events = [event.type for event in stream]
        completion = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    message = completion.choices[0].message
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        {"location": "Paris, France", "unit": "celsius"},
        {"location": "Zürich, Switzerland"},
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage.completion_tokens == 89


def test_the_openai_sdk_streams_a_plain_translated_anthropic_stream(server):
    server.answer(translate_fixture("anthropic-stream", "openai-chat-stream", "anthropic/messages_stream.sse"), stream=True)
    chunks = list(openai_client(server.port).chat.completions.create(**ASK_OPENAI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "An API gateway routes, secures and meters calls."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_an_anthropic_error_event_mid_stream_raises_the_openai_sdks_api_error(server):
    server.answer(translate_fixture("anthropic-stream", "openai-chat-stream", "translate/anthropic_stream_error.sse"),
                  stream=True)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in openai_client(server.port).chat.completions.create(**ASK_OPENAI, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Once upon", "what came before the error was delivered"
    assert raised.value.message == "Overloaded"
    assert raised.value.body == {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}


def test_a_stream_cut_short_raises_instead_of_ending_quietly(server):
    stream = (FIXTURES / "translate/anthropic_stream_tools.sse").read_bytes()
    server.answer(translate("anthropic-stream", "openai-chat-stream", stream[: len(stream) // 2])[0], stream=True)
    with pytest.raises(openai.APIError, match="ended before its final event"):
        list(openai_client(server.port).chat.completions.create(**ASK_OPENAI, stream=True))


@pytest.mark.parametrize("status, exception, retried_by_sdk", [
    (529, openai.InternalServerError, True),
    (429, openai.RateLimitError, True),
    (401, openai.AuthenticationError, False),
])
def test_anthropic_error_responses_raise_the_openai_sdks_usual_exceptions(server, status, exception, retried_by_sdk):
    anthropic_body = {"type": "error", "error": {"type": {529: "overloaded_error", 429: "rate_limit_error",
                                                          401: "authentication_error"}[status], "message": "No."}}
    body, stderr = translate("anthropic-error", "openai-error", json.dumps(anthropic_body).encode(), "--status", str(status))
    client_status = int(stderr.split("status: ")[1])
    assert client_status == (503 if status == 529 else status)
    server.answer(body, status=client_status)
    with pytest.raises(exception) as raised:
        openai_client(server.port).chat.completions.create(**ASK_OPENAI)
    assert raised.value.status_code == client_status
    assert raised.value.body["message"] == "No."
    assert raised.value.body["type"] == anthropic_body["error"]["type"]
    assert openai_client(server.port)._should_retry(raised.value.response) is retried_by_sdk


# ---- OpenAI answers, Anthropic clients ----


def test_the_anthropic_sdk_parses_a_translated_openai_response_with_tool_use(server):
    server.answer(translate_fixture("openai-chat-response", "anthropic-response", "translate/openai_response.json"))
    message = anthropic_client(server.port).messages.create(**ASK_ANTHROPIC)
    assert isinstance(message, Message)
    assert message.stop_reason == "tool_use"
    assert message.content[0].text == "Checking both cities — Zürich first ☕."
    assert [(b.id, b.name, b.input) for b in message.content[1:]] == [
        ("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", {"location": "Zürich, Switzerland"}),
        ("call_7Hs2mVb1QeR8nLk0PzXw4tYu", "get_weather", {"location": "Paris, France", "unit": "celsius"}),
    ]
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (56, 256, 61)


def test_the_anthropic_sdk_streams_typed_events_from_a_translated_openai_stream(server):
    server.answer(translate_fixture("openai-chat-stream", "anthropic-stream", "translate/openai_stream_tools.sse"),
                  stream=True)
    events = list(anthropic_client(server.port).messages.create(**ASK_ANTHROPIC, stream=True))
    kinds = [type(event) for event in events]
    assert kinds[0] is RawMessageStartEvent and kinds[-2:] == [RawMessageDeltaEvent, RawMessageStopEvent]
    assert set(kinds[1:-2]) == {RawContentBlockStartEvent, RawContentBlockDeltaEvent, RawContentBlockStopEvent}
    assert events[-2].delta.stop_reason == "tool_use"


def test_the_anthropic_stream_helper_accumulates_translated_tool_use(server):
    server.answer(translate_fixture("openai-chat-stream", "anthropic-stream", "translate/openai_stream_tools.sse"),
                  stream=True)
    with anthropic_client(server.port).messages.stream(**ASK_ANTHROPIC) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text == "Checking both cities — Zürich first ☕."
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [
        ("text", None),
        ("tool_use", {"location": "Zürich, Switzerland"}),
        ("tool_use", {"location": "Paris, France", "unit": "celsius"}),
    ]
    assert message.id == "msg_C3pQx7Yt2u9J2WbX8hQvB3xYzA"
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (56, 256, 61)


def test_the_anthropic_sdk_streams_a_plain_translated_openai_stream(server):
    server.answer(translate_fixture("openai-chat-stream", "anthropic-stream", "openai/chat_stream.sse"), stream=True)
    with anthropic_client(server.port).messages.stream(**ASK_ANTHROPIC) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "An API gateway routes calls."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 41 and message.usage.output_tokens == 6


def test_an_openai_error_chunk_mid_stream_raises_the_anthropic_sdks_error(server):
    server.answer(translate_fixture("openai-chat-stream", "anthropic-stream", "translate/openai_stream_error.sse"),
                  stream=True)
    with pytest.raises(anthropic.APIStatusError) as raised:
        with anthropic_client(server.port).messages.stream(**ASK_ANTHROPIC) as stream:
            for _ in stream:
                pass
    assert raised.value.body["error"] == {
        "type": "api_error", "message": "The server had an error while processing your request. Sorry about that!"}


@pytest.mark.parametrize("status, exception", [
    (503, anthropic.OverloadedError),
    (429, anthropic.RateLimitError),
    (400, anthropic.BadRequestError),
])
def test_openai_error_responses_raise_the_anthropic_sdks_usual_exceptions(server, status, exception):
    body, stderr = translate("openai-error", "anthropic-error", (FIXTURES / "translate/openai_error.json").read_bytes(),
                             "--status", str(status))
    client_status = int(stderr.split("status: ")[1])
    assert client_status == (529 if status == 503 else status)
    server.answer(body, status=client_status)
    with pytest.raises(exception) as raised:
        anthropic_client(server.port).messages.create(**ASK_ANTHROPIC)
    assert raised.value.status_code == client_status
    assert "Rate limit reached for gpt-4o" in raised.value.message


# ---- whole exchanges through the mock provider ----


class TranslatingGateway(Canned):
    """What the filter will do once wired in, done with `tollgate translate`: translate the
    client's request, forward it to the mock provider of the other API, translate the answer."""

    def __init__(self, upstream_port: int, client_api: str):
        super().__init__()
        self.upstream_port, self.client_api = upstream_port, client_api
        self.upstream_requests: list[dict] = []

    def respond(self, request: dict, headers) -> tuple[int, str, bytes]:
        stream = bool(request.get("stream"))
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        if self.client_api == "openai":
            kinds = ("openai-chat-request", "anthropic-request", "/v1/messages", "anthropic", "openai-chat")
            model = "claude-haiku-4-5"
        else:
            kinds = ("anthropic-request", "openai-chat-request", "/v1/chat/completions", "openai-chat", "anthropic")
            model = "gpt-4o-mini"
        source, target, path, upstream, client = kinds
        upstream_body, _ = translate(source, target, json.dumps(request).encode(), "--model", model)
        self.upstream_requests.append(json.loads(upstream_body))
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        # The mock's fault headers pass through, so tests can make the provider fail.
        faults = {k: v for k, v in headers.items() if k.lower().startswith("x-mock-")}
        conn.request("POST", path, upstream_body, {"content-type": "application/json", **faults})
        response = conn.getresponse()
        answer = response.read()
        conn.close()
        if response.status != 200:
            body, stderr = translate(f"{upstream}-error".replace("-chat", ""), f"{client}-error".replace("-chat", ""),
                                     answer, "--status", str(response.status))
            return int(stderr.split("status: ")[1]), "application/json", body
        kind = "stream" if stream else "response"
        options = ["--include-usage"] if include_usage else []
        body, _ = translate(f"{upstream}-{kind}", f"{client}-{kind}", answer, "--created", str(CREATED), *options)
        return 200, "text/event-stream" if stream else "application/json", body


def test_an_openai_client_is_served_by_an_anthropic_provider_with_tools(mock):
    gateway = TranslatingGateway(mock.port, "openai")
    try:
        client = openai_client(gateway.port)
        completion = client.chat.completions.create(**ASK_OPENAI, tools=[WEATHER_TOOL], tool_choice="required")
        call = completion.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and "location" in json.loads(call.function.arguments)
        assert completion.choices[0].finish_reason == "tool_calls"
        sent = gateway.upstream_requests[-1]
        assert sent["tool_choice"] == {"type": "any"} and sent["tools"][0]["input_schema"]["required"] == ["location"]

        with client.chat.completions.stream(**ASK_OPENAI, max_completion_tokens=200,
                                            stream_options={"include_usage": True}) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content
        assert final.usage.completion_tokens > 0
        assert gateway.upstream_requests[-1]["max_tokens"] == 200
        assert "stream_options" not in gateway.upstream_requests[-1]
    finally:
        gateway.stop()


def test_an_anthropic_client_is_served_by_an_openai_provider_with_tools(mock):
    gateway = TranslatingGateway(mock.port, "anthropic")
    try:
        client = anthropic_client(gateway.port)
        tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
        message = client.messages.create(**ASK_ANTHROPIC, tools=[tool], tool_choice={"type": "any"})
        assert message.stop_reason == "tool_use"
        assert message.content[-1].type == "tool_use" and "location" in message.content[-1].input

        with client.messages.stream(**ASK_ANTHROPIC, tools=[tool], tool_choice={"type": "tool", "name": "get_weather"}) as stream:
            final = stream.get_final_message()
        assert final.stop_reason == "tool_use" and "location" in final.content[-1].input
        assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0, "usage came from the include_usage chunk"
        assert gateway.upstream_requests[-1]["stream_options"] == {"include_usage": True}
    finally:
        gateway.stop()


@pytest.mark.parametrize("client_api, fault, exception, client_status", [
    ("openai", "529", openai.InternalServerError, 503),
    ("openai", "429", openai.RateLimitError, 429),
    ("anthropic", "503", anthropic.OverloadedError, 529),
    ("anthropic", "429", anthropic.RateLimitError, 429),
])
def test_a_provider_error_reaches_the_client_as_its_own_sdks_exception(mock, client_api, fault, exception, client_status):
    gateway = TranslatingGateway(mock.port, client_api)
    try:
        headers = {"x-mock-status": fault}
        with pytest.raises(exception) as raised:
            if client_api == "openai":
                openai_client(gateway.port).chat.completions.create(**ASK_OPENAI, extra_headers=headers)
            else:
                anthropic_client(gateway.port).messages.create(**ASK_ANTHROPIC, extra_headers=headers)
        assert raised.value.status_code == client_status
    finally:
        gateway.stop()
