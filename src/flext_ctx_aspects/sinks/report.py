"""Statistics reports: the JSON file, merging several, and a terminal table.

A report is what `StatsSink` holds, frozen: per operation name
the exact counters and the DDSketch bins. Its JSON form (``Report.to_json()``, the file
``flext-ctx run --report-json`` writes and ``flext-ctx report`` reads)::

    {"format": "flext-ctx-aspects/stats-v1",
     "operations": [{"name": "shop.checkout", "count": 120, "errors": 2,
                     "total_ns": 9120000, "mean_ns": 76000, "min_ns": 51000,
                     "p50_ns": 70100, "p90_ns": 98000, "p99_ns": 140000, "p999_ns": 151000,
                     "max_ns": 151000,
                     "sketch": {"relative_accuracy": 0.01, "zero_count": 0,
                                "offset": 548, "bins": [1, 0, 3, ...]}}, ...]}

Operations are sorted by total time, slowest first. ``sketch`` is what merging needs:
`merge_reports` adds the bins, so merged percentiles are those of one sketch of every
duration (never averaged percentiles). ``sketch.bins[i]`` counts durations whose DDSketch key
(``ddsketch.LogarithmicMapping(0.01)``) is ``offset + i``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.sinks._sketch import Digest, describe
from flext_ctx_aspects.sinks.stats import (
    STATS_FORMAT,
    OperationStats,
    digest_entry,
    digests_from_json,
)

if TYPE_CHECKING:
    from flext_ctx_aspects.sinks.stats import StatsSink

__all__ = [
    "Report",
    "load_report",
    "merge_reports",
    "render_table",
    "report_from_stats",
    "write_report",
]

_MIN_NAME: Final = 12


@dataclass(frozen=True)
class Report:
    """Statistics of operations by name, mergeable and serialisable.

    Attributes:
        digests: The exact counters and sketch bins per operation name (do not mutate).
        sources: Where the report came from (file paths of loaded / merged reports).
    """

    digests: Mapping[str, Digest] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def operations(self) -> list[OperationStats]:
        """Return the summaries, slowest total first (ties by name)."""
        summaries = [OperationStats.from_digest(n, d) for n, d in self.digests.items()]
        return sorted(summaries, key=lambda s: (-s.total_ns, s.name))

    def get(self, name: str) -> OperationStats | None:
        """Return the summary of operation ``name``, or None."""
        digest = self.digests.get(name)
        return None if digest is None else OperationStats.from_digest(name, digest)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (see the module docs)."""
        digests = self.digests
        order = sorted(digests, key=lambda n: (-digests[n].total_ns, n))
        data: dict[str, Any] = {
            "format": STATS_FORMAT,
            "operations": [digest_entry(name, digests[name]) for name in order],
        }
        if self.sources:
            data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "report") -> Report:
        """Read a report's JSON form.

        Raises:
            ConfigError: ``data`` is not that form (the message names ``source`` and the key).
        """
        if isinstance(data, Mapping) and data.get("format", STATS_FORMAT) != STATS_FORMAT:
            raise ConfigError(source, "format", repr(STATS_FORMAT), describe(data.get("format")))
        return cls(digests_from_json(data, source), (source,))


def report_from_stats(stats_sink: StatsSink) -> Report:
    """Return the report of what ``stats_sink`` holds now (a copy: the sink goes on)."""
    return Report(stats_sink.digests())


def load_report(path: str | os.PathLike[str]) -> Report:
    """Load a report file written by `write_report` (or ``StatsSink.to_json``).

    Raises:
        ConfigError: The file cannot be read, is not JSON, or is not a report.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as exc:
        raise ConfigError(source, "file", "a readable report file", type(exc).__name__) from exc
    except ValueError as exc:
        raise ConfigError(source, "file", "JSON", f"invalid JSON ({exc})") from exc
    return Report.from_json(data, source)


def merge_reports(reports: Iterable[Report]) -> Report:
    """Merge reports (of several processes or runs) into one: counters add, sketches merge."""
    merged: dict[str, Digest] = {}
    sources: list[str] = []
    for report in reports:
        sources.extend(report.sources)
        for name, digest in report.digests.items():
            existing = merged.get(name)
            if existing is None:
                merged[name] = digest.copy()
            else:
                existing.merge(digest)
    return Report(merged, tuple(sources))


def write_report(report: Report, path: str | os.PathLike[str]) -> None:
    """Write ``report`` as JSON to ``path`` (replaced atomically)."""
    target = os.fspath(path)
    temporary = f"{target}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(report.to_json(), file, indent=1)
        file.write("\n")
    os.replace(temporary, target)


def format_duration(ns: float) -> str:
    """Return a duration in at most 8 characters: ``950ns``, ``12.3us``, ``4.56ms``, ``7.89s``."""
    if ns < 1_000:
        return f"{ns:.0f}ns"
    for unit, scale in (("us", 1e3), ("ms", 1e6), ("s", 1e9)):
        value = ns / scale
        if value < 1_000 or unit == "s":
            text = f"{value:.3g}" if value < 100 else f"{value:.0f}"
            return f"{text}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _count(value: int) -> str:
    if value < 10_000_000:
        return str(value)
    return f"{value / 1e6:.0f}M" if value < 10**10 else f"{value:.1e}"


def _fit(name: str, width: int) -> str:
    # Keep the end of a long dotted name (the function), mark the cut.
    return name if len(name) <= width else "…" + name[-(width - 1) :]


_COLUMNS: Final = (("count", 8), ("errors", 6), ("total", 8), ("mean", 8), ("p50", 8),
                   ("p99", 8), ("max", 8))  # fmt: skip
_BOLD, _RED, _DIM, _RESET = "\x1b[1m", "\x1b[31m", "\x1b[2m", "\x1b[0m"


def _use_color(color: bool | None) -> bool:
    if color is not None:
        return color
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def render_table(report: Report, *, width: int = 80, color: bool | None = None) -> str:
    """Return a table of the report's operations, slowest total first, ``width`` columns wide.

    Args:
        report: What to show.
        width: The line width to fit (at least 72).
        color: ANSI colour (bold header, errors in red); None: only when standard output is
            a terminal and ``NO_COLOR`` is unset.

    Returns:
        The table, lines joined by newlines, ending with a summary line.

    Raises:
        ConfigError: ``width`` is below 72 or not an int.
    """
    fixed = sum(w + 1 for _, w in _COLUMNS)
    if type(width) is not int or width < fixed + _MIN_NAME:
        raise ConfigError(
            "render_table()", "width", f"an int >= {fixed + _MIN_NAME}", describe(width)
        )
    colored = _use_color(color)
    name_width = width - fixed
    header = "operation".ljust(name_width) + "".join(f" {t:>{w}}" for t, w in _COLUMNS)
    lines = [f"{_BOLD}{header}{_RESET}" if colored else header]
    total_count = total_errors = 0
    for stats in report.operations():
        total_count += stats.count
        total_errors += stats.errors
        cells = (
            _count(stats.count),
            _count(stats.errors),
            format_duration(stats.total_ns),
            format_duration(stats.mean_ns),
            format_duration(stats.p50_ns),
            format_duration(stats.p99_ns),
            format_duration(stats.max_ns),
        )
        row = [_fit(stats.name, name_width).ljust(name_width)]
        for (title, column_width), cell in zip(_COLUMNS, cells, strict=True):
            text = f" {cell:>{column_width}}"
            if colored and title == "errors" and stats.errors:
                text = f"{_RED}{text}{_RESET}"
            row.append(text)
        lines.append("".join(row))
    summary = (
        f"{len(report.digests)} operations, {total_count} calls, {total_errors} errors"
        " (percentiles within 1%)"
    )
    lines.append(f"{_DIM}{summary}{_RESET}" if colored else summary)
    return "\n".join(lines)
