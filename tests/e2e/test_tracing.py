"""envoy/tracing.yaml through a real Envoy: each request's span reaches an OTLP/HTTP collector (a
listener inside the test, decoding with the official OpenTelemetry protobuf classes) carrying the
gen_ai.* attributes, cost and tenant taken from Tollgate's usage record, for complete answers,
streams and refused requests (not for streams cut short: see below). The file stays envoy.yaml
plus tracing."""

import copy
import http.client
import http.server
import json
import socket
import threading
import time
import uuid

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import post
from harness import REPO, Envoy
from test_usage import record_of

TRACING_CONFIG = REPO / "envoy" / "tracing.yaml"
ENVOY_CONFIG = REPO / "envoy" / "envoy.yaml"
MESSAGES = [{"role": "user", "content": "Trace this request, please."}]
# Span attribute -> where its value is in the usage record.
FROM_RECORD = {
    "gen_ai.provider.name": ("provider",),
    "gen_ai.request.model": ("model_requested",),
    "gen_ai.response.model": ("model_served",),
    "gen_ai.usage.input_tokens": ("tokens", "input", "tokens"),
    "gen_ai.usage.output_tokens": ("tokens", "output", "tokens"),
    "tollgate.cost_usd": ("cost_usd",),
    "tollgate.tenant": ("tenant",),
}


class OtlpCollector:
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self):
        self.requests = []
        self.content_types = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self._body()
                if self.path == "/v1/traces":
                    collector.content_types.append(self.headers.get("content-type"))
                    collector.requests.append(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def _body(self):
                if self.headers.get("content-length") is not None:
                    return self.rfile.read(int(self.headers["content-length"]))
                body = b""  # Envoy's exporter sends chunked bodies
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    body += self.rfile.read(size)
                    self.rfile.readline()
                    if size == 0:
                        return body

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self):
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        yield resource, span

    def span_of(self, request_id, timeout=15.0):
        """The span of the request sent with `x-request-id: request_id`, and its service's resource."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for resource, span in self.spans():
                if attributes(span).get("guid:x-request-id") == request_id:
                    return resource, span
            time.sleep(0.05)
        raise AssertionError(f"no span for {request_id} among {sum(1 for _ in self.spans())}")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def attributes(span):
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def typed_attributes(span):
    return {a.key: a.value.WhichOneof("value") for a in span.attributes}


@pytest.fixture(scope="module")
def collector():
    receiver = OtlpCollector()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def traced_envoy(mock, collector):
    ports = {"mock_provider": mock.port, "openai": mock.port, "anthropic": mock.port, "otel_collector": collector.port}
    proxy = Envoy(ports, template=TRACING_CONFIG)
    yield proxy
    proxy.stop()


def expected_from_record(record):
    """The attributes the span must carry: every record field that has a value, as a string."""
    expected = {}
    for attribute, path in FROM_RECORD.items():
        value = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            expected[attribute] = str(value)
    return expected


def gen_ai_attributes(span):
    return {k: v for k, v in attributes(span).items() if k in FROM_RECORD}


def chat(envoy, body, request_id, extra_headers=None, path="/v1/chat/completions"):
    headers = {"content-type": "application/json", "x-request-id": request_id, **(extra_headers or {})}
    return post(envoy.port, path, body, headers=headers)


@pytest.mark.parametrize("model, provider, served", [("fast", "openai", "gpt-4o-mini-2024-07-18"),
                                                      ("smart", "anthropic", "claude-haiku-4-5")])
def test_span_carries_models_tokens_and_cost_of_the_response(traced_envoy, collector, model, provider, served):
    request_id = str(uuid.uuid4())
    response = chat(traced_envoy, {"model": model, "messages": MESSAGES}, request_id)
    assert response.status == 200, response.body
    resource, span = collector.span_of(request_id)
    got = attributes(span)
    assert resource["service.name"] == "tollgate"
    assert got["gen_ai.provider.name"] == provider == response.header("x-tollgate-provider")
    assert got["gen_ai.request.model"] == model
    assert got["gen_ai.response.model"] == response.header("x-tollgate-model")
    assert got["gen_ai.response.model"].startswith(served)
    assert got["gen_ai.usage.input_tokens"] == response.header("x-tollgate-input-tokens")
    assert got["gen_ai.usage.output_tokens"] == response.header("x-tollgate-output-tokens")
    assert got["tollgate.cost_usd"] == response.header("x-tollgate-cost-usd")
    assert response.header("x-tollgate-cost-usd") not in (None, "unknown", "unpriced")
    _, record = record_of(traced_envoy, request_id)
    assert gen_ai_attributes(span) == expected_from_record(record)
    # Envoy 1.40's custom tags are strings, numbers included.
    assert typed_attributes(span)["gen_ai.usage.input_tokens"] == "string_value"


def test_stream_span_has_the_usage_read_from_the_stream(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    response = chat(traced_envoy, {"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES}, request_id)
    assert response.status == 200
    _, span = collector.span_of(request_id)
    _, record = record_of(traced_envoy, request_id)
    assert record["streaming"] is True and record["outcome"] == "complete"
    assert record["tokens"]["output"]["source"] == "provider"
    assert gen_ai_attributes(span) == expected_from_record(record)
    assert {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "tollgate.cost_usd"} <= set(attributes(span))


def cut_stream_span_and_record(traced_envoy, collector, request_id):
    _, span = collector.span_of(request_id)
    _, record = record_of(traced_envoy, request_id)
    assert record["outcome"] == "truncated"
    assert record["tokens"]["output"]["tokens"] >= 0 and record["tokens"]["input"]["tokens"] > 0
    return span, record


# A stream cut short (upstream reset, client gone) gets its record in on_log. Envoy 1.40 finishes
# the request's span before it runs the access-log handlers, the Wasm on_log among them
# (ActiveStream::completeRequest, then FilterManager::log), so such a span carries none of
# Tollgate's attributes; the access log, which runs after on_log, has the whole record. If one
# day Envoy tags these spans, these tests fail: update the README's "Traces" limitation.
def test_stream_cut_by_the_upstream_has_its_record_in_the_access_log_not_the_span(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        chat(traced_envoy, {"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES}, request_id,
             {"x-mock-reset-after-events": "3"})
    span, record = cut_stream_span_and_record(traced_envoy, collector, request_id)
    assert record["tokens"]["output"]["source"] == "estimated"
    assert gen_ai_attributes(span) == {}


def test_stream_abandoned_by_the_client_has_its_record_in_the_access_log_not_the_span(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    with socket.create_connection(("127.0.0.1", traced_envoy.port), timeout=10) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      f"x-request-id: {request_id}\r\nx-mock-chunk-delay-ms: 200\r\ncontent-length: {len(body)}\r\n\r\n"
                      f"{body}").encode())
        received = b""
        while b"data: " not in received:
            chunk = sock.recv(4096)
            assert chunk, "the stream started"
            received += chunk
    span, _ = cut_stream_span_and_record(traced_envoy, collector, request_id)
    assert gen_ai_attributes(span) == {}


def test_refused_request_has_its_model_and_no_usage(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    response = chat(traced_envoy, {"model": "gpt-4.1", "messages": MESSAGES}, request_id)
    assert response.status == 403
    _, span = collector.span_of(request_id)
    got = attributes(span)
    assert got["gen_ai.request.model"] == "gpt-4.1"
    assert "gen_ai.usage.input_tokens" not in got and "tollgate.cost_usd" not in got
    _, record = record_of(traced_envoy, request_id)
    assert gen_ai_attributes(span) == expected_from_record(record)


def test_upstream_error_span_has_the_models_and_no_usage(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    response = chat(traced_envoy, {"model": "fast", "messages": MESSAGES}, request_id, {"x-mock-status": "429"})
    assert response.status == 429
    _, span = collector.span_of(request_id)
    _, record = record_of(traced_envoy, request_id)
    assert record["outcome"] == "upstream_error"
    assert gen_ai_attributes(span) == expected_from_record(record)
    assert attributes(span)["gen_ai.provider.name"] == "openai"
    assert "gen_ai.usage.input_tokens" not in attributes(span)


def test_non_llm_requests_get_no_gen_ai_attributes(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    post(traced_envoy.port, "/v1/models", "", headers={"x-request-id": request_id})
    _, span = collector.span_of(request_id)
    assert gen_ai_attributes(span) == {}
    entry, record = record_of(traced_envoy, request_id)
    assert record is None and entry["tollgate"] is None, "the access log says null"


def test_exporter_sends_protobuf(traced_envoy, collector):
    request_id = str(uuid.uuid4())
    chat(traced_envoy, {"model": "fast", "messages": MESSAGES}, request_id)
    collector.span_of(request_id)
    assert set(collector.content_types) == {"application/x-protobuf"}


def without_tracing(config):
    """tracing.yaml less what it adds to envoy.yaml."""
    config = copy.deepcopy(config)
    config.pop("layered_runtime")
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager.pop("tracing")
    manager.pop("request_id_extension")
    config["static_resources"]["clusters"] = [c for c in config["static_resources"]["clusters"]
                                              if c["name"] != "otel_collector"]
    return config


def test_tracing_config_is_envoy_yaml_plus_tracing():
    tracing = yaml.safe_load(TRACING_CONFIG.read_text())
    assert without_tracing(tracing) == yaml.safe_load(ENVOY_CONFIG.read_text()), \
        "envoy/tracing.yaml must be envoy/envoy.yaml plus tracing: copy envoy.yaml's change into it"
    manager = tracing["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    tags = {t["tag"]: t["value"] for t in manager["tracing"]["custom_tags"]}
    assert set(tags) == set(FROM_RECORD)
    for value in tags.values():
        assert value.startswith("%FILTER_STATE(wasm.tollgate.") and value.endswith(":PLAIN)%")


def otlp_grpc_variant():
    """The README's OTLP/gRPC alternative (port 4317) of tracing.yaml; tests/e2e/test_envoy_versions.py
    validates it on every supported Envoy, like the shipped files."""
    config = yaml.safe_load(TRACING_CONFIG.read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    otel = manager["tracing"]["provider"]["typed_config"]
    otel.pop("http_service")
    otel["grpc_service"] = {"envoy_grpc": {"cluster_name": "otel_collector"}, "timeout": "1s"}
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "otel_collector")
    cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = 4317
    return config
