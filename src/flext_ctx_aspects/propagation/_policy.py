"""Trust policy: which destinations may receive the context, how inbound values are read.

The process-wide defaults of inbound reading (strict mode, trust of the user id, the
correlation id sources) live here too; ``apply_settings`` pushes them down
(`set_inbound_defaults`), so nothing in propagation reads the settings.

Context headers carry correlation ids, service identity and custom fields (tenant ids...): an
outbound call to a third party must not get them. `inject` with a ``destination``, and the
httpx / requests integrations (which always know the destination), write headers only when the
destination matches an allowlist: the one given to the call or the integration, else the
process-wide one set by `set_allowed_destinations`. With no allowlist at all, nothing is
sent to any destination (deny by default) and a warning names the refused host (at most once
per host every ten seconds).

Pattern forms (case-insensitive)::

    api.internal               exactly this host, any scheme, any port
    *.internal                 any subdomain of internal (not "internal" itself)
    api.internal:8443          this host on this port (the scheme's default port counts)
    https://*.internal         https only
    127.0.0.1:8000, [::1]:9000 addresses
    *                          every destination: propagation everywhere, on purpose
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from flext_ctx_aspects._diagnostics import logger, value_fingerprint
from flext_ctx_aspects.errors import ConfigError

__all__ = [
    "CORRELATION_SOURCES",
    "DestinationPattern",
    "DestinationsHandle",
    "InboundDefaults",
    "allowed_destinations",
    "destination_allowed",
    "inbound_defaults",
    "parse_destination_pattern",
    "reset_refusal_warnings",
    "set_allowed_destinations",
    "set_inbound_defaults",
]

CORRELATION_SOURCES: Final = ("x-correlation-id", "x-request-id", "traceparent")
"""Where an inbound correlation id may come from, in the default priority order."""


@dataclass(frozen=True, slots=True)
class InboundDefaults:
    """How inbound context is read when a call does not say.

    Attributes:
        strict: Refuse a whole inbound context that has any invalid value.
        trusted: Accept a user id from inbound headers.
        correlation_sources: Where the correlation id comes from, first found wins.
    """

    strict: bool = False
    trusted: bool = False
    correlation_sources: tuple[str, ...] = CORRELATION_SOURCES


_inbound = InboundDefaults()


def set_inbound_defaults(defaults: InboundDefaults) -> None:
    """Make ``defaults`` the process-wide inbound defaults (``apply_settings`` calls it)."""
    global _inbound
    _inbound = defaults


def inbound_defaults() -> InboundDefaults:
    """Return the process-wide inbound defaults."""
    return _inbound


_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_IPV6_CHARACTERS: Final = frozenset("0123456789abcdef:.")
_SCHEME_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")
_FORBIDDEN_IN_URL: Final = frozenset("\\ \t\r\n\x00")
_MAX_HOST_LENGTH: Final = 253
_MAX_WARNED_HOSTS: Final = 256
REFUSAL_WARNING_INTERVAL_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class DestinationPattern:
    """One parsed allowlist entry.

    Attributes:
        text: The pattern as given.
        scheme: Required scheme, or None for any.
        host: Exact host, ``*.suffix`` or ``*``.
        port: Required port, or None for any.
    """

    text: str
    scheme: str | None
    host: str
    port: int | None

    def matches(self, scheme: str | None, host: str, port: int | None) -> bool:
        """Tell whether a destination (normalised: lowercase host, no trailing dot) matches."""
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.port is not None:
            effective = port if port is not None else _DEFAULT_PORTS.get(scheme or "")
            if effective != self.port:
                return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            suffix = self.host[1:]
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host


def _valid_host(host: str, *, wildcard: bool) -> bool:
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        return bool(inner) and ":" in inner and _IPV6_CHARACTERS.issuperset(inner)
    if wildcard and host == "*":
        return True
    if wildcard and host.startswith("*."):
        host = host[2:]
    labels = host.split(".")
    return (
        0 < len(host) <= _MAX_HOST_LENGTH
        and _HOST_CHARACTERS.issuperset(host)
        and all(labels)
        and not host.startswith("-")
    )


def parse_destination_pattern(text: str) -> DestinationPattern:
    """Parse one allowlist pattern (see the module notes for the forms).

    Raises:
        ConfigError: ``text`` is not a pattern (a path, a query, bad characters...).
    """
    where = "allowed destinations"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(where, "pattern", "a non-empty host pattern string", repr(text))
    raw = text.strip().lower()
    scheme: str | None = None
    rest = raw
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
        if not scheme or not _SCHEME_CHARACTERS.issuperset(scheme):
            raise ConfigError(where, text, "a scheme made of letters, digits, '+-.'", repr(scheme))
    if any(c in rest for c in "/?#@") or _FORBIDDEN_IN_URL.intersection(rest):
        raise ConfigError(
            where, text, "[scheme://]host[:port] without path, query or user info", repr(text)
        )
    host, port = rest, None
    if rest.startswith("["):
        closing = rest.find("]")
        host, tail = rest[: closing + 1], rest[closing + 1 :]
        if closing < 0 or (tail and not tail.startswith(":")):
            raise ConfigError(where, text, "an IPv6 address in brackets", repr(text))
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_raw = rest.partition(":")
        port_text = port_text_raw if colon else None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(where, text, "a port from 1 to 65535", repr(port_text))
        port = int(port_text)
    host = host.rstrip(".") if host != "*" else host
    if not _valid_host(host, wildcard=True):
        raise ConfigError(
            where, text, "a host name, '*.domain', '*' or an address", f"host {host!r}"
        )
    return DestinationPattern(text, scheme, host, port)


def _split_destination(destination: str) -> tuple[str | None, str, int | None] | None:
    """Return ``(scheme, host, port)`` of a URL or ``host[:port]``, or None when unusable."""
    if not isinstance(destination, str) or _FORBIDDEN_IN_URL.intersection(destination):
        return None
    if not destination.isascii() or not destination.isprintable():
        return None
    try:
        parts = urlsplit(destination if "://" in destination else "//" + destination)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    return _normalise_parts(parts.scheme or None, host or "", port)


def _normalise_parts(
    scheme: object, host: object, port: object
) -> tuple[str | None, str, int | None] | None:
    if not isinstance(host, str) or not host or not host.isascii():
        return None
    if scheme is not None and (not isinstance(scheme, str) or not scheme.isascii()):
        return None
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        return None
    host = host.rstrip(".").lower()
    if ":" in host and not host.startswith("["):  # URL parsers drop an IPv6 address's brackets
        host = f"[{host}]"
    if not _valid_host(host, wildcard=False):
        return None
    return (scheme.lower() if scheme else None), host, port


def destination_allowed(
    destination: str | tuple[str | None, str, int | None],
    patterns: Iterable[str | DestinationPattern] | None = None,
) -> bool:
    """Tell whether context may be sent to ``destination``.

    Args:
        destination: A URL (``https://api.internal/x``), a ``host[:port]``, or a
            ``(scheme, host, port)`` tuple as HTTP clients hold it.
        patterns: The allowlist; None uses the process-wide one
            (`set_allowed_destinations`). An empty allowlist allows nothing.

    Returns:
        True when a pattern matches. A URL that cannot be parsed, or has user info tricks,
        spaces, backslashes or control characters, never matches.
    """
    split = (
        _normalise_parts(*destination)
        if isinstance(destination, tuple)
        else _split_destination(destination)
    )
    if split is None:
        return False
    parsed = _patterns if patterns is None else _parse_all(patterns)
    return any(pattern.matches(*split) for pattern in parsed)


def _parse_all(
    patterns: Iterable[str | DestinationPattern],
    where: str = "set_allowed_destinations()",
    key: str = "patterns",
) -> tuple[DestinationPattern, ...]:
    if isinstance(patterns, (str, bytes)) or not isinstance(patterns, Iterable):
        raise ConfigError(
            where,
            key,
            'a list of host patterns, e.g. ["127.0.0.1"]',
            f"{patterns!r:.60}, a {type(patterns).__name__}",
        )
    parsed = []
    for pattern in patterns:
        if isinstance(pattern, DestinationPattern):
            parsed.append(pattern)
            continue
        try:
            parsed.append(parse_destination_pattern(pattern))
        except ConfigError as error:  # named by the user's keyword, with the bad pattern
            raise ConfigError(
                where, key, f"host patterns: {error.expected}", f"{error.got} in the list"
            ) from None
    return tuple(parsed)


def compile_patterns(
    patterns: Iterable[str | DestinationPattern] | None,
    where: str = "set_allowed_destinations()",
    key: str = "allowed_destinations",
) -> tuple[DestinationPattern, ...] | None:
    """Parse an allowlist once (integrations do it at construction); None stays None.

    Args:
        patterns: The allowlist.
        where: The user's call, named in the error (e.g. ``"instrument_client()"``).
        key: The user's keyword, named in the error.

    Raises:
        ConfigError: Not a list of patterns, or a pattern is invalid.
    """
    return None if patterns is None else _parse_all(patterns, where, key)


_lock = threading.Lock()
_patterns: tuple[DestinationPattern, ...] = ()
_warned_hosts: dict[str, float] = {}  # host -> when its refusal was last logged


class DestinationsHandle:
    """Returned by `set_allowed_destinations`; restores the previous allowlist.

    Call it, or leave its ``with`` block, to put back the allowlist in force before.
    """

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[DestinationPattern, ...]) -> None:
        self._previous = previous

    def __call__(self) -> None:
        """Restore the previous allowlist."""
        global _patterns
        with _lock:
            _patterns = self._previous

    def __enter__(self) -> DestinationsHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self()


def set_allowed_destinations(patterns: Iterable[str]) -> DestinationsHandle:
    """Set the process-wide allowlist of destinations that may receive the context.

    Args:
        patterns: Host patterns (see the module notes); an empty list allows nothing.

    Returns:
        A handle restoring the previous allowlist when called or at the end of its ``with``.

    Raises:
        ConfigError: A pattern is invalid (nothing is changed).
    """
    global _patterns
    parsed = _parse_all(patterns)
    with _lock:
        previous = _patterns
        _patterns = parsed
        _warned_hosts.clear()
    return DestinationsHandle(previous)


def reset_refusal_warnings() -> None:
    """Forget which refused hosts were logged, so the next refusal of each is logged again."""
    with _lock:
        _warned_hosts.clear()


def allowed_destinations() -> tuple[str, ...]:
    """Return the process-wide allowlist, as the patterns were given."""
    return tuple(p.text for p in _patterns)


def warn_refused(destination: object) -> None:
    """Log that context was not sent to ``destination``.

    At most once per host every `REFUSAL_WARNING_INTERVAL_S` seconds, naming only a
    clean host name (or a hash of an unusable destination, never the raw input).
    """
    if isinstance(destination, tuple) and len(destination) == 3:
        split = _normalise_parts(*destination)
    else:
        split = _split_destination(destination) if isinstance(destination, str) else None
    if split is not None:
        # The whole origin, not the host alone: "http://api.internal:8080" tells which
        # pattern is missing (a pattern may name a scheme and a port).
        scheme, host, port = split
        shown = host if scheme is None else f"{scheme}://{host}"
        if port is not None:
            shown = f"{shown}:{port}"
    else:
        fingerprint = value_fingerprint(repr(destination))
        shown = f"an unusable destination (sha256 {fingerprint})"
    now = time.monotonic()
    with _lock:
        last = _warned_hosts.get(shown)
        if last is not None and now - last < REFUSAL_WARNING_INTERVAL_S:
            return
        if last is None and len(_warned_hosts) >= _MAX_WARNED_HOSTS:
            # Bounded memory: forget the hosts whose window is over.
            for host, when in list(_warned_hosts.items()):
                if now - when >= REFUSAL_WARNING_INTERVAL_S:
                    del _warned_hosts[host]
            if len(_warned_hosts) >= _MAX_WARNED_HOSTS:
                return
        _warned_hosts[shown] = now
    logger.warning(
        "flext_ctx_aspects: context not propagated to %s: not in the allowed destinations",
        shown,
    )
