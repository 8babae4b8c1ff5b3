"""OpenTelemetry bridge: our operations become spans of a tracer provider, one trace with OTel.

``enable_opentelemetry(tracer_provider=None)`` turns it on (extra ``otel``) and returns a
handle that turns it off. While it is on:

* **Export.** A sink converts every finished operation record into an OpenTelemetry span
  of the provider (at export time, so the record filters, "keep if slow or failed"
  included, decide what is exported). Span model (see docs/opentelemetry.md):

  - the trace id is the record's ``trace_id`` (the W3C trace id our ``traceparent`` sends);
  - a **correlation scope** is a span whose id is the scope's W3C span id
    (``record.span_id``, the parent-id our outbound calls send). The outermost timed
    operation of the scope (the one whose time contains all the others of the scope, as
    ``@with_correlation @timed`` or a served request) *is* that span; a scope without one
    is exported as a span of its own covering its operations;
  - every other timed operation is a span with a fresh id whose parent is its scope's span;
  - a scope's parent is the span it was opened in: the enclosing scope, or the OTel span
    (or inbound ``traceparent``) it continued.

  Records are held by scope for ``settle_s`` (default 0.5 s) after the scope's last record,
  so that the outermost operation, which finishes last, is known; an operation of a scope
  already exported later becomes a child of that scope's span.
* **Interop.** When an OTel span is current as our scope starts, the scope continues its
  trace (its trace id, the span as parent), through the one core hook
  ``_trace.external_trace``. OTel's runtime context is wrapped so that inside our scope,
  when no OTel span was started in it, ``get_current()`` holds a non-recording span with our
  trace and span ids: OTel instrumentations (httpx, requests...) make our scope their parent
  and write our trace id in ``traceparent``.

OpenTelemetry is imported by this module only; importing it without the extra raises an
ImportError naming ``pip install 'flext-ctx-aspects[otel]'``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _otel_trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )
    from opentelemetry.trace.propagation import _SPAN_KEY
except ImportError as _error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "flext_ctx_aspects.integrations.opentelemetry needs OpenTelemetry: "
        "pip install 'flext-ctx-aspects[otel]'"
        f" ({_error})"
    ) from _error

from flext_ctx_aspects import _ids, _state, _trace
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import add_sink

__all__ = [
    "MAX_ATTRIBUTE_LENGTH",
    "OpenTelemetryBridge",
    "OpenTelemetrySink",
    "enable_opentelemetry",
    "span_attributes",
]

MAX_ATTRIBUTE_LENGTH: Final = 1024
"""Text attributes are cut to this many characters."""
MAX_METADATA_ATTRIBUTES: Final = 64
"""At most this many flattened metadata attributes per span."""
_MAX_DEPTH: Final = 4
_SCOPE: Final = InstrumentationScope("flext_ctx_aspects")
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_PARENTS_MAX: Final = 65_536
# W3C span id of a scope -> span id of its parent, as seen when the scope started.
_parents: dict[str, str | None] = {}


# --- attributes ---------------------------------------------------------------------------
def _attribute_value(value: object) -> str | bool | int | float | None:
    if isinstance(value, bool | int | float):
        return value
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text[:MAX_ATTRIBUTE_LENGTH]


def _flatten(prefix: str, value: object, out: dict[str, Any], depth: int) -> None:
    if len(out) >= MAX_METADATA_ATTRIBUTES:
        return
    if isinstance(value, Mapping) and depth < _MAX_DEPTH:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out, depth + 1)
        return
    if isinstance(value, list | tuple) and value:
        items = [_attribute_value(v) for v in value[:MAX_METADATA_ATTRIBUTES]]
        kinds = {type(v) for v in items}
        if len(kinds) == 1 and None not in items:
            out[prefix] = tuple(items)  # OTel arrays: homogeneous, immutable
            return
    converted = _attribute_value(value)
    if converted is not None:
        out[prefix] = converted


def span_attributes(record: OperationRecord, *, include_user_id: bool = False) -> dict[str, Any]:
    """Return the OpenTelemetry attributes of ``record``'s span.

    Context fields use the ``otel`` names of the built-in field table (``service.name``,
    ``flext.request_id``...); the user id (``enduser.id``) only with ``include_user_id``;
    operation metadata flattened under ``flext.metadata.`` and request metadata under
    ``flext.request.``, every value an OTel attribute type, text cut to
    `MAX_ATTRIBUTE_LENGTH`, at most `MAX_METADATA_ATTRIBUTES` of each.
    """
    attributes: dict[str, Any] = {"flext.operation": record.name, "flext.kind": record.kind}
    snapshot = record.context
    for index, field in enumerate(_state.FIELDS):
        if field.otel is None or snapshot[index] is None:
            continue
        if field.name == "user_id" and not include_user_id:
            continue
        attributes[field.otel] = _attribute_value(snapshot[index])
    if record.body_duration_ns is not None:
        attributes["flext.body_duration_ns"] = record.body_duration_ns
    if record.error_type is not None:
        attributes["error.type"] = record.error_type
    metadata: dict[str, Any] = {}
    _flatten("flext.metadata", dict(record.metadata), metadata, 0)
    request: dict[str, Any] = {}
    _flatten("flext.request", dict(record.request_metadata), request, 0)
    for name, value in record.fields.items():
        attributes[f"flext.field.{name}"] = _attribute_value(value)
    attributes.update(metadata)
    attributes.update(request)
    return attributes


# --- the external-trace hook and the runtime context ---------------------------------------
class _ScopeSpan(NonRecordingSpan):
    """Our correlation scope as OpenTelemetry sees it (a non-recording span)."""


def _raw_span(runtime: Any) -> Any:
    span = runtime.get_current().get(_SPAN_KEY)
    if span is None or isinstance(span, _ScopeSpan):
        return None
    ctx = span.get_span_context()
    return span if ctx.is_valid else None


def _remember(span_id: str, parent: str | None) -> None:
    if len(_parents) >= _PARENTS_MAX:
        for key in list(_parents)[: _PARENTS_MAX // 4]:
            _parents.pop(key, None)
    _parents[span_id] = parent


def _make_hook(runtime: Any) -> _trace.ExternalTrace:
    def hook(trace: Any, enclosing: Any, parent: Any, correlation: str) -> Any:
        try:
            span = _raw_span(runtime)
            remote = parent[0] if parent else None
            result = None
            if span is not None:
                ctx = span.get_span_context()
                otel_trace = f"{ctx.trace_id:032x}"
                otel_span = f"{ctx.span_id:016x}"
                same = trace is not None and _trace.w3c_trace_id(trace) == otel_trace
                if trace is None or (same and otel_span != remote):
                    # A span OTel started outside any scope of ours, or inside our scope.
                    state = parent[2] if parent else None
                    result = (otel_trace, (otel_span, int(ctx.trace_flags), state))
                    remote = otel_span
            if correlation != enclosing:
                if result is not None:
                    enclosing_span: str | None = remote
                elif enclosing is not None:
                    enclosing_span = _trace.span_id_for(enclosing, remote)
                else:
                    enclosing_span = remote
                _remember(_trace.span_id_for(correlation, remote), enclosing_span)
        except Exception as exc:
            report_internal_error("OpenTelemetry external trace", exc)
            return None
        return result

    return hook


class _BridgedRuntime:
    """OTel's runtime context, seen through our scopes (attach/detach unchanged)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def attach(self, context: Any) -> Any:
        return self.inner.attach(context)

    def detach(self, token: Any) -> None:
        self.inner.detach(token)

    def get_current(self) -> Any:
        current = self.inner.get_current()
        snapshot = _state.get()
        if snapshot[_state.CORRELATION_ID] is None and snapshot[_state.TRACE_ID] is None:
            return current
        try:
            span = current.get(_SPAN_KEY)
            trace_id = _trace.trace_id_of(snapshot)
            span_id = _trace.span_id_of(snapshot)
            if trace_id is None or span_id is None:
                return current
            if span is not None and not isinstance(span, _ScopeSpan):
                ctx = span.get_span_context()
                parent = snapshot[_state.TRACE_PARENT]
                started_inside = (
                    ctx.is_valid
                    and f"{ctx.trace_id:032x}" == trace_id
                    and (parent is None or f"{ctx.span_id:016x}" != parent[0])
                )
                if started_inside:
                    return current  # an OTel span started in our scope is the parent
            ours = _ScopeSpan(
                SpanContext(
                    int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_SAMPLED
                )
            )
            return _otel_trace.set_span_in_context(ours, current)
        except Exception as exc:
            report_internal_error("OpenTelemetry current context", exc)
            return current


# --- the sink -----------------------------------------------------------------------------
class OpenTelemetrySink:
    """Converts operation records into spans of ``tracer_provider`` (see the module notes).

    Args:
        tracer_provider: An SDK ``TracerProvider``.
        include_user_id: Put the user id on spans as ``enduser.id`` (personal data: off).
        settle_s: How long a scope's records wait for its outermost operation.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        *,
        include_user_id: bool = False,
        settle_s: float = 0.5,
    ) -> None:
        self.provider = tracer_provider
        self.include_user_id = include_user_id
        self.settle_s = settle_s
        self._pending: dict[str, list[OperationRecord]] = {}
        self._exported: dict[str, None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flext-ctx-otel", daemon=True)
        self._thread.start()

    def emit(self, record: OperationRecord) -> None:
        """Queue ``record`` for conversion (a list append under a lock)."""
        if record.trace_id is None:
            self._export([record], scope=None)
            return
        with self._lock:
            self._pending.setdefault(str(record.span_id), []).append(record)

    def flush(self) -> None:
        """Convert every queued record now and flush the provider's processors."""
        self._drain(force=True)
        self.provider.force_flush()

    def close(self) -> None:
        """Convert what is queued and stop the background thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        self._drain(force=True)
        self.provider.force_flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.settle_s / 2)
            if not self._closed:
                self._drain(force=False)

    def _drain(self, *, force: bool) -> None:
        import time

        now = time.time_ns()
        settle_ns = int(self.settle_s * 1e9)
        with self._lock:
            ready = {
                scope: records
                for scope, records in self._pending.items()
                if force or now - max(r.start_time_ns + r.duration_ns for r in records) > settle_ns
            }
            for scope in ready:
                del self._pending[scope]
        for scope, records in ready.items():
            try:
                self._export(records, scope)
            except Exception as exc:
                report_internal_error("OpenTelemetry export", exc)

    def _export(self, records: list[OperationRecord], scope: str | None) -> None:
        processor = self.provider._active_span_processor
        resource = self.provider.resource
        if scope is None:
            for record in records:
                processor.on_end(self._span(record, _random_span(), None, resource))
            return
        owner = None
        if scope not in self._exported:
            start = min(r.start_time_ns for r in records)
            end = max(r.start_time_ns + r.duration_ns for r in records)
            candidates = [
                r
                for r in records
                if r.start_time_ns == start and r.start_time_ns + r.duration_ns == end
            ]
            scope_parent = _scope_parent(records[0], scope)
            if candidates:
                owner = candidates[-1]
                processor.on_end(self._span(owner, scope, scope_parent, resource))
            else:
                processor.on_end(
                    self._scope_span(records, scope, scope_parent, start, end, resource)
                )
            self._exported[scope] = None
            if len(self._exported) > _PARENTS_MAX:
                for key in list(self._exported)[: _PARENTS_MAX // 4]:
                    del self._exported[key]
        for record in records:
            if record is not owner:
                processor.on_end(self._span(record, _random_span(), scope, resource))

    def _span(
        self, record: OperationRecord, span_id: str, parent: str | None, resource: Resource
    ) -> ReadableSpan:
        # The library's own random source: user code that seeds `random` must not see ours.
        trace_id = int(record.trace_id, 16) if record.trace_id else _ids.rng.getrandbits(128) or 1
        events: tuple[Event, ...] = ()
        status = Status(StatusCode.UNSET)
        end = record.start_time_ns + record.duration_ns
        if record.status == "error":
            status = Status(StatusCode.ERROR, record.error_type)
            events = (
                Event("exception", {"exception.type": record.error_type or ""}, timestamp=end),
            )
        return ReadableSpan(
            name=record.name,
            context=SpanContext(trace_id, int(span_id, 16), is_remote=False, trace_flags=_SAMPLED),
            parent=None
            if parent is None
            else SpanContext(trace_id, int(parent, 16), is_remote=False, trace_flags=_SAMPLED),
            resource=resource,
            attributes=span_attributes(record, include_user_id=self.include_user_id),
            events=events,
            kind=SpanKind.SERVER
            if record.kind == "block" and record.request_id
            else SpanKind.INTERNAL,
            status=status,
            start_time=record.start_time_ns,
            end_time=end,
            instrumentation_scope=_SCOPE,
        )

    def _scope_span(
        self,
        records: Iterable[OperationRecord],
        span_id: str,
        parent: str | None,
        start: int,
        end: int,
        resource: Resource,
    ) -> ReadableSpan:
        first = next(iter(records))
        trace_id = int(str(first.trace_id), 16)
        attributes = {
            k: v
            for k, v in span_attributes(first, include_user_id=self.include_user_id).items()
            if not k.startswith(("flext.metadata.", "flext.operation", "flext.kind"))
        }
        return ReadableSpan(
            name=first.operation_name or "correlation scope",
            context=SpanContext(trace_id, int(span_id, 16), is_remote=False, trace_flags=_SAMPLED),
            parent=None
            if parent is None
            else SpanContext(trace_id, int(parent, 16), is_remote=False, trace_flags=_SAMPLED),
            resource=resource,
            attributes=attributes,
            start_time=start,
            end_time=end,
            instrumentation_scope=_SCOPE,
        )


def _random_span() -> str:
    return f"{_ids.rng.getrandbits(64) or 1:016x}"


def _scope_parent(record: OperationRecord, scope: str) -> str | None:
    if scope in _parents:
        return _parents[scope]
    parent = record.context[_state.TRACE_PARENT]
    if parent is not None:
        return str(parent[0])  # a scope continuing an inbound traceparent
    if record.parent_correlation_id is not None:
        return _trace.span_id_for(record.parent_correlation_id)
    return None


# --- switching on and off -----------------------------------------------------------------
class OpenTelemetryBridge:
    """The handle `enable_opentelemetry` returns: call it (or leave its ``with``) to turn off."""

    def __init__(self, sink: OpenTelemetrySink, remove: Any, runtime: _BridgedRuntime) -> None:
        self.sink = sink
        self._remove = remove
        self._runtime = runtime
        self.active = True

    def flush(self) -> None:
        """Export every queued record now (tests, before a process exits)."""
        self.sink.flush()

    def __call__(self) -> None:
        """Turn the bridge off: export what is queued, undo the hook and the context wrap."""
        if not self.active:
            return
        self.active = False
        global _active
        self._remove()
        _trace.external_trace[0] = None
        if cast("object", _otel_context._RUNTIME_CONTEXT) is self._runtime:
            _otel_context._RUNTIME_CONTEXT = self._runtime.inner
        _active = None
        self.sink.close()

    def __enter__(self) -> OpenTelemetryBridge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self()


_active: OpenTelemetryBridge | None = None


def _default_provider() -> TracerProvider:
    provider = _otel_trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    # No SDK provider configured: configure one exporting over OTLP/HTTP (the standard
    # OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME environment variables apply).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    configured = TracerProvider(resource=Resource.create({}))
    configured.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _otel_trace.set_tracer_provider(configured)
    return configured


def enable_opentelemetry(
    tracer_provider: TracerProvider | None = None,
    *,
    include_user_id: bool = False,
    settle_s: float = 0.5,
) -> OpenTelemetryBridge:
    """Turn timed operations and correlation scopes into spans of ``tracer_provider``.

    Args:
        tracer_provider: An SDK ``TracerProvider``; None: OpenTelemetry's global provider
            (one exporting over OTLP/HTTP is configured and made global when none is).
        include_user_id: Put the user id on spans (``enduser.id``).
        settle_s: How long a scope's records wait for its outermost operation.

    Returns:
        A handle that turns the bridge off when called.

    Raises:
        TypeError: ``tracer_provider`` is not an SDK ``TracerProvider``.
        RuntimeError: The bridge is already on.
    """
    global _active
    provider = _default_provider() if tracer_provider is None else tracer_provider
    if not isinstance(provider, TracerProvider):
        raise TypeError(
            "enable_opentelemetry(tracer_provider=...): expected an "
            f"opentelemetry.sdk.trace.TracerProvider, got {type(provider).__qualname__}"
        )
    if _active is not None:
        raise RuntimeError("enable_opentelemetry(): the bridge is already on; turn it off first")
    sink = OpenTelemetrySink(provider, include_user_id=include_user_id, settle_s=settle_s)
    inner = _otel_context._RUNTIME_CONTEXT
    runtime = _BridgedRuntime(inner)
    _otel_context._RUNTIME_CONTEXT = runtime  # type: ignore[assignment]
    _trace.external_trace[0] = _make_hook(inner)
    _active = OpenTelemetryBridge(sink, add_sink(sink), runtime)
    return _active
