"""W3C Baggage wire format: the ``baggage`` header.

Pure parser and formatter, with no I/O, logging or mutable module state. They implement the
W3C *Propagation format for distributed context: Baggage* (https://www.w3.org/TR/baggage/,
Candidate Recommendation 2024); the ``§`` numbers refer to that document. The grammar
(§3.3.1) is::

    baggage-string =  list-member 0*179( OWS "," OWS list-member )
    list-member    =  key OWS "=" OWS value *( OWS ";" OWS property )
    property       =  key OWS "=" OWS value
    property       =/ key OWS
    key            =  token ; as defined in RFC 7230, Section 3.2.6
    value          =  *baggage-octet
    baggage-octet  =  %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E

Decisions taken where the specification leaves room (each is tested):

* **An invalid list-member invalidates only itself.** §3.5: "If a system determines that the
  value of a baggage entry is not in the format defined in this specification, it MAY remove
  that entry before propagating the baggage header". `parse_baggage` drops it and keeps
  the others; it raises only when nothing valid is left, or on the first invalid
  list-member when called with ``strict=True``.
* **Invalid UTF-8 is replaced, not refused.** §3.3.1.3: "When decoding the value,
  percent-encoded octet sequences that do not match the UTF-8 encoding scheme MUST be replaced
  with the replacement code point (U+FFFD)." A malformed escape (``%`` not followed by two hex
  digits) is a format error, since "The percent code point (U+0025) MUST be percent-encoded",
  and drops the list-member.
* ``+`` is a literal plus: values are percent-encoded (RFC 3986 §2.1), not form-encoded.
* **Properties are validated and dropped.** §3.3.1.4 gives them no meaning; a list-member with
  a malformed property does not match the grammar and is dropped like any invalid member.
* **Duplicate keys: the last value wins**, at the position of the key's first occurrence
  (plain ``dict`` assignment). §3.5 allows "keeping the first entry, keeping the last entry,
  or concatenating values"; last-wins matches the OpenTelemetry implementations.
* **Limits** (§3.3.2: propagate everything when there are "64 list-members or less" and
  "8192 bytes or less"; otherwise "MAY drop list-members", never "any partial list-members"):
  see `parse_baggage` and `format_baggage` for the exact rules.
* Decoded values are arbitrary Unicode and may contain control characters (``%0A`` decodes to
  a line feed): escape them before writing them to a log.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from operator import methodcaller
from typing import Final

from flext_ctx_aspects.errors import InvalidValueError

__all__ = [
    "BAGGAGE_HEADER",
    "MAX_BAGGAGE_BYTES",
    "MAX_BAGGAGE_MEMBERS",
    "MIN_PROPAGATED_MEMBERS",
    "format_baggage",
    "is_valid_baggage_key",
    "parse_baggage",
]

BAGGAGE_HEADER: Final = "baggage"
"""Header name (§3.1); HTTP matches it case-insensitively."""

MIN_PROPAGATED_MEMBERS: Final = 64
"""§3.3.2 Condition 1: a baggage-string of "64 list-members or less" MUST be propagated."""
MAX_BAGGAGE_MEMBERS: Final = 180
"""The grammar's bound, ``list-member 0*179( ... list-member )``: at most 180 are parsed."""
MAX_BAGGAGE_BYTES: Final = 8192
"""§3.3.2 Condition 2: a baggage-string "of size 8192 bytes or less" MUST be propagated."""

# OWS = *( SP / HTAB ) (RFC 7230 §3.2.3).
_OWS: Final = " \t"
_STRIP_OWS: Final = methodcaller("strip", _OWS)
# tchar (RFC 7230 §3.2.6): "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
# "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E: visible ASCII except DQUOTE,
# comma, semicolon and backslash.
_BAGGAGE_OCTETS: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('",;\\')
_HEX: Final = frozenset("0123456789abcdefABCDEF")
# Bytes written unescaped by the formatter: baggage-octets except "%" (which MUST be encoded,
# §3.3.1.3) and "=" (allowed, but encoded so that naive parsers splitting on "=" still work).
_UNESCAPED_BYTES: Final = frozenset(ord(c) for c in _BAGGAGE_OCTETS - frozenset("%="))
_ESCAPE: Final = tuple(
    chr(byte) if byte in _UNESCAPED_BYTES else f"%{byte:02X}" for byte in range(256)
)
_UNESCAPED_CHARS: Final = frozenset(chr(byte) for byte in _UNESCAPED_BYTES)


class _InvalidMemberError(ValueError):
    """A list-member does not match the grammar; carries the reason, never the member."""


def is_valid_baggage_key(key: str) -> bool:
    """Tell whether ``key`` can be a baggage key: a non-empty RFC 7230 token (§3.3.1.2).

    Args:
        key: The candidate key.

    Returns:
        True when every character is a ``tchar`` and the key is not empty.
    """
    return bool(key) and _TCHAR.issuperset(key)


def _percent_decode(raw: str) -> str:
    """Decode the percent-escapes of ``raw``; invalid UTF-8 becomes U+FFFD (§3.3.1.3)."""
    if "%" not in raw:
        return raw
    first, *escaped = raw.split("%")
    decoded = bytearray(first, "ascii")
    for chunk in escaped:
        if len(chunk) < 2 or not _HEX.issuperset(chunk[:2]):
            raise _InvalidMemberError("value has a malformed percent-escape")
        decoded.append(int(chunk[:2], 16))
        decoded += chunk[2:].encode("ascii")
    return decoded.decode("utf-8", errors="replace")


def _check_property(prop: str) -> None:
    # property = key OWS "=" OWS value / key OWS
    prop_key, equals, prop_value = prop.partition("=")
    if not is_valid_baggage_key(prop_key.strip(_OWS)):
        raise _InvalidMemberError("property key is not a token")
    if equals and not _BAGGAGE_OCTETS.issuperset(prop_value.strip(_OWS)):
        raise _InvalidMemberError("property value has a character outside baggage-octet")


def _parse_member(member: str) -> tuple[str, str]:
    """Parse one OWS-trimmed, non-empty list-member into ``(key, decoded value)``."""
    head, semicolon, properties = member.partition(";")
    key, equals, raw_value = head.partition("=")
    if not equals:
        raise _InvalidMemberError("list-member has no '='")
    key = key.rstrip(_OWS)
    if not is_valid_baggage_key(key):
        raise _InvalidMemberError("key is not a token")
    raw_value = raw_value.strip(_OWS)
    if not _BAGGAGE_OCTETS.issuperset(raw_value):
        raise _InvalidMemberError("value has a character outside baggage-octet")
    if semicolon:
        # Every ";" must introduce a property: "k=v;" and "k=v;;p" do not match the grammar.
        for prop in properties.split(";"):
            _check_property(prop)
    return key, _percent_decode(raw_value)


def _list_members(text: str) -> Iterator[str]:
    """Yield the comma-separated list-members of ``text``, OWS-trimmed, empty ones skipped.

    Empty list-members are allowed and there may be any number of them, so they are dropped
    by C-level iteration (``filter``/``map``): a header of 100 000 commas costs no Python loop
    turn per member.
    """
    return filter(None, map(_STRIP_OWS, text.split(",")))


def _combine(values: object) -> str:
    """Join several header lines with commas (RFC 7230 §3.2.2); bytes are read as latin-1."""
    if isinstance(values, str):
        return values
    if isinstance(values, (bytes, bytearray)):
        return bytes(values).decode("latin-1")
    if not isinstance(values, Sequence):
        raise InvalidValueError(
            BAGGAGE_HEADER, f"expected str or bytes, got {type(values).__name__}", 0
        )
    texts: list[str] = []
    for line in values:
        if isinstance(line, str):
            texts.append(line)
        elif isinstance(line, (bytes, bytearray)):
            texts.append(bytes(line).decode("latin-1"))
        else:
            raise InvalidValueError(
                BAGGAGE_HEADER, f"expected str or bytes, got {type(line).__name__}", 0
            )
    return ",".join(texts)


def _within_byte_limit(text: str) -> str:
    """Cut ``text`` after the last list-member that ends within MAX_BAGGAGE_BYTES."""
    if len(text) <= MAX_BAGGAGE_BYTES:
        return text
    # A comma at index MAX_BAGGAGE_BYTES still closes a member that fits exactly.
    cut = text.rfind(",", 0, MAX_BAGGAGE_BYTES + 1)
    return text[:cut] if cut >= 0 else ""


def parse_baggage(
    values: str | bytes | Sequence[str | bytes], *, strict: bool = False
) -> dict[str, str]:
    """Parse one or several ``baggage`` header lines into an ordered ``{key: value}`` dict.

    Lines are joined with commas ("Values can be combined in a single header according to
    RFC 7230", §3) and "all limits apply to the combination of all baggage headers" (§3.3.2).
    OWS around list-members, keys, values and properties is ignored; empty list-members are
    skipped (RFC 7230 §7 list syntax). Values are percent-decoded as UTF-8; properties are
    validated and dropped.

    Limits, applied in wire order: only the first 8192 characters (bytes, for the ASCII-only
    valid header) of the combined value, leading and trailing OWS excepted, are read; a
    list-member that does not end within them is dropped with everything after it. Of the
    rest, at most 180 valid list-members (duplicates included) are kept and later ones are
    dropped. So any header within §3.3.2's 64 members and 8192 bytes is read completely, no
    list-member is ever truncated, and the work done is bounded whatever the input size.
    Dropped list-members are not validated, even with ``strict=True``.

    Args:
        values: A header value or a sequence of header lines, as ``str`` or latin-1 ``bytes``.
        strict: Raise on the first invalid list-member instead of dropping it.

    Returns:
        The decoded baggage, in first-occurrence order of the keys (a duplicate key takes the
        last value). Empty for an empty or whitespace-only header.

    Raises:
        InvalidValueError: The header has list-members but none is valid, or (with
            ``strict=True``) one of them is invalid.
    """
    combined = _combine(values)
    length = len(combined)
    text = _within_byte_limit(combined.strip(_OWS))
    baggage: dict[str, str] = {}
    kept = 0
    first_problem: str | None = None
    for position, member in enumerate(_list_members(text), start=1):
        if kept == MAX_BAGGAGE_MEMBERS:
            break
        try:
            key, value = _parse_member(member)
        except _InvalidMemberError as error:
            problem = f"list-member {position}: {error}"
            if strict:
                raise InvalidValueError(BAGGAGE_HEADER, problem, length) from None
            if first_problem is None:
                first_problem = problem
            continue
        baggage[key] = value
        kept += 1
    if not baggage and first_problem is not None:
        raise InvalidValueError(BAGGAGE_HEADER, f"no valid list-member ({first_problem})", length)
    if not baggage and text != combined.strip(_OWS):
        raise InvalidValueError(
            BAGGAGE_HEADER, f"first list-member exceeds {MAX_BAGGAGE_BYTES} bytes", length
        )
    return baggage


def _percent_encode(value: str) -> str | None:
    """Percent-encode ``value`` (UTF-8); None when it cannot be encoded (lone surrogates)."""
    if value.isascii() and _UNESCAPED_CHARS.issuperset(value):
        return value
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return "".join([_ESCAPE[byte] for byte in data])


def format_baggage(
    items: Mapping[str, str],
    *,
    max_members: int = MIN_PROPAGATED_MEMBERS,
    max_bytes: int = MAX_BAGGAGE_BYTES,
) -> str:
    """Build a ``baggage`` header value.

    Each item becomes ``key=value`` with the value percent-encoded as UTF-8: every byte
    outside baggage-octet is encoded (so ``,``, ``;``, space, double quote, backslash, control
    characters and non-ASCII always are), and so are ``%`` and ``=``. Items are taken in
    mapping order and skipped, never raised on, when the key is not a token (§3.3.1.2) or the
    value is not encodable (it holds a lone surrogate). Limits are met by dropping whole items
    (§3.3.2: never "any partial list-members"): once ``max_members`` items are written the
    rest are dropped, and an item that would push the result past ``max_bytes`` is skipped
    while later, smaller ones may still fit.

    Args:
        items: The baggage to send.
        max_members: At most this many list-members are written.
        max_bytes: The result is at most this many bytes (it is ASCII: bytes = characters).

    Returns:
        The header value, without optional whitespace; empty when nothing is written, in which
        case the caller should not send the header.

    Raises:
        ValueError: ``max_members`` or ``max_bytes`` is negative.
    """
    if max_members < 0 or max_bytes < 0:
        raise ValueError("max_members and max_bytes must not be negative")
    members: list[str] = []
    total = 0
    for key, value in items.items():
        if len(members) >= max_members:
            break
        if not is_valid_baggage_key(key):
            continue
        encoded = _percent_encode(value)
        if encoded is None:
            continue
        member = f"{key}={encoded}"
        cost = len(member) + (1 if members else 0)  # the comma before it
        if total + cost > max_bytes:
            continue
        members.append(member)
        total += cost
    return ",".join(members)
