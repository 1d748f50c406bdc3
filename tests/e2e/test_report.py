"""`tollgate report` on the access log of a real Envoy: requests through both routes and both
providers, refused and failed ones too; the report's totals are exactly the sums of what the
responses' cost and token headers said."""

import subprocess
import uuid
from collections import defaultdict
from decimal import Decimal

from conftest import post
from harness import release_binary
from test_usage import record_of

MESSAGES = [{"role": "user", "content": "Bill this request to the right team, please."}]

# (path, model, extra headers, expected status, route, provider served)
REQUESTS = [
    ("/v1/chat/completions", "fast", {}, 200, "public", "openai"),
    ("/v1/chat/completions", "smart", {}, 200, "public", "anthropic"),
    ("/v1/chat/completions", "gpt-4o-mini", {}, 200, "public", None),
    ("/team-a/v1/chat/completions", "smart", {}, 200, "team-a", "openai"),
    ("/team-a/v1/chat/completions", "fast", {"x-mock-cached-tokens": "4"}, 200, "team-a", "openai"),
    ("/team-a/v1/messages", "claude-haiku-4-5", {"anthropic-version": "2023-06-01"}, 200, "team-a", "anthropic"),
    ("/v1/chat/completions", "gpt-4.1", {}, 403, "public", None),
    ("/v1/chat/completions", "fast", {"x-mock-status": "503"}, 503, "public", "openai"),
]


def run_report(log_path, *args):
    result = subprocess.run([str(release_binary("tollgate")), "report", "--from", str(log_path), *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_rows(table):
    rows = {}
    for line in table.splitlines()[1:]:
        if not line:
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_report_totals_match_the_responses_headers(start_envoy):
    envoy = start_envoy()
    expected = defaultdict(lambda: {"requests": 0, "input": 0, "output": 0, "cost": Decimal(0)})
    for path, model, extra, status, route, provider in REQUESTS:
        request_id = str(uuid.uuid4())
        body = {"model": model, "messages": MESSAGES, "max_tokens": 20}
        response = post(envoy.port, path, body,
                        headers={"content-type": "application/json", "x-request-id": request_id, **extra})
        assert response.status == status, response.body
        if status == 200:
            assert response.header("x-tollgate-provider") == provider
        _, record = record_of(envoy, request_id)
        assert record is not None
        for key in ("TOTAL", route, f"model:{record['model_served']}"):
            sums = expected[key]
            sums["requests"] += 1
            if status == 200:
                sums["input"] += int(response.header("x-tollgate-input-tokens"))
                sums["output"] += int(response.header("x-tollgate-output-tokens"))
                sums["cost"] += Decimal(response.header("x-tollgate-cost-usd"))

    def row(sums):
        return [str(sums["requests"]), str(sums["input"]), str(sums["output"]), format(sums["cost"], "f"), "0"]

    def exact(cells):
        """The report's cells with the cost as an exact Decimal, so 0.00002 and 0.000020 compare equal."""
        return cells[:3] + [Decimal(cells[3])] + cells[4:]

    by_route = run_report(envoy.access_log_path, "--by", "route")
    rows = table_rows(by_route)
    assert exact(rows["TOTAL"]) == exact(row(expected["TOTAL"])), by_route
    assert expected["TOTAL"]["cost"] > 0
    for route in ("public", "team-a"):
        assert exact(rows[route]) == exact(row(expected[route])), by_route
    assert "tollgate-routed" not in rows, "the client's route, not the one Tollgate re-routed to"
    assert " not JSON," in by_route and "0 with an invalid record" in by_route

    by_model = table_rows(run_report(envoy.access_log_path, "--by", "model"))
    for key, sums in expected.items():
        if key.startswith("model:"):
            assert exact(by_model[key.removeprefix("model:")]) == exact(row(sums)), key
    by_provider = table_rows(run_report(envoy.access_log_path, "--by", "provider"))
    assert by_provider["TOTAL"] == rows["TOTAL"]
    assert set(by_provider) >= {"openai", "anthropic"}


def test_report_by_tenant_of_a_real_log_and_csv(start_envoy, tmp_path):
    envoy = start_envoy()
    costs = []
    for _ in range(3):
        request_id = str(uuid.uuid4())
        response = post(envoy.port, "/v1/chat/completions", {"model": "fast", "messages": MESSAGES},
                        headers={"content-type": "application/json", "x-request-id": request_id})
        costs.append(Decimal(response.header("x-tollgate-cost-usd")))
        record_of(envoy, request_id)
    csv_path = tmp_path / "chargeback.csv"
    table = run_report(envoy.access_log_path, "--csv", str(csv_path))
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "tenant,requests,input_tokens,output_tokens,cost_usd,unpriced"
    # Every record of this log has the same tenant: `none` unless the record names one.
    assert len(lines) == 2
    tenant, requests, _, _, cost, unpriced = lines[1].split(",")
    assert (requests, Decimal(cost), unpriced) == ("3", sum(costs), "0")
    assert table_rows(table)["TOTAL"][3] == cost
