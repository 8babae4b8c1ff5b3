"""Engine faults of issue 9: each test compares with the undecorated callable where it can.

Binding and kind detection of callables that are not functions, implicit classmethods, the
names of the objects a decorated call creates, coroutines ended before their first step,
the body never running inside the library's ``except`` block, a ``BaseException`` from a
sink, concurrent decoration, and the one conversion rule for field values.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from flext_ctx_aspects import (
    ContextField,
    FlextContext,
    _compile,
    _state,
    arg,
    request_scope,
    service,
    timed,
    with_correlation,
)
from flext_ctx_aspects._diagnostics import internal_error_counts
from flext_ctx_aspects._engine import detect_kind
from flext_ctx_aspects.aspects import Advice, Call, Timing, aspect
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.sinks import add_sink
from flext_ctx_aspects.testing import capture_operations


class FaultContext(FlextContext):
    fault_tenant = ContextField(header="X-Fault-Tenant")
    fault_code = ContextField(header="X-Fault-Code", validator=str.isdigit)


def snapshot() -> tuple[Any, Any]:
    return _state.get(), _state.get_operation()


def combine(*args: Any) -> tuple[Any, ...]:
    return args


async def combine_async(*args: Any) -> tuple[Any, ...]:
    await asyncio.sleep(0)
    return (FlextContext.Service.get_service_name(), *args)


# --- 1. binding exactly as the wrapped object would ------------------------------------------


class Other:
    def method(self, *args: Any) -> tuple[Any, ...]:
        return (self, *args)


class CallableObject:
    def __call__(self, *args: Any) -> tuple[Any, ...]:
        return args


class SelfReturningDescriptor:
    """A callable whose __get__ returns itself: no binding."""

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self

    def __call__(self, *args: Any) -> tuple[Any, ...]:
        return ("descriptor", *args)


class BindingDescriptor:
    """A callable whose __get__ binds: the instance is passed, as undecorated."""

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else functools.partial(self, instance)

    def __call__(self, *args: Any) -> tuple[Any, ...]:
        return ("bound", *args)


OTHER = Other()
hooked = aspect(Advice(before=lambda call: None))


def _objects() -> dict[str, Any]:
    return {
        "partial": functools.partial(combine, 1),
        "callable-instance": CallableObject(),
        "bound-method": OTHER.method,
        "self-returning-descriptor": SelfReturningDescriptor(),
        "binding-descriptor": BindingDescriptor(),
    }


@pytest.mark.parametrize(
    "decorator", [timed, service("s"), hooked], ids=["timed", "fields", "hooks"]
)
@pytest.mark.parametrize("shape", list(_objects()))
def test_class_attributes_bind_as_the_wrapped_object(shape: str, decorator: Any) -> None:
    plain = _objects()[shape]

    class Undecorated:
        attribute = plain

    class Decorated:
        attribute = decorator(_objects()[shape])

    expected = Undecorated().attribute(2)
    actual = Decorated().attribute(2)
    # The instance differs between the two classes; compare its class name.
    normalise = lambda values: tuple(  # noqa: E731
        "<instance>" if isinstance(v, (Undecorated, Decorated)) else v for v in values
    )
    assert normalise(actual) == normalise(expected)
    assert Decorated.attribute(3) == Undecorated.attribute(3)


def test_hooks_see_no_instance_for_a_partial_used_as_attribute() -> None:
    calls: list[Call] = []
    spy = aspect(Advice(before=calls.append, fields={"user_id": arg("who")}))

    def greet(greeting: str, who: str) -> str:
        return f"{greeting} {who} {FlextContext.Request.get_user_id()}"

    class Host:
        hello = spy(functools.partial(greet, "hello"))

    assert Host().hello("bob") == "hello bob bob"
    (call,) = calls
    assert call.instance is None
    assert call.args == ("bob",)


# --- 2. kind detection by what calling the object does ---------------------------------------


class AsyncHandler:
    async def __call__(self, value: int) -> tuple[str | None, int]:
        await asyncio.sleep(0)
        return FlextContext.Service.get_service_name(), value


class GeneratorHandler:
    def __call__(self, count: int) -> Iterator[str | None]:
        for _ in range(count):
            yield FlextContext.Service.get_service_name()


class AsyncGeneratorHandler:
    async def __call__(self, count: int) -> AsyncIterator[str | None]:
        for _ in range(count):
            await asyncio.sleep(0)
            yield FlextContext.Service.get_service_name()


def test_kind_is_what_calling_the_object_does() -> None:
    assert detect_kind(AsyncHandler()) == "coroutine"
    assert detect_kind(GeneratorHandler()) == "generator"
    assert detect_kind(AsyncGeneratorHandler()) == "async_generator"
    assert detect_kind(functools.partial(combine_async, 1)) == "coroutine"
    assert detect_kind(functools.partial(functools.partial(AsyncHandler()), 1)) == "coroutine"
    assert detect_kind(AsyncHandler().__call__) == "coroutine"
    assert detect_kind(CallableObject()) == "function"
    assert detect_kind(AsyncHandler) == "function"  # calling a class makes an instance


def test_async_call_and_partials_run_the_whole_body_in_scope() -> None:
    async def scenario() -> list[Any]:
        results = [await service("api")(AsyncHandler())(1)]
        results.append(await service("api")(functools.partial(combine_async, 7))())
        results.append([item async for item in service("api")(AsyncGeneratorHandler())(2)])
        results.append(list(service("api")(GeneratorHandler())(2)))
        return results

    assert asyncio.run(scenario()) == [("api", 1), ("api", 7), ["api", "api"], ["api", "api"]]
    assert _state.get() == _state.EMPTY


# --- 3. implicit classmethods and __new__ ----------------------------------------------------


def test_implicit_classmethods_decorated_directly_keep_the_class_working() -> None:
    with capture_operations() as ops:

        class Base:
            registry: list[tuple[str, dict[str, Any]]] = []  # noqa: RUF012

            @timed
            def __init_subclass__(cls, **kwargs: Any) -> None:
                super().__init_subclass__()
                Base.registry.append((cls.__name__, kwargs))

            @service("generic")
            def __class_getitem__(cls, item: Any) -> tuple[type, Any, str | None]:
                return cls, item, FlextContext.Service.get_service_name()

            @timed
            def __new__(cls, *args: Any) -> Any:
                instance = super().__new__(cls)
                instance.args = args
                return instance

        class Child(Base, flavour="x"):
            pass

        child = Child(1, 2)
    assert Base.registry == [("Child", {"flavour": "x"})]
    assert Base[int] == (Base, int, "generic")
    assert Child[str] == (Child, str, "generic")
    assert child.args == (1, 2)  # type: ignore[attr-defined]
    assert isinstance(Base.__dict__["__init_subclass__"], classmethod)
    assert isinstance(Base.__dict__["__class_getitem__"], classmethod)
    assert isinstance(Base.__dict__["__new__"], staticmethod)
    assert [op.name.rsplit(".", 1)[-1] for op in ops] == ["__init_subclass__", "__new__"]


# --- 4. names ----------------------------------------------------------------------------------


def work(first: int, second: int) -> int:
    return first + second


async def fetch() -> int:
    await asyncio.sleep(0)
    return 1


def numbers() -> Iterator[int]:
    yield 1


async def stream() -> AsyncIterator[int]:
    yield 1


def test_a_partial_is_recorded_under_the_function_it_calls() -> None:
    with capture_operations() as ops:
        assert timed(functools.partial(work, 1))(2) == 3
        assert timed(CallableObject())(1) == (1,)
    assert [op.name for op in ops] == [f"{__name__}.work", f"{__name__}.CallableObject"]


@pytest.mark.parametrize(
    "function",
    [fetch, numbers, stream, functools.partial(fetch), AsyncHandler(), GeneratorHandler()],
    ids=["coroutine", "generator", "async-generator", "partial", "async-call", "generator-call"],
)
@pytest.mark.parametrize(
    "decorator",
    [timed, with_correlation, aspect(Advice(before=lambda call: None)), timed(name="x")],
    ids=["timed", "fields", "hooks", "named"],
)
def test_created_objects_carry_the_user_names(function: Any, decorator: Any) -> None:
    args = (1,) if isinstance(function, GeneratorHandler) else ()
    args = (1,) if isinstance(function, AsyncHandler) else args
    undecorated = function(*args)
    decorated = decorator(function)(*args)
    try:
        assert decorated.__name__ == undecorated.__name__
        assert decorated.__qualname__ == undecorated.__qualname__
        assert type(decorated) is type(undecorated)
    finally:
        for made in (undecorated, decorated):
            closing = getattr(made, "close", None)
            if closing is not None:
                closing()


def test_task_repr_and_never_awaited_warning_name_the_user_function() -> None:
    async def scenario() -> str:
        task = asyncio.ensure_future(timed(fetch)())
        text = repr(task)
        await task
        return text

    assert f"coro=<{fetch.__qualname__}()" in asyncio.run(scenario())
    assert "run_in_scope" not in asyncio.run(scenario())

    def never_awaited(function: Any) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coroutine = function()
            del coroutine
        return [str(w.message) for w in caught]

    assert never_awaited(timed(fetch)) == never_awaited(fetch)
    assert never_awaited(fetch) == [f"coroutine '{fetch.__qualname__}' was never awaited"]


# --- 5. recursion depth -----------------------------------------------------------------------


def test_recursion_depth_of_a_decorated_function() -> None:
    # Python frames count towards the recursion limit, and before 3.12 so do C calls; a
    # decorated call adds the driver's frame (and, before 3.12, wrapt's C call). Measured
    # in the report; the floor here is what a functools.wraps closure reaches, minus 1/3.
    def plain(n: int) -> int:
        reached.append(n)
        return plain(n + 1)

    @timed
    def decorated(n: int) -> int:
        reached.append(n)
        return decorated(n + 1)

    def wrapping(function: Callable[[int], int]) -> Callable[[int], int]:
        @functools.wraps(function)
        def inner(n: int) -> int:
            return function(n)

        return inner

    @wrapping
    def closure(n: int) -> int:
        reached.append(n)
        return closure(n + 1)

    depths = {}
    for name, function in (("plain", plain), ("timed", decorated), ("wraps", closure)):
        reached: list[int] = []
        with pytest.raises(RecursionError):
            function(0)
        depths[name] = len(reached)
    from flext_ctx_aspects import _engine

    if _engine._FunctionWrapperBase.__module__ == "wrapt.wrappers":
        # wrapt's pure-Python implementation (WRAPT_DISABLE_EXTENSIONS=1): its __call__ is
        # one more Python frame per level.
        assert depths["timed"] >= depths["wraps"] * 2 // 5, depths
        return
    assert depths["timed"] >= depths["wraps"] * 2 // 3, depths
    if sys.version_info >= (3, 12):
        # C calls no longer count: the driver's frame is the only extra one per level.
        assert depths["timed"] >= depths["plain"] * 45 // 100, depths
    if _engine.VECTORCALL_WRAPPER and _engine._compiled_driver is not None:
        # No Python frame and no counted C call of ours per level: as deep as undecorated,
        # except on 3.12, whose separate C limit (1,500 units, 2 per Python call made from
        # C) stops any C wrapper at three quarters of the default limit.
        share = 70 if sys.version_info[:2] == (3, 12) else 95
        assert depths["timed"] >= depths["plain"] * share // 100, depths


# --- 8. coroutines ended before their first step ----------------------------------------------


def _warnings_of(scenario: Callable[[], Any]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenario()
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def _ended_early(function: Callable[[], Any], how: str) -> Callable[[], Any]:
    def scenario() -> None:
        if how == "close":
            function().close()
        elif how == "throw":
            with pytest.raises(KeyError):
                function().throw(KeyError("early"))
        elif how == "cancel":

            async def main() -> None:
                task = asyncio.ensure_future(function())
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            asyncio.run(main())
        elif how == "taskgroup":

            async def failing() -> None:
                raise ValueError("sibling")

            async def main() -> None:
                async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
                    group.create_task(failing())
                    group.create_task(function())

            with pytest.raises(BaseException) as raised:
                asyncio.run(main())
            assert "sibling" in repr(raised.value.exceptions)  # type: ignore[attr-defined]

    return scenario


HOWS = ["close", "throw", "cancel"] + (["taskgroup"] if sys.version_info >= (3, 11) else [])


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize(
    "decorator",
    [timed, with_correlation, service("s"), aspect(Advice(after=lambda call, error: None))],
    ids=["timed", "fields", "service", "hooks"],
)
@pytest.mark.parametrize(
    "function",
    [fetch, functools.partial(fetch), functools.partial(AsyncHandler(), 1)],
    ids=["async-def", "partial", "async-call"],
)
def test_coroutine_ended_before_its_first_step_warns_as_undecorated(
    decorator: Any, how: str, function: Any
) -> None:
    assert _warnings_of(_ended_early(decorator(function), how)) == _warnings_of(
        _ended_early(function, how)
    )


# --- 10. the body never runs inside the library's except block -------------------------------


def _failing_source() -> Any:
    return arg("value", lambda v: 1 / 0)


def _clean_body_checks() -> dict[str, Any]:
    # Each decorator shape reaches a different driver path.
    return {
        "fields-only": request_scope(user_id=_failing_source()),
        "fields-and-timing": lambda f: timed(request_scope(user_id=_failing_source())(f)),
        "general": lambda f: aspect(
            Advice(fields={"user_id": _failing_source()}, after=lambda c, e: None)
        )(f),
        "custom-field": aspect(Advice(fields={"fault_tenant": _failing_source()})),
    }


@pytest.mark.parametrize("kind", ["function", "coroutine", "generator", "async_generator"])
@pytest.mark.parametrize("shape", list(_clean_body_checks()))
def test_body_never_sees_the_library_error(shape: str, kind: str) -> None:
    decorate = _clean_body_checks()[shape]
    seen: list[Any] = []

    def inspect_state() -> None:
        seen.append(sys.exc_info())
        try:
            raise LookupError("user")
        except LookupError as exc:
            seen.append(exc.__context__)

    def function(value: int) -> int:
        inspect_state()
        return value

    async def coroutine(value: int) -> int:
        inspect_state()
        return value

    def generator(value: int) -> Iterator[int]:
        inspect_state()
        yield value

    async def async_generator(value: int) -> AsyncIterator[int]:
        inspect_state()
        yield value

    bodies = {
        "function": function,
        "coroutine": coroutine,
        "generator": generator,
        "async_generator": async_generator,
    }
    decorated = decorate(bodies[kind])

    async def drive_async() -> Any:
        if kind == "coroutine":
            return await decorated(5)
        return [item async for item in decorated(5)]

    if kind == "function":
        assert decorated(5) == 5
    elif kind == "generator":
        assert list(decorated(5)) == [5]
    else:
        asyncio.run(drive_async())
    assert seen == [(None, None, None), None]
    assert sum(internal_error_counts().values()) == 1  # the failure was reported


# --- 11. a BaseException from a sink -----------------------------------------------------------


class Interrupting:
    def emit(self, record: Any) -> None:
        raise KeyboardInterrupt


def _sink_shapes() -> dict[str, Callable[[Any], Any]]:
    return {
        "timed": timed,
        "fused": lambda f: with_correlation(service("s")(timed(f))),
        "general": lambda f: aspect(Advice(fields={"service_name": "s"}, after=lambda c, e: None))(
            timed(f)
        ),
    }


@pytest.mark.parametrize("fails", [False, True], ids=["returns", "raises"])
@pytest.mark.parametrize("kind", ["function", "coroutine", "generator", "async_generator"])
@pytest.mark.parametrize("shape", list(_sink_shapes()))
def test_a_sink_raising_a_base_exception_leaves_the_caller_context_as_it_was(
    shape: str, kind: str, fails: bool
) -> None:
    def function() -> int:
        if fails:
            raise ValueError("body")
        return 1

    async def coroutine() -> int:
        return function()

    def generator() -> Iterator[int]:
        yield function()

    async def async_generator() -> AsyncIterator[int]:
        yield function()

    bodies = {
        "function": function,
        "coroutine": coroutine,
        "generator": generator,
        "async_generator": async_generator,
    }
    decorated = _sink_shapes()[shape](bodies[kind])

    async def drive_async() -> None:
        # Inside the task: the context the awaiting code runs in.
        before = snapshot()
        with pytest.raises(KeyboardInterrupt):
            if kind == "coroutine":
                await decorated()
            else:
                [item async for item in decorated()]
        assert snapshot() == before

    def drive_by_hand() -> None:
        # Driven in the caller's own Context, as an event loop step would be.
        before = snapshot()
        made = decorated()
        step = made.send if kind == "coroutine" else made.__anext__().send
        with pytest.raises((KeyboardInterrupt, StopIteration)) as raised:
            step(None)
        if raised.type is StopIteration:  # the async generator's first item
            with pytest.raises(KeyboardInterrupt):
                made.__anext__().send(None)
        assert snapshot() == before

    with add_sink(Interrupting()), FlextContext.Correlation.new_correlation("caller"):
        before = snapshot()
        if kind == "function":
            with pytest.raises(KeyboardInterrupt):
                decorated()
        elif kind == "generator":
            with pytest.raises(KeyboardInterrupt):
                list(decorated())
        else:
            asyncio.run(drive_async())
            drive_by_hand()
        assert snapshot() == before


# --- 16. concurrent decoration with the shape cache full ---------------------------------------


def test_concurrent_decoration_with_a_full_shape_cache() -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def decorate_many(worker: int) -> None:
        barrier.wait()
        try:
            for index in range(400):
                # A distinct field name per decoration: a distinct compiled shape.
                field = f"shape_{worker}_{index}"
                aspect(Advice(fields={field: arg("value")}))(tenant_function)
        except BaseException as exc:
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    _compile.set_cache_size(2)
    try:
        threads = [threading.Thread(target=decorate_many, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        _compile.set_cache_size(_compile.DEFAULT_CACHE_SIZE)
        sys.setswitchinterval(switch)
    assert errors == []


# --- 17. one conversion rule for every field ---------------------------------------------------


def tenant_function(tenant: Any, value: Any = None) -> tuple[Any, ...]:
    return (
        FaultContext.fault_tenant.get(),
        FaultContext.Request.get_user_id(),
        FlextContext.Serialization.get_correlation_context(),
    )


def test_values_from_the_call_are_converted_for_every_field() -> None:
    decorated = aspect(Advice(fields={"fault_tenant": arg("tenant"), "user_id": arg("tenant")}))(
        tenant_function
    )
    tenant, user, context = decorated(42)
    assert (tenant, user) == ("42", "42")
    assert context["X-Fault-Tenant"] == "42"


def test_a_value_from_the_call_that_the_field_refuses_is_dropped_and_reported() -> None:
    def body(code: Any) -> str | None:
        return FaultContext.fault_code.get()

    decorated = aspect(Advice(fields={"fault_code": arg("code")}))(body)
    assert decorated(123) == "123"
    assert decorated("12a") is None  # refused by the field's validator: not stored
    with FaultContext.fault_code.scope("7"):
        assert decorated("x y") == "7"  # the field keeps the value it had
    assert decorated(None) is None
    ((where, error_type),) = internal_error_counts()
    assert "fault_code" in where
    assert error_type == "InvalidValueError"


def test_constants_are_converted_or_refused_at_decoration_time() -> None:
    def body() -> tuple[Any, ...]:
        return (
            FlextContext.Correlation.get_correlation_id(),
            FaultContext.fault_tenant.get(),
            FlextContext.Serialization.get_correlation_context(),
        )

    decorated = aspect(Advice(fields={"correlation_id": 123, "fault_tenant": 7}))(body)
    correlation, tenant, context = decorated()
    assert (correlation, tenant) == ("123", "7")
    assert context["X-Correlation-Id"] == "123"
    with pytest.raises(InvalidValueError, match="fault_code"):
        aspect(Advice(fields={"fault_code": "abc"}))(body)
    with pytest.raises(InvalidValueError, match="fault_tenant"):
        aspect(Advice(fields={"fault_tenant": "bad\nvalue"}))(body)
    with pytest.raises(TypeError, match="request_metadata must be a mapping"):
        aspect(Advice(fields={"request_metadata": ["not", "a", "mapping"]}))(body)


# --- siblings ----------------------------------------------------------------------------------


def _interrupt(call: Call) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("kind", ["function", "coroutine"])
def test_a_before_hook_raising_a_base_exception_leaves_no_scope(kind: str) -> None:
    interrupting = aspect(Advice(fields={"service_name": "s"}, before=_interrupt))

    @interrupting
    @timed
    def function() -> int:
        return 1

    @interrupting
    @timed
    async def coroutine() -> int:
        return 1

    with FlextContext.Correlation.new_correlation("caller"):
        before = snapshot()
        with pytest.raises(KeyboardInterrupt):
            if kind == "function":
                function()
            else:
                coroutine().send(None)  # driven in this Context
        assert snapshot() == before


def test_an_id_generator_returning_a_non_str_follows_the_same_rule() -> None:
    from flext_ctx_aspects import _ids

    seen: list[Any] = []

    @with_correlation
    def body() -> None:
        seen.append(FlextContext.Correlation.get_correlation_id())

    original = _ids.active_generator[0]
    try:
        _ids.set_generator(lambda: 12345)  # type: ignore[arg-type, return-value]
        body()
        _ids.set_generator(lambda: None)  # type: ignore[arg-type, return-value]
        body()
    finally:
        _ids.set_generator(original)
    assert seen[0] == "12345"
    assert isinstance(seen[1], str)
    assert len(seen[1]) == 32  # replaced by a default id, and reported
    assert sum(internal_error_counts().values()) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Timing(keep_errors="false"), "keep_errors must be a bool"),
        (lambda: Timing(measure_body=1), "measure_body must be a bool"),
        (lambda: Advice(fields=[("user_id", "u")]), "fields must be a mapping"),
        (lambda: Advice(fields={1: "u"}), "field name must be a str"),
        (lambda: Advice(timing="yes"), "timing must be a Timing"),
        (lambda: Advice(before="hook"), "before must be callable"),
    ],
    ids=["keep-errors-string", "measure-body-int", "fields-list", "field-name", "timing", "hook"],
)
def test_advice_and_timing_options_are_type_checked(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


class Text(str):
    upper_timed = timed(str.upper)


def test_a_builtin_method_descriptor_binds_through_its_own_get() -> None:
    # Not a plain function: bound by the descriptor path, as undecorated.
    assert Text("abc").upper_timed() == "ABC"
    assert Text.upper_timed("x") == "X"


@pytest.mark.skipif(sys.version_info[:2] != (3, 13), reason="the warning exists on 3.13 only")
def test_a_partial_read_through_an_instance_warns_for_the_caller_as_undecorated() -> None:
    class Undecorated:
        attribute = functools.partial(combine, 1)

    class Decorated:
        attribute = timed(functools.partial(combine, 1))

    def where(host: type) -> list[tuple[str, str, str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            host().attribute  # noqa: B018 - the access warns
        return [(w.category.__name__, str(w.message), w.filename) for w in caught]

    assert where(Decorated) == where(Undecorated)
    assert where(Undecorated)[0][2] == __file__


class WithMethods:
    async def method(
        self, a: int, /, b: int = 2, *rest: int, c: int, d: int = 4, **more: int
    ) -> int:
        return a

    @classmethod
    async def klass(cls, a: int, *, b: int) -> int:
        return a

    @staticmethod
    async def static(a: int) -> int:
        return a


async def signature_rich(a: int, /, b: int = 2, *rest: int, c: int, d: int = 4, **more: int) -> int:
    return a


BAD_CALLS: list[tuple[Any, ...]] = [
    (),
    (1,),
    (1, 2, 3),
    (1,),
]
BAD_KWARGS: list[dict[str, Any]] = [{}, {"a": 1, "c": 3}, {"b": 1, "c": 3}, {"c": 3, "zz": 1}]


@pytest.mark.parametrize("hooks", [False, True], ids=["plain", "hooks"])
@pytest.mark.parametrize(
    "reach",
    [
        lambda owner: signature_rich,
        lambda owner: owner().method,
        lambda owner: owner.klass,
        lambda owner: owner().static,
        lambda owner: owner.static,
    ],
    ids=["function", "method", "classmethod", "staticmethod-instance", "staticmethod-class"],
)
def test_coroutine_calls_bind_exactly_as_undecorated(reach: Any, hooks: bool) -> None:
    decorate = aspect(Advice(after=lambda c, e: None)) if hooks else timed
    undecorated = reach(WithMethods)

    class Decorated:
        method = decorate(WithMethods.__dict__["method"])
        klass = decorate(WithMethods.__dict__["klass"])
        static = decorate(WithMethods.__dict__["static"])

    decorated = (
        decorate(signature_rich) if reach(WithMethods) is signature_rich else reach(Decorated)
    )

    def outcome(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            made = function(*args, **kwargs)
        except TypeError as exc:
            return ("TypeError", str(exc))
        try:
            made.send(None)
        except StopIteration as stop:
            return ("value", stop.value)
        return ("suspended",)  # pragma: no cover - the bodies never suspend

    for args in BAD_CALLS:
        for kwargs in BAD_KWARGS:
            assert outcome(decorated, args, kwargs) == outcome(undecorated, args, kwargs), (
                args,
                kwargs,
            )
