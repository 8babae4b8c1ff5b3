"""Getters and setters: how `extract` and `inject` read and write carrier types.

A carrier is whatever holds headers: a dict, an ASGI scope or its list of ``(bytes, bytes)``
header pairs, a WSGI environ, a message's headers dict, ``httpx.Headers``. A getter lists and
reads header values; a setter writes them. Both follow the
`Getter` / `Setter`
Protocols, so a user carrier needs no subclassing, only two or one methods.

The built-in setters also have ``delete(carrier, key)``: `inject` uses it to remove
propagation headers a carrier already holds when the destination is not allowed (a redirect
to another host copies the original request's headers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final

from flext_ctx_aspects.typing import Getter, Setter

__all__ = [
    "ASGI_HEADERS",
    "ASGI_SCOPE",
    "MAPPING",
    "PAIRS",
    "WSGI_ENVIRON",
    "AsgiHeadersSetter",
    "AsgiScopeGetter",
    "MappingGetter",
    "MappingSetter",
    "PairsGetter",
    "PairsSetter",
    "WsgiEnvironGetter",
    "default_getter",
    "default_setter",
    "pairs_from",
]


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return None


class MappingGetter:
    """Reads a mapping of header names to values (a value may be a list of repeated lines).

    Names are matched case-insensitively; ``str`` and ``bytes`` names both work.
    """

    def keys(self, carrier: Any) -> list[str]:
        """Return the header names of ``carrier``."""
        names = []
        for key in carrier:
            text = _text(key)
            if text is not None:
                names.append(text)
        return names

    def get(self, carrier: Any, key: str) -> list[str | bytes]:
        """Return every value of header ``key`` (case-insensitive)."""
        wanted = key.lower()
        found: list[str | bytes] = []
        for name, value in carrier.items():
            text = _text(name)
            if text is None or text.lower() != wanted:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            found.extend(v for v in values if isinstance(v, (str, bytes)))
        return found


class PairsGetter:
    """Reads a sequence of ``(name, value)`` pairs.

    ASGI ``scope["headers"]``, WSGI response headers, Kafka-style record headers. Names and
    values may be ``str`` or ``bytes``.
    """

    def keys(self, carrier: Any) -> list[str]:
        """Return the header names, in order, repeated names once."""
        seen: dict[str, None] = {}
        for pair in carrier:
            text = _text(pair[0])
            if text is not None:
                seen.setdefault(text, None)
        return list(seen)

    def get(self, carrier: Any, key: str) -> list[str | bytes]:
        """Return every value of header ``key`` (case-insensitive), in order."""
        wanted = key.lower()
        found: list[str | bytes] = []
        for name, value in carrier:
            text = _text(name)
            if text is not None and text.lower() == wanted and isinstance(value, (str, bytes)):
                found.append(value)
        return found


class AsgiScopeGetter:
    """Reads the headers of an ASGI ``http`` or ``websocket`` scope."""

    _pairs: Final = PairsGetter()

    def keys(self, carrier: Any) -> list[str]:
        """Return the header names of the scope."""
        return self._pairs.keys(carrier.get("headers") or ())

    def get(self, carrier: Any, key: str) -> list[str | bytes]:
        """Return every value of header ``key`` in the scope."""
        return self._pairs.get(carrier.get("headers") or (), key)


class WsgiEnvironGetter:
    """Reads the request headers of a WSGI environ (``HTTP_X_CORRELATION_ID`` and so on).

    Only ``HTTP_*`` keys are headers; ``CONTENT_TYPE`` and the other CGI variables are not
    propagation headers and are not listed. Names come back in lowercase with dashes.
    """

    def keys(self, carrier: Any) -> list[str]:
        """Return the header names found in the environ."""
        return [
            key[5:].replace("_", "-").lower()
            for key in carrier
            if isinstance(key, str) and key.startswith("HTTP_")
        ]

    def get(self, carrier: Any, key: str) -> list[str | bytes]:
        """Return the value of header ``key`` (the server joined repeated lines)."""
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, (str, bytes)) else []


class MappingSetter:
    """Writes into a mutable mapping, replacing a value under any spelling of the name."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        """Set header ``key`` to ``value``."""
        self.delete(carrier, key)
        carrier[key] = value

    def delete(self, carrier: Any, key: str) -> None:
        """Remove header ``key`` under any spelling."""
        wanted = key.lower()
        for name in [n for n in carrier if isinstance(n, str) and n.lower() == wanted]:
            del carrier[name]
        wanted_bytes = wanted.encode("latin-1", "replace")
        for raw in [n for n in carrier if isinstance(n, bytes) and n.lower() == wanted_bytes]:
            del carrier[raw]


class PairsSetter:
    """Writes ``(str, str)`` pairs into a list (WSGI ``start_response`` headers)."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        """Replace every pair named ``key`` by one ``(key, value)`` pair."""
        self.delete(carrier, key)
        carrier.append((key, value))

    def delete(self, carrier: Any, key: str) -> None:
        """Remove every pair named ``key`` (case-insensitive)."""
        wanted = key.lower()
        carrier[:] = [p for p in carrier if (_text(p[0]) or "").lower() != wanted]


class AsgiHeadersSetter(PairsSetter):
    """Writes ``(bytes, bytes)`` pairs into a list: ASGI header lists, lowercase names."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        """Replace every pair named ``key`` by one ``(key, value)`` pair of latin-1 bytes."""
        self.delete(carrier, key)
        carrier.append((key.lower().encode("latin-1"), value.encode("latin-1")))


MAPPING: Final = MappingGetter()
PAIRS: Final = PairsGetter()
ASGI_SCOPE: Final = AsgiScopeGetter()
WSGI_ENVIRON: Final = WsgiEnvironGetter()
ASGI_HEADERS: Final = AsgiHeadersSetter()
_MAPPING_SETTER: Final = MappingSetter()
_PAIRS_SETTER: Final = PairsSetter()


def default_getter(carrier: object) -> Getter | None:
    """Pick the getter for ``carrier``'s type; None when the carrier is read as it is.

    A WSGI environ (it has ``wsgi.version``) and an ASGI scope (``type`` and ``headers``)
    are recognised; any other mapping or iterable of pairs needs no getter.
    """
    if isinstance(carrier, Mapping):
        if "wsgi.version" in carrier:
            return WSGI_ENVIRON
        if carrier.get("type") in ("http", "websocket") and "headers" in carrier:
            return ASGI_SCOPE
    return None


def default_setter(carrier: object) -> Setter:
    """Pick the setter for ``carrier``: mappings, ASGI lists (bytes pairs) or str pairs.

    Raises:
        TypeError: ``carrier`` is neither a mutable mapping nor a list.
    """
    if isinstance(carrier, MutableMapping):
        return _MAPPING_SETTER
    if isinstance(carrier, list):
        first = carrier[0][0] if carrier else b""
        return ASGI_HEADERS if isinstance(first, (bytes, bytearray)) else _PAIRS_SETTER
    raise TypeError(
        "inject() needs a mutable mapping or a list of header pairs, or a setter "
        f"(got {type(carrier).__qualname__})"
    )


def pairs_from(getter: Getter, carrier: object) -> Iterable[tuple[str, str | bytes]]:
    """Read every header of ``carrier`` through ``getter`` as ``(name, value)`` pairs."""
    return [(name, value) for name in getter.keys(carrier) for value in getter.get(carrier, name)]
