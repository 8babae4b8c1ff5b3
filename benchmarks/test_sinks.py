"""The sinks: what a finished operation costs once somebody listens. Per record / per call.

Group ``sinks-emit`` (per record, one prebuilt ``OperationRecord``): ``bare`` is a list's
``append`` (the cheapest conceivable sink); ``noop`` a function doing nothing (the call
itself); ``stats_emit`` is ``StatsSink.emit`` (per-thread shard, exact counters, DDSketch
bin); ``floor_emit`` the same aggregation hand-written into one dict of digests (no shard);
``capture_emit`` is the sink behind ``capture_operations()``.

Group ``sinks-stats`` (per call of a function, with its statistics kept): ``timed_stats``
(``@timed`` + a registered ``StatsSink``), ``fused_stats`` (the four-aspect stack + a
``StatsSink``), ``floor_stats`` (a hand-written wrapper doing the same job: the timed floor's
context variable and clock reads, then the same aggregation inline), ``otel_batch`` (the
OpenTelemetry SDK span decorator with a ``BatchSpanProcessor`` into an exporter that drops
the spans: what OpenTelemetry users run), ``timed`` (no sink) and ``timed_records`` (a
list's append registered per round: the difference of the two, paired, is the record build +
dispatch).

Group ``sinks-queue`` (per record): ``queued`` is ``QueuedSink.emit`` into a sink doing
nothing, flushed at the end of each round, the flusher thread's CPU time included (the clock
is the process's CPU time); ``bare`` a list's append. records/s = 1e9 / ns per record.

Group ``sinks-memory``: ``StatsSink`` memory per name over many recorded calls (10 million in
full mode), measured with ``tracemalloc``: bounded (<= 32 KB) and flat.

Group ``sinks-timed`` (per call of a ``@timed`` function): ``bare`` undecorated; ``no_sink``
(the default: no record is built); ``list_sink`` (record built, handed to a list's append);
``stats`` (``StatsSink`` registered); ``capture`` (inside ``capture_operations()``).
"""

from __future__ import annotations

import atexit
import contextvars
import math
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flext_ctx_aspects import timed
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import QueuedSink, StatsSink, add_sink, remove_sink
from flext_ctx_aspects.sinks._sketch import MULTIPLIER, Digest
from flext_ctx_aspects.testing import RecordingSink, capture_operations
from kit import ASPECTS, CollectingSink, call_loop

CALLS = 1000


def work(x: int) -> int:
    return x


def _one_record() -> OperationRecord:
    with capture_operations() as captured:
        timed(name="bench.record")(work)(1)
    return captured[0]


def _noop(record: Any) -> None:
    return None


def floor_emitter() -> tuple[Callable[[Any], None], dict[str, Digest]]:
    """StatsSink.emit's job hand-written: one dict of digests, no per-thread shard."""
    digests: dict[str, Digest] = {}
    log2, ceil = math.log2, math.ceil

    def emit(record: Any) -> None:
        name = record.name
        digest = digests.get(name)
        if digest is None:
            digest = digests[name] = Digest()
        duration = record.duration_ns
        digest.count += 1
        digest.total_ns += duration
        if duration < digest.min_ns:  # noqa: PLR1730 - min() costs a call per record
            digest.min_ns = duration
        if duration > digest.max_ns:  # noqa: PLR1730 - as in StatsSink.emit
            digest.max_ns = duration
        if record.status != "ok":
            digest.errors += 1
        if duration > 0:
            key = ceil(log2(duration) * MULTIPLIER)
            index = key - digest.offset
            bins = digest.bins
            if 0 <= index < len(bins):
                bins[index] += 1
            else:
                digest.add_key(key, 1)
        else:
            digest.zero_count += 1

    return emit, digests


@pytest.mark.benchmark(group="sinks-emit")
@pytest.mark.variants("bare", "noop", "stats_emit", "floor_emit", "capture_emit")
def test_sink_emit(bench: Any, variant: str) -> None:
    record = _one_record()
    sinks: dict[str, Any] = {}

    def build(variant: str) -> tuple[Any, int]:
        out: Any = None
        if variant == "bare":
            sink: Any = CollectingSink()
            emit = sink.emit
            out = sink.records
        elif variant == "noop":
            emit = _noop
        elif variant == "stats_emit":
            sink = sinks[variant] = StatsSink()
            emit = sink.emit
        elif variant == "floor_emit":
            emit, _digests = floor_emitter()
        else:
            sink = RecordingSink()
            emit = sink.emit
            out = sink.records
        times = range(CALLS)
        clear = out.clear if out is not None else None

        def loop() -> None:
            for _ in times:
                emit(record)
            if clear is not None:
                clear()

        return loop, CALLS

    bench.measure(variant, build, unit="record")
    if variant == "stats_emit":
        stats = sinks[variant].get("bench.record")
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


# --- statistics per call: @timed + StatsSink vs its floor and vs OpenTelemetry --------------

_floor_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bench.floor_stats", default=None
)


def stats_floor(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The same job as @timed + StatsSink, hand-written: clock, context variable, aggregation."""
    set_op, reset_op = _floor_operation.set, _floor_operation.reset
    clock = time.perf_counter_ns
    digests: dict[str, Digest] = {}
    log2, ceil = math.log2, math.ceil

    def record(duration: int, *, failed: bool) -> None:
        digest = digests.get(name)
        if digest is None:
            digest = digests[name] = Digest()
        digest.count += 1
        digest.total_ns += duration
        if duration < digest.min_ns:  # noqa: PLR1730 - min() costs a call per record
            digest.min_ns = duration
        if duration > digest.max_ns:  # noqa: PLR1730 - as in StatsSink.emit
            digest.max_ns = duration
        if failed:
            digest.errors += 1
        if duration > 0:
            key = ceil(log2(duration) * MULTIPLIER)
            index = key - digest.offset
            bins = digest.bins
            if 0 <= index < len(bins):
                bins[index] += 1
            else:
                digest.add_key(key, 1)
        else:
            digest.zero_count += 1

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = set_op(name)
        start = clock()
        try:
            result = func(*args, **kwargs)
        except BaseException:
            end = clock()
            reset_op(token)
            record(end - start, failed=True)
            raise
        end = clock()
        reset_op(token)
        record(end - start, failed=False)
        return result

    return wrapper


_otel: dict[str, Any] = {}


def otel_batch(func: Callable[..., Any]) -> Callable[..., Any]:
    """The OpenTelemetry SDK span decorator with a BatchSpanProcessor (one per process)."""
    if "tracer" not in _otel:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Dropping(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropping()))
        atexit.register(provider.shutdown)
        _otel["tracer"] = provider.get_tracer("flext-bench")
    decorated: Callable[..., Any] = _otel["tracer"].start_as_current_span("op")(func)
    return decorated


STATS_CALLS = 1000
OTEL_CALLS = 200


def _with_sink(
    func: Callable[[int], object],
    calls: int,
    sink: Any,
    after_round: Callable[[], None] = lambda: None,
) -> Callable[[], None]:
    # The sink is registered for the round only, so companion rounds of other variants run
    # without it; registering costs ~1 us per round, 1 ns per call.
    times = range(calls)

    def loop() -> None:
        add_sink(sink)
        try:
            for _ in times:
                func(1)
        finally:
            remove_sink(sink)
            after_round()

    return loop


def _with_records(func: Callable[[int], object], calls: int) -> Callable[[], None]:
    # As _with_sink, with the cheapest record sink (a list's append), emptied each round.
    sink = CollectingSink()
    return _with_sink(func, calls, sink, after_round=sink.records.clear)


@pytest.mark.benchmark(group="sinks-stats")
@pytest.mark.variants(
    "bare", "timed_stats", "floor_stats", "fused_stats", "otel_batch", "timed", "timed_records"
)
def test_stats_per_call(bench: Any, variant: str) -> None:
    def build(variant: str) -> tuple[Any, int]:
        if variant == "bare":
            return call_loop(work, STATS_CALLS), STATS_CALLS
        if variant == "timed":  # no sink: the reference of record build + dispatch
            return call_loop(timed(work), STATS_CALLS), STATS_CALLS
        if variant == "timed_records":
            return _with_records(timed(work), STATS_CALLS), STATS_CALLS
        if variant == "floor_stats":
            func = stats_floor(work, "bench.work")
            assert func(1) == 1
            return call_loop(func, STATS_CALLS), STATS_CALLS
        if variant == "otel_batch":
            func = otel_batch(work)
            assert func(1) == 1
            return call_loop(func, OTEL_CALLS), OTEL_CALLS
        func = timed(work) if variant == "timed_stats" else ASPECTS["fused"](work)
        assert func(1) == 1
        return _with_sink(func, STATS_CALLS, StatsSink()), STATS_CALLS

    bench.measure(variant, build)


# --- the queue -------------------------------------------------------------------------------


class _Discard:
    def emit(self, record: Any) -> None:
        return None


@pytest.mark.benchmark(group="sinks-queue")
@pytest.mark.variants("bare", "queued")
def test_queue_throughput(bench: Any, variant: str) -> None:
    record = _one_record()
    queues: list[QueuedSink] = []

    def build(variant: str) -> tuple[Any, int]:
        times = range(CALLS)
        if variant == "bare":
            sink = CollectingSink()
            emit, clear = sink.emit, sink.records.clear

            def loop() -> None:
                for _ in times:
                    emit(record)
                clear()

            return loop, CALLS
        queued = QueuedSink(_Discard(), capacity=4 * CALLS)
        queues.append(queued)
        emit, flush = queued.emit, queued.flush

        def queued_loop() -> None:
            for _ in times:
                emit(record)
            assert flush()

        return queued_loop, CALLS

    bench.measure(variant, build, unit="record")
    for queued in queues:
        assert queued.dropped == 0
        queued.close()


# --- memory per name ---------------------------------------------------------------------------


@pytest.mark.benchmark(group="sinks-memory")
@pytest.mark.variants("stats_memory")
def test_stats_memory_per_name_is_bounded_and_flat(
    bench: Any, mode: Any, variant: str, request: pytest.FixtureRequest
) -> None:
    # A measurement of memory, not time: once per run (pass 0), not once per pass.
    if not request.node.name.endswith("-p0]"):
        pytest.skip("memory is measured in pass 0 only")
    calls = 10_000_000 if mode.name == "full" else 200_000 if mode.name == "short" else 50_000
    rng = random.Random(7)
    template = _one_record()
    # Durations spread over ~6 decades (lognormal): many distinct bins, the worst case for
    # memory that real workloads reach.
    pool = [
        OperationRecord.make(template.name, duration_ns=max(1, int(rng.lognormvariate(11, 2.5))))
        for _ in range(4096)
    ]
    from flext_ctx_aspects.sinks import _sketch, stats

    # Only what the statistics code allocates counts (pytest, the pool: not). By file, so a
    # thread of an earlier benchmark running statistics code meanwhile counts too: hence the
    # small allowance below, and the allocation sites in the message when it is exceeded.
    only_stats = [
        tracemalloc.Filter(inclusive=True, filename_pattern=stats.__file__),
        tracemalloc.Filter(inclusive=True, filename_pattern=_sketch.__file__),
    ]
    snapshots: list[tracemalloc.Snapshot] = []

    def allocated() -> int:
        snapshot = tracemalloc.take_snapshot().filter_traces(only_stats)
        snapshots[1:] = [snapshot]  # the first one after the warm-up pass, and the last
        return sum(stat.size for stat in snapshot.statistics("filename"))

    chunk = len(pool)
    checkpoints = max(1, calls // chunk // 10)
    tracemalloc.start(4)
    try:
        before = allocated()
        sink = StatsSink()
        emit = sink.emit
        for record in pool:  # every bin the pool reaches exists after this
            emit(record)
        snapshots.clear()
        first = allocated() - before
        samples = []
        done = 0
        while done < calls:
            for record in pool:
                emit(record)
            done += chunk
            if (done // chunk) % checkpoints == 0:
                samples.append(allocated() - before)
    finally:
        tracemalloc.stop()
    digest = sink.digests()["bench.record"]
    assert digest.count == done + chunk
    growth = max(samples, default=first) - first
    bench.benchmark.extra_info.update(
        calls=done, per_name_bytes=first, bins_bytes=digest.nbytes(), growth_bytes=growth,
        samples=samples,
    )  # fmt: skip
    bench.per_call(lambda: None, 1, rounds=1, unit="round")
    # Bounded: the shard, the digest and its bins of one name, after every bin was reached.
    assert first <= 32 * 1024, first
    # Flat: nothing grows with the number of calls. 512 bytes is a few one-off blocks (seen
    # once: 48 bytes, on 3.10 in CI); in full mode a growth of 1 byte per 20,000 calls.
    grown = [str(stat) for stat in snapshots[-1].compare_to(snapshots[0], "traceback")[:3]]
    assert growth <= 512, (samples, grown)
