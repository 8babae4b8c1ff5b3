"""The disabled paths: per call.

* ``decoration_timed`` / ``decoration_fused``: ``enabled=False`` at decoration time must
  return the very same object (asserted; ``extra_info["identity"]``), so a call costs exactly
  the bare call.
* ``runtime_timed`` / ``runtime_fused``: decorated, then ``flext_ctx_aspects.set_enabled(False)``.
* ``wrapt_passthrough``: the reference for the runtime switch: a bare C-level wrapt
  pass-through, ``wrapt.__wrapt__._FunctionWrapperBase(f, None, lambda w, i, a, k:
  w(*a, **k), None, "staticmethod")``: the least any wrapt-based wrapper costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from wrapt.__wrapt__ import _FunctionWrapperBase

import flext_ctx_aspects
from flext_ctx_aspects import request_scope, service, timed, with_correlation
from kit import ASPECTS, SERVICE_NAME, SERVICE_VERSION, USER_ID, call_loop

CALLS = 1000


def work(x: int) -> int:
    return x


def _disabled_stack(func: Any) -> Any:
    return with_correlation(enabled=False)(
        service(SERVICE_NAME, SERVICE_VERSION, enabled=False)(
            timed(enabled=False)(request_scope(user_id=USER_ID, enabled=False)(func))
        )
    )


@pytest.fixture
def switched_off() -> Iterator[None]:
    flext_ctx_aspects.set_enabled(False)
    try:
        yield
    finally:
        flext_ctx_aspects.set_enabled(True)


@pytest.mark.benchmark(group="disabled")
@pytest.mark.variants(
    "bare",
    "wrapt_passthrough",
    "runtime_timed",
    "runtime_fused",
    "decoration_timed",
    "decoration_fused",
)
def test_disabled(bench: Any, request: pytest.FixtureRequest, variant: str) -> None:
    info: dict[str, Any] = {}

    def build(variant: str) -> tuple[Any, int]:
        if variant == "bare":
            func: Any = work
        elif variant == "decoration_timed":
            func = timed(enabled=False)(work)
            assert func is work, "timed(enabled=False) must return the function itself"
            info["identity"] = True
        elif variant == "decoration_fused":
            func = _disabled_stack(work)
            assert func is work, "the disabled stack must return the function itself"
            info["identity"] = True
        elif variant.startswith("runtime_"):
            func = ASPECTS[variant.removeprefix("runtime_")](work)
            assert func is not work
            request.getfixturevalue("switched_off")
            assert not flext_ctx_aspects.is_enabled()
        else:
            func = _FunctionWrapperBase(
                work, None, lambda w, i, a, k: w(*a, **k), None, "staticmethod"
            )
        assert func(1) == 1
        return call_loop(func, CALLS), CALLS

    bench.measure(variant, build, info=info)
