"""Generators and async generators: contexts per resume, send/throw/close, finalisation."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext, service, timed, with_correlation
from flext_ctx_aspects.testing import capture_operations

cid = FlextContext.Correlation.get_correlation_id
svc = FlextContext.Service.get_service_name


@service("gen-svc")
def numbers(count: int) -> Iterator[tuple[int, str | None]]:
    for i in range(count):
        yield i, svc()


def test_resumed_from_another_thread() -> None:
    generator = numbers(4)
    seen = [next(generator)]

    def consume() -> None:
        seen.extend(generator)

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join()
    assert seen == [(0, "gen-svc"), (1, "gen-svc"), (2, "gen-svc"), (3, "gen-svc")]
    assert svc() is None


def test_resumed_from_another_context() -> None:
    generator = numbers(3)
    first = next(generator)
    other = contextvars.copy_context()
    second = other.run(next, generator)
    # Closing from yet another context does not raise a token error.
    contextvars.Context().run(generator.close)
    assert (first, second) == ((0, "gen-svc"), (1, "gen-svc"))


def test_body_changes_persist_across_its_own_yields_but_not_outside() -> None:
    @with_correlation
    def body() -> Iterator[str | None]:
        FlextContext.Correlation.set_correlation_id("set-inside")
        yield cid()
        yield cid()

    generator = body()
    assert next(generator) == "set-inside"
    assert cid() is None
    assert next(generator) == "set-inside"
    generator.close()


def test_send_throw_close_and_return_value_behave_as_undecorated() -> None:
    log: list[Any] = []

    def echo() -> Iterator[Any]:
        try:
            received = yield "ready"
            while True:
                try:
                    received = yield f"got {received}"
                except KeyError as error:
                    log.append(("caught", error.args[0], svc()))
                    received = "recovered"
        finally:
            log.append(("finally", svc()))

    decorated = service("echo")(echo)
    for factory, expected_service in ((echo, None), (decorated, "echo")):
        log.clear()
        generator = factory()
        assert next(generator) == "ready"
        assert generator.send("a") == "got a"
        assert generator.throw(KeyError("k")) == "got recovered"
        generator.close()
        assert log == [("caught", "k", expected_service), ("finally", expected_service)]
        with pytest.raises(StopIteration):
            next(generator)


def test_return_value_through_yield_from() -> None:
    @timed
    def inner() -> Iterator[int]:
        yield 1
        return 42

    def outer() -> Iterator[int]:
        result = yield from inner()
        yield result

    assert list(outer()) == [1, 42]


def test_throw_that_is_not_caught_ends_the_generator_with_a_record() -> None:
    @timed(name="g")
    def body() -> Iterator[int]:
        yield 1
        yield 2

    with capture_operations() as ops:
        generator = body()
        next(generator)
        with pytest.raises(RuntimeError, match="stop"):
            generator.throw(RuntimeError("stop"))
    assert [(op.name, op.status, op.error_type) for op in ops] == [("g", "error", "RuntimeError")]


def test_early_break_closes_in_context_and_records_ok() -> None:
    finals: list[str | None] = []

    @timed(name="early")
    @service("early-svc")
    def body() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            finals.append(svc())

    with capture_operations() as ops:
        for item in body():
            if item == 2:
                break
        gc.collect()
    assert finals == ["early-svc"]
    assert [(op.name, op.status) for op in ops] == [("early", "ok")]


def test_timing_covers_first_resume_to_exhaustion_and_body_time_is_opt_in() -> None:
    @timed(name="measured", measure_body=True)
    def measured() -> Iterator[int]:
        yield 1
        yield 2

    @timed(name="plain")
    def plain() -> Iterator[int]:
        yield 1

    with capture_operations() as ops:
        generator = measured()
        next(generator)
        suspended = threading.Event()
        suspended.wait(0.02)  # time spent suspended at a yield
        list(generator)
        list(plain())
    measured_record, plain_record = ops
    assert measured_record.duration_ns >= 20_000_000
    assert measured_record.body_duration_ns is not None
    assert measured_record.body_duration_ns < measured_record.duration_ns
    assert measured_record.body_duration_ns < 20_000_000
    assert plain_record.body_duration_ns is None
    assert measured_record.kind == "generator"


def test_never_started_generator_records_nothing() -> None:
    @timed
    def body() -> Iterator[int]:
        yield 1

    with capture_operations() as ops:
        generator = body()
        del generator
        gc.collect()
    assert ops == []


def test_bad_arguments_raise_at_call_time_like_undecorated() -> None:
    @timed
    def body(a: int) -> Iterator[int]:
        yield a

    with pytest.raises(TypeError):
        body()  # type: ignore[call-arg]


# --- async generators ------------------------------------------------------------------------


@service("agen-svc")
async def ticker(count: int, finals: list[str | None]) -> AsyncIterator[str | None]:
    try:
        for _ in range(count):
            await asyncio.sleep(0)
            yield svc()
    finally:
        await asyncio.sleep(0)
        finals.append(svc())


def test_async_generator_asend_athrow_aclose() -> None:
    log: list[Any] = []

    @service("a-echo")
    async def echo() -> AsyncIterator[Any]:
        try:
            received = yield "ready"
            while True:
                try:
                    received = yield f"got {received}"
                except KeyError:
                    log.append(("caught", svc()))
                    received = "recovered"
        finally:
            await asyncio.sleep(0)
            log.append(("closing", svc()))

    async def scenario() -> None:
        generator = echo()
        assert await generator.asend(None) == "ready"
        assert await generator.asend("a") == "got a"
        assert await generator.athrow(KeyError("k")) == "got recovered"
        await generator.aclose()
        assert svc() is None

    asyncio.run(scenario())
    assert log == [("caught", "a-echo"), ("closing", "a-echo")]


def test_aclose_from_another_task() -> None:
    finals: list[str | None] = []

    async def scenario() -> None:
        generator = ticker(10, finals)
        assert await generator.__anext__() == "agen-svc"
        await asyncio.create_task(generator.aclose())

    asyncio.run(scenario())
    assert finals == ["agen-svc"]


def test_unfinished_async_generator_at_asyncio_run_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finals: list[str | None] = []
    handler_errors: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: handler_errors.append(context)
        )
        generator = ticker(10, finals)
        assert await generator.__anext__() == "agen-svc"
        # Left unfinished on purpose: asyncio.run finalises it at shutdown.
        scenario.generator = generator  # type: ignore[attr-defined]

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert finals == ["agen-svc"], "finally must run once, in the generator's context"
    assert handler_errors == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    del scenario.generator  # type: ignore[attr-defined]


def test_unfinished_async_generator_collected_while_loop_runs() -> None:
    finals: list[str | None] = []
    handler_errors: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: handler_errors.append(context)
        )
        generator = ticker(10, finals)
        await generator.__anext__()
        del generator
        gc.collect()
        for _ in range(5):  # the loop's finaliser schedules aclose() as a task
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert finals == ["agen-svc"]
    assert handler_errors == []


def test_async_generator_early_break_and_record() -> None:
    finals: list[str | None] = []

    @timed(name="agen")
    async def body() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            finals.append(cid())

    async def scenario() -> None:
        with FlextContext.Correlation.new_correlation("agen-cid"):
            async for item in body():
                if item == 1:
                    break
        await asyncio.sleep(0)

    with capture_operations() as ops:
        asyncio.run(scenario())
    assert finals == ["agen-cid"]
    assert [(op.name, op.status, op.correlation_id) for op in ops] == [("agen", "ok", "agen-cid")]


def test_async_generator_cancellation_propagates() -> None:
    @service("cancel-svc")
    async def slow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(10)
        yield 2

    async def consume() -> list[int]:
        return [item async for item in slow()]

    async def scenario() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
