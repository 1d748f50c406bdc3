"""Anthropic's count_tokens through the real Envoy and envoy/envoy.yaml's policy, with the
official anthropic SDK's `client.messages.count_tokens`. `smart` is served by the Anthropic
provider: the count is Anthropic's own (the mock's), with the rule's model and the provider's
key, and equals the input the same Messages request is then billed. `fast` is served by an
OpenAI provider, which has no such endpoint: Tollgate counts the prompt as that provider will
(OpenAI's published rules, checked here with Python tiktoken) and says so in a header."""

import hashlib
import os
import shutil
import tempfile

import anthropic
import pytest

from conftest import mock_last
from harness import REPO

SYSTEM = "Be brief, and answer in French when asked."
MESSAGES = [{"role": "user", "content": "Combien de jours compte une année bissextile ?"}]
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


@pytest.fixture(scope="module")
def o200k():
    """OpenAI's own tokenizer, offline: tiktoken finds the committed vocabulary in its cache
    under the sha1 of the URL and checks it against the sha256 it expects."""
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    shutil.copy(REPO / "vocab" / "o200k_base.tiktoken", os.path.join(cache, hashlib.sha1(O200K_URL.encode()).hexdigest()))
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    try:
        import tiktoken

        yield tiktoken.get_encoding("o200k_base")
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def client(routed):
    return anthropic.Anthropic(base_url=routed.base_url, api_key="sk-ant-client", max_retries=0)


def test_an_alias_of_an_anthropic_model_is_counted_by_anthropic_as_it_then_bills(client, providers):
    raw = client.messages.with_raw_response.count_tokens(model="smart", system=SYSTEM, messages=MESSAGES)
    counted = raw.parse()
    assert raw.headers.get("x-tollgate-estimated") is None, "Anthropic's own count"
    seen = mock_last(providers["anthropic"])
    assert seen["path"] == "/v1/messages/count_tokens"
    assert seen["headers"]["x-api-key"] == "sk-ant-demo", "the provider's key, not the client's"
    assert '"model":"claude-haiku-4-5"' in seen["body"].replace(" ", "")
    billed = client.messages.create(model="smart", max_tokens=16, system=SYSTEM, messages=MESSAGES)
    assert counted.input_tokens == billed.usage.input_tokens


def test_a_model_an_openai_provider_serves_is_counted_by_tollgate_as_that_provider_counts(client, providers, o200k):
    before = mock_last(providers["openai"])
    raw = client.messages.with_raw_response.count_tokens(model="fast", system=SYSTEM, messages=MESSAGES)
    assert raw.headers["x-tollgate-estimated"] == "true"
    assert raw.headers["x-tollgate-model"] == "gpt-4o-mini"
    # OpenAI's cookbook rule (num_tokens_from_messages) on the request as the provider gets it:
    # the system prompt as a system message; 3 per message, its role and content, 3 priming.
    per_message = [("system", SYSTEM), ("user", MESSAGES[0]["content"])]
    expected = sum(3 + len(o200k.encode(role)) + len(o200k.encode(text)) for role, text in per_message) + 3
    assert raw.parse().input_tokens == expected
    assert mock_last(providers["openai"]) == before, "nothing reached the OpenAI provider"
