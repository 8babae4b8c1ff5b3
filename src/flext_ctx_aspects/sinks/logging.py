"""A sink writing one log line per finished operation, through the standard ``logging``."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks._logfields import LOG_FIELDS, MISSING, escape

__all__ = ["LoggingSink"]


class LoggingSink:
    """Logs each operation on ``logger`` (default ``flext_ctx_aspects.operations``).

    The line reads ``operation <name> ok 1.234 ms correlation=<id> service=<name>``, and the
    record carries named fields for structured handlers and format strings: the context's
    `LOG_FIELDS` as they were when the operation ran
    (``correlation_id``, ``trace_id``, ``service_name``...), plus ``timed_name``,
    ``duration_ms``, ``duration_ns``, ``status``, ``error_type`` and ``kind``; the whole
    record is attached as ``extra={"operation": record}``. Every text value is escaped: an id
    holding CR/LF cannot forge a line. Failed operations are logged at WARNING, the others
    at ``level``.

    Writing a line is I/O: wrap the sink in a `QueuedSink` to
    keep it off the instrumented call's path (the fields come from the record, so they are
    right on the flusher thread too).
    """

    needs: ClassVar[frozenset[str]] = frozenset(
        {*LOG_FIELDS, "name", "duration_ns", "status", "error_type", "kind"}
    )

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("flext_ctx_aspects.operations")
        self.level = level

    def emit(self, record: OperationRecord) -> None:
        """Log one record."""
        level = self.level if record.status == "ok" else max(self.level, logging.WARNING)
        if not self.logger.isEnabledFor(level):
            return
        name = escape(record.name)
        extra: dict[str, Any] = {}
        for field in LOG_FIELDS:
            value = getattr(record, field)
            extra[field] = MISSING if value is None else escape(value)
        extra.update(
            operation=record,
            timed_name=name,
            duration_ms=record.duration_ns / 1e6,
            duration_ns=record.duration_ns,
            status=record.status,
            error_type=MISSING if record.error_type is None else escape(record.error_type),
            kind=record.kind,
        )
        self.logger.log(
            level,
            "operation %s %s %.3f ms correlation=%s service=%s%s",
            name,
            record.status,
            record.duration_ns / 1e6,
            extra["correlation_id"],
            extra["service_name"],
            f" error={extra['error_type']}" if record.error_type else "",
            extra=extra,
        )
