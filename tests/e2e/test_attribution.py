"""Per-tenant attribution through the real Envoy: the tenant and team from headers reach the usage
record and the labelled Prometheus metrics; nobody can spoof Tollgate's own headers; absurd
tenant values are refused, not stored."""


from conftest import mock_last, post, prometheus_samples, usage_records, wait_for_records

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
