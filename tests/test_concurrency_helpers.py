"""Threads and executors carry the submitter's context in, and nothing back out."""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext, _state
from flext_ctx_aspects.concurrency import (
    ContextExecutor,
    carry_context,
    default_executor,
    run_in_executor,
    shutdown_default_executor,
    submit,
)
from flext_ctx_aspects.settings import Settings, apply_settings
from flext_ctx_aspects.testing import capture_operations


def seen() -> dict[str, Any]:
    return {
        "correlation_id": FlextContext.Correlation.get_correlation_id(),
        "service": FlextContext.Service.get_service_name(),
        "thread": threading.current_thread().name,
    }


def meddle() -> str | None:
    """A worker that changes the context without restoring it."""
    before = FlextContext.Correlation.get_correlation_id()
    FlextContext.Correlation.set_correlation_id("set-in-worker")
    FlextContext.Service.set_service_name("worker-service")
    return before


def context_now() -> _state.Snapshot:
    return _state.get()


@pytest.fixture(autouse=True)
def _fresh_default_executor() -> Any:
    yield
    shutdown_default_executor()


# --- ContextExecutor --------------------------------------------------------------------------


def test_executor_runs_tasks_in_the_submitters_context() -> None:
    with (
        ContextExecutor(max_workers=2) as executor,
        FlextContext.Correlation.new_correlation("sub-1") as correlation_id,
        FlextContext.Service.service_context("api"),
    ):
        result = executor.submit(seen).result(10)
    assert result["correlation_id"] == correlation_id
    assert result["service"] == "api"
    assert result["thread"].startswith("flext-ctx")


def test_worker_changes_leak_neither_back_nor_into_the_next_task() -> None:
    with ContextExecutor(max_workers=1) as executor:
        with FlextContext.Correlation.new_correlation("caller"):
            assert executor.submit(meddle).result(10) == "caller"
            assert FlextContext.Correlation.get_correlation_id() == "caller"
            assert FlextContext.Service.get_service_name() is None
        # Same single worker thread, submitted from an empty context: sees nothing.
        assert executor.submit(context_now).result(10) == _state.EMPTY


def test_map_carries_the_context_of_the_map_call() -> None:
    with ContextExecutor(max_workers=4) as executor, FlextContext.Correlation.new_correlation("m"):
        results = list(executor.map(lambda n: (n, seen()["correlation_id"]), range(20)))
    assert results == [(n, "m") for n in range(20)]


def test_default_worker_count_comes_from_the_settings() -> None:
    apply_settings(Settings(max_concurrent_contexts=3))
    with ContextExecutor() as executor:
        assert executor._max_workers == 3
    with ContextExecutor(max_workers=5) as executor:
        assert executor._max_workers == 5
    apply_settings(Settings())
    with ContextExecutor() as executor:
        assert executor._max_workers >= 1  # concurrent.futures' own default


def test_many_submitters_and_workers_without_cross_talk() -> None:
    """20 submitting threads x 50 tasks on 8 shared workers: every task sees its submitter."""
    mismatches: list[tuple[str, str | None]] = []
    barrier = threading.Barrier(20, timeout=10)

    def observe(expected: str) -> None:
        got = FlextContext.Correlation.get_correlation_id()
        # Every task also scopes something of its own: must not disturb the others.
        with FlextContext.Request.request_context(request_id=f"r-{expected}"):
            if FlextContext.Request.get_request_id() != f"r-{expected}":
                mismatches.append((expected, "request"))
        if got != expected:
            mismatches.append((expected, got))

    with ContextExecutor(max_workers=8) as executor:

        def submitter(number: int) -> None:
            with FlextContext.Correlation.new_correlation(f"s-{number}"):
                barrier.wait()
                futures = [executor.submit(observe, f"s-{number}") for _ in range(50)]
            for future in futures:
                future.result(10)

        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert mismatches == []


def test_running_operation_is_not_carried_into_the_worker() -> None:
    """The worker may run after the submitter's operation finished and was recorded."""
    with (
        ContextExecutor(max_workers=1) as executor,
        capture_operations() as ops,
        FlextContext.Performance.timed_operation("submitter") as metadata,
    ):
        executor.submit(FlextContext.Performance.add_operation_metadata, "from", "worker").result(
            10
        )
        assert executor.submit(FlextContext.Performance.get_operation_metadata).result(10) == {}
    assert "from" not in metadata
    assert "from" not in ops[0].metadata


# --- submit -----------------------------------------------------------------------------------


def test_submit_to_a_plain_executor_carries_the_context_without_polluting_the_thread() -> None:
    with ThreadPoolExecutor(max_workers=1) as plain:
        with FlextContext.Correlation.new_correlation("plain"):
            assert submit(plain, meddle).result(10) == "plain"
            assert submit(plain, seen).result(10)["correlation_id"] == "plain"
        # The worker thread's own context was never touched.
        assert plain.submit(context_now).result(10) == _state.EMPTY


def test_submit_without_executor_uses_the_shared_default() -> None:
    apply_settings(Settings(max_concurrent_contexts=2))
    with FlextContext.Correlation.new_correlation("dflt"):
        result = submit(None, seen).result(10)
    assert result["correlation_id"] == "dflt"
    assert result["thread"].startswith("flext-ctx-default")
    assert default_executor() is default_executor()
    assert default_executor()._max_workers == 2
    shutdown_default_executor()
    apply_settings(Settings(max_concurrent_contexts=4))
    assert default_executor()._max_workers == 4


def test_submit_passes_keyword_arguments() -> None:
    def describe(a: int, *, b: int) -> tuple[int, int, str | None]:
        return a, b, FlextContext.Correlation.get_correlation_id()

    with ContextExecutor(1) as executor, FlextContext.Correlation.new_correlation("kw"):
        assert submit(executor, describe, 1, b=2).result(10) == (1, 2, "kw")


# --- carry_context ----------------------------------------------------------------------------


def test_thread_target_runs_in_the_creators_context() -> None:
    results: list[dict[str, Any]] = []

    def target(tag: str) -> None:
        results.append({**seen(), "tag": tag})
        meddle()

    with (
        FlextContext.Correlation.new_correlation("creator"),
        FlextContext.Service.service_context("s"),
    ):
        thread = threading.Thread(target=carry_context(target), args=("t",))
    # The context is captured at wrapping time, not at start time.
    thread.start()
    thread.join(10)
    assert results[0]["correlation_id"] == "creator"
    assert results[0]["service"] == "s"
    assert _state.get() == _state.EMPTY


def test_carried_function_called_concurrently_gets_a_copy_per_call() -> None:
    barrier = threading.Barrier(8, timeout=10)
    results: list[tuple[str | None, str | None]] = []
    lock = threading.Lock()

    def work(number: int) -> None:
        before = FlextContext.Correlation.get_correlation_id()
        barrier.wait()
        FlextContext.Correlation.set_correlation_id(f"changed-{number}")
        barrier.wait()
        with lock:
            results.append((before, FlextContext.Correlation.get_correlation_id()))

    with FlextContext.Correlation.new_correlation("shared"):
        carried = carry_context(work)
        threads = [threading.Thread(target=carried, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert FlextContext.Correlation.get_correlation_id() == "shared"
    assert sorted(results) == sorted(("shared", f"changed-{n}") for n in range(8))


def test_carry_context_keeps_metadata_and_refuses_async_functions() -> None:
    def documented(x: int) -> int:
        """Doc."""
        return x

    carried = carry_context(documented)
    assert carried.__name__ == "documented"
    assert carried.__doc__ == "Doc."
    assert carried(3) == 3

    async def coroutine() -> None:
        return None

    with pytest.raises(TypeError, match="asyncio tasks"):
        carry_context(coroutine)


def test_carry_context_works_for_callbacks_and_partials() -> None:
    with FlextContext.Correlation.new_correlation("cb"):
        callback = carry_context(functools.partial(seen))
    timer = threading.Timer(0, lambda: results.append(callback()))
    results: list[dict[str, Any]] = []
    timer.start()
    timer.join(10)
    assert results[0]["correlation_id"] == "cb"


# --- run_in_executor --------------------------------------------------------------------------


def test_run_in_executor_keeps_the_tasks_context() -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        with ContextExecutor(2) as executor:

            async def task(number: int) -> tuple[str | None, str | None, str | None]:
                with FlextContext.Correlation.new_correlation(f"task-{number}"):
                    explicit = await run_in_executor(loop, executor, meddle)
                    default = await run_in_executor(None, None, seen)
                    after = FlextContext.Correlation.get_correlation_id()
                assert after == f"task-{number}"
                return explicit, default["correlation_id"], after

            return await asyncio.gather(*(task(n) for n in range(10)))

    results = asyncio.run(scenario())
    assert results == [(f"task-{n}", f"task-{n}", f"task-{n}") for n in range(10)]


def test_run_in_executor_without_loop_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        run_in_executor(None, None, seen)
