"""The library's own trouble never reaches user code; records and traces stay whole."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flext_ctx_aspects import (
    FlextContext,
    Settings,
    apply_settings,
    service,
    timed,
    with_correlation,
)
from flext_ctx_aspects._diagnostics import internal_error_counts
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import add_sink
from flext_ctx_aspects.testing import capture_operations


def test_sampling_keeps_or_drops_whole_traces() -> None:
    @with_correlation
    @timed(name="child")
    def child() -> None: ...

    @with_correlation
    @timed(name="root")
    def root() -> None:
        child()
        child()

    apply_settings(Settings(sample_rate=0.5))
    with capture_operations() as ops:
        for _ in range(400):
            root()
    by_trace: dict[str | None, list[str]] = {}
    for op in ops:
        by_trace.setdefault(op.trace_id, []).append(op.name)
    assert 100 < len(by_trace) < 300  # about half the traces
    assert all(sorted(names) == ["child", "child", "root"] for names in by_trace.values())


def test_sampling_of_non_hex_roots_is_decided_once_per_trace() -> None:
    @timed(name="op")
    def op() -> None: ...

    apply_settings(Settings(sample_rate=0.5))
    kept = []
    for index in range(200):
        with (
            FlextContext.Correlation.new_correlation(f"order-{index}"),
            capture_operations() as ops,
        ):
            for _ in range(5):
                op()
        kept.append(len(ops))
    assert set(kept) == {0, 5}


def test_a_reentrant_sink_does_not_recurse() -> None:
    @timed(name="exporter.format")
    def format_record(record: OperationRecord) -> str:
        return record.name

    class ExportingSink:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def emit(self, record: OperationRecord) -> None:
            self.seen.append(format_record(record))  # instrumented code inside emit

    @timed(name="user.call")
    def user_call() -> int:
        return 1

    sink = ExportingSink()
    with add_sink(sink):
        assert user_call() == 1
    assert sink.seen == ["user.call"]
    assert internal_error_counts() == {}


@pytest.mark.parametrize("outer", ["function", "generator"])
@pytest.mark.parametrize("inner", ["function", "generator"])
def test_no_reentrant_record_across_the_record_paths(outer: str, inner: str) -> None:
    # A sync function's record is built by the compiled driver (where built), a generator's
    # by finish(): each path's guard must see the other's.
    def make(kind: str, name: str) -> Any:
        if kind == "function":

            @timed(name=name)
            def plain() -> int:
                return 1

            return plain

        @timed(name=name)
        def steps() -> Any:
            yield 1

        return lambda: sum(steps())

    inner_call = make(inner, "inside.sink")
    outer_call = make(outer, "user.call")

    class Sink:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def emit(self, record: OperationRecord) -> None:
            inner_call()  # instrumented code inside emit
            self.seen.append(record.name)

    sink = Sink()
    with add_sink(sink):
        assert outer_call() == 1
        assert outer_call() == 1
    assert sink.seen == ["user.call", "user.call"]
    assert internal_error_counts() == {}


def test_a_thread_in_a_sink_does_not_mute_the_others() -> None:
    import threading

    @timed(name="op")
    def op() -> int:
        return 1

    entered, release = threading.Event(), threading.Event()
    seen: list[tuple[str, str]] = []

    class SlowSink:
        def emit(self, record: OperationRecord) -> None:
            seen.append((threading.current_thread().name, record.name))
            if threading.current_thread().name == "slow":
                entered.set()
                release.wait(10)

    with add_sink(SlowSink()):
        slow = threading.Thread(target=op, name="slow")
        slow.start()
        assert entered.wait(10)
        fast = threading.Thread(target=op, name="fast")
        fast.start()
        fast.join(10)
        release.set()
        slow.join(10)
    assert sorted(seen) == [("fast", "op"), ("slow", "op")]


def test_a_failure_first_seen_while_logging_fails_is_reported_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingSink:
        def emit(self, record: OperationRecord) -> None:
            raise RuntimeError("sink down")

    class BrokenHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise OSError("disk full")

        def handleError(self, record: logging.LogRecord) -> None:
            raise OSError("disk full")

    @timed(name="op")
    def op() -> None: ...

    logger = logging.getLogger("flext_ctx_aspects")
    broken = BrokenHandler()
    logger.addHandler(broken)
    with add_sink(FailingSink()):
        op()  # the log call fails: not reported yet
        logger.removeHandler(broken)
        with caplog.at_level(logging.ERROR, logger="flext_ctx_aspects"):
            op()
            op()
    reports = [r for r in caplog.records if "FailingSink.emit" in r.getMessage()]
    assert len(reports) == 1


def test_unhashable_or_non_str_metadata_keys_are_dropped_and_reported() -> None:
    @timed(name="op")
    def op() -> str:
        FlextContext.Performance.add_operation_metadata(["k"], 1)  # type: ignore[arg-type]
        FlextContext.Performance.add_operation_metadata(7, 1)  # type: ignore[arg-type]
        FlextContext.Performance.add_operation_metadata("ok", 1)
        return "done"

    with capture_operations() as ops:
        assert op() == "done"
    assert dict(ops[0].metadata) == {"ok": 1}
    assert internal_error_counts()


@pytest.mark.parametrize("bad", ["café", "x" * 5000, "", "a\r\nb"])
def test_service_decorator_refuses_what_service_context_refuses(bad: str) -> None:
    with pytest.raises(InvalidValueError):
        FlextContext.Service.service_context(bad)
    with pytest.raises(InvalidValueError):
        service(bad)


def test_service_decorator_strips_like_service_context() -> None:
    @service(" padded ")
    def name() -> str | None:
        return FlextContext.Service.get_service_name()

    with FlextContext.Service.service_context(" padded "):
        from_context = FlextContext.Service.get_service_name()
    assert name() == from_context == "padded"


@pytest.mark.parametrize(
    "generator",
    [lambda: None, lambda: "bad id\n", lambda: "x" * 500],
    ids=["None", "newline", "long"],
)
def test_a_bad_id_generator_never_puts_a_bad_id_in_the_context(generator: object) -> None:
    apply_settings(Settings(id_generator=generator))  # type: ignore[arg-type]

    @with_correlation
    @timed(name="op")
    def op() -> dict[str, str]:
        return FlextContext.Serialization.get_correlation_context()

    with capture_operations() as ops:
        headers = op()
        request_id = FlextContext.Utilities.ensure_correlation_id()
        FlextContext.Utilities.clear_context()
    assert len(headers["X-Correlation-Id"]) == 32  # a generated id took the bad one's place
    assert ops[0].correlation_id == headers["X-Correlation-Id"]
    assert len(request_id) == 32
    assert any("id generator" in where for where, _ in internal_error_counts())


def test_records_do_not_change_after_emit() -> None:
    import asyncio

    async def late() -> None:
        await asyncio.sleep(0.01)
        FlextContext.Performance.add_operation_metadata("late", True)

    tasks: list[asyncio.Task[None]] = []

    @timed(name="op")
    async def op() -> None:
        FlextContext.Performance.add_operation_metadata("early", True)
        tasks.append(asyncio.create_task(late()))

    async def main() -> None:
        await op()
        await asyncio.gather(*tasks)

    with capture_operations() as ops:
        asyncio.run(main())
    assert dict(ops[0].metadata) == {"early": True}


def test_sinks_that_read_only_name_duration_and_status_get_no_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flext_ctx_aspects import _emit, _engine
    from flext_ctx_aspects.sinks import StatsSink

    built: list[object] = []
    real_new = _emit._new_record
    monkeypatch.setattr(_emit, "_new_record", lambda *a: built.append(a) or real_new(*a))

    def body(fail: bool = False) -> None:
        if fail:
            raise ValueError

    # finish() is what is counted here: the Python driver calls it (the compiled one builds
    # records itself; tests/test_native.py compares the two).
    previous = _engine.use_compiled_drivers(enabled=False)
    try:
        op = timed(name="op")(body)
    finally:
        _engine.use_compiled_drivers(enabled=previous)

    stats = StatsSink()
    with add_sink(stats):
        op()
        with pytest.raises(ValueError):
            op(fail=True)
        assert built == []  # statistics alone: fed by observe(), no record built
        with capture_operations() as ops:  # a sink that wants whole records
            op()
        assert len(built) == 1
        assert [o.name for o in ops] == ["op"]
    summary = stats.get("op")
    assert summary is not None
    assert (summary.count, summary.errors) == (3, 1)


def test_a_failing_observer_is_reported_and_the_others_still_run() -> None:
    from flext_ctx_aspects.sinks import StatsSink

    class BrokenObserver:
        needs = frozenset({"name"})

        def emit(self, record: OperationRecord) -> None:  # pragma: no cover - light path
            raise AssertionError

        def observe(self, name: str, duration: int, failed: bool) -> None:
            raise RuntimeError("observer down")

    @timed(name="op")
    def op() -> int:
        return 1

    stats = StatsSink()
    with add_sink(BrokenObserver()), add_sink(stats):
        assert op() == 1
    assert stats.get("op") is not None
    assert any("BrokenObserver.observe" in where for where, _ in internal_error_counts())


class _UnguardedObserver:
    """An observer the drivers call directly (light, runs no user code), optionally broken."""

    needs = frozenset({"name", "duration_ns", "status"})
    runs_user_code = False

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.seen: list[tuple[str, bool]] = []
        self.durations: list[int] = []

    def emit(self, record: OperationRecord) -> None:  # pragma: no cover - light path
        raise AssertionError

    def observe(self, name: str, duration: int, failed: bool) -> None:
        if self.broken:
            raise RuntimeError("observer down")
        self.durations.append(duration)
        self.seen.append((name, failed))


@pytest.mark.parametrize("stack", ["timed", "fused"])
def test_the_drivers_feed_a_lone_observer_directly_and_survive_it(stack: str) -> None:
    from flext_ctx_aspects import _emit

    def body(fail: bool = False) -> int:
        if fail:
            raise ValueError("body")
        return 1

    op = timed(name="op")(body)
    if stack == "fused":
        op = with_correlation(op)
    observer = _UnguardedObserver()
    with add_sink(observer):
        assert _emit.direct[0] == observer.observe
        assert op() == 1
        with pytest.raises(ValueError, match="body"):
            op(fail=True)
    assert _emit.direct[0] is None
    assert observer.seen == [("op", False), ("op", True)]
    assert all(type(d) is int and d >= 0 for d in observer.durations)

    broken = _UnguardedObserver(broken=True)
    before = sum(
        n for (where, _), n in internal_error_counts().items() if "_UnguardedObserver" in where
    )
    with add_sink(broken):
        assert op() == 1
        with pytest.raises(ValueError, match="body"):  # the body's error, not the observer's
            op(fail=True)
    after = sum(
        n for (where, _), n in internal_error_counts().items() if "_UnguardedObserver" in where
    )
    assert after == before + 2


def test_filters_still_apply_when_a_lone_observer_listens() -> None:
    from flext_ctx_aspects import _emit

    observer = _UnguardedObserver()
    own_filter = timed(name="slow-only", min_duration_ms=50)(lambda: 1)
    plain = timed(name="plain")(lambda: 1)
    with add_sink(observer):
        own_filter()  # its own min_duration: through finish(), filtered
        _emit.configure_filters(1.0, 10**9)
        try:
            assert _emit.direct[0] is None  # a process-wide filter: no direct path
            plain()
        finally:
            _emit.configure_filters(1.0, 0)
        assert _emit.direct[0] == observer.observe
        plain()
    assert observer.seen == [("plain", False)]


def test_a_light_observer_that_runs_instrumented_code_does_not_recurse() -> None:
    @timed(name="exporter.count")
    def count(name: str) -> int:
        return len(name)

    class CountingObserver:
        needs = frozenset({"name", "duration_ns"})  # light, but runs user code: guarded

        def __init__(self) -> None:
            self.names: list[str] = []

        def emit(self, record: OperationRecord) -> None:  # pragma: no cover - light path
            raise AssertionError

        def observe(self, name: str, duration: int, failed: bool) -> None:
            count(name)
            self.names.append(name)

    @timed(name="user.call")
    def user_call() -> int:
        return 1

    observer = CountingObserver()
    with add_sink(observer):
        assert user_call() == 1
    assert observer.names == ["user.call"]
