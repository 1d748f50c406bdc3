"""Model selection (README "Model selection") through the real Envoy: a sticky weighted split, the
context-window overflow, and a fallback chain whose second attempt is translated into another
dialect. Each cluster is a mock of its own, so what the policy chose shows in the response headers
(`x-mock-name`, `x-tollgate-provider`, `x-tollgate-model`) and in what each mock received."""

import json
import time

import openai
import pytest
import yaml

from conftest import mock_last, post
from harness import REPO, Envoy, Mock

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
JSON = {"content-type": "application/json"}

# The shipped envoy/envoy.yaml with this policy instead of its own: its Wasm VM has the demo keys
# OPENAI_API_KEY and ANTHROPIC_API_KEY, and its clusters `openai` and `anthropic` are mocks.
POLICY = {
    "providers": {
        "openai": {"dialect": "openai", "cluster": "openai", "api_key": {"env": "OPENAI_API_KEY"}},
        "anthropic": {"dialect": "anthropic", "cluster": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}},
    },
    "targets": {
        "mini": {"provider": "openai", "model": "gpt-4o-mini"},
        "haiku": {"provider": "anthropic", "model": "claude-haiku-4-5"},
        "small-window": {"provider": "openai", "model": "gpt-4o-mini", "context_window": 300},
        "large-window": {"provider": "openai", "model": "gpt-4.1", "context_window": 3000},
    },
    "rules": [
        {"name": "ab", "match": {"model": "ab"}, "sticky_header": "x-user",
         "split": [{"targets": ["mini"], "weight": 70}, {"targets": ["haiku"], "weight": 30}]},
        {"name": "sized", "match": {"model": "sized"}, "targets": ["small-window"], "overflow": ["large-window"]},
    ],
}


@pytest.fixture(scope="module")
def selecting(providers):
    proxy = Envoy({name: mock.port for name, mock in providers.items()}, filter_config=POLICY)
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == [], "a Tollgate Wasm VM failed during this module"


def ask(envoy, model, content="Which target serves me?", headers=None):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return post(envoy.port, CHAT, body, headers={**JSON, **(headers or {})})


def served(response):
    assert response.status == 200, response.body
    return response.header("x-tollgate-provider")


# --- weighted split --------------------------------------------------------------------------

def test_a_sticky_split_keeps_each_key_on_one_arm_and_shares_keys_by_weight(selecting, providers):
    arms = {f"user-{i}": served(ask(selecting, "ab", headers={"x-user": f"user-{i}"})) for i in range(200)}
    share = sum(arm == "openai" for arm in arms.values()) / len(arms)
    assert set(arms.values()) == {"openai", "anthropic"}, "both arms serve"
    assert 0.55 <= share <= 0.85, f"the 70 arm served {share:.0%} of 200 keys"

    # A key of each arm comes back to the same arm every time (by chance, 10 in a row on the 30
    # arm would happen once in 170,000 tries).
    for arm in ("openai", "anthropic"):
        key = next(k for k, a in arms.items() if a == arm)
        again = [ask(selecting, "ab", headers={"x-user": key}) for _ in range(10)]
        assert {served(r) for r in again} == {arm}, key
        assert {r.header("x-mock-name") for r in again} == {arm}, "the arm's cluster answered"

    # Each arm's provider got its own model, in its own dialect, with its own credentials.
    openai_seen, anthropic_seen = mock_last(providers["openai"]), mock_last(providers["anthropic"])
    assert (openai_seen["path"], json.loads(openai_seen["body"])["model"]) == (CHAT, "gpt-4o-mini")
    assert openai_seen["headers"]["authorization"] == "Bearer sk-demo-openai"
    assert (anthropic_seen["path"], json.loads(anthropic_seen["body"])["model"]) == (MESSAGES, "claude-haiku-4-5")
    assert anthropic_seen["headers"]["x-api-key"] == "sk-ant-demo"


def test_the_openai_client_gets_an_openai_answer_from_either_arm(selecting):
    for key in (f"user-{i}" for i in range(20)):
        response = ask(selecting, "ab", headers={"x-user": key})
        served(response)
        completion = response.json()
        assert completion["object"] == "chat.completion", key
        assert completion["choices"][0]["message"]["content"], key


# --- context-window overflow -----------------------------------------------------------------

# A prompt of about 10 tokens, one of about 1,000 (more than 300, less than 3,000) and one of about
# 8,000 (more than any target takes), whichever tokenizer counts them.
SHORT = "Hello there."
LONG = "word " * 1000
HUGE = "word " * 8000


def test_a_prompt_goes_to_the_first_target_whose_context_window_it_fits(selecting, providers):
    short = ask(selecting, "sized", SHORT)
    assert served(short) == "openai"
    assert json.loads(mock_last(providers["openai"])["body"])["model"] == "gpt-4o-mini"
    assert short.header("x-tollgate-model").startswith("gpt-4o-mini")

    long = ask(selecting, "sized", LONG)
    assert served(long) == "openai"
    assert json.loads(mock_last(providers["openai"])["body"])["model"] == "gpt-4.1", "the overflow target"
    assert long.header("x-tollgate-model").startswith("gpt-4.1")


def test_a_prompt_too_large_for_every_target_is_a_400_in_the_clients_dialect(selecting, providers):
    before = {name: mock_last(mock) for name, mock in providers.items()}

    response = ask(selecting, "sized", HUGE)
    assert response.status == 400, response.body
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert "3000 tokens" in error["message"], "names the largest window"

    body = {"model": "sized", "max_tokens": 16, "messages": [{"role": "user", "content": HUGE}]}
    response = post(selecting.port, MESSAGES, body, headers=JSON)
    assert response.status == 400, response.body
    answer = response.json()
    assert (answer["type"], answer["error"]["type"]) == ("error", "invalid_request_error")
    assert "3000 tokens" in answer["error"]["message"]

    assert {name: mock_last(mock) for name, mock in providers.items()} == before, "nothing went upstream"


# --- a fallback chain across dialects --------------------------------------------------------

FALLBACK_CONFIG = REPO / "envoy" / "fallback.yaml"
# envoy/fallback.yaml's three provider clusters (and its VMs' demo keys), the second speaking
# Anthropic: OpenAI clients asking for "chain" are served by whichever answers first.
CHAIN_POLICY = {
    "providers": {
        "primary": {"dialect": "openai", "cluster": "provider_primary", "api_key": {"env": "PRIMARY_API_KEY"}},
        "secondary": {"dialect": "anthropic", "cluster": "provider_secondary",
                      "api_key": {"env": "SECONDARY_API_KEY"}},
        "tertiary": {"dialect": "openai", "cluster": "provider_tertiary", "api_key": {"env": "TERTIARY_API_KEY"}},
    },
    "targets": {
        "primary": {"provider": "primary", "model": "gpt-4o-mini"},
        "secondary": {"provider": "secondary", "model": "claude-haiku-4-5"},
        "tertiary": {"provider": "tertiary", "model": "gpt-4.1-nano"},
    },
    "rules": [{"name": "chain", "match": {"model": "chain"}, "targets": ["primary", "secondary", "tertiary"],
               "fallback_cluster": "llm_fallback"}],
}


def fallback_template(path):
    """envoy/fallback.yaml with CHAIN_POLICY in both Tollgate positions."""
    config = yaml.safe_load(FALLBACK_CONFIG.read_text())
    listener = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    downstream = next(f for f in listener["http_filters"] if f["name"] == "tollgate")
    downstream["typed_config"]["config"]["configuration"]["value"] = json.dumps(CHAIN_POLICY)
    aggregate = next(c for c in config["static_resources"]["clusters"] if c["name"] == "llm_fallback")
    for options in aggregate["typed_extension_protocol_options"].values():
        upstream = next(f for f in options["http_filters"] if f["name"] == "tollgate_upstream")
        upstream["typed_config"]["config"]["configuration"]["value"] = json.dumps(
            {**CHAIN_POLICY, "position": "upstream"})
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The chain behind a real Envoy: the primary answers every request 503, the secondary (the
    Anthropic provider) only with its own key."""
    mocks = {}
    proxy = None
    try:
        mocks["primary"] = Mock("--fault", "status=503", name="primary")
        mocks["secondary"] = Mock("--require-key", "sk-demo-secondary", name="secondary")
        mocks["tertiary"] = Mock(name="tertiary")
        ports = {f"provider_{name}": mock.port for name, mock in mocks.items()}
        proxy = Envoy(ports, template=fallback_template(tmp_path_factory.mktemp("chain") / "fallback.yaml"))
        yield proxy, mocks
        failures = proxy.vm_failures()
        assert failures == [], "a Tollgate Wasm VM failed during this module"
    finally:
        if proxy:
            proxy.stop()
        for mock in mocks.values():
            mock.stop()


def access_entry(envoy, request_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = next((e for e in envoy.access_log() if e.get("request_id") == request_id), None)
        if entry:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"no access-log entry for {request_id}")


def test_an_attempt_at_an_anthropic_provider_is_translated_both_ways(chain):
    proxy, mocks = chain
    client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-client", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "Who answers?"}], temperature=0.5,
        extra_headers={"x-request-id": "translated-chain-1"})

    # The OpenAI client got an OpenAI answer, from the secondary, credited to it.
    completion = raw.parse()
    assert raw.status_code == 200
    assert raw.headers["x-mock-name"] == "secondary"
    assert (raw.headers["x-tollgate-provider"], raw.headers["x-tollgate-model"]) == ("secondary", "claude-haiku-4-5")
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content.startswith("This is a deterministic reply")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    entry = access_entry(proxy, "translated-chain-1")
    assert (entry["attempts"], entry["provider"], entry["status"]) == (2, "secondary", 200)
    record = json.loads(entry["tollgate"])
    assert (record["outcome"], record["model_served"]) == ("complete", "claude-haiku-4-5")

    # The primary was asked in OpenAI's dialect and failed; the secondary in Anthropic's.
    first = mock_last(mocks["primary"])
    assert (first["path"], json.loads(first["body"])["model"]) == (CHAT, "gpt-4o-mini")
    seen = mock_last(mocks["secondary"])
    assert seen["path"].endswith("/messages")
    sent = json.loads(seen["body"])
    assert sent["model"] == "claude-haiku-4-5"
    assert isinstance(sent["max_tokens"], int) and sent["max_tokens"] > 0
    assert sent["messages"] == [{"role": "user", "content": "Who answers?"}]
    assert sent["temperature"] == 0.5
    assert seen["headers"]["x-api-key"] == "sk-demo-secondary"
    assert "authorization" not in seen["headers"], "neither the client's nor the primary's key"
    assert "anthropic-version" in seen["headers"]
    assert mock_last(mocks["tertiary"]) is None


def test_a_stream_from_the_anthropic_attempt_reaches_the_openai_client_as_openai_chunks(chain):
    proxy, mocks = chain
    client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-client", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="chain", messages=[{"role": "user", "content": "Stream it."}], max_tokens=8, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("This is a deterministic")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 8
    sent = json.loads(mock_last(mocks["secondary"])["body"])
    assert (sent["model"], sent["max_tokens"], sent["stream"]) == ("claude-haiku-4-5", 8, True)
