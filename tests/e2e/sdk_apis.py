"""The official SDKs as clients of each API the filter reads, behind one small interface, and the
oracles the SDK tests compare with (test_apis_sdk.py, test_multilingual_streams.py).

- `ChatApi`, `ResponsesApi`, `MessagesApi`: ask, stream and call a tool the way an application
  does with the `openai` and `anthropic` packages, so their parsers and stream accumulators
  (`chat.completions.stream`, `responses.stream`, `messages.stream`) read every answer.
- `Recorder`: an HTTP transport for the SDKs that keeps the raw bytes of the last answer, for
  what SDKs skip on purpose: Tollgate's `: tollgate {…}` cost comment at the end of a stream.
- `LITELLM`: USD per token from LiteLLM's own costs (tests/fixtures/pricing/litellm_costs.json,
  written by LiteLLM), for the expected cost of what the mock reported (`mock_usage`).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx2  # the HTTP client the pinned SDKs are built on
import openai

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ECHO = {"x-mock-reply": "echo"}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
    "required": ["city", "days"],
}


# --- Raw bytes under the SDKs --------------------------------------------------------------------


class _Tee(httpx2.SyncByteStream):
    """A response body that copies what is read into `sink`. On close it reads the rest too: the
    OpenAI SDK stops at `data: [DONE]`, and what follows is what a raw client would still get."""

    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray):
        self.inner, self.sink = inner, sink
        self.chunks = iter(inner)

    def __iter__(self):
        for chunk in self.chunks:
            self.sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        for chunk in self.chunks:
            self.sink.extend(chunk)
        self.inner.close()


class Recorder(httpx2.HTTPTransport):
    """The SDKs' transport, keeping the body of the last response in `body`."""

    def __init__(self):
        super().__init__()
        self.body = bytearray()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        self.body = bytearray()
        response.stream = _Tee(response.stream, self.body)
        return response


def http_client(recorder: Recorder | None) -> httpx2.Client | None:
    return httpx2.Client(transport=recorder, timeout=30) if recorder else None


# --- What the provider reported, and what LiteLLM says it costs -----------------------------------


def mock_usage(mock, reset: bool = False) -> dict:
    """The mock's `/_mock/usage` tally (`DELETE` with `reset`): what it reported, by model."""
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
    try:
        conn.request("DELETE" if reset else "GET", "/_mock/usage")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def only_answer(tally: dict) -> dict:
    """The one answer of a tally reset before a single request: model, input and output tokens."""
    rows = tally["by_usage"]
    assert len(rows) == 1 and rows[0]["answers"] == 1, rows
    return rows[0]


PICO = Decimal("1e-12")


def _per_token(usd: str, tokens: int) -> Decimal:
    # LiteLLM's costs are floats (0.0045000000000000005); prices are whole pico-USD per token.
    return (Decimal(usd) / tokens).quantize(PICO)


@dataclass(frozen=True)
class Rates:
    """USD per token."""

    input: Decimal
    output: Decimal
    cached: Decimal | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Decimal:
        cached = cached_tokens * (self.cached if cached_tokens else 0)
        return (input_tokens - cached_tokens) * self.input + cached + output_tokens * self.output


def _litellm_rates() -> dict[str, Rates]:
    published = json.loads((FIXTURES / "pricing" / "litellm_costs.json").read_text())
    cases = {case["name"]: case for case in published["cases"]}

    def plain(name: str, input_key: str, output_key: str) -> tuple[Decimal, Decimal]:
        case = cases[name]
        usage, costs = case["usage"], case["litellm"]
        output = _per_token(costs["completion_cost_usd"], usage[output_key]) if usage[output_key] else Decimal(0)
        return _per_token(costs["prompt_cost_usd"], usage[input_key]), output

    mini_in, mini_out = plain("openai gpt-4o-mini snapshot", "prompt_tokens", "completion_tokens")
    # The cache-read price: what LiteLLM charged for the cached case's prompt beyond its uncached part.
    cached_case = cases["openai gpt-4o-mini cached"]
    cached = cached_case["usage"]["prompt_tokens_details"]["cached_tokens"]
    uncached_cost = (cached_case["usage"]["prompt_tokens"] - cached) * mini_in
    mini_cached = _per_token(str(Decimal(cached_case["litellm"]["prompt_cost_usd"]) - uncached_cost), cached)
    haiku = cases["anthropic haiku-4.5 snapshot"]
    haiku_in, haiku_read = _input_and_cache_read(cases["anthropic prefixed model"], haiku)
    haiku_out = _per_token(haiku["litellm"]["completion_cost_usd"], haiku["usage"]["output_tokens"])
    embedding_in, _ = plain("openai embedding", "prompt_tokens", "completion_tokens")
    return {
        "gpt-4o-mini-2024-07-18": Rates(mini_in, mini_out, mini_cached),
        "claude-haiku-4-5": Rates(haiku_in, haiku_out, haiku_read),
        "text-embedding-3-small": Rates(embedding_in, Decimal(0)),
    }


def _input_and_cache_read(first: dict, second: dict) -> tuple[Decimal, Decimal]:
    """Anthropic's input and cache-read prices from two LiteLLM cases of one model that both read
    the cache: two equations (input × uncached + read × cached = prompt cost), two unknowns."""
    (a1, b1, c1), (a2, b2, c2) = (
        (usage["input_tokens"], usage["cache_read_input_tokens"], Decimal(case["litellm"]["prompt_cost_usd"]))
        for case in (first, second)
        for usage in [case["usage"]]
    )
    determinant = a1 * b2 - a2 * b1
    return ((c1 * b2 - c2 * b1) / determinant).quantize(PICO), ((a1 * c2 - a2 * c1) / determinant).quantize(PICO)


LITELLM = _litellm_rates()


def expected_cost(answer: dict, cached_tokens: int = 0) -> Decimal:
    """What LiteLLM's prices make of one answer of the tally."""
    return LITELLM[answer["model"]].cost(answer["input_tokens"], answer["output_tokens"], cached_tokens)


# --- The three generating APIs, as an application calls them -------------------------------------


@dataclass
class ToolUse:
    name: str
    arguments: dict


class ChatApi:
    """OpenAI Chat Completions with the `openai` SDK."""

    name = "chat"
    model = "gpt-4o-mini"
    refused = openai.UnprocessableEntityError

    def __init__(self, base_url: str, recorder: Recorder | None = None):
        self.client = openai.OpenAI(
            base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0, http_client=http_client(recorder)
        )

    def ask(self, prompt: str, headers: dict | None = None) -> tuple[str, dict]:
        raw = self.client.chat.completions.with_raw_response.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], extra_headers=headers
        )
        return raw.parse().choices[0].message.content, dict(raw.headers)

    def stream(self, prompt: str, headers: dict | None = None) -> str:
        chunks = list(
            self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], stream=True, extra_headers=headers
            )
        )
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert all(chunk.choices for chunk in chunks), "no usage chunk the client did not ask for"
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks)

    def call_tool(self, stream: bool) -> ToolUse:
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
        request = {"model": self.model, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": tools}
        if stream:
            with self.client.chat.completions.stream(**request) as events:
                message = events.get_final_completion().choices[0].message
        else:
            message = self.client.chat.completions.create(**request).choices[0].message
        call = message.tool_calls[0].function
        return ToolUse(call.name, json.loads(call.arguments))

    @staticmethod
    def sent_text(body: dict) -> str:
        return body["messages"][-1]["content"]


class ResponsesApi:
    """OpenAI Responses with the `openai` SDK; streams through its `responses.stream` accumulator."""

    name = "responses"
    model = "gpt-4o-mini"
    refused = openai.UnprocessableEntityError

    def __init__(self, base_url: str, recorder: Recorder | None = None):
        self.client = openai.OpenAI(
            base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0, http_client=http_client(recorder)
        )

    def ask(self, prompt: str, headers: dict | None = None) -> tuple[str, dict]:
        raw = self.client.responses.with_raw_response.create(model=self.model, input=prompt, extra_headers=headers)
        response = raw.parse()
        assert response.status == "completed"
        return response.output_text, dict(raw.headers)

    def stream(self, prompt: str, headers: dict | None = None) -> str:
        with self.client.responses.stream(model=self.model, input=prompt, extra_headers=headers) as events:
            deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
            response = events.get_final_response()
        assert response.status == "completed"
        assert response.output_text == deltas, "the completed response holds what the deltas said"
        return response.output_text

    def call_tool(self, stream: bool) -> ToolUse:
        tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False}]
        request = {"model": self.model, "input": "Weather in Paris?", "tools": tools}
        if stream:
            with self.client.responses.stream(**request) as events:
                item = events.get_final_response().output[0]
        else:
            item = self.client.responses.create(**request).output[0]
        assert item.type == "function_call"
        return ToolUse(item.name, json.loads(item.arguments))

    @staticmethod
    def sent_text(body: dict) -> str:
        return body["input"]


class MessagesApi:
    """Anthropic Messages with the `anthropic` SDK; streams through its `messages.stream` accumulator."""

    name = "messages"
    model = "claude-haiku-4-5"
    refused = anthropic.UnprocessableEntityError

    def __init__(self, base_url: str, recorder: Recorder | None = None):
        self.client = anthropic.Anthropic(
            base_url=base_url, api_key="sk-ant-test", max_retries=0, http_client=http_client(recorder)
        )

    def ask(self, prompt: str, headers: dict | None = None) -> tuple[str, dict]:
        raw = self.client.messages.with_raw_response.create(
            model=self.model, max_tokens=1024, messages=[{"role": "user", "content": prompt}], extra_headers=headers
        )
        return "".join(block.text for block in raw.parse().content), dict(raw.headers)

    def stream(self, prompt: str, headers: dict | None = None) -> str:
        with self.client.messages.stream(
            model=self.model, max_tokens=1024, messages=[{"role": "user", "content": prompt}], extra_headers=headers
        ) as events:
            message = events.get_final_message()
        assert message.stop_reason == "end_turn"
        return "".join(block.text for block in message.content)

    def call_tool(self, stream: bool) -> ToolUse:
        tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
        request = {
            "model": self.model,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": tools,
        }
        if stream:
            with self.client.messages.stream(**request) as events:
                block = events.get_final_message().content[0]
        else:
            block = self.client.messages.create(**request).content[0]
        assert block.type == "tool_use"
        return ToolUse(block.name, block.input)

    @staticmethod
    def sent_text(body: dict) -> str:
        return body["messages"][-1]["content"]


GENERATING_APIS = [ChatApi, ResponsesApi, MessagesApi]
