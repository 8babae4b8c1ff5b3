"""A structlog processor adding the context fields to every event dict (extra ``structlog``).

Example::

    import structlog
    from flext_ctx_aspects.integrations.structlog import add_context_fields

    structlog.configure(processors=[add_context_fields, structlog.processors.JSONRenderer()])

Keys the event already has are kept; unset fields read ``"-"``; values are escaped (see
`flext_ctx_aspects.sinks._logfields.escape`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

try:
    import structlog  # noqa: F401 - the integration requires the extra it documents
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without structlog
    raise ImportError(
        "flext_ctx_aspects.integrations.structlog needs structlog: "
        "pip install 'flext-ctx-aspects[structlog]'"
    ) from exc

from flext_ctx_aspects.sinks._logfields import LOG_FIELDS, MISSING, current_log_fields

__all__ = ["LOG_FIELDS", "ContextFields", "add_context_fields"]


class ContextFields:
    """A structlog processor: merges the current context's fields into the event dict.

    Args:
        missing: The value of a field the context has no value for; None leaves it out.
    """

    def __init__(self, missing: str | None = MISSING) -> None:
        self.missing = missing

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Add the fields; return the event dict."""
        for name, value in current_log_fields(self.missing).items():
            if name not in event_dict:
                event_dict[name] = value
        return event_dict


add_context_fields = ContextFields()
"""The processor with the default ``"-"`` for unset fields."""
