"""Cross-dialect serving through the real Envoy and envoy/envoy.yaml's policy: the official
OpenAI SDK asking for `smart` is served by the Anthropic provider, and the official Anthropic SDK
asking for `fast` by the OpenAI provider; both parse every answer, tool calls included."""

import anthropic
import openai
import pytest


WEATHER_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
WEATHER_ANTHROPIC = [{"name": "get_weather", "description": "Weather for a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def openai_client(routed):
    return openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="sk-client", max_retries=0)


@pytest.fixture
def anthropic_client(routed):
    return anthropic.Anthropic(base_url=routed.base_url, api_key="sk-ant-client", max_retries=0)


def test_openai_sdk_gets_a_completion_from_anthropic(openai_client):
    raw = openai_client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, max_tokens=12)
    completion = raw.parse()
    assert raw.headers["x-mock-name"] == "anthropic"
    assert raw.headers["x-tollgate-provider"] == "anthropic"
    assert completion.model.startswith("claude-haiku-4-5")
    assert completion.choices[0].message.content.startswith("This is a deterministic reply")
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 12
    assert raw.headers["x-tollgate-output-tokens"] == "12"


def test_openai_sdk_streams_from_anthropic(openai_client):
    chunks = list(openai_client.chat.completions.create(
        model="smart", messages=MESSAGES, max_tokens=8, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("This is a deterministic")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage.completion_tokens == 8


def test_openai_sdk_tool_calls_come_back_from_anthropic(openai_client):
    completion = openai_client.chat.completions.create(model="smart", messages=MESSAGES, tools=WEATHER_OPENAI)
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert call.function.arguments.replace(" ", "") == '{"city":"mock"}'
    with openai_client.chat.completions.stream(model="smart", messages=MESSAGES, tools=WEATHER_OPENAI) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_anthropic_sdk_gets_a_message_from_openai(anthropic_client):
    raw = anthropic_client.messages.with_raw_response.create(model="fast", max_tokens=10, messages=MESSAGES)
    message = raw.parse()
    assert raw.headers["x-mock-name"] == "openai"
    assert message.content[0].text.startswith("This is a deterministic reply")
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 10


def test_anthropic_sdk_streams_and_calls_tools_through_openai(anthropic_client):
    with anthropic_client.messages.stream(model="fast", max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("This is a deterministic")
    assert final.usage.output_tokens > 0
    with anthropic_client.messages.stream(model="fast", max_tokens=64, messages=MESSAGES, tools=WEATHER_ANTHROPIC) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool = next(block for block in final.content if block.type == "tool_use")
    assert (tool.name, tool.input) == ("get_weather", {"city": "mock"})


def test_provider_errors_are_raised_by_the_clients_own_sdk(routed):
    client = openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="sk-client", max_retries=0,
                           default_headers={"x-mock-status": "529"})
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="smart", messages=MESSAGES)
    assert raised.value.status_code == 503
    client = anthropic.Anthropic(base_url=routed.base_url, api_key="sk-ant-client", max_retries=0,
                                 default_headers={"x-mock-status": "429"})
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="fast", max_tokens=5, messages=MESSAGES)


def dialect_headers(seen, prefix):
    return sorted(name for name in seen["headers"] if name.lower().startswith(prefix))


def test_the_openai_sdks_own_headers_and_query_do_not_reach_anthropic(routed, providers):
    """The OpenAI SDK sends `openai-organization` / `openai-project` (from `organization=` and
    `project=`) and here an Azure-style `api-version` query: Anthropic's API has neither, so the
    translated request leaves without them, with the `anthropic-version` Anthropic requires."""
    from conftest import mock_last

    client = openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="sk-client", max_retries=0,
                           organization="org-e2e", project="proj-e2e", default_query={"api-version": "2024-10-21"})
    client.chat.completions.create(model="smart", messages=MESSAGES, max_tokens=8)
    seen = mock_last(providers["anthropic"])
    assert seen["path"] == "/v1/messages"
    assert dialect_headers(seen, "openai-") == []
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    # To a provider of the client's own dialect, both go on as the SDK sent them.
    client.chat.completions.create(model="fast", messages=MESSAGES, max_tokens=8)
    seen = mock_last(providers["openai"])
    assert seen["path"] == "/v1/chat/completions?api-version=2024-10-21"
    assert (seen["headers"]["openai-organization"], seen["headers"]["openai-project"]) == ("org-e2e", "proj-e2e")


def test_the_anthropic_sdks_beta_headers_and_query_do_not_reach_openai(routed, providers):
    """The Anthropic SDK sends `anthropic-version` always and `anthropic-beta` for betas, and beta
    calls have carried `?beta=true` (this SDK release keeps it off the wire: it is given here as
    an extra query): an OpenAI-compatible server gets none of them."""
    from conftest import mock_last

    client = anthropic.Anthropic(base_url=routed.base_url, api_key="sk-ant-client", max_retries=0)
    message = client.beta.messages.create(model="fast", max_tokens=8, messages=MESSAGES,
                                          betas=["prompt-caching-2024-07-31"], extra_query={"beta": "true"})
    assert message.content[0].type == "text"
    seen = mock_last(providers["openai"])
    assert seen["path"] == "/v1/chat/completions"
    assert dialect_headers(seen, "anthropic-") == []
    # Toward Anthropic itself the beta query and header are Anthropic's own, and go on.
    client.beta.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES,
                                betas=["prompt-caching-2024-07-31"], extra_query={"beta": "true"})
    seen = mock_last(providers["anthropic"])
    assert seen["path"] == "/v1/messages?beta=true"
    assert seen["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
