"""Per-tenant attribution through the real Envoy: the tenant and team from headers reach the usage
record and the labelled Prometheus metrics; nobody can spoof Tollgate's own headers; absurd
tenant values are refused, not stored."""


import json
import socket
import uuid

from conftest import mock_last, post, prometheus_samples, usage_records, wait_for_records, wait_until

PATH = "/v1/chat/completions"
CHAT = {"model": "fast", "messages": [{"role": "user", "content": "Bill this to acme."}]}


def test_tenant_and_team_reach_the_record_and_the_metrics(routed):
    before = len(usage_records(routed))
    headers = {"content-type": "application/json", "x-tenant-id": "acme", "x-team": "search"}
    responses = [post(routed.port, PATH, CHAT, headers=headers) for _ in range(3)]
    assert all(r.status == 200 for r in responses)
    record = wait_for_records(routed, before + 3)[-1]
    assert (record["tenant"], record["team"], record["project"]) == ("acme", "search", None)

    samples = prometheus_samples(routed)
    labels = 'provider="openai",model="gpt-4o-mini-2024-07-18",tenant="acme"'
    input_tokens = sum(int(r.header("x-tollgate-input-tokens")) for r in responses)
    output_tokens = sum(int(r.header("x-tollgate-output-tokens")) for r in responses)
    assert samples[f'tollgate_tokens{{{labels},type="input"}}'] == input_tokens
    assert samples[f'tollgate_tokens{{{labels},type="output"}}'] == output_tokens
    assert samples[f'tollgate_requests{{{labels},outcome="complete"}}'] == 3
    cost_nano = sum(round(float(r.header("x-tollgate-cost-usd")) * 1e9) for r in responses)
    assert samples[f"tollgate_cost_nano_usd{{{labels}}}"] == cost_nano


def test_client_sent_tollgate_headers_never_reach_the_upstream(routed, providers):
    headers = {"content-type": "application/json", "x-tollgate-tenant": "spoofed", "x-tollgate-cost-usd": "0",
               "x-tollgate-cluster": "anthropic"}
    assert post(routed.port, PATH, {**CHAT, "model": "gpt-4o-mini"}, headers=headers).status == 200
    seen = mock_last(providers["mock_provider"])
    assert not [name for name in seen["headers"] if name.startswith("x-tollgate-")]


def test_a_megabyte_tenant_is_refused_not_stored(routed):
    before = len(usage_records(routed))
    headers = {"content-type": "application/json", "x-tenant-id": "t" * 20_000}
    assert post(routed.port, PATH, CHAT, headers=headers).status == 200
    record = wait_for_records(routed, before + 1)[-1]
    assert record["tenant"] is None
    assert routed.stats()["wasmcustom.tollgate.attribution_rejected"] >= 1


def test_a_tenant_named_like_a_label_is_still_tagged_right(routed):
    headers = {"content-type": "application/json", "x-tenant-id": "model"}
    response = post(routed.port, PATH, CHAT, headers=headers)
    assert response.status == 200
    labels = 'provider="openai",model="gpt-4o-mini-2024-07-18",tenant="model"'
    assert prometheus_samples(routed)[f'tollgate_requests{{{labels},outcome="complete"}}'] == 1


def raw_post(port, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """An HTTP/1.1 POST written byte by byte: header values that are not UTF-8 (obs-text), which
    http.client would refuse to send. Returns the status line."""
    head = b"POST " + path + b" HTTP/1.1\r\nhost: tollgate\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + b"\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_a_tenant_that_is_not_utf8_is_refused_and_counted_never_merged(routed):
    """Envoy passes obs-text header bytes (Latin-1 `caf\\xe9`, `caf\\xe8`) to the filter; read
    lossily both were the one tenant `caf\\ufffd`. Each is refused and counted instead."""
    rejected = routed.stats().get("wasmcustom.tollgate.attribution_rejected", 0)
    body = json.dumps(CHAT).encode()
    # Found by request id: an earlier test's record may still be on its way to the access log.
    request_ids = [f"not-utf8-{uuid.uuid4()}" for _ in range(2)]
    for tenant, request_id in zip((b"caf\xe9", b"caf\xe8"), request_ids):
        headers = [(b"content-type", b"application/json"), (b"x-tenant-id", tenant), (b"x-request-id", request_id.encode())]
        status = raw_post(routed.port, PATH.encode(), headers, body)
        assert status.startswith(b"HTTP/1.1 "), status

    def both_entries():
        found = [entry for entry in routed.access_log() if entry.get("request_id") in request_ids]
        return found if len(found) == 2 else None

    records = [json.loads(entry["tollgate"]) for entry in wait_until(both_entries)]
    assert [r["tenant"] for r in records] == [None, None]
    assert routed.stats()["wasmcustom.tollgate.attribution_rejected"] == rejected + 2
