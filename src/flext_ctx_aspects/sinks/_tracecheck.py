"""A validator of the Chrome Trace Event / Perfetto JSON files `.tracefile` writes.

The ``perfetto`` wheel downloads its trace processor at run time, so it cannot check files
offline; this module checks what the viewers need from the subset of the format we produce
(the Trace Event Format document, "JSON Object Format"):

* the top level is ``{"traceEvents": [...]}`` (or a bare list of events);
* every event has a string ``name`` and ``ph``, integer ``pid`` and ``tid``, and, except
  metadata (``M``) events, a finite, non-negative ``ts`` in **microseconds** (a ``ts`` above
  `MAX_TS_US` is taken for nanoseconds written as microseconds);
* ``X`` (complete) events have a non-negative ``dur``; on each (pid, tid) track they are in
  non-decreasing ``ts`` order and properly nested (a slice that starts inside another ends
  inside it: Perfetto drops slices that overlap partially);
* ``b``/``e`` (async nestable) events have ``cat`` and ``id``; on each (pid, cat, id) track
  they are in non-decreasing ``ts`` order and every ``e`` closes the innermost open ``b`` of
  the same name; none is left open;
* ``M`` events are ``process_name``/``thread_name`` (with ``args.name``) or sort indexes;
* ``args``, when present, is an object.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any, Final

from flext_ctx_aspects.errors import FlextContextError

__all__ = ["MAX_TS_US", "TraceFormatError", "check_trace", "check_trace_file", "trace_problems"]

MAX_TS_US: Final = 1e13  # 115 days in microseconds: larger is a unit mistake
# Timestamps are written with nanosecond precision (3 decimals of a microsecond): nesting
# comparisons allow that rounding.
_EPSILON_US: Final = 0.0015
_PHASES: Final = frozenset({"X", "b", "e", "M", "i", "I", "B", "E", "C", "n"})
_METADATA: Final = frozenset(
    {"process_name", "thread_name", "process_sort_index", "thread_sort_index", "process_labels"}
)


class TraceFormatError(FlextContextError, ValueError):
    """A trace file breaks the format.

    Attributes:
        problems: Every problem found, each naming the event index.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        super().__init__(f"{source} is not a valid trace ({len(problems)} problems): {shown}")


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _bad_duration(value: Any) -> bool:
    return not _number(value) or value < 0


def _check_event(index: int, event: Any, problems: list[str]) -> bool:
    where = f"event {index}"
    if not isinstance(event, Mapping):
        problems.append(f"{where}: not an object")
        return False
    ph = event.get("ph")
    if ph not in _PHASES:
        problems.append(f"{where}: ph {ph!r} is not a known phase")
        return False
    ok = True
    if not isinstance(event.get("name"), str):
        problems.append(f"{where} ({ph}): name must be a string")
        ok = False
    for key in ("pid", "tid"):
        if type(event.get(key)) is not int:
            problems.append(f"{where} ({ph}): {key} must be an integer")
            ok = False
    if "args" in event and not isinstance(event["args"], Mapping):
        problems.append(f"{where} ({ph}): args must be an object")
        ok = False
    if ph == "M":
        if event.get("name") not in _METADATA:
            problems.append(f"{where}: unknown metadata event {event.get('name')!r}")
            ok = False
        elif str(event.get("name")).endswith("_name") and not isinstance(
            (event.get("args") or {}).get("name"), str
        ):
            problems.append(f"{where}: {event.get('name')} needs args.name (a string)")
            ok = False
        return ok
    ts: Any = event.get("ts")
    if not _number(ts) or ts < 0:
        problems.append(f"{where} ({ph}): ts must be a non-negative number of microseconds")
        return False
    if ts > MAX_TS_US:
        problems.append(f"{where} ({ph}): ts {ts} is too large for microseconds (ns?)")
        ok = False
    if ph == "X" and _bad_duration(event.get("dur")):
        problems.append(f"{where} (X): dur must be a non-negative number of microseconds")
        ok = False
    if ph in ("b", "e"):
        if not isinstance(event.get("cat"), str):
            problems.append(f"{where} ({ph}): cat must be a string")
            ok = False
        if type(event.get("id")) not in (int, str):
            problems.append(f"{where} ({ph}): id must be a string or an integer")
            ok = False
    return ok


def trace_problems(data: Any) -> list[str]:
    """Return every format problem of a loaded trace (empty when it is valid)."""
    problems: list[str] = []
    if isinstance(data, Mapping):
        events = data.get("traceEvents")
        unit = data.get("displayTimeUnit", "ms")
        if unit not in ("ms", "ns"):
            problems.append(f"displayTimeUnit must be 'ms' or 'ns', got {unit!r}")
    else:
        events = data
    if not isinstance(events, list):
        return [*problems, "traceEvents must be a list of events"]
    complete: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    last_ts: dict[tuple[Any, ...], tuple[float, int]] = {}
    open_async: dict[tuple[Any, ...], list[tuple[str, int]]] = {}
    for index, event in enumerate(events):
        if not _check_event(index, event, problems) or event["ph"] == "M":
            continue
        ph = event["ph"]
        if ph in ("b", "e"):
            track: tuple[Any, ...] = ("async", event["pid"], event["cat"], event["id"])
        else:
            track = ("thread", event["pid"], event["tid"])
        previous = last_ts.get(track)
        if previous is not None and event["ts"] < previous[0]:
            problems.append(
                f"event {index} ({ph}): ts {event['ts']} goes back in time on its track "
                f"(event {previous[1]} is at {previous[0]})"
            )
        last_ts[track] = (event["ts"], index)
        if ph == "X":
            key = (event["pid"], event["tid"])
            complete.setdefault(key, []).append((event["ts"], event["dur"], index))
        elif ph == "b":
            open_async.setdefault(track, []).append((event["name"], index))
        elif ph == "e":
            stack = open_async.get(track)
            if not stack:
                problems.append(f"event {index} (e): no open b event on its track")
            elif stack[-1][0] != event["name"]:
                problems.append(
                    f"event {index} (e): closes {event['name']!r} but the innermost open b "
                    f"(event {stack[-1][1]}) is {stack[-1][0]!r}"
                )
                stack.pop()
            else:
                stack.pop()
    for stack in open_async.values():
        problems.extend(f"event {index} (b): never closed by an e event" for _, index in stack)
    for slices in complete.values():
        _check_nesting(slices, problems)
    return problems


def _check_nesting(slices: list[tuple[float, float, int]], problems: list[str]) -> None:
    # Sorted by start, longest first on ties: a proper nesting is then a stack.
    stack: list[tuple[float, int]] = []  # (end, index)
    for ts, dur, index in sorted(slices, key=lambda s: (s[0], -s[1])):
        while stack and stack[-1][0] <= ts + _EPSILON_US:
            stack.pop()
        end = ts + dur
        if stack and end > stack[-1][0] + _EPSILON_US:
            problems.append(
                f"event {index} (X): overlaps event {stack[-1][1]} partially on its thread "
                "(starts inside it, ends after it)"
            )
            continue
        stack.append((end, index))


def check_trace(data: Any, source: str = "trace") -> None:
    """Raise `TraceFormatError` listing every problem of a loaded trace."""
    problems = trace_problems(data)
    if problems:
        raise TraceFormatError(source, problems)


def check_trace_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check a trace file; return its object.

    Raises:
        TraceFormatError: The file is not valid JSON or breaks the format.
    """
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError) as exc:
        raise TraceFormatError(os.fspath(path), [f"cannot be read as JSON: {exc}"]) from exc
    check_trace(data, os.fspath(path))
    return data if isinstance(data, dict) else {"traceEvents": data}
