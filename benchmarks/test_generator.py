"""Generator functions: per item over 1,000 items, and per create-and-exhaust.

``test_generator_items``: a round exhausts one generator of ``ITEMS`` items; per item (the
creation is included, amortised over the items). ``test_generator_create``: a round creates
and exhausts ``CALLS`` one-item generators; per generator. The floor is
``floors.generator_floor``: a wrapping generator that runs each step with
``ctx.run(inner.send, value)`` in a private ``contextvars.Context``, timed like ``@timed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floors import generator_floor
from kit import ASPECTS

ITEMS = 1000
CALLS = 500


def items(n: int) -> Iterator[int]:
    # One resume of Python code per item, the usual shape (``yield from range`` would not be).
    for i in range(n):  # noqa: UP028
        yield i


# Compared benchmarks sit next to each other: each pass runs them in this order.
VARIANTS = ["bare", "floor", "timed", "fused", "with_correlation", "service", "request_scope",
            "timed_sink"]  # fmt: skip


def _subject(variant: str, request: pytest.FixtureRequest) -> tuple[Any, list[Any] | None]:
    if variant == "bare":
        return items, None
    if variant == "floor":
        out: list[Any] = []
        return generator_floor(items, out, f"{items.__module__}.{items.__qualname__}"), out
    if variant.endswith("_sink"):
        sink_records = request.getfixturevalue("collecting_sink").records
        return ASPECTS[variant.removesuffix("_sink")](items), sink_records
    return ASPECTS[variant](items), None


def _check(func: Callable[[int], Iterator[int]], out: list[Any] | None) -> None:
    assert list(func(3)) == [0, 1, 2]
    if out is not None:
        assert len(out) == 1, "the subject must record exactly one operation per generator"
        out.clear()


@pytest.mark.benchmark(group="generator-items")
@pytest.mark.variants(*VARIANTS)
def test_generator_items(bench: Any, request: pytest.FixtureRequest, variant: str) -> None:
    def build(variant: str) -> tuple[Any, int]:
        func, out = _subject(variant, request)
        _check(func, out)
        clear = out.clear if out is not None else None

        def loop() -> None:
            for _ in func(ITEMS):
                pass
            if clear is not None:
                clear()

        return loop, ITEMS

    bench.measure(variant, build, unit="item")


@pytest.mark.benchmark(group="generator-create")
@pytest.mark.variants(*VARIANTS)
def test_generator_create(bench: Any, request: pytest.FixtureRequest, variant: str) -> None:
    times = range(CALLS)

    def build(variant: str) -> tuple[Any, int]:
        func, out = _subject(variant, request)
        _check(func, out)
        clear = out.clear if out is not None else None

        def loop() -> None:
            for _ in times:
                for _ in func(1):
                    pass
            if clear is not None:
                clear()

        return loop, CALLS

    bench.measure(variant, build, unit="create-and-exhaust")
