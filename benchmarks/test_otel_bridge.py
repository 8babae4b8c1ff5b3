"""``@timed`` with the OpenTelemetry bridge on, beside OpenTelemetry's own span decorator.

Both sides use an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that
drops what it receives, so what is measured is making spans, not shipping them. The bridge's
round includes converting its records into spans (``_drain``), which it otherwise does on
its background thread, so the comparison counts the whole cost. OpenTelemetry's rounds run
with OTel's runtime context unwrapped (as without the bridge).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from flext_ctx_aspects import timed
from flext_ctx_aspects.integrations.opentelemetry import OpenTelemetryBridge, enable_opentelemetry
from flext_ctx_aspects.sinks import registered_sinks

CALLS = 500


class DroppingExporter(SpanExporter):
    """Accepts every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    return provider


def work(x: int) -> int:
    return x


@pytest.fixture
def bridge() -> Iterator[OpenTelemetryBridge]:
    handle = enable_opentelemetry(_provider(), settle_s=3600)  # drained by the rounds
    try:
        yield handle
    finally:
        handle()


@pytest.mark.benchmark(group="otel-bridge")
@pytest.mark.variants("bare", "timed_bridge", "otel_decorator")
def test_otel_bridge(bench: Any, bridge: OpenTelemetryBridge, variant: str) -> None:
    def build(variant: str) -> tuple[Any, int]:
        times = range(CALLS)
        if variant == "bare":
            func: Any = work

            def loop() -> None:
                for _ in times:
                    func(1)

            return loop, CALLS
        if variant == "timed_bridge":
            func = timed(work)
            drain = bridge.sink._drain
            assert func(1) == 1
            drain(force=True)
            assert bridge.sink in registered_sinks()

            def bridged() -> None:
                for _ in times:
                    func(1)
                drain(force=True)

            return bridged, CALLS
        tracer = _provider().get_tracer("flext-bench")
        func = tracer.start_as_current_span("op")(work)
        wrapped = otel_context._RUNTIME_CONTEXT
        inner = getattr(wrapped, "inner", wrapped)

        def otel_loop() -> None:
            otel_context._RUNTIME_CONTEXT = inner
            try:
                for _ in times:
                    func(1)
            finally:
                otel_context._RUNTIME_CONTEXT = wrapped

        return otel_loop, CALLS

    bench.measure(variant, build)
