"""Operation records as a Chrome Trace Event / Perfetto JSON file.

`TraceFileSink` keeps records in a bounded buffer (``emit`` is an append; records past
``capacity`` are dropped and counted) and writes them on `TraceFileSink.write` /
`TraceFileSink.close` (and at exit with ``write_at_exit=True``) as a file that Perfetto
UI (https://ui.perfetto.dev, "Open trace file") and ``chrome://tracing`` open:

* timestamps in microseconds from one process origin (``otherData.origin_unix_ns``), with
  nanosecond precision;
* ``process_name`` and ``thread_name`` metadata events; one track per thread;
* synchronous operations (functions, ``timed_operation`` blocks) as complete ``X`` events,
  nested on their thread's track as they ran;
* coroutines and async generators as async ``b``/``e`` events, one track group per asyncio
  task (Perfetto drops slices that overlap on one thread, and tasks interleave on theirs);
* generators (whose lifetime, first resume to close, interleaves with other work on their
  thread) as async slices too, with ``body_duration_ns`` in ``args`` when it was measured:
  the record holds the total time inside the body, not each resume, so the individual active
  slices are not drawn;
* correlation ids, service, request, status and metadata in each event's ``args``.

`merge_trace_files` merges the files of several processes into one (a process track
each, on a common timeline). Every produced file passes
`check_trace`.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks._sketch import describe
from flext_ctx_aspects.sinks._tracecheck import check_trace_file

__all__ = ["DEFAULT_TRACE_CAPACITY", "TraceFileSink", "merge_trace_files", "trace_events"]

DEFAULT_TRACE_CAPACITY: Final = 100_000
_ASYNC_KINDS: Final = frozenset({"coroutine", "async_generator"})
_ARG_FIELDS: Final = (
    "correlation_id",
    "parent_correlation_id",
    "trace_id",
    "service_name",
    "service_version",
    "service_environment",
    "request_id",
    "user_id",
    "operation_name",
    "error_type",
    "body_duration_ns",
)
# One origin per process: every trace of the process shares its timeline.
_PROCESS_ORIGIN_NS = time.time_ns()
_live: weakref.WeakSet[TraceFileSink] = weakref.WeakSet()

# (record, native thread id, asyncio task key or 0)
_Entry = tuple[OperationRecord, int, int]


def _current_task_key() -> int:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a coroutine driven by hand
        return 0
    return 0 if task is None else id(task)


class TraceFileSink:
    """Buffers records and writes them as a Chrome Trace Event / Perfetto JSON file.

    Args:
        path: Where `write` and `close` write by default; ``{pid}`` in it is
            replaced by the process id at write time (one file per process of a run).
        capacity: Most records buffered; further ones are dropped and counted
            (`dropped`, also written as ``otherData.dropped``).
        write_at_exit: Write to ``path`` when the interpreter exits.

    Raises:
        ConfigError: ``capacity`` is not a positive int, or ``write_at_exit`` without path.
    """

    needs: ClassVar[frozenset[str]] = frozenset(
        {"name", "start_time_ns", "duration_ns", "status", "kind", "metadata",
         "request_metadata", "fields", *_ARG_FIELDS}
    )  # fmt: skip

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        capacity: int = DEFAULT_TRACE_CAPACITY,
        write_at_exit: bool = False,
    ) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ConfigError("TraceFileSink()", "capacity", "a positive int", describe(capacity))
        if type(write_at_exit) is not bool:
            raise ConfigError("TraceFileSink()", "write_at_exit", "a bool", describe(write_at_exit))
        if write_at_exit and path is None:
            raise ConfigError("TraceFileSink()", "write_at_exit", "used with a path", "no path")
        self.path = None if path is None else os.fspath(path)
        self.capacity = capacity
        self.write_at_exit = write_at_exit
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._entries: deque[_Entry] = deque()
        self._drops = itertools.count()
        self._thread_names: dict[int, str] = {}

    @property
    def dropped(self) -> int:
        """How many records were dropped because the buffer was full."""
        return int(repr(self._drops)[6:-1])

    def emit(self, record: OperationRecord) -> None:
        """Buffer one record with the thread (and asyncio task) it finished on."""
        entries = self._entries
        if len(entries) >= self.capacity:
            next(self._drops)
            return
        tid = threading.get_native_id()
        if tid not in self._thread_names:
            self._thread_names[tid] = threading.current_thread().name
        task = _current_task_key() if record.kind in _ASYNC_KINDS else 0
        entries.append((record, tid, task))

    def events(self) -> dict[str, Any]:
        """Return the trace object of the records buffered so far (buffer kept)."""
        return trace_events(list(self._entries), self._thread_names, dropped=self.dropped)

    def write(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the buffered records to ``path`` (default: the sink's) and return the path.

        The file is replaced atomically (written aside, then renamed). The buffer is kept:
        a later write holds the earlier records too.

        Raises:
            ConfigError: No path given here nor to the sink.
        """
        target = path if path is not None else self.path
        if target is None:
            raise ConfigError("TraceFileSink.write()", "path", "a file path", "None")
        resolved = os.fspath(target).replace("{pid}", str(os.getpid()))
        data = self.events()
        temporary = f"{resolved}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file, separators=(",", ":"))
        os.replace(temporary, resolved)
        return resolved

    def close(self) -> None:
        """Write to the sink's path (when it has one)."""
        if self.path is not None:
            self.write()

    def clear(self) -> None:
        """Forget the buffered records and the drop count."""
        self._reset()


def _args(record: OperationRecord) -> dict[str, Any]:
    args: dict[str, Any] = {"status": record.status, "kind": record.kind}
    for field in _ARG_FIELDS:
        value = getattr(record, field)
        if value is not None:
            args[field] = value
    for field in ("metadata", "request_metadata", "fields"):
        mapping = getattr(record, field)
        if mapping:
            args[field] = {str(k): _json_value(v) for k, v in mapping.items()}
    return args


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _lanes(slices: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Split (start, end, index) slices into lanes where each lane nests properly."""
    lanes: list[list[tuple[int, int, int]]] = []
    stacks: list[list[int]] = []  # per lane: ends of the open slices
    for piece in sorted(slices, key=lambda s: (s[0], -s[1])):
        start, end, _ = piece
        for lane, stack in zip(lanes, stacks, strict=True):
            while stack and stack[-1] <= start:
                stack.pop()
            if not stack or end <= stack[-1]:
                lane.append(piece)
                stack.append(end)
                break
        else:
            lanes.append([piece])
            stacks.append([end])
    return lanes


def trace_events(
    entries: list[_Entry], thread_names: Mapping[int, str], *, dropped: int = 0
) -> dict[str, Any]:
    """Lay records out as a trace object (see the module docs for the layout)."""
    pid = os.getpid()
    origin = min([_PROCESS_ORIGIN_NS, *(entry[0].start_time_ns for entry in entries)])
    events: list[dict[str, Any]] = []
    process = next((e[0].service_name for e in entries if e[0].service_name), None)
    label = process or os.path.basename(sys.argv[0] or "python") or "python"
    events.append(_meta("process_name", pid, 0, f"{label} (pid {pid})"))
    events.extend(
        _meta("thread_name", pid, tid, thread_names.get(tid, f"thread {tid}"))
        for tid in sorted({entry[1] for entry in entries})
    )
    by_thread: dict[int, list[tuple[int, int, int]]] = {}
    by_group: dict[tuple[str, int, int], list[tuple[int, int, int]]] = {}
    for index, (record, tid, task) in enumerate(entries):
        start = record.start_time_ns - origin
        piece = (start, start + max(record.duration_ns, 0), index)
        if record.kind in _ASYNC_KINDS:
            by_group.setdefault(("task", tid, task), []).append(piece)
        elif record.kind == "generator":
            by_group.setdefault(("generator", tid, 0), []).append(piece)
        else:
            by_thread.setdefault(tid, []).append(piece)
    for tid, pieces in sorted(by_thread.items()):
        nested, *overlapping = _lanes(pieces)
        for start, end, index in nested:
            record = entries[index][0]
            events.append({
                "name": record.name, "cat": record.kind, "ph": "X", "pid": pid, "tid": tid,
                "ts": start / 1000, "dur": (end - start) / 1000, "args": _args(record),
            })  # fmt: skip
        # Synchronous slices that overlap partially (a block held across a yield): async.
        for lane in overlapping:
            by_group.setdefault(("overlap", tid, 0), []).extend(lane)
    for (group, tid, task), pieces in sorted(by_group.items()):
        for number, lane in enumerate(_lanes(pieces)):
            track = f"{group}-{tid}-{task:x}-{number}"
            events.extend(_async_lane(lane, entries, pid, tid, group, track))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "flext_ctx_aspects",
            "origin_unix_ns": origin,
            "dropped": dropped,
        },
    }


def _meta(name: str, pid: int, tid: int, value: str) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": {"name": value}}


def _async_lane(
    lane: list[tuple[int, int, int]],
    entries: list[_Entry],
    pid: int,
    tid: int,
    cat: str,
    track: str,
) -> list[dict[str, Any]]:
    # Walk the lane as a stack so every e closes the innermost open b, in time order.
    out: list[dict[str, Any]] = []
    stack: list[tuple[int, str]] = []

    def close(end: int, name: str) -> None:
        out.append({"name": name, "cat": cat, "ph": "e", "id": track, "pid": pid, "tid": tid,
                    "ts": end / 1000})  # fmt: skip

    for start, end, index in lane:
        while stack and stack[-1][0] <= start:
            close(*stack.pop())
        record = entries[index][0]
        out.append({"name": record.name, "cat": cat, "ph": "b", "id": track, "pid": pid,
                    "tid": tid, "ts": start / 1000, "args": _args(record)})  # fmt: skip
        stack.append((end, record.name))
    while stack:
        close(*stack.pop())
    return out


def merge_trace_files(
    paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Merge the trace files of several processes into one trace (one process track each).

    Every file is checked first. Timestamps are moved to the earliest file's origin, so the
    processes share one timeline; a pid seen in two files (reused by the OS) is renumbered.

    Args:
        paths: The files to merge.
        out: Where to write the merged trace (optional).

    Returns:
        The merged trace object.

    Raises:
        TraceFormatError: A file is not a valid trace.
    """
    loaded = [check_trace_file(path) for path in paths]
    origins = [int((data.get("otherData") or {}).get("origin_unix_ns", 0)) for data in loaded]
    base = min(origins, default=0)
    events: list[dict[str, Any]] = []
    used: set[int] = set()
    dropped = 0
    for data, origin in zip(loaded, origins, strict=True):
        shift = (origin - base) / 1000
        pids = {event["pid"] for event in data["traceEvents"]}
        remap = {}
        for pid in sorted(pids):
            new = pid
            while new in used:
                new += 1_000_000
            remap[pid] = new
            used.add(new)
        for event in data["traceEvents"]:
            moved = dict(event, pid=remap[event["pid"]])
            if "ts" in moved and event["ph"] != "M":
                moved["ts"] = round(moved["ts"] + shift, 3)
            events.append(moved)
        dropped += int((data.get("otherData") or {}).get("dropped", 0))
    merged = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"producer": "flext_ctx_aspects", "origin_unix_ns": base, "dropped": dropped},
    }
    if out is not None:
        with open(out, "w", encoding="utf-8") as file:
            json.dump(merged, file, separators=(",", ":"))
    return merged


def _write_all_at_exit() -> None:
    for sink in list(_live):
        if sink.write_at_exit:
            try:
                sink.write()
            except Exception as exc:
                report_internal_error("TraceFileSink.write at exit", exc)


def _after_fork_in_child() -> None:
    # The parent's records are the parent's file's; the child writes its own ({pid}).
    for sink in list(_live):
        sink._reset()


atexit.register(_write_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
