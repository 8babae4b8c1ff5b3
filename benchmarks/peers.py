"""The peers, set up as their users would: imported only by the benchmarks.

* ``otel_sdk``: OpenTelemetry SDK ``TracerProvider()`` with no span processor,
  ``@tracer.start_as_current_span("op")`` used as a decorator (spans are created, recorded
  and ended, then go nowhere).
* ``otel_sdk_inmemory``: the same with a ``SimpleSpanProcessor(InMemorySpanExporter())``
  (each ended span is exported synchronously into a list; the list is emptied every round).
* ``otel_noop``: the OpenTelemetry API's ``NoOpTracer`` (what instrumented libraries cost
  when no SDK is installed).
* ``structlog``: ``structlog.contextvars.bound_contextvars(user_id="u")`` as a decorator
  (binds one context variable; sync functions only, a contextlib decorator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Peer:
    """A peer decorator and what empties its output (None when it keeps nothing)."""

    def __init__(self, decorate: Callable[[Any], Any], out: Any = None) -> None:
        self.decorate = decorate
        self.out = out


def otel_sdk() -> Peer:
    tracer = TracerProvider().get_tracer("flext-bench")
    return Peer(tracer.start_as_current_span("op"))


def otel_sdk_inmemory() -> Peer:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("flext-bench")
    return Peer(tracer.start_as_current_span("op"), out=exporter)


def otel_noop() -> Peer:
    tracer = trace.NoOpTracer()
    return Peer(tracer.start_as_current_span("op"))


def structlog_bound() -> Peer:
    import structlog

    return Peer(structlog.contextvars.bound_contextvars(user_id="u"))


PEERS: dict[str, Callable[[], Peer]] = {
    "otel_sdk": otel_sdk,
    "otel_sdk_inmemory": otel_sdk_inmemory,
    "otel_noop": otel_noop,
    "structlog": structlog_bound,
}


class Clearing:
    """Adapts an exporter to the ``out.clear()`` the benchmark loops call each round."""

    def __init__(self, exporter: Any) -> None:
        self.clear = exporter.clear
