"""In-process statistics per operation name: count, errors, total, percentiles, max.

Percentiles come from a bounded uniform sample (reservoir sampling, Algorithm R) of
`RESERVOIR_SIZE` durations per operation: exact while an operation has run fewer times
than that, an unbiased estimate after. Count, errors, total, min and max are always exact.
Memory per operation name is bounded; the number of names is capped at `MAX_OPERATIONS`
(further names are counted under ``"<other>"``) so that dynamic names cannot grow it forever.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any, Final

from flext_ctx_aspects.records import OperationRecord

__all__ = ["MAX_OPERATIONS", "RESERVOIR_SIZE", "OperationStats", "StatsSink"]

RESERVOIR_SIZE: Final = 4096
MAX_OPERATIONS: Final = 10_000
OVERFLOW_NAME: Final = "<other>"


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Statistics of one operation name (durations in nanoseconds)."""

    name: str
    count: int
    errors: int
    total_ns: int
    min_ns: int
    max_ns: int
    p50_ns: int
    p90_ns: int
    p99_ns: int

    @property
    def mean_ns(self) -> float:
        """Mean duration."""
        return self.total_ns / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the statistics as a JSON-ready dict."""
        return {
            "name": self.name,
            "count": self.count,
            "errors": self.errors,
            "total_ns": self.total_ns,
            "mean_ns": round(self.mean_ns),
            "min_ns": self.min_ns,
            "p50_ns": self.p50_ns,
            "p90_ns": self.p90_ns,
            "p99_ns": self.p99_ns,
            "max_ns": self.max_ns,
        }


class _Accumulator:
    __slots__ = ("count", "errors", "max_ns", "min_ns", "sample", "total_ns")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0
        self.sample: list[int] = []

    def add(self, duration: int, failed: bool, rng: random.Random) -> None:
        self.count += 1
        self.total_ns += duration
        if failed:
            self.errors += 1
        if self.count == 1 or duration < self.min_ns:
            self.min_ns = duration
        self.max_ns = max(self.max_ns, duration)
        if len(self.sample) < RESERVOIR_SIZE:
            self.sample.append(duration)
        else:
            slot = rng.randrange(self.count)
            if slot < RESERVOIR_SIZE:
                self.sample[slot] = duration


def _percentile(ordered: list[int], fraction: float) -> int:
    # Nearest-rank percentile: the smallest sample with at least `fraction` of samples <= it.
    if not ordered:
        return 0
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


class StatsSink:
    """Aggregates records per operation name. Thread-safe.

    Example:
        >>> from flext_ctx_aspects import timed
        >>> from flext_ctx_aspects.sinks import StatsSink, add_sink
        >>> stats = StatsSink()
        >>> @timed(name="work")
        ... def work() -> None: ...
        >>> with add_sink(stats):
        ...     work(); work()
        >>> stats.get("work").count
        2
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[str, _Accumulator] = {}
        self._rng = random.Random()

    def emit(self, record: OperationRecord) -> None:
        """Add one record."""
        name = record.name
        with self._lock:
            accumulator = self._operations.get(name)
            if accumulator is None:
                if len(self._operations) >= MAX_OPERATIONS:
                    name = OVERFLOW_NAME
                accumulator = self._operations.setdefault(name, _Accumulator())
            accumulator.add(record.duration_ns, record.status != "ok", self._rng)

    def get(self, name: str) -> OperationStats | None:
        """Return the statistics of operation ``name``, or None if it never ran."""
        with self._lock:
            accumulator = self._operations.get(name)
            if accumulator is None:
                return None
            return self._summary(name, accumulator)

    def snapshot(self) -> list[OperationStats]:
        """Return the statistics of every operation, slowest total first."""
        with self._lock:
            summaries = [self._summary(n, a) for n, a in self._operations.items()]
        return sorted(summaries, key=lambda s: (-s.total_ns, s.name))

    def report(self) -> dict[str, Any]:
        """Return ``{"operations": [...]}``: the statistics report as a JSON-ready dict."""
        return {"operations": [stats.as_dict() for stats in self.snapshot()]}

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._operations.clear()

    @staticmethod
    def _summary(name: str, accumulator: _Accumulator) -> OperationStats:
        ordered = sorted(accumulator.sample)
        return OperationStats(
            name=name,
            count=accumulator.count,
            errors=accumulator.errors,
            total_ns=accumulator.total_ns,
            min_ns=accumulator.min_ns,
            max_ns=accumulator.max_ns,
            p50_ns=_percentile(ordered, 0.50),
            p90_ns=_percentile(ordered, 0.90),
            p99_ns=_percentile(ordered, 0.99),
        )
