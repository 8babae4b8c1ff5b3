"""Pure ASGI middleware: one fresh, validated context per request (FastAPI, Starlette, any app).

``FlextContextMiddleware`` is a plain ASGI callable, not Starlette's ``BaseHTTPMiddleware``: it
adds no task, no body buffering and works with streaming responses and websockets. Per
``http`` or ``websocket`` connection scope it:

1. extracts the inbound context from the headers (validation, trust, correlation priority:
   see ``docs/propagation.md``);
2. runs the application in a fresh context built from it (nothing of the previous request on
   a keep-alive connection is visible), with a request id (inbound or new) and the configured
   service identity;
3. times the request as an operation record named after the route template
   (``HTTP GET /users/{user_id}``: Starlette and FastAPI put the matched route in
   ``scope["route"]``; ``HTTP GET`` when no route matched), with ``http.method``,
   ``http.path``, ``http.route`` and ``http.status_code`` in its metadata
   (``add_operation_metadata`` in a handler adds to it); a response status in
   ``error_statuses`` (5xx by default) is recorded as ``status="error"``;
4. echoes the correlation id in the ``X-Correlation-Id`` response header;
5. answers an unhandled exception itself with a ``500`` carrying ``X-Correlation-Id`` (inside
   the request's context) when no response has started, then re-raises it for the server to
   log. So ``app.add_middleware(FlextContextMiddleware)``, which puts the middleware *inside*
   Starlette's ``ServerErrorMiddleware``, answers like the outermost install.

In strict mode an invalid inbound value gets a ``400`` (a websocket is closed with code
1008) whose body names the header and the reason, never the value; the application is not
called. Lifespan and other scopes pass through untouched.

Example::

    from starlette.applications import Starlette
    from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware

    app = FlextContextMiddleware(Starlette(routes=...), service_name="orders")
    # or, with Starlette/FastAPI: app.add_middleware(FlextContextMiddleware, service_name=...)
    # (same behaviour, except that a custom 500 handler of the app is not used for
    # unhandled exceptions: the middleware answers them first, see docs/propagation.md)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from flext_ctx_aspects import _options, _state
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.integrations._server import (
    RecordName,
    RequestRecorder,
    ServerOptions,
    clean_route,
    refusal_text,
)
from flext_ctx_aspects.propagation import ASGI_SCOPE, Format

__all__ = ["ASGIApp", "FlextContextMiddleware", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SCOPED: Final = frozenset({"http", "websocket"})
_POLICY_VIOLATION: Final = 1008  # RFC 6455 §7.4.1


class FlextContextMiddleware:
    """ASGI middleware giving each request its own context, timing and correlation id.

    Args:
        app: The ASGI application.
        service_name: This service's name, recorded on every request (it wins over the
            caller's ``X-Service-Name``).
        service_version: This service's version.
        service_environment: This service's environment.
        strict: Refuse requests with an invalid context header (``400``); default
            ``Settings.strict_validation``.
        trusted: Accept ``X-User-Id`` from callers (only behind a gateway that sets it);
            default ``Settings.trust_inbound_user_id``.
        formats: Inbound formats (names or `Format`).
        correlation_sources: Correlation id priority; default ``Settings.correlation_sources``.
        echo_header: Response header echoing the correlation id; None to disable.
        record_name: ``record_name(method, route) -> str`` names each request's record;
            ``route`` is the route template or None. Default: ``HTTP GET /items/{id}``,
            or ``HTTP GET`` when no route is known (never the raw path).
        error_statuses: Response status codes recorded as errors; default 500-599.

    Raises:
        ConfigError: An option of the wrong type (``strict="yes"``, ``formats="flext"``),
            an unknown format or correlation source, ``echo_header`` not a header name.
        InvalidValueError: A service value is not a valid name.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service_name: str | None = None,
        service_version: str | None = None,
        service_environment: str | None = None,
        strict: bool | None = None,
        trusted: bool | None = None,
        formats: Iterable[str | Format] | None = None,
        correlation_sources: Iterable[str] | None = None,
        echo_header: str | None = "X-Correlation-Id",
        record_name: RecordName | None = None,
        error_statuses: Iterable[int] | None = None,
    ) -> None:
        self.app = _options.check_callable(
            "FlextContextMiddleware()", "app", app, expected="an ASGI application"
        )
        self.options = ServerOptions.build(
            "FlextContextMiddleware()",
            service_name=service_name,
            service_version=service_version,
            service_environment=service_environment,
            strict=strict,
            trusted=trusted,
            formats=formats,
            correlation_sources=correlation_sources,
            echo_header=echo_header,
            record_name=record_name,
            error_statuses=error_statuses,
        )
        echo = self.options.echo_header
        self._echo = None if echo is None else echo.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope.get("type") not in _SCOPED:
            await self.app(scope, receive, send)
            return
        options = self.options
        method = scope.get("method") or ("WEBSOCKET" if scope["type"] == "websocket" else "GET")
        recorder = RequestRecorder(options, method, scope.get("path"))
        extracted, refusal = options.extract(scope, ASGI_SCOPE)
        snapshot = options.snapshot(extracted)
        correlation_id: str | None = snapshot[_state.CORRELATION_ID]
        echo = self._echo
        echoed = (
            None
            if echo is None or correlation_id is None
            else (echo, correlation_id.encode("latin-1"))
        )

        started = False

        async def send_with_context(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
                recorder.status = message.get("status")
                if echoed is not None:
                    headers = list(message.get("headers") or ())
                    if not any(bytes(name).lower() == echoed[0] for name, _ in headers):
                        headers.append(echoed)
                        message = {**message, "headers": headers}
            elif message.get("type") == "websocket.accept":
                recorder.status = 101
            await send(message)

        token = _state.push(snapshot)
        recorder.begin()
        error: BaseException | None = None
        try:
            if refusal is not None:
                await self._refuse(scope, send_with_context, refusal)
            else:
                await self.app(scope, receive, send_with_context)
        except Exception as exc:
            error = exc
            if not started and scope.get("type") == "http":
                # Answered here, inside the request's context, so the 500 carries the
                # correlation id however the middleware was installed (see module docs).
                await self._internal_error(send_with_context)
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                recorder.route = _route_of(scope)
                recorder.finish(error)
            finally:
                _state.restore(token, snapshot)

    @staticmethod
    async def _internal_error(send: Send) -> None:
        body = b"Internal Server Error"
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode("ascii")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except Exception as error:  # the client went away: the original error still rises
            report_internal_error("sending the 500 response", error)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: InvalidValueError) -> None:
        if scope.get("type") == "websocket":
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
            return
        body = refusal_text(error).encode("ascii")
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route_of(scope: Scope) -> str | None:
    # Starlette's router (and so FastAPI's) stores the matched route in the scope it was
    # given, which is this scope: read after the application ran.
    return clean_route(getattr(scope.get("route"), "path", None))
