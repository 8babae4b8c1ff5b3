"""Plain functions: every aspect and the fused stack against the bare call and the floors.

Per call. ``bare`` is the undecorated function; ``floor_timed`` and ``floor_fused`` are the
hand-written closures of ``floors.py``. The ``*_sink`` variants run with a collecting sink
registered (the floors always append a record; the library builds none when no sink
listens, which is its default). ``floor_c`` is the C floor of ``cfloor.c`` (built by the
suite; skipped without a compiler); ``timed_python`` / ``fused_python`` are decorated with the
Python drivers while the compiled ones are active (skipped in pure Python), for the compiled
vs pure-Python ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from flext_ctx_aspects import _engine, implementation
from floors import c_floor, fused_floor, timed_floor
from kit import ASPECTS, SERVICE_NAME, SERVICE_VERSION, USER_ID, call_loop

CALLS = 1000


def work(x: int) -> int:
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
    "floor_c",
    "timed_python",
    "fused_python",
]


@pytest.mark.benchmark(group="sync")
@pytest.mark.variants(*VARIANTS)
def test_sync(bench: Any, request: pytest.FixtureRequest, variant: str) -> None:
    name = f"{work.__module__}.{work.__qualname__}"

    def build(variant: str) -> tuple[Any, int]:
        out: list[Any] | None = None
        if variant == "bare":
            func: Any = work
        elif variant == "floor_timed":
            out = []
            func = timed_floor(work, out, name)
        elif variant == "floor_fused":
            out = []
            func = fused_floor(
                work, out, name, SERVICE_NAME, SERVICE_VERSION, USER_ID, work.__qualname__
            )
        elif variant == "floor_c":
            func = c_floor(work)
            if func is None:
                pytest.skip("no C compiler: no C floor")
        elif variant.endswith("_python"):
            # The pure-Python engine, decorated in this process: compiled vs Python in one run.
            if implementation != "compiled":
                pytest.skip("the compiled parts are not active: nothing to compare")
            previous = _engine.use_compiled_drivers(enabled=False)
            try:
                func = ASPECTS[variant.removesuffix("_python")](work)
            finally:
                _engine.use_compiled_drivers(enabled=previous)
        elif variant.endswith("_sink"):
            out = request.getfixturevalue("collecting_sink").records
            func = ASPECTS[variant.removesuffix("_sink")](work)
        else:
            func = ASPECTS[variant](work)
        assert func(1) == 1
        if out is not None:
            assert len(out) == 1, "the subject must record exactly one operation per call"
            out.clear()
        return call_loop(func, CALLS, out), CALLS

    bench.measure(variant, build)
