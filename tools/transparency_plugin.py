"""Pytest plugin: instrument a package in-process for the transparency harness.

``tools/transparency.py --instrument-mode inproc`` runs the third-party suite as
``python -m pytest -p transparency_plugin ...`` with ``tools/`` on ``PYTHONPATH``. This is the
stand-in for ``flext-ctx run`` until the runner exists: it calls the public
``flext_ctx_aspects.instrument.instrument(config)`` before collection (the suite's own
imports of the package then go through the import hook; modules already imported are
instrumented too, as the design requires), collects every finished operation in a
`StatsSink`, and at the end of the session undoes the
instrumentation and writes the statistics report (``{"operations": [...]}``, the runner's
``--report-json`` format) so the harness checks activity the same way in both modes.

Environment (set by the harness):
    FLEXT_TRANSPARENCY_CONFIG: JSON of the instrument table, e.g.
        ``{"include": ["toolz", "toolz.*"], "aspects": ["timed", "with_correlation"]}``.
    FLEXT_TRANSPARENCY_REPORT: where to write the report JSON.

When ``flext_ctx_aspects.instrument`` (or its ``instrument`` function) does not exist in the
installed tree, the plugin stops the run with a usage error saying so, rather than letting
an uninstrumented run pass as an instrumented one.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

CONFIG_VARIABLE = "FLEXT_TRANSPARENCY_CONFIG"
REPORT_VARIABLE = "FLEXT_TRANSPARENCY_REPORT"
MISSING_API_MARK = "flext_ctx_aspects.instrument.instrument is not available"

_state: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Start the instrumentation before the suite's conftests and tests are collected."""
    raw = os.environ.get(CONFIG_VARIABLE)
    report = os.environ.get(REPORT_VARIABLE)
    if raw is None or report is None:
        raise pytest.UsageError(
            f"transparency_plugin needs {CONFIG_VARIABLE} and {REPORT_VARIABLE} in the environment"
        )
    import flext_ctx_aspects

    # Looked up at run time: the harness runs against trees that may predate the import hook.
    try:
        instrument = importlib.import_module("flext_ctx_aspects.instrument").instrument
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(
            f"{MISSING_API_MARK} in the flext_ctx_aspects installed at "
            f"{Path(flext_ctx_aspects.__file__).parent} ({exc}); the instrumented run "
            "cannot be made with this tree"
        ) from None
    from flext_ctx_aspects.sinks import StatsSink, add_sink

    stats = StatsSink()
    _state["remove_sink"] = add_sink(stats)
    _state["stats"] = stats
    _state["report"] = Path(report)
    _state["undo"] = instrument({"instrument": json.loads(raw)})


def pytest_unconfigure(config: pytest.Config) -> None:
    """Undo the instrumentation and write the statistics report."""
    undo = _state.pop("undo", None)
    if undo is None:
        return
    undo()
    _state.pop("remove_sink")()
    stats = _state.pop("stats")
    _state.pop("report").write_text(json.dumps(stats.report(), indent=1), encoding="utf-8")
