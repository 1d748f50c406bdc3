"""Model selection through the real Envoy and envoy/envoy.yaml's policy: aliases, per-route
rules, deny lists, provider credentials and clusters, with the official SDKs as clients."""

import json

import anthropic
import openai
import pytest

from conftest import mock_last, post

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Which model answers?"}]


def test_an_alias_is_served_by_its_provider_with_its_credentials(routed, providers):
    response = post(routed.port, CHAT, {"model": "fast", "messages": MESSAGES},
                    headers={"content-type": "application/json", "authorization": "Bearer sk-client-key"})
    assert response.status == 200
    assert response.header("x-mock-name") == "openai"
    assert response.header("x-tollgate-provider") == "openai"
    assert response.header("x-tollgate-model") == "gpt-4o-mini-2024-07-18"
    seen = mock_last(providers["openai"])
    assert json.loads(seen["body"])["model"] == "gpt-4o-mini"
    assert seen["headers"]["authorization"] == "Bearer sk-demo-openai", "the client's key was replaced"
    assert "x-tollgate-cluster" not in seen["headers"], "the route removes it before the provider"


def test_the_same_model_name_follows_each_routes_policy(routed):
    team_a = post(routed.port, "/team-a" + CHAT, {"model": "smart", "messages": MESSAGES})
    public = post(routed.port, CHAT, {"model": "smart", "messages": MESSAGES})
    assert team_a.header("x-tollgate-model").startswith("gpt-4.1")
    assert public.header("x-tollgate-model").startswith("claude-haiku-4-5"), "public `smart` is Claude, translated"


def test_a_model_denied_on_a_route_gets_a_403_the_openai_sdk_raises(routed):
    client = openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="sk-test", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert raised.value.status_code == 403
    assert raised.value.body["code"] == "model_not_allowed"
    assert "team A" in raised.value.body["message"]
    team_a = post(routed.port, "/team-a" + CHAT, {"model": "gpt-4.1", "messages": MESSAGES})
    assert team_a.status == 200, "the deny rule is per route"


def test_the_deny_list_refuses_whatever_the_route(routed):
    for path in (CHAT, "/team-a" + CHAT):
        response = post(routed.port, path, {"model": "gpt-4o-realtime-preview", "messages": MESSAGES})
        assert response.status == 403
        assert response.json()["error"]["code"] == "model_not_allowed"


def test_anthropic_sdk_is_routed_to_the_anthropic_provider(routed, providers):
    client = anthropic.Anthropic(base_url=routed.base_url, api_key="sk-ant-client", max_retries=0)
    raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES)
    message = raw.parse()
    assert message.content[0].text
    assert raw.headers["x-mock-name"] == "anthropic"
    assert raw.headers["x-tollgate-provider"] == "anthropic"
    seen = mock_last(providers["anthropic"])
    assert seen["headers"]["x-api-key"] == "sk-ant-demo"
    assert "authorization" not in seen["headers"], "no client credential reaches the provider"


def test_streaming_through_an_alias_works_with_the_openai_sdk(routed):
    client = openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="sk-test", max_retries=0)
    chunks = list(client.chat.completions.create(model="fast", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].model == "gpt-4o-mini-2024-07-18"


def test_a_client_sent_cluster_header_is_ignored(routed):
    response = post(routed.port, CHAT, {"model": "gpt-4o-mini", "messages": MESSAGES},
                    headers={"content-type": "application/json", "x-tollgate-cluster": "openai"})
    assert response.status == 200
    assert response.header("x-mock-name") == "mock_provider", "the default route served it"


def test_provider_keys_never_reach_logs_or_responses(routed):
    response = post(routed.port, CHAT, {"model": "fast", "messages": MESSAGES})
    assert b"sk-demo-openai" not in response.body
    assert all("sk-demo" not in value for value in response.headers.values())
    log = routed.log()
    assert "sk-demo-openai" not in log and "sk-ant-demo" not in log
