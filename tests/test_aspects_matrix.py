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
import textwrap
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


@dataclass
class Built:
    call: Callable[..., Any]
    seen: list[dict[str, Any]]
    qualname: str
    classes: tuple[type, ...]


def build(kind: str, binding: str, decorators: list[Callable[[Any], Any]]) -> Built:
    head, params, reach = BINDINGS[binding]
    seen: list[dict[str, Any]] = []

    def deco(func: Any) -> Any:
        for decorator in reversed(decorators):  # listed outermost first
            func = decorator(func)
        return func

    body = textwrap.dedent(BODIES[kind]).format(head=head, name="target", params=params)
    if binding == "function":
        source = body
    else:
        source = (
            "class Host:\n" + textwrap.indent(body, "    ") + "\nclass SubHost(Host):\n    pass\n"
        )
    namespace: dict[str, Any] = {
        "__name__": "matrix_module",
        "deco": deco,
        "seen": seen,
        "observe": observe,
        "asyncio": asyncio,
    }
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
    for binding in BINDINGS
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
    assert frames[-1] == "target"
    if aspect_name in TIMED:
        (record,) = ops
        assert record.status == "error"
        assert record.error_type == "ValueError"
    else:
        assert ops == []
