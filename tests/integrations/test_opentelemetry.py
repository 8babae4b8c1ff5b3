"""The OpenTelemetry bridge: records -> spans (in-memory exporter), interop, configuration."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flext_ctx_aspects import (
    FlextContext,
    _trace,
    request_scope,
    service,
    timed,
    with_correlation,
)
from flext_ctx_aspects.errors import ConfigWarning
from flext_ctx_aspects.integrations.opentelemetry import (
    MAX_ATTRIBUTE_LENGTH,
    OpenTelemetryBridge,
    enable_opentelemetry,
    span_attributes,
)
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.testing import capture_operations


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "test-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def bridge(provider: TracerProvider) -> Iterator[OpenTelemetryBridge]:
    handle = enable_opentelemetry(provider, settle_s=0.05)
    try:
        yield handle
    finally:
        handle()


def spans(bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    bridge.flush()
    return {span.name: span for span in exporter.get_finished_spans()}


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def parent_of(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


# --- mapping ------------------------------------------------------------------------------
def test_ids_parentage_and_times_follow_the_records(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter
) -> None:
    @timed(name="inner")
    def inner() -> None:
        pass

    @with_correlation
    @timed(name="nested")
    def nested() -> None:
        inner()

    @with_correlation
    @timed(name="outer")
    def outer() -> None:
        inner()
        nested()

    with capture_operations() as records:
        outer()
    by_name = spans(bridge, exporter)
    assert set(by_name) == {"inner", "nested", "outer"}
    record = {r.name + ("@" + r.correlation_id if r.name == "inner" else ""): r for r in records}
    outer_record = next(r for r in records if r.name == "outer")
    nested_record = next(r for r in records if r.name == "nested")
    # one trace: the W3C trace id our records (and traceparent) carry
    assert {hex_trace(s) for s in exporter.get_finished_spans()} == {outer_record.trace_id}
    # a scope's outermost operation is the scope's span; its id is record.span_id
    assert hex_span(by_name["outer"]) == outer_record.span_id
    assert hex_span(by_name["nested"]) == nested_record.span_id
    assert parent_of(by_name["outer"]) is None
    assert parent_of(by_name["nested"]) == outer_record.span_id
    inner_spans = [s for s in exporter.get_finished_spans() if s.name == "inner"]
    assert sorted(parent_of(s) or "" for s in inner_spans) == sorted(
        [outer_record.span_id or "", nested_record.span_id or ""]
    )
    for span in exporter.get_finished_spans():
        source = next(
            r
            for r in records
            if r.name == span.name and (span.name != "inner" or parent_of(span) == r.span_id)
        )
        assert span.start_time == source.start_time_ns
        assert span.end_time == source.start_time_ns + source.duration_ns
    assert len(record) == 4


def test_failures_are_error_spans_with_an_exception_event(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter
) -> None:
    @with_correlation
    @timed(name="fails")
    def fails() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        fails()
    span = spans(bridge, exporter)["fails"]
    assert span.status.status_code is StatusCode.ERROR
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("exception", {"exception.type": "KeyError"})
    ]
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyError"


def test_attributes_from_the_field_table_typed_and_capped(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter
) -> None:
    @service("orders", version="1.2.3")
    @request_scope(user_id="u-1", operation_name="checkout", metadata={"region": "eu"})
    @with_correlation
    @timed(name="op")
    def op() -> None:
        FlextContext.Performance.add_operation_metadata("count", 3)
        FlextContext.Performance.add_operation_metadata("nested", {"a": {"b": 1.5}})
        FlextContext.Performance.add_operation_metadata("tags", ["x", "y"])
        FlextContext.Performance.add_operation_metadata("mixed", [1, "a"])
        FlextContext.Performance.add_operation_metadata("obj", object())
        FlextContext.Performance.add_operation_metadata("long", "z" * 5000)

    with capture_operations() as records:
        op()
    attributes = dict(spans(bridge, exporter)["op"].attributes or {})
    record = records[0]
    assert attributes["service.name"] == "orders"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["flext.operation_name"] == "checkout"
    assert attributes["flext.request_id"] == record.request_id
    assert attributes["flext.correlation_id"] == record.correlation_id
    assert "enduser.id" not in attributes  # personal data: only when allowed
    assert attributes["flext.metadata.count"] == 3
    assert attributes["flext.metadata.nested.a.b"] == 1.5
    assert attributes["flext.metadata.tags"] == ("x", "y")
    assert attributes["flext.metadata.mixed"] == "[1, 'a']"
    assert str(attributes["flext.metadata.obj"]).startswith("<object object")
    assert len(str(attributes["flext.metadata.long"])) == MAX_ATTRIBUTE_LENGTH
    assert attributes["flext.request.region"] == "eu"
    assert attributes["flext.operation"] == "op"


def test_user_id_only_when_allowed() -> None:
    record = OperationRecord.make("op", user_id="u-9", correlation_id="a" * 32)
    assert "enduser.id" not in span_attributes(record)
    assert span_attributes(record, include_user_id=True)["enduser.id"] == "u-9"


def test_generator_is_one_span_with_body_time(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter
) -> None:
    @with_correlation
    @timed(name="gen", measure_body=True)
    def gen() -> Iterator[int]:
        yield 1
        yield 2

    with capture_operations() as records:
        assert list(gen()) == [1, 2]
    found = list(exporter.get_finished_spans()) or list(spans(bridge, exporter).values())
    by_name = spans(bridge, exporter) if not found else {s.name: s for s in found}
    assert list(by_name) == ["gen"]
    attributes = dict(by_name["gen"].attributes or {})
    assert attributes["flext.body_duration_ns"] == records[0].body_duration_ns
    assert attributes["flext.kind"] == "generator"


def test_scope_without_timed_wrapper_is_a_span_of_its_own(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter
) -> None:
    @timed(name="step")
    def step() -> None:
        pass

    @with_correlation
    def scope() -> None:
        step()
        step()

    scope()
    finished = list(spans(bridge, exporter).values()) and exporter.get_finished_spans()
    steps = [s for s in finished if s.name == "step"]
    scopes = [s for s in finished if s.name == "correlation scope"]
    assert len(steps) == 2
    assert len(scopes) == 1
    assert {parent_of(s) for s in steps} == {hex_span(scopes[0])}
    assert scopes[0].start_time == min(s.start_time or 0 for s in steps)
    assert scopes[0].end_time == max(s.end_time or 0 for s in steps)


def test_concurrent_scopes_keep_their_own_parents(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter
) -> None:
    @timed(name="leaf")
    async def leaf() -> None:
        await asyncio.sleep(0)

    @with_correlation
    @timed(name="task")
    async def task() -> str:
        await leaf()
        return str(FlextContext.Correlation.get_correlation_id())

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(50)))

    def threaded() -> None:
        asyncio.run(main())

    threads = [threading.Thread(target=threaded) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bridge.flush()
    finished = exporter.get_finished_spans()
    tasks = {hex_span(s): s for s in finished if s.name == "task"}
    leaves = [s for s in finished if s.name == "leaf"]
    assert len(tasks) == 200
    assert len(leaves) == 200
    for leaf_span in leaves:
        parent = tasks[parent_of(leaf_span) or ""]
        assert hex_trace(parent) == hex_trace(leaf_span)


# --- interop ------------------------------------------------------------------------------
def test_our_scope_continues_a_current_otel_span(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("app")

    @with_correlation
    @timed(name="ours")
    def ours() -> None:
        pass

    with capture_operations() as records, tracer.start_as_current_span("otel-root") as root:
        ours()
    by_name = spans(bridge, exporter)
    assert hex_trace(by_name["ours"]) == f"{root.get_span_context().trace_id:032x}"
    assert records[0].trace_id == hex_trace(by_name["otel-root"])
    assert parent_of(by_name["ours"]) == hex_span(by_name["otel-root"])


def test_otel_spans_started_inside_our_scope_are_its_children(
    bridge: OpenTelemetryBridge, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("app")

    @with_correlation
    @timed(name="inner-scope")
    def inner_scope() -> None:
        pass

    @with_correlation
    @timed(name="ours")
    def ours() -> None:
        with tracer.start_as_current_span("otel-child"):
            inner_scope()

    with capture_operations() as records:
        ours()
    by_name = spans(bridge, exporter)
    ours_record = next(r for r in records if r.name == "ours")
    assert hex_trace(by_name["otel-child"]) == ours_record.trace_id
    assert parent_of(by_name["otel-child"]) == ours_record.span_id
    # our scope opened inside the OTel span is its child
    assert parent_of(by_name["inner-scope"]) == hex_span(by_name["otel-child"])


def test_off_by_default_and_turned_off_by_the_handle(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    assert _trace.external_trace[0] is None
    handle = enable_opentelemetry(provider, settle_s=0.05)
    with pytest.raises(RuntimeError, match="already on"):
        enable_opentelemetry(provider)
    handle()
    assert _trace.external_trace[0] is None

    @with_correlation
    @timed(name="after")
    def after() -> None:
        pass

    after()
    provider.force_flush()
    assert exporter.get_finished_spans() == ()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("plain") as plain:
        assert trace.get_current_span() is plain


def test_a_provider_that_is_not_the_sdk_s_is_refused() -> None:
    with pytest.raises(TypeError, match="TracerProvider"):
        enable_opentelemetry(trace.NoOpTracerProvider())  # type: ignore[arg-type]


def test_the_toml_switch_enables_the_bridge(exporter: InMemorySpanExporter) -> None:
    from flext_ctx_aspects.instrument import instrument

    global_provider = trace.get_tracer_provider()
    if not isinstance(global_provider, TracerProvider):
        global_provider = TracerProvider()
        trace.set_tracer_provider(global_provider)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    processor = SimpleSpanProcessor(exporter)
    trace.get_tracer_provider().add_span_processor(processor)  # type: ignore[attr-defined]
    with pytest.warns(ConfigWarning, match="importable modules"):
        handle = instrument(
            {"instrument": {"include": ["no_such_module_for_otel"]}, "otel": {"enabled": True}}
        )
    with handle:
        assert _trace.external_trace[0] is not None

        @with_correlation
        @timed(name="configured")
        def configured() -> None:
            pass

        configured()
    assert _trace.external_trace[0] is None
    assert [s.name for s in exporter.get_finished_spans()] == ["configured"]
    processor.shutdown()


def test_importing_without_the_extra_names_it() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import flext_ctx_aspects.integrations.opentelemetry\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'flext-ctx-aspects[otel]'" in result.stdout
