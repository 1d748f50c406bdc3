"""deploy/: Tollgate for Istio and Envoy Gateway. Each manifest carries envoy/envoy.yaml's policy,
which the filter's own parser (`tollgate check-config`) accepts given exactly the keys the manifest
hands the Wasm VM. Then what each platform makes of its manifest (the PluginConfig its control
plane generates, by its source code: Istio's pilot/pkg/model/extensions.go, Envoy Gateway's
internal/xds/translator/wasm.go) runs in a real Envoy: without allow_on_headers_stop_iteration,
which neither a WasmPlugin nor an EnvoyExtensionPolicy can set, every inspected request stalls and
reaches no provider; deploy/istio/envoyfilter.yaml's filter, which sets it, serves."""

import json
import os
import subprocess

import pytest
import yaml

from conftest import mock_last, post, wait_until
from harness import ENVOY_CONFIG, REPO, Envoy, Mock, release_binary, wasm_module

DEPLOY = REPO / "deploy"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


def load(path: str) -> dict:
    return yaml.safe_load((DEPLOY / path).read_text())


def shipped_filter() -> dict:
    manager = yaml.safe_load(ENVOY_CONFIG.read_text())["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return next(f for f in manager["typed_config"]["http_filters"] if f["name"] == "tollgate")


SHIPPED_POLICY = json.loads(shipped_filter()["typed_config"]["config"]["configuration"]["value"])


def as_protobuf_struct(value):
    """A WasmPlugin's pluginConfig as Istio hands it to the filter: a google.protobuf.Struct (every
    number a double) printed by protojson, which writes integral doubles without a fraction."""
    if isinstance(value, dict):
        return {k: as_protobuf_struct(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_protobuf_struct(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        double = float(value)
        return int(double) if double.is_integer() and abs(double) < 1e21 else double
    return value


def istio_wasmplugin():
    """(policy text, VM environment names) of deploy/istio/wasmplugin.yaml."""
    spec = load("istio/wasmplugin.yaml")["spec"]
    return json.dumps(as_protobuf_struct(spec["pluginConfig"])), [e["name"] for e in spec["vmConfig"]["env"]]


def istio_envoyfilter_config() -> dict:
    """The Wasm PluginConfig that deploy/istio/envoyfilter.yaml adds as an extension config."""
    patches = load("istio/envoyfilter.yaml")["spec"]["configPatches"]
    extension = next(p for p in patches if p["applyTo"] == "EXTENSION_CONFIG")["patch"]["value"]
    return extension["typed_config"]["config"]


def istio_envoyfilter():
    config = istio_envoyfilter_config()
    return config["configuration"]["value"], config["vm_config"]["environment_variables"]["host_env_keys"]


def envoy_gateway():
    wasm = load("envoy-gateway/envoyextensionpolicy.yaml")["spec"]["wasm"][0]
    return json.dumps(wasm["config"]), wasm["env"]["hostKeys"]


MANIFESTS = {
    "istio/wasmplugin.yaml": istio_wasmplugin,
    "istio/envoyfilter.yaml": istio_envoyfilter,
    "envoy-gateway/envoyextensionpolicy.yaml": envoy_gateway,
}


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_each_manifest_carries_the_shipped_policy_and_its_parser_accepts_it(manifest, tmp_path):
    policy, vm_env = MANIFESTS[manifest]()
    assert json.loads(policy) == SHIPPED_POLICY, f"deploy/{manifest}: copy envoy/envoy.yaml's policy into it"
    path = tmp_path / "policy.json"
    path.write_text(policy)
    # Only what the manifest gives the VM: every api_key.env of the policy must be among it.
    environment = {"PATH": os.environ["PATH"], **{name: "sk-placeholder-0123456789" for name in vm_env}}
    result = subprocess.run([str(release_binary("tollgate")), "check-config", str(path)],
                            capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok"


def test_the_manifests_name_the_filter_as_envoy_yaml_does():
    assert load("istio/wasmplugin.yaml")["spec"]["pluginName"] == shipped_filter()["typed_config"]["config"]["root_id"]
    assert istio_envoyfilter_config()["root_id"] == shipped_filter()["typed_config"]["config"]["root_id"]
    assert load("envoy-gateway/envoyextensionpolicy.yaml")["spec"]["wasm"][0]["rootID"] == shipped_filter()["typed_config"]["config"]["root_id"]


def as_the_istio_agent_hands_it_over(config: dict) -> dict:
    """The istio-agent fetches a remote module and gives Envoy a local file (pkg/wasm/convert.go)."""
    config = json.loads(json.dumps(config))
    config["vm_config"]["code"] = {"local": {"filename": str(wasm_module())}}
    return config


def generated_by_istio_from_the_wasmplugin() -> dict:
    """What istiod makes of wasmplugin.yaml (convertToWasmPluginWrapper): name, root_id, the
    pluginConfig as JSON, the VM's host keys; no allow_on_headers_stop_iteration, which a
    WasmPlugin has no field for. (Its ISTIO_META_* pull settings in key_values are left out.)"""
    document = load("istio/wasmplugin.yaml")
    spec = document["spec"]
    policy, host_keys = istio_wasmplugin()
    return {
        "name": f"{document['metadata']['namespace']}.{document['metadata']['name']}",
        "root_id": spec["pluginName"],
        "configuration": {"@type": STRING_VALUE, "value": policy},
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm_module())}},
                      "environment_variables": {"host_env_keys": host_keys}},
    }


def generated_by_envoy_gateway() -> dict:
    """What Envoy Gateway makes of envoyextensionpolicy.yaml (wasmConfig): the config as raw JSON,
    root_id, fail_open, the VM's host keys, the module served by Envoy Gateway (a local file
    here); no allow_on_headers_stop_iteration, which the translator never sets."""
    document = load("envoy-gateway/envoyextensionpolicy.yaml")
    wasm = document["spec"]["wasm"][0]
    policy, host_keys = envoy_gateway()
    return {
        "name": wasm["name"],
        "root_id": wasm["rootID"],
        "fail_open": wasm["failOpen"],
        "configuration": {"@type": STRING_VALUE, "value": policy},
        "vm_config": {"vm_id": f"envoyextensionpolicy/{document['metadata']['namespace']}/{document['metadata']['name']}/wasm/0",
                      "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm_module())}},
                      "environment_variables": {"host_env_keys": host_keys}},
    }


def envoy_with(plugin_config: dict, tmp_path, idle_timeout: str = "300s"):
    """envoy/envoy.yaml with its Tollgate filter configured as `plugin_config`, and the stream idle
    timeout (Envoy's, which ends a stalled request) set to `idle_timeout`."""
    config = yaml.safe_load(ENVOY_CONFIG.read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["stream_idle_timeout"] = idle_timeout
    next(f for f in manager["http_filters"] if f["name"] == "tollgate")["typed_config"]["config"] = plugin_config
    template = tmp_path / "envoy.yaml"
    template.write_text(yaml.safe_dump(config))
    return template


CHAT = {"model": "fast", "messages": [{"role": "user", "content": "Hello through the gateway"}]}


@pytest.fixture
def gateway_env(monkeypatch):
    """The provider keys and the budgets' admin token in Envoy's own environment, where
    host_env_keys reads them (a gateway pod gets them from a Secret)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-the-gateway-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-gateway-env")
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "admin-token-from-the-gateway-env")


@pytest.mark.parametrize("generated", [generated_by_istio_from_the_wasmplugin, generated_by_envoy_gateway],
                         ids=["istio-wasmplugin", "envoy-gateway"])
def test_without_the_flag_a_request_stalls_until_envoy_gives_up_and_reaches_no_provider(generated, gateway_env, tmp_path):
    provider = Mock()
    envoy = Envoy(provider.port, template=envoy_with(generated(), tmp_path, idle_timeout="1s"))
    try:
        response = post(envoy.port, "/v1/chat/completions", CHAT)
        # Nothing moved after the body arrived: Envoy's stream idle timeout ended the request.
        assert (response.status, response.body) == (504, b"stream timeout")
        assert mock_last(provider) is None, "the request never left Envoy"
        entry = wait_until(envoy.access_log)[-1]  # flushed every 50 ms
        assert entry["flags"] == "SI" and entry["tollgate"] is None
        assert envoy.vm_failures() == []
    finally:
        envoy.stop()
        provider.stop()


def test_the_envoyfilter_sets_the_flag_and_its_filter_serves_with_the_gateways_keys(gateway_env, tmp_path):
    config = as_the_istio_agent_hands_it_over(istio_envoyfilter_config())
    assert config["allow_on_headers_stop_iteration"] is True
    provider = Mock()
    envoy = Envoy(provider.port, template=envoy_with(config, tmp_path))
    try:
        response = post(envoy.port, "/v1/chat/completions", CHAT, headers={
            "content-type": "application/json", "authorization": "Bearer sk-client"})
        assert response.status == 200, response.body
        assert response.header("x-tollgate-provider") == "openai"
        assert response.header("x-tollgate-cost-usd") not in (None, "unknown", "unpriced")
        upstream = mock_last(provider)
        assert upstream["headers"]["authorization"] == "Bearer sk-openai-from-the-gateway-env"
        assert json.loads(upstream["body"])["model"] == "gpt-4o-mini"
        assert envoy.vm_failures() == []
    finally:
        envoy.stop()
        provider.stop()
