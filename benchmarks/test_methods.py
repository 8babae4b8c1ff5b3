"""Methods: every aspect and the fused stack on an instance method and on a classmethod.

Per call, through the instance (``obj.handle(1)``) and through the class
(``Service.create(1)``), so each call pays the descriptor binding as real code does. Each
variant builds its own class with the decorator applied under ``@classmethod``; the floors
are the closures of ``floors.py``, which bind like any function. ``timed_python_get`` is
``@timed`` bound by the Python engine's ``__get__`` while the compiled base's C one is
active (skipped in pure Python), for the compiled vs pure-Python binding ratio.
``timed_above`` is ``@timed`` applied above ``@classmethod``, to the classmethod object, as
the instrumenter applies it (the other classmethod variants decorate the function under it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flext_ctx_aspects import _engine, timed
from floors import fused_floor, timed_floor
from kit import ASPECTS, SERVICE_NAME, SERVICE_VERSION, USER_ID

CALLS = 1000

# Compared benchmarks sit next to each other: each pass runs them in this order.
VARIANTS = ["bare", "floor_timed", "timed", "floor_fused", "fused", "with_correlation", "service",
            "request_scope"]  # fmt: skip
METHOD_VARIANTS = [*VARIANTS[:3], "timed_python_get", *VARIANTS[3:]]


class _PythonGet(_engine.AspectWrapper):  # type: ignore[misc]
    """The wrapper as the pure-Python engine binds it: a Python ``__get__``."""

    __slots__ = ()  # AspectWrapper's layout, so __class__ can be assigned
    __get__ = _engine.AspectWrapper._bind_as_attribute


_set_class = object.__dict__["__class__"].__set__
if _engine.VECTORCALL_WRAPPER:
    _engine.speedups.adopt_wrapper_type(_PythonGet)  # the same call entry as AspectWrapper


def _timed_python_get(func: Any) -> Any:
    if not _engine.VECTORCALL_WRAPPER:
        pytest.skip("the compiled base is not active: nothing to compare")
    wrapper = timed(func)
    _set_class(wrapper, _PythonGet)  # wrapt forwards a plain __class__ assignment
    return wrapper


def _decorator(variant: str, out: list[Any]) -> Callable[[Any], Any]:
    if variant == "bare":
        return lambda func: func
    if variant == "floor_timed":
        return lambda func: timed_floor(func, out, f"{func.__module__}.{func.__qualname__}")
    if variant == "floor_fused":
        return lambda func: fused_floor(
            func, out, f"{func.__module__}.{func.__qualname__}",
            SERVICE_NAME, SERVICE_VERSION, USER_ID, func.__qualname__,
        )  # fmt: skip
    if variant == "timed_python_get":
        return _timed_python_get
    return ASPECTS[variant]


def _service_class(decorate: Callable[[Any], Any], *, above: bool = False) -> type:
    class Service:
        def handle(self, x: int) -> int:
            return x

        @classmethod
        def create(cls, x: int) -> int:
            return x

    Service.handle = decorate(Service.__dict__["handle"])  # type: ignore[method-assign]
    if above:
        Service.create = decorate(Service.__dict__["create"])  # type: ignore[method-assign]
    else:
        Service.create = classmethod(decorate(Service.__dict__["create"].__func__))  # type: ignore[method-assign, assignment]
    return Service


@pytest.mark.benchmark(group="method")
@pytest.mark.variants(*METHOD_VARIANTS)
def test_method(bench: Any, variant: str) -> None:
    times = range(CALLS)

    def build(variant: str) -> tuple[Any, int]:
        out: list[Any] = []
        obj = _service_class(_decorator(variant, out))()
        assert obj.handle(1) == 1
        out.clear()
        clear = out.clear

        def loop() -> None:
            for _ in times:
                obj.handle(1)
            clear()

        return loop, CALLS

    bench.measure(variant, build)


CLASSMETHOD_VARIANTS = [*VARIANTS[:3], "timed_above", *VARIANTS[3:]]


@pytest.mark.benchmark(group="classmethod")
@pytest.mark.variants(*CLASSMETHOD_VARIANTS)
def test_classmethod(bench: Any, variant: str) -> None:
    times = range(CALLS)

    def build(variant: str) -> tuple[Any, int]:
        out: list[Any] = []
        above = variant == "timed_above"
        decorate = _decorator("timed" if above else variant, out)
        cls: Any = _service_class(decorate, above=above)
        assert cls.create(1) == 1
        assert cls().create(1) == 1
        out.clear()
        clear = out.clear

        def loop() -> None:
            for _ in times:
                cls.create(1)
            clear()

        return loop, CALLS

    bench.measure(variant, build)
