"""Sinks: where finished operation records go.

A sink is any object with an ``emit(record)`` method (`Sink`),
registered with `add_sink`. Built in: `StatsSink` (in-process statistics) and
`LoggingSink` (one log line per operation); settings switch default instances of both
on and off (``Settings.sinks``).
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
from flext_ctx_aspects.sinks.stats import OperationStats, StatsSink

__all__ = [
    "LoggingSink",
    "OperationStats",
    "RemoveSink",
    "StatsSink",
    "add_sink",
    "clear_sinks",
    "default_stats",
    "registered_sinks",
    "remove_sink",
]
