"""Validation of untrusted inbound context values.

Every validator takes the raw value (``str`` or ``bytes``, as ASGI scopes carry them) and
returns a clean ``str`` or raises `InvalidValueError`.
A clean value is ASCII, has no control character (CR, LF, NUL, DEL, ...), no leading or
trailing whitespace and fits the field's length cap. Callers decide whether an invalid
value is dropped with a warning or refused (strict mode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import InvalidValueError

__all__ = [
    "ID_CHARACTERS",
    "Validator",
    "as_text",
    "validate_id",
    "validate_name",
]

Validator = Callable[[str, "str | bytes"], str]
"""``validator(field, raw) -> clean value``, raising InvalidValueError."""

# Identifiers from other systems: UUIDs, ULIDs, base64url, "req_456", "host:pid:seq".
ID_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/+="
)
# Names (services, versions, operations, users): visible ASCII plus inner spaces.
_NAME_CHARACTERS: Final = frozenset(chr(code) for code in range(0x20, 0x7F))

_MAX_ID: Final = FlextConstants.Limits.MAX_ID_LENGTH
_MAX_NAME: Final = FlextConstants.Limits.MAX_NAME_LENGTH


def as_text(field: str, raw: object) -> str:
    """Return ``raw`` as ``str`` (bytes decoded as latin-1, as HTTP header bytes are).

    Raises:
        InvalidValueError: ``raw`` is neither str nor bytes.
    """
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw).decode("latin-1")
    raise InvalidValueError(field, f"expected str or bytes, got {type(raw).__name__}", 0)


def _checked(field: str, raw: str | bytes, allowed: frozenset[str], limit: int) -> str:
    text = as_text(field, raw)
    # The cap is checked before anything else scans the value, so a 100 KB header costs
    # one len() call.
    if len(text) > limit:
        raise InvalidValueError(field, f"longer than {limit} characters", len(text))
    value = text.strip(" \t")
    if not value:
        raise InvalidValueError(field, "empty", len(text))
    if not allowed.issuperset(value):
        raise InvalidValueError(field, "contains a character outside the allowed set", len(text))
    return value


def validate_id(field: str, raw: str | bytes) -> str:
    """Validate an identifier: 1 to 128 characters from `ID_CHARACTERS`."""
    return _checked(field, raw, ID_CHARACTERS, _MAX_ID)


def validate_name(field: str, raw: str | bytes) -> str:
    """Validate a name: 1 to 256 visible ASCII characters, inner spaces allowed."""
    return _checked(field, raw, _NAME_CHARACTERS, _MAX_NAME)
