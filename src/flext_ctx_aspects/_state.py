"""The context state: the only module that sets context variables.

The whole request context lives in ONE ``ContextVar`` holding an immutable tuple (a
"snapshot"). Reading a field is ``_snapshot.get()[INDEX]``; entering a scope that changes
any number of fields builds one new tuple and does one ``set``; leaving it does one
``reset``. Measured against one ContextVar per field, setting and restoring nine fields is
about 7x cheaper this way, reading one field costs ~13 ns more (see docs/architecture.md and
benchmarks/test_core_state_design.py).

The innermost running timed operation has its own variable holding that operation's live
metadata dict, so ``@timed`` alone never rebuilds the snapshot.

Tokens are never held across a ``yield`` by the engine (a generator runs in its own
``contextvars.Context``); for the public context managers, which user code may hold across a
yield, :func:`restore` tolerates a token that belongs to another Context.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any, Final

__all__ = [
    "BAGGAGE",
    "CORRELATION_ID",
    "EMPTY",
    "FIELDS",
    "FIELD_SLOTS",
    "OPERATION_NAME",
    "PARENT_CORRELATION_ID",
    "REQUEST_ID",
    "REQUEST_METADATA",
    "SERVICE_ENVIRONMENT",
    "SERVICE_NAME",
    "SERVICE_VERSION",
    "SLOT_NAMES",
    "TRACE_ID",
    "TRACE_PARENT",
    "USER_ID",
    "Snapshot",
]

Snapshot = tuple[Any, ...]

# Slot indexes of the snapshot tuple. Order is part of no public contract.
CORRELATION_ID: Final = 0
PARENT_CORRELATION_ID: Final = 1
SERVICE_NAME: Final = 2
SERVICE_VERSION: Final = 3
SERVICE_ENVIRONMENT: Final = 4
USER_ID: Final = 5
OPERATION_NAME: Final = 6
REQUEST_ID: Final = 7
REQUEST_METADATA: Final = 8  # dict, never mutated once stored
FIELDS: Final = 9  # custom context fields: dict name -> value, copy on write
TRACE_ID: Final = 10  # W3C trace id this context belongs to
TRACE_PARENT: Final = 11  # remote parent: (parent span id, flags, tracestate entries)
BAGGAGE: Final = 12  # inbound W3C baggage members passed on unchanged: dict

SLOT_NAMES: Final = (
    "correlation_id",
    "parent_correlation_id",
    "service_name",
    "service_version",
    "service_environment",
    "user_id",
    "operation_name",
    "request_id",
    "request_metadata",
    "fields",
    "trace_id",
    "trace_parent",
    "baggage",
)
EMPTY: Final[Snapshot] = (None,) * len(SLOT_NAMES)
# The built-in context fields by name (the names aspects and mappings use), to their slots.
FIELD_SLOTS: Final[dict[str, int]] = {
    name: SLOT_NAMES.index(name)
    for name in (
        "correlation_id",
        "parent_correlation_id",
        "service_name",
        "service_version",
        "service_environment",
        "user_id",
        "operation_name",
        "request_id",
        "request_metadata",
        "trace_id",
    )
}

_snapshot: ContextVar[Snapshot] = ContextVar("flext_ctx_aspects.snapshot", default=EMPTY)
_operation: ContextVar[dict[str, Any] | None] = ContextVar(
    "flext_ctx_aspects.operation", default=None
)

# Bound methods: the engine's hot paths call these directly.
get: Final = _snapshot.get
push: Final = _snapshot.set
pop: Final = _snapshot.reset
get_operation: Final = _operation.get
push_operation: Final = _operation.set
pop_operation: Final = _operation.reset


def replace(snapshot: Snapshot) -> None:
    """Make ``snapshot`` the current state, without a scope to restore it."""
    _snapshot.set(snapshot)


def clear() -> None:
    """Drop every context value and the running operation in the current Context."""
    _snapshot.set(EMPTY)
    _operation.set(None)


def with_changes(base: Snapshot, changes: dict[int, Any]) -> Snapshot:
    """Return ``base`` with the slots in ``changes`` replaced."""
    updated = list(base)
    for index, value in changes.items():
        updated[index] = value
    return tuple(updated)


def restore(token: Token[Snapshot], pushed: Snapshot) -> None:
    """Leave a scope opened with :data:`push`, even from another Context.

    ``ContextVar.reset`` refuses a token created in another Context (a generator resumed
    elsewhere, a coroutine driven by hand). In that case the scope's own value is replaced by
    the value it covered, but only if it is still the visible one, so that nothing set since
    is overwritten.
    """
    try:
        _snapshot.reset(token)
    except (ValueError, RuntimeError):
        if _snapshot.get() is pushed:
            old = token.old_value
            _snapshot.set(EMPTY if old is Token.MISSING else old)


def restore_operation(token: Token[dict[str, Any] | None], pushed: dict[str, Any]) -> None:
    """Leave an operation scope; the counterpart of :func:`restore` for operations."""
    try:
        _operation.reset(token)
    except (ValueError, RuntimeError):
        if _operation.get() is pushed:
            old = token.old_value
            _operation.set(None if old is Token.MISSING else old)
