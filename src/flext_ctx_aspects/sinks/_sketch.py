"""The per-operation digest behind statistics and reports: exact counters plus a DDSketch.

A `Digest` holds, for one operation name, the exact count, errors, total, min and max,
and the bins of a DDSketch (``ddsketch.LogarithmicMapping`` with relative accuracy
`RELATIVE_ACCURACY`, 1%). The bins are a dense ``array('Q')`` indexed by bin key, so
adding a duration costs one logarithm and one array increment, where ``DDSketch.add`` costs
~960 ns here; the key mapping is the library's, the quantiles are its algorithm run on the
bins (``sketch()`` hands them to a ``ddsketch`` sketch, the tests' oracle), and merging sums
bins key by key, exactly.

Durations are integers in nanoseconds: key 0 holds 1 ns, key `MAX_KEY` 2**63 ns (292
years), so a digest never holds more than `BIN_LIMIT` = ``MAX_KEY + 1`` bins of 8 bytes
(~17.5 KB; a workload spanning three decades uses ~350 bins, 2.8 KB) and never has to collapse
bins: the 1% bound holds at every quantile. Zero durations are counted apart (``zero_count``),
as DDSketch does.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right as _bisect_right
from itertools import accumulate as _accumulate
from typing import TYPE_CHECKING, Any, Final

from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.mapping import LogarithmicMapping

from flext_ctx_aspects._native import speedups
from flext_ctx_aspects.errors import ConfigError

__all__ = [
    "BIN_LIMIT",
    "COMPILED",
    "COUNTER_LIMIT",
    "MAX_KEY",
    "MULTIPLIER",
    "NO_MIN",
    "RELATIVE_ACCURACY",
    "Digest",
    "bin_key",
    "describe",
]

RELATIVE_ACCURACY: Final = 0.01
_MAPPING: Final = LogarithmicMapping(RELATIVE_ACCURACY)
# The same multiplier LogarithmicMapping computes (1 / log2(gamma) scaled), so bin_key agrees
# with ``_MAPPING.key`` bit for bit (tested).
_MULTIPLIER: Final = math.log(2) / math.log1p(2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY))
_log2: Final = math.log2
_ceil: Final = math.ceil
MAX_KEY: Final = _ceil(63 * _MULTIPLIER)
MULTIPLIER: Final = _MULTIPLIER
# The most a counter (count, errors, zero_count, a bin) holds: a C long long when compiled.
COUNTER_LIMIT: Final = (1 << 63) - 1
NO_MIN: Final = 1 << 64  # min_ns of a digest that holds nothing yet
# Most bins one digest keeps: every key a duration can have (8 bytes each, ~17.5 KB). So
# the collapsing rule in add_key is a guard that real durations never reach: the 1% bound
# holds at every quantile of every distribution. (A list would make emit ~60 ns cheaper but
# costs an int object per bin: ~87 KB worst case.)
BIN_LIMIT: Final = MAX_KEY + 1


def bin_key(duration_ns: int) -> int:
    """Return the sketch bin of a positive duration (``LogarithmicMapping.key``)."""
    return _ceil(_log2(duration_ns) * _MULTIPLIER)


def _python_add(digest: Digest, duration_ns: int, failed: bool) -> None:
    # The pure-Python Digest.add, and the compiled one's path for what it does not cover.
    if duration_ns < digest.min_ns:  # noqa: PLR1730 - the same comparisons as the C path
        digest.min_ns = duration_ns
    if duration_ns > digest.max_ns:  # noqa: PLR1730
        digest.max_ns = duration_ns
    digest.count += 1
    digest.total_ns += duration_ns
    if failed:
        digest.errors += 1
    if duration_ns <= 0:
        digest.zero_count += 1
        return
    key = bin_key(duration_ns)
    index = key - digest.offset
    bins = digest.bins
    if 0 <= index < len(bins):
        bins[index] += 1
    else:
        digest.add_key(key, 1)


class _PythonDigestCore:
    """The pure-Python state and ``add`` of a digest (``_speedups.DigestCore`` compiled)."""

    __slots__ = ("bins", "count", "errors", "max_ns", "min_ns", "offset", "total_ns", "zero_count")
    count: int
    errors: int
    zero_count: int
    offset: int
    total_ns: int
    min_ns: int
    max_ns: int
    bins: array[int]

    add = _python_add


if TYPE_CHECKING:
    _DigestCore = _PythonDigestCore
else:
    _DigestCore = _PythonDigestCore if speedups is None else speedups.DigestCore
# True when Digest.add is the compiled one (StatsSink then calls it instead of inlining).
COMPILED: Final = _DigestCore is not _PythonDigestCore
if speedups is not None:
    speedups.set_multiplier(_MULTIPLIER)


class Digest(_DigestCore):
    """Exact counters and DDSketch bins of one operation's durations (nanoseconds).

    Not thread-safe: each thread writes its own digests (see ``StatsSink``); merging and
    reading happen on copies or on digests no thread writes any more. ``add`` is compiled
    when the compiled parts are (``flext_ctx_aspects.implementation``); the state and the
    outcome are the same either way. Counters (``count``, ``errors``, ``zero_count``) hold
    up to ``2**63 - 1``; totals, minimum and maximum are unbounded ints.
    """

    __slots__ = ()
    _add_generic = _python_add

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total_ns = 0
        self.min_ns = NO_MIN  # a sentinel until the first duration: one test per record less
        self.max_ns = 0
        self.zero_count = 0
        self.offset = 0  # bin key of bins[0]
        self.bins = array("Q")

    def add_key(self, key: int, weight: int) -> None:
        """Add ``weight`` to bin ``key``, growing the dense bin range to hold it.

        The range never exceeds `BIN_LIMIT` bins: past it, the lowest bins would collapse
        into the lowest kept one (``ddsketch``'s ``CollapsingLowestDenseStore`` rule); with
        the limit at every possible key, that never happens to real durations.
        """
        key = min(max(key, 0), MAX_KEY)
        bins = self.bins
        if not bins:
            self.offset = key
            bins.append(weight)
            return
        index = key - self.offset
        if index < 0:
            room = BIN_LIMIT - len(bins)
            if room <= 0:
                bins[0] += weight  # below a collapsed range: the lowest bin holds it
                return
            shift = min(-index, room)
            bins[0:0] = array("Q", bytes(8 * shift))
            self.offset -= shift
            bins[max(0, index + shift)] += weight
        elif index >= len(bins):
            bins.extend(array("Q", bytes(8 * (index - len(bins) + 1))))
            excess = len(bins) - BIN_LIMIT
            if excess > 0:
                bins[excess] += sum(bins[:excess])
                del bins[:excess]
                self.offset += excess
            bins[-1] += weight
        else:
            bins[index] += weight

    def merge(self, other: Digest) -> None:
        """Add every duration ``other`` holds (exact: the bins are summed key by key)."""
        if other.count == 0:
            return
        self.min_ns = min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.errors += other.errors
        self.total_ns += other.total_ns
        self.zero_count += other.zero_count
        for index, weight in enumerate(other.bins):
            if weight:
                self.add_key(other.offset + index, weight)

    def copy(self) -> Digest:
        """Return an independent copy."""
        clone = Digest()
        clone.count, clone.errors, clone.total_ns = self.count, self.errors, self.total_ns
        clone.min_ns, clone.max_ns, clone.zero_count = self.min_ns, self.max_ns, self.zero_count
        clone.offset = self.offset
        clone.bins = array("Q", self.bins)
        return clone

    def nbytes(self) -> int:
        """Return the bytes the bins take (the part that grows with the data)."""
        return self.bins.buffer_info()[1] * self.bins.itemsize

    def sketch(self) -> LogCollapsingLowestDenseDDSketch:
        """Return a ``ddsketch`` sketch holding these bins (what `quantiles` computes from)."""
        sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=MAX_KEY + 1)
        if self.zero_count:
            sketch.add(0.0, float(self.zero_count))
        value = _MAPPING.value
        for index, weight in enumerate(self.bins):
            if weight:
                # value(key) is the bin's representative, well inside the bin: it maps back to
                # the same key, so the sketch holds exactly these bins.
                sketch.add(value(self.offset + index), float(weight))
        return sketch

    def quantiles(self, fractions: tuple[float, ...]) -> tuple[int, ...]:
        """Return the durations at ``fractions`` (0..1), within 1% of the exact values.

        The value at fraction ``q`` approximates the ``floor(q * (count - 1))``-th smallest
        duration (0-based) to within `RELATIVE_ACCURACY`, clamped to [min, max] (both
        exact).
        """
        if self.count == 0:
            return tuple(0 for _ in fractions)
        # DDSketch.get_quantile_value on these bins (the tests compare it with `sketch()`'s),
        # without building the sketch: that costs ~1 µs per bin, and a report asks for the
        # quantiles of every operation (~0.1 s for 350 in a run's report, twice per run).
        running = list(_accumulate(self.bins))
        last = len(running) - 1
        out = []
        for fraction in fractions:
            value = 0.0
            rank = fraction * (self.count - 1)
            if 0.0 <= fraction <= 1.0 and rank >= self.zero_count:
                # The first bin whose running count exceeds the rank (DenseStore.key_at_rank).
                index = min(_bisect_right(running, rank - self.zero_count), last)
                value = _MAPPING.value(self.offset + index)
            out.append(min(max(round(value), self.min_ns), self.max_ns))
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form: counters and ``{"offset", "zero_count", "bins"}``."""
        # Trailing and leading empty bins carry nothing; trim them so files stay small.
        bins = self.bins.tolist()
        start = 0
        while start < len(bins) and bins[start] == 0:
            start += 1
        end = len(bins)
        while end > start and bins[end - 1] == 0:
            end -= 1
        return {
            "count": self.count,
            "errors": self.errors,
            "total_ns": self.total_ns,
            "min_ns": self.min_ns if self.count else 0,
            "max_ns": self.max_ns,
            "sketch": {
                "relative_accuracy": RELATIVE_ACCURACY,
                "zero_count": self.zero_count,
                "offset": self.offset + start,
                "bins": bins[start:end],
            },
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Digest:
        """Rebuild a digest from `to_json` output.

        Raises:
            ConfigError: ``data`` is not that form (``where`` names the file and entry).
        """
        digest = cls()
        if not isinstance(data, dict):
            raise ConfigError(where, "operation", "an object", describe(data))
        for key in ("count", "errors", "total_ns", "min_ns", "max_ns"):
            limit = COUNTER_LIMIT if key in ("count", "errors") else None
            setattr(digest, key, _natural(data.get(key), where, key, limit))
        if digest.count == 0:
            digest.min_ns = NO_MIN
        sketch = data.get("sketch")
        if not isinstance(sketch, dict):
            raise ConfigError(
                where, "sketch", "an object with offset, zero_count, bins", describe(sketch)
            )
        accuracy = sketch.get("relative_accuracy")
        if accuracy != RELATIVE_ACCURACY:
            raise ConfigError(
                where, "sketch.relative_accuracy", str(RELATIVE_ACCURACY), describe(accuracy)
            )
        digest.zero_count = _natural(sketch.get("zero_count"), where, "sketch.zero_count")
        offset = _natural(sketch.get("offset"), where, "sketch.offset")
        bins = sketch.get("bins")
        if not isinstance(bins, list) or offset + len(bins) > MAX_KEY + 1:
            raise ConfigError(
                where, "sketch.bins", f"a list of at most {MAX_KEY + 1} counts", describe(bins)
            )
        digest.offset = offset
        if len(bins) > BIN_LIMIT:
            raise ConfigError(where, "sketch.bins", f"at most {BIN_LIMIT} bins", f"{len(bins)}")
        digest.bins = array("Q", [_natural(b, where, "sketch.bins[]") for b in bins])
        if sum(digest.bins) + digest.zero_count != digest.count:
            raise ConfigError(
                where, "sketch.bins", f"counts summing to count={digest.count}", "another sum"
            )
        return digest


def _natural(value: Any, where: str, key: str, limit: int | None = COUNTER_LIMIT) -> int:
    if type(value) is not int or value < 0 or (limit is not None and value > limit):
        expected = "a non-negative integer"
        if limit is not None:
            expected += " up to 2**63 - 1"
        raise ConfigError(where, key, expected, describe(value))
    return value


def describe(value: Any) -> str:
    """Return a short, one-line description of a bad value for an error message."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text}, a {type(value).__name__}"
