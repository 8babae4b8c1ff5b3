"""The pure ASGI middleware, driven in-process (no server): scopes, messages, records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flext_ctx_aspects import FlextContext, _state
from flext_ctx_aspects.errors import ConfigError, InvalidValueError
from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware
from flext_ctx_aspects.settings import Settings, apply_settings
from flext_ctx_aspects.testing import capture_operations

Message = dict[str, Any]


def http_scope(headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/orders/1",
        "raw_path": b"/orders/1",
        "query_string": b"",
        "headers": headers or [],
        **extra,
    }


class Recorder:
    """An ASGI app recording the context it saw, answering 200 (or what it is told)."""

    def __init__(self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.headers = headers or []
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.seen.append({"lifespan": _state.get()})
            return
        FlextContext.Performance.add_operation_metadata("handler", "ran")
        self.seen.append(FlextContext.Serialization.get_full_context())
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"ok"})


def run(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def header(message: Message, name: bytes) -> list[bytes]:
    return [value for key, value in message["headers"] if key.lower() == name]


def test_request_runs_in_the_inbound_context_and_nothing_leaks() -> None:
    inner = Recorder()
    app = FlextContextMiddleware(inner, service_name="svc", service_version="3.1")
    with capture_operations() as ops:
        sent = run(app, http_scope([(b"x-correlation-id", b"c-1"), (b"x-request-id", b"r-1")]))
    (seen,) = inner.seen
    assert seen["correlation_id"] == "c-1"
    assert seen["request_id"] == "r-1"
    assert (seen["service_name"], seen["service_version"]) == ("svc", "3.1")
    assert header(sent[0], b"x-correlation-id") == [b"c-1"]
    (record,) = ops
    assert record.name == "HTTP GET"
    assert record.correlation_id == "c-1"
    assert record.metadata == {
        "http.method": "GET",
        "http.path": "/orders/1",
        "http.status_code": 200,
        "handler": "ran",
    }
    assert _state.get() == _state.EMPTY


def test_request_without_headers_gets_new_correlation_and_request_ids() -> None:
    inner = Recorder()
    sent = run(FlextContextMiddleware(inner), http_scope())
    (seen,) = inner.seen
    assert seen["correlation_id"] is not None
    assert seen["request_id"] is not None
    assert seen["trace_id"] == seen["correlation_id"]  # the root of a new trace names it
    assert header(sent[0], b"x-correlation-id") == [seen["correlation_id"].encode()]


def test_middleware_service_identity_wins_over_the_callers_header() -> None:
    inner = Recorder()
    run(
        FlextContextMiddleware(inner, service_name="callee"),
        http_scope([(b"x-service-name", b"caller"), (b"x-service-version", b"9")]),
    )
    assert inner.seen[0]["service_name"] == "callee"
    assert inner.seen[0]["service_version"] is None


def test_app_echo_header_is_not_duplicated() -> None:
    inner = Recorder(headers=[(b"X-Correlation-Id", b"set-by-app")])
    sent = run(FlextContextMiddleware(inner), http_scope([(b"x-correlation-id", b"c-2")]))
    assert header(sent[0], b"x-correlation-id") == [b"set-by-app"]


def test_echo_can_be_renamed_or_disabled() -> None:
    sent = run(FlextContextMiddleware(Recorder(), echo_header="X-Trace"), http_scope())
    assert header(sent[0], b"x-trace")
    assert not header(sent[0], b"x-correlation-id")
    sent = run(FlextContextMiddleware(Recorder(), echo_header=None), http_scope())
    assert sent[0]["headers"] == []


def test_user_id_needs_a_trusted_middleware() -> None:
    inner = Recorder()
    run(FlextContextMiddleware(inner), http_scope([(b"x-user-id", b"u-1")]))
    run(FlextContextMiddleware(inner, trusted=True), http_scope([(b"x-user-id", b"u-1")]))
    assert [seen["user_id"] for seen in inner.seen] == [None, "u-1"]


def test_strict_mode_answers_400_and_never_calls_the_app() -> None:
    inner = Recorder()
    with capture_operations() as ops:
        sent = run(
            FlextContextMiddleware(inner, strict=True),
            http_scope([(b"x-correlation-id", b"bad value\x7f")]),
        )
    assert inner.seen == []
    assert sent[0]["status"] == 400
    assert b"bad value" not in sent[1]["body"]
    assert sent[1]["body"].startswith(b"invalid request context: correlation_id")
    assert header(sent[0], b"content-length") == [str(len(sent[1]["body"])).encode()]
    (record,) = ops
    assert record.metadata["http.status_code"] == 400


def test_strict_mode_follows_the_settings_when_not_given() -> None:
    apply_settings(Settings(strict_validation=True))
    sent = run(FlextContextMiddleware(Recorder()), http_scope([(b"traceparent", b"garbage")]))
    assert sent[0]["status"] == 400
    apply_settings(Settings())
    sent = run(FlextContextMiddleware(Recorder()), http_scope([(b"traceparent", b"garbage")]))
    assert sent[0]["status"] == 200


def test_websocket_scope_gets_context_and_strict_refusal_closes_it() -> None:
    seen: list[str | None] = []

    async def ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(FlextContext.Correlation.get_correlation_id())
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    scope = http_scope([(b"x-correlation-id", b"ws-1")], type="websocket")
    del scope["method"]  # websocket scopes have none
    with capture_operations() as ops:
        sent = run(FlextContextMiddleware(ws_app), scope)
    assert seen == ["ws-1"]
    assert ops[0].metadata["http.status_code"] == 101
    assert ops[0].name == "HTTP WEBSOCKET"
    assert sent[0]["type"] == "websocket.accept"
    bad = http_scope([(b"x-correlation-id", b"\x01")], type="websocket")
    sent = run(FlextContextMiddleware(ws_app, strict=True), bad)
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_lifespan_passes_through_without_context() -> None:
    inner = Recorder()
    with capture_operations() as ops:
        run(FlextContextMiddleware(inner), {"type": "lifespan", "asgi": {"version": "3.0"}})
    assert inner.seen == [{"lifespan": _state.EMPTY}]
    assert ops == []


def test_app_exception_is_recorded_and_propagates() -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise KeyError("x")

    with capture_operations() as ops, pytest.raises(KeyError):
        run(FlextContextMiddleware(failing), http_scope())
    (record,) = ops
    assert record.status == "error"
    assert record.error_type == "KeyError"
    assert record.metadata["http.status_code"] == 500
    assert _state.get() == _state.EMPTY


def test_hostile_path_and_method_are_not_recorded_raw() -> None:
    with capture_operations() as ops:
        run(
            FlextContextMiddleware(Recorder()),
            http_scope(path="/a\r\nSet-Cookie: x", method="G\nET"),
        )
    (record,) = ops
    assert record.name == "HTTP OTHER"
    assert record.metadata["http.method"] == "OTHER"
    assert "http.path" not in record.metadata


def test_concurrent_requests_in_one_loop_do_not_see_each_other() -> None:
    seen: dict[str, str | None] = {}

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        mine = FlextContext.Correlation.get_correlation_id()
        await asyncio.sleep(0.01)
        seen[mine or ""] = FlextContext.Correlation.get_correlation_id()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = FlextContextMiddleware(slow)

    async def one(number: int) -> None:
        async def receive() -> Message:
            return {"type": "http.request"}

        async def send(message: Message) -> None:
            return None

        scope = http_scope([(b"x-correlation-id", f"n-{number}".encode())])
        await app(scope, receive, send)

    async def many() -> None:
        await asyncio.gather(*(one(n) for n in range(50)))

    asyncio.run(many())
    assert seen == {f"n-{n}": f"n-{n}" for n in range(50)}


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(InvalidValueError):
        FlextContextMiddleware(Recorder(), service_name="bad\nname")
    with pytest.raises(ValueError, match="echo_header"):
        FlextContextMiddleware(Recorder(), echo_header="Bad Header")
    with pytest.raises(ConfigError, match="formats"):
        FlextContextMiddleware(Recorder(), formats=["zipkin"])
    with pytest.raises(ConfigError, match="correlation_sources"):
        FlextContextMiddleware(Recorder(), correlation_sources=["cookie"])
