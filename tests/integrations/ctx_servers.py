"""Real servers for the end-to-end tests: uvicorn and waitress on 127.0.0.1, in threads.

Every server binds an ephemeral port, is started and stopped by the test (module fixtures)
and is waited for with bounded timeouts. The services report what context they saw, so the
tests can compare both hops.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import uvicorn
import waitress
from flask import Flask, jsonify
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from waitress import wasyncore

from flext_ctx_aspects import FlextContext, _state
from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware
from flext_ctx_aspects.integrations.httpx import instrument_client
from flext_ctx_aspects.integrations.wsgi import FlextContextWSGIMiddleware

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


# --- runners ----------------------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_server(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
        # Large enough for the 100 KB hostile header to reach the middleware.
        h11_max_incomplete_event_size=512 * 1024,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn-{port}"
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextlib.contextmanager
def waitress_server(app: Any, *, threads: int = 16) -> Iterator[str]:
    """Run a WSGI ``app`` under waitress in a thread; yields its base URL."""
    # Queue-depth warnings under the 200-request burst are expected, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = waitress.create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=threads,
        connection_limit=1000,
        backlog=1024,
        channel_timeout=30,
        # Large enough for the 100 KB hostile header.
        max_request_header_size=512 * 1024,
    )
    port = server.effective_port
    thread = threading.Thread(target=server.run, daemon=True, name=f"waitress-{port}")
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT_S)
        thread.join(STOP_TIMEOUT_S)
        assert not thread.is_alive(), "waitress did not stop"


def raw_request(base_url: str, head: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes as a request head (what httpx refuses to send); return the raw reply."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(head)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    return b"".join(chunks)


def trace_of(traceparent: str) -> str:
    """The trace-id field of a traceparent header."""
    return traceparent.split("-")[1]


def wait_for_records(
    ops: list[Any], predicate: Any, count: int, timeout: float = 10.0
) -> list[Any]:
    """Wait until ``count`` captured records match ``predicate``; return them.

    A server sends its response before it finishes the request's record (the record covers
    the whole exchange), so the client may see the response first. Records are matched by
    predicate because a record of an earlier test may land in a later capture.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [op for op in list(ops) if predicate(op)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, f"expected {count} records, got {len(found)}"
            return found
        time.sleep(0.01)


# --- what a service reports -------------------------------------------------------------------


def _traceparent_shape(value: str | None) -> str | None:
    if value is None:
        return None
    return (
        value
        if re.fullmatch(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", value)
        else "<invalid>"
    )


def context_report(inbound_headers: dict[str, str], client_port: int | None) -> dict[str, Any]:
    """What the handler sees: the context, the inbound propagation headers, the connection."""
    snapshot = _state.get()
    inbound_headers = {name.lower(): value for name, value in inbound_headers.items()}
    return {
        "correlation_id": FlextContext.Correlation.get_correlation_id(),
        "parent_correlation_id": FlextContext.Correlation.get_parent_correlation_id(),
        "request_id": FlextContext.Request.get_request_id(),
        "user_id": FlextContext.Request.get_user_id(),
        "service_name": FlextContext.Service.get_service_name(),
        "fields": dict(snapshot[_state.CUSTOM_FIELDS] or {}),
        "baggage": dict(snapshot[_state.BAGGAGE] or {}),
        "outbound": FlextContext.Serialization.get_correlation_context(),
        # Only a well-formed value is reported: the test apps must not echo hostile input.
        "traceparent_in": _traceparent_shape(inbound_headers.get("traceparent")),
        "client_port": client_port,
        "operation": FlextContext.Performance.get_operation_metadata().get("http.method"),
    }


def _asgi_report(request: Request) -> dict[str, Any]:
    return context_report(dict(request.headers), request.client.port if request.client else None)


# --- ASGI services ----------------------------------------------------------------------------


def asgi_service_b(*, strict: bool | None = None) -> FlextContextMiddleware:
    """The downstream service: reports its context."""

    async def work(request: Request) -> Response:
        FlextContext.Performance.add_operation_metadata("handled_by", "service-b")
        return JSONResponse(_asgi_report(request))

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def text(request: Request) -> Response:
        return PlainTextResponse(repr(_asgi_report(request)))

    app = Starlette(
        routes=[Route("/work", work), Route("/boom", boom), Route("/text", text)],
    )
    return FlextContextMiddleware(
        app, service_name="service-b", service_version="2.0", strict=strict
    )


def asgi_service_a(b_url: str) -> FlextContextMiddleware:
    """The upstream service: calls B with an instrumented httpx.AsyncClient."""
    b_host = b_url.removeprefix("http://")
    clients: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=100)
        clients["allowed"] = instrument_client(
            httpx.AsyncClient(limits=limits, timeout=20), allowed_destinations=[b_host]
        )
        # Same destination, but allowlisted for another port only: nothing may be sent.
        clients["unlisted"] = instrument_client(
            httpx.AsyncClient(timeout=20), allowed_destinations=["127.0.0.1:1"]
        )
        yield
        for client in clients.values():
            await client.aclose()

    async def call(request: Request) -> Response:
        response = await clients["allowed"].get(f"{b_url}/work")
        FlextContext.Performance.add_operation_metadata("downstream_status", response.status_code)
        return JSONResponse({"a": _asgi_report(request), "b": response.json()})

    async def call_unlisted(request: Request) -> Response:
        response = await clients["unlisted"].get(f"{b_url}/work")
        return JSONResponse({"a": _asgi_report(request), "b": response.json()})

    app = Starlette(
        routes=[Route("/call", call), Route("/call-unlisted", call_unlisted)], lifespan=lifespan
    )
    return FlextContextMiddleware(app, service_name="service-a", service_version="1.0")


# --- WSGI services ----------------------------------------------------------------------------


def _flask_report() -> dict[str, Any]:
    port = flask_request.environ.get("REMOTE_PORT")
    return context_report(dict(flask_request.headers), int(port) if port else None)


def wsgi_service_b(*, strict: bool | None = None) -> Flask:
    """The downstream Flask service."""
    app = Flask("wsgi_service_b")

    @app.get("/work")
    def work() -> Any:
        FlextContext.Performance.add_operation_metadata("handled_by", "service-b")
        return jsonify(_flask_report())

    @app.get("/text")
    def text() -> Any:
        return repr(_flask_report())

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    app.wsgi_app = FlextContextWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, service_name="service-b", service_version="2.0", strict=strict
    )
    return app


def wsgi_service_a(b_url: str, client: httpx.Client) -> Flask:
    """The upstream Flask service, calling B with an instrumented (shared) httpx.Client."""
    app = Flask("wsgi_service_a")

    @app.get("/call")
    def call() -> Any:
        response = client.get(f"{b_url}/work")
        FlextContext.Performance.add_operation_metadata("downstream_status", response.status_code)
        return jsonify({"a": _flask_report(), "b": response.json()})

    app.wsgi_app = FlextContextWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, service_name="service-a", service_version="1.0"
    )
    return app
