"""The one emit path: the sink registry, the record filters, dispatch, and timed blocks.

Each finished timed operation (``@timed``, ``timed_operation``, a served HTTP request, a
consumed message) goes through `finish`, which applies the filters (per-call minimum
duration, the process-wide minimum duration and sampling), builds one immutable
`OperationRecord` and hands it to every registered sink.
When no sink is registered the engine does not even call it: timing then costs two clock
reads and one context variable set/reset.

`TimedBlock` is the shared "time a block and emit its record" helper used by the
facade's ``timed_operation`` and by the servers' request recorder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from flext_ctx_aspects import _state, _trace
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects._native import speedups
from flext_ctx_aspects.records import EMPTY_MAPPING, FrozenDict, OperationRecord, RecordKind

if TYPE_CHECKING:
    from flext_ctx_aspects.typing import Sink

__all__ = [
    "WALL_RESYNC_NS",
    "RemoveSink",
    "TimedBlock",
    "TimingSpec",
    "active",
    "add_sink",
    "clear_sinks",
    "configure_filters",
    "finish",
    "registered_sinks",
    "remove_sink",
    "wall_time_ns",
]


class TimingSpec(NamedTuple):
    """What a timed call site records; fixed at decoration time."""

    name: str
    kind: RecordKind
    min_duration_ns: int
    keep_errors: bool


# --- registry -----------------------------------------------------------------------------
# ``active`` is the list the hot paths test for truth ("is anybody listening?"); ``_dispatch``
# is the tuple actually iterated, replaced whole so a concurrent registration never makes a
# dispatch skip or repeat a sink.
active: list[Sink] = []
_dispatch: tuple[Sink, ...] = ()
_lock = threading.Lock()
# What a sink may read without a record being built for it: a sink whose `needs` (the record
# fields it reads) fit here and that has `observe(name, duration_ns, failed)` is fed by that
# method. When every registered sink is such a sink (statistics alone, the common case), the
# emit path builds no record at all.
LIGHT_FIELDS: Final = frozenset({"name", "duration_ns", "status"})
_light: tuple[Callable[[str, int, bool], None], ...] | None = None
# The same, when moreover no registered sink runs code that may be instrumented
# (`runs_user_code = False`, as `StatsSink` declares): nothing can re-enter the emit path
# from a sink then, so it needs no re-entrancy guard either.
_light_unguarded: tuple[Callable[[str, int, bool], None], ...] | None = None
# ``direct[0]``: the observer the drivers call themselves, instead of `finish`, for what
# the operation's own min_duration keeps (the Python drivers take this path only without one;
# the compiled ones apply it first). Set when `finish` would do nothing but call it:
# one unguarded observer is all that listens and no process-wide filter is on. (A list,
# changed in place, so the drivers read it without a module attribute lookup.)
direct: list[Callable[[str, int, bool], None] | None] = [None]
# ``record_path[0]``: the sinks the compiled drivers build a record for and dispatch to
# themselves (after the operation's own min_duration filter): set when every sink gets a
# record (none is fed by observe) and no process-wide filter is on; else None (`finish`).
# Held as ``(sinks, their bound emit methods)``: no method lookup per record.
record_path: list[tuple[tuple[Sink, ...], tuple[Callable[[OperationRecord], Any], ...]] | None]
record_path = [None]


def _refresh() -> None:
    # Called under _lock whenever the registry or the filters change.
    global _light, _light_unguarded
    active[:] = _dispatch
    _light = _light_unguarded = None
    direct[0] = None
    unfiltered = _sample_rate >= 1.0 and _min_duration_ns == 0
    record_path[0] = None
    if _dispatch and unfiltered:
        record_path[0] = (_dispatch, tuple(sink.emit for sink in _dispatch))
    observers = []
    for sink in _dispatch:
        needs = getattr(sink, "needs", None)
        observe = getattr(sink, "observe", None)
        if not isinstance(needs, (set, frozenset)) or not needs <= LIGHT_FIELDS:
            return
        if not callable(observe):
            return
        observers.append(observe)
    record_path[0] = None  # every sink is fed by observe(): no record at all
    _light = tuple(observers)
    if all(getattr(sink, "runs_user_code", True) is False for sink in _dispatch):
        _light_unguarded = _light
        if len(observers) == 1 and unfiltered:
            direct[0] = observers[0]


def observer_failed(observe: Callable[..., None], exc: Exception) -> None:
    """Report that a sink's ``observe`` raised (the caller goes on)."""
    report_internal_error(f"sink {_owner(observe)}.observe", exc)


def sink_failed(sink: Sink, exc: Exception) -> None:
    """Report that a sink's ``emit`` raised (the caller and the other sinks go on)."""
    report_internal_error(f"sink {type(sink).__qualname__}.emit", exc)


class RemoveSink:
    """Handle returned by `add_sink`: call it (or use it as a context manager) to undo."""

    __slots__ = ("_sink",)

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def __call__(self) -> None:
        """Unregister the sink."""
        remove_sink(self._sink)

    def __enter__(self) -> Sink:
        return self._sink

    def __exit__(self, *exc_info: object) -> None:
        remove_sink(self._sink)


def add_sink(sink: Sink) -> RemoveSink:
    """Register ``sink`` to receive every finished operation record.

    Args:
        sink: Any object with an ``emit(record)`` method (the ``Sink`` protocol of
            ``flext_ctx_aspects.typing``).

    Returns:
        A handle that removes the sink when called or when its ``with`` block ends.

    Raises:
        TypeError: ``sink`` has no callable ``emit``.
    """
    if not callable(getattr(sink, "emit", None)):
        raise TypeError(f"a sink needs an emit(record) method, got {type(sink).__qualname__}")
    global _dispatch
    with _lock:
        if sink not in _dispatch:
            _dispatch = (*_dispatch, sink)
            _refresh()
    return RemoveSink(sink)


def remove_sink(sink: Sink) -> None:
    """Unregister ``sink``; unknown sinks are ignored."""
    global _dispatch
    with _lock:
        _dispatch = tuple(s for s in _dispatch if s is not sink)
        _refresh()


def clear_sinks() -> None:
    """Unregister every sink."""
    global _dispatch
    with _lock:
        _dispatch = ()
        _refresh()


def registered_sinks() -> tuple[Sink, ...]:
    """Return the registered sinks, in registration order."""
    return _dispatch


# --- filters ------------------------------------------------------------------------------
_sample_rate = 1.0
_min_duration_ns = 0
_BUCKETS: Final = 0xFFFFFFFF


def configure_filters(sample_rate: float, min_duration_ns: int) -> None:
    """Set the process-wide record filters (pushed down when settings are applied)."""
    global _sample_rate, _min_duration_ns
    with _lock:
        _sample_rate = sample_rate
        _min_duration_ns = min_duration_ns
        _refresh()


def _sampled_out(snapshot: _state.Snapshot) -> bool:
    # Decided once per trace, from its W3C trace id (the root's id: uniform random bits for
    # generated ids, a hash otherwise), so a sampled trace keeps every one of its operations.
    if _sample_rate <= 0.0:
        return True
    trace_id = _trace.trace_id_of(snapshot)
    if trace_id is None:
        return False  # outside any trace: nothing to keep whole, nothing to drop
    return int(trace_id[:8], 16) / _BUCKETS >= _sample_rate


# --- clocks -------------------------------------------------------------------------------
_perf_counter_ns: Final = time.perf_counter_ns
_time_ns: Final = time.time_ns
_snapshot: Final = _state.get
# Wall-clock start times are derived from the monotonic clock plus an offset re-read at most
# every WALL_RESYNC_NS, which keeps a clock read off the per-record path while following
# wall-clock adjustments within a second.
WALL_RESYNC_NS: Final = 1_000_000_000
# [offset, perf_counter_ns reading of the last sync]: a list, so the compiled record path
# reads and updates the same two values.
_wall: Final[list[int]] = [_time_ns() - _perf_counter_ns(), _perf_counter_ns()]


def wall_time_ns(perf_ns: int) -> int:
    """Return the wall-clock time (ns since the epoch) of a ``perf_counter_ns`` reading."""
    wall = _wall
    if perf_ns - wall[1] > WALL_RESYNC_NS:
        wall[0] = _time_ns() - _perf_counter_ns()
        wall[1] = perf_ns
    return perf_ns + wall[0]


# --- dispatch -----------------------------------------------------------------------------
# The threads running sinks now: an instrumented function called by a sink (an exporter, a
# log formatter) must not emit again, or one user call would recurse through the sinks. (A set
# of thread idents: cheaper here than a threading.local flag; each thread adds and discards
# only its own.)
_emitting: set[int] = set()
_thread_id: Final = threading.get_ident
# The compiled record path marks its threads in C instead (no int, no set per record).
_in_compiled_sinks: Final[Callable[[], bool] | None] = (
    None if speedups is None else speedups.in_sinks
)
_new_record: Final[Callable[..., OperationRecord]] = tuple.__new__


def finish(
    spec: TimingSpec,
    start_ns: int,
    end_ns: int,
    error: BaseException | None,
    metadata: Mapping[str, Any] | None,
    body_ns: int | None = None,
    failed: bool = False,
) -> None:
    """Build the record of a finished operation and hand it to every sink.

    Called inside the operation's context (so the snapshot read here is the one the body ran
    in), only when at least one sink is registered. ``failed`` marks an operation that
    failed without an exception reaching us (a served request answered with a 5xx): its
    status is ``"error"`` and it is kept as errors are. ``metadata`` is copied: what is added to
    the live dict afterwards (a task the operation started) never reaches the record. Never
    raises an ``Exception``.
    """
    # Statistics alone (the common case): no record, no snapshot, and no re-entrancy guard.
    unguarded = _light_unguarded
    me = 0
    if unguarded is None:
        me = _thread_id()
        if me in _emitting or (_in_compiled_sinks is not None and _in_compiled_sinks()):
            return
    try:
        name, kind, min_duration_ns, keep_errors = spec
        duration = end_ns - start_ns
        failure = error is not None or failed
        if not failure or not keep_errors:
            if duration < min_duration_ns or duration < _min_duration_ns:
                return
            if _sample_rate < 1.0 and _sampled_out(_snapshot()):
                return
        if unguarded is not None:
            for observe in unguarded:
                try:
                    observe(name, duration, failure)
                except Exception as exc:
                    observer_failed(observe, exc)
            return
        light = _light
        if light is not None:
            _emitting.add(me)
            try:
                for observe in light:
                    try:
                        observe(name, duration, failure)
                    except Exception as exc:
                        observer_failed(observe, exc)
            finally:
                _emitting.discard(me)
            return
        wall = _wall
        if end_ns - wall[1] > WALL_RESYNC_NS:
            wall[0] = _time_ns() - _perf_counter_ns()
            wall[1] = end_ns
        record = _new_record(
            OperationRecord,
            (
                name,
                start_ns + wall[0],
                duration,
                "error" if failure else "ok",
                None if error is None else type(error).__qualname__,
                FrozenDict(metadata) if metadata else EMPTY_MAPPING,
                body_ns,
                kind,
                _snapshot(),
            ),
        )
    except Exception as exc:
        report_internal_error("building an operation record", exc)
        return
    _emitting.add(me)
    try:
        for sink in _dispatch:
            try:
                sink.emit(record)
            except Exception as exc:
                sink_failed(sink, exc)
    finally:
        _emitting.discard(me)


def _owner(observe: Callable[..., None]) -> str:
    owner = getattr(observe, "__self__", observe)
    return type(owner).__qualname__


class TimedBlock:
    """Time a block as one operation: the running operation while it runs, then a record.

    ``begin()`` makes ``metadata`` the running operation's dict (``add_operation_metadata``
    writes there) and starts the clock; ``end(error)`` records the operation (inside the
    block's context) and leaves the running operation, whatever a sink raises. One object
    times one block: ``begin`` again after ``end`` times a new one.
    """

    __slots__ = ("metadata", "spec", "start_ns", "token")

    def __init__(self, spec: TimingSpec, metadata: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.start_ns = 0

    def begin(self) -> int:
        """Start timing; returns the start reading of ``time.perf_counter_ns``."""
        self.token = _state.push_operation(self.metadata)
        self.start_ns = start = _perf_counter_ns()
        return start

    def end(
        self,
        error: BaseException | None,
        metadata: Mapping[str, Any] | None = None,
        *,
        failed: bool = False,
    ) -> int:
        """Record the block (``metadata`` overrides what is recorded); returns the end reading.

        ``failed`` records the block as an error without an exception (see `finish`).
        """
        end = _perf_counter_ns()
        try:
            if active:
                finish(
                    self.spec,
                    self.start_ns,
                    end,
                    error,
                    self.metadata if metadata is None else metadata,
                    None,
                    failed,
                )
        finally:
            _state.restore_operation(self.token, self.metadata)
        return end

    def __enter__(self) -> dict[str, Any]:
        self.begin()
        return self.metadata

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end(exc)
