"""The aspect x callable kind x binding matrix.

Every aspect (and a fused stack of all four, and a custom aspect) is applied to every callable
kind (function, coroutine, generator, async generator) in every binding (plain function,
instance method, classmethod and staticmethod with the decorator above and below), and the
same contract is checked for each: the body sees the aspect's context, the caller's context
is exactly as before afterwards (and, for generators, between yields), values and exceptions
pass through unchanged, and timed aspects record the call.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flext_ctx_aspects import (
    ContextField,
    FlextContext,
    _state,
    arg,
    request_scope,
    service,
    timed,
    with_correlation,
)
from flext_ctx_aspects.aspects import Advice, aspect
from flext_ctx_aspects.testing import capture_operations


class TenantContext(FlextContext):
    tenant_id = ContextField(header="X-Tenant-Id")


tenant_scope = aspect(Advice(fields={"tenant_id": arg("user", lambda u: f"tenant-of-{u}")}))


def observe() -> dict[str, Any]:
    """What the body sees."""
    FlextContext.Performance.add_operation_metadata("seen", True)
    return {
        "correlation_id": FlextContext.Correlation.get_correlation_id(),
        "parent": FlextContext.Correlation.get_parent_correlation_id(),
        "service": FlextContext.Service.get_service_name(),
        "version": FlextContext.Service.get_service_version(),
        "user": FlextContext.Request.get_user_id(),
        "request_id": FlextContext.Request.get_request_id(),
        "operation": FlextContext.Request.get_operation_name(),
        "tenant": TenantContext.tenant_id.get(),
    }


# --- the aspects under test ----------------------------------------------------------------

ASPECTS: dict[str, list[Callable[[Any], Any]]] = {
    "correlation": [with_correlation],
    "service": [service("svc", "1.0")],
    "timed": [timed],
    "request": [request_scope(user_id=arg("user"))],
    "fused": [with_correlation, service("svc", "1.0"), timed, request_scope(user_id=arg("user"))],
    "custom": [tenant_scope],
}
TIMED = {"timed", "fused"}


def check_seen(aspect_name: str, seen: dict[str, Any], caller_id: str, qualname: str) -> None:
    if aspect_name in ("correlation", "fused"):
        assert seen["correlation_id"] not in (None, caller_id)
        assert seen["parent"] == caller_id
    else:
        assert seen["correlation_id"] == caller_id
    if aspect_name in ("service", "fused"):
        assert (seen["service"], seen["version"]) == ("svc", "1.0")
    else:
        assert seen["service"] is None
    if aspect_name in ("request", "fused"):
        assert seen["user"] == "u1"
        assert seen["request_id"] is not None
        assert seen["operation"] == qualname
    else:
        assert seen["user"] is None
    assert seen["tenant"] == ("tenant-of-u1" if aspect_name == "custom" else None)


# --- the callables under test: built from one template per kind ----------------------------

BODIES = {
    "function": """
        {head}def {name}({params}):
            seen.append(observe())
            if fail:
                raise ValueError("boom")
            return user * 2
    """,
    "coroutine": """
        {head}async def {name}({params}):
            seen.append(observe())
            await asyncio.sleep(0)
            seen.append(observe())
            if fail:
                raise ValueError("boom")
            return user * 2
    """,
    "generator": """
        {head}def {name}({params}):
            seen.append(observe())
            sent = yield user
            seen.append(observe())
            if fail:
                raise ValueError("boom")
            yield sent
            return "done"
    """,
    "async_generator": """
        {head}async def {name}({params}):
            seen.append(observe())
            await asyncio.sleep(0)
            sent = yield user
            seen.append(observe())
            if fail:
                raise ValueError("boom")
            yield sent
    """,
}
BINDINGS = {
    # binding: (template for the decorators, parameters, how to reach the callable)
    "function": ("@deco\n", "user, fail=False", "target"),
    "method": ("@deco\n", "self, user, fail=False", "Host().target"),
    "classmethod-above": ("@deco\n@classmethod\n", "cls, user, fail=False", "SubHost.target"),
    "classmethod-below": ("@classmethod\n@deco\n", "cls, user, fail=False", "SubHost.target"),
    "staticmethod-above": ("@deco\n@staticmethod\n", "user, fail=False", "Host().target"),
    "staticmethod-below": ("@staticmethod\n@deco\n", "user, fail=False", "Host.target"),
}
# Callables that are not plain functions, decorated as objects: (parameters of the body,
# the source around the body (named "target"), how to reach the callable, its qualname).
# The body is what calling the object runs, so a callable instance's __call__ may be
# ``async def`` or a generator, and a partial of a coroutine function is a coroutine.
SHAPES = {
    "partial": (
        "tag, user, fail=False",
        "{body}\nmade = deco(functools.partial(target, 'tag'))\n",
        "made",
        "target",
    ),
    "partial-attribute": (
        "tag, user, fail=False",
        "{body}\nclass Host:\n    made = deco(functools.partial(target, 'tag'))\n",
        "Host().made",
        "target",
    ),
    "callable-instance": (
        "self, user, fail=False",
        "class Impl:\n{indented}\nmade = deco(Impl())\n",
        "made",
        "Impl",
    ),
    "callable-instance-attribute": (
        "self, user, fail=False",
        "class Impl:\n{indented}\nclass Host:\n    made = deco(Impl())\n",
        "Host().made",
        "Impl",
    ),
    "bound-method-attribute": (
        "self, user, fail=False",
        "class Other:\n{indented}\nclass Host:\n    made = deco(Other().target)\n",
        "Host().made",
        "Other.target",
    ),
    # type() makes these two implicit classmethods, but only of real functions.
    "implicit-classmethod": (
        "cls, user, fail=False",
        "class Host:\n{indented}\n",
        "Host.__init_subclass__",
        "Host.__init_subclass__",
    ),
}


@dataclass
class Built:
    call: Callable[..., Any]
    seen: list[dict[str, Any]]
    qualname: str
    classes: tuple[type, ...]


def _namespace(seen: list[dict[str, Any]], deco: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "__name__": "matrix_module",
        "deco": deco,
        "seen": seen,
        "observe": observe,
        "asyncio": asyncio,
        "functools": functools,
    }


def chain(decorators: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def deco(func: Any) -> Any:
        for decorator in reversed(decorators):  # listed outermost first
            func = decorator(func)
        return func

    return deco


def build(
    kind: str,
    binding: str,
    decorators: list[Callable[[Any], Any]],
    bodies: dict[str, str] = BODIES,
    **names: Any,
) -> Built:
    seen: list[dict[str, Any]] = []
    deco = chain(decorators)
    namespace = {**_namespace(seen, deco), **names}
    if binding in SHAPES:
        params, around, reach, qualname = SHAPES[binding]
        name = "__init_subclass__" if binding == "implicit-classmethod" else "target"
        name = "__call__" if around.startswith("class Impl") else name
        head = "@deco\n" if binding == "implicit-classmethod" else ""
        body = textwrap.dedent(bodies[kind]).format(head=head, name=name, params=params)
        source = around.format(body=body, indented=textwrap.indent(body, "    "))
        exec(compile(source, f"<matrix {kind} {binding}>", "exec"), namespace)  # noqa: S102
        target = eval(reach, namespace)  # noqa: S307
        return Built(target, seen, qualname, ())
    head, params, reach = BINDINGS[binding]
    body = textwrap.dedent(bodies[kind]).format(head=head, name="target", params=params)
    if binding == "function":
        source = body
    else:
        source = (
            "class Host:\n" + textwrap.indent(body, "    ") + "\nclass SubHost(Host):\n    pass\n"
        )
    exec(compile(source, f"<matrix {kind} {binding}>", "exec"), namespace)  # noqa: S102
    target = eval(reach, namespace)  # noqa: S307
    qualname = "target" if binding == "function" else "Host.target"
    classes = () if binding == "function" else (namespace["Host"], namespace["SubHost"])
    return Built(target, seen, qualname, classes)


# --- driving each kind ------------------------------------------------------------------------


def snapshot() -> tuple[Any, Any]:
    return _state.get(), _state.get_operation()


def drive_function(call: Callable[..., Any], fail: bool) -> tuple[Any, list[Any]]:
    before = snapshot()
    try:
        result = call("u1", fail=fail)
    finally:
        assert snapshot() == before
    return result, []


def drive_coroutine(call: Callable[..., Any], fail: bool) -> tuple[Any, list[Any]]:
    async def scenario() -> Any:
        before = snapshot()
        try:
            return await call("u1", fail=fail)
        finally:
            assert snapshot() == before

    return asyncio.run(scenario()), []


def drive_generator(call: Callable[..., Any], fail: bool) -> tuple[Any, list[Any]]:
    before = snapshot()
    generator = call("u1", fail=fail)
    between: list[Any] = []
    first = next(generator)
    between.append(snapshot())
    try:
        second = generator.send("sent-value")
        between.append(snapshot())
        with pytest.raises(StopIteration) as stop:
            next(generator)
        result = (first, second, stop.value.value)
    finally:
        assert snapshot() == before
    assert all(s == before for s in between), "aspect context visible between yields"
    return result, between


def drive_async_generator(call: Callable[..., Any], fail: bool) -> tuple[Any, list[Any]]:
    async def scenario() -> Any:
        before = snapshot()
        generator = call("u1", fail=fail)
        try:
            first = await generator.__anext__()
            assert snapshot() == before, "aspect context visible between yields"
            second = await generator.asend("sent-value")
            assert snapshot() == before
            with pytest.raises(StopAsyncIteration):
                await generator.__anext__()
            return (first, second)
        finally:
            assert snapshot() == before

    return asyncio.run(scenario()), []


DRIVERS = {
    "function": drive_function,
    "coroutine": drive_coroutine,
    "generator": drive_generator,
    "async_generator": drive_async_generator,
}
EXPECTED_RESULT = {
    "function": "u1u1",
    "coroutine": "u1u1",
    "generator": ("u1", "sent-value", "done"),
    "async_generator": ("u1", "sent-value"),
}

MATRIX = [
    pytest.param(aspect_name, kind, binding, id=f"{aspect_name}-{kind}-{binding}")
    for aspect_name in ASPECTS
    for kind in BODIES
    for binding in [*BINDINGS, *SHAPES]
]


@pytest.mark.parametrize(("aspect_name", "kind", "binding"), MATRIX)
def test_contract(aspect_name: str, kind: str, binding: str) -> None:
    built = build(kind, binding, ASPECTS[aspect_name])
    with (
        FlextContext.Correlation.new_correlation("caller-cid") as caller_id,
        capture_operations() as ops,
    ):
        result, _ = DRIVERS[kind](built.call, False)
    assert result == EXPECTED_RESULT[kind]
    assert built.seen, "the body did not run"
    for seen in built.seen:
        check_seen(aspect_name, seen, caller_id, built.qualname)
    if kind in ("generator", "async_generator", "coroutine"):
        # Context changes persist across the body's own suspension points.
        assert built.seen[0] == built.seen[-1]
    if aspect_name in TIMED:
        (record,) = ops
        assert record.name == f"matrix_module.{built.qualname}"
        assert record.status == "ok"
        assert record.kind == kind
        assert dict(record.metadata) == {"seen": True}
        assert record.correlation_id == built.seen[0]["correlation_id"]
    else:
        assert ops == []


@pytest.mark.parametrize(("aspect_name", "kind", "binding"), MATRIX)
def test_exceptions_pass_through_and_are_recorded(
    aspect_name: str, kind: str, binding: str
) -> None:
    built = build(kind, binding, ASPECTS[aspect_name])
    with capture_operations() as ops, pytest.raises(ValueError, match="boom") as raised:
        DRIVERS[kind](built.call, True)
    # The user's frame is in the traceback.
    frames = []
    tb = raised.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] in ("target", "__call__", "__init_subclass__")
    if aspect_name in TIMED:
        (record,) = ops
        assert record.status == "error"
        assert record.error_type == "ValueError"
    else:
        assert ops == []


# --- the generator protocol, with the undecorated function as the oracle ---------------------
#
# One body per kind that reacts to whatever is thrown into it as told by ``reactions``:
# re-raise it, catch it and yield, catch it and return, or raise something else instead.
# Each scenario is a list of protocol actions; it is run on the undecorated callable and on
# the decorated one, and the two transcripts (what every action returned or raised, the
# warnings and unraisable errors seen, close()'s return value) must be equal.

PROTOCOL_BODIES = {
    "generator": """
        {head}def {name}({params}):
            seen.append(observe())
            while True:
                try:
                    received = yield ("ready", user)
                    seen.append(observe())
                    if received == "finish":
                        return ("returned", user)
                except BaseException as exc:
                    seen.append(observe())
                    reaction = reactions.get(type(exc).__name__, "propagate")
                    if reaction == "propagate":
                        raise
                    if reaction == "yield":
                        yield ("caught", type(exc).__name__)
                    elif reaction == "return":
                        return ("returned-from", type(exc).__name__)
                    else:
                        raise LookupError("instead of " + type(exc).__name__) from None
    """,
    "async_generator": """
        {head}async def {name}({params}):
            seen.append(observe())
            while True:
                try:
                    received = yield ("ready", user)
                    await asyncio.sleep(0)
                    seen.append(observe())
                    if received == "finish":
                        return
                except BaseException as exc:
                    seen.append(observe())
                    reaction = reactions.get(type(exc).__name__, "propagate")
                    if reaction == "propagate":
                        raise
                    if reaction == "yield":
                        yield ("caught", type(exc).__name__)
                    elif reaction == "return":
                        return
                    else:
                        raise LookupError("instead of " + type(exc).__name__) from None
    """,
}
THROWN: dict[str, type[BaseException]] = {
    "ValueError": ValueError,
    "StopIteration": StopIteration,
    "GeneratorExit": GeneratorExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "CancelledError": asyncio.CancelledError,
}
REACTIONS = ("propagate", "yield", "return", "raise-other")


def _scenarios() -> dict[str, tuple[dict[str, str], list[tuple[str, Any]]]]:
    scenarios: dict[str, tuple[dict[str, str], list[tuple[str, Any]]]] = {
        "close-unstarted": ({}, [("close", None), ("next", None)]),
        "throw-unstarted": ({}, [("throw", ValueError), ("next", None)]),
        "send-and-return": ({}, [("next", None), ("send", "x"), ("send", "finish")]),
        "abandoned": ({}, [("next", None)]),  # collected while suspended
    }
    for name, exc_type in THROWN.items():
        for reaction in REACTIONS:
            scenarios[f"throw-{name}-{reaction}"] = (
                {name: reaction},
                [
                    ("next", None),
                    ("send", "x"),
                    ("throw", exc_type),
                    ("next", None),
                    ("close", None),
                ],
            )
    for reaction in REACTIONS:
        scenarios[f"close-{reaction}"] = (
            {"GeneratorExit": reaction},
            [("next", None), ("close", None), ("next", None), ("close", None)],
        )
    return scenarios


SCENARIOS = _scenarios()
KIND_IDS = {"generator": "gen", "async_generator": "asyncgen"}


def outcome(action: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        value = action()
    except StopIteration as stop:
        return ("stop", stop.value)
    except StopAsyncIteration:
        return ("stop",)
    except BaseException as exc:  # every exception is part of the transcript
        return ("raise", type(exc).__name__, str(exc))
    return ("value", value)


async def outcome_async(action: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        value = await action()
    except StopAsyncIteration:
        return ("stop",)
    except BaseException as exc:
        return ("raise", type(exc).__name__, str(exc))
    return ("value", value)


def run_generator(generator: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    before = snapshot()
    transcript: list[Any] = []
    for action, value in steps:
        if action == "next":
            transcript.append(outcome(lambda: next(generator)))
        elif action == "send":
            transcript.append(outcome(lambda value=value: generator.send(value)))
        elif action == "throw":
            transcript.append(outcome(lambda value=value: generator.throw(value)))
        else:
            transcript.append(outcome(generator.close))
        assert snapshot() == before, f"context changed by {action}"
    return transcript


def run_async_generator(generator: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    async def scenario() -> list[Any]:
        before = snapshot()
        transcript: list[Any] = []
        for action, value in steps:
            if action == "next":
                transcript.append(await outcome_async(generator.__anext__))
            elif action == "send":
                transcript.append(await outcome_async(lambda value=value: generator.asend(value)))
            elif action == "throw":
                transcript.append(await outcome_async(lambda value=value: generator.athrow(value)))
            else:
                transcript.append(await outcome_async(generator.aclose))
            assert snapshot() == before, f"context changed by {action}"
        return transcript

    return asyncio.run(scenario())


def transcript_of(kind: str, binding: str, decorators: list[Any], scenario: str) -> list[Any]:
    reactions, steps = SCENARIOS[scenario]
    built = build(kind, binding, decorators, PROTOCOL_BODIES, reactions=reactions)
    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(
        (type(u.exc_value).__name__, str(u.exc_value), getattr(u.object, "__qualname__", None))
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generator = built.call("u1")
            run = run_generator if kind == "generator" else run_async_generator
            transcript = run(generator, steps)
            del generator  # an abandoned generator is finalised here, by reference counting
    finally:
        sys.unraisablehook = hook
    seen_count = len(built.seen)
    return [
        *transcript,
        ("warnings", [(w.category.__name__, str(w.message)) for w in caught]),
        ("unraisable", unraisable),
        ("body steps", seen_count),
    ]


PROTOCOL_MATRIX = [
    pytest.param(kind, binding, scenario, id=f"{KIND_IDS[kind]}-{binding}-{scenario}")
    for kind in PROTOCOL_BODIES
    for binding in [*BINDINGS, *SHAPES]
    for scenario in SCENARIOS
]


@pytest.mark.parametrize(("kind", "binding", "scenario"), PROTOCOL_MATRIX)
def test_generator_protocol_matches_undecorated(kind: str, binding: str, scenario: str) -> None:
    expected = transcript_of(kind, binding, [], scenario)
    with FlextContext.Correlation.new_correlation("caller-cid"), capture_operations() as ops:
        actual = transcript_of(kind, binding, ASPECTS["fused"], scenario)
    assert actual == expected
    # At most one record, and only for a generator that ran.
    assert len(ops) <= 1
    assert not ops or expected[0] != ("raise", "ValueError", "")
