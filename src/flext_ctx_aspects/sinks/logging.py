"""A sink writing one log line per finished operation, through the standard ``logging``."""

from __future__ import annotations

import logging

from flext_ctx_aspects.records import OperationRecord

__all__ = ["LoggingSink"]


class LoggingSink:
    """Logs each operation on ``logger`` (default ``flext_ctx_aspects.operations``).

    The line reads ``operation <name> ok 1.234 ms correlation=<id> service=<name>``; the
    whole record is attached as ``extra={"operation": record}`` for structured handlers.
    Failed operations are logged at WARNING, the others at ``level``.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("flext_ctx_aspects.operations")
        self.level = level

    def emit(self, record: OperationRecord) -> None:
        """Log one record."""
        level = self.level if record.status == "ok" else max(self.level, logging.WARNING)
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(
            level,
            "operation %s %s %.3f ms correlation=%s service=%s%s",
            record.name,
            record.status,
            record.duration_ns / 1e6,
            record.correlation_id or "-",
            record.service_name or "-",
            f" error={record.error_type}" if record.error_type else "",
            extra={"operation": record},
        )
