"""Pure ASGI middleware: one fresh, validated context per request (FastAPI, Starlette, any app).

``FlextContextMiddleware`` is a plain ASGI callable, not Starlette's ``BaseHTTPMiddleware``: it
adds no task, no body buffering and works with streaming responses and websockets. Per
``http`` or ``websocket`` connection scope it:

1. extracts the inbound context from the headers (validation, trust, correlation priority:
   see ``docs/propagation.md``);
2. runs the application in a fresh context built from it (nothing of the previous request on
   a keep-alive connection is visible), with a request id (inbound or new) and the configured
   service identity;
3. times the request as an operation record named ``HTTP <METHOD>``, with ``http.method``,
   ``http.path`` and ``http.status_code`` in its metadata (``add_operation_metadata`` in a
   handler adds to it);
4. echoes the correlation id in the ``X-Correlation-Id`` response header.

In strict mode an invalid inbound value gets a ``400`` (a websocket is closed with code
1008) whose body names the header and the reason, never the value; the application is not
called. Lifespan and other scopes pass through untouched.

Example::

    from starlette.applications import Starlette
    from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware

    app = FlextContextMiddleware(Starlette(routes=...), service_name="orders")
    # or, with Starlette/FastAPI: app.add_middleware(FlextContextMiddleware, service_name=...)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from flext_ctx_aspects import _state
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.integrations._server import RequestRecorder, ServerOptions, refusal_text
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

    Raises:
        InvalidValueError: A service value is not a valid name.
        ValueError: ``echo_header`` is not a header name.
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
    ) -> None:
        self.app = app
        self.options = ServerOptions.build(
            service_name=service_name,
            service_version=service_version,
            service_environment=service_environment,
            strict=strict,
            trusted=trusted,
            formats=formats,
            correlation_sources=correlation_sources,
            echo_header=echo_header,
        )
        self._echo = None if echo_header is None else echo_header.lower().encode("latin-1")

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

        async def send_with_context(message: Message) -> None:
            if message.get("type") == "http.response.start":
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
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                recorder.finish(error)
            finally:
                _state.restore(token, snapshot)

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
