"""The bridge over the real protocol: OTLP/HTTP to a receiver on 127.0.0.1, two services.

The receiver is a small ``http.server`` decoding ``ExportTraceServiceRequest``; the services
are the real uvicorn apps of ``ctx_servers`` talking over real HTTP.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.instrumentation.httpx")

import httpx
from ctx_servers import asgi_service_a, asgi_service_b, uvicorn_server
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from flext_ctx_aspects import timed, with_correlation
from flext_ctx_aspects.integrations.httpx import instrument_client
from flext_ctx_aspects.integrations.opentelemetry import enable_opentelemetry

pytestmark = pytest.mark.network


class Receiver:
    """Collects the spans of every OTLP/HTTP export request it receives."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {
                            a.key: a.value.string_value or a.value.int_value
                            for a in span.attributes
                        }
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex() or None,
                                "scope": scope_spans.scope.name,
                                "attributes": attributes,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                            }
                        )


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[str, Receiver]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.add(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def otlp() -> Iterator[tuple[Receiver, Any]]:
    with otlp_receiver() as (endpoint, receiver):
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        bridge = enable_opentelemetry(provider, settle_s=0.05)
        try:
            yield receiver, (bridge, provider)
        finally:
            bridge()
            provider.shutdown()


@pytest.fixture
def services() -> Iterator[tuple[str, str]]:
    with (
        uvicorn_server(asgi_service_b()) as b_url,
        uvicorn_server(asgi_service_a(b_url), lifespan="on") as a_url,
    ):
        yield a_url, b_url


def _flush(receiver: Receiver, handles: Any, count: int, timeout: float = 10.0) -> list[Any]:
    bridge, provider = handles
    deadline = time.monotonic() + timeout
    while True:
        bridge.flush()
        provider.force_flush()
        with receiver.lock:
            found = list(receiver.spans)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_two_services_one_trace_over_otlp(
    otlp: tuple[Receiver, Any], services: tuple[str, str]
) -> None:
    receiver, handles = otlp
    a_url, _ = services
    response = httpx.get(f"{a_url}/call", timeout=20)
    assert response.status_code == 200
    body = response.json()
    found = _flush(receiver, handles, 2)
    by_service = {s["attributes"].get("service.name"): s for s in found}
    assert set(by_service) == {"service-a", "service-b"}
    span_a, span_b = by_service["service-a"], by_service["service-b"]
    assert len({s["trace_id"] for s in found}) == 1
    assert span_a["parent"] is None
    # B's request is a child of A's request scope, the parent-id A sent in traceparent
    assert span_b["parent"] == span_a["span_id"]
    assert body["b"]["traceparent_in"].split("-")[1] == span_a["trace_id"]
    assert body["b"]["traceparent_in"].split("-")[2] == span_a["span_id"]
    # Wall-clock times come from the monotonic clock plus an offset re-read every second:
    # two records finished across a re-read may differ by the clock's drift (microseconds).
    slack = 1_000_000
    assert span_a["start"] - slack <= span_b["start"] <= span_b["end"] <= span_a["end"] + slack


def test_otel_instrumented_httpx_inside_our_scope(
    otlp: tuple[Receiver, Any], services: tuple[str, str]
) -> None:
    receiver, handles = otlp
    _, b_url = services
    _, provider = handles
    client = httpx.Client(timeout=20)
    HTTPXClientInstrumentor().instrument_client(client, tracer_provider=provider)
    # our own propagation too: OTel's transport writes traceparent last, it must agree
    instrument_client(client, allowed_destinations=[b_url.removeprefix("http://")])
    reports: list[dict[str, Any]] = []

    @with_correlation
    @timed(name="checkout")
    def checkout() -> None:
        reports.append(client.get(f"{b_url}/work").json())

    try:
        checkout()
    finally:
        HTTPXClientInstrumentor().uninstrument_client(client)
        client.close()
    found = _flush(receiver, handles, 3)
    ours = next(s for s in found if s["name"] == "checkout")
    http_span = next(s for s in found if s["scope"].startswith("opentelemetry.instrumentation"))
    served = next(s for s in found if s["attributes"].get("service.name") == "service-b")
    assert len({s["trace_id"] for s in found}) == 1  # one trace id end to end
    assert http_span["parent"] == ours["span_id"]
    inbound = reports[0]["traceparent_in"].split("-")
    assert inbound[1] == ours["trace_id"]
    assert inbound[2] == http_span["span_id"]
    assert served["parent"] == http_span["span_id"]


def test_our_function_inside_an_otel_span(otlp: tuple[Receiver, Any]) -> None:
    receiver, handles = otlp
    _, provider = handles
    tracer = provider.get_tracer("app")

    @with_correlation
    @timed(name="ours")
    def ours() -> None:
        with tracer.start_as_current_span("otel-inner"):
            pass

    with tracer.start_as_current_span("otel-outer"):
        ours()
    found = {s["name"]: s for s in _flush(receiver, handles, 3)}
    assert len({s["trace_id"] for s in found.values()}) == 1
    assert found["ours"]["parent"] == found["otel-outer"]["span_id"]
    assert found["otel-inner"]["parent"] == found["ours"]["span_id"]


def test_under_opentelemetry_instrument_one_trace_id_per_request() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    instrument_cli = Path(sys.executable).with_name("opentelemetry-instrument")
    if not instrument_cli.exists():
        pytest.skip("opentelemetry-instrument is not installed")
    with otlp_receiver() as (endpoint, receiver), uvicorn_server(asgi_service_b()) as b_url:
        env = {
            **os.environ,
            "OTEL_SERVICE_NAME": "service-a",
            "OTEL_TRACES_EXPORTER": "otlp_proto_http",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        process = subprocess.Popen(
            [str(instrument_cli), sys.executable, str(here / "otel_service_a.py"), b_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert process.stdout is not None
            a_url = process.stdout.readline().strip()
            assert a_url.startswith("http://127.0.0.1:"), a_url
            reports = [httpx.get(f"{a_url}/call", timeout=20).json() for _ in range(3)]
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with receiver.lock:
                found = list(receiver.spans)
            if len(found) >= 6:
                break
            time.sleep(0.05)
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in found:
        by_trace.setdefault(span["trace_id"], []).append(span)
    assert len(by_trace) == 3  # one trace per request, not two
    for report in reports:
        inbound = report["b"]["traceparent_in"].split("-")
        spans_of_request = by_trace[inbound[1]]
        # our request span (A) and OTel's httpx client span, one trace id
        http_span = next(s for s in spans_of_request if "instrumentation" in s["scope"])
        ours = next(s for s in spans_of_request if s["scope"] == "flext_ctx_aspects")
        assert http_span["parent"] == ours["span_id"]
        assert inbound[2] == http_span["span_id"]  # OTel's transport wrote traceparent last
        assert report["a"]["outbound"]["traceparent"].split("-")[1] == inbound[1]
