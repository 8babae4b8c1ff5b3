"""WSGI middleware: one fresh, validated context per request (Flask, Django, any WSGI app).

WSGI servers reuse threads: a context value set while handling one request would still be
there for the next request on the same thread. ``FlextContextWSGIMiddleware`` runs every
request, *including the iteration of its response body*, in its own ``contextvars.Context``
copied from the server thread's, so nothing leaks in either direction, and the body of a
streaming response still sees the request's context.

Per request, as the ASGI middleware: extraction and validation of the inbound context, a fresh
context with a request id and the configured service identity, one operation record named
after the route template (``HTTP GET /users/<int:user_id>``: Flask's ``request.url_rule``,
found through the Werkzeug request in the environ; ``HTTP GET`` when no rule matched or the
framework exposes none) with ``http.method``, ``http.path``, ``http.route`` and
``http.status_code`` in its metadata (recorded when the server closes the response), a
response status in ``error_statuses`` (5xx by default: a Flask view that raised) recorded
as ``status="error"``, and the correlation id echoed in ``X-Correlation-Id``. Strict mode
answers ``400`` without calling the application.

Example::

    from flask import Flask
    from flext_ctx_aspects.integrations.wsgi import FlextContextWSGIMiddleware

    app = Flask(__name__)
    app.wsgi_app = FlextContextWSGIMiddleware(app.wsgi_app, service_name="billing")
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flext_ctx_aspects import _options, _state
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.integrations._server import (
    RecordName,
    RequestRecorder,
    ServerOptions,
    clean_route,
    refusal_text,
)
from flext_ctx_aspects.propagation import WSGI_ENVIRON, Format

__all__ = ["FlextContextWSGIMiddleware", "StartResponse", "WSGIApp"]

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ResponseInContext:
    """The application's response body, iterated and closed inside the request's context."""

    __slots__ = ("_body", "_context", "_finish", "_iterator")

    def __init__(
        self,
        body: Iterable[bytes],
        context: contextvars.Context,
        finish: Callable[[BaseException | None], None],
    ) -> None:
        self._body = body
        self._context = context
        self._finish: Callable[[BaseException | None], None] | None = finish
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            if self._iterator is None:
                self._iterator = self._context.run(iter, self._body)
            return self._context.run(next, self._iterator)
        except StopIteration:
            self._done(None)
            raise
        except BaseException as error:
            self._done(error)
            raise

    def close(self) -> None:
        """Close the application's body (PEP 3333), then record the request if still open."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._done(None)

    def _done(self, error: BaseException | None) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            self._context.run(finish, error)


class FlextContextWSGIMiddleware:
    """WSGI middleware giving each request its own context, timing and correlation id.

    Args:
        app: The WSGI application (for Flask, ``app.wsgi_app``).
        service_name: This service's name, recorded on every request (it wins over the
            caller's ``X-Service-Name``).
        service_version: This service's version.
        service_environment: This service's environment.
        strict: Refuse requests with an invalid context header (``400``); default
            ``Settings.strict_validation``.
        trusted: Accept ``X-User-Id`` from callers; default ``Settings.trust_inbound_user_id``.
        formats: Inbound formats (names or `Format`).
        correlation_sources: Correlation id priority; default ``Settings.correlation_sources``.
        echo_header: Response header echoing the correlation id; None to disable.
        record_name: ``record_name(method, route) -> str`` names each request's record;
            ``route`` is the route template or None. Default: ``HTTP GET /items/<id>``,
            or ``HTTP GET`` when no route is known (never the raw path).
        error_statuses: Response status codes recorded as errors; default 500-599.

    Raises:
        ConfigError: An option of the wrong type (``strict="yes"``, ``formats="flext"``),
            an unknown format or correlation source, ``echo_header`` not a header name.
        InvalidValueError: A service value is not a valid name.
    """

    def __init__(
        self,
        app: WSGIApp,
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
            "FlextContextWSGIMiddleware()",
            "app",
            app,
            expected="a WSGI application (for Flask: app.wsgi_app)",
        )
        self.options = ServerOptions.build(
            "FlextContextWSGIMiddleware()",
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

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Handle one WSGI request in a context of its own."""
        context = contextvars.copy_context()
        return context.run(self._handle, context, environ, start_response)

    def _handle(
        self, context: contextvars.Context, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        # Runs inside `context`, a copy private to this request: state set here is dropped
        # with it, so there is no token to reset.
        options = self.options
        recorder = RequestRecorder(options, environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
        extracted, refusal = options.extract(environ, WSGI_ENVIRON)
        snapshot = options.snapshot(extracted)
        _state.replace(snapshot)
        recorder.begin()
        correlation_id: str | None = snapshot[_state.CORRELATION_ID]
        echo = options.echo_header

        def start_with_context(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            code = status[:3] if isinstance(status, str) else ""
            recorder.status = int(code) if code.isdigit() else None
            # Read now: Flask drops its request object from the environ when the view's
            # request context ends, before the server iterates the body.
            recorder.route = _route_of(environ)
            if echo is not None and correlation_id is not None:
                lowered = echo.lower()
                if not any(name.lower() == lowered for name, _ in headers):
                    headers = [*headers, (echo, correlation_id)]
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        try:
            if refusal is not None:
                body: Iterable[bytes] = self._refuse(start_with_context, refusal)
            else:
                body = self.app(environ, start_with_context)
        except BaseException as error:
            recorder.route = recorder.route or _route_of(environ)
            recorder.finish(error)
            raise

        def finish(error: BaseException | None) -> None:
            recorder.route = recorder.route or _route_of(environ)
            recorder.finish(error)

        return _ResponseInContext(body, context, finish)

    @staticmethod
    def _refuse(start_response: StartResponse, error: InvalidValueError) -> list[bytes]:
        body = refusal_text(error).encode("ascii")
        start_response(
            "400 Bad Request",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


def _route_of(environ: dict[str, Any]) -> str | None:
    # Werkzeug (so Flask) keeps the request object in the environ while the request is
    # handled; Flask sets its matched rule on it during routing. Any other framework: no
    # route, the fallback name.
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    return clean_route(getattr(rule, "rule", None))
