"""Test helpers for code instrumented with flext_ctx_aspects.

``capture_operations`` is to operation records what structlog's ``capture_logs`` is to log
entries: a context manager collecting every record finished inside it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flext_ctx_aspects import _emit
from flext_ctx_aspects.records import OperationRecord

__all__ = ["RecordingSink", "capture_operations"]


class RecordingSink:
    """A sink that keeps every record in a list (thread-safe appends)."""

    def __init__(self, into: list[OperationRecord] | None = None) -> None:
        self.records: list[OperationRecord] = [] if into is None else into
        self._lock = threading.Lock()

    def emit(self, record: OperationRecord) -> None:
        """Keep ``record``."""
        with self._lock:
            self.records.append(record)


@contextmanager
def capture_operations() -> Iterator[list[OperationRecord]]:
    """Collect the records of timed operations finished inside the ``with`` block.

    Yields a list that fills as operations finish, in finishing order (an outer operation
    after the inner ones it contains).

    Limits: the capture is process-wide, not per-context: operations finished on other
    threads or tasks during the block are collected too. Records dropped by the settings'
    filters (``sample_rate``, ``min_duration_ms``) or by ``@timed(min_duration_ms=...)`` are
    not collected, as for any sink. Generators are recorded when they finish, which may be
    after the block if they are consumed later.

    Example:
        >>> from flext_ctx_aspects import timed
        >>> from flext_ctx_aspects.testing import capture_operations
        >>> @timed(name="load")
        ... def load() -> int:
        ...     return 42
        >>> with capture_operations() as ops:
        ...     _ = load()
        >>> [(op.name, op.status) for op in ops] == [("load", "ok")]
        True
    """
    captured: list[OperationRecord] = []
    sink = RecordingSink(captured)
    _emit.add_sink(sink)
    try:
        yield captured
    finally:
        _emit.remove_sink(sink)
