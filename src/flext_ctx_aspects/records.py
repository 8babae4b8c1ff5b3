"""The operation record: one finished timed operation, immutable.

A record is a tuple of what the operation itself produced (name, times, status, metadata)
plus the context snapshot it ran in. The context fields (``correlation_id``, ``service_name``,
...) are read from that snapshot through attributes derived from the one built-in field
table (``_state.FIELDS``), so building a record costs one ``tuple.__new__`` of nine items,
whatever the number of context fields, and a new built-in field appears on records without
touching this module (the typed attribute list below is checked against the table by
``tests/test_records.py``).

Records are snapshots: the mappings they expose are read-only views, and the operation
metadata is copied when the record is built, so nothing done after the operation finished
(a task it started, a sink) changes a record or the live context it was taken from.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, Literal

from flext_ctx_aspects import _state, _trace

__all__ = [
    "EMPTY_MAPPING",
    "FIELD_NAMES",
    "FrozenDict",
    "OperationRecord",
    "RecordKind",
    "Status",
    "utc_datetime",
]

Status = Literal["ok", "error"]
RecordKind = Literal["function", "coroutine", "generator", "async_generator", "block"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses changes: the mappings of a record.

    A real dict (``isinstance(record.metadata, dict)``, JSON encoders, ``==`` with dicts), so
    sinks read it as one, but nothing done after the operation finished, by a sink or by a task
    the operation started, can change a record or the live context it was taken from.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> Any:
        raise TypeError("the mappings of an operation record are read-only (copy it: dict(m))")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: object) -> FrozenDict:
        return self


EMPTY_MAPPING: Final[FrozenDict] = FrozenDict()

# Positions of the record tuple.
_NAME, _START, _DURATION, _STATUS, _ERROR, _METADATA, _BODY, _KIND, _CONTEXT = range(9)
_OWN_FIELDS: Final = (
    "name",
    "start_time_ns",
    "duration_ns",
    "status",
    "error_type",
    "metadata",
    "body_duration_ns",
    "kind",
)


FIELD_NAMES: Final = (
    *_OWN_FIELDS,
    *(f.name for f in _state.PUBLIC_FIELDS),
    "span_id",
    "fields",
)
"""Every field a record exposes, for sinks that declare what they read (``needs``)."""


def utc_datetime(wall_ns: int) -> datetime:
    """Return an aware UTC datetime for a wall-clock time in ns since the epoch."""
    return _EPOCH + timedelta(microseconds=wall_ns // 1000)


class OperationRecord(tuple[Any, ...]):
    """One finished timed operation. Immutable.

    Attributes:
        name: Operation name (``module.qualname`` for ``@timed`` by default).
        start_time_ns: Wall-clock start, nanoseconds since the Unix epoch.
        duration_ns: Monotonic duration from start to end, in nanoseconds. For generators:
            first resume to exhaustion or close, suspended time included.
        status: ``"ok"`` or ``"error"``.
        error_type: Class name of the exception that ended the operation, or None.
        metadata: What ``add_operation_metadata`` added during the operation (a read-only
            dict).
        body_duration_ns: For generators measured with ``measure_body=True``: time spent
            inside the body, excluding time suspended at ``yield``. None otherwise.
        kind: ``"function"``, ``"coroutine"``, ``"generator"``, ``"async_generator"`` or
            ``"block"`` (a ``timed_operation`` block or a served request).
        context: The context snapshot the operation ran in (internal layout).
        correlation_id: Correlation id the operation ran in.
        parent_correlation_id: Its parent correlation id.
        service_name: Service identity the operation ran in.
        service_version: Service version.
        service_environment: Service environment.
        user_id: User id the operation ran for.
        operation_name: Request-level operation name (``@request_scope``).
        request_id: Request id the operation ran in.
        request_metadata: The request scope's metadata (a read-only dict).
        trace_id: W3C trace id the operation belongs to (the one outbound ``traceparent``
            headers carry), when it ran in a trace.
        span_id: W3C span id of the correlation scope the operation ran in.
        fields: Custom context fields (``FlextContext`` subclasses) with a value (a read-only
            dict).
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # For type checkers: the runtime attributes are derived from the tables below.
        name: str
        start_time_ns: int
        duration_ns: int
        status: Status
        error_type: str | None
        metadata: Mapping[str, Any]
        body_duration_ns: int | None
        kind: RecordKind
        context: _state.Snapshot
        correlation_id: str | None
        parent_correlation_id: str | None
        service_name: str | None
        service_version: str | None
        service_environment: str | None
        user_id: str | None
        operation_name: str | None
        request_id: str | None
        request_metadata: Mapping[str, Any]

    @classmethod
    def make(
        cls,
        name: str,
        *,
        start_time_ns: int = 0,
        duration_ns: int = 0,
        status: Status = "ok",
        error_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        body_duration_ns: int | None = None,
        kind: RecordKind = "function",
        fields: Mapping[str, str] | None = None,
        **context: Any,
    ) -> OperationRecord:
        """Build a record by hand (tests, replaying saved records); the library builds its own.

        Args:
            name: Operation name.
            start_time_ns: Wall-clock start, ns since the epoch.
            duration_ns: Duration in ns.
            status: ``"ok"`` or ``"error"``.
            error_type: Exception class name of a failed operation.
            metadata: Operation metadata.
            body_duration_ns: Generators: time inside the body.
            kind: What ran.
            fields: Custom context fields by name.
            **context: Built-in context fields by name (``correlation_id=...``).

        Raises:
            TypeError: An unknown context field name.
        """
        unknown = sorted(set(context) - set(_state.FIELD_SLOTS))
        if unknown:
            raise TypeError(f"OperationRecord.make(): unknown context field {unknown[0]!r}")
        snapshot = _state.with_fields(_state.EMPTY, {**context, **(fields or {})})
        own = (name, start_time_ns, duration_ns, status, error_type)
        proxy = FrozenDict(metadata) if metadata else EMPTY_MAPPING
        return tuple.__new__(cls, (*own, proxy, body_duration_ns, kind, snapshot))

    @property
    def trace_id(self) -> str | None:
        """W3C trace id of the operation's context (as sent in ``traceparent``)."""
        return _trace.trace_id_of(self[_CONTEXT])

    @property
    def span_id(self) -> str | None:
        """W3C span id of the correlation scope the operation ran in."""
        return _trace.span_id_of(self[_CONTEXT])

    @property
    def fields(self) -> Mapping[str, str]:
        """Custom context fields with a value (read-only)."""
        custom = self[_CONTEXT][_state.CUSTOM_FIELDS]
        return EMPTY_MAPPING if not custom else FrozenDict(custom)

    @property
    def start_time(self) -> datetime:
        """Wall-clock start as an aware UTC datetime (microsecond precision)."""
        return utc_datetime(self[_START])

    @property
    def end_time(self) -> datetime:
        """Wall-clock end as an aware UTC datetime."""
        return utc_datetime(self[_START] + self[_DURATION])

    @property
    def duration_seconds(self) -> float:
        """Duration in seconds."""
        return float(self[_DURATION]) / 1e9

    @property
    def ok(self) -> bool:
        """Whether the operation finished without an exception."""
        return bool(self[_STATUS] == "ok")

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict (``start_time`` as ISO 8601)."""
        data: dict[str, Any] = {name: self[i] for i, name in enumerate(_OWN_FIELDS)}
        data["metadata"] = dict(self[_METADATA])
        for field in _state.PUBLIC_FIELDS:
            value = getattr(self, field.name)
            data[field.name] = dict(value) if isinstance(value, Mapping) else value
        data["span_id"] = self.span_id
        data["fields"] = dict(self.fields)
        data["start_time"] = self.start_time.isoformat()
        return data

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self[i]!r}" for i, name in enumerate(_OWN_FIELDS))
        return f"OperationRecord({shown}, correlation_id={self.correlation_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        items = list(self)
        items[_METADATA] = dict(items[_METADATA])  # a mapping proxy does not pickle
        return (_rebuild, (tuple(items),))


def _rebuild(items: tuple[Any, ...]) -> OperationRecord:
    values = list(items)
    values[_METADATA] = FrozenDict(values[_METADATA]) if values[_METADATA] else EMPTY_MAPPING
    return tuple.__new__(OperationRecord, tuple(values))


def _context_reader(slot: int, mapping: bool) -> property:
    if mapping:

        def read_mapping(record: OperationRecord) -> Mapping[str, Any]:
            value = record[_CONTEXT][slot]
            return EMPTY_MAPPING if not value else FrozenDict(value)

        return property(read_mapping)

    def read(record: OperationRecord) -> Any:
        return record[_CONTEXT][slot]

    return property(read)


for _position, _name in enumerate((*_OWN_FIELDS, "context")):
    setattr(OperationRecord, _name, property(itemgetter(_position)))
for _field in _state.PUBLIC_FIELDS:
    if _field.name != "trace_id":  # normalised to a W3C id by the property above
        _slot = _state.FIELD_SLOTS[_field.name]
        setattr(OperationRecord, _field.name, _context_reader(_slot, _field.validator is None))
del _position, _name, _field, _slot
