"""Every API the filter claims, through a real Envoy with the shipped envoy/envoy.yaml (its
`privacy` guardrails on every route), against the mock provider, spoken by the official SDKs:
OpenAI Chat Completions, Responses and Embeddings with `openai`, Anthropic Messages with
`anthropic` (clients in sdk_apis.py).

Oracles from outside the filter: the SDKs' parsers and stream accumulators; identity (the mock
echoes the prompt, so the client must get back exactly what it sent); the provider's side, read
from the mock (`/_mock/last`: what it received; `/_mock/usage`: what it reported) or asked
directly without Envoy; the tool's JSON schema; LiteLLM's published prices for the cost.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import jsonschema
import openai
import pytest
import yaml

import conftest
from conftest import mock_last, split_cost_comment
from harness import ENVOY_CONFIG, Envoy
from sdk_apis import (
    ECHO,
    GENERATING_APIS,
    LITELLM,
    WEATHER_SCHEMA,
    MessagesApi,
    Recorder,
    expected_cost,
    mock_usage,
    only_answer,
)

RUN = uuid.uuid4().hex
# Random-looking, so the openai_key detector takes it (placeholders such as sk-test are not keys).
SECRET = f"sk-proj-{RUN}{RUN[:8].upper()}Zq"
EMAIL = f"ana.{RUN[:8]}@example.com"
conftest.GUARDRAIL_MATCHES.append(SECRET)

apis = pytest.mark.parametrize("api", GENERATING_APIS, ids=lambda api: api.name)


def through(envoy, api, recorder=None):
    return api(envoy.base_url, recorder)


def direct(mock, api):
    """The same client talking to the mock provider without Envoy: what the provider says."""
    return api(f"http://127.0.0.1:{mock.port}")


# --- Plain answers, their cost in headers --------------------------------------------------------


@apis
def test_an_answer_reaches_the_sdk_as_the_provider_sent_it_with_litellms_cost(envoy, mock, api):
    prompt = "Say hello to the gateway."
    expected_text, _ = direct(mock, api).ask(prompt)
    mock_usage(mock, reset=True)
    text, headers = through(envoy, api).ask(prompt)
    assert text == expected_text
    answer = only_answer(mock_usage(mock))
    assert headers["x-tollgate-model"] == answer["model"]
    assert headers["x-tollgate-input-tokens"] == str(answer["input_tokens"])
    assert headers["x-tollgate-output-tokens"] == str(answer["output_tokens"])
    assert Decimal(headers["x-tollgate-cost-usd"]) == expected_cost(answer)


def test_responses_cached_and_reasoning_tokens_are_billed_as_litellm_bills_them(envoy, mock):
    client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0)
    usage_knobs = {"x-mock-cached-tokens": "4", "x-mock-reasoning-tokens": "30"}
    mock_usage(mock, reset=True)
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="Say hello to the gateway.", extra_headers=usage_knobs
    )
    usage = raw.parse().usage
    assert (usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (4, 30)
    answer = only_answer(mock_usage(mock))
    assert (answer["input_tokens"], answer["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    # gpt-4o-mini has no reasoning price: LiteLLM bills reasoning tokens as output.
    assert Decimal(raw.headers["x-tollgate-cost-usd"]) == expected_cost(answer, cached_tokens=4)
    assert raw.headers["x-tollgate-cached-input-tokens"] == "4"
    assert raw.headers["x-tollgate-reasoning-tokens"] == "30"


def test_anthropic_cache_reads_are_billed_as_litellm_bills_them(envoy, mock):
    client = MessagesApi(envoy.base_url).client
    mock_usage(mock, reset=True)
    raw = client.messages.with_raw_response.create(
        model=MessagesApi.model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello to the gateway."}],
        extra_headers={"x-mock-cache-read-tokens": "1200"},
    )
    assert raw.parse().usage.cache_read_input_tokens == 1200
    # The tally counts every prompt token: Anthropic's input_tokens plus the cache reads.
    answer = only_answer(mock_usage(mock))
    assert Decimal(raw.headers["x-tollgate-cost-usd"]) == expected_cost(answer, cached_tokens=1200)
    assert raw.headers["x-tollgate-cached-input-tokens"] == "1200"


# --- Streams, parsed by the SDKs, their cost in the closing comment ------------------------------


@apis
def test_a_stream_reaches_the_sdk_whole_and_ends_with_litellms_cost(envoy, mock, api):
    prompt = "Stream this sentence back, word by word, please."
    recorder = Recorder()
    mock_usage(mock, reset=True)
    assert through(envoy, api, recorder).stream(prompt, {**ECHO, "x-mock-delta-bytes": "4"}) == prompt
    _, summary = split_cost_comment(bytes(recorder.body))
    answer = only_answer(mock_usage(mock))
    assert (summary["input_tokens"], summary["output_tokens"]) == (answer["input_tokens"], answer["output_tokens"])
    assert summary["model"] == answer["model"]
    assert Decimal(summary["cost_usd"]) == expected_cost(answer)


def test_responses_stream_events_parse_as_the_sdks_types(envoy, mock):
    client = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key="sk-test", max_retries=0)
    mock_usage(mock, reset=True)
    events = list(client.responses.create(model="gpt-4o-mini", input="Say hello to the gateway.", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    done = next(event for event in events if event.type == "response.output_text.done")
    completed = events[-1].response
    assert text and done.text == text == completed.output_text
    answer = only_answer(mock_usage(mock))
    usage = completed.usage
    assert (usage.input_tokens, usage.output_tokens) == (answer["input_tokens"], answer["output_tokens"])


# --- Tools ---------------------------------------------------------------------------------------


@apis
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_tool_call_reaches_the_sdk_valid_against_its_schema(envoy, api, stream):
    call = through(envoy, api).call_tool(stream)
    assert call.name == "get_weather"
    jsonschema.validate(call.arguments, WEATHER_SCHEMA)


# --- Guardrails: refused, masked and restored, masked ---------------------------------------------


@apis
def test_a_secret_is_refused_before_any_provider_sees_it(envoy, mock, api):
    before = mock_last(mock)
    with pytest.raises(api.refused) as raised:
        through(envoy, api).ask(f"my key is {SECRET}")
    assert raised.value.status_code == 422
    assert SECRET not in json.dumps(raised.value.body)
    assert mock_last(mock) == before, "the refused request never reached the provider"


@apis
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_email_reaches_the_provider_masked_and_the_client_restored(envoy, mock, api, stream):
    prompt = f"Please write to {EMAIL} and copy {EMAIL} today"
    client = through(envoy, api)
    if stream:
        text = client.stream(prompt, {**ECHO, "x-mock-delta-bytes": "3"})
    else:
        text, _ = client.ask(prompt, ECHO)
    assert text == prompt
    assert api.sent_text(json.loads(mock_last(mock)["body"])) == "Please write to [EMAIL_1] and copy [EMAIL_1] today"


def shipped_filter_config() -> dict:
    """The Tollgate configuration of envoy/envoy.yaml."""
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    tollgate = next(f for f in manager["http_filters"] if f["name"] == "tollgate")
    return json.loads(tollgate["typed_config"]["config"]["configuration"]["value"])


@pytest.fixture(scope="module")
def masking_envoy(mock):
    """The shipped configuration plus a `mask` check (no restore) for a code name."""
    config = shipped_filter_config()
    privacy = next(p for p in config["guardrails"]["policies"] if p["name"] == "privacy")
    privacy["checks"].append(
        {"name": "codenames", "keywords": ["project falcon"], "action": "mask", "placeholder": "CODENAME"}
    )
    proxy = Envoy(mock.port, filter_config=config)
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == []


@apis
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_masked_value_stays_masked_while_a_pseudonym_is_restored(masking_envoy, mock, api, stream):
    prompt = f"Status of Project Falcon? Ask {EMAIL}."
    client = through(masking_envoy, api)
    if stream:
        text = client.stream(prompt, {**ECHO, "x-mock-delta-bytes": "2"})
    else:
        text, _ = client.ask(prompt, ECHO)
    assert api.sent_text(json.loads(mock_last(mock)["body"])) == "Status of [CODENAME]? Ask [EMAIL_1]."
    assert text == f"Status of [CODENAME]? Ask {EMAIL}."


# --- Embeddings ----------------------------------------------------------------------------------

EMBEDDING_MODEL = "text-embedding-3-small"


def embeddings_client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0)


def test_embeddings_reach_the_sdk_as_the_provider_sent_them_with_litellms_cost(envoy, mock):
    inputs = ["The gateway meters every call.", "Ein zweiter Satz, auf Deutsch."]
    # The SDK asks for base64 unless told otherwise and decodes it: both forms must agree.
    provider = embeddings_client(f"http://127.0.0.1:{mock.port}").embeddings.create(
        model=EMBEDDING_MODEL, input=inputs, encoding_format="float"
    )
    mock_usage(mock, reset=True)
    raw = embeddings_client(envoy.base_url).embeddings.with_raw_response.create(model=EMBEDDING_MODEL, input=inputs)
    answer = only_answer(mock_usage(mock))
    embedded = raw.parse()
    assert [d.embedding for d in embedded.data] == [d.embedding for d in provider.data]
    assert len(embedded.data[0].embedding) == 1536
    assert embedded.usage.prompt_tokens == answer["input_tokens"]
    assert raw.headers["x-tollgate-model"] == EMBEDDING_MODEL
    assert raw.headers["x-tollgate-input-tokens"] == str(answer["input_tokens"])
    assert "x-tollgate-output-tokens" not in raw.headers, "an embedding generates nothing"
    assert Decimal(raw.headers["x-tollgate-cost-usd"]) == answer["input_tokens"] * LITELLM[EMBEDDING_MODEL].input


def test_embeddings_of_token_arrays_in_fewer_dimensions(envoy, mock):
    tokens = [[9906, 1917], [791, 18753, 11193]]
    embedded = embeddings_client(envoy.base_url).embeddings.create(
        model=EMBEDDING_MODEL, input=tokens, dimensions=256, encoding_format="float"
    )
    assert [len(d.embedding) for d in embedded.data] == [256, 256]
    assert embedded.usage.prompt_tokens == 5, "token ids are counted, not guessed"
    assert json.loads(mock_last(mock)["body"])["input"] == tokens


def test_embeddings_of_a_secret_are_refused_before_any_provider_sees_it(envoy, mock):
    before = mock_last(mock)
    with pytest.raises(openai.UnprocessableEntityError):
        embeddings_client(envoy.base_url).embeddings.create(model=EMBEDDING_MODEL, input=["fine", f"key {SECRET}"])
    assert mock_last(mock) == before


def test_embeddings_are_of_the_masked_text_the_provider_saw(envoy, mock):
    embedded = embeddings_client(envoy.base_url).embeddings.create(model=EMBEDDING_MODEL, input=f"Mail {EMAIL} now")
    assert json.loads(mock_last(mock)["body"])["input"] == "Mail [EMAIL_1] now"
    provider = embeddings_client(f"http://127.0.0.1:{mock.port}").embeddings.create(
        model=EMBEDDING_MODEL, input="Mail [EMAIL_1] now"
    )
    assert embedded.data[0].embedding == provider.data[0].embedding
