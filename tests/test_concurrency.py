"""Isolation under real concurrency: threads and asyncio tasks nesting scopes at random.

Each worker carries its own identity and checks, at every step, that it sees only its own
values; when all workers are done the context is empty.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flext_ctx_aspects import (
    FlextContext,
    _state,
    arg,
    request_scope,
    service,
    timed,
    with_correlation,
)
from flext_ctx_aspects.testing import capture_operations

THREADS = 16
TASKS_FACADE = 1_000
TASKS_ASPECTS = 5_000


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads every microsecond so that workers interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def expect(worker: str, depth: int) -> None:
    assert FlextContext.Service.get_service_name() == f"svc-{worker}"
    assert FlextContext.Request.get_user_id() == f"user-{worker}"
    assert FlextContext.Correlation.get_correlation_id() == f"{worker}-{depth}"
    parent = FlextContext.Correlation.get_parent_correlation_id()
    assert parent == (f"{worker}-{depth - 1}" if depth else None)


def nest_facade(worker: str, rng: random.Random, depth: int = 0) -> int:
    """Open scopes at random depth, checking the visible values at every level."""
    with FlextContext.Correlation.new_correlation(f"{worker}-{depth}"):
        expect(worker, depth)
        calls = 1
        for _ in range(rng.randint(0, 2) if depth < 4 else 0):
            calls += nest_facade(worker, rng, depth + 1)
            expect(worker, depth)
        return calls


def run_facade_worker(worker: str, seed: int) -> int:
    rng = random.Random(seed)
    with (
        FlextContext.Service.service_context(f"svc-{worker}"),
        FlextContext.Request.request_context(user_id=f"user-{worker}"),
    ):
        return sum(nest_facade(worker, rng) for _ in range(5))


@pytest.mark.slow
@pytest.mark.usefixtures("frequent_thread_switches")
def test_facade_threads_are_isolated() -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def target(index: int) -> None:
        try:
            barrier.wait()
            for round_ in range(20):
                run_facade_worker(f"t{index}", index * 1000 + round_)
            assert _state.get() == _state.EMPTY
        except BaseException as error:  # collected and re-raised by the main thread
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.slow
def test_facade_tasks_are_isolated() -> None:
    async def task(index: int) -> int:
        rng = random.Random(index)
        worker = f"a{index}"
        with (
            FlextContext.Service.service_context(f"svc-{worker}"),
            FlextContext.Request.request_context(user_id=f"user-{worker}"),
        ):
            total = 0
            for depth in range(rng.randint(1, 4)):
                with FlextContext.Correlation.new_correlation(f"{worker}-0"):
                    await asyncio.sleep(0)  # interleave with the other tasks
                    expect(worker, 0)
                    total += nest_facade(worker, rng, 1) if depth % 2 else 1
                    await asyncio.sleep(0)
                    expect(worker, 0)
            return total

    async def main() -> list[int]:
        results = await asyncio.gather(*(task(i) for i in range(TASKS_FACADE)))
        assert _state.get() == _state.EMPTY
        return results

    assert all(r >= 1 for r in asyncio.run(main()))


# --- decorated callables under concurrency ------------------------------------------------------


@service(arg("worker", lambda w: f"svc-{w}"))
@request_scope(user_id=arg("worker", lambda w: f"user-{w}"))
@timed(name="aspect-worker")
async def aspect_task(worker: str, depth: int) -> int:
    return await nested_call(worker, depth)


@with_correlation
async def nested_call(worker: str, depth: int) -> int:
    mine = FlextContext.Correlation.get_correlation_id()
    assert FlextContext.Service.get_service_name() == f"svc-{worker}"
    assert FlextContext.Request.get_user_id() == f"user-{worker}"
    await asyncio.sleep(0)
    assert FlextContext.Correlation.get_correlation_id() == mine
    calls = 1
    if depth:
        calls += await nested_call(worker, depth - 1)
        assert FlextContext.Correlation.get_correlation_id() == mine
    async for step in worker_steps(worker):
        assert FlextContext.Correlation.get_correlation_id() == mine
        assert step == worker
    return calls


@with_correlation
async def worker_steps(worker: str) -> AsyncIterator[str]:
    for _ in range(2):
        await asyncio.sleep(0)
        assert FlextContext.Service.get_service_name() == f"svc-{worker}"
        yield worker


@pytest.mark.slow
def test_decorated_coroutines_and_async_generators_in_5000_tasks() -> None:
    async def main() -> list[int]:
        rng = random.Random(5)
        jobs = [aspect_task(f"w{i}", rng.randint(0, 3)) for i in range(TASKS_ASPECTS)]
        results = await asyncio.gather(*jobs)
        assert _state.get() == _state.EMPTY
        return results

    with capture_operations() as ops:
        results = asyncio.run(main())
    assert len(results) == TASKS_ASPECTS
    assert len(ops) == TASKS_ASPECTS
    assert all(op.status == "ok" for op in ops)
    # Every record carries its own task's identity.
    assert all(op.service_name == f"svc-{op.user_id.removeprefix('user-')}" for op in ops)  # type: ignore[union-attr]


@service(arg("worker", lambda w: f"svc-{w}"))
@request_scope(user_id=arg("worker", lambda w: f"user-{w}"))
@with_correlation
def sync_worker(worker: str, depth: int, rng: random.Random) -> int:
    mine = FlextContext.Correlation.get_correlation_id()
    calls = 1
    for _ in range(rng.randint(0, 2) if depth else 0):
        calls += sync_worker(worker, depth - 1, rng)
        assert FlextContext.Correlation.get_correlation_id() == mine
    for step in generator_steps(worker):
        assert step == (worker, mine)
        assert FlextContext.Correlation.get_correlation_id() == mine
    return calls


@timed
def generator_steps(worker: str) -> Iterator[tuple[str, Any]]:
    for _ in range(2):
        assert FlextContext.Service.get_service_name() == f"svc-{worker}"
        yield worker, FlextContext.Correlation.get_correlation_id()


@pytest.mark.slow
@pytest.mark.usefixtures("frequent_thread_switches")
def test_decorated_functions_and_generators_in_16_threads() -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def target(index: int) -> None:
        try:
            rng = random.Random(index)
            barrier.wait()
            for round_ in range(50):
                sync_worker(f"t{index}-{round_}", 3, rng)
            assert _state.get() == _state.EMPTY
        except BaseException as error:
            errors.append(error)

    with capture_operations() as ops:
        threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert ops
    assert all(op.service_name == f"svc-{op.user_id.removeprefix('user-')}" for op in ops)  # type: ignore[union-attr]
