"""Outbound propagation for ``httpx`` (sync and async clients), honouring the allowlist.

A request event hook writes the current context into every request the client sends, only
when the request's destination is allowed; otherwise it removes any propagation header the
request already carries (a redirect to another host copies the first request's headers).
Hooks run for every request, redirects included, in the caller's thread or task, so they see
the caller's context.

Example::

    import httpx
    from flext_ctx_aspects.integrations.httpx import instrument_client

    client = instrument_client(httpx.Client(), allowed_destinations=["*.internal"])
    client.get("https://orders.internal/api")  # carries X-Correlation-Id, traceparent...
    client.get("https://example.com/")         # carries nothing
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from flext_ctx_aspects.integrations._extras import missing_extra
from flext_ctx_aspects.integrations._outbound import outbound_formats

try:
    import httpx
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("flext_ctx_aspects.integrations.httpx", "httpx", "httpx") from _error

from flext_ctx_aspects.propagation import DestinationPattern, Format, inject
from flext_ctx_aspects.propagation._policy import compile_patterns

__all__ = ["ContextInjector", "async_request_hook", "instrument_client", "request_hook"]

ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)


class ContextInjector:
    """Writes the current context into an ``httpx.Request``; the body of both hooks.

    Args:
        allowed_destinations: Host patterns that may receive the context; None uses the
            process-wide allowlist (``propagation.set_allowed_destinations``).
        formats: Outbound formats; None uses the defaults.

    Raises:
        ConfigError: A pattern or format name is invalid.
    """

    __slots__ = ("_formats", "_patterns")

    def __init__(
        self,
        allowed_destinations: Iterable[str | DestinationPattern] | None = None,
        formats: Iterable[str | Format] | None = None,
        *,
        where: str = "ContextInjector()",
    ) -> None:
        self._patterns = compile_patterns(allowed_destinations, where, "allowed_destinations")
        self._formats = outbound_formats(where, formats)

    def __call__(self, request: httpx.Request) -> None:
        """Inject into ``request.headers`` if its destination is allowed."""
        url = request.url
        inject(
            request.headers,
            formats=self._formats,
            destination=(url.scheme, url.host, url.port),
            allowed_destinations=self._patterns,
        )


def request_hook(
    *,
    allowed_destinations: Iterable[str | DestinationPattern] | None = None,
    formats: Iterable[str | Format] | None = None,
) -> Callable[[httpx.Request], None]:
    """Return a request event hook for ``httpx.Client(event_hooks={"request": [...]})``."""
    return ContextInjector(allowed_destinations, formats, where="request_hook()")


def async_request_hook(
    *,
    allowed_destinations: Iterable[str | DestinationPattern] | None = None,
    formats: Iterable[str | Format] | None = None,
) -> Callable[[httpx.Request], Awaitable[None]]:
    """Return a request event hook for ``httpx.AsyncClient`` (async clients await hooks)."""
    injector = ContextInjector(allowed_destinations, formats, where="async_request_hook()")

    async def inject_context(request: httpx.Request) -> None:
        injector(request)

    return inject_context


def instrument_client(
    client: ClientT,
    *,
    allowed_destinations: Iterable[str | DestinationPattern] | None = None,
    formats: Iterable[str | Format] | None = None,
) -> ClientT:
    """Add the context-injecting request hook to an existing client; returns the client.

    Args:
        client: An ``httpx.Client`` or ``httpx.AsyncClient``.
        allowed_destinations: Host patterns that may receive the context; None uses the
            process-wide allowlist.
        formats: Outbound formats; None uses the defaults.

    Raises:
        TypeError: ``client`` is not an httpx client (a ``requests.Session`` goes to
            ``flext_ctx_aspects.integrations.requests.instrument_session``).
        ConfigError: ``allowed_destinations`` is not a list of host patterns (a bare
            ``"127.0.0.1"`` is refused), or ``formats`` is not a list of format names.
    """
    if not isinstance(client, (httpx.Client, httpx.AsyncClient)):
        hint = ""
        if type(client).__module__.split(".")[0] == "requests":
            hint = (
                "; for a requests session use "
                "flext_ctx_aspects.integrations.requests.instrument_session(session)"
            )
        raise TypeError(
            "instrument_client() expects an httpx.Client or httpx.AsyncClient "
            f"(got {type(client).__module__}.{type(client).__qualname__}){hint}"
        )
    where = "instrument_client()"
    hook: Callable[[httpx.Request], object]
    injector = ContextInjector(allowed_destinations, formats, where=where)
    if isinstance(client, httpx.AsyncClient):

        async def inject_context(request: httpx.Request) -> None:
            injector(request)

        hook = inject_context
    else:
        hook = injector
    current: dict[str, list[Callable[..., object]]] = dict(client.event_hooks)
    current["request"] = [*current.get("request", []), hook]
    client.event_hooks = current
    return client
