"""What the bootstrap does in each process of a run: instrument, record, write at exit."""

from __future__ import annotations

import atexit
import json
import os
import warnings
from typing import Any

from flext_ctx_aspects.config import config_from_mapping
from flext_ctx_aspects.errors import ConfigWarning
from flext_ctx_aspects.instrument import _hook
from flext_ctx_aspects.instrument._api import instrument
from flext_ctx_aspects.sinks import StatsSink, add_sink
from flext_ctx_aspects.sinks.report import report_from_stats, write_report
from flext_ctx_aspects.sinks.tracefile import TraceFileSink

__all__ = ["start"]

_state: dict[str, Any] = {}


def start(settings_json: str) -> Any:
    """Instrument this process as the runner's ``FLEXT_CTX_RUN`` value says.

    Returns:
        The import hook's finder (now first on ``sys.meta_path``).

    Raises:
        ConfigError: The value is not what the runner writes (a broken environment).
    """
    settings = json.loads(settings_json)
    config_data = settings["config"]
    config = config_from_mapping(config_data["config"], str(config_data["source"]))
    directory = str(settings["dir"])
    stats = StatsSink()
    add_sink(stats)
    trace = TraceFileSink() if settings.get("trace") else None
    if trace is not None:
        add_sink(trace)
    _state.update(dir=directory, stats=stats, trace=trace, pid=os.getpid())
    with warnings.catch_warnings():
        # Every process of the run gets the configuration, including helpers that import
        # none of the included modules (resource trackers): no warning from each of them.
        warnings.simplefilter("ignore", ConfigWarning)
        instrument(config)
    atexit.register(write_outputs)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    return _hook.finder()


def write_outputs() -> None:
    """Write this process's statistics and trace into the run's directory (once per pid)."""
    pid = os.getpid()
    if _state.get("written") == pid or "dir" not in _state:
        return
    _state["written"] = pid
    directory = _state["dir"]
    write_report(report_from_stats(_state["stats"]), os.path.join(directory, f"stats-{pid}.json"))
    trace = _state["trace"]
    if trace is not None:
        trace.write(os.path.join(directory, f"trace-{pid}.json"))


class _ForkChild:
    """Kept alive for multiprocessing's after-fork registry (a weak-value mapping)."""


_FORK_CHILD = _ForkChild()


def _register_finalizer(_: object) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, write_outputs, exitpriority=0)


def _after_fork_in_child() -> None:
    # The sinks empty themselves in a forked child (their own fork hooks). A multiprocessing
    # child ends with os._exit, past atexit, and its bootstrap clears the finalizers inherited
    # from the parent before running the after-fork callbacks: the finalizer that writes the
    # child's files is registered from one of those.
    import sys

    multiprocessing_util = sys.modules.get("multiprocessing.util")
    if multiprocessing_util is not None:
        multiprocessing_util.register_after_fork(_FORK_CHILD, _register_finalizer)
