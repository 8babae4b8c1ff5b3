"""Propagation: writing the context into outbound headers and reading inbound ones. Per call.

Group ``propagation``: ``bare`` calls a function that returns its argument (the call
baseline); ``inject`` writes the current context (correlation id, parent, service, request
id; W3C ``traceparent``; baggage) into a fresh dict; ``extract`` reads and validates an
inbound header set of the same shape; ``extract_scope`` also enters and leaves the request
scope it opens. The peer: OpenTelemetry's global propagator (W3C Trace Context + Baggage),
``otel_inject`` inside a span and ``otel_extract`` of ``traceparent`` + ``baggage``.

The public API is ``flext_ctx_aspects.propagation.inject`` / ``extract``; where it does not
exist (older trees) the functions of ``propagation/headers.py`` are measured instead, and
``extra_info["api"]`` says which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider

from flext_ctx_aspects import FlextContext, _state

CALLS = 500

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INBOUND = {
    "X-Correlation-Id": TRACE_ID,
    "X-Service-Name": "upstream",
    "X-Request-Id": "7f1c2a9d8e6b4c3a9f0e1d2c3b4a5968",
    "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
    "baggage": "tenant=acme",
}
OTEL_INBOUND = {"traceparent": INBOUND["traceparent"], "baggage": INBOUND["baggage"]}


def _library_api() -> tuple[str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]:
    try:
        from flext_ctx_aspects.propagation import extract, inject
    except ImportError:
        from flext_ctx_aspects.propagation import headers

        def inject_old() -> Any:
            return headers.outbound_headers(_state.get())

        def extract_old() -> Any:
            return headers.read_inbound(INBOUND, strict=False, trusted=False)

        def scope_old() -> Any:
            inbound = headers.read_inbound(INBOUND, strict=False, trusted=False)
            token = _state.push(headers.apply_inbound(_state.get(), inbound))
            _state.pop(token)

        return "headers.py", inject_old, extract_old, scope_old

    def inject_new() -> Any:
        return inject({})

    def extract_new() -> Any:
        return extract(INBOUND)

    def scope_new() -> Any:
        with extract(INBOUND):
            pass

    return "propagation.inject/extract", inject_new, extract_new, scope_new


@pytest.fixture
def outbound_context() -> Iterator[None]:
    with (
        FlextContext.Correlation.new_correlation(),
        FlextContext.Service.service_context("svc", "1"),
        FlextContext.Request.request_context(user_id="u", operation_name="op"),
    ):
        yield


@pytest.fixture
def otel_span() -> Iterator[None]:
    tracer = TracerProvider().get_tracer("flext-bench")
    with tracer.start_as_current_span("op"):
        yield


def _noop(carrier: Any = None) -> Any:
    return carrier


@pytest.mark.benchmark(group="propagation")
@pytest.mark.variants("bare", "inject", "extract", "extract_scope", "otel_inject", "otel_extract")
def test_propagation(bench: Any, request: pytest.FixtureRequest, variant: str) -> None:
    api, inject, extract, extract_scope = _library_api()
    info: dict[str, Any] = {}
    times = range(CALLS)

    def build(variant: str) -> tuple[Any, int]:
        if variant == "bare":
            operation: Callable[[], Any] = _noop
        elif variant == "inject":
            request.getfixturevalue("outbound_context")
            operation = inject
            info["api"] = api
            injected = inject()
            info["headers"] = sorted(injected if isinstance(injected, dict) else [])
        elif variant == "extract":
            operation, info["api"] = extract, api
        elif variant == "extract_scope":
            operation, info["api"] = extract_scope, api
        elif variant == "otel_inject":
            request.getfixturevalue("otel_span")

            def operation() -> Any:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                return carrier

            info.setdefault("headers", sorted(operation()))
        else:

            def operation() -> Any:
                return propagate.extract(OTEL_INBOUND)

        operation()

        def loop() -> None:
            for _ in times:
                operation()

        return loop, CALLS

    bench.measure(variant, build, info=info)
