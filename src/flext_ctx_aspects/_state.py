"""The context state: the one built-in field table, the only setter of context variables.

The whole request context lives in ONE ``ContextVar`` holding an immutable tuple (a
"snapshot"), laid out by `FIELDS`. Reading a field is ``_snapshot.get()[INDEX]``;
entering a scope that changes any number of fields builds one new tuple and does one
``set``; leaving it does one ``reset``. Measured against one ContextVar per field, setting and
restoring nine fields is about 7x cheaper this way, reading one field costs ~13 ns more (see
docs/architecture.md and benchmarks/test_core_state_design.py).

`FIELDS` is the one table of built-in fields: the snapshot slots, the record
attributes, the library's header names, the ``get_full_context()`` keys, the context summary
and the attribute names of log records, structlog events and OpenTelemetry spans are all
derived from it. A new built-in field is one row here.

The innermost running timed operation has its own variable holding that operation's live
metadata dict, so ``@timed`` alone never rebuilds the snapshot.

Tokens are never held across a ``yield`` by the engine (a generator runs in its own
``contextvars.Context``). `Scope`, the one scope primitive of the public context
managers, which user code may reuse, nest, share between tasks or hold across a yield,
leaves each ``with`` independently (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any, Final, NamedTuple

from flext_ctx_aspects._validate import validate_id, validate_name
from flext_ctx_aspects.constants import FlextConstants

__all__ = [
    "BAGGAGE",
    "CORRELATION_ID",
    "CUSTOM_FIELDS",
    "EMPTY",
    "FIELDS",
    "FIELD_SLOTS",
    "LOG_FIELDS",
    "OPERATION_NAME",
    "PARENT_CORRELATION_ID",
    "PUBLIC_FIELDS",
    "REQUEST_ID",
    "REQUEST_METADATA",
    "SERVICE_ENVIRONMENT",
    "SERVICE_NAME",
    "SERVICE_VERSION",
    "SLOT_NAMES",
    "TRACE_ID",
    "TRACE_PARENT",
    "USER_FIELDS",
    "USER_ID",
    "BuiltinField",
    "Scope",
    "Snapshot",
]

Snapshot = tuple[Any, ...]
_H = FlextConstants.Headers


class BuiltinField(NamedTuple):
    """One built-in context field: a row of `FIELDS`.

    Attributes:
        name: The field's name everywhere: ``Advice`` fields, ``OperationRecord``
            attributes, ``get_full_context()`` keys, log record attributes.
        header: The library's header carrying it (``"flext"`` format), or None.
        validator: ``validator(field, raw) -> clean str`` for values from outside; None for
            values that are not text.
        public: Visible to users (records, ``get_full_context()``); False for internal slots.
        outbound: Written to outbound headers (the user id is personal data: never).
        trusted_only: Accepted inbound only from a trusted source.
        summary: Its label in ``get_context_summary()``, or None when not shown there.
        log: Put on log records, structlog events (and OpenTelemetry attributes).
        otel: Its OpenTelemetry attribute name, or None.
    """

    name: str
    header: str | None = None
    validator: Callable[[str, str | bytes], str] | None = None
    public: bool = True
    outbound: bool = True
    trusted_only: bool = False
    summary: str | None = None
    log: bool = True
    otel: str | None = None


# The snapshot layout, in slot order. Order is part of no public contract.
FIELDS: Final[tuple[BuiltinField, ...]] = (
    BuiltinField("correlation_id", _H.CORRELATION_ID, validate_id, summary="correlation",
                 otel="flext.correlation_id"),
    BuiltinField("parent_correlation_id", _H.PARENT_CORRELATION_ID, validate_id,
                 otel="flext.parent_correlation_id"),
    BuiltinField("service_name", _H.SERVICE_NAME, validate_name, summary="service",
                 otel="service.name"),
    BuiltinField("service_version", _H.SERVICE_VERSION, validate_name, otel="service.version"),
    BuiltinField("service_environment", _H.SERVICE_ENVIRONMENT, validate_name,
                 otel="deployment.environment"),
    BuiltinField("user_id", _H.USER_ID, validate_name, outbound=False, trusted_only=True,
                 summary="user", otel="enduser.id"),
    BuiltinField("operation_name", _H.OPERATION_NAME, validate_name,
                 otel="flext.operation_name"),
    BuiltinField("request_id", _H.REQUEST_ID, validate_id, otel="flext.request_id"),
    # A dict, never mutated once stored.
    BuiltinField("request_metadata", log=False),
    # Custom context fields (FlextContext subclasses): dict name -> value, copy on write.
    BuiltinField("fields", public=False, log=False),
    # The W3C trace id this context belongs to (carried by traceparent, not a header of ours).
    BuiltinField("trace_id", otel=None),
    # Remote parent: (parent span id, flags, tracestate entries).
    BuiltinField("trace_parent", public=False, log=False),
    # Inbound W3C baggage members passed on unchanged: dict.
    BuiltinField("baggage", public=False, log=False),
)  # fmt: skip

SLOT_NAMES: Final = tuple(f.name for f in FIELDS)
EMPTY: Final[Snapshot] = (None,) * len(FIELDS)
# The fields users see, by name, to their slots (what aspects and mappings use).
FIELD_SLOTS: Final[Mapping[str, int]] = {f.name: i for i, f in enumerate(FIELDS) if f.public}
PUBLIC_FIELDS: Final = tuple(f for f in FIELDS if f.public)
# Text fields set by users (what `Advice` may set besides request_metadata and trace_id).
USER_FIELDS: Final = tuple(f.name for f in FIELDS if f.validator is not None)
LOG_FIELDS: Final = tuple(f.name for f in FIELDS if f.public and f.log)


def _slot(name: str) -> int:
    return SLOT_NAMES.index(name)


# Slot indexes for the code that reads one field directly (the hot paths).
CORRELATION_ID: Final = _slot("correlation_id")
PARENT_CORRELATION_ID: Final = _slot("parent_correlation_id")
SERVICE_NAME: Final = _slot("service_name")
SERVICE_VERSION: Final = _slot("service_version")
SERVICE_ENVIRONMENT: Final = _slot("service_environment")
USER_ID: Final = _slot("user_id")
OPERATION_NAME: Final = _slot("operation_name")
REQUEST_ID: Final = _slot("request_id")
REQUEST_METADATA: Final = _slot("request_metadata")
CUSTOM_FIELDS: Final = _slot("fields")
TRACE_ID: Final = _slot("trace_id")
TRACE_PARENT: Final = _slot("trace_parent")
BAGGAGE: Final = _slot("baggage")

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


def with_changes(base: Snapshot, changes: Mapping[int, Any]) -> Snapshot:
    """Return ``base`` with the slots in ``changes`` replaced."""
    updated = list(base)
    for index, value in changes.items():
        updated[index] = value
    return tuple(updated)


def with_fields(base: Snapshot, values: Mapping[str, Any]) -> Snapshot:
    """Return ``base`` with fields replaced by name (custom fields go to their dict)."""
    changes: dict[int, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in values.items():
        slot = FIELD_SLOTS.get(name)
        if slot is None:
            custom[name] = value
        else:
            changes[slot] = value
    if custom:
        merged = {**(base[CUSTOM_FIELDS] or {}), **custom}
        changes[CUSTOM_FIELDS] = {k: v for k, v in merged.items() if v is not None} or None
    return with_changes(base, changes) if changes else base


def restore(token: Token[Snapshot], pushed: Snapshot) -> None:
    """Leave a scope opened with `push`, even from another Context.

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
    """Leave an operation scope; the counterpart of `restore` for operations."""
    try:
        _operation.reset(token)
    except (ValueError, RuntimeError):
        if _operation.get() is pushed:
            old = token.old_value
            _operation.set(None if old is Token.MISSING else old)


class Scope:
    """The one scope primitive: a reusable context manager over the snapshot.

    Subclasses implement `build` (the snapshot to make current, from the current one)
    and may override `entered` (what ``with ... as x`` gives). Every ``with`` is
    independent: the same object may be nested (``with s: with s:``), entered by several
    threads or tasks at once, or reused later, and each exit restores exactly what its own
    entry covered. Each entry keeps its token; an exit resets the newest token that belongs
    to the exiting Context (``ContextVar.reset`` refuses the others), so concurrent users of
    one object never restore each other's state. An exit in a Context where no token of the
    object belongs (a ``with`` held across a generator's yield and resumed elsewhere)
    restores by value, as `restore` does.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple[Token[Snapshot], Snapshot]] = []

    def build(self, current: Snapshot) -> Snapshot:
        """Return the snapshot the scope makes current, given the current one."""
        raise NotImplementedError

    def entered(self, pushed: Snapshot) -> Any:
        """Return the value of ``with scope as value`` (None by default)."""
        return None

    def __enter__(self) -> Any:
        pushed = self.build(_snapshot.get())
        token = _snapshot.set(pushed)
        self._entries.append((token, pushed))
        return self.entered(pushed)

    def __exit__(self, *exc_info: object) -> None:
        entries = self._entries
        for position in range(len(entries) - 1, -1, -1):
            token, pushed = entries[position]
            try:
                _snapshot.reset(token)
            except ValueError:  # entered in another Context: not this exit's entry
                continue
            except RuntimeError:  # already used: a stale entry
                del entries[position]
                continue
            del entries[position]
            return
        if entries:  # held across a yield and resumed in another Context
            token, pushed = entries.pop()
            restore(token, pushed)


class FieldScope(Scope):
    """A scope setting fields by name (built-in or custom) to fixed, validated values."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__()
        self._values = dict(values)

    def build(self, current: Snapshot) -> Snapshot:
        """Return ``current`` with the scope's fields set."""
        return with_fields(current, self._values)

    def __enter__(self) -> None:
        super().__enter__()


class SnapshotScope(Scope):
    """A scope making a snapshot computed by ``build_snapshot(current)`` current."""

    __slots__ = ("_build", "_result")

    def __init__(
        self,
        build_snapshot: Callable[[Snapshot], Snapshot],
        result: Callable[[Snapshot], Any] | None = None,
    ) -> None:
        super().__init__()
        self._build = build_snapshot
        self._result = result

    def build(self, current: Snapshot) -> Snapshot:
        """Return the snapshot computed from ``current``."""
        return self._build(current)

    def entered(self, pushed: Snapshot) -> Any:
        """Return what the ``result`` function makes of the pushed snapshot."""
        return None if self._result is None else self._result(pushed)
