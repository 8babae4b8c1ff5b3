"""Async generator functions: per item over 1,000 items, and per create-and-exhaust.

As ``test_generator.py``, with ``async for`` inside one coroutine run by an event loop made
once per benchmark. The floor is ``floors.async_generator_floor``: each step of the awaitable
returned by ``asend`` runs with ``ctx.run(awaitable.send, value)`` in a private Context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from floors import async_generator_floor
from kit import ASPECTS

ITEMS = 1000
CALLS = 500


async def items(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


# Compared benchmarks sit next to each other: each pass runs them in this order.
VARIANTS = ["bare", "floor", "timed", "fused", "with_correlation", "service", "request_scope",
            "timed_sink"]  # fmt: skip


def _subject(variant: str, request: pytest.FixtureRequest) -> tuple[Any, list[Any] | None]:
    if variant == "bare":
        return items, None
    if variant == "floor":
        out: list[Any] = []
        return async_generator_floor(items, out, f"{items.__module__}.{items.__qualname__}"), out
    if variant.endswith("_sink"):
        sink_records = request.getfixturevalue("collecting_sink").records
        return ASPECTS[variant.removesuffix("_sink")](items), sink_records
    return ASPECTS[variant](items), None


async def _collect(func: Callable[[int], AsyncIterator[int]], n: int) -> list[int]:
    return [item async for item in func(n)]


@pytest.mark.benchmark(group="asyncgen-items")
@pytest.mark.variants(*VARIANTS)
def test_asyncgen_items(
    bench: Any, aloop: Any, request: pytest.FixtureRequest, variant: str
) -> None:
    def build(variant: str) -> tuple[Any, int]:
        func, out = _subject(variant, request)
        assert aloop.loop.run_until_complete(_collect(func, 3)) == [0, 1, 2]
        if out is not None:
            assert len(out) == 1
            out.clear()

        async def exhaust() -> None:
            async for _ in func(ITEMS):
                pass
            if out is not None:
                out.clear()

        return aloop.run(exhaust), ITEMS

    bench.measure(variant, build, unit="item")


@pytest.mark.benchmark(group="asyncgen-create")
@pytest.mark.variants(*VARIANTS)
def test_asyncgen_create(
    bench: Any, aloop: Any, request: pytest.FixtureRequest, variant: str
) -> None:
    times = range(CALLS)

    def build(variant: str) -> tuple[Any, int]:
        func, out = _subject(variant, request)
        assert aloop.loop.run_until_complete(_collect(func, 1)) == [0]
        if out is not None:
            out.clear()

        async def create_and_exhaust() -> None:
            for _ in times:
                async for _ in func(1):
                    pass
            if out is not None:
                out.clear()

        return aloop.run(create_and_exhaust), CALLS

    bench.measure(variant, build, unit="create-and-exhaust")
