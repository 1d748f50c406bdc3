"""Shipped configuration: the CLI rejects bad filter configs naming the field, and a bad config
makes Envoy refuse to start instead of serving without the filter. (Every shipped Envoy config
is validated by every supported Envoy release in test_envoy_versions.py.)"""

import json
import subprocess
from pathlib import Path

import pytest

from harness import REPO, Envoy, release_binary


def check_config(tmp_path: Path, text: str):
    path = tmp_path / "tollgate.json"
    path.write_text(text)
    return subprocess.run([str(release_binary("tollgate")), "check-config", str(path)], capture_output=True, text=True)


def test_check_config_accepts_the_shipped_configuration(tmp_path):
    result = check_config(tmp_path, json.dumps({"header_prefix": "x-tollgate-", "log_level": "debug"}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")


@pytest.mark.parametrize(
    "config, field",
    [
        ('{"header_prefx": "x-"}', "header_prefx"),
        ('{"max_request_body_bytes": "big"}', "max_request_body_bytes"),
        ('{"max_response_body_bytes": 0}', "max_response_body_bytes"),
        ('{"log_level": "loud"}', "log_level"),
        ('{"header_prefix": "X-Upper-"}', "header_prefix"),
        ('{"guardrails": {"policies": [{"name": "p", "checks": [{"name": "c", "deny": ["(unclosed"], "action": "block"}]}]}}',
         "guardrails.policies[0].checks[0].deny[0]"),
        ('{"guardrails": {"policies": [{"name": "p", "checks": [{"name": "c", "detectors": ["emial"], "action": "mask"}]}]}}',
         "guardrails.policies[0].checks[0].detectors[0]"),
    ],
)
def test_check_config_rejects_a_bad_config_naming_the_field(tmp_path, config, field):
    result = check_config(tmp_path, config)
    assert result.returncode == 1
    assert field in result.stderr
    assert "invalid configuration" in result.stderr


def test_envoy_refuses_to_start_with_a_bad_filter_config(mock):
    with pytest.raises(RuntimeError) as raised:
        Envoy(mock.port, filter_config={"log_level": "loud"})
    assert "log_level" in str(raised.value)


def test_envoy_refuses_a_guardrail_with_an_invalid_regex_naming_the_rule(mock):
    bad = {"guardrails": {"policies": [{"name": "p", "checks": [
        {"name": "ok", "deny": ["fine"], "action": "flag"},
        {"name": "bad", "deny": ["ok", "(a|b"], "action": "block"}]}]}}
    with pytest.raises(RuntimeError) as raised:
        Envoy(mock.port, filter_config=bad)
    assert "guardrails.policies[0].checks[1].deny[1]" in str(raised.value)


def test_bare_envoy_of_the_benchmarks_is_the_shipped_config_without_tollgate(mock):
    """`make bench` compares Tollgate with the same Envoy minus the filter, derived from
    envoy/envoy.yaml by the harness rather than kept as a second copy."""
    from conftest import post

    proxy = Envoy(mock.port, tollgate=False)
    try:
        response = post(proxy.port, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status == 200
        assert response.header("x-tollgate-cost-usd") is None
        listeners = proxy.admin("/config_dump?resource=static_listeners")[1]
        assert "filters.http.router" in listeners
        assert "filters.http.wasm" not in listeners
    finally:
        proxy.stop()


def test_the_benchmarks_guardrails_are_the_shipped_ones():
    """bench/profiles.toml and examples/per_request.rs copy envoy/envoy.yaml's guardrail policy
    (the benchmark measures what ships): the copies stay equal to it."""
    import re
    import tomllib

    import yaml

    from harness import ENVOY_CONFIG

    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = next(f for f in manager["http_filters"] if f["name"] == "tollgate")["typed_config"]["config"]
    shipped = json.loads(wasm["configuration"]["value"])["guardrails"]
    profiles = {p["name"]: p for p in tomllib.loads((REPO / "bench" / "profiles.toml").read_text())["profile"]}
    assert profiles["guardrails"]["config"]["guardrails"] == shipped
    assert profiles["everything"]["config"]["guardrails"] == shipped
    source = (REPO / "examples" / "per_request.rs").read_text()
    copied = re.search(r'const GUARDRAILS: &str = r#"(.*?)"#;', source, re.S)
    assert copied, "examples/per_request.rs keeps its copy in const GUARDRAILS"
    assert json.loads(copied.group(1))["guardrails"] == shipped
