"""``FlextContext``: the API of the original design, on top of the same context core.

Everything here reads and writes the same state the aspects use: a value set by
``FlextContext.Service.service_context`` is what ``@timed`` records, and a function decorated
with ``@with_correlation`` sees its id through ``FlextContext.Correlation.get_correlation_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

from flext_ctx_aspects import _diagnostics, _emit, _ids, _state, _trace
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects._validate import validate_id, validate_name
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import ConfigError, InvalidValueError
from flext_ctx_aspects.fields import ContextField, declared_fields
from flext_ctx_aspects.records import utc_datetime
from flext_ctx_aspects.result import FlextResult

if TYPE_CHECKING:
    from flext_ctx_aspects.settings import Settings

# Propagation and settings are imported where they are used, not at import time: most
# programs that only decorate functions never need them (docs/performance.md, import time).

__all__ = ["ContextField", "FlextContext"]

_RESERVED_OPERATION_KEYS: Final = frozenset(
    {"operation_name", "start_time", "end_time", "duration_seconds"}
)
_EMPTY_METADATA: Final[dict[str, Any]] = {}
_PUBLIC_SLOTS: Final = tuple((f, _state.FIELD_SLOTS[f.name]) for f in _state.PUBLIC_FIELDS)
_SUMMARY_SLOTS: Final = tuple((f, s) for f, s in _PUBLIC_SLOTS if f.summary)


def _correlation_changes(current: _state.Snapshot, correlation_id: str) -> dict[int, Any]:
    """Slots that make ``correlation_id`` current; the root of a trace also names the trace."""
    trace = current[_state.TRACE_ID]
    return {
        _state.CORRELATION_ID: correlation_id,
        _state.TRACE_ID: trace if trace is not None else correlation_id,
    }


def _entered_correlation(pushed: _state.Snapshot) -> str:
    correlation_id: str = pushed[_state.CORRELATION_ID]
    return correlation_id


class _NewCorrelation(_state.Scope):
    """``new_correlation()``: a new id per entry, whose parent is the id current then."""

    __slots__ = ("_explicit",)

    def __init__(self, correlation_id: str | None) -> None:
        super().__init__()
        self._explicit = correlation_id

    def build(self, current: _state.Snapshot) -> _state.Snapshot:
        changes = _correlation_changes(current, self._explicit or _ids.new_id())
        changes[_state.PARENT_CORRELATION_ID] = current[_state.CORRELATION_ID]
        return _state.with_changes(current, changes)

    def entered(self, pushed: _state.Snapshot) -> str:
        return _entered_correlation(pushed)

    def __enter__(self) -> str:
        correlation_id: str = super().__enter__()
        return correlation_id


class _InheritCorrelation(_state.Scope):
    """``inherit_correlation()``: keep the current id, or open a new one when there is none."""

    __slots__ = ()

    def build(self, current: _state.Snapshot) -> _state.Snapshot:
        existing = current[_state.CORRELATION_ID]
        correlation_id = existing if existing is not None else _ids.new_id()
        return _state.with_changes(current, _correlation_changes(current, correlation_id))

    def entered(self, pushed: _state.Snapshot) -> str:
        return _entered_correlation(pushed)

    def __enter__(self) -> str:
        correlation_id: str = super().__enter__()
        return correlation_id


class _RequestScope(_state.Scope):
    """``request_context()``: values kept from the enclosing scope are read on entry."""

    __slots__ = ("_metadata", "_values")

    def __init__(self, values: dict[str, Any], metadata: Mapping[str, Any] | None) -> None:
        super().__init__()
        self._values = values
        self._metadata = None if metadata is None else dict(metadata)

    def build(self, current: _state.Snapshot) -> _state.Snapshot:
        values = dict(self._values)
        if "request_id" not in values and current[_state.REQUEST_ID] is None:
            values["request_id"] = _ids.new_id()
        if self._metadata is not None:
            values["request_metadata"] = {
                **(current[_state.REQUEST_METADATA] or {}),
                **self._metadata,
            }
        return _state.with_fields(current, values)


class _TimedOperation:
    """``timed_operation(name)``: yields the live metadata dict of the operation.

    Each ``with`` times its own block (its own metadata dict and record), so one object may
    be reused, nested or entered by several tasks at once: an exit ends the block whose
    metadata is the running operation there (else the newest one).
    """

    __slots__ = ("_blocks", "_spec")

    def __init__(self, name: str) -> None:
        self._spec = _emit.TimingSpec(name=name, kind="block", min_duration_ns=0, keep_errors=True)
        self._blocks: list[_emit.TimedBlock] = []

    def __enter__(self) -> dict[str, Any]:
        block = _emit.TimedBlock(self._spec, {"operation_name": self._spec.name})
        self._blocks.append(block)
        start = block.begin()
        # The same clock as the operation record, so both agree on the start time.
        block.metadata["start_time"] = utc_datetime(_emit.wall_time_ns(start))
        return block.metadata

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        blocks = self._blocks
        running = _state.get_operation()
        position = next(
            (i for i in range(len(blocks) - 1, -1, -1) if blocks[i].metadata is running),
            len(blocks) - 1,
        )
        block = blocks.pop(position)
        metadata = block.metadata
        user_metadata = {k: v for k, v in metadata.items() if k not in _RESERVED_OPERATION_KEYS}
        end = block.end(exc, user_metadata)
        duration_ns = end - block.start_ns
        try:
            metadata["end_time"] = utc_datetime(_emit.wall_time_ns(end))
        except Exception as error:  # the user may have replaced start_time with anything
            report_internal_error("timed_operation bookkeeping", error)
        metadata["duration_seconds"] = duration_ns / 1e9


def _is_mapping(value: object) -> bool:
    return isinstance(value, Mapping)


# Values given by the program are mostly the same few literals (service names, versions,
# operation names): their validation is remembered, which takes it off the scope's cost.
_VALIDATED_LIMIT: Final = 4096
_validated: Final[dict[Any, dict[str, str]]] = {validate_id: {}, validate_name: {}}


def _check(field: str, value: object, validator: Any) -> Any:
    # Values given by the program itself: invalid ones are programming errors, raised.
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str or None (got {type(value).__qualname__})")
    cache = _validated[validator]
    clean = cache.get(value)
    if clean is None:
        clean = validator(field, value)
        if len(cache) >= _VALIDATED_LIMIT:
            cache.clear()
        cache[value] = clean
    return clean


class FlextContext:
    """Request/trace context: correlation, service, request, performance, serialization.

    Subclasses may declare custom fields (see `ContextField`); they are read, scoped,
    serialized and propagated like the built-in ones.
    """

    class Correlation:
        """Correlation ids with parent tracking."""

        @staticmethod
        def new_correlation(correlation_id: str | None = None) -> _NewCorrelation:
            """Open a scope with a new correlation id; its parent is the current id.

            Use as ``with FlextContext.Correlation.new_correlation() as correlation_id:``.

            Args:
                correlation_id: Use this id instead of generating one.

            Raises:
                InvalidValueError: ``correlation_id`` is not a valid id.
            """
            return _NewCorrelation(_check("correlation_id", correlation_id, validate_id))

        @staticmethod
        def inherit_correlation() -> _InheritCorrelation:
            """Open a scope that keeps the current correlation id (a new one if none).

            Use as ``with FlextContext.Correlation.inherit_correlation() as correlation_id:``.
            """
            return _InheritCorrelation()

        @staticmethod
        def get_correlation_id() -> str | None:
            """Return the current correlation id, or None."""
            value: str | None = _state.get()[_state.CORRELATION_ID]
            return value

        @staticmethod
        def set_correlation_id(correlation_id: str | None) -> None:
            """Set the correlation id for the rest of the current context.

            Raises:
                InvalidValueError: Not a valid id (1-128 characters of ``[A-Za-z0-9._:@/+=-]``).
            """
            value = _check("correlation_id", correlation_id, validate_id)
            _state.replace(_state.with_changes(_state.get(), {_state.CORRELATION_ID: value}))

        @staticmethod
        def get_parent_correlation_id() -> str | None:
            """Return the parent of the current correlation id, or None."""
            value: str | None = _state.get()[_state.PARENT_CORRELATION_ID]
            return value

        @staticmethod
        def set_parent_correlation_id(parent_id: str | None) -> None:
            """Set the parent correlation id for the rest of the current context."""
            value = _check("parent_correlation_id", parent_id, validate_id)
            _state.replace(_state.with_changes(_state.get(), {_state.PARENT_CORRELATION_ID: value}))

    class Service:
        """Service identity."""

        @staticmethod
        def service_context(
            service_name: str, version: str | None = None, environment: str | None = None
        ) -> _state.Scope:
            """Open a scope running as ``service_name`` (``version``, ``environment``).

            Raises:
                TypeError: ``service_name`` is not a str.
                InvalidValueError: A value has control characters or is too long.
            """
            if service_name is None:
                raise TypeError("service_name must be a str (got None)")
            return _state.FieldScope(
                {
                    "service_name": _check("service_name", service_name, validate_name),
                    "service_version": _check("version", version, validate_name),
                    "service_environment": _check("environment", environment, validate_name),
                }
            )

        @staticmethod
        def get_service_name() -> str | None:
            """Return the current service name, or None."""
            value: str | None = _state.get()[_state.SERVICE_NAME]
            return value

        @staticmethod
        def get_service_version() -> str | None:
            """Return the current service version, or None."""
            value: str | None = _state.get()[_state.SERVICE_VERSION]
            return value

        @staticmethod
        def get_service_environment() -> str | None:
            """Return the current service environment, or None."""
            value: str | None = _state.get()[_state.SERVICE_ENVIRONMENT]
            return value

        @staticmethod
        def set_service_name(service_name: str | None) -> None:
            """Set the service name for the rest of the current context."""
            value = _check("service_name", service_name, validate_name)
            _state.replace(_state.with_changes(_state.get(), {_state.SERVICE_NAME: value}))

    class Request:
        """Request metadata: user, operation name, request id, metadata dict."""

        @staticmethod
        def request_context(
            user_id: str | None = None,
            operation_name: str | None = None,
            request_id: str | None = None,
            metadata: Mapping[str, Any] | None = None,
        ) -> _state.Scope:
            """Open a request scope.

            Values left as None are kept from the enclosing scope; the request id is
            generated when neither this call nor the enclosing scope has one. ``metadata``
            is merged over the enclosing scope's.

            Raises:
                TypeError: A value has the wrong type.
                InvalidValueError: A value has control characters or is too long.
            """
            values: dict[str, Any] = {}
            if user_id is not None:
                values["user_id"] = _check("user_id", user_id, validate_name)
            if operation_name is not None:
                values["operation_name"] = _check("operation_name", operation_name, validate_name)
            if request_id is not None:
                values["request_id"] = _check("request_id", request_id, validate_id)
            if metadata is not None and not isinstance(metadata, Mapping):
                raise TypeError(f"metadata must be a mapping (got {type(metadata).__qualname__})")
            return _RequestScope(values, metadata)

        @staticmethod
        def get_user_id() -> str | None:
            """Return the current user id, or None."""
            value: str | None = _state.get()[_state.USER_ID]
            return value

        @staticmethod
        def get_operation_name() -> str | None:
            """Return the current request operation name, or None."""
            value: str | None = _state.get()[_state.OPERATION_NAME]
            return value

        @staticmethod
        def get_request_id() -> str | None:
            """Return the current request id, or None."""
            value: str | None = _state.get()[_state.REQUEST_ID]
            return value

        @staticmethod
        def get_request_metadata() -> dict[str, Any]:
            """Return a copy of the current request metadata (empty when none)."""
            return dict(_state.get()[_state.REQUEST_METADATA] or _EMPTY_METADATA)

    class Performance:
        """Operation timing with metadata."""

        @staticmethod
        def timed_operation(
            name: str | None = None, *, operation_name: str | None = None
        ) -> _TimedOperation:
            """Time a block: yields its live metadata dict.

            The dict holds ``operation_name`` and ``start_time`` (aware UTC datetime) on
            entry; what ``add_operation_metadata`` adds during the block; and after exit,
            also when the block raised, ``end_time`` and ``duration_seconds``. The block is
            recorded as an operation (``kind="block"``) for every sink.

            Raises:
                TypeError: No name given, or not a str.
            """
            chosen = name if name is not None else operation_name
            if not isinstance(chosen, str) or not chosen:
                raise TypeError("timed_operation() needs a non-empty operation name (a str)")
            return _TimedOperation(_check("operation_name", chosen, validate_name))

        @staticmethod
        def add_operation_metadata(key: str, value: Any) -> None:
            """Add ``key: value`` to the innermost running timed operation.

            Outside any timed operation this does nothing (by design: instrumented code can
            call it unconditionally). A key that is not a str is the library's trouble, not
            the caller's: it is reported once through logging and dropped.
            """
            metadata = _state.get_operation()
            if metadata is None:
                return
            if not isinstance(cast("object", key), str):  # callers are not type-checked
                report_internal_error(
                    "add_operation_metadata (keys must be str)",
                    TypeError(f"metadata key of type {type(key).__name__}"),
                )
                return
            metadata[key] = value

        @staticmethod
        def get_operation_metadata() -> dict[str, Any]:
            """Return a copy of the innermost running operation's metadata (empty if none)."""
            metadata = _state.get_operation()
            return {} if metadata is None else dict(metadata)

    class Serialization:
        """Context to and from mappings (headers, message metadata, event payloads)."""

        @staticmethod
        def get_full_context() -> dict[str, Any]:
            """Return every context value as a dict (custom fields by name).

            The result can be sent along with a message and given back to
            `set_from_context` on the receiving side.
            """
            snapshot = _state.get()
            full: dict[str, Any] = {
                field.name: snapshot[slot] for field, slot in _PUBLIC_SLOTS if field.validator
            }
            full["request_metadata"] = dict(snapshot[_state.REQUEST_METADATA] or {})
            # The W3C trace id sent downstream and recorded, not the raw root id.
            full["trace_id"] = _trace.trace_id_of(snapshot)
            full["operation_metadata"] = FlextContext.Performance.get_operation_metadata()
            fields = snapshot[_state.CUSTOM_FIELDS] or {}
            for custom in declared_fields():
                full[custom.name] = fields.get(custom.name)
            return full

        @staticmethod
        def get_correlation_context() -> dict[str, str]:
            """Return the headers that carry the current context to another service.

            e.g. ``{"X-Correlation-Id": "...", "X-Service-Name": "user-service",
            "traceparent": "00-...-...-01"}``. A fresh dict: callers may add to it.
            """
            from flext_ctx_aspects.propagation import headers

            return headers.outbound_headers(_state.get())

        @staticmethod
        def set_from_context(
            context: object, *, trusted: bool | None = None, strict: bool | None = None
        ) -> FlextResult[dict[str, Any]]:
            """Set the context from a mapping: inbound headers or a ``get_full_context()``.

            Header names are matched case-insensitively; keys and values may be str or
            bytes (ASGI scopes); a list of ``(name, value)`` pairs works too. Values are
            validated. Never raises on bad input: invalid values are dropped with a
            warning (the raw value is never logged), or, in strict mode, nothing at all is
            applied and a failure is returned.

            Args:
                context: The mapping (or pairs) to read.
                trusted: Accept a user id from it; default ``Settings.trust_inbound_user_id``.
                strict: Refuse everything on any invalid value; default
                    ``Settings.strict_validation``.

            Returns:
                ``ok`` with the values applied, or ``fail`` explaining the refusal.
            """
            from flext_ctx_aspects.propagation import headers
            from flext_ctx_aspects.settings import current_settings

            settings = current_settings()
            strict_mode = settings.strict_validation if strict is None else strict
            trust = settings.trust_inbound_user_id if trusted is None else trusted
            try:
                inbound = headers.read_inbound(
                    context,
                    strict=strict_mode,
                    trusted=trust,
                    correlation_sources=settings.correlation_sources,
                )
            except InvalidValueError as error:
                return FlextResult[dict[str, Any]].fail(f"context refused: {error}")
            except Exception as error:
                report_internal_error("set_from_context", error)
                return FlextResult[dict[str, Any]].fail(f"context refused: {type(error).__name__}")
            _state.replace(headers.apply_inbound(_state.get(), inbound))
            return FlextResult[dict[str, Any]].ok(dict(inbound.values))

    class Utilities:
        """Helpers."""

        @staticmethod
        def ensure_correlation_id() -> str:
            """Return the current correlation id, setting a new one first if there is none."""
            snapshot = _state.get()
            existing: str | None = snapshot[_state.CORRELATION_ID]
            if existing is not None:
                return existing
            new_id = _ids.new_id()
            _state.replace(_state.with_changes(snapshot, _correlation_changes(snapshot, new_id)))
            return new_id

        @staticmethod
        def has_correlation_id() -> bool:
            """Whether the current context has a correlation id."""
            return _state.get()[_state.CORRELATION_ID] is not None

        @staticmethod
        def get_context_summary() -> str:
            """Return a one-line summary of the context.

            e.g. ``FlextContext(correlation=abc123..., service=user-service, user=user_123)``.

            Only the fields that have a value appear (correlation, service, user, as in the
            original design); the correlation id is cut to its first 8 characters.
            """
            snapshot = _state.get()
            parts = []
            for field, slot in _SUMMARY_SLOTS:
                value = snapshot[slot]
                if value is None:
                    continue
                if slot == _state.CORRELATION_ID:
                    value = f"{value[: FlextConstants.Limits.SUMMARY_ID_CHARS]}..."
                parts.append(f"{field.summary}={value}")
            return f"FlextContext({', '.join(parts)})"

        @staticmethod
        def clear_context() -> None:
            """Drop every context value (and the running operation) in the current context."""
            _state.clear()

    @staticmethod
    def create_environment_context_config(env: str) -> FlextResult[Settings]:
        """Return the settings preset for ``env`` and apply it.

        Environments: ``development`` (lenient, stats and logging sinks), ``test`` (strict,
        no sinks), ``staging`` (lenient, stats), ``production`` (strict validation, stats,
        operations under 100 µs not recorded unless failed).

        Returns:
            ``ok(settings)`` now in force, or ``fail`` naming the valid environments. A
            refusal is also logged (one warning on the ``flext_ctx_aspects`` logger), so a
            startup typo whose result nobody checks is still seen; the settings in force
            are unchanged.
        """
        from flext_ctx_aspects.settings import Settings, apply_settings, settings_for_environment

        try:
            settings = settings_for_environment(env)
        except ConfigError as error:
            _diagnostics.logger.warning(
                "flext_ctx_aspects: environment preset refused, settings unchanged: %s", error
            )
            return FlextResult[Settings].fail(str(error))
        apply_settings(settings)
        return FlextResult[Settings].ok(settings)

    @staticmethod
    def optimize_context_performance(config: Mapping[str, Any]) -> FlextResult[Settings]:
        """Validate performance options and apply them over the current settings.

        Accepted keys: ``performance_level`` (``standard``, ``high``: no logging sink,
        ``maximum``: no built-in sinks), ``context_cache_size`` (compiled context-update
        shapes kept), ``max_concurrent_contexts`` (workers of the context-carrying executor),
        ``sample_rate``, ``min_duration_ms``, ``measure_generator_body``, ``enabled``,
        ``sinks``.

        Returns:
            ``ok(settings)`` now in force, or ``fail`` naming the bad key and the accepted ones.
        """
        from flext_ctx_aspects.settings import (
            Settings,
            apply_settings,
            current_settings,
            tuned_settings,
        )

        if not _is_mapping(config):
            return FlextResult[Settings].fail(
                f"optimize_context_performance() takes a mapping (got {type(config).__qualname__})"
            )
        try:
            settings = tuned_settings(current_settings(), config)
        except ConfigError as error:
            return FlextResult[Settings].fail(str(error))
        apply_settings(settings)
        return FlextResult[Settings].ok(settings)
