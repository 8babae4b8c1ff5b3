"""Sinks: where finished operation records go.

A sink is any object with an ``emit(record)`` method (`Sink`),
registered with `add_sink`; an optional ``needs`` attribute (a frozenset of record field
names) says which fields it reads. Built in: `StatsSink` (statistics with 1%
percentiles, mergeable), `LoggingSink` (one log line per operation, named fields),
`TraceFileSink` (a Perfetto / Chrome trace file) and `QueuedSink` (runs any sink
on a background thread); reports (`Report`) save, merge and render statistics. Settings
switch default instances of the statistics and logging sinks on and off (``Settings.sinks``).
"""

from __future__ import annotations

from flext_ctx_aspects._emit import (
    RemoveSink,
    add_sink,
    clear_sinks,
    registered_sinks,
    remove_sink,
)
from flext_ctx_aspects.sinks._builtin import default_stats
from flext_ctx_aspects.sinks.logging import LoggingSink
from flext_ctx_aspects.sinks.queued import QueuedSink
from flext_ctx_aspects.sinks.report import (
    Report,
    load_report,
    merge_reports,
    render_table,
    report_from_stats,
    write_report,
)
from flext_ctx_aspects.sinks.stats import OperationStats, StatsSink
from flext_ctx_aspects.sinks.tracefile import TraceFileSink, merge_trace_files

__all__ = [
    "LoggingSink",
    "OperationStats",
    "QueuedSink",
    "RemoveSink",
    "Report",
    "StatsSink",
    "TraceFileSink",
    "add_sink",
    "clear_sinks",
    "default_stats",
    "load_report",
    "merge_reports",
    "merge_trace_files",
    "registered_sinks",
    "remove_sink",
    "render_table",
    "report_from_stats",
    "write_report",
]
