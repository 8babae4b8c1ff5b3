"""Engine behaviour beyond the matrix: fusion, introspection, switches, failures, options."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import logging
import pickle
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import pytest
import wrapt

import flext_ctx_aspects
from flext_ctx_aspects import (
    FlextContext,
    arg,
    from_call,
    request_scope,
    service,
    timed,
    with_correlation,
)
from flext_ctx_aspects._diagnostics import internal_error_counts
from flext_ctx_aspects._engine import aspects_of
from flext_ctx_aspects.aspects import Advice, Call, Target, aspect
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.sinks import add_sink
from flext_ctx_aspects.testing import capture_operations

cid = FlextContext.Correlation.get_correlation_id


# Module-level so that pickle can find them by reference.
@timed
@with_correlation
def module_level(x: int) -> int:
    """Doubles x."""
    return x * 2


class Picklable:
    @timed
    def method(self) -> str:
        return "m"


# --- introspection ---------------------------------------------------------------------------


def test_introspection_is_preserved() -> None:
    assert module_level.__name__ == "module_level"
    assert module_level.__qualname__ == "module_level"
    assert module_level.__doc__ == "Doubles x."
    assert module_level.__module__ == __name__
    assert module_level.__wrapped__.__name__ == "module_level"
    assert not hasattr(module_level.__wrapped__, "__wrapped__")
    assert inspect.signature(module_level) == inspect.signature(module_level.__wrapped__)
    assert list(inspect.signature(module_level).parameters) == ["x"]
    assert callable(module_level)
    assert isinstance(module_level, type(lambda: None))


@pytest.mark.parametrize(
    ("source", "predicate"),
    [
        ("def f():\n    return 1", None),
        ("async def f():\n    return 1", inspect.iscoroutinefunction),
        ("def f():\n    yield 1", inspect.isgeneratorfunction),
        ("async def f():\n    yield 1", inspect.isasyncgenfunction),
    ],
    ids=["function", "coroutine", "generator", "async_generator"],
)
def test_kind_predicates_are_preserved(source: str, predicate: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102
    decorated = with_correlation(service("s")(timed(namespace["f"])))
    for check in (
        inspect.iscoroutinefunction,
        inspect.isgeneratorfunction,
        inspect.isasyncgenfunction,
    ):
        assert check(decorated) == (check is predicate)


def test_pickle_and_copy_by_reference() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    assert copy.copy(module_level) is module_level
    assert copy.deepcopy(module_level) is module_level
    instance = Picklable()
    bound = pickle.loads(pickle.dumps(instance.method))
    assert bound() == "m"


def test_methods_keep_signature_without_self() -> None:
    class Host:
        @request_scope(user_id=arg("user"))
        def handle(self, user: str, *, verbose: bool = False) -> str:
            return user

    assert list(inspect.signature(Host().handle).parameters) == ["user", "verbose"]
    assert Host.handle.__qualname__.endswith("Host.handle")


# --- fusion ----------------------------------------------------------------------------------


def depth() -> int:
    frame = sys._getframe(1)
    count = 0
    while frame is not None:
        count += 1
        frame = frame.f_back  # type: ignore[assignment]
    return count


def test_stacked_aspects_are_one_wrapper_layer_in_any_order() -> None:
    def body() -> int:
        return depth()

    one = timed(body)
    four = with_correlation(service("s")(timed(request_scope(user_id="u")(body))))
    four_other_order = request_scope(user_id="u")(timed(service("s")(with_correlation(body))))
    assert one() == four() == four_other_order()
    assert four.__wrapped__ is body
    assert len(aspects_of(four)) == 4


def test_fusion_through_classmethod_and_staticmethod() -> None:
    class Host:
        @timed
        @classmethod
        @with_correlation
        def make(cls) -> tuple[type, int]:
            return cls, depth()

        @timed
        @staticmethod
        @service("s")
        def static() -> int:
            return depth()

        @classmethod
        def reference(cls) -> int:
            return depth()

    made, made_depth = Host.make()
    assert made is Host
    assert len(aspects_of(Host.__dict__["make"])) == 2
    assert len(aspects_of(Host.__dict__["static"])) == 2
    assert made_depth == Host.static() == timed(Host.reference)()


def test_stacked_with_correlation_tracks_parents_like_separate_wrappers() -> None:
    seen: list[tuple[str | None, str | None]] = []

    @with_correlation
    @with_correlation
    def body() -> None:
        seen.append((cid(), FlextContext.Correlation.get_parent_correlation_id()))

    with FlextContext.Correlation.new_correlation("root"):
        body()
    ((inner, parent),) = seen
    assert inner not in (None, "root")
    assert parent not in (None, "root", inner)


def test_fuses_with_a_foreign_wrapt_decorator_in_between() -> None:
    @wrapt.decorator
    def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    @timed
    @passthrough
    @service("s")
    def body() -> str | None:
        return FlextContext.Service.get_service_name()

    with capture_operations() as ops:
        assert body() == "s"
    assert len(ops) == 1


# --- switches --------------------------------------------------------------------------------


def test_enabled_false_returns_the_original_object() -> None:
    def body() -> int:
        return 1

    for decorator in (
        timed(enabled=False),
        with_correlation(enabled=False),
        service("s", enabled=False),
        request_scope(enabled=False),
    ):
        assert decorator(body) is body


def test_runtime_switch_makes_every_aspect_a_pass_through() -> None:
    @with_correlation
    @timed
    def body() -> str | None:
        return cid()

    @with_correlation
    def gen() -> Iterator[str | None]:
        yield cid()

    flext_ctx_aspects.set_enabled(False)
    try:
        assert not flext_ctx_aspects.is_enabled()
        with capture_operations() as ops:
            assert body() is None
            assert list(gen()) == [None]
        assert ops == []
    finally:
        flext_ctx_aspects.set_enabled(True)
    assert body() is not None


# --- classes ---------------------------------------------------------------------------------


def test_decorating_a_class_instruments_its_own_methods_only() -> None:
    class Base:
        def inherited(self) -> str | None:
            return FlextContext.Service.get_service_name()

    @service("cls-svc")
    class Host(Base):
        def __init__(self) -> None:
            self.created_in = FlextContext.Service.get_service_name()

        def __repr__(self) -> str:
            return f"Host({FlextContext.Service.get_service_name()})"

        def public(self) -> str | None:
            return FlextContext.Service.get_service_name()

        def _private(self) -> str | None:
            return FlextContext.Service.get_service_name()

        @classmethod
        def klass(cls) -> str | None:
            return FlextContext.Service.get_service_name()

        @staticmethod
        def static() -> str | None:
            return FlextContext.Service.get_service_name()

        @property
        def prop(self) -> str | None:
            return FlextContext.Service.get_service_name()

    host = Host()
    assert host.created_in is None
    assert repr(host) == "Host(None)"
    assert host.public() == host._private() == Host.klass() == Host.static() == "cls-svc"
    assert host.prop is None
    assert host.inherited() is None


# --- explicit kinds ----------------------------------------------------------------------------


def test_kind_override_for_a_function_returning_a_coroutine() -> None:
    async def work() -> str | None:
        await asyncio.sleep(0)
        return FlextContext.Service.get_service_name()

    def returns_awaitable() -> Awaitable[str | None]:
        return work()

    undeclared = service("s")(returns_awaitable)
    declared = service("s", kind="coroutine")(returns_awaitable)
    assert not inspect.iscoroutinefunction(undeclared)
    assert inspect.iscoroutinefunction(declared)
    assert asyncio.run(undeclared()) is None  # context gone by the time it runs
    assert asyncio.run(declared()) == "s"


def test_kind_override_for_a_function_returning_a_generator() -> None:
    def body() -> Iterator[str | None]:
        yield FlextContext.Service.get_service_name()

    def returns_generator() -> Iterator[str | None]:
        return body()

    declared = service("s", kind="generator")(returns_generator)
    assert inspect.isgeneratorfunction(declared)
    assert list(declared()) == ["s"]
    with pytest.raises(TypeError, match="kind must be one of"):
        service("s", kind="thread")(returns_generator)


def test_wrapt_mark_as_async_is_honoured() -> None:
    async def work() -> str | None:
        return FlextContext.Service.get_service_name()

    @wrapt.mark_as_async
    def returns_awaitable() -> Awaitable[str | None]:
        return work()

    decorated = service("s")(returns_awaitable)
    assert inspect.iscoroutinefunction(decorated)
    assert asyncio.run(decorated()) == "s"


def _returns_awaitable() -> Awaitable[str | None]:
    async def work() -> str | None:
        return FlextContext.Service.get_service_name()

    return work()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="inspect.markcoroutinefunction is 3.12+")
def test_inspect_markcoroutinefunction_is_honoured() -> None:
    # A plain function whose only coroutine-ness is its marker attribute (the kind
    # detection's fast path for functions without attributes must not skip it).
    def marked() -> Awaitable[str | None]:
        return _returns_awaitable()

    getattr(inspect, "markcoroutinefunction")(marked)  # noqa: B009 - absent before 3.12
    decorated = service("s")(marked)
    assert inspect.iscoroutinefunction(decorated)
    assert asyncio.run(decorated()) == "s"


def test_a_function_with_attributes_but_no_marker_stays_a_function() -> None:
    def plain() -> str | None:
        return FlextContext.Service.get_service_name()

    plain.tag = "x"  # type: ignore[attr-defined]
    decorated = service("s")(plain)
    assert not inspect.iscoroutinefunction(decorated)
    assert decorated() == "s"


# --- coroutines driven by hand -------------------------------------------------------------------


def test_coroutine_resumed_in_another_context_does_not_raise() -> None:
    """A coroutine runs in the Context that drives it, as any coroutine does.

    Driven by hand across Contexts, it raises no token error, and the Context it finishes in
    is left as it was; the Context that started it keeps the scope until it is cleared (the
    documented limit of restoring by value).
    """

    class Suspend:
        def __await__(self) -> Iterator[None]:
            yield None

    @service("hand")
    async def body() -> str | None:
        await Suspend()
        return FlextContext.Service.get_service_name()

    other = contextvars.Context()
    coroutine = body()
    try:
        coroutine.send(None)
        with pytest.raises(StopIteration) as stop:
            other.run(coroutine.send, None)
        assert stop.value.value is None  # resumed where the scope was never opened
        assert other.run(FlextContext.Service.get_service_name) is None
    finally:
        FlextContext.Utilities.clear_context()


# --- options -----------------------------------------------------------------------------------


def test_with_correlation_inherit() -> None:
    @with_correlation(inherit=True)
    def body() -> tuple[str | None, str | None]:
        return cid(), FlextContext.Correlation.get_parent_correlation_id()

    fresh, parent = body()
    assert fresh is not None
    assert parent is None
    with FlextContext.Correlation.new_correlation("outer"):
        assert body() == ("outer", None)


def test_request_scope_sources_and_request_id_rules() -> None:
    class User:
        def __init__(self, ident: int) -> None:
            self.ident = ident

    @request_scope(
        user_id=arg("user", lambda u: u.ident),
        request_id=arg("request_id"),
        metadata={"static": 1, "path": arg("path"), "n": from_call(lambda b: len(b.arguments))},
    )
    def handle(user: User, path: str, request_id: str | None = None) -> dict[str, Any]:
        return {
            "user": FlextContext.Request.get_user_id(),
            "request_id": FlextContext.Request.get_request_id(),
            "operation": FlextContext.Request.get_operation_name(),
            "metadata": FlextContext.Request.get_request_metadata(),
        }

    seen = handle(User(7), "/x", request_id="rq-1")
    assert seen["user"] == "7"
    assert seen["request_id"] == "rq-1"
    assert seen["operation"].endswith("handle")
    assert seen["metadata"] == {"static": 1, "path": "/x", "n": 3}
    generated = handle(User(7), path="/y")["request_id"]
    assert generated is not None
    assert generated != "rq-1"
    with FlextContext.Request.request_context(request_id="outer-rq"):
        assert handle(User(1), "/z")["request_id"] == "outer-rq"


def test_source_errors_are_reported_at_decoration_time() -> None:
    def body(a: int) -> int:
        return a

    with pytest.raises(TypeError, match="has no parameter 'user'"):
        request_scope(user_id=arg("user"))(body)
    with pytest.raises(InvalidValueError, match="empty"):
        service("")
    with pytest.raises(InvalidValueError, match="outside the allowed set"):
        service("bad\nname")
    with pytest.raises(TypeError, match="metadata keys must be str"):
        request_scope(metadata={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="min_duration"):
        timed(min_duration_ms=-1)


def test_timed_min_duration_keeps_slow_and_failed_calls() -> None:
    @timed(name="filtered", min_duration_ms=10)
    def body(sleep: float, fail: bool = False) -> None:
        if sleep:
            import time

            time.sleep(sleep)
        if fail:
            raise ValueError

    with capture_operations() as ops:
        body(0)
        body(0.02)
        with pytest.raises(ValueError):
            body(0, fail=True)
    assert [(op.status, op.duration_ns >= 10_000_000) for op in ops] == [
        ("ok", True),
        ("error", False),
    ]


# --- the library's own failures never reach user code -----------------------------------------


def test_failing_sink_is_logged_once_and_the_call_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def emit(self, record: Any) -> None:
            raise RuntimeError("sink down")

    @timed
    def body() -> int:
        return 5

    with add_sink(Broken()), capture_operations() as ops:
        results = [body() for _ in range(3)]
    assert results == [5, 5, 5]
    assert len(ops) == 3
    errors = [r for r in caplog.records if r.name == "flext_ctx_aspects" and r.levelno >= 40]
    assert len(errors) == 1
    assert "Broken.emit" in errors[0].getMessage()
    assert sum(internal_error_counts().values()) == 3


def test_failing_source_and_hooks_never_reach_user_code(caplog: pytest.LogCaptureFixture) -> None:
    def explode(_: Any) -> Any:
        raise LookupError("bad transform")

    def bad_before(call: Call) -> None:
        raise RuntimeError("before")

    @request_scope(user_id=arg("user", explode))
    def body(user: str) -> str:
        return user

    @aspect(Advice(before=bad_before))
    async def coro() -> int:
        return 3

    with caplog.at_level(logging.ERROR, logger="flext_ctx_aspects"):
        assert body("u") == "u"
        assert body("u") == "u"
        assert asyncio.run(coro()) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert any("computing context fields" in m for m in messages)
    assert any("before-hook" in m for m in messages)


def test_custom_aspect_hooks_run_in_the_aspect_context_for_every_kind() -> None:
    events: list[tuple[str, str | None, str | None]] = []

    class Audit:
        def advise(self, target: Target) -> Advice:
            return Advice(
                fields={"service_name": "audited"},
                before=lambda call: events.append(
                    ("before", target.qualname, FlextContext.Service.get_service_name())
                ),
                after=lambda call, error: events.append(
                    ("after", type(error).__name__ if error else None, call.args[0])
                ),
            )

    audit = aspect(Audit())

    @audit
    def plain(x: str) -> str:
        return x

    @audit
    async def coro(x: str) -> str:
        return x

    @audit
    def gen(x: str) -> Iterator[str]:
        yield x

    @audit
    async def agen(x: str) -> AsyncIterator[str]:
        yield x

    async def drain() -> list[str]:
        return [item async for item in agen("d")]

    plain("a")
    asyncio.run(coro("b"))
    list(gen("c"))
    asyncio.run(drain())
    assert [e[0] for e in events] == ["before", "after"] * 4
    assert {e[2] for e in events if e[0] == "before"} == {"audited"}
    assert [e[2] for e in events if e[0] == "after"] == ["a", "b", "c", "d"]


def test_aspect_accepts_a_function_and_rejects_nonsense() -> None:
    by_function = aspect(lambda target: Advice(fields={"service_name": target.qualname}))

    @by_function
    def named() -> str | None:
        return FlextContext.Service.get_service_name()

    assert named().endswith("named")  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="aspect\\(\\) takes"):
        aspect(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not callable"):
        timed(42)  # type: ignore[call-overload]


def test_stacked_decorators_in_one_pass_equal_the_same_stack_applied_one_by_one() -> None:
    from flext_ctx_aspects._engine import aspects_of
    from flext_ctx_aspects.aspects import stacked

    def work(x: int) -> str | None:
        return FlextContext.Correlation.get_parent_correlation_id() if x else None

    outer, inner = timed(name="op"), with_correlation()
    one_pass = stacked((outer, inner))(work)
    one_by_one = outer(inner(work))
    assert aspects_of(one_pass) == aspects_of(one_by_one)
    with FlextContext.Correlation.new_correlation() as root, capture_operations() as ops:
        assert one_pass(1) == one_by_one(1) == root
    assert [(op.name, op.parent_correlation_id) for op in ops] == [("op", root), ("op", root)]
