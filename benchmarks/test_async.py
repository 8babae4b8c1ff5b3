"""Coroutine functions: every aspect and the fused stack, awaited inside one running loop.

Per call. A round is ONE coroutine that awaits the subject ``CALLS`` times, run to completion
by an event loop created once per benchmark: the loop's own cost (``run_until_complete``) is
paid once per round and cancels out against ``bare``. Floors: ``floors.timed_floor_async``
and ``floors.fused_floor_async``.
"""

from __future__ import annotations

from typing import Any

import pytest

from floors import fused_floor_async, timed_floor_async
from kit import ASPECTS, SERVICE_NAME, SERVICE_VERSION, USER_ID

CALLS = 1000


async def work(x: int) -> int:
    return x


# Compared benchmarks sit next to each other: each pass runs them in this order.
VARIANTS = [
    "bare",
    "floor_timed",
    "timed",
    "service",
    "with_correlation",
    "request_scope",
    "timed_sink",
    "floor_fused",
    "fused",
    "fused_sink",
]


@pytest.mark.benchmark(group="async")
@pytest.mark.variants(*VARIANTS)
def test_async(bench: Any, aloop: Any, request: pytest.FixtureRequest, variant: str) -> None:
    name = f"{work.__module__}.{work.__qualname__}"

    def build(variant: str) -> tuple[Any, int]:
        out: list[Any] | None = None
        if variant == "bare":
            func: Any = work
        elif variant == "floor_timed":
            out = []
            func = timed_floor_async(work, out, name)
        elif variant == "floor_fused":
            out = []
            func = fused_floor_async(
                work, out, name, SERVICE_NAME, SERVICE_VERSION, USER_ID, work.__qualname__
            )
        elif variant.endswith("_sink"):
            out = request.getfixturevalue("collecting_sink").records
            func = ASPECTS[variant.removesuffix("_sink")](work)
        else:
            func = ASPECTS[variant](work)
        assert aloop.loop.run_until_complete(func(1)) == 1
        if out is not None:
            assert len(out) == 1, "the subject must record exactly one operation per call"
            out.clear()
        return aloop.await_loop(func, CALLS, out), CALLS

    bench.measure(variant, build)
