"""Message headers: inject on publish, a fresh scope per consumed message (Celery style)."""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext, _state
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.integrations.messaging import (
    consume_message,
    consumer,
    inject_message,
    message_headers,
)


@dataclass
class Message:
    body: str
    headers: dict[str, Any] = field(default_factory=dict)


def test_publish_and_consume_across_a_worker_thread() -> None:
    broker: queue.Queue[Message | None] = queue.Queue()
    handled: list[dict[str, Any]] = []

    @consumer(lambda message: message.headers)
    def handle(message: Message) -> None:
        handled.append(
            {
                "body": message.body,
                "correlation_id": FlextContext.Correlation.get_correlation_id(),
                "service": FlextContext.Service.get_service_name(),
                "request_id": FlextContext.Request.get_request_id(),
            }
        )
        # A careless handler changes the context: the next message must not see it.
        FlextContext.Request.request_context(request_id="leaked").__enter__()

    def worker() -> None:
        with FlextContext.Service.service_context("worker"):
            while (message := broker.get(timeout=10)) is not None:
                handle(message)
            handled.append({"worker_after": _state.get()[_state.REQUEST_ID]})

    thread = threading.Thread(target=worker)
    thread.start()
    published = []
    for number in range(5):
        with (
            FlextContext.Correlation.new_correlation() as correlation_id,
            FlextContext.Service.service_context("publisher"),
            FlextContext.Request.request_context(request_id=f"req-{number}"),
        ):
            broker.put(Message(f"m{number}", inject_message({"task": "x"})))
            published.append(correlation_id)
    broker.put(Message("no-context"))
    broker.put(None)
    thread.join(10)
    *per_message, bare, after = handled
    for number, (seen, correlation_id) in enumerate(zip(per_message, published, strict=True)):
        assert seen["correlation_id"] == correlation_id
        assert seen["request_id"] == f"req-{number}"
        assert seen["service"] == "worker"  # the consumer's identity wins over the header
    assert bare["correlation_id"] not in (None, *published)
    assert bare["request_id"] is None
    assert after == {"worker_after": None}


def test_message_headers_are_plain_strings_and_never_carry_the_user() -> None:
    with FlextContext.Request.request_context(user_id="u-1", request_id="r-1"):
        headers = message_headers()
    assert headers["X-Request-Id"] == "r-1"
    assert "X-User-Id" not in headers
    assert all(isinstance(v, str) for v in headers.values())


def test_kafka_style_bytes_pairs_are_consumed() -> None:
    pairs = [("x-correlation-id", b"kafka-1"), ("traceparent", b"garbage")]
    with consume_message(pairs) as correlation_id:
        assert correlation_id == "kafka-1"
        assert FlextContext.Correlation.get_correlation_id() == "kafka-1"
    assert _state.get() == _state.EMPTY


def test_trust_and_strictness_are_per_consumer() -> None:
    headers = {"X-User-Id": "u-9", "X-Correlation-Id": "c-9"}
    with consume_message(headers):
        assert FlextContext.Request.get_user_id() is None
    with consume_message(headers, trusted=True):
        assert FlextContext.Request.get_user_id() == "u-9"
    with pytest.raises(InvalidValueError) as caught:
        consume_message({"X-Correlation-Id": "bad id\n"}, strict=True)
    assert "bad id" not in str(caught.value)


def test_async_consumer() -> None:
    @consumer(lambda headers: headers)
    async def handle(headers: dict[str, str]) -> str | None:
        await asyncio.sleep(0)
        return FlextContext.Correlation.get_correlation_id()

    async def scenario() -> list[str | None]:
        return await asyncio.gather(*(handle({"X-Correlation-Id": f"a-{n}"}) for n in range(10)))

    assert asyncio.run(scenario()) == [f"a-{n}" for n in range(10)]
    assert handle.__name__ == "handle"
