"""How the library reports its own trouble without ever disturbing user code.

Two channels, both on ``logging.getLogger("flext_ctx_aspects")``:

* `report_internal_error` — a failure inside the library's machinery (a sink that
  raised, a metadata value that could not be recorded, an id generator that failed). Logged
  once per cause (where + exception type) with its traceback; repeats are counted silently so
  a failing sink on a hot path cannot flood the logs.
* `warn_invalid` — an inbound value was dropped. The raw value is never logged: only
  the field, the reason, the length and a short hash, so hostile input cannot forge log lines
  and secrets pasted into headers do not land in logs. At most one line per (field, reason)
  every `INVALID_WARNING_INTERVAL_S` seconds, with a count of those suppressed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

__all__ = [
    "INVALID_WARNING_INTERVAL_S",
    "internal_error_counts",
    "logger",
    "report_internal_error",
    "reset_diagnostics",
    "value_fingerprint",
    "warn_invalid",
]

logger = logging.getLogger("flext_ctx_aspects")

INVALID_WARNING_INTERVAL_S = 10.0

_lock = threading.Lock()
_internal_errors: dict[tuple[str, str], int] = {}
_unreported: set[tuple[str, str]] = set()
_invalid_last: dict[tuple[str, str], tuple[float, int]] = {}


def report_internal_error(where: str, exc: BaseException) -> None:
    """Log a failure of the library's own machinery, once per (where, exception type).

    Never raises: if logging itself fails there is nothing sensible left to do.
    """
    key = (where, type(exc).__qualname__)
    with _lock:
        seen = _internal_errors.get(key, 0)
        _internal_errors[key] = seen + 1
        if seen and key not in _unreported:
            return
        _unreported.add(key)
    try:
        logger.error(
            "flext_ctx_aspects: %s failed with %s; the call went on without it. "
            "Further failures of this kind are counted but not logged.",
            where,
            type(exc).__qualname__,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    except Exception:  # a broken logging setup must not break the caller: try next time
        return
    with _lock:
        # Marked as reported only once a log call went through, so a cause first seen
        # while logging itself was failing is still reported later.
        _unreported.discard(key)


def internal_error_counts() -> dict[tuple[str, str], int]:
    """Return how many times each internal failure cause occurred (for tests and health)."""
    with _lock:
        return dict(_internal_errors)


def value_fingerprint(value: str | bytes) -> str:
    """Return a short, non-reversible fingerprint of an untrusted value for log lines."""
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    import hashlib  # only when a value is dropped: kept off the import path

    return hashlib.sha256(raw).hexdigest()[:12]


def warn_invalid(field: str, reason: str, value: str | bytes | None) -> None:
    """Log (rate limited) that an inbound value for ``field`` was dropped, never the value."""
    now = time.monotonic()
    key = (field, reason)
    with _lock:
        last, suppressed = _invalid_last.get(key, (-INVALID_WARNING_INTERVAL_S, 0))
        if now - last < INVALID_WARNING_INTERVAL_S:
            _invalid_last[key] = (last, suppressed + 1)
            return
        _invalid_last[key] = (now, 0)
    length = 0 if value is None else len(value)
    fingerprint = "-" if value is None else value_fingerprint(value)
    with contextlib.suppress(Exception):  # see report_internal_error
        logger.warning(
            "flext_ctx_aspects: dropped inbound value for %s: %s "
            "(length %d, sha256 %s; %d similar dropped since last report)",
            field,
            reason,
            length,
            fingerprint,
            suppressed,
        )


def reset_diagnostics() -> None:
    """Forget what was logged, so the next failure of each kind is logged again."""
    with _lock:
        _internal_errors.clear()
        _unreported.clear()
        _invalid_last.clear()
