"""No secret ever shows up in what Envoy and Tollgate produce: provider keys (every key any Envoy
of this test session was configured with), client keys, prompt text, and the values guardrails
matched (tests that match some append them to GUARDRAIL_MATCHES). Scanned: every Envoy's log
(Tollgate's own lines at every level, the access log, Envoy's lines at info and above), its
/stats and /stats/prometheus, and every response an Envoy gave through `conftest.post`.

Named test_zz_ so that it runs after every other e2e module and scans what they all produced; it
also makes its own traffic, so it proves something when run alone. Envoy's own debug and trace
lines are not scanned: at those levels Envoy dumps request headers by design (a production proxy
never runs there), which is Envoy's choice, not something Tollgate writes."""

import json
import re
import uuid

import yaml

import conftest
from conftest import post
from harness import ENVOY_CONFIG, STARTED, Envoy


# Keys the e2e tests send as clients (the SDKs' api_key, Authorization, x-api-key, api-key).
CLIENT_KEYS = ["sk-anything", "sk-test", "sk-ant-test", "sk-client", "sk-ant-client", "sk-client-key", "client-key",
               "sk-load-client"]
RUN = uuid.uuid4().hex[:12]
SCAN_CLIENT_KEY = f"sk-client-scan-{RUN}"
SCAN_PROMPT = f"the-prompt-secret-{RUN}"


def provider_keys(envoy: Envoy) -> set[str]:
    """Every key the Envoy's configuration gives a Tollgate filter: VM environment variables
    and `api_key.value`s in the filter configuration."""
    keys = set()
    config = yaml.safe_load((envoy.workdir / "envoy.yaml").read_text())

    def walk(node):
        if isinstance(node, dict):
            if "vm_config" in node:
                keys.update(node["vm_config"].get("environment_variables", {}).get("key_values", {}).values())
            value = node.get("configuration", {}).get("value") if isinstance(node.get("configuration"), dict) else None
            if isinstance(value, str) and value.strip().startswith("{"):
                for provider in json.loads(value).get("providers", {}).values():
                    if "value" in provider.get("api_key", {}):
                        keys.add(provider["api_key"]["value"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(config)
    keys.discard("TOLLGATE_TEST_FAULTS")
    return {k for k in keys if k and k not in ("request_body", "replace_request_body", "send_reply", "panic")}


ENTRY = re.compile(r"^\[[^\]]+\]\[\d+\]\[(\w+)\]\[(\w+)\]")


def scanned_log(text: str) -> str:
    """The log without Envoy's own debug and trace entries (entries span continuation lines)."""
    kept, keep = [], True
    for line in text.splitlines():
        match = ENTRY.match(line)
        if match:
            level, component = match.groups()
            keep = level not in ("debug", "trace") or component == "wasm"
        elif line.startswith("{"):
            keep = True  # an access-log line
        if keep:
            kept.append(line)
    return "\n".join(kept)


def envoy_outputs(envoy: Envoy) -> dict[str, str]:
    outputs = {"log": scanned_log(envoy.log())}
    for path, name in (("/stats", "stats.txt"), ("/stats/prometheus", "prometheus.txt")):
        saved = envoy.workdir / name
        if envoy.process.poll() is None:
            outputs[path] = envoy.admin(path)[1]
        elif saved.exists():
            outputs[path] = saved.read_text()
    return outputs


def test_zz_no_secret_appears_in_anything_envoy_or_tollgate_produced(mock):
    config = json.loads(yaml.safe_load(ENVOY_CONFIG.read_text())["static_resources"]["listeners"][0]["filter_chains"][0]
                        ["filters"][0]["typed_config"]["http_filters"][1]["typed_config"]["config"]["configuration"]["value"])
    config["log_level"] = "debug"
    config["tenant"] = {"api_key": True}
    own = Envoy(mock.port, filter_config=config, log_level="debug")
    try:
        chat = {"messages": [{"role": "user", "content": SCAN_PROMPT}]}
        messages = {"max_tokens": 8, "messages": [{"role": "user", "content": SCAN_PROMPT}]}
        traffic = [
            ("/v1/chat/completions", {**chat, "model": "fast"}, "authorization", f"Bearer {SCAN_CLIENT_KEY}"),
            ("/v1/chat/completions", {**chat, "model": "fast", "stream": True}, "authorization", f"Bearer {SCAN_CLIENT_KEY}"),
            ("/v1/chat/completions", {**chat, "model": "gpt-4o-mini"}, "x-api-key", SCAN_CLIENT_KEY),
            ("/v1/chat/completions", {**chat, "model": "smart"}, "api-key", SCAN_CLIENT_KEY),
            ("/v1/messages", {**messages, "model": "claude-haiku-4-5", "stream": True}, "x-api-key", SCAN_CLIENT_KEY),
            ("/v1/messages", {**messages, "model": "fast"}, "x-api-key", SCAN_CLIENT_KEY),
            ("/v1/chat/completions", {**chat, "model": "gpt-4.1"}, "authorization", f"Bearer {SCAN_CLIENT_KEY}"),
        ]
        for path, body, header, value in traffic:
            response = post(own.port, path, body, headers={"content-type": "application/json", header: value})
            assert response.status in (200, 403), response.body[:200]
        bad = json.dumps({"model": "fast", "messages": [{"role": "user", "content": SCAN_PROMPT}]})[:-3]
        assert post(own.port, "/v1/chat/completions", bad, headers={"authorization": f"Bearer {SCAN_CLIENT_KEY}"}).status == 400
        own_log = own.log()
        assert "wasm log" in own_log and " usage {" in own_log, "Tollgate's debug lines were written (and scanned)"
        # The scan would see a key written anywhere it looks: Envoy's own debug dump has one.
        assert SCAN_CLIENT_KEY in own_log and SCAN_CLIENT_KEY not in scanned_log(own_log)
    finally:
        own.stop()

    secrets = {SCAN_CLIENT_KEY: "a client key", SCAN_PROMPT: "prompt text"}
    secrets.update({key: "a client key" for key in CLIENT_KEYS})
    secrets.update({match: "a guardrail match" for match in conftest.GUARDRAIL_MATCHES})
    for envoy in STARTED:
        secrets.update({key: "a provider key" for key in provider_keys(envoy)})
    assert "sk-demo-openai" in secrets and "sk-ant-demo" in secrets

    found = []
    for envoy in STARTED:
        for where, text in envoy_outputs(envoy).items():
            for secret, kind in secrets.items():
                if secret in text:
                    line = next(line for line in text.splitlines() if secret in line)
                    found.append(f"{kind} in {envoy.workdir.name} {where}: {line[:200]}")
    for response in conftest.RESPONSES:
        text = json.dumps(response.headers) + response.body.decode(errors="replace")
        for secret, kind in secrets.items():
            if secret in text and kind != "prompt text":  # the mock answers with words of its own, never the prompt
                found.append(f"{kind} in a response: {text[:200]}")
    assert found == [], "\n".join(found)
    assert len(STARTED) >= 1 and conftest.RESPONSES
