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

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

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
    ) -> None:
        super().__init__()
        self.wrapped = HTTPAdapter() if wrapped is None else wrapped
        self._patterns = compile_patterns(allowed_destinations)
        self._formats = None if formats is None else tuple(formats)
        inject({}, formats=self._formats)  # validates the format names now

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
    """
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, ContextAdapter):
            session.mount(
                prefix,
                ContextAdapter(adapter, allowed_destinations=allowed_destinations, formats=formats),
            )
    return session
