"""``flext-ctx run``: any command, and the Python processes it starts, instrumented.

The runner never imports the user's program. It starts the command with two things in its
environment:

* ``PYTHONPATH`` led by a directory holding only a ``sitecustomize.py`` (``_bootstrap/``),
  which every Python process started below it imports at start-up (``site`` does it, unless
  ``-S``, ``-I`` or ``-E`` switch that off), so the command's Python subprocesses,
  ``multiprocessing`` spawn children, pytest-xdist and server workers are reached too;
* `RUN_ENV`, one variable with the resolved, already validated configuration and the
  directory where each process writes its files (``stats-<pid>.json``, ``trace-<pid>.json``),
  so children never parse TOML again.

When the command ends, the runner merges the per-process statistics (their sketches merge
exactly) into one report table on stderr and, when asked, a JSON report and one trace file
with a track per process. The command's exit status is the runner's; a command killed by a
signal kills the runner with the same signal, after the report.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from flext_ctx_aspects.config import Config

__all__ = ["BOOTSTRAP_DIR", "RUN_ENV", "RunOutputs", "run_command"]

RUN_ENV: Final = "FLEXT_CTX_RUN"
"""The environment variable carrying the run's configuration to every process."""

BOOTSTRAP_DIR: Final = str(Path(__file__).resolve().parent / "_bootstrap")
"""The directory prepended to ``PYTHONPATH``: it holds only ``sitecustomize.py``."""

_FORWARDED: Final = tuple(
    sig for sig in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP"))
    if sig is not None
)  # fmt: skip


class RunOutputs:
    """Where a run's merged files go, and the directory the processes write into."""

    def __init__(
        self, workdir: str, trace: str | None, report_json: str | None, *, keep: bool = False
    ) -> None:
        self.workdir = workdir
        self.trace = trace
        self.report_json = report_json
        self.keep = keep

    def stats_files(self) -> list[str]:
        """The statistics files the processes of the run wrote."""
        return sorted(glob.glob(os.path.join(self.workdir, "stats-*.json")))

    def trace_files(self) -> list[str]:
        """The trace files the processes of the run wrote."""
        return sorted(glob.glob(os.path.join(self.workdir, "trace-*.json")))


def child_environment(config: Config, outputs: RunOutputs) -> dict[str, str]:
    """Return the environment the command runs in."""
    env = dict(os.environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR if not existing else BOOTSTRAP_DIR + os.pathsep + existing
    env[RUN_ENV] = json.dumps(
        {
            "config": json.loads(config.to_json()),
            "dir": outputs.workdir,
            "trace": outputs.trace is not None,
        }
    )
    return env


def run_command(
    config: Config,
    command: Sequence[str],
    *,
    trace: str | None = None,
    report_json: str | None = None,
    report_stream: TextIO | None = None,
) -> int:
    """Run ``command`` instrumented by ``config``; merge and report what its processes recorded.

    Args:
        config: The validated configuration.
        command: The program and its arguments.
        trace: Where to write the merged trace file (default: ``[output] trace``, else none).
        report_json: Where to write the merged JSON report (default: ``[output]
            report_json``, else none).
        report_stream: Where the report table goes (default: stderr).

    Returns:
        The command's exit status (a signal kills this process with the same signal after
        the report, so the caller sees it as the command's).
    """
    if not command:
        raise ValueError("flext-ctx run needs a command after '--'")
    outputs = RunOutputs(
        tempfile.mkdtemp(prefix="flext-ctx-run-"),
        trace if trace is not None else config.output.trace,
        report_json if report_json is not None else config.output.report_json,
    )
    env = child_environment(config, outputs)
    try:
        process = subprocess.Popen(list(command), env=env)  # noqa: S603 - the user's command
    except OSError as error:
        shutil.rmtree(outputs.workdir, ignore_errors=True)
        print(f"flext-ctx: cannot start {command[0]!r}: {error}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126

    previous: dict[int, Any] = {}

    def forward(signum: int, frame: object) -> None:
        # The command decides what a signal means; the runner waits for it to end.
        process.send_signal(signum)

    for sig in _FORWARDED:
        previous[sig] = signal.signal(sig, forward)
    try:
        status = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        report_run(outputs, report_stream or sys.stderr)
    finally:
        if not outputs.keep:
            shutil.rmtree(outputs.workdir, ignore_errors=True)
    if status < 0:  # killed by a signal: end the same way
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


def report_run(outputs: RunOutputs, stream: TextIO) -> None:
    """Merge the processes' files into the report table, the JSON report and the trace."""
    from flext_ctx_aspects.sinks.report import (
        Report,
        load_report,
        merge_reports,
        render_table,
        write_report,
    )

    files = outputs.stats_files()
    reports = []
    for path in files:
        try:
            reports.append(load_report(path))
        except Exception as error:  # a process killed while writing: say so, keep the rest
            print(f"flext-ctx: skipped {os.path.basename(path)}: {error}", file=stream)
    merged = merge_reports(reports) if reports else Report({})
    color = stream.isatty() if hasattr(stream, "isatty") else False
    processes = len(reports)
    stream.write(f"flext-ctx: {processes} instrumented process{'es' if processes != 1 else ''}\n")
    table = render_table(merged, color=color)
    stream.write(table if table.endswith("\n") else table + "\n")
    if outputs.report_json:
        write_report(merged, outputs.report_json)
        stream.write(f"flext-ctx: report written to {outputs.report_json}\n")
    if outputs.trace:
        from flext_ctx_aspects.sinks.tracefile import merge_trace_files

        traces = outputs.trace_files()
        merge_trace_files(traces, outputs.trace)
        stream.write(
            f"flext-ctx: trace of {len(traces)} process{'es' if len(traces) != 1 else ''} "
            f"written to {outputs.trace} (open it in https://ui.perfetto.dev)\n"
        )
