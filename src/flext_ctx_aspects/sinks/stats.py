"""In-process statistics per operation name: count, errors, total, min, max, percentiles.

Percentiles come from a DDSketch (the ``ddsketch`` library's logarithmic mapping and
quantiles; see `flext_ctx_aspects.sinks._sketch`): p50, p90, p99 and p99.9 are within
**1% relative error** of the exact values on any distribution; count, errors, total, min and
max are exact. Sketches merge exactly, so statistics of several threads, sinks or processes
combine into what one sink would have recorded (`StatsSink.merge`).

Memory: a name's sketch holds at most ~17.7 KB of bins (every possible duration from 1 ns to
292 years has its bin; a workload spanning three decades uses ~2.8 KB), per thread that
recorded it while the thread lives (threads write their own shards, folded into one when they
end or on `StatsSink.snapshot`). The number of names is capped at ``max_operations``
(default `MAX_OPERATIONS`): records of further names are counted under
`OVERFLOW_NAME`, so dynamic names cannot grow memory without bound.

No lock on the recording path: each thread records into its own shard; reads merge the shards.
A snapshot taken while records arrive sees each record entirely or not at all in its count and
percentiles (its total may lag by the record in flight).
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks._sketch import COMPILED, MULTIPLIER, Digest, describe

__all__ = [
    "MAX_OPERATIONS",
    "OVERFLOW_NAME",
    "PERCENTILES",
    "STATS_FORMAT",
    "OperationStats",
    "StatsSink",
    "digest_entry",
    "digests_from_json",
]

MAX_OPERATIONS: Final = 10_000
OVERFLOW_NAME: Final = "<other>"
STATS_FORMAT: Final = "flext-ctx-aspects/stats-v1"
# (field name, fraction) of the percentiles every summary carries.
PERCENTILES: Final = (("p50_ns", 0.50), ("p90_ns", 0.90), ("p99_ns", 0.99), ("p999_ns", 0.999))
_FRACTIONS: Final = tuple(fraction for _, fraction in PERCENTILES)

_log2: Final = math.log2
_ceil: Final = math.ceil
# Every live StatsSink, reset in a forked child (see _after_fork).
_sinks: weakref.WeakSet[StatsSink] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Statistics of one operation name (durations in nanoseconds).

    Percentiles are within 1% of the exact order statistic (``floor(q * (count - 1))``-th
    smallest duration) and clamped to ``[min_ns, max_ns]``, which are exact.
    """

    name: str
    count: int
    errors: int
    total_ns: int
    min_ns: int
    max_ns: int
    p50_ns: int
    p90_ns: int
    p99_ns: int
    p999_ns: int = 0

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
            "p999_ns": self.p999_ns,
            "max_ns": self.max_ns,
        }

    @classmethod
    def from_digest(cls, name: str, digest: Digest) -> OperationStats:
        """Summarise a digest."""
        p50, p90, p99, p999 = digest.quantiles(_FRACTIONS)
        return cls(
            name=name,
            count=digest.count,
            errors=digest.errors,
            total_ns=digest.total_ns,
            min_ns=digest.min_ns if digest.count else 0,
            max_ns=digest.max_ns,
            p50_ns=p50,
            p90_ns=p90,
            p99_ns=p99,
            p999_ns=p999,
        )


def digest_entry(name: str, digest: Digest) -> dict[str, Any]:
    """Return one ``operations`` entry of the JSON form: the summary plus the sketch."""
    entry = OperationStats.from_digest(name, digest).as_dict()
    entry["sketch"] = digest.to_json()["sketch"]
    return entry


def digests_from_json(data: Any, where: str) -> dict[str, Digest]:
    """Read the ``operations`` of a stats / report JSON object into digests by name.

    Raises:
        ConfigError: ``data`` is not that form; ``where`` names its source.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("operations"), list):
        raise ConfigError(where, "operations", "a list of operation objects", describe(data))
    digests: dict[str, Digest] = {}
    for index, entry in enumerate(data["operations"]):
        at = f"{where}, operations[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise ConfigError(at, "name", "a string", describe(name))
        digest = Digest.from_json(entry, at)
        if name in digests:
            digests[name].merge(digest)
        else:
            digests[name] = digest
    return digests


class StatsSink:
    """Aggregates records per operation name. Thread-safe, no lock on the recording path.

    Args:
        max_operations: Most distinct names kept; further names count under
            `OVERFLOW_NAME`.

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

    needs: ClassVar[frozenset[str]] = frozenset({"name", "duration_ns", "status"})
    # observe() only counts: it never calls code that could be instrumented (no re-entrancy).
    runs_user_code: ClassVar[bool] = False

    def __init__(self, max_operations: int = MAX_OPERATIONS) -> None:
        if type(max_operations) is not int or max_operations < 1:
            raise ConfigError(
                "StatsSink()", "max_operations", "a positive int", describe(max_operations)
            )
        self.max_operations = max_operations
        self._start()
        _sinks.add(self)

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        # (thread, its shard): shards of ended threads are folded into _retired.
        self._shards: list[tuple[threading.Thread, dict[str, Digest]]] = []
        self._retired: dict[str, Digest] = {}
        self._names: set[str] = set()

    if COMPILED:
        # Digest.add is compiled: one call does what the pure-Python path inlines below.

        def emit(self, record: OperationRecord) -> None:
            """Add one record (its name, duration and status)."""
            name = record.name
            try:
                shard = self._local.shard
            except AttributeError:
                shard = self._new_shard()
            digest = shard.get(name)
            if digest is None:
                digest = self._new_digest(shard, name)
            digest.add(record.duration_ns, record.status != "ok")

        def observe(self, name: str, duration: int, failed: bool) -> None:
            """Add one operation by its name, duration (ns) and outcome.

            What the emit path calls instead of `emit` when every registered sink reads only
            these (`needs`): no record is built for them.
            """
            try:
                shard = self._local.shard
            except AttributeError:
                shard = self._new_shard()
            digest = shard.get(name)
            if digest is None:
                digest = self._new_digest(shard, name)
            digest.add(duration, failed)

    else:

        def emit(self, record: OperationRecord) -> None:
            """Add one record (its name, duration and status)."""
            self.observe(record.name, record.duration_ns, record.status != "ok")

        def observe(self, name: str, duration: int, failed: bool) -> None:
            """Add one operation by its name, duration (ns) and outcome.

            What the emit path calls instead of `emit` when every registered sink reads only
            these (`needs`): no record is built for them.
            """
            try:
                shard = self._local.shard
            except AttributeError:
                shard = self._new_shard()
            digest = shard.get(name)
            if digest is None:
                digest = self._new_digest(shard, name)
            # Digest.add, inlined: this is the per-record path.
            digest.count += 1
            digest.total_ns += duration
            if duration < digest.min_ns:  # noqa: PLR1730 - min() costs a call per record
                digest.min_ns = duration
            if duration > digest.max_ns:  # noqa: PLR1730 - max() costs a call per record
                digest.max_ns = duration
            if failed:
                digest.errors += 1
            if duration > 0:
                key = _ceil(_log2(duration) * MULTIPLIER)  # _sketch.bin_key, inlined
                index = key - digest.offset
                bins = digest.bins
                if 0 <= index < len(bins):
                    bins[index] += 1
                else:
                    digest.add_key(key, 1)
            else:
                digest.zero_count += 1

    def _new_shard(self) -> dict[str, Digest]:
        shard: dict[str, Digest] = {}
        with self._lock:
            self._fold_ended()
            self._shards.append((threading.current_thread(), shard))
            self._local.shard = shard
        return shard

    def _new_digest(self, shard: dict[str, Digest], name: str) -> Digest:
        if name not in self._names:
            with self._lock:
                if name not in self._names and len(self._names) >= self.max_operations:
                    # Not cached in the shard under `name`: the shard's keys stay bounded.
                    name = OVERFLOW_NAME
                    existing = shard.get(name)
                    if existing is not None:
                        return existing
                self._names.add(name)
        digest = shard[name] = Digest()
        return digest

    def _fold_ended(self) -> None:
        # Called under the lock. An ended thread writes its shard no more: merge it once.
        live = []
        for thread, shard in self._shards:
            if thread.is_alive():
                live.append((thread, shard))
            else:
                _merge_into(self._retired, shard.items())
        self._shards = live

    def _digests(self, only: str | None = None) -> dict[str, Digest]:
        """Return a merged copy of every shard's digests (of name ``only``, if given)."""
        with self._lock:
            self._fold_ended()
            retired = self._retired
            if only is not None:
                retired = {only: retired[only]} if only in retired else {}
            merged = {name: digest.copy() for name, digest in retired.items()}
            if only is None:
                shards = [list(shard.items()) for _, shard in self._shards]
            else:
                shards = [[(only, s[only])] for _, s in self._shards if only in s]
        for items in shards:
            _merge_into(merged, ((name, _settled_copy(d)) for name, d in items))
        return merged

    def get(self, name: str) -> OperationStats | None:
        """Return the statistics of operation ``name``, or None if it never ran."""
        digest = self._digests(name).get(name)
        return None if digest is None else OperationStats.from_digest(name, digest)

    def snapshot(self) -> list[OperationStats]:
        """Return the statistics of every operation, slowest total first."""
        summaries = [OperationStats.from_digest(n, d) for n, d in self._digests().items()]
        return sorted(summaries, key=lambda s: (-s.total_ns, s.name))

    def digests(self) -> dict[str, Digest]:
        """Return a merged copy of the sketches by name (what reports are built from)."""
        return self._digests()

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form: ``{"format", "operations": [summary + "sketch", ...]}``.

        Slowest total first; `from_json` and `merge` read it back exactly.
        """
        digests = self._digests()
        order = sorted(digests, key=lambda n: (-digests[n].total_ns, n))
        return {"format": STATS_FORMAT, "operations": [digest_entry(n, digests[n]) for n in order]}

    def report(self) -> dict[str, Any]:
        """Return ``{"operations": [...]}``: the statistics report as a JSON-ready dict.

        The same object as `to_json` (each operation also carries its sketch, so saved
        reports merge exactly).
        """
        return self.to_json()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], max_operations: int = MAX_OPERATIONS) -> StatsSink:
        """Return a sink holding the statistics of a `to_json` object.

        Raises:
            ConfigError: ``data`` is not that form.
        """
        sink = cls(max_operations)
        sink.merge(data)
        return sink

    def merge(self, other: StatsSink | Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
        """Add the statistics of another sink or of JSON forms (one, or several) to this one.

        The result equals what one sink receiving every record would hold (the sketches'
        bins add up exactly). Names beyond ``max_operations`` count under OVERFLOW_NAME.

        Raises:
            ConfigError: a JSON form is malformed (nothing is merged then).
        """
        if isinstance(other, StatsSink):
            incoming = other._digests()
        elif isinstance(other, Mapping):
            incoming = digests_from_json(other, "StatsSink.merge()")
        else:
            incoming = {}
            for index, data in enumerate(other):
                where = f"StatsSink.merge(), form {index}"
                _merge_into(incoming, digests_from_json(data, where).items())
        with self._lock:
            for name, digest in incoming.items():
                target = name
                if name not in self._names:
                    if len(self._names) >= self.max_operations:
                        target = OVERFLOW_NAME
                    self._names.add(target)
                _merge_into(self._retired, ((target, digest),))

    def reset(self) -> None:
        """Forget everything (records racing with the reset may land before it)."""
        with self._lock:
            self._local = threading.local()
            self._shards = []
            self._retired = {}
            self._names = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_operations": self.max_operations, "stats": self.to_json()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_operations = state["max_operations"]
        self._start()
        _sinks.add(self)
        self.merge(state["stats"])


def _settled_copy(digest: Digest) -> Digest:
    # A copy of a digest another thread may be writing: its count is re-derived from the
    # bins (copied in one C-level step) so count and percentiles always agree.
    clone = digest.copy()
    clone.count = sum(clone.bins) + clone.zero_count
    clone.errors = min(clone.errors, clone.count)
    return clone


def _merge_into(target: dict[str, Digest], items: Iterable[tuple[str, Digest]]) -> None:
    for name, digest in items:
        existing = target.get(name)
        if existing is None:
            target[name] = digest.copy()
        else:
            existing.merge(digest)


def _after_fork_in_child() -> None:
    # A forked child starts with empty statistics (and fresh locks, which another thread may
    # have held at fork time), so per-process reports merge without counting the parent twice.
    for sink in list(_sinks):
        sink._start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
