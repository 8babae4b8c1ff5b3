"""The sinks: what a finished operation costs once somebody listens. Per record / per call.

Group ``sinks-emit`` (per record, one prebuilt ``OperationRecord``): ``bare`` is a list's
``append`` (the cheapest conceivable sink); ``stats_emit`` is ``StatsSink.emit``
(aggregation under a lock, reservoir sample); ``capture_emit`` is the sink behind
``capture_operations()``.

Group ``sinks-timed`` (per call of a ``@timed`` function): ``bare`` undecorated; ``no_sink``
(the default: no record is built); ``list_sink`` (record built, handed to a list's append);
``stats`` (``StatsSink`` registered); ``capture`` (inside ``capture_operations()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flext_ctx_aspects import timed
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import StatsSink, add_sink
from flext_ctx_aspects.testing import RecordingSink, capture_operations
from kit import CollectingSink, call_loop

CALLS = 1000


def work(x: int) -> int:
    return x


def _one_record() -> OperationRecord:
    with capture_operations() as captured:
        timed(name="bench.record")(work)(1)
    return captured[0]


@pytest.mark.benchmark(group="sinks-emit")
@pytest.mark.variants("bare", "stats_emit", "capture_emit")
def test_sink_emit(bench: Any, variant: str) -> None:
    record = _one_record()
    if variant == "bare":
        sink: Any = CollectingSink()
        out: Any = sink.records
    elif variant == "stats_emit":
        sink = StatsSink()
        out = None
    else:
        sink = RecordingSink()
        out = sink.records
    emit = sink.emit
    times = range(CALLS)
    clear = out.clear if out is not None else None

    def loop() -> None:
        for _ in times:
            emit(record)
        if clear is not None:
            clear()

    bench.per_call(loop, CALLS, unit="record")
    if variant == "stats_emit":
        stats = sink.get("bench.record")
        assert stats is not None
        assert stats.count > 0


@pytest.fixture
def listening(request: pytest.FixtureRequest) -> Iterator[Any]:
    # Registers what the variant needs for the whole benchmark; yields what to empty.
    variant = request.node.callspec.params["variant"]
    if variant == "list_sink":
        sink = CollectingSink()
        with add_sink(sink):
            yield sink.records
    elif variant == "stats":
        with add_sink(StatsSink()):
            yield None
    elif variant == "capture":
        with capture_operations() as captured:
            yield captured
    else:
        yield None


@pytest.mark.benchmark(group="sinks-timed")
@pytest.mark.variants("bare", "no_sink", "list_sink", "stats", "capture")
def test_sink_timed(bench: Any, listening: Any, variant: str) -> None:
    func: Any = work if variant == "bare" else timed(work)
    assert func(1) == 1
    if listening is not None:
        assert len(listening) == 1
        listening.clear()
    # Not paired: each variant needs its own sinks registered for the whole benchmark.
    bench.per_call(call_loop(func, CALLS, listening), CALLS)
