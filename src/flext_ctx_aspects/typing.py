"""Public types: the extension-point Protocols and ``FlextTypes``.

Users implement these Protocols structurally; nothing needs to subclass them.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from flext_ctx_aspects._advice import Advice, Target
    from flext_ctx_aspects.records import OperationRecord

__all__ = ["Aspect", "FlextTypes", "Getter", "Setter", "Sink"]


@runtime_checkable
class Aspect(Protocol):
    """A unit of behaviour applied around calls; see `flext_ctx_aspects.aspect`.

    ``advise`` is called once per decorated callable, at decoration time (and again when
    another aspect is stacked on the same callable). It must not depend on call-time state:
    per-call values are expressed as sources (`arg`,
    `from_call`) or computed in hooks.
    """

    def advise(self, target: Target) -> Advice:
        """Return what to do around each call of ``target``."""


@runtime_checkable
class Sink(Protocol):
    """Receives every finished operation record.

    ``emit`` runs on the thread that finished the operation, inside that operation's
    context, so it must be quick; hand slow work (network, disk) to a queue
    (`QueuedSink`). An exception raised by ``emit`` is logged
    once and never reaches the instrumented code.

    Optional attribute ``needs``: a ``frozenset`` of the ``OperationRecord`` field names the
    sink reads (``StatsSink.needs == {"name", "duration_ns", "status"}``); a sink without
    ``needs`` gets every field. A sink whose ``needs`` fit in ``{"name", "duration_ns",
    "status"}`` and that has ``observe(name, duration_ns, failed)`` is fed by that method,
    and when every registered sink is such a sink no record is built at all; one that also
    sets ``runs_user_code = False`` (its ``observe`` calls no code that may be instrumented)
    lets the emit path skip its re-entrancy guard. None of these is part of the protocol's
    required members: ``isinstance(obj, Sink)`` checks ``emit`` only.
    """

    def emit(self, record: OperationRecord) -> None:
        """Handle one finished operation."""


class Getter(Protocol):
    """Reads header values out of a carrier (dict, ASGI scope headers, WSGI environ...)."""

    def get(self, carrier: Any, key: str) -> list[str | bytes]:
        """Return every value of header ``key`` (case-insensitive), or an empty list."""

    def keys(self, carrier: Any) -> list[str]:
        """Return the header names present in the carrier."""


class Setter(Protocol):
    """Writes header values into a carrier."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        """Set header ``key`` to ``value``, replacing any previous value."""


class FlextTypes:
    """Type aliases named by the original FlextContext design."""

    class Core:
        """Core aliases."""

        Headers: TypeAlias = dict[str, str]
        """A header mapping, as ``get_correlation_context()`` returns."""

        HeadersIn: TypeAlias = Mapping[Any, Any]
        """Any inbound header mapping ``set_from_context`` accepts (str or bytes keys)."""

        Metadata: TypeAlias = MutableMapping[str, Any]
        """Operation or request metadata."""
