"""Guardrails through the real Envoy with the official `openai` and `anthropic` SDKs.

The shipped envoy/envoy.yaml carries the `privacy` policy (emails, cards, IBANs and SSNs in user
and tool messages pseudonymised and restored; secrets blocked with a 422). The mock provider
echoes the last user message (`x-mock-reply: echo`), cut into small stream deltas
(`x-mock-delta-bytes`), so a placeholder comes back split across events and must be restored.
"""

import json
import uuid

import anthropic
import openai
import pytest

import conftest
from conftest import mock_last, post, prometheus_samples, usage_records, wait_until

RUN = uuid.uuid4().hex
# Random-looking, so the openai_key detector takes it (placeholders such as sk-test are not keys).
SECRET = f"sk-proj-{RUN}{RUN[:8].upper()}Zq"
EMAIL = f"jane.{RUN[:8]}@example.com"
conftest.GUARDRAIL_MATCHES.append(SECRET)

ECHO = {"x-mock-reply": "echo"}


def openai_client(envoy):
    return openai.OpenAI(base_url=envoy.base_url + "/v1", api_key="sk-test", max_retries=0)


def anthropic_client(envoy):
    return anthropic.Anthropic(base_url=envoy.base_url, api_key="sk-ant-test", max_retries=0)


def user(content):
    return [{"role": "user", "content": content}]


# --- Requests refused ---------------------------------------------------------------------------


def test_openai_sdk_raises_a_clean_error_for_a_blocked_prompt(envoy, mock):
    before = mock_last(mock)
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        openai_client(envoy).chat.completions.create(model="gpt-4o-mini", messages=user(f"my key is {SECRET}"))
    assert raised.value.status_code == 422
    assert raised.value.code == "secret_detected"
    assert SECRET not in raised.value.message
    assert mock_last(mock) == before, "the refused request never reached the provider"


def test_anthropic_sdk_raises_a_clean_error_for_a_blocked_prompt(envoy, mock):
    before = mock_last(mock)
    with pytest.raises(anthropic.UnprocessableEntityError) as raised:
        anthropic_client(envoy).messages.create(
            model="claude-haiku-4-5", max_tokens=32, messages=user(f"use {SECRET} for it")
        )
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert SECRET not in json.dumps(raised.value.body)
    assert mock_last(mock) == before


def test_a_request_without_content_type_is_checked_all_the_same(envoy, mock):
    body = json.dumps({"model": "gpt-4o-mini", "messages": user(f"key: {SECRET}")})
    answer = post(envoy.port, "/v1/chat/completions", body, headers={"content-length": str(len(body))})
    assert answer.status == 422
    assert answer.json()["error"]["code"] == "secret_detected"


# --- Masked on the way up, restored on the way back ----------------------------------------------


def test_openai_prompt_reaches_the_provider_masked_and_the_client_restored(envoy, mock):
    prompt = f"Please write to {EMAIL} today"
    completion = openai_client(envoy).chat.completions.create(
        model="gpt-4o-mini", messages=user(prompt), extra_headers=ECHO
    )
    sent = json.loads(mock_last(mock)["body"])
    assert sent["messages"][0]["content"] == "Please write to [EMAIL_1] today"
    assert completion.choices[0].message.content == prompt


@pytest.mark.parametrize("delta_bytes", ["1", "3", "7"])
def test_openai_stream_restores_a_placeholder_split_across_events(envoy, mock, delta_bytes):
    prompt = f"Mail {EMAIL} and again {EMAIL}, thanks"
    stream = openai_client(envoy).chat.completions.create(
        model="gpt-4o-mini",
        messages=user(prompt),
        stream=True,
        extra_headers={**ECHO, "x-mock-delta-bytes": delta_bytes},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    assert chunks[-1].choices[0].finish_reason == "stop"
    sent = json.loads(mock_last(mock)["body"])
    assert sent["messages"][0]["content"] == "Mail [EMAIL_1] and again [EMAIL_1], thanks"


def test_anthropic_stream_and_answer_are_restored(envoy, mock):
    prompt = f"Card 4111 1111 1111 1111 belongs to {EMAIL}"
    client = anthropic_client(envoy)
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=user(prompt), extra_headers=ECHO)
    assert message.content[0].text == prompt
    sent = json.loads(mock_last(mock)["body"])
    assert sent["messages"][0]["content"] == "Card [CARD_1] belongs to [EMAIL_1]"
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=user(prompt),
        extra_headers={**ECHO, "x-mock-delta-bytes": "2"},
    ) as stream:
        assert stream.get_final_text() == prompt


# --- Streams blocked mid-way --------------------------------------------------------------------

RESPONSE_DLP = {
    "guardrails": {
        "policies": [
            {
                "name": "dlp",
                "checks": [{"name": "no-keys-out", "detectors": ["secrets"], "action": "block", "on": "response"}],
            },
            {"name": "audit", "checks": [{"name": "tickets", "deny": ["TCK-[0-9]{6}"], "action": "flag"}]},
        ]
    }
}


@pytest.fixture(scope="module")
def dlp_envoy(mock):
    from harness import Envoy

    proxy = Envoy(mock.port, filter_config=RESPONSE_DLP)
    yield proxy
    failures = proxy.vm_failures()
    proxy.stop()
    assert failures == []


def test_openai_stream_blocked_midway_ends_cleanly_in_the_sdk(dlp_envoy):
    stream = openai_client(dlp_envoy).chat.completions.create(
        model="gpt-4o-mini",
        messages=user(f"Your key is {SECRET} so keep it"),
        stream=True,
        extra_headers={**ECHO, "x-mock-delta-bytes": "5"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Your key is "
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_anthropic_stream_blocked_midway_ends_cleanly_in_the_sdk(dlp_envoy):
    with anthropic_client(dlp_envoy).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=user(f"Your key is {SECRET} so keep it"),
        extra_headers={**ECHO, "x-mock-delta-bytes": "4"},
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "refusal"
    assert "".join(block.text for block in message.content) == "Your key is "


def test_a_blocked_stream_never_carries_the_value_on_the_wire(dlp_envoy):
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": user(f"the key {SECRET} is here"),
    }
    answer = post(dlp_envoy.port, "/v1/chat/completions", body,
                  headers={"content-type": "application/json", **ECHO, "x-mock-delta-bytes": "3"})
    assert answer.status == 200
    assert SECRET[:6].encode() not in answer.body, "not even the key's first bytes"
    assert b'"finish_reason":"content_filter"' in answer.body
    assert answer.body.rstrip().endswith(b"}") and b"data: [DONE]" in answer.body


def test_a_blocked_answer_is_replaced_by_the_error(dlp_envoy):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(dlp_envoy).chat.completions.create(
            model="gpt-4o-mini", messages=user(f"echo {SECRET}"), extra_headers=ECHO
        )
    assert raised.value.code == "guardrail_violation"
    assert SECRET not in raised.value.message


def test_flags_reach_the_provider_as_a_header(dlp_envoy, mock):
    openai_client(dlp_envoy).chat.completions.create(model="gpt-4o-mini", messages=user("see TCK-123456"))
    assert mock_last(mock)["headers"].get("x-tollgate-guardrail-flags") == "audit/tickets"


# --- Recorded: access log and metrics ------------------------------------------------------------


def test_decisions_reach_the_access_log_and_prometheus(envoy):
    # Its own blocked and masked requests, counted from where the counters stand (the module's
    # other tests add theirs before it in a full run, none when it runs alone).
    findings = (
        'tollgate_guardrail_findings{policy="privacy",check="pii",detector="email",'
        'action="mask_and_restore",phase="request",mode="enforced"}'
    )
    blocks = 'tollgate_guardrail_blocks{policy="privacy",check="secrets",phase="request"}'
    before = prometheus_samples(envoy)
    blocked_before = envoy.stats().get("wasmcustom.tollgate.requests_blocked_by_guardrails", 0)
    chat = "/v1/chat/completions"
    for _ in range(3):
        refused = post(envoy.port, chat, {"model": "gpt-4o-mini", "messages": user(f"key {SECRET}")})
        assert refused.status == 422
    emails = " ".join(f"{n}.{EMAIL}" for n in range(5))
    assert post(envoy.port, chat, {"model": "gpt-4o-mini", "messages": user(f"write to {emails}")}).status == 200
    blocked = wait_until(lambda: [r for r in usage_records(envoy) if r.get("guardrails", {}).get("blocked_by")])
    assert blocked, "blocked requests are in the access log"
    assert blocked[0]["guardrails"]["blocked_by"] == {"policy": "privacy", "check": "secrets", "phase": "request"}
    assert blocked[0]["outcome"] == "rejected"
    def masked():
        records = usage_records(envoy)
        return [r for r in records if any(d["action"] == "mask_and_restore" for d in r.get("guardrails", {}).get("decisions", []))]

    masked = wait_until(masked)
    assert masked and all(r["outcome"] == "complete" for r in masked)
    samples = prometheus_samples(envoy)
    assert samples.get(findings, 0) >= before.get(findings, 0) + 5, samples
    assert samples.get(blocks, 0) >= before.get(blocks, 0) + 3, samples
    stats = envoy.stats()
    assert stats.get("wasmcustom.tollgate.requests_blocked_by_guardrails", 0) >= blocked_before + 3
