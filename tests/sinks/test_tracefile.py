"""TraceFileSink: valid Chrome Trace Event / Perfetto JSON for every callable kind; the validator."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext, service, timed, with_correlation
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.sinks import TraceFileSink, add_sink, merge_trace_files
from flext_ctx_aspects.sinks._tracecheck import (
    TraceFormatError,
    check_trace,
    check_trace_file,
    trace_problems,
)


@timed(name="leaf")
def leaf() -> int:
    return 1


@timed(name="parent")
def parent() -> int:
    FlextContext.Performance.add_operation_metadata("rows", 2)
    return leaf() + leaf()


@timed(name="gen", measure_body=True)
def gen(n: int) -> Iterator[int]:
    yield from range(n)


@timed(name="coro")
async def coro(i: int) -> int:
    await asyncio.sleep(0.001 * (i % 3))
    return leaf()


@timed(name="agen")
async def agen() -> AsyncIterator[int]:
    for i in range(3):
        await asyncio.sleep(0)
        yield i


def produce(sink: TraceFileSink) -> None:
    with add_sink(sink):

        @with_correlation
        @service("tracer", "1")
        def run() -> None:
            parent()
            # Two generators interleaved with other calls on one thread.
            first, second = gen(3), gen(3)
            next(first)
            next(second)
            parent()
            list(first)
            list(second)

        run()
        threads = [threading.Thread(target=run, name=f"worker-{i}") for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        async def main() -> None:
            async def consume() -> None:
                async for _ in agen():
                    await coro(1)

            await asyncio.gather(*(coro(i) for i in range(20)), consume(), consume())

        asyncio.run(main())


@pytest.fixture
def trace(tmp_path: Path) -> dict[str, Any]:
    sink = TraceFileSink(tmp_path / "trace-{pid}.json")
    produce(sink)
    written = sink.write()
    assert written == str(tmp_path / f"trace-{os.getpid()}.json")
    return check_trace_file(written)


def test_the_file_is_valid_and_holds_every_kind(trace: dict[str, Any]) -> None:
    events = trace["traceEvents"]
    phases: dict[str, set[str]] = {}
    for event in events:
        phases.setdefault(event["ph"], set()).add(event["name"])
    assert {"process_name", "thread_name"} <= phases["M"]
    assert {"parent", "leaf"} <= phases["X"]
    assert {"coro", "agen", "gen"} <= phases["b"]
    assert phases["b"] == phases["e"]
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {"MainThread", "worker-0", "worker-1", "worker-2"} <= names
    assert trace["otherData"]["dropped"] == 0


def test_complete_events_nest_and_carry_context(trace: dict[str, Any]) -> None:
    parents = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["name"] == "parent"]
    assert len(parents) == 8
    for event in parents:
        args = event["args"]
        assert args["service_name"] == "tracer"
        assert len(args["correlation_id"]) > 8
        assert len(args["trace_id"]) == 32
        assert args["metadata"] == {"rows": 2}
        leaves = [
            e for e in trace["traceEvents"]
            if e["ph"] == "X" and e["name"] == "leaf" and e["tid"] == event["tid"]
            and event["ts"] <= e["ts"] <= event["ts"] + event["dur"]
        ]  # fmt: skip
        assert len(leaves) >= 2


def test_generators_carry_body_time(trace: dict[str, Any]) -> None:
    gens = [e for e in trace["traceEvents"] if e["ph"] == "b" and e["name"] == "gen"]
    assert len(gens) == 8
    assert all(e["args"]["body_duration_ns"] >= 0 for e in gens)


def test_timestamps_are_microseconds_from_one_origin(trace: dict[str, Any]) -> None:
    stamps = [e["ts"] for e in trace["traceEvents"] if "ts" in e]
    assert min(stamps) >= 0
    origin = trace["otherData"]["origin_unix_ns"]
    assert origin > 1.6e18
    # Microseconds, not nanoseconds: no stamp lies beyond the time elapsed since the origin
    # (the process's, which may be long ago in a long test session), counted in microseconds.
    # A second of slack: record wall times follow a clock resynced every second.
    elapsed_us = (time.time_ns() - origin) / 1000
    assert max(stamps) <= elapsed_us + 1e6
    assert max(stamps) - min(stamps) < 60e6  # this test's events: well within a minute


def test_buffer_is_bounded_and_counts_drops(tmp_path: Path) -> None:
    sink = TraceFileSink(capacity=5)
    with add_sink(sink):
        for _ in range(20):
            leaf()
    assert sink.dropped == 15
    data = sink.events()
    check_trace(data)
    assert data["otherData"]["dropped"] == 15
    with pytest.raises(ConfigError, match="path"):
        sink.write()
    with pytest.raises(ConfigError, match="capacity"):
        TraceFileSink(capacity=0)
    with pytest.raises(ConfigError, match="write_at_exit"):
        TraceFileSink(write_at_exit=True)


def test_merge_of_several_processes(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from flext_ctx_aspects import timed\nfrom flext_ctx_aspects.sinks import add_sink\n"
        "from flext_ctx_aspects.sinks import TraceFileSink\n"
        "sink = TraceFileSink(sys.argv[1], write_at_exit=True)\n"
        "add_sink(sink)\n"
        "@timed(name='child.work')\n"
        "def work(): return sum(range(1000))\n"
        "for _ in range(10): work()\n"
    )
    paths = []
    for index in range(3):
        path = tmp_path / f"p{index}-{{pid}}.json"
        subprocess.run([sys.executable, "-c", code, str(path)], check=True)
        paths.extend(tmp_path.glob(f"p{index}-*.json"))
    assert len(paths) == 3
    merged = merge_trace_files(paths, tmp_path / "merged.json")
    check_trace_file(tmp_path / "merged.json")
    assert merged == json.loads((tmp_path / "merged.json").read_text())
    process_names = [e for e in merged["traceEvents"] if e["name"] == "process_name"]
    assert len({e["pid"] for e in process_names}) == 3
    assert sum(e["ph"] == "X" for e in merged["traceEvents"]) == 30


def test_merge_renumbers_a_reused_pid(tmp_path: Path, trace: dict[str, Any]) -> None:
    (tmp_path / "a.json").write_text(json.dumps(trace))
    (tmp_path / "b.json").write_text(json.dumps(trace))
    merged = merge_trace_files([tmp_path / "a.json", tmp_path / "b.json"])
    check_trace(merged)
    assert len({e["pid"] for e in merged["traceEvents"]}) == 2


def _breaks(trace: dict[str, Any]) -> list[tuple[str, Any]]:
    def first(ph: str) -> int:
        return next(i for i, e in enumerate(trace["traceEvents"]) if e["ph"] == ph)

    def mutate(fn: Any) -> Any:
        broken = copy.deepcopy(trace)
        fn(broken["traceEvents"])
        return broken

    x, b, e = first("X"), first("b"), first("e")
    return [
        ("not a list", {"traceEvents": {}}),
        ("unknown phase", mutate(lambda ev: ev[x].update(ph="Q"))),
        ("missing name", mutate(lambda ev: ev[x].pop("name"))),
        ("string pid", mutate(lambda ev: ev[x].update(pid="1"))),
        ("negative ts", mutate(lambda ev: ev[x].update(ts=-1))),
        ("nanoseconds", mutate(lambda ev: ev[x].update(ts=ev[x]["ts"] * 1e9 + 1e13))),
        ("missing dur", mutate(lambda ev: ev[x].pop("dur"))),
        ("NaN dur", mutate(lambda ev: ev[x].update(dur=float("nan")))),
        ("args not object", mutate(lambda ev: ev[x].update(args=[1]))),
        ("b without id", mutate(lambda ev: ev[b].pop("id"))),
        ("b without cat", mutate(lambda ev: ev[b].pop("cat"))),
        ("unmatched e", mutate(lambda ev: ev.append(dict(ev[e], id="nowhere")))),
        ("unclosed b", mutate(lambda ev: ev.append(dict(ev[b], id="open", ts=ev[b]["ts"])))),
        ("e of another name", mutate(lambda ev: ev[e].update(name="other"))),
        ("metadata without name", mutate(lambda ev: ev[0].update(args={}))),
        ("bad unit", dict(copy.deepcopy(trace), displayTimeUnit="s")),
        ("time goes back", mutate(lambda ev: ev.append(dict(ev[x], ts=0.0, dur=0.0)))),
        (
            "partial overlap",
            mutate(
                lambda ev: ev.append(
                    dict(
                        ev[x],
                        ts=ev[x]["ts"] + ev[x]["dur"] / 2 + 0.01,
                        dur=ev[x]["dur"] + 10,
                        name="overlap",
                    )
                )
            ),
        ),
    ]


def test_the_validator_rejects_broken_files(trace: dict[str, Any], tmp_path: Path) -> None:
    assert trace_problems(trace) == []
    for label, broken in _breaks(trace):
        problems = trace_problems(broken)
        assert problems, label
        with pytest.raises(TraceFormatError):
            check_trace(broken, label)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TraceFormatError, match="JSON"):
        check_trace_file(tmp_path / "bad.json")


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_buffers_only_its_own_records(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    sink = TraceFileSink(tmp_path / "f-{pid}.json")
    with add_sink(sink):
        leaf()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            leaf()
            leaf()
            sink.write()
            os._exit(0)
        os.waitpid(pid, 0)
    child = check_trace_file(tmp_path / f"f-{pid}.json")
    assert sum(e["ph"] == "X" for e in child["traceEvents"]) == 2
    assert len(sink._entries) == 1
