"""Zipkin B3 wire formats: the single ``b3`` header and the ``X-B3-*`` headers.

Pure parsers and formatters, with no I/O, logging or mutable module state. They implement
https://github.com/openzipkin/b3-propagation (its README is the specification; "README"
below). Parsers accept ``str`` or latin-1 ``bytes`` and raise
`InvalidValueError` (header name, reason and input length;
never the input) on invalid input. Formatters raise `ValueError` on an invalid
`B3Context`, a programming error.

Decisions taken where the README leaves room (each is tested):

* **Hex is lowercase only**, on input and output. The README says "lower-hex" for every
  identifier, and the reference implementation (Brave) refuses other characters. An
  uppercase id is invalid rather than silently folded.
* **All-zero ids are invalid** (trace id, span id and parent span id), as in Brave, which
  logs "expected a 16 or 32 lower hex trace ID" for a zero id.
* A 16-character trace id is left-padded with zeros to 32, so that ``B3Context.trace_id``
  has one shape; the formatters write it back as 32 characters, which every B3 reader
  accepts ("encoded as 32 or 16 lower-hex characters").
* **Debug implies accept**: "Debug is an emphasized accept decision that implies accept", so
  a debug context has ``sampled=True``. ``X-B3-Flags: 1`` wins over ``X-B3-Sampled: 0``.
* **Sampling-only headers** (``b3: 0``, or ``X-B3-Sampled`` without ids) are valid B3, but
  a `B3Context` cannot exist without ids: the parsers raise
  `InvalidValueError` with the reason
  `SAMPLING_ONLY_REASON`, which callers may test to honour the decision alone.
* ``X-B3-Sampled`` also accepts ``true`` and ``false`` (any case): "a lenient implementation
  may accept them". ``X-B3-Flags`` accepts ``0`` and ``1`` only.
* The single header has exactly the README's shapes: ``{TraceId}-{SpanId}``, then optionally
  ``-{SamplingState}``, then optionally ``-{ParentSpanId}``. A parent without a sampling state
  cannot be written in that shape, so `format_b3_single` omits the parent when the
  sampling decision is deferred (the README encourages omitting it anyway).
* Empty header values (after trimming spaces and tabs) count as absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from flext_ctx_aspects.errors import InvalidValueError

__all__ = [
    "B3_FLAGS_HEADER",
    "B3_PARENT_SPAN_ID_HEADER",
    "B3_SAMPLED_HEADER",
    "B3_SINGLE_HEADER",
    "B3_SPAN_ID_HEADER",
    "B3_TRACE_ID_HEADER",
    "MAX_B3_SINGLE_LENGTH",
    "SAMPLING_ONLY_REASON",
    "SHORT_TRACE_ID_LENGTH",
    "SPAN_ID_LENGTH",
    "TRACE_ID_LENGTH",
    "B3Context",
    "format_b3_multi",
    "format_b3_single",
    "parse_b3_multi",
    "parse_b3_single",
]

B3_SINGLE_HEADER: Final = "b3"
B3_TRACE_ID_HEADER: Final = "X-B3-TraceId"
B3_SPAN_ID_HEADER: Final = "X-B3-SpanId"
B3_PARENT_SPAN_ID_HEADER: Final = "X-B3-ParentSpanId"
B3_SAMPLED_HEADER: Final = "X-B3-Sampled"
B3_FLAGS_HEADER: Final = "X-B3-Flags"

SAMPLING_ONLY_REASON: Final = "sampling-only b3 header carries no ids"
"""Reason of the error raised for a valid B3 header that carries only a sampling decision."""

TRACE_ID_LENGTH: Final = 32
SHORT_TRACE_ID_LENGTH: Final = 16
SPAN_ID_LENGTH: Final = 16
# "{TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}" at its longest.
MAX_B3_SINGLE_LENGTH: Final = TRACE_ID_LENGTH + 1 + SPAN_ID_LENGTH + 2 + 1 + SPAN_ID_LENGTH

_SAMPLING_STATES: Final = {"0": (False, False), "1": (True, False), "d": (True, True)}
"""Single-header sampling state -> (sampled, debug). Defer is the absence of the field."""
_SAMPLED_VALUES: Final = {"1": True, "0": False, "true": True, "false": False}
_FLAGS_VALUES: Final = {"1": True, "0": False}
_HEXDIGLC: Final = "0123456789abcdef"
_OWS: Final = " \t"
_FIELDS_MIN: Final = 2
_FIELDS_MAX: Final = 4


@dataclass(frozen=True, slots=True)
class B3Context:
    """A B3 trace context.

    Attributes:
        trace_id: 32 lowercase hex characters (a 64-bit id is left-padded with zeros).
        span_id: 16 lowercase hex characters.
        sampled: The sampling decision; None defers it to the receiver.
        debug: The debug flag; it implies ``sampled=True``.
        parent_span_id: 16 lowercase hex characters, or None on a root span.
    """

    trace_id: str
    span_id: str
    sampled: bool | None = None
    debug: bool = False
    parent_span_id: str | None = None


def _is_lower_hex_id(text: str, length: int) -> bool:
    # strip() leaves nothing exactly when every character is lowercase hex; an all-zero id
    # is left with nothing by strip("0").
    return len(text) == length and not text.strip(_HEXDIGLC) and bool(text.strip("0"))


def _to_text(field: str, value: object) -> str:
    """Return ``value`` as ASCII text without surrounding OWS; bytes are read as latin-1."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("latin-1")
    else:
        raise InvalidValueError(field, f"expected str or bytes, got {type(value).__name__}", 0)
    if not text.isascii():
        raise InvalidValueError(field, "contains a non-ASCII character", len(text))
    return text.strip(_OWS)


def _trace_id(field: str, text: str, length: int) -> str:
    if len(text) == SHORT_TRACE_ID_LENGTH:
        text = "0" * SHORT_TRACE_ID_LENGTH + text
    if not _is_lower_hex_id(text, TRACE_ID_LENGTH):
        raise InvalidValueError(
            field, "trace id is not 16 or 32 lowercase hex characters, not all zeros", length
        )
    return text


def _span_id(field: str, text: str, length: int, what: str = "span id") -> str:
    if not _is_lower_hex_id(text, SPAN_ID_LENGTH):
        raise InvalidValueError(
            field, f"{what} is not 16 lowercase hex characters, not all zeros", length
        )
    return text


def parse_b3_single(value: str | bytes) -> B3Context:
    """Parse a single ``b3`` header value.

    Accepted shapes: ``{TraceId}-{SpanId}``, ``{TraceId}-{SpanId}-{SamplingState}`` and
    ``{TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}``, with SamplingState ``0`` (deny),
    ``1`` (accept) or ``d`` (debug). Surrounding spaces and tabs are ignored.

    Args:
        value: The header value, as ``str`` or latin-1 ``bytes``.

    Returns:
        The parsed context.

    Raises:
        InvalidValueError: The value is not a valid ``b3`` header, or is a valid one carrying
            only a sampling state (reason `SAMPLING_ONLY_REASON`).
    """
    length = len(value) if isinstance(value, (str, bytes, bytearray)) else 0
    text = _to_text(B3_SINGLE_HEADER, value)
    if not text:
        raise InvalidValueError(B3_SINGLE_HEADER, "empty", length)
    if text in _SAMPLING_STATES:
        # README: "When only propagating a sampling decision, the header is still named b3,
        # but only contains the sampling state."
        raise InvalidValueError(B3_SINGLE_HEADER, SAMPLING_ONLY_REASON, length)
    # Checked before splitting so that a 100 KB value costs nothing more.
    if len(text) > MAX_B3_SINGLE_LENGTH:
        raise InvalidValueError(
            B3_SINGLE_HEADER, f"longer than {MAX_B3_SINGLE_LENGTH} characters", length
        )
    fields = text.split("-")
    if not _FIELDS_MIN <= len(fields) <= _FIELDS_MAX:
        raise InvalidValueError(B3_SINGLE_HEADER, "expected 2 to 4 dash-separated fields", length)
    trace_id = _trace_id(B3_SINGLE_HEADER, fields[0], length)
    span_id = _span_id(B3_SINGLE_HEADER, fields[1], length)
    sampled: bool | None = None
    debug = False
    parent_span_id: str | None = None
    if len(fields) > _FIELDS_MIN:
        state = _SAMPLING_STATES.get(fields[2])
        if state is None:
            raise InvalidValueError(
                B3_SINGLE_HEADER, "sampling state is not '0', '1' or 'd'", length
            )
        sampled, debug = state
    if len(fields) == _FIELDS_MAX:
        parent_span_id = _span_id(B3_SINGLE_HEADER, fields[3], length, "parent span id")
    return B3Context(trace_id, span_id, sampled, debug, parent_span_id)


def _header(getter: Callable[[str], str | None], name: str) -> tuple[str | None, int]:
    """Read one header through ``getter``: (trimmed text or None when absent/empty, length)."""
    raw = getter(name)
    if raw is None:
        return None, 0
    text = _to_text(name, raw)
    return (text or None), len(raw)


def parse_b3_multi(getter: Callable[[str], str | None]) -> B3Context:
    """Parse the ``X-B3-*`` headers.

    ``getter(name)`` returns the value of the header ``name`` or None when it is absent. It is
    called with the README spelling (``X-B3-TraceId``, ``X-B3-SpanId``,
    ``X-B3-ParentSpanId``, ``X-B3-Sampled``, ``X-B3-Flags``) and must match names
    case-insensitively, as HTTP does. When a header is repeated it should return the first
    value: "When extracting state headers, the first value wins" (README).

    Args:
        getter: Header lookup; it may return ``str`` or latin-1 ``bytes``.

    Returns:
        The parsed context.

    Raises:
        InvalidValueError: A header is invalid, ``X-B3-TraceId`` or ``X-B3-SpanId`` is
            missing ("The X-B3-TraceId header is required", "The X-B3-SpanId header is
            required"), or only a sampling decision is present (reason
            `SAMPLING_ONLY_REASON`). ``field`` names the offending header.
    """
    trace_text, trace_length = _header(getter, B3_TRACE_ID_HEADER)
    span_text, span_length = _header(getter, B3_SPAN_ID_HEADER)
    parent_text, parent_length = _header(getter, B3_PARENT_SPAN_ID_HEADER)
    sampled_text, sampled_length = _header(getter, B3_SAMPLED_HEADER)
    flags_text, flags_length = _header(getter, B3_FLAGS_HEADER)

    sampled: bool | None = None
    if sampled_text is not None:
        sampled = _SAMPLED_VALUES.get(sampled_text.lower())
        if sampled is None:
            raise InvalidValueError(B3_SAMPLED_HEADER, "expected '1' or '0'", sampled_length)
    debug = False
    if flags_text is not None:
        flag = _FLAGS_VALUES.get(flags_text)
        if flag is None:
            raise InvalidValueError(B3_FLAGS_HEADER, "expected '1' or '0'", flags_length)
        debug = flag
    if debug:
        # README: "Debug implies an accept decision".
        sampled = True

    if trace_text is None and span_text is None:
        reason = "missing" if sampled_text is None and flags_text is None else SAMPLING_ONLY_REASON
        raise InvalidValueError(B3_TRACE_ID_HEADER, reason, trace_length)
    if trace_text is None:
        raise InvalidValueError(B3_TRACE_ID_HEADER, "missing", trace_length)
    if span_text is None:
        raise InvalidValueError(B3_SPAN_ID_HEADER, "missing", span_length)
    trace_id = _trace_id(B3_TRACE_ID_HEADER, trace_text, trace_length)
    span_id = _span_id(B3_SPAN_ID_HEADER, span_text, span_length)
    parent_span_id = None
    if parent_text is not None:
        parent_span_id = _span_id(
            B3_PARENT_SPAN_ID_HEADER, parent_text, parent_length, "parent span id"
        )
    return B3Context(trace_id, span_id, sampled, debug, parent_span_id)


def _checked(ctx: B3Context) -> None:
    """Raise ValueError unless ``ctx`` can be written."""
    if not isinstance(ctx.trace_id, str) or not (
        _is_lower_hex_id(ctx.trace_id, TRACE_ID_LENGTH)
        or _is_lower_hex_id(ctx.trace_id, SHORT_TRACE_ID_LENGTH)
    ):
        raise ValueError("trace_id must be 32 or 16 lowercase hex characters, not all zeros")
    if not isinstance(ctx.span_id, str) or not _is_lower_hex_id(ctx.span_id, SPAN_ID_LENGTH):
        raise ValueError("span_id must be 16 lowercase hex characters, not all zeros")
    parent = ctx.parent_span_id
    if parent is not None and (
        not isinstance(parent, str) or not _is_lower_hex_id(parent, SPAN_ID_LENGTH)
    ):
        raise ValueError("parent_span_id must be None or 16 lowercase hex, not all zeros")
    if not (ctx.sampled is None or isinstance(ctx.sampled, bool)) or not isinstance(
        ctx.debug, bool
    ):
        raise ValueError("sampled must be None or a bool and debug a bool")
    if ctx.debug and ctx.sampled is False:
        raise ValueError("debug implies an accept decision: sampled must not be False")


def _full_trace_id(trace_id: str) -> str:
    return trace_id.rjust(TRACE_ID_LENGTH, "0")


def format_b3_single(ctx: B3Context) -> str:
    """Build a single ``b3`` header value.

    The sampling state is ``d`` for debug, ``1`` or ``0`` for a decision and absent when the
    decision is deferred. The parent span id is written only after a sampling state, since
    the README's shape is ``{TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}``.

    Args:
        ctx: The context to write.

    Returns:
        The header value.

    Raises:
        ValueError: ``ctx`` holds invalid ids or debug with ``sampled=False``.
    """
    _checked(ctx)
    value = f"{_full_trace_id(ctx.trace_id)}-{ctx.span_id}"
    if ctx.debug:
        value += "-d"
    elif ctx.sampled is not None:
        value += "-1" if ctx.sampled else "-0"
    else:
        return value
    if ctx.parent_span_id is not None:
        value += f"-{ctx.parent_span_id}"
    return value


def format_b3_multi(ctx: B3Context) -> dict[str, str]:
    """Build the ``X-B3-*`` headers.

    ``X-B3-Sampled`` is written for a decision (``1`` or ``0``) and omitted when deferred;
    debug is written as ``X-B3-Flags: 1`` without ``X-B3-Sampled`` ("Debug implies an accept
    decision, so don't also send the X-B3-Sampled header", README).

    Args:
        ctx: The context to write.

    Returns:
        Header name to value, names spelled as in the README.

    Raises:
        ValueError: ``ctx`` holds invalid ids or debug with ``sampled=False``.
    """
    _checked(ctx)
    headers = {
        B3_TRACE_ID_HEADER: _full_trace_id(ctx.trace_id),
        B3_SPAN_ID_HEADER: ctx.span_id,
    }
    if ctx.parent_span_id is not None:
        headers[B3_PARENT_SPAN_ID_HEADER] = ctx.parent_span_id
    if ctx.debug:
        headers[B3_FLAGS_HEADER] = "1"
    elif ctx.sampled is not None:
        headers[B3_SAMPLED_HEADER] = "1" if ctx.sampled else "0"
    return headers
