"""Issue 10, items 7-8: consumers on the aspect engine, with their own identity and records."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.integrations.messaging import consumer, inject_message
from flext_ctx_aspects.testing import capture_operations


def _published(correlation_id: str, service: str = "publisher") -> dict[str, Any]:
    with (
        FlextContext.Correlation.new_correlation(correlation_id),
        FlextContext.Service.service_context(service),
    ):
        return inject_message({})


def _seen() -> tuple[str | None, str | None]:
    return (
        FlextContext.Correlation.get_correlation_id(),
        FlextContext.Service.get_service_name(),
    )


def test_generator_handler_keeps_the_message_context_across_yields() -> None:
    @consumer(lambda headers: headers, service_name="worker")
    def handle(headers: dict[str, Any]) -> Iterator[tuple[str | None, str | None]]:
        yield _seen()
        yield _seen()

    with capture_operations() as ops:
        items = list(handle(_published("msg-1")))
    assert items == [("msg-1", "worker"), ("msg-1", "worker")]
    assert _seen() == (None, None)  # nothing leaks out between or after items
    assert [(op.name, op.status, op.correlation_id, op.kind) for op in ops] == [
        (f"{__name__}.{handle.__qualname__}", "ok", "msg-1", "generator")
    ]


def test_interleaved_generators_each_see_their_own_message() -> None:
    @consumer(lambda headers: headers)
    def handle(headers: dict[str, Any]) -> Iterator[str | None]:
        for _ in range(3):
            yield FlextContext.Correlation.get_correlation_id()

    first, second = handle(_published("a")), handle(_published("b"))
    pairs = [(next(first), next(second)) for _ in range(3)]
    assert pairs == [("a", "b")] * 3


def test_async_generator_handler_keeps_the_context_in_many_tasks() -> None:
    @consumer(lambda headers: headers, service_name="async-worker", name="consume.orders")
    async def handle(headers: dict[str, Any]) -> AsyncIterator[str | None]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield FlextContext.Correlation.get_correlation_id()

    async def one(number: int) -> list[str | None]:
        return [item async for item in handle(_published(f"m-{number}"))]

    async def main() -> list[list[str | None]]:
        return await asyncio.gather(*(one(n) for n in range(50)))

    with capture_operations() as ops:
        results = asyncio.run(main())
    assert results == [[f"m-{n}"] * 3 for n in range(50)]
    assert len(ops) == 50
    assert {op.name for op in ops} == {"consume.orders"}
    assert {op.service_name for op in ops} == {"async-worker"}
    assert {op.correlation_id for op in ops} == {f"m-{n}" for n in range(50)}


def test_each_message_gets_a_record_with_status_and_duration_in_threads() -> None:
    @consumer(lambda message: message["headers"], service_name="worker", service_version="2")
    def handle(message: dict[str, Any]) -> None:
        if message["fail"]:
            raise ValueError("bad message")

    def worker(number: int) -> None:
        for index in range(10):
            message = {"headers": _published(f"t{number}-{index}"), "fail": index == 3}
            with contextlib.suppress(ValueError):
                handle(message)

    with capture_operations() as ops:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(ops) == 80
    failed = [op for op in ops if op.status == "error"]
    assert sorted(op.correlation_id for op in failed) == sorted(f"t{n}-3" for n in range(8))
    assert {op.error_type for op in failed} == {"ValueError"}
    assert all(op.duration_ns > 0 for op in ops)
    assert {(op.service_name, op.service_version) for op in ops} == {("worker", "2")}


def test_local_identity_wins_over_the_message_service_name() -> None:
    @consumer(lambda headers: headers, service_name="billing-worker")
    def configured(headers: dict[str, Any]) -> tuple[str | None, str | None]:
        return _seen()

    @consumer(lambda headers: headers)
    def ambient(headers: dict[str, Any]) -> tuple[str | None, str | None]:
        return _seen()

    headers = _published("c-1", service="orders-api")
    assert headers["X-Service-Name"] == "orders-api"
    assert configured(headers) == ("c-1", "billing-worker")
    with FlextContext.Service.service_context("ambient-worker"):
        assert ambient(headers) == ("c-1", "ambient-worker")
    # Without any local identity the message's service is what there is.
    assert ambient(headers) == ("c-1", "orders-api")


def test_methods_and_strict_refusals() -> None:
    class Worker:
        @consumer(lambda self, headers: headers, strict=True)
        def handle(self, headers: dict[str, Any]) -> str | None:
            return FlextContext.Correlation.get_correlation_id()

    assert Worker().handle(_published("m-method")) == "m-method"
    with pytest.raises(InvalidValueError):
        Worker().handle({"X-Correlation-Id": "bad\nvalue"})


def test_strict_refusal_raises_on_the_call_for_every_kind_and_kinds_are_kept() -> None:
    import inspect

    bad = {"X-Correlation-Id": "bad\nvalue"}

    @consumer(lambda headers: headers, strict=True)
    def gen(headers: dict[str, Any]) -> Iterator[int]:
        yield 1

    @consumer(lambda headers: headers, strict=True)
    async def coro(headers: dict[str, Any]) -> int:
        return 1

    @consumer(lambda headers: headers, strict=True)
    async def agen(headers: dict[str, Any]) -> AsyncIterator[int]:
        yield 1

    assert inspect.isgeneratorfunction(gen)
    assert inspect.iscoroutinefunction(coro)
    assert inspect.isasyncgenfunction(agen)
    for handler in (gen, coro, agen):
        with pytest.raises(InvalidValueError):
            handler(bad)
    assert list(gen(_published("ok-1"))) == [1]
    assert asyncio.run(coro(_published("ok-2"))) == 1
