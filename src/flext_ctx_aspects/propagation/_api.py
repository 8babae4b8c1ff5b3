"""``inject`` and ``extract``: the propagation API over carriers, formats and the trust policy.

``extract(carrier)`` reads and validates the inbound context once and returns an
`Extracted`. A server opens a fresh scope per request from it (``with extract(...)``),
so nothing of the previous request on the same thread, task or keep-alive connection is
visible; a consumer that wants the old ``set_from_context`` behaviour calls ``.apply()``.

``inject(carrier)`` writes the current context into a carrier, and only when the destination,
if one is given, is allowed (see `flext_ctx_aspects.propagation._policy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeVar, cast, runtime_checkable

from flext_ctx_aspects import _ids, _state
from flext_ctx_aspects import fields as _fields
from flext_ctx_aspects._diagnostics import report_internal_error, warn_invalid
from flext_ctx_aspects._validate import as_text
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import ConfigError, InvalidValueError
from flext_ctx_aspects.propagation import headers as _headers
from flext_ctx_aspects.propagation._carriers import (
    MappingSetter,
    default_getter,
    default_setter,
    pairs_from,
)
from flext_ctx_aspects.propagation._policy import (
    CORRELATION_SOURCES,
    DestinationPattern,
    destination_allowed,
    inbound_defaults,
    warn_refused,
)
from flext_ctx_aspects.typing import Getter, Setter

# `fields` is imported as a module: fields.py imports this package, so the names it
# defines are read at call time, which keeps the import cycle harmless.

__all__ = [
    "Destination",
    "Extracted",
    "Format",
    "InboundScope",
    "extract",
    "inject",
    "propagation_header_names",
]

C = TypeVar("C")
Destination = str | tuple[str | None, str, int | None]
"""A URL, a ``host[:port]``, or ``(scheme, host, port)``."""

_H = FlextConstants.Headers
_SERVICE_SLOTS: Final = (_state.SERVICE_NAME, _state.SERVICE_VERSION, _state.SERVICE_ENVIRONMENT)
_SERVICE_FIELDS: Final = frozenset({"service_name", "service_version", "service_environment"})
_BUILTIN_HEADER_NAMES: Final = (
    _H.CORRELATION_ID,
    _H.PARENT_CORRELATION_ID,
    _H.SERVICE_NAME,
    _H.SERVICE_VERSION,
    _H.SERVICE_ENVIRONMENT,
    _H.REQUEST_ID,
    _H.OPERATION_NAME,
    _H.USER_ID,
    _H.TRACEPARENT,
    _H.TRACESTATE,
    _H.BAGGAGE,
    "b3",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-B3-Flags",
)
# A custom format reads at most this much of one header (its values are validated after).
_MAX_FORMAT_INPUT: Final = FlextConstants.Limits.MAX_HEADER_VALUE_LENGTH


@runtime_checkable
class Format(Protocol):
    """A header format of your own, next to the built-in ones.

    The built-in ones are ``"flext"``, ``"tracecontext"``, ``"baggage"``, ``"b3"`` and
    ``"b3multi"``. A format only maps header values to context field values and back; the
    library does the validation (charset, length, trust), so a format cannot let a hostile
    value in.

    Attributes:
        header_names: Every header the format reads or writes; removed from a carrier whose
            destination is not allowed.
    """

    header_names: tuple[str, ...]

    def read(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """Map inbound headers (lowercase names; repeated lines joined by ``,``) to fields.

        Returns field names (``correlation_id``, ``request_id``, ``service_name``,
        ``trace_id``, a custom field's name, ...) to raw values. Values are validated after;
        fields the built-in formats already set are not overwritten.
        """

    def write(self, context: Mapping[str, str]) -> Mapping[str, str]:
        """Map the outbound context to headers.

        ``context`` holds the fields that have a value, as strings: ``correlation_id``,
        ``parent_correlation_id``, ``service_name``, ``service_version``,
        ``service_environment``, ``request_id``, ``operation_name``, custom fields by name,
        and ``trace_id`` (32 hex), ``span_id`` (16 hex) and ``sampled`` (``"1"``/``"0"``).
        Headers whose name is not a token or whose value is not visible ASCII are dropped.
        """


def _split_formats(
    formats: Iterable[str | Format] | None, where: str
) -> tuple[tuple[str, ...], tuple[Format, ...]]:
    if formats is None:
        return _headers.DEFAULT_FORMATS, ()
    if isinstance(formats, str):
        raise ConfigError(where, "formats", "a list of format names or Format objects", "a str")
    names: list[str] = []
    custom: list[Format] = []
    for item in formats:
        if isinstance(item, str):
            if item not in _headers.ALL_FORMATS:
                known = ", ".join(sorted(_headers.ALL_FORMATS))
                raise ConfigError(where, "formats", f"format names among {known}", repr(item))
            names.append(item)
        elif isinstance(item, Format):
            custom.append(item)
        else:
            raise ConfigError(
                where, "formats", "format names or Format objects", type(item).__qualname__
            )
    return tuple(names), tuple(custom)


class Extracted:
    """The validated context read from one inbound carrier.

    Use it as a context manager to run the handling of one request or message in a fresh
    scope (``with extract(request.headers) as correlation_id:``), or call `apply` to
    write it over the current context like ``FlextContext.Serialization.set_from_context``.
    The object is immutable; entering it directly is meant for one thread or task at a time
    (nesting is fine). To enter the same result from several threads or tasks at once, give
    each its own `scope`.

    Attributes:
        values: Field name -> clean value (built-in fields and custom fields).
        problems: ``(field, reason)`` for each value that was dropped (never the value).
        tracestate: Inbound tracestate entries (kept only with a valid traceparent).
        baggage: Inbound baggage members that are not custom fields, passed on unchanged.
    """

    __slots__ = ("_inbound", "_scopes", "baggage", "problems", "tracestate", "values")

    def __init__(self, inbound: _headers.Inbound) -> None:
        self._inbound = inbound
        self._scopes: list[InboundScope] = []
        self.values: Mapping[str, Any] = MappingProxyType(inbound.values)
        self.problems: tuple[tuple[str, str], ...] = tuple(
            (name, reason) for name, reason, _ in inbound.problems
        )
        self.tracestate = inbound.tracestate
        self.baggage: Mapping[str, str] = MappingProxyType(inbound.baggage)

    def __repr__(self) -> str:
        return f"Extracted(fields={sorted(self.values)}, problems={len(self.problems)})"

    @property
    def correlation_id(self) -> str | None:
        """The inbound correlation id (after the correlation source priority), or None."""
        value: str | None = self._inbound.values.get("correlation_id")
        return value

    @property
    def trace_id(self) -> str | None:
        """The inbound W3C trace id, or None (a new trace starts)."""
        value: str | None = self._inbound.values.get("trace_id")
        return value

    @property
    def parent_id(self) -> str | None:
        """The remote parent-id of a valid inbound traceparent (or B3 span id), or None."""
        parent = self._inbound.trace_parent
        return None if parent is None else parent[0]

    @property
    def sampled(self) -> bool | None:
        """The inbound sampled flag; None without a valid traceparent or B3 header."""
        parent = self._inbound.trace_parent
        return None if parent is None else bool(parent[1] & 1)

    def apply(self) -> None:
        """Write the values over the current context, for the rest of it (no scope)."""
        _state.replace(_headers.apply_inbound(_state.get(), self._inbound))

    def build_snapshot(
        self,
        base: _state.Snapshot | None = None,
        *,
        fresh: bool = True,
        ensure_correlation: bool = True,
        ensure_request_id: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> _state.Snapshot:
        """Return the context state a scope of this inbound context runs in.

        Args:
            base: The state to start from (default: the current one).
            fresh: See `scope`.
            ensure_correlation: Generate a correlation id when none came in.
            ensure_request_id: Generate a request id when none came in.
            overrides: Field name -> value applied last (the service identity a server or
                consumer was configured with, which wins over what the caller sent).
        """
        current = _state.get() if base is None else base
        inbound = self._inbound
        if fresh:
            start = _state.with_changes(_state.EMPTY, {i: current[i] for i in _SERVICE_SLOTS})
            local_service = current[_state.SERVICE_NAME] is not None or bool(
                overrides and overrides.get("service_name") is not None
            )
            if local_service:
                # The receiving service's own identity wins over what the caller sent.
                inbound = _headers.Inbound(
                    values={k: v for k, v in inbound.values.items() if k not in _SERVICE_FIELDS},
                    trace_parent=inbound.trace_parent,
                    tracestate=inbound.tracestate,
                    baggage=inbound.baggage,
                )
        else:
            start = current
        snapshot = _headers.apply_inbound(start, inbound)
        extra: dict[int, Any] = {}
        correlation_id = snapshot[_state.CORRELATION_ID]
        if correlation_id is None and ensure_correlation:
            correlation_id = extra[_state.CORRELATION_ID] = _ids.new_id()
        if snapshot[_state.TRACE_ID] is None and correlation_id is not None:
            extra[_state.TRACE_ID] = correlation_id  # the root of a new trace names it
        if ensure_request_id and snapshot[_state.REQUEST_ID] is None:
            extra[_state.REQUEST_ID] = _ids.new_id()
        snapshot = _state.with_changes(snapshot, extra) if extra else snapshot
        return _state.with_fields(snapshot, overrides) if overrides else snapshot

    def scope(
        self,
        *,
        fresh: bool = True,
        ensure_correlation: bool = True,
        ensure_request_id: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> InboundScope:
        """Return a context manager running its block in the extracted context.

        This is the seam integrations use to run one request or message: each ``with``
        builds the state on entry, from the context then, and restores it on exit.

        Args:
            fresh: Start from an empty context, keeping only the current service identity
                (which then wins over the caller's ``X-Service-Name``): what a server wants
                per request. False writes the values over the current context instead.
            ensure_correlation: Generate a correlation id when none came in.
            ensure_request_id: Generate a request id when none came in.
            overrides: Field name -> value set last (e.g. the local service identity).

        Returns:
            A context manager yielding the correlation id in force inside the block.
        """
        return InboundScope(
            self,
            fresh=fresh,
            ensure_correlation=ensure_correlation,
            ensure_request_id=ensure_request_id,
            overrides=overrides,
        )

    def __enter__(self) -> str | None:
        scope = self.scope()
        self._scopes.append(scope)
        result: str | None = scope.__enter__()
        return result

    def __exit__(self, *exc_info: object) -> None:
        self._scopes.pop().__exit__(*exc_info)


class InboundScope(_state.Scope):
    """A scope opened from an `Extracted`; built on entry, from the context then."""

    __slots__ = ("_options", "extracted")

    def __init__(
        self,
        extracted: Extracted,
        *,
        fresh: bool = True,
        ensure_correlation: bool = True,
        ensure_request_id: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.extracted = extracted
        self._options = (fresh, ensure_correlation, ensure_request_id, overrides)

    def build(self, current: _state.Snapshot) -> _state.Snapshot:
        """Return the request's state, built from ``current``."""
        fresh, ensure_correlation, ensure_request_id, overrides = self._options
        return self.extracted.build_snapshot(
            current,
            fresh=fresh,
            ensure_correlation=ensure_correlation,
            ensure_request_id=ensure_request_id,
            overrides=overrides,
        )

    def entered(self, pushed: _state.Snapshot) -> str | None:
        """Return the correlation id in force inside the block."""
        correlation_id: str | None = pushed[_state.CORRELATION_ID]
        return correlation_id

    def __enter__(self) -> str | None:
        correlation_id: str | None = super().__enter__()
        return correlation_id


def _read_custom(
    fmt: Format,
    headers: Mapping[str, str],
    inbound: _headers.Inbound,
    *,
    strict: bool,
    trusted: bool,
) -> None:
    try:
        read = dict(fmt.read(headers))
    except Exception as error:  # a user format's bug must not break the request
        report_internal_error(f"format {type(fmt).__qualname__}.read", error)
        return
    for name, raw in read.items():
        try:
            cleaned = _headers.clean_field(name, raw, trusted=trusted)
        except InvalidValueError as error:
            if strict:
                raise
            warn_invalid(error.field, error.reason, raw if isinstance(raw, (str, bytes)) else None)
            inbound.problems.append((error.field, error.reason, None))
            continue
        if cleaned is not None:
            inbound.values.setdefault(*cleaned)


def _joined(pairs: Iterable[tuple[object, object]]) -> dict[str, str]:
    joined: dict[str, list[str]] = {}
    for raw_name, raw_value in pairs:
        lines = raw_value if isinstance(raw_value, (list, tuple)) else [raw_value]
        for line in lines:
            try:
                name = as_text("header name", raw_name).strip().lower()
                value = as_text(name, line)
            except InvalidValueError:
                continue
            joined.setdefault(name, []).append(value[:_MAX_FORMAT_INPUT])
    return {name: ",".join(values)[:_MAX_FORMAT_INPUT] for name, values in joined.items()}


def extract(
    carrier: object,
    *,
    getter: Getter | None = None,
    formats: Iterable[str | Format] | None = None,
    strict: bool | None = None,
    trusted: bool | None = None,
    correlation_sources: Iterable[str] | None = None,
) -> Extracted:
    """Read and validate the context carried by ``carrier``.

    Nothing is changed until the result is entered (``with extract(...)``) or applied.

    Args:
        carrier: Headers: a mapping (str or bytes names, list values for repeated headers),
            a list of ``(name, value)`` pairs (ASGI), an ASGI scope, a WSGI environ, message
            headers, or anything ``getter`` reads.
        getter: Reads ``carrier`` (`Getter`); the default
            recognises the types above.
        formats: Formats to read: names among ``"flext"``, ``"tracecontext"``, ``"baggage"``,
            ``"b3"``, ``"b3multi"``, and `Format` objects. Default: ``flext``,
            ``tracecontext`` and ``baggage``.
        strict: Raise on any invalid value instead of dropping it with a warning; default
            ``Settings.strict_validation``.
        trusted: Accept a user id (``X-User-Id``) from this carrier; default
            ``Settings.trust_inbound_user_id``. Only for carriers from your own services.
        correlation_sources: Where the correlation id comes from, first found wins, among
            ``"x-correlation-id"``, ``"x-request-id"``, ``"traceparent"`` (its trace id);
            default ``Settings.correlation_sources``.

    Returns:
        The validated context.

    Raises:
        InvalidValueError: Only in strict mode, on the first invalid value (its message has
            the field, the reason and the length, never the value).
        ConfigError: An unknown format name or correlation source (a programming error).
    """
    defaults = inbound_defaults()
    names, custom = _split_formats(formats, "extract()")
    strict_mode = defaults.strict if strict is None else bool(strict)
    trust = defaults.trusted if trusted is None else bool(trusted)
    sources = (
        defaults.correlation_sources
        if correlation_sources is None
        else _checked_sources(correlation_sources, "extract()")
    )
    chosen = getter if getter is not None else default_getter(carrier)
    source: object = carrier
    if chosen is not None:
        try:
            source = pairs_from(chosen, carrier)
        except Exception as error:  # a getter that cannot read the carrier: nothing inbound
            if strict_mode:
                raise InvalidValueError("carrier", "the getter could not read it", 0) from None
            report_internal_error(f"getter {type(chosen).__qualname__}", error)
            source = ()
    inbound = _headers.read_inbound(
        source,
        strict=strict_mode,
        trusted=trust,
        formats=names,
        correlation_sources=sources,
    )
    if custom:
        try:
            pairs = source.items() if isinstance(source, Mapping) else source
            joined = _joined(pairs)  # type: ignore[arg-type]
        except TypeError:
            joined = {}
        for fmt in custom:
            _read_custom(fmt, joined, inbound, strict=strict_mode, trusted=trust)
    return Extracted(inbound)


def _checked_sources(sources: Iterable[str], where: str) -> tuple[str, ...]:
    if isinstance(sources, str):
        raise ConfigError(where, "correlation_sources", "a list of source names", "a str")
    chosen = tuple(sources)
    unknown = [s for s in chosen if s not in CORRELATION_SOURCES]
    if unknown:
        raise ConfigError(
            where, "correlation_sources", f"names among {CORRELATION_SOURCES}", repr(unknown[0])
        )
    return chosen


def propagation_header_names(formats: Iterable[str | Format] | None = None) -> tuple[str, ...]:
    """Return every header name the library may write: built-in, custom fields, formats."""
    _, custom = _split_formats(formats, "propagation_header_names()")
    names = list(_BUILTIN_HEADER_NAMES)
    names.extend(f.header for f in _fields.declared_fields() if f.header)
    for fmt in custom:
        names.extend(fmt.header_names)
    return tuple(dict.fromkeys(names))


def _format_context(snapshot: _state.Snapshot, headers: Mapping[str, str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for name, slot in (
        ("correlation_id", _state.CORRELATION_ID),
        ("parent_correlation_id", _state.PARENT_CORRELATION_ID),
        ("service_name", _state.SERVICE_NAME),
        ("service_version", _state.SERVICE_VERSION),
        ("service_environment", _state.SERVICE_ENVIRONMENT),
        ("request_id", _state.REQUEST_ID),
        ("operation_name", _state.OPERATION_NAME),
    ):
        if snapshot[slot] is not None:
            context[name] = snapshot[slot]
    context.update(snapshot[_state.CUSTOM_FIELDS] or {})
    traceparent = headers.get(_H.TRACEPARENT) or _headers.outbound_headers(
        snapshot, ("tracecontext",)
    ).get(_H.TRACEPARENT)
    if traceparent:
        _, trace_id, span_id, flags = traceparent.split("-")
        context.update(trace_id=trace_id, span_id=span_id, sampled=str(int(flags, 16) & 1))
    return context


def inject(
    carrier: C,
    *,
    setter: Setter | None = None,
    formats: Iterable[str | Format] | None = None,
    destination: Destination | None = None,
    allowed_destinations: Iterable[str | DestinationPattern] | None = None,
) -> C:
    """Write the current context into ``carrier`` as headers.

    User ids are never written. Every value is checked before it is written: a name that is
    not an HTTP token or a value with a control character never leaves.

    Args:
        carrier: A mutable mapping (dict, ``httpx.Headers``, message headers), a list of
            header pairs (``bytes`` pairs for an empty list: ASGI), or anything ``setter``
            writes.
        setter: Writes into ``carrier`` (`Setter`).
        formats: As for `extract`. Default: ``flext``, ``tracecontext``, ``baggage``.
        destination: Where the carrier goes (URL, ``host[:port]`` or ``(scheme, host,
            port)``). When given, the context is written only if the destination matches
            ``allowed_destinations``, else the process-wide allowlist
            (`set_allowed_destinations`); otherwise
            propagation headers already in the carrier are removed and a warning names the
            host once. Without a destination, no check is made: the caller vouches for it
            (a message to your own queue).
        allowed_destinations: Host patterns for this call, instead of the process-wide ones.

    Returns:
        ``carrier``, for ``headers = inject({})``.

    Raises:
        TypeError: No setter fits ``carrier``.
        ConfigError: An unknown format name or an invalid destination pattern.
    """
    names, custom = _split_formats(formats, "inject()")
    chosen = setter if setter is not None else default_setter(carrier)
    if destination is not None and not destination_allowed(destination, allowed_destinations):
        warn_refused(destination)
        delete = getattr(chosen, "delete", None)
        if callable(delete):
            for name in propagation_header_names(custom):
                delete(carrier, name)
        return carrier
    snapshot = _state.get()
    headers = _headers.outbound_headers(snapshot, names)
    for fmt in custom:
        try:
            written = dict(fmt.write(_format_context(snapshot, headers)))
        except Exception as error:  # a user format's bug must not break the call
            report_internal_error(f"format {type(fmt).__qualname__}.write", error)
            continue
        headers.update(_headers.safe_headers(written))
    if type(carrier) is dict and type(chosen) is MappingSetter:
        # The common case in one pass: drop other spellings of the names, then update. (Not
        # for dict subclasses: update() would bypass an overridden __setitem__.)
        plain = cast("dict[object, object]", carrier)
        lowered = {name.lower() for name in headers}
        for stale in [k for k in plain if isinstance(k, str) and k.lower() in lowered]:
            del plain[stale]
        plain.update(headers)
        return carrier
    for name, value in headers.items():
        chosen.set(carrier, name, value)
    return carrier
