r"""The context fields put on log lines, read from the current context, and their escaping.

`LOG_FIELDS` is the one list of names the logging filter, the structlog processor and
`LoggingSink` use. Values are escaped with `escape` so
that no id, however hostile, can start a new log line or smuggle terminal control sequences:
every character outside printable ASCII-safe text (CR, LF, other C0/C1 controls, DEL, line and
paragraph separators) becomes a visible ``\\xNN`` / ``\\uNNNN`` escape, and a backslash becomes
``\\\\`` so an escaped value can never be mistaken for another.
"""

from __future__ import annotations

import re
from typing import Final

from flext_ctx_aspects import _state, _trace

__all__ = ["LOG_FIELDS", "MISSING", "current_log_fields", "escape"]

# (log attribute name, snapshot slot): the built-in fields the field table marks for logs.
_SLOTS: Final = tuple((name, _state.FIELD_SLOTS[name]) for name in _state.LOG_FIELDS)
LOG_FIELDS: Final[tuple[str, ...]] = _state.LOG_FIELDS
MISSING: Final = "-"
"""What a field reads when the context has no value for it."""

_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u0085]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object) -> str:
    """Return ``value`` as text that cannot break a log line (see the module docs)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape_char, text) if _UNSAFE.search(text) else text


def current_log_fields(missing: str | None = MISSING) -> dict[str, str]:
    """Return the current context's `LOG_FIELDS`, escaped.

    Args:
        missing: The value of an unset field; None leaves unset fields out.
    """
    snapshot = _state.get()
    out: dict[str, str] = {}
    for name, slot in _SLOTS:
        value = snapshot[slot]
        if value is None:
            if missing is not None:
                out[name] = missing
        elif slot == _state.TRACE_ID:
            out[name] = _trace.trace_id_of(snapshot) or missing or ""
        else:
            out[name] = escape(value)
    return out
