"""Exceptions raised by flext_ctx_aspects.

Every exception derives from `FlextContextError` and from the builtin it refines, so
callers may catch either. Each carries structured attributes besides its message.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "FlextContextError",
    "InvalidValueError",
    "ResultError",
]


class FlextContextError(Exception):
    """Root of every exception this library raises."""


class ConfigError(FlextContextError, ValueError):
    """A configuration value is missing, unknown or of the wrong shape.

    Attributes:
        source: Where the value came from (a file path, ``"environment"`` or a function name).
        key: The offending key, dotted for nested tables.
        expected: What an acceptable value looks like.
        got: A short description of what was found (never a secret, never more than a line).
    """

    def __init__(self, source: str, key: str, expected: str, got: str) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        self.got = got
        super().__init__(f"`{key}` in {source} must be {expected} (got {got})")


class ConfigWarning(UserWarning):
    """A valid configuration entry that cannot take effect (refused in strict mode).

    For example an ``include`` glob that matches no importable module.
    """


class InvalidValueError(FlextContextError, ValueError):
    """An inbound context value was refused in strict mode.

    The raw value is never part of the message: it is untrusted input and may contain
    control characters or be very large. Only its length and the reason are reported.

    Attributes:
        field: The context field or header the value was meant for.
        reason: Why it was refused.
        length: Length of the refused value in characters (or bytes for bytes input).
    """

    def __init__(self, field: str, reason: str, length: int) -> None:
        self.field = field
        self.reason = reason
        self.length = length
        super().__init__(f"invalid value for {field!r}: {reason} (value of length {length})")


class ResultError(FlextContextError, RuntimeError):
    """The value of a failed `FlextResult` was read.

    Attributes:
        error: The failure's error message.
    """

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"cannot read .value of a failed FlextResult: {error}")
