"""W3C Trace Context wire format: the ``traceparent`` and ``tracestate`` headers.

Pure parsers and formatters, with no I/O, logging or mutable module state. They implement the
W3C Recommendation *Trace Context* (Level 1, https://www.w3.org/TR/trace-context/); the ``§``
numbers in comments and docstrings refer to that document.

Parsers accept ``str`` or ``bytes`` (bytes are decoded as latin-1, as HTTP header bytes are;
any non-ASCII character makes the value invalid) and raise
`InvalidValueError` on invalid input. The error carries the
header name, a short reason and the input length, never the input itself. Formatters validate
their arguments and raise `ValueError` on programming errors.

Decisions taken where the specification leaves room:

* Leading and trailing optional whitespace (spaces and horizontal tabs) around a
  ``traceparent`` value is trimmed. HTTP defines the field value as excluding it (RFC 7230
  §3.2.4: OWS before the first and after the last non-whitespace octet "ought to be excluded
  by parsers when extracting the field value") and the W3C test suite
  (``test_traceparent_ows_handling``) expects such values to be accepted. Nothing else is
  trimmed, and a control character anywhere (CR, LF, NUL, ...) makes the value invalid, even
  in the uninterpreted fields that a higher version may add after the flags.
* ``TraceParent.flags`` keeps all eight bits received for version ``00`` (so that a value
  round-trips unchanged), but only the bits this version defines (``sampled``) for a higher
  version: "The vendor will only parse the trace-flags values supported by this version of
  this specification and ignore all other values" (§4.3).
* A whole ``tracestate`` is refused when any list-member is invalid, a key repeats, or more
  than 32 list-members are present (§3.3.1.1, §3.3.1.4); the caller discards it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import methodcaller
from typing import Final

from flext_ctx_aspects import _ids
from flext_ctx_aspects.errors import InvalidValueError

__all__ = [
    "EMITTED_VERSION",
    "FLAG_SAMPLED",
    "FORBIDDEN_VERSION",
    "MAX_FLAGS",
    "MAX_SYSTEM_ID_LENGTH",
    "MAX_TENANT_ID_LENGTH",
    "MAX_TRACESTATE_KEY_LENGTH",
    "MAX_TRACESTATE_MEMBERS",
    "MAX_TRACESTATE_VALUE_LENGTH",
    "PARENT_ID_LENGTH",
    "TRACEPARENT_HEADER",
    "TRACEPARENT_LENGTH",
    "TRACESTATE_HEADER",
    "TRACESTATE_LONG_ENTRY_LENGTH",
    "TRACESTATE_PROPAGATION_LENGTH",
    "TRACE_ID_LENGTH",
    "TraceParent",
    "format_traceparent",
    "format_tracestate",
    "is_valid_parent_id",
    "is_valid_trace_id",
    "is_valid_tracestate_key",
    "is_valid_tracestate_value",
    "new_parent_id",
    "parse_traceparent",
    "parse_tracestate",
    "update_tracestate",
]

TRACEPARENT_HEADER: Final = "traceparent"
"""Header name (§3.2.1); HTTP matches it case-insensitively."""
TRACESTATE_HEADER: Final = "tracestate"
"""Header name (§3.3.1)."""

TRACE_ID_LENGTH: Final = 32
"""``trace-id = 32HEXDIGLC`` (§3.2.2.2)."""
PARENT_ID_LENGTH: Final = 16
"""``parent-id = 16HEXDIGLC`` (§3.2.2.2)."""
TRACEPARENT_LENGTH: Final = 55
"""Length of a version ``00`` value: ``2 + 1 + 32 + 1 + 16 + 1 + 2``."""
FLAG_SAMPLED: Final = 0x01
"""The only trace-flag version ``00`` defines (§3.2.2.5.1)."""

EMITTED_VERSION: Final = 0x00
"""The version this module writes: the highest it knows (§3.2.4)."""
FORBIDDEN_VERSION: Final = 0xFF
""""Version ``ff`` is invalid" (§3.2.2.1)."""
MAX_FLAGS: Final = 0xFF
"""trace-flags is one byte (§3.2.2.5)."""

MAX_TRACESTATE_MEMBERS: Final = 32
""""There can be a maximum of 32 ``list-member``s in a ``list``" (§3.3.1.1)."""
MAX_TRACESTATE_KEY_LENGTH: Final = 256
"""``simple-key = lcalpha 0*255( ... )`` (§3.3.1.3.1)."""
MAX_TENANT_ID_LENGTH: Final = 241
"""``tenant-id = ( lcalpha / DIGIT ) 0*240( ... )`` (§3.3.1.3.1)."""
MAX_SYSTEM_ID_LENGTH: Final = 14
"""``system-id = lcalpha 0*13( ... )`` (§3.3.1.3.1)."""
MAX_TRACESTATE_VALUE_LENGTH: Final = 256
"""``value = 0*255(chr) nblk-chr`` (§3.3.1.3.2)."""
TRACESTATE_PROPAGATION_LENGTH: Final = 512
""""Vendors SHOULD propagate at least 512 characters of a combined header" (§3.3.1.5)."""
TRACESTATE_LONG_ENTRY_LENGTH: Final = 128
""""Entries larger than 128 characters long SHOULD be removed first" (§3.3.1.5)."""

# Positions inside a traceparent value, version-00 layout (§3.2.2.2, §3.2.4).
_VERSION_END: Final = 2
_TRACE_ID_START: Final = 3
_TRACE_ID_END: Final = _TRACE_ID_START + TRACE_ID_LENGTH  # 35, a dash
_PARENT_ID_START: Final = _TRACE_ID_END + 1
_PARENT_ID_END: Final = _PARENT_ID_START + PARENT_ID_LENGTH  # 52, a dash
_FLAGS_START: Final = _PARENT_ID_END + 1

_HEXDIGLC: Final = "0123456789abcdef"
_ZERO_TRACE_ID: Final = "0" * TRACE_ID_LENGTH
_ZERO_PARENT_ID: Final = "0" * PARENT_ID_LENGTH
# OWS = *( SP / HTAB ) (RFC 7230 §3.2.3).
_OWS: Final = " \t"
_STRIP_OWS: Final = methodcaller("strip", _OWS)

_LCALPHA: Final = frozenset("abcdefghijklmnopqrstuvwxyz")
_LCALPHA_DIGIT: Final = _LCALPHA | frozenset("0123456789")
_KEY_CHARS: Final = _LCALPHA_DIGIT | frozenset("_-*/")
# chr = %x20 / nblk-chr ; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (§3.3.1.3.2)
_VALUE_CHARS: Final = frozenset(chr(c) for c in range(0x20, 0x7F)) - frozenset(",=")

_getrandbits = _ids.rng.getrandbits  # never the shared `random`: user seeds stay intact


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A parsed ``traceparent`` header.

    Attributes:
        version: The version received (``0`` for ``00``; never ``0xff``).
        trace_id: 32 lowercase hex characters, not all zeros.
        parent_id: 16 lowercase hex characters, not all zeros.
        flags: The trace-flags byte (see the module notes on unknown flags).
    """

    version: int
    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        """Whether the caller may have recorded trace data (the ``sampled`` flag, §3.2.2.5.1).

        The flags are a bit field, so the bit is masked rather than the byte compared.
        """
        return bool(self.flags & FLAG_SAMPLED)


def _is_lower_hex(text: str) -> bool:
    # str.strip removes every leading and trailing character found in the set, so the result
    # is empty exactly when every character is in it. One C-level pass, no regex.
    return not text.strip(_HEXDIGLC)


def is_valid_trace_id(s: str) -> bool:
    """Tell whether ``s`` is a valid W3C trace-id.

    Args:
        s: The candidate.

    Returns:
        True for exactly 32 lowercase hex characters that are not all zeros (§3.2.2.3).
    """
    return len(s) == TRACE_ID_LENGTH and _is_lower_hex(s) and s != _ZERO_TRACE_ID


def is_valid_parent_id(s: str) -> bool:
    """Tell whether ``s`` is a valid W3C parent-id (span id).

    Args:
        s: The candidate.

    Returns:
        True for exactly 16 lowercase hex characters that are not all zeros (§3.2.2.4).
    """
    return len(s) == PARENT_ID_LENGTH and _is_lower_hex(s) and s != _ZERO_PARENT_ID


def new_parent_id() -> str:
    """Return a new random parent-id.

    Returns:
        16 lowercase hex characters (64 random bits), never all zeros.
    """
    bits = _getrandbits(64)
    while not bits:  # pragma: no cover - one chance in 2**64
        bits = _getrandbits(64)
    return f"{bits:016x}"


def _to_text(field: str, value: object) -> str:
    """Return ``value`` as ASCII text; bytes are decoded as latin-1 like HTTP header bytes."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("latin-1")
    else:
        raise InvalidValueError(field, f"expected str or bytes, got {type(value).__name__}", 0)
    if not text.isascii():
        raise InvalidValueError(field, "contains a non-ASCII character", len(text))
    return text


def _layout_problem(text: str) -> str | None:
    """Say why ``text`` does not have the traceparent layout of its version, or return None."""
    size = len(text)
    # §3.2.4: "When the version prefix cannot be parsed (it's not 2 hex characters followed
    # by a dash (-)), the implementation should restart the trace."
    if size <= _VERSION_END or text[_VERSION_END] != "-" or not _is_lower_hex(text[:2]):
        return "version is not 2 lowercase hex characters followed by a dash"
    version = int(text[:_VERSION_END], 16)
    if version == FORBIDDEN_VERSION:
        return "version ff is forbidden"
    if size < TRACEPARENT_LENGTH:
        # §3.2.4: "If the size of the header is shorter than 55 characters, the vendor should
        # not parse the header"; version 00 is exactly 55.
        return f"shorter than {TRACEPARENT_LENGTH} characters"
    if version == EMITTED_VERSION:
        if size != TRACEPARENT_LENGTH:
            return f"version 00 must be exactly {TRACEPARENT_LENGTH} characters"
    elif size > TRACEPARENT_LENGTH:
        return _future_fields_problem(text)
    return None


def _future_fields_problem(text: str) -> str | None:
    """Check what a higher version adds after the flags (longer than 55 characters)."""
    # §3.2.4: the flags must be "either the end of the string or a dash".
    if text[TRACEPARENT_LENGTH] != "-":
        return "trace-flags of a higher version are not followed by a dash"
    # The later fields are not interpreted, but no HTTP field value holds a control character
    # (RFC 7230 §3.2.6): one there means a broken or hostile sender.
    if not text.isprintable():
        return "contains a control character"
    return None


def parse_traceparent(value: str | bytes) -> TraceParent:
    """Parse a ``traceparent`` header value.

    Version ``00`` must be exactly 55 characters. A higher version (``01`` to ``fe``) is parsed
    as §3.2.4 prescribes: it must be at least 55 characters, the first four fields are read in
    the version ``00`` layout, and anything after the flags must start with a dash; the rest is
    not interpreted. Leading and trailing spaces and tabs are trimmed first (see the module
    notes).

    Args:
        value: The header value, as ``str`` or latin-1 ``bytes``.

    Returns:
        The parsed header.

    Raises:
        InvalidValueError: The value is not a valid ``traceparent``; the caller must ignore it
            and restart the trace (§3.2.2.3, §3.2.4).
    """
    raw = _to_text(TRACEPARENT_HEADER, value)
    length = len(raw)
    text = raw.strip(_OWS)

    def invalid(reason: str) -> InvalidValueError:
        return InvalidValueError(TRACEPARENT_HEADER, reason, length)

    problem = _layout_problem(text)
    if problem is not None:
        raise invalid(problem)
    if text[_TRACE_ID_END] != "-" or text[_PARENT_ID_END] != "-":
        raise invalid("fields are not separated by dashes")
    trace_id = text[_TRACE_ID_START:_TRACE_ID_END]
    if not _is_lower_hex(trace_id):
        raise invalid("trace-id is not 32 lowercase hex characters")
    if trace_id == _ZERO_TRACE_ID:
        raise invalid("trace-id is all zeros")
    parent_id = text[_PARENT_ID_START:_PARENT_ID_END]
    if not _is_lower_hex(parent_id):
        raise invalid("parent-id is not 16 lowercase hex characters")
    if parent_id == _ZERO_PARENT_ID:
        raise invalid("parent-id is all zeros")
    flags_text = text[_FLAGS_START:TRACEPARENT_LENGTH]
    if not _is_lower_hex(flags_text):
        raise invalid("trace-flags are not 2 lowercase hex characters")
    flags = int(flags_text, 16)
    version = int(text[:_VERSION_END], 16)
    if version != EMITTED_VERSION:
        # §4.3: for a higher version only the flags known to version 00 are kept.
        flags &= FLAG_SAMPLED
    return TraceParent(version, trace_id, parent_id, flags)


def format_traceparent(trace_id: str, parent_id: str, flags: int) -> str:
    """Build a version ``00`` ``traceparent`` value.

    A header received with a higher version is downgraded by re-emitting its fields here
    (§3.4 "Downgrade the version"). ``flags`` is written as given: callers that implement only
    this version should pass ``flags & FLAG_SAMPLED``, since the other bits are reserved and
    "Vendors MUST set those to zero" (§3.2.2.5.2).

    Args:
        trace_id: 32 lowercase hex characters, not all zeros.
        parent_id: 16 lowercase hex characters, not all zeros.
        flags: The trace-flags byte, an ``int`` from 0 to 255.

    Returns:
        The 55-character header value, e.g. ``00-4bf9...4736-00f0...02b7-01``.

    Raises:
        ValueError: An argument is invalid (a programming error, not bad input).
    """
    if not isinstance(trace_id, str) or not is_valid_trace_id(trace_id):
        raise ValueError("trace_id must be 32 lowercase hex characters, not all zeros")
    if not isinstance(parent_id, str) or not is_valid_parent_id(parent_id):
        raise ValueError("parent_id must be 16 lowercase hex characters, not all zeros")
    # bool is an int subclass; refusing it catches `format_traceparent(t, p, sampled)`.
    if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags <= MAX_FLAGS:
        raise ValueError("flags must be an int from 0 to 255")
    return f"{EMITTED_VERSION:02x}-{trace_id}-{parent_id}-{flags:02x}"


def _is_key_part(part: str, max_length: int, first: frozenset[str]) -> bool:
    return 0 < len(part) <= max_length and part[0] in first and _KEY_CHARS.issuperset(part)


def is_valid_tracestate_key(key: str) -> bool:
    """Tell whether ``key`` is a valid ``tracestate`` key (§3.3.1.3.1).

    The grammar is::

        key = simple-key / multi-tenant-key
        simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        multi-tenant-key = tenant-id "@" system-id
        tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )

    Args:
        key: The candidate key.

    Returns:
        True when ``key`` matches the grammar.
    """
    tenant, at, system = key.partition("@")
    if not at:
        return _is_key_part(key, MAX_TRACESTATE_KEY_LENGTH, _LCALPHA)
    # A second "@" ends up in `system`, where it is not a key character.
    return _is_key_part(tenant, MAX_TENANT_ID_LENGTH, _LCALPHA_DIGIT) and _is_key_part(
        system, MAX_SYSTEM_ID_LENGTH, _LCALPHA
    )


def is_valid_tracestate_value(value: str) -> bool:
    """Tell whether ``value`` is a valid ``tracestate`` value (§3.3.1.3.2).

    Args:
        value: The candidate value.

    Returns:
        True for 1 to 256 printable ASCII characters (0x20 to 0x7E) other than ``,`` and ``=``
        whose last character is not a space.
    """
    return (
        0 < len(value) <= MAX_TRACESTATE_VALUE_LENGTH
        and value[-1] != " "
        and _VALUE_CHARS.issuperset(value)
    )


def _list_members(text: str) -> Iterator[str]:
    """Yield the comma-separated list-members of ``text``, OWS-trimmed, empty ones skipped.

    Empty list-members are allowed and there may be any number of them, so they are dropped
    by C-level iteration (``filter``/``map``): a header of 100 000 commas costs no Python loop
    turn per member.
    """
    return filter(None, map(_STRIP_OWS, text.split(",")))


def _combine(field: str, values: str | bytes | Sequence[str | bytes]) -> str:
    """Join several header lines into one value, as RFC 7230 §3.2.2 combines them."""
    if isinstance(values, (str, bytes, bytearray)):
        return _to_text(field, values)
    if not isinstance(values, Sequence):
        raise InvalidValueError(field, f"expected str or bytes, got {type(values).__name__}", 0)
    texts: list[str] = []
    for line in values:
        if isinstance(line, str):
            texts.append(line)
        elif isinstance(line, (bytes, bytearray)):
            texts.append(bytes(line).decode("latin-1"))
        else:
            raise InvalidValueError(field, f"expected str or bytes, got {type(line).__name__}", 0)
    return _to_text(field, ",".join(texts))


def parse_tracestate(
    values: str | bytes | Sequence[str | bytes],
) -> tuple[tuple[str, str], ...]:
    """Parse one or several ``tracestate`` header lines.

    Several lines are joined with commas, as RFC 7230 §3.2.2 combines repeated fields
    (§3.3.1.1: "When receiving multiple tracestate header fields, they MUST be combined into a
    single header"). Spaces and tabs around list-members are ignored and empty list-members
    are skipped ("Empty and whitespace-only list members are allowed", §3.3.1.1), so an empty
    header yields an empty tuple.

    Args:
        values: A header value or a sequence of header lines, as ``str`` or latin-1 ``bytes``.

    Returns:
        The ``(key, value)`` list-members, left to right as received.

    Raises:
        InvalidValueError: The header is invalid and must be discarded as a whole: a
            list-member has no ``=``, an invalid key or value, a key repeats (§3.3.1.4 "Only
            one entry per key is allowed"), there are more than 32 list-members (§3.3.1.1),
            or a character is not ASCII.
    """
    text = _combine(TRACESTATE_HEADER, values)
    length = len(text)
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for position, member in enumerate(_list_members(text), start=1):
        if len(entries) == MAX_TRACESTATE_MEMBERS:
            raise InvalidValueError(
                TRACESTATE_HEADER, f"more than {MAX_TRACESTATE_MEMBERS} list-members", length
            )
        # The key may not be followed by OWS ("foo =1" is invalid) and the value may not
        # contain "=", so the first "=" is the only possible separator.
        key, equals, member_value = member.partition("=")
        if not equals:
            reason = f"list-member {position} has no '='"
        elif not is_valid_tracestate_key(key):
            reason = f"list-member {position} has an invalid key"
        elif not is_valid_tracestate_value(member_value):
            reason = f"list-member {position} has an invalid value"
        elif key in seen:
            reason = f"list-member {position} repeats a key"
        else:
            seen.add(key)
            entries.append((key, member_value))
            continue
        raise InvalidValueError(TRACESTATE_HEADER, reason, length)
    return tuple(entries)


def _check_entry(key: str, value: str) -> None:
    if not isinstance(key, str) or not is_valid_tracestate_key(key):
        raise ValueError("tracestate key does not match the key grammar of §3.3.1.3.1")
    if not isinstance(value, str) or not is_valid_tracestate_value(value):
        raise ValueError(
            "tracestate value must be 1 to 256 printable ASCII characters other than ',' and"
            " '=', not ending with a space"
        )


def format_tracestate(
    entries: Iterable[tuple[str, str]],
    *,
    max_members: int = MAX_TRACESTATE_MEMBERS,
    max_length: int = TRACESTATE_PROPAGATION_LENGTH,
) -> str:
    """Build a ``tracestate`` value, truncated by whole entries to fit the limits.

    Entries are written left to right, comma-separated, without optional whitespace. When
    they do not fit, the truncation of §3.3.1.5 applies: "the vendor MUST truncate whole
    entries. Entries larger than 128 characters long SHOULD be removed first. Then entries
    SHOULD be removed starting from the end of tracestate." Long entries are removed right to
    left, and only as many as needed. An entry is never cut.

    Args:
        entries: ``(key, value)`` pairs, leftmost (most recent) first, keys unique.
        max_members: At most this many entries are written.
        max_length: The result is at most this many characters.

    Returns:
        The header value; empty when nothing fits or ``entries`` is empty, in which case the
        caller should not send the header ("SHOULD avoid sending them", §3.3.1.1).

    Raises:
        ValueError: A key or value is invalid, a key repeats, or a limit is negative.
    """
    if max_members < 0 or max_length < 0:
        raise ValueError("max_members and max_length must not be negative")
    members: list[str] = []
    seen: set[str] = set()
    for key, value in entries:
        _check_entry(key, value)
        if key in seen:
            raise ValueError("tracestate keys must be unique (§3.3.1.4)")
        seen.add(key)
        members.append(f"{key}={value}")

    # Joined length = sum of the entries + one comma between each pair.
    total = sum(map(len, members)) + max(len(members) - 1, 0)

    def fits() -> bool:
        return len(members) <= max_members and total <= max_length

    def remove(index: int) -> None:
        nonlocal total
        removed = members.pop(index)
        total -= len(removed) + (1 if members else 0)

    index = len(members) - 1
    while not fits() and index >= 0:
        if len(members[index]) > TRACESTATE_LONG_ENTRY_LENGTH:
            remove(index)
        index -= 1
    while not fits():
        remove(-1)
    return ",".join(members)


def update_tracestate(
    entries: Iterable[tuple[str, str]], key: str, value: str
) -> tuple[tuple[str, str], ...]:
    """Set ``key`` to ``value``, moving it to the front, as §3.5 prescribes.

    "Modified keys SHOULD be moved to the beginning (left) of the list", a new pair "SHOULD be
    added to the beginning of the list", and "the order of unmodified key/value pairs MUST be
    preserved" (§3.5). A previous entry for ``key`` is removed, since "Only one entry per key
    is allowed" (§3.3.1.4). When the result would exceed 32 entries the rightmost entry is
    dropped ("entries SHOULD be removed starting from the end", §3.3.1.5).

    Args:
        entries: The current ``(key, value)`` pairs, leftmost first.
        key: The key to set (this vendor's key).
        value: Its new value.

    Returns:
        The updated pairs, ``(key, value)`` first.

    Raises:
        ValueError: ``key`` or ``value`` is invalid.
    """
    _check_entry(key, value)
    updated = [(key, value)]
    updated.extend(entry for entry in entries if entry[0] != key)
    return tuple(updated[:MAX_TRACESTATE_MEMBERS])
