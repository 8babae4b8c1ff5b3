"""Stacked aspects against one fused aspect doing the same: per call.

The library fuses stacked aspects into one wrapper layer automatically. ``stacked4`` is the
usual four-decorator stack; ``combined4`` is ONE ``aspect(...)`` whose advice merges the
advice of the same four aspects (what a user would write to get one layer by hand).
``stacked2`` (``@timed @with_correlation``) and ``combined2`` do the same for two. Stacking
must never cost more than the combined aspect.
"""

from __future__ import annotations

from typing import Any

import pytest

from flext_ctx_aspects import timed, with_correlation
from flext_ctx_aspects._engine import aspects_of
from flext_ctx_aspects.aspects import Advice, Target, aspect
from kit import ASPECTS, call_loop

CALLS = 1000


def work(x: int) -> int:
    return x


class Combined:
    """One aspect whose advice is the merged advice of several (outermost first)."""

    def __init__(self, aspects: tuple[Any, ...]) -> None:
        self.aspects = aspects

    def advise(self, target: Target) -> Advice:
        fields: dict[str, Any] = {}
        timing = None
        for one in reversed(self.aspects):  # inner first, so outer values win, as stacked
            advice = one.advise(target)
            fields.update(advice.fields)
            timing = advice.timing or timing
        return Advice(fields=fields, timing=timing)


def stacked2(func: Any) -> Any:
    return timed(with_correlation(func))


def _combined(stack: Any) -> Any:
    def decorate(func: Any) -> Any:
        # The aspect objects the stack put on a throwaway function, merged into one.
        def probe(x: int) -> int:
            return x

        return aspect(Combined(aspects_of(stack(probe))))(func)

    return decorate


SUBJECTS: dict[str, Any] = {
    "stacked4": ASPECTS["fused"],
    "combined4": _combined(ASPECTS["fused"]),
    "stacked2": stacked2,
    "combined2": _combined(stacked2),
}


@pytest.mark.benchmark(group="stacking")
@pytest.mark.variants("bare", *SUBJECTS)
def test_stacking(bench: Any, variant: str) -> None:
    def build(variant: str) -> tuple[Any, int]:
        func = work if variant == "bare" else SUBJECTS[variant](work)
        assert func(1) == 1
        return call_loop(func, CALLS), CALLS

    info = {"aspects": len(aspects_of(SUBJECTS[variant](work)))} if variant != "bare" else {}
    bench.measure(variant, build, info=info)
