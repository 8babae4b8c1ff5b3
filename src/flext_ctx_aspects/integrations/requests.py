"""Outbound propagation for ``requests`` sessions, honouring the destination allowlist.

``requests`` has no request hook, but every request a session sends (redirects included)
goes through a transport adapter. `ContextAdapter` wraps an adapter and writes the
current context into each request whose destination is allowed, removing propagation headers
from the others (a redirect to another host copies the first request's headers).

Example::

    import requests
    from flext_ctx_aspects.integrations.requests import instrument_session

    session = instrument_session(requests.Session(), allowed_destinations=["*.internal"])
    session.get("https://orders.internal/api")  # carries X-Correlation-Id, traceparent...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flext_ctx_aspects.integrations._extras import missing_extra

try:
    import requests
    from requests.adapters import BaseAdapter, HTTPAdapter
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra(
        "flext_ctx_aspects.integrations.requests", "requests", "requests"
    ) from _error

from flext_ctx_aspects.integrations._outbound import outbound_formats
from flext_ctx_aspects.propagation import DestinationPattern, Format, inject
from flext_ctx_aspects.propagation._policy import compile_patterns

__all__ = ["ContextAdapter", "instrument_session"]


class ContextAdapter(BaseAdapter):
    """A transport adapter that injects the context, then delegates to another adapter.

    Args:
        wrapped: The adapter doing the work (default: a new ``HTTPAdapter``); its pool and
            retry configuration are kept.
        allowed_destinations: Host patterns that may receive the context; None uses the
            process-wide allowlist (``propagation.set_allowed_destinations``).
        formats: Outbound formats; None uses the defaults.

    Raises:
        ConfigError: A pattern or format name is invalid.
    """

    def __init__(
        self,
        wrapped: BaseAdapter | None = None,
        *,
        allowed_destinations: Iterable[str | DestinationPattern] | None = None,
        formats: Iterable[str | Format] | None = None,
        where: str = "ContextAdapter()",
    ) -> None:
        super().__init__()
        self.wrapped = HTTPAdapter() if wrapped is None else wrapped
        if not isinstance(self.wrapped, BaseAdapter):
            raise TypeError(
                "ContextAdapter() wraps a requests transport adapter "
                f"(got {type(self.wrapped).__qualname__})"
            )
        self._patterns = compile_patterns(allowed_destinations, where, "allowed_destinations")
        self._formats = outbound_formats(where, formats)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Inject into ``request.headers`` if its URL is allowed, then send it."""
        if request.url is not None:
            inject(
                request.headers,
                formats=self._formats,
                destination=str(request.url),
                allowed_destinations=self._patterns,
            )
        return self.wrapped.send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )

    def close(self) -> None:
        """Close the wrapped adapter."""
        self.wrapped.close()


def instrument_session(
    session: requests.Session,
    *,
    allowed_destinations: Iterable[str | DestinationPattern] | None = None,
    formats: Iterable[str | Format] | None = None,
) -> requests.Session:
    """Wrap every adapter mounted on ``session`` in a `ContextAdapter`; returns it.

    Adapters mounted later are not wrapped: mount a ``ContextAdapter(your_adapter, ...)``.

    Raises:
        TypeError: ``session`` is not a ``requests.Session`` (an httpx client goes to
            ``flext_ctx_aspects.integrations.httpx.instrument_client``).
        ConfigError: ``allowed_destinations`` is not a list of host patterns, or
            ``formats`` is not a list of format names.
    """
    if not isinstance(session, requests.Session):  # checked at run time: callers are untyped
        hint = ""  # type: ignore[unreachable]
        if type(session).__module__.split(".")[0] == "httpx":
            hint = (
                "; for an httpx client use "
                "flext_ctx_aspects.integrations.httpx.instrument_client(client)"
            )
        raise TypeError(
            "instrument_session() expects a requests.Session "
            f"(got {type(session).__module__}.{type(session).__qualname__}){hint}"
        )
    where = "instrument_session()"
    compile_patterns(allowed_destinations, where, "allowed_destinations")
    outbound_formats(where, formats)
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, ContextAdapter):
            session.mount(
                prefix,
                ContextAdapter(
                    adapter,
                    allowed_destinations=allowed_destinations,
                    formats=formats,
                    where=where,
                ),
            )
    return session
