"""The WSGI middleware, called in-process: per-request contexts, streaming bodies, records."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flask import Flask

from flext_ctx_aspects import FlextContext, _state
from flext_ctx_aspects.integrations.wsgi import FlextContextWSGIMiddleware
from flext_ctx_aspects.testing import capture_operations


def environ(**headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/items",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
    }
    for name, value in headers.items():
        env["HTTP_" + name.upper()] = value
    return env


class StartResponse:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers))
        return lambda data: None


def consume(body: Iterable[bytes]) -> bytes:
    try:
        return b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def test_request_and_streamed_body_run_in_the_request_context() -> None:
    seen: list[str | None] = []

    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            # A generator body runs after the app returned: still in the request's context.
            for _ in range(3):
                seen.append(FlextContext.Correlation.get_correlation_id())
                yield b"x"

        return body()

    start = StartResponse()
    with capture_operations() as ops:
        body = FlextContextWSGIMiddleware(app)(environ(x_correlation_id="w-1"), start)
        assert ops == []  # recorded when the server closes the response
        assert consume(body) == b"xxx"
    assert seen == ["w-1", "w-1", "w-1"]
    assert ("X-Correlation-Id", "w-1") in start.calls[0][1]
    (record,) = ops
    assert record.correlation_id == "w-1"
    assert record.metadata["http.status_code"] == 200
    assert record.metadata["http.path"] == "/items"
    assert _state.get() == _state.EMPTY


def test_thread_reused_for_requests_keeps_nothing() -> None:
    """A server thread handles request after request: nothing leaks into the next one."""
    seen: list[dict[str, Any]] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(FlextContext.Serialization.get_full_context())
        FlextContext.Correlation.set_correlation_id("set-by-handler")  # a careless handler
        start_response("204 No Content", [])
        return []

    middleware = FlextContextWSGIMiddleware(app)

    def serve_three() -> None:
        consume(middleware(environ(x_correlation_id="first", x_request_id="r1"), StartResponse()))
        consume(middleware(environ(), StartResponse()))
        consume(middleware(environ(), StartResponse()))
        seen.append({"thread_after": _state.get()})

    worker = threading.Thread(target=serve_three)
    worker.start()
    worker.join(10)
    first, second, third, after = seen
    assert first["correlation_id"] == "first"
    assert second["correlation_id"] not in ("first", "set-by-handler", None)
    assert second["request_id"] not in ("r1", None)
    assert third["correlation_id"] not in (second["correlation_id"], "set-by-handler")
    assert after == {"thread_after": _state.EMPTY}


def test_strict_mode_answers_400_without_the_value() -> None:
    called: list[bool] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append(True)
        start_response("200 OK", [])
        return [b""]

    start = StartResponse()
    with capture_operations() as ops:
        body = consume(
            FlextContextWSGIMiddleware(app, strict=True)(
                environ(x_request_id="SECRET\u00e9"), start
            )
        )
    assert called == []
    assert start.calls[0][0] == "400 Bad Request"
    assert b"SECRET" not in body
    assert body.startswith(b"invalid request context: request_id")
    assert ops[0].metadata["http.status_code"] == 400


def test_app_exception_is_recorded_and_propagates() -> None:
    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        raise LookupError("nope")

    with capture_operations() as ops, pytest.raises(LookupError):
        FlextContextWSGIMiddleware(app)(environ(), StartResponse())
    assert ops[0].status == "error"
    assert ops[0].metadata["http.status_code"] == 500


def test_body_iteration_error_is_recorded_once() -> None:
    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        raise ValueError("mid-stream")

    with capture_operations() as ops:
        body = FlextContextWSGIMiddleware(app)(environ(), StartResponse())
        with pytest.raises(ValueError, match="mid-stream"):
            consume(body)
    (record,) = ops
    assert record.error_type == "ValueError"


def test_flask_app_sees_context_and_can_add_operation_metadata() -> None:
    flask_app = Flask("unit")

    @flask_app.get("/hello")
    def hello() -> dict[str, Any]:
        FlextContext.Performance.add_operation_metadata("greeting", "hi")
        return {
            "correlation_id": FlextContext.Correlation.get_correlation_id(),
            "service": FlextContext.Service.get_service_name(),
        }

    flask_app.wsgi_app = FlextContextWSGIMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, service_name="flask-svc"
    )
    with capture_operations() as ops:
        response = flask_app.test_client().get("/hello", headers={"X-Correlation-Id": "f-1"})
        assert response.json == {"correlation_id": "f-1", "service": "flask-svc"}
        response.close()
    assert response.headers["X-Correlation-Id"] == "f-1"
    (record,) = ops
    assert record.service_name == "flask-svc"
    assert record.metadata["greeting"] == "hi"
    assert record.metadata["http.status_code"] == 200
