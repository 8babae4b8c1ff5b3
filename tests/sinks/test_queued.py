"""QueuedSink: off the caller's path, bounded, counted drops, flush, exit, fork; sink isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from flext_ctx_aspects import timed
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import QueuedSink, StatsSink, add_sink
from flext_ctx_aspects.testing import RecordingSink


def record(index: int = 0) -> OperationRecord:
    return OperationRecord.make(f"op{index}", duration_ns=10)


class Gate:
    """A sink that blocks until released: the slowest possible sink."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.records: list[OperationRecord] = []

    def emit(self, record: OperationRecord) -> None:
        self.release.wait()
        self.records.append(record)


class Raising:
    def emit(self, record: OperationRecord) -> None:
        raise RuntimeError("sink broke")


def test_records_reach_the_wrapped_sink_on_another_thread() -> None:
    threads: list[str] = []

    class Where:
        def emit(self, record: OperationRecord) -> None:
            threads.append(threading.current_thread().name)

    queued = QueuedSink(Where())
    for index in range(100):
        queued.emit(record(index))
    assert queued.flush()
    assert len(threads) == 100
    assert threading.current_thread().name not in threads
    queued.close()


def test_overload_drops_and_counts_without_blocking() -> None:
    gate = Gate()
    queued = QueuedSink(gate, capacity=100)
    started = time.perf_counter()
    for index in range(10_000):
        queued.emit(record(index))
    elapsed = time.perf_counter() - started
    # 10,000 emits into a sink that never returns: none may wait for it.
    assert elapsed < 2.0
    assert queued.pending <= 100
    assert 9_800 <= queued.dropped <= 9_900
    gate.release.set()
    assert queued.flush()
    assert len(gate.records) + queued.dropped == 10_000
    queued.close()


def test_concurrent_producers_never_lose_a_drop_count() -> None:
    gate = Gate()
    queued = QueuedSink(gate, capacity=10)
    barrier = threading.Barrier(8)

    def produce() -> None:
        barrier.wait()
        for index in range(5000):
            queued.emit(record(index))

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gate.release.set()
    queued.flush()
    assert len(gate.records) + queued.dropped == 40_000
    # The capacity, plus one overshoot per producer, plus the record the flusher holds.
    assert len(gate.records) <= 10 + 8 + 1
    queued.close()


def test_a_raising_and_a_slow_sink_affect_neither_the_caller_nor_the_other_sinks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    slow = QueuedSink(gate, capacity=1000)
    raising = QueuedSink(Raising())
    stats = StatsSink()
    direct = RecordingSink()

    @timed(name="isolated")
    def work(x: int) -> int:
        return x * 2

    with add_sink(raising), add_sink(slow), add_sink(stats), add_sink(direct), add_sink(Raising()):
        started = time.perf_counter()
        results = [work(i) for i in range(500)]
        elapsed = time.perf_counter() - started
    assert results == [i * 2 for i in range(500)]
    assert elapsed < 2.0  # the gate never opened while the caller ran
    assert stats.get("isolated").count == 500  # type: ignore[union-attr]
    assert len(direct.records) == 500
    gate.release.set()
    slow.flush()
    raising.flush()
    assert len(gate.records) == 500
    assert "sink broke" in caplog.text or "RuntimeError" in caplog.text
    slow.close()
    raising.close()


def test_close_hands_over_and_closes_the_wrapped_sink() -> None:
    closed = []

    class Closable(RecordingSink):
        def close(self) -> None:
            closed.append(len(self.records))

    queued = QueuedSink(Closable())
    for index in range(10):
        queued.emit(record(index))
    queued.close()
    assert closed == [10]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="capacity"):
        QueuedSink(RecordingSink(), capacity=0)
    with pytest.raises(ConfigError, match="interval"):
        QueuedSink(RecordingSink(), interval="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="emit"):
        QueuedSink(object())  # type: ignore[arg-type]
    assert QueuedSink(StatsSink()).needs == StatsSink.needs


def test_queued_records_are_written_at_interpreter_exit(tmp_path: object) -> None:
    code = """
import json, sys, time
from flext_ctx_aspects.sinks import QueuedSink
from flext_ctx_aspects.records import OperationRecord
class FileSink:
    def __init__(self): self.n = 0
    def emit(self, r):
        time.sleep(0.001); self.n += 1
    def close(self): print(json.dumps(self.n))
q = QueuedSink(FileSink(), interval=60)
for i in range(50):
    q.emit(OperationRecord.make("op", duration_ns=1))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == 50


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_an_empty_queue_and_its_own_flusher() -> None:
    gate = Gate()
    queued = QueuedSink(gate)
    queued.emit(record(1))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        pending = queued.pending
        gate.release.set()
        queued.emit(record(2))
        queued.flush()
        os.write(write, json.dumps([pending, [r.name for r in gate.records]]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        pending, names = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert pending == 0
    assert names == ["op2"]
    gate.release.set()
    queued.close()
    assert [r.name for r in gate.records] == ["op1"]
