"""Trace identity: the W3C trace id and span id of a context, and how they derive.

One place decides them, so that the ``traceparent`` sent downstream, the ids recorded on
operation records, ``get_full_context()`` and (through them) trace files and OpenTelemetry
spans always agree.

* The trace id slot of a snapshot holds the root correlation id of the trace, or an inbound
  trace id. A root id that is not a valid W3C trace id (32 lowercase hex digits, not all
  zeros) maps to one by a hash, so the same root always names the same trace.
* A correlation scope plays the part of a span: its span id (the W3C parent-id of outbound
  calls) derives from the correlation id, so every outbound call of one scope names the same
  parent and the receiving side can tell which scope called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from flext_ctx_aspects import _state

__all__ = ["external_trace", "span_id_for", "span_id_of", "trace_id_of", "w3c_trace_id"]

ExternalTrace = Callable[[Any, Any, Any, str], "tuple[str, tuple[str, int, Any]] | None"]
# The one hook for another tracer (the OpenTelemetry bridge): None unless a bridge is on.
# When set, every new correlation scope of a compiled stack calls it as
# ``hook(trace_id_slot, enclosing_correlation_id, trace_parent_slot, new_correlation_id)``;
# it returns None (keep the trace as it is) or ``(trace_id, trace_parent)`` to continue the
# other tracer's current span (its trace id, the span as remote parent). A one-item list so
# that compiled code reads it with one index and a bridge switches it without recompiling.
external_trace: list[ExternalTrace | None] = [None]

_TRACE_ID_SHAPE: Final = re.compile(r"[0-9a-f]{32}")
_INVALID_SPAN: Final = "0000000000000000"
# The last (root, W3C trace id) pair: consecutive look-ups mostly share a trace.
_last: tuple[str, str] = ("", "")


def _blake2b_hex(value: str, size: int) -> str:
    import hashlib  # only for ids that are not hex: kept off the import path

    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


def w3c_trace_id(value: str) -> str:
    """Return ``value`` if it is a valid W3C trace id, else a trace id derived from it.

    The derivation is a hash, so the same correlation id always maps to the same trace id.
    """
    global _last
    last = _last
    if last[0] == value:
        return last[1]
    if _TRACE_ID_SHAPE.fullmatch(value) and value.strip("0"):
        normalized = value
    else:
        normalized = _blake2b_hex(value, 16)
    _last = (value, normalized)
    return normalized


def trace_id_of(snapshot: _state.Snapshot) -> str | None:
    """Return the W3C trace id of ``snapshot``'s context, or None outside any trace."""
    root: str | None = snapshot[_state.TRACE_ID] or snapshot[_state.CORRELATION_ID]
    return None if root is None else w3c_trace_id(root)


def span_id_for(correlation_id: str, remote_parent: str | None = None) -> str:
    """Return the W3C span id (16 hex digits) that stands for the scope of ``correlation_id``.

    When the scope continues a remote parent (an inbound traceparent), the id is derived from
    both: a correlation id usually crosses services unchanged, and without the remote parent
    every hop would name the same parent-id, making each service its own caller's parent.
    """
    if remote_parent is not None:
        candidate = _blake2b_hex(f"{correlation_id}/{remote_parent}", 8)
    elif len(correlation_id) == 32 and not correlation_id.strip("0123456789abcdef"):
        candidate = correlation_id[16:]
    else:
        candidate = _blake2b_hex(correlation_id, 8)
    return candidate if candidate != _INVALID_SPAN else "0000000000000001"


def span_id_of(snapshot: _state.Snapshot) -> str | None:
    """Return the span id of ``snapshot``'s innermost correlation scope, or None."""
    correlation_id: str | None = snapshot[_state.CORRELATION_ID]
    trace_parent = snapshot[_state.TRACE_PARENT]
    remote_parent = trace_parent[0] if trace_parent else None
    if correlation_id is not None:
        return span_id_for(correlation_id, remote_parent)
    if remote_parent is not None:
        return str(remote_parent)
    trace_id = trace_id_of(snapshot)
    return None if trace_id is None else span_id_for(trace_id)
