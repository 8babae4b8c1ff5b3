"""The default instances of the built-in sinks, switched by ``Settings.sinks``."""

from __future__ import annotations

import logging

from flext_ctx_aspects import _emit
from flext_ctx_aspects.sinks.logging import LoggingSink
from flext_ctx_aspects.sinks.stats import StatsSink

__all__ = ["default_stats", "switch_builtin_sinks"]

_stats = StatsSink()
_logging = LoggingSink()


def default_stats() -> StatsSink:
    """Return the statistics sink that ``Settings.sinks = ("stats",)`` switches on."""
    return _stats


def switch_builtin_sinks(names: tuple[str, ...], log_level: str) -> None:
    """Register exactly the built-in sinks named in ``names``."""
    _logging.level = logging.getLevelName(log_level)
    for name, sink in (("stats", _stats), ("logging", _logging)):
        if name in names:
            _emit.add_sink(sink)
        else:
            _emit.remove_sink(sink)
