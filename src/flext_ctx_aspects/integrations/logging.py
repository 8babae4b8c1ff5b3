"""Context fields on every standard ``logging`` record: a filter and a one-line setup.

``enable_log_context()`` puts the current `LOG_FIELDS` (correlation id, parent id,
trace id, service name and version, request id, user id, operation name) on every record that
reaches the root logger's handlers, so ``%(correlation_id)s`` works in any format string and
JSON formatters (python-json-logger) emit them as keys. Unset fields read ``"-"`` (never
``None``, never a ``KeyError``); values are escaped so that an id holding CR/LF or other
control characters can never forge a log line.

Example::

    import logging
    from flext_ctx_aspects.integrations.logging import LOG_FORMAT, enable_log_context

    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)
    enable_log_context()
"""

from __future__ import annotations

import logging
from typing import Final

from flext_ctx_aspects.sinks._logfields import LOG_FIELDS, MISSING, current_log_fields

__all__ = ["LOG_FIELDS", "LOG_FORMAT", "ContextFilter", "LogContextHandle", "enable_log_context"]

LOG_FORMAT: Final = (
    "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s %(service_name)s] %(message)s"
)
"""A ready format string showing the correlation id and service name."""


class ContextFilter(logging.Filter):
    """Adds the current context's `LOG_FIELDS` to each record; never drops a record.

    A field the record already has (passed with ``extra=``, or set by another filter, such as
    `LoggingSink`'s fields from its operation record) is kept.

    Args:
        missing: The text of a field the context has no value for.
    """

    def __init__(self, missing: str = MISSING) -> None:
        super().__init__()
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the fields on ``record``; always True (the record is kept)."""
        attributes = record.__dict__
        for name, value in current_log_fields(self.missing).items():
            if name not in attributes:
                attributes[name] = value
        return True


class LogContextHandle:
    """Undo handle of `enable_log_context`: call it or use it as a context manager."""

    def __init__(self, filter_: ContextFilter, targets: list[logging.Filterer]) -> None:
        self.filter = filter_
        self._targets = targets

    def __call__(self) -> None:
        """Remove the filter from everything it was added to."""
        for target in self._targets:
            target.removeFilter(self.filter)
        self._targets = []

    def __enter__(self) -> ContextFilter:
        return self.filter

    def __exit__(self, *exc_info: object) -> None:
        self()


def enable_log_context(
    logger: logging.Logger | str | None = None, *, missing: str = MISSING
) -> LogContextHandle:
    """Add a `ContextFilter` to every handler of ``logger`` (default: the root logger).

    Handler filters see every record the handler writes, including those propagated from
    child loggers (a logger's own filters do not). The filter is also added to ``logger``
    itself, so records logged on it directly carry the fields even before a handler exists.
    Handlers added later need ``handler.addFilter(handle.filter)``.

    Args:
        logger: The logger (or its name) whose handlers get the filter.
        missing: The text of an unset field.

    Returns:
        A handle removing the filter again (callable, or a context manager).
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    filter_ = ContextFilter(missing)
    targets: list[logging.Filterer] = [target, *target.handlers]
    for item in targets:
        item.addFilter(filter_)
    return LogContextHandle(filter_, targets)
