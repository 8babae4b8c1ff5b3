"""Every `with` of a scope object is independent: reuse, nesting and sharing never leak."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from flext_ctx_aspects import FlextContext, Settings, _state, apply_settings, timed
from flext_ctx_aspects.fields import ContextField
from flext_ctx_aspects.propagation import extract
from flext_ctx_aspects.testing import capture_operations

Service = FlextContext.Service
Correlation = FlextContext.Correlation


class ScopedContext(FlextContext):
    region = ContextField(header="X-Region")


def scope_factories() -> list[tuple[str, object]]:
    return [
        ("service_context", lambda: Service.service_context("x", "1")),
        ("request_context", lambda: FlextContext.Request.request_context(user_id="u")),
        ("new_correlation", lambda: Correlation.new_correlation()),
        ("inherit_correlation", lambda: Correlation.inherit_correlation()),
        ("field_scope", lambda: ScopedContext.region.scope("eu")),
        ("inbound_scope", lambda: extract({"X-Correlation-Id": "in-1"}).scope()),
    ]


FACTORIES = scope_factories()


@pytest.mark.parametrize(("name", "make"), FACTORIES, ids=[n for n, _ in FACTORIES])
def test_nested_reuse_of_one_object_restores_everything(name: str, make: object) -> None:
    scope = make()  # type: ignore[operator]
    with scope:
        inside = _state.get()
        with scope:
            pass
        assert _state.get() == inside
    assert _state.get() == _state.EMPTY


@pytest.mark.parametrize(("name", "make"), FACTORIES, ids=[n for n, _ in FACTORIES])
def test_sequential_reuse_is_independent(name: str, make: object) -> None:
    scope = make()  # type: ignore[operator]
    for _ in range(3):
        with scope:
            assert _state.get() != _state.EMPTY
        assert _state.get() == _state.EMPTY


@pytest.mark.parametrize(("name", "make"), FACTORIES, ids=[n for n, _ in FACTORIES])
def test_one_object_shared_by_concurrent_tasks_never_leaks(name: str, make: object) -> None:
    scope = make()  # type: ignore[operator]
    leaks: list[str] = []

    async def user(delay_inside: float, delay_after: float) -> None:
        with scope:
            await asyncio.sleep(delay_inside)
        await asyncio.sleep(delay_after)
        if _state.get() != _state.EMPTY:
            leaks.append(f"{delay_inside}: {_state.get()!r}")

    async def main() -> None:
        # The first task enters first and exits first, while the second is still inside.
        await asyncio.gather(*(user(0.001 * (i + 1), 0.01) for i in range(20)))

    asyncio.run(main())
    assert leaks == []


@pytest.mark.parametrize(("name", "make"), FACTORIES, ids=[n for n, _ in FACTORIES])
def test_one_object_shared_by_threads_never_leaks(name: str, make: object) -> None:
    scope = make()  # type: ignore[operator]
    barrier = threading.Barrier(8)
    leaks: list[object] = []

    def user() -> None:
        for _ in range(50):
            with scope:
                barrier.wait(timeout=10) if _ == 0 else None
            if _state.get() != _state.EMPTY:
                leaks.append(_state.get())

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(user,)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert leaks == []


def test_a_scope_held_across_a_yield_and_closed_elsewhere_restores_by_value() -> None:
    scope = Service.service_context("gen")

    def body():  # type: ignore[no-untyped-def]
        with scope:
            yield Service.get_service_name()

    gen = body()
    assert contextvars.copy_context().run(next, gen) == "gen"
    contextvars.copy_context().run(gen.close)
    assert _state.get() == _state.EMPTY


def test_reused_timed_operation_times_each_block_and_leaves_nothing_running() -> None:
    operation = FlextContext.Performance.timed_operation("block")
    with capture_operations() as ops:
        with operation as outer:
            FlextContext.Performance.add_operation_metadata("level", "outer")
            with operation as inner:
                FlextContext.Performance.add_operation_metadata("level", "inner")
            assert inner is not outer
            assert FlextContext.Performance.get_operation_metadata()["level"] == "outer"
        with operation:
            pass
    assert _state.get_operation() is None
    assert [op.metadata.get("level") for op in ops] == ["inner", "outer", None]
    assert "duration_seconds" in outer
    assert "duration_seconds" in inner


def test_reused_new_correlation_gives_each_entry_its_own_id_and_parent() -> None:
    scope = Correlation.new_correlation()
    with scope as first:
        with scope as second:
            assert second != first
            assert Correlation.get_parent_correlation_id() == first
        assert Correlation.get_correlation_id() == first
    assert Correlation.get_correlation_id() is None


def test_settings_measure_every_timed_generator_body() -> None:
    @timed(name="gen")
    def numbers():  # type: ignore[no-untyped-def]
        yield 1
        yield 2

    with capture_operations() as ops:
        list(numbers())
        apply_settings(Settings(measure_generator_body=True))
        list(numbers())
    assert ops[0].body_duration_ns is None
    assert ops[1].body_duration_ns is not None
    assert 0 <= ops[1].body_duration_ns <= ops[1].duration_ns


def test_settings_push_inbound_defaults_to_propagation() -> None:
    headers = {"X-User-Id": "admin", "X-Correlation-Id": "c-1"}
    assert "user_id" not in extract(headers).values
    apply_settings(Settings(trust_inbound_user_id=True))
    assert extract(headers).values["user_id"] == "admin"
    apply_settings(Settings(correlation_sources=("x-request-id",)))
    assert extract(headers).correlation_id is None
