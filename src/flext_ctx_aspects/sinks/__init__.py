"""Sinks: where finished operation records go.

A sink is any object with an ``emit(record)`` method (:class:`~flext_ctx_aspects.typing.Sink`),
registered with :func:`add_sink`. Built in: :class:`StatsSink` (in-process statistics) and
:class:`LoggingSink` (one log line per operation); settings switch default instances of both
on and off (``Settings.sinks``).
"""

from __future__ import annotations

from flext_ctx_aspects.records import (
    OperationRecord,
    RemoveSink,
    add_sink,
    clear_sinks,
    registered_sinks,
    remove_sink,
)
from flext_ctx_aspects.sinks._builtin import default_stats
from flext_ctx_aspects.sinks.logging import LoggingSink
from flext_ctx_aspects.sinks.queued import QueuedSink
from flext_ctx_aspects.sinks.stats import OperationStats, StatsSink
from flext_ctx_aspects.sinks.tracefile import TraceFileSink, merge_trace_files

__all__ = [
    "LoggingSink",
    "OperationRecord",
    "OperationStats",
    "QueuedSink",
    "RemoveSink",
    "StatsSink",
    "TraceFileSink",
    "add_sink",
    "clear_sinks",
    "default_stats",
    "merge_trace_files",
    "registered_sinks",
    "remove_sink",
]
