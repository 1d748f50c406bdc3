"""failure_mode through the real Envoy. The proxy is made to refuse the request body to the
filter on purpose (TOLLGATE_TEST_FAULTS in the Wasm VM's environment): closed answers a 500 in
the client's dialect and forwards nothing, open passes the request on untouched, per route.
Also proves that the tests' VM-failure detection sees a real panic."""

import json

import pytest

from conftest import mock_last, post
from harness import Envoy

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fault"}]}
MESSAGES = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "fault"}]}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def faulty_envoy(mock):
    # Closed by default, open on the `team-a` route (paths under /team-a/).
    config = {"failure_mode": {"default": "closed", "routes": {"team-a": "open"}}}
    proxy = Envoy(mock.port, filter_config=config, vm_env={"TOLLGATE_TEST_FAULTS": "request_body"})
    yield proxy
    proxy.stop()


def test_closed_answers_a_500_in_the_clients_dialect_and_forwards_nothing(faulty_envoy, mock):
    before = mock_last(mock)
    openai = post(faulty_envoy.port, "/v1/chat/completions", CHAT, headers=JSON)
    assert openai.status == 500
    assert openai.json()["error"]["code"] == "gateway_error"
    anthropic = post(faulty_envoy.port, "/v1/messages", MESSAGES, headers=JSON)
    assert anthropic.status == 500
    assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"] == "api_error"
    assert mock_last(mock) == before, "nothing reached the upstream"
    assert faulty_envoy.stats()["wasmcustom.tollgate.requests_failed_closed"] == 2


def test_open_on_its_route_passes_the_request_on_untouched_and_counts_it(faulty_envoy, mock):
    body = json.dumps(CHAT, indent=1).encode()
    response = post(faulty_envoy.port, "/team-a/v1/chat/completions", body, headers=JSON)
    assert response.status == 200
    assert response.header("x-tollgate-cost-usd") is None, "not inspected, so not priced"
    last = mock_last(mock)
    assert (last["path"], last["body"].encode()) == ("/v1/chat/completions", body)
    assert faulty_envoy.stats()["wasmcustom.tollgate.requests_failed_open"] == 1
    assert faulty_envoy.vm_failures() == []


def test_a_route_name_the_proxy_will_not_hand_over_is_logged_and_counted_not_taken_for_no_route(mock):
    # team-a is open, but the route's name cannot be read: the default (closed) decides, and
    # the failed read is said, once per request, rather than passing for "no route".
    config = {"failure_mode": {"default": "closed", "routes": {"team-a": "open"}}}
    proxy = Envoy(mock.port, filter_config=config, vm_env={"TOLLGATE_TEST_FAULTS": "request_body,route_name"})
    try:
        for _ in range(2):
            response = post(proxy.port, "/team-a/v1/chat/completions", CHAT, headers=JSON)
            assert response.status == 500
        stats = proxy.stats()
        assert stats["wasmcustom.tollgate.route_names_unreadable"] == 2
        assert stats["wasmcustom.tollgate.requests_failed_closed"] == 2
        assert proxy.log().count("route_name_unreadable") == 2
        assert proxy.vm_failures() == []
    finally:
        proxy.stop()


def test_a_panic_is_seen_by_the_vm_failure_checks(mock):
    # Envoy 1.40 counts nothing when a VM traps: the checks must find it in the log.
    proxy = Envoy(mock.port, vm_env={"TOLLGATE_TEST_FAULTS": "panic"})
    try:
        response = post(proxy.port, "/v1/chat/completions", CHAT, headers=JSON)
        assert response.status == 503
        evidence = proxy.vm_failures()
        assert any("[critical]" in line and "tollgate panicked" in line for line in evidence), evidence
        assert "TOLLGATE_TEST_FAULTS=panic" in proxy.log(), "the hook logged the panic's message"
        assert any("Function: proxy_on_request_headers failed" in line for line in evidence), evidence
    finally:
        proxy.stop()
