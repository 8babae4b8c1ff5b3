"""Issue 10, items 4-6: HTTP records tell the truth, under real uvicorn and waitress servers.

5xx responses are recorded as errors (configurable), requests are named by their route
template (never the raw path), and ``app.add_middleware(FlextContextMiddleware)`` answers an
unhandled exception like the outermost install: a 500 carrying ``X-Correlation-Id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ctx_servers import uvicorn_server, wait_for_records, waitress_server
from flask import Flask
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from flext_ctx_aspects import FlextContext
from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware
from flext_ctx_aspects.integrations.wsgi import FlextContextWSGIMiddleware
from flext_ctx_aspects.testing import capture_operations

pytestmark = pytest.mark.network
TIMEOUT = httpx.Timeout(20.0)


def _starlette() -> Starlette:
    async def user(request: Request) -> Response:
        return PlainTextResponse(f"user {request.path_params['user_id']}")

    async def unavailable(request: Request) -> Response:
        raise HTTPException(503)

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def missing(request: Request) -> Response:
        raise HTTPException(404)

    return Starlette(
        routes=[
            Route("/users/{user_id}", user),
            Route("/unavailable", unavailable),
            Route("/boom", boom),
            Route("/missing", missing),
        ]
    )


def _flask() -> Flask:
    app = Flask("records")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "later", 503

    return app


@pytest.fixture(scope="module")
def asgi_urls() -> Iterator[dict[str, str]]:
    added = _starlette()
    added.add_middleware(FlextContextMiddleware, service_name="added")
    with (
        uvicorn_server(FlextContextMiddleware(_starlette(), service_name="outer")) as outer,
        uvicorn_server(added) as inner,
        uvicorn_server(
            FlextContextMiddleware(
                _starlette(),
                service_name="custom",
                error_statuses=range(400, 600),
                record_name=lambda method, route: f"{method} {route or 'unmatched'}",
            )
        ) as custom,
    ):
        yield {"outer": outer, "added": inner, "custom": custom}


@pytest.fixture(scope="module")
def wsgi_url() -> Iterator[str]:
    app = _flask()
    app.wsgi_app = FlextContextWSGIMiddleware(app.wsgi_app, service_name="flask")  # type: ignore[method-assign]
    with waitress_server(app, threads=4) as url:
        yield url


def _one(ops: list[Any], service: str, path: str) -> Any:
    (record,) = wait_for_records(
        ops,
        lambda op: op.service_name == service and op.metadata.get("http.path") == path,
        1,
    )
    return record


@pytest.mark.parametrize(
    ("path", "status", "recorded", "name"),
    [
        ("/users/42", 200, "ok", "HTTP GET /users/{user_id}"),
        ("/unavailable", 503, "error", "HTTP GET /unavailable"),
        ("/boom", 500, "error", "HTTP GET /boom"),
        ("/missing", 404, "ok", "HTTP GET /missing"),
        ("/no/such/route", 404, "ok", "HTTP GET"),
    ],
)
@pytest.mark.parametrize("install", ["outer", "added"])
def test_asgi_status_and_route_name(
    asgi_urls: dict[str, str], install: str, path: str, status: int, recorded: str, name: str
) -> None:
    service = "outer" if install == "outer" else "added"
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(asgi_urls[install] + path)
        record = _one(ops, service, path)
    assert response.status_code == status
    assert record.status == recorded
    assert record.metadata["http.status_code"] == status
    assert record.name == name
    assert "42" not in record.name  # never the raw path
    if path == "/boom":
        assert record.error_type == "RuntimeError"


@pytest.mark.parametrize("install", ["outer", "added"])
def test_unhandled_error_answer_carries_the_correlation_id(
    asgi_urls: dict[str, str], install: str
) -> None:
    service = "outer" if install == "outer" else "added"
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(asgi_urls[install] + "/boom", headers={"X-Correlation-Id": "c-500"})
        record = _one(ops, service, "/boom")
    assert response.status_code == 500
    assert response.headers["X-Correlation-Id"] == "c-500"
    assert record.correlation_id == "c-500"


def test_error_statuses_and_record_name_are_configurable(asgi_urls: dict[str, str]) -> None:
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        client.get(asgi_urls["custom"] + "/missing")
        client.get(asgi_urls["custom"] + "/nowhere")
        missing = _one(ops, "custom", "/missing")
        nowhere = _one(ops, "custom", "/nowhere")
    assert (missing.status, missing.name) == ("error", "GET /missing")
    assert (nowhere.status, nowhere.name) == ("error", "GET unmatched")


@pytest.mark.parametrize(
    ("path", "status", "recorded", "name"),
    [
        ("/users/7", 200, "ok", "HTTP GET /users/<int:user_id>"),
        ("/boom", 500, "error", "HTTP GET /boom"),
        ("/unavailable", 503, "error", "HTTP GET /unavailable"),
        ("/no/such/route", 404, "ok", "HTTP GET"),
    ],
)
def test_wsgi_status_and_route_name_under_waitress(
    wsgi_url: str, path: str, status: int, recorded: str, name: str
) -> None:
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(wsgi_url + path)
        record = _one(ops, "flask", path)
    assert response.status_code == status
    assert "X-Correlation-Id" in response.headers
    assert record.status == recorded
    assert record.metadata["http.status_code"] == status
    assert record.name == name


def test_a_failing_record_name_function_keeps_the_record() -> None:
    import asyncio

    def broken(method: str, route: str | None) -> str:
        raise RuntimeError("naming failed")

    app = FlextContextMiddleware(_starlette(), record_name=broken)

    async def call() -> None:
        sent: list[Any] = []
        messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive() -> Any:
            return next(messages, {"type": "http.disconnect"})

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/users/1", "headers": []}
        scope.update({"query_string": b"", "root_path": "", "scheme": "http"})
        await app(scope, receive, send)

    with capture_operations() as ops:
        asyncio.run(call())
    assert [op.name for op in ops] == ["HTTP GET /users/{user_id}"]


def test_handler_sees_its_request_context_in_a_5xx() -> None:
    # The record of a 5xx runs in the request's context (the logging sink logs it as an error).
    seen: list[str | None] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(FlextContext.Correlation.get_correlation_id())
        start_response("502 Bad Gateway", [])
        return [b""]

    wrapped = FlextContextWSGIMiddleware(app)
    with capture_operations() as ops:
        body = wrapped(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "HTTP_X_CORRELATION_ID": "c-502"},
            lambda status, headers, exc_info=None: None,
        )
        list(body)
        body.close()  # type: ignore[attr-defined]
    assert seen == ["c-502"]
    assert [(op.status, op.correlation_id, op.name) for op in ops] == [
        ("error", "c-502", "HTTP GET")
    ]
