"""StatsSink: exact counters, 1% percentiles from DDSketch bins, merge, JSON, pickle, threads."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flext_ctx_aspects import timed
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import StatsSink, add_sink
from flext_ctx_aspects.sinks._sketch import _MAPPING, BIN_LIMIT, MAX_KEY, Digest, bin_key
from flext_ctx_aspects.sinks.stats import OVERFLOW_NAME, PERCENTILES

TOLERANCE = 0.01 + 1e-9


def record(name: str, duration_ns: int, status: str = "ok") -> OperationRecord:
    return OperationRecord.make(
        name,
        duration_ns=duration_ns,
        status=status,  # type: ignore[arg-type]
        error_type=None if status == "ok" else "E",
    )


def exact(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[math.floor(fraction * (len(ordered) - 1))]


def assert_accurate(sink: StatsSink, name: str, values: list[int]) -> None:
    summary = sink.get(name)
    assert summary is not None
    assert summary.count == len(values)
    assert summary.total_ns == sum(values)
    assert (summary.min_ns, summary.max_ns) == (min(values), max(values))
    for field, fraction in PERCENTILES:
        want = exact(values, fraction)
        got = getattr(summary, field)
        # Rounding the sketch's float to whole nanoseconds adds at most half a nanosecond.
        assert abs(got - want) <= TOLERANCE * want + 0.5, (field, got, want)


heavy_tailed = st.lists(
    st.floats(min_value=0.05, max_value=4.0).map(lambda a: a),
    min_size=1,
    max_size=1,
).flatmap(
    lambda alphas: st.lists(
        st.floats(min_value=1e-9, max_value=1.0, exclude_min=True).map(
            lambda u: max(1, int(1000 * u ** (-1 / alphas[0])) % (2**50))
        ),
        min_size=1,
        max_size=1500,
    )
)
bimodal = st.tuples(
    st.integers(100, 10_000), st.integers(1_000_000, 50_000_000), st.floats(0.01, 0.99),
    st.integers(1, 4000), st.randoms(use_true_random=False),
).map(
    lambda t: [
        int(t[4].gauss(t[0], t[0] / 10)) if t[4].random() < t[2] else int(t[4].gauss(t[1], t[1] / 20))
        for _ in range(t[3])
    ]
).map(lambda xs: [min(max(1, x), 2**62) for x in xs])  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(heavy_tailed)
def test_percentiles_within_one_percent_on_heavy_tails(values: list[int]) -> None:
    sink = StatsSink()
    for value in values:
        sink.emit(record("op", value))
    assert_accurate(sink, "op", values)


@settings(max_examples=60, deadline=None)
@given(bimodal)
def test_percentiles_within_one_percent_on_bimodal_samples(values: list[int]) -> None:
    sink = StatsSink()
    for value in values:
        sink.emit(record("op", value))
    assert_accurate(sink, "op", values)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**12), min_size=0, max_size=300), min_size=1, max_size=5))
def test_merge_equals_one_sketch_of_the_union(parts: list[list[int]]) -> None:
    union = StatsSink()
    merged = StatsSink()
    for part in parts:
        alone = StatsSink()
        for value in part:
            alone.emit(record("op", value, "error" if value % 7 == 0 else "ok"))
            union.emit(record("op", value, "error" if value % 7 == 0 else "ok"))
        # Alternate the sources: a sink, its JSON form, its JSON text reloaded.
        source: Any = alone if len(part) % 2 else json.loads(json.dumps(alone.to_json()))
        merged.merge(source)
    assert merged.to_json() == union.to_json()
    assert merged.snapshot() == union.snapshot()


def test_merge_of_several_process_forms_at_once() -> None:
    forms = []
    for seed in range(3):
        sink = StatsSink()
        rng = random.Random(seed)
        for _ in range(500):
            sink.emit(record(f"op{seed % 2}", rng.randrange(1, 10**9)))
        forms.append(sink.to_json())
    merged = StatsSink()
    merged.merge(forms)
    assert sum(s.count for s in merged.snapshot()) == 1500


def test_bin_key_agrees_with_ddsketch_mapping() -> None:
    rng = random.Random(1)
    for value in [
        1,
        2,
        3,
        999,
        1000,
        1001,
        2**40,
        2**62,
        *(rng.randrange(1, 2**62) for _ in range(5000)),
    ]:
        assert bin_key(value) == _MAPPING.key(value)
        assert _MAPPING.key(_MAPPING.value(bin_key(value))) == bin_key(value)
    assert bin_key(2**63 - 1) <= MAX_KEY


@settings(max_examples=300, deadline=None)
@given(
    durations=st.lists(
        st.one_of(st.just(0), st.integers(1, 10**4), st.integers(1, 2**63 - 1)),
        min_size=1,
        max_size=300,
    ),
    fractions=st.lists(
        st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 0.99, 0.999, 1.0, -0.1, 1.5])),
        min_size=1,
        max_size=8,
    ),
)
def test_quantiles_are_what_ddsketch_answers_on_the_same_bins(
    durations: list[int], fractions: list[float]
) -> None:
    # quantiles() runs DDSketch's algorithm on the bins without building the sketch: the
    # library's own answer on the same bins is the oracle, clamped to [min, max] as there.
    digest = Digest()
    for duration in durations:
        digest.add(duration, failed=False)
    sketch = digest.sketch()
    want = tuple(
        min(max(round(sketch.get_quantile_value(f) or 0.0), digest.min_ns), digest.max_ns)
        for f in fractions
    )
    assert digest.quantiles(tuple(fractions)) == want


def test_bins_stay_bounded_over_every_possible_duration() -> None:
    digest = Digest()
    values = [2**exponent for exponent in range(63)] + [2**63 - 1, 2**64]
    for value in values:
        digest.add(value, failed=False)
    assert len(digest.bins) <= BIN_LIMIT
    assert digest.nbytes() <= 32 * 1024
    assert sum(digest.bins) + digest.zero_count == digest.count == len(values)
    # Every quantile keeps its guarantee across all 19 decades (the last value is clamped).
    for fraction in (0.0, 0.1, 0.5, 0.9):
        (got,) = digest.quantiles((fraction,))
        want = exact(values, fraction)
        assert abs(got - want) <= TOLERANCE * want + 0.5


def test_counts_errors_zero_durations_and_empty_names() -> None:
    sink = StatsSink()
    for duration, status in ((0, "ok"), (0, "error"), (5, "ok")):
        sink.emit(record("z", duration, status))
    summary = sink.get("z")
    assert summary is not None
    assert (summary.count, summary.errors, summary.min_ns, summary.max_ns) == (3, 1, 0, 5)
    assert summary.p50_ns == 0
    assert sink.get("never") is None


def test_names_beyond_the_cap_count_under_the_overflow_name() -> None:
    sink = StatsSink(max_operations=3)
    for index in range(10):
        sink.emit(record(f"n{index}", 10))
    names = {s.name: s.count for s in sink.snapshot()}
    assert names == {"n0": 1, "n1": 1, "n2": 1, OVERFLOW_NAME: 7}
    with pytest.raises(ConfigError, match="max_operations"):
        StatsSink(max_operations=0)
    with pytest.raises(ConfigError, match="max_operations"):
        StatsSink(max_operations="3")  # type: ignore[arg-type]


def test_real_threads_record_without_loss_and_shards_fold_when_threads_end() -> None:
    sink = StatsSink()
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        barrier.wait()
        for index in range(2000):
            sink.emit(record("t", 1 + (seed * 2000 + index) % 5000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    # Snapshots while the threads write: always consistent, never more than the total.
    while any(t.is_alive() for t in threads):
        summary = sink.get("t")
        assert summary is None or summary.count <= 16_000
    for thread in threads:
        thread.join()
    summary = sink.get("t")
    assert summary is not None
    assert summary.count == 16_000
    assert summary.total_ns == sum(1 + i % 5000 for i in range(16_000))
    assert len(sink._shards) <= 1  # the ended threads' shards were folded


def test_reset_json_round_trip_and_pickle() -> None:
    sink = StatsSink()
    for value in (10, 20, 30_000):
        sink.emit(record("a", value))
    data = sink.to_json()
    assert data == sink.report()
    assert json.loads(json.dumps(data)) == data
    assert StatsSink.from_json(data).to_json() == data
    clone = pickle.loads(pickle.dumps(sink))
    assert clone.to_json() == data
    clone.emit(record("a", 5))
    assert clone.get("a").count == 4  # type: ignore[union-attr]
    sink.reset()
    assert sink.snapshot() == []
    sink.emit(record("a", 1))
    assert sink.get("a").count == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.pop("operations"), "operations"),
        (lambda d: d["operations"][0].update(name=3), "name"),
        (lambda d: d["operations"][0].update(count=-1), "count"),
        (lambda d: d["operations"][0].update(count="2"), "count"),
        (lambda d: d["operations"][0]["sketch"].update(bins="x"), "sketch.bins"),
        (
            lambda d: d["operations"][0]["sketch"].update(relative_accuracy=0.02),
            "relative_accuracy",
        ),
        (lambda d: d["operations"][0].update(count=99), "sketch.bins"),
    ],
)
def test_malformed_json_forms_are_refused_with_the_key(mutate: Any, key: str) -> None:
    sink = StatsSink()
    sink.emit(record("a", 10))
    sink.emit(record("a", 20))
    data = sink.to_json()
    mutate(data)
    target = StatsSink()
    with pytest.raises(ConfigError, match=key):
        target.merge(data)
    assert target.snapshot() == []


def test_with_timed_and_add_sink() -> None:
    stats = StatsSink()

    @timed(name="unit")
    def unit() -> int:
        return 1

    with add_sink(stats):
        for _ in range(50):
            unit()
    summary = stats.get("unit")
    assert summary is not None
    assert summary.count == 50
    assert summary.min_ns <= summary.p50_ns <= summary.p99_ns <= summary.p999_ns <= summary.max_ns


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty() -> None:
    sink = StatsSink()
    sink.emit(record("parent", 10))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        sink.emit(record("child", 10))
        os.write(write, json.dumps([s.name for s in sink.snapshot()]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        names = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert names == ["child"]
    assert [s.name for s in sink.snapshot()] == ["parent"]
