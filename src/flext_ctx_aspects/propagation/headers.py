"""Reading and writing context as headers: the library's own, W3C Trace Context and Baggage, B3.

Inbound values are untrusted. `read_inbound` takes any iterable of ``(name, value)``
pairs (str or bytes, as in ASGI scopes), matches names case-insensitively, validates every
value and returns an `Inbound`: the clean values, and the problems found. Nothing here
raises on bad input except `InvalidValueError` in strict mode.

Formats (``formats=`` of `read_inbound` and `outbound_headers`):

* ``"flext"`` — ``X-Correlation-Id``, ``X-Parent-Correlation-Id``, ``X-Service-Name``,
  ``X-Service-Version``, ``X-Service-Environment``, ``X-Request-Id``, ``X-Operation-Name``,
  ``X-User-Id`` (inbound only, and only from a trusted source) and custom fields' headers.
  Inbound, the snake_case keys of ``get_full_context()`` are accepted too.
* ``"tracecontext"`` — ``traceparent`` and ``tracestate``.
* ``"baggage"`` — ``baggage``: custom fields by their baggage key; other members are kept
  and passed on unchanged.
* ``"b3"`` / ``"b3multi"`` — Zipkin's single ``b3`` header or the ``X-B3-*`` set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flext_ctx_aspects import _state, _trace
from flext_ctx_aspects import fields as _fields
from flext_ctx_aspects._diagnostics import report_internal_error, warn_invalid
from flext_ctx_aspects._validate import as_text
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import InvalidValueError

# `fields` is imported as a module: fields.py imports this package, so the names it
# defines are read at call time, which keeps the import cycle harmless.

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_FORMATS",
    "Inbound",
    "apply_inbound",
    "clean_field",
    "header_problem",
    "outbound_headers",
    "read_inbound",
    "safe_headers",
]

ALL_FORMATS: Final = frozenset({"flext", "tracecontext", "baggage", "b3", "b3multi"})
DEFAULT_FORMATS: Final = ("flext", "tracecontext", "baggage")

_H = FlextConstants.Headers
_L = FlextConstants.Limits

# Built-in fields carried by the library's headers (from the one field table).
_HEADER_FIELDS: Final = {f.name: f for f in _state.FIELDS if f.header and f.validator}
# Inbound names (lowercase) -> field: header names and get_full_context() keys.
_INBOUND_NAMES: Final = {
    **{f.header.lower(): name for name, f in _HEADER_FIELDS.items() if f.header},
    **{f.name: f.name for f in _state.PUBLIC_FIELDS},
}
_FIELD_SLOTS: Final = _state.FIELD_SLOTS
_W3C_NAMES: Final = frozenset({"traceparent", "tracestate", "baggage"})
_B3_NAMES: Final = frozenset(
    {"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"}
)
_SCALARS: Final = (str, int, float, bool, type(None))


@dataclass(slots=True)
class Inbound:
    """Clean context values read from an inbound carrier.

    Attributes:
        values: Field name -> clean value (built-in and custom fields).
        trace_parent: ``(parent span id, flags)`` of a valid inbound traceparent or B3 header.
        tracestate: Inbound tracestate entries (only with a valid traceparent).
        baggage: Inbound baggage members not mapped to a custom field, passed on unchanged.
        problems: ``(field, reason, raw)`` for each value that was dropped.
    """

    values: dict[str, Any] = field(default_factory=dict)
    trace_parent: tuple[str, int] | None = None
    tracestate: tuple[tuple[str, str], ...] = ()
    baggage: dict[str, str] = field(default_factory=dict)
    problems: list[tuple[str, str, Any]] = field(default_factory=list)


def _pairs(carrier: object) -> Iterable[tuple[object, object]]:
    if isinstance(carrier, Mapping):
        return carrier.items()
    if isinstance(carrier, (str, bytes)):
        raise InvalidValueError(
            "carrier", "expected a mapping or (name, value) pairs", len(carrier)
        )
    try:
        items = list(carrier)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidValueError("carrier", "expected a mapping or (name, value) pairs", 0) from None
    return [
        (item[0], item[1]) for item in items if isinstance(item, (tuple, list)) and len(item) == 2
    ]


def _group(carrier: object, problems: list[tuple[str, str, Any]]) -> dict[str, list[object]]:
    grouped: dict[str, list[object]] = {}
    for raw_name, raw_value in _pairs(carrier):
        try:
            name = as_text("header name", raw_name).strip().lower()
        except InvalidValueError:
            continue
        if len(name) > _L.MAX_ID_LENGTH:
            continue
        values = raw_value if isinstance(raw_value, (list, tuple)) else [raw_value]
        grouped.setdefault(name, []).extend(values)
    return grouped


def _single(name: str, values: list[object]) -> str | bytes:
    distinct = []
    for value in values:
        if value is None:
            raise InvalidValueError(name, "no value", 0)
        if not isinstance(value, (str, bytes, bytearray)):
            raise InvalidValueError(name, f"expected str or bytes, got {type(value).__name__}", 0)
        if value not in distinct:
            distinct.append(value)
    if not distinct:
        raise InvalidValueError(name, "no value", 0)
    if len(distinct) > 1:
        raise InvalidValueError(name, "conflicting duplicate values", sum(len(v) for v in distinct))
    only = distinct[0]
    return bytes(only) if isinstance(only, bytearray) else only


def _clean_metadata(raw: object) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidValueError("request_metadata", "expected a mapping", 0)
    clean: dict[str, Any] = {}
    for key, value in list(raw.items())[: _L.MAX_METADATA_ITEMS]:
        if not isinstance(key, str) or not key or len(key) > _L.MAX_METADATA_KEY_LENGTH:
            continue
        if not key.isprintable() or not isinstance(value, _SCALARS):
            continue
        if isinstance(value, str) and (
            len(value) > _L.MAX_METADATA_VALUE_LENGTH or not value.isprintable()
        ):
            continue
        clean[key] = value
    return clean


def read_inbound(
    carrier: object,
    *,
    strict: bool,
    trusted: bool,
    formats: Iterable[str] = DEFAULT_FORMATS,
    correlation_sources: Iterable[str] = ("x-correlation-id", "x-request-id", "traceparent"),
) -> Inbound:
    """Read and validate context values from ``carrier``.

    Args:
        carrier: A mapping (header names or ``get_full_context()`` keys to values) or an
            iterable of ``(name, value)`` pairs. Names and values may be str or bytes; a list
            value holds repeated headers.
        strict: Raise on the first invalid value instead of dropping it.
        trusted: Accept a user id (``X-User-Id``); otherwise it is ignored.
        formats: Header formats to read.
        correlation_sources: Where the correlation id comes from, first found wins.

    Returns:
        The clean values and the problems found (each also logged as a warning, without
        the raw value, unless ``strict``).

    Raises:
        InvalidValueError: Only when ``strict`` and a value is invalid.
    """
    wanted = frozenset(formats)
    inbound = Inbound()
    problems = inbound.problems

    def drop(error: InvalidValueError, raw: Any) -> None:
        if strict:
            raise error
        problems.append((error.field, error.reason, raw))

    try:
        grouped = _group(carrier, problems)
    except InvalidValueError as error:
        drop(error, None)
        grouped = {}

    if "flext" in wanted:
        _read_library_fields(grouped, inbound, drop, trusted=trusted)
    if "tracecontext" in wanted:
        _read_trace_context(grouped, inbound, drop)
    if "b3" in wanted or "b3multi" in wanted:
        _read_b3(grouped, inbound, drop, wanted)
    if "baggage" in wanted:
        _read_baggage(grouped, inbound, drop)
    _choose_correlation(grouped, inbound, correlation_sources)

    if not strict:
        for name, reason, raw in problems:
            warn_invalid(name, reason, raw if isinstance(raw, (str, bytes)) else None)
    return inbound


def _read_library_fields(
    grouped: dict[str, list[object]], inbound: Inbound, drop: Any, *, trusted: bool
) -> None:
    for name, values in grouped.items():
        field_name = _INBOUND_NAMES.get(name)
        custom = (
            None if field_name else (_fields.field_by_header(name) or _fields.field_by_name(name))
        )
        if field_name is None and custom is None:
            continue
        try:
            if field_name == "request_metadata":
                # An empty list of values (a repeated header with no line) is no mapping.
                inbound.values["request_metadata"] = _clean_metadata(values[-1] if values else None)
                continue
            raw = _single(name, values)
            builtin = _HEADER_FIELDS.get(field_name or "")
            if builtin is not None and builtin.trusted_only and not trusted:
                continue
            if custom is not None:
                inbound.values[custom.name] = custom.clean(raw)
            elif field_name == "trace_id":
                inbound.values["trace_id"] = _clean_trace_id(raw)
            elif builtin is not None and builtin.validator is not None:
                inbound.values[builtin.name] = builtin.validator(builtin.name, raw)
        except InvalidValueError as error:
            drop(error, values[0] if values else None)


def _clean_trace_id(raw: str | bytes) -> str:
    from flext_ctx_aspects.propagation import w3c

    value = as_text("trace_id", raw).strip()
    if not w3c.is_valid_trace_id(value):
        raise InvalidValueError("trace_id", "not 32 lowercase hex digits, or all zeros", len(value))
    return value


def _read_trace_context(grouped: dict[str, list[object]], inbound: Inbound, drop: Any) -> None:
    from flext_ctx_aspects.propagation import w3c

    values = grouped.get("traceparent")
    if not values:
        return
    try:
        parsed = w3c.parse_traceparent(_single("traceparent", values))
    except InvalidValueError as error:
        # Trace Context §4.3: an invalid traceparent means a new trace; tracestate is dropped.
        drop(error, values[0])
        return
    inbound.values.setdefault("trace_id", parsed.trace_id)
    inbound.trace_parent = (parsed.parent_id, parsed.flags)
    states = grouped.get("tracestate")
    if states:
        try:
            texts = [as_text("tracestate", v) for v in states if isinstance(v, (str, bytes))]
            inbound.tracestate = w3c.parse_tracestate(texts)
        except InvalidValueError as error:
            drop(error, states[0])


def _read_b3(
    grouped: dict[str, list[object]], inbound: Inbound, drop: Any, wanted: frozenset[str]
) -> None:
    from flext_ctx_aspects.propagation import b3

    if inbound.trace_parent is not None:
        return  # traceparent, when valid, wins over B3
    try:
        if "b3" in wanted and grouped.get("b3"):
            parsed = b3.parse_b3_single(_single("b3", grouped["b3"]))
        elif "b3multi" in wanted and grouped.get("x-b3-traceid"):

            def get(name: str) -> str | None:
                values = grouped.get(name.lower())
                return None if not values else as_text(name, _single(name, values))

            parsed = b3.parse_b3_multi(get)
        else:
            return
    except InvalidValueError as error:
        drop(error, None)
        return
    inbound.values.setdefault("trace_id", parsed.trace_id)
    sampled = 1 if parsed.sampled or parsed.debug else 0
    inbound.trace_parent = (parsed.span_id, sampled)


def _read_baggage(grouped: dict[str, list[object]], inbound: Inbound, drop: Any) -> None:
    from flext_ctx_aspects.propagation import baggage

    values = grouped.get("baggage")
    if not values:
        return
    try:
        texts = [as_text("baggage", v) for v in values if isinstance(v, (str, bytes))]
        members = baggage.parse_baggage(texts)
    except InvalidValueError as error:
        drop(error, values[0])
        return
    by_key = {f.baggage_key: f for f in _fields.declared_fields() if f.baggage_key}
    for key, value in members.items():
        custom = by_key.get(key)
        if custom is None:
            # Passed on unchanged, but never stored with a control character in it.
            if value.isprintable():
                inbound.baggage[key] = value
            else:
                # The decoded value goes to the warning for its length and hash only.
                drop(
                    InvalidValueError(
                        "baggage", "member value has a control character", len(value)
                    ),
                    value,
                )
            continue
        if custom.name in inbound.values:
            continue  # the field's own header wins over baggage
        try:
            inbound.values[custom.name] = custom.clean(value)
        except InvalidValueError as error:
            drop(error, value)


def _choose_correlation(
    grouped: dict[str, list[object]], inbound: Inbound, sources: Iterable[str]
) -> None:
    values = inbound.values
    explicit = values.pop("correlation_id", None)
    from_full_context = "correlation_id" in grouped
    for source in sources:
        if source == "x-correlation-id" and explicit is not None:
            values["correlation_id"] = explicit
            return
        if source == "x-request-id" and "request_id" in values:
            values["correlation_id"] = values["request_id"]
            return
        if source == "traceparent" and inbound.trace_parent is not None and "trace_id" in values:
            values["correlation_id"] = values["trace_id"]
            return
    if explicit is not None and from_full_context:
        # A get_full_context() mapping is not a header set: its correlation id always counts.
        values["correlation_id"] = explicit


def apply_inbound(snapshot: _state.Snapshot, inbound: Inbound) -> _state.Snapshot:
    """Return ``snapshot`` with the inbound values written over it."""
    changes: dict[int, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in inbound.values.items():
        slot = _FIELD_SLOTS.get(name)
        if slot is None:
            custom[name] = value
        else:
            changes[slot] = value
    if custom:
        changes[_state.CUSTOM_FIELDS] = {**(snapshot[_state.CUSTOM_FIELDS] or {}), **custom}
    if inbound.trace_parent is not None:
        parent_id, flags = inbound.trace_parent
        changes[_state.TRACE_PARENT] = (parent_id, flags, inbound.tracestate)
    if inbound.baggage:
        changes[_state.BAGGAGE] = dict(inbound.baggage)
    return _state.with_changes(snapshot, changes) if changes else snapshot


def outbound_headers(
    snapshot: _state.Snapshot, formats: Iterable[str] = DEFAULT_FORMATS
) -> dict[str, str]:
    """Return the headers that carry ``snapshot``'s context to another service.

    The user id is never written (it is personal data and inbound acceptance needs trust).
    """
    wanted = frozenset(formats)
    headers: dict[str, str] = {}
    if "flext" in wanted:
        for name, builtin in _HEADER_FIELDS.items():
            value = snapshot[_FIELD_SLOTS[name]]
            if value is not None and builtin.outbound and builtin.header:
                headers[builtin.header] = value
        fields = snapshot[_state.CUSTOM_FIELDS] or {}
        for custom in _fields.declared_fields():
            value = fields.get(custom.name)
            if value is not None and custom.propagate and custom.header:
                headers[custom.header] = value
    trace_id = _trace.trace_id_of(snapshot)
    trace_parent = snapshot[_state.TRACE_PARENT]
    flags = trace_parent[1] if trace_parent else 1
    span = _trace.span_id_of(snapshot)
    if trace_id is not None and span is not None:
        if "tracecontext" in wanted:
            from flext_ctx_aspects.propagation import w3c

            # Trace Context §3.2.2.5: only the sampled bit is defined; others go out as zero.
            headers[_H.TRACEPARENT] = w3c.format_traceparent(
                trace_id, span, flags & w3c.FLAG_SAMPLED
            )
            if trace_parent and trace_parent[2]:
                state = w3c.format_tracestate(trace_parent[2])
                if state:
                    headers[_H.TRACESTATE] = state
        if "b3" in wanted or "b3multi" in wanted:
            from flext_ctx_aspects.propagation import b3

            context = b3.B3Context(
                trace_id=trace_id,
                span_id=span,
                sampled=bool(flags & 1),
                debug=False,
                parent_span_id=None,
            )
            if "b3" in wanted:
                headers["b3"] = b3.format_b3_single(context)
            if "b3multi" in wanted:
                headers.update(b3.format_b3_multi(context))
    if "baggage" in wanted:
        # This service's own fields first, so that a caller's large baggage cannot push them
        # out of the limits; then the inbound members, passed on unchanged.
        members: dict[str, str] = {}
        fields = snapshot[_state.CUSTOM_FIELDS] or {}
        for custom in _fields.declared_fields():
            value = fields.get(custom.name)
            if value is not None and custom.propagate and custom.baggage_key:
                members[custom.baggage_key] = value
        for key, value in (snapshot[_state.BAGGAGE] or {}).items():
            members.setdefault(key, value)
        if members:
            from flext_ctx_aspects.propagation import baggage

            # At least the 64 members and 8192 bytes Baggage §3.3.2 requires to pass on.
            encoded = baggage.format_baggage(members, max_members=baggage.MAX_BAGGAGE_MEMBERS)
            if encoded:
                headers[_H.BAGGAGE] = encoded
    return safe_headers(headers)


_BUILTIN_HEADERS: Final = frozenset(
    [f.header for f in _HEADER_FIELDS.values() if f.header]
    + [_H.TRACEPARENT, _H.TRACESTATE, _H.BAGGAGE, "b3"]
    + ["X-B3-TraceId", "X-B3-SpanId", "X-B3-ParentSpanId", "X-B3-Sampled", "X-B3-Flags"]
)
_TOKEN_CHARACTERS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def header_problem(name: object, value: object) -> str | None:
    """Say why ``name: value`` must not be sent, or return None when it may.

    A header goes out only when its name is an RFC 7230 token and its value is at most
    ``MAX_HEADER_VALUE_LENGTH`` visible ASCII characters (inner spaces allowed) without
    leading or trailing whitespace: no CR, LF or other control character ever leaves.
    """
    if name not in _BUILTIN_HEADERS and (
        not isinstance(name, str) or not name or not _TOKEN_CHARACTERS.issuperset(name)
    ):
        return "header name is not an HTTP token"
    if not isinstance(value, str):
        return f"value is a {type(value).__name__}, not a str"
    if len(value) > _L.MAX_HEADER_VALUE_LENGTH:
        return f"value is longer than {_L.MAX_HEADER_VALUE_LENGTH} characters"
    # For ASCII text, isprintable() is exactly 0x20-0x7E: one C-level pass each.
    if not value or value != value.strip(" \t") or not (value.isascii() and value.isprintable()):
        return "value is empty, padded, or has a character outside visible ASCII"
    return None


def safe_headers(headers: Mapping[str, object]) -> dict[str, str]:
    """Return ``headers`` without the entries `header_problem` refuses.

    Refused entries are the library's own values gone wrong (a custom format, a value set
    through an unchecked path): reported once per header through the library's logger,
    without the value, and never sent.
    """
    clean: dict[str, str] = {}
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is None:
            clean[name] = value  # type: ignore[assignment]
            continue
        shown = name if isinstance(name, str) and name.isprintable() else "a header"
        length = len(value) if isinstance(value, (str, bytes)) else 0
        report_internal_error(
            f"outbound header {shown[:64]}", InvalidValueError(shown[:64], problem, length)
        )
    return clean


def clean_field(name: object, raw: object, *, trusted: bool) -> tuple[str, str] | None:
    """Validate one value a custom format read, for the field ``name``.

    Returns:
        ``(field, clean value)``, or None when the field is unknown or needs trust.

    Raises:
        InvalidValueError: The value is invalid (not text, bad characters, too long...).
    """
    if not isinstance(name, str):
        return None
    if not isinstance(raw, (str, bytes)):
        raise InvalidValueError(name[:64], "a format returned a non-text value", 0)
    if name == "trace_id":
        return name, _clean_trace_id(raw)
    builtin = _HEADER_FIELDS.get(name)
    if builtin is not None and builtin.validator is not None:
        if builtin.trusted_only and not trusted:
            return None
        return name, builtin.validator(name, raw)
    custom = _fields.field_by_name(name)
    if custom is None:
        return None
    return custom.name, custom.clean(raw)
