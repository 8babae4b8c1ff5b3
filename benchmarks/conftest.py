"""Shared machinery of the overhead guard's benchmarks.

Every benchmark here measures a *round* of many operations (``calls`` calls of a decorated
function, ``calls`` items of a generator, ...) with ``benchmark.pedantic(iterations=1)``, so
the timer reads twice per round, not twice per ~100 ns call. The number of operations per
round is stored in ``extra_info["calls_per_round"]``; ``guard.py`` and ``report.py`` divide
every statistic by it. That division is the only per-call normalisation anywhere.

The number of rounds is set per mode (``--bench-mode``): each benchmark runs warm-up rounds,
times one round, then runs as many rounds as fit in the mode's time budget, within the mode's
bounds. Modes: ``smoke`` (a few rounds, for the guard's own test), ``short`` (CI) and ``full``
(release check).

Clock: by default every round is timed with ``time.process_time`` (CPU time of this process,
all threads), not wall time. On a shared 2-core machine the dominant noise is the benchmark
being descheduled while other processes run; CPU time does not count that. It still counts
the slowdowns contention causes (this machine alternates between a fast phase and a
~1.5-2x slower one for tenths of a second at a time), which is why the guard judges paired
figures (see ``Bench``). ``--bench-clock=wall`` switches back to ``time.perf_counter``.

Passes: the machine is shared and noisy, and a ratio compares benchmarks that run at different
moments. So every test declares its variants with ``@pytest.mark.variants(...)`` and each
variant runs once per *pass*, the passes one after another (pass 0 of every variant of the
test, then pass 1, ...). A load burst then hits one pass of each variant rather than all the
rounds of one. Test ids are ``test_sync[timed-p0]``, ``test_sync[timed-p1]``...; the guard
and the report merge the rounds of all passes of ``test_sync[timed]``.
"""

from __future__ import annotations

import gc
import importlib.metadata
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import flext_ctx_aspects
import guard
from flext_ctx_aspects import _emit, _state
from kit import CollectingSink, EventLoop


@dataclass(frozen=True)
class Mode:
    """How long each benchmark measures."""

    name: str
    budget_s: float  # measured time aimed at per benchmark
    min_rounds: int
    max_rounds: int
    warmup_rounds: int
    subprocess_rounds: int  # rounds of the import-time benchmarks (one interpreter each)
    passes: int


# budget_s, min_rounds, max_rounds and subprocess_rounds are per pass.
MODES = {
    "smoke": Mode("smoke", budget_s=0.005, min_rounds=3, max_rounds=3, warmup_rounds=1,
                  subprocess_rounds=2, passes=1),
    "short": Mode("short", budget_s=0.05, min_rounds=5, max_rounds=100, warmup_rounds=1,
                  subprocess_rounds=2, passes=7),
    "full": Mode("full", budget_s=0.25, min_rounds=15, max_rounds=800, warmup_rounds=3,
                 subprocess_rounds=3, passes=15),
}  # fmt: skip


CLOCKS: dict[str, Callable[[], float]] = {
    "cpu": time.process_time,
    "wall": time.perf_counter,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="flext_ctx_aspects overhead guard: time rounds in process CPU time or wall time",
    )
    parser.addoption(
        "--bench-mode",
        choices=sorted(MODES),
        default="short",
        help="flext_ctx_aspects overhead guard: how long each benchmark measures",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "variants(*ids): the variants a benchmark test measures, one test id each"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("variants")
    if marker is None or "variant" not in metafunc.fixturenames:
        return
    passes = MODES[metafunc.config.getoption("--bench-mode")].passes
    params = [
        pytest.param(variant, id=f"{variant}-p{index}")
        for index in range(passes)
        for variant in marker.args
    ]
    metafunc.parametrize("variant", params)


@pytest.fixture(scope="session")
def mode(request: pytest.FixtureRequest) -> Mode:
    return MODES[request.config.getoption("--bench-mode")]


@pytest.fixture(autouse=True)
def _clean_library_state() -> Iterator[None]:
    # Every benchmark starts with no sink, the aspects switched on and an empty context.
    _emit.clear_sinks()
    flext_ctx_aspects.set_enabled(True)
    _state.clear()
    try:
        yield
    finally:
        _emit.clear_sinks()
        flext_ctx_aspects.set_enabled(True)
        _state.clear()


Round = tuple[Callable[[], object], int]
"""One round of a benchmark: the function running it, and how many operations it runs."""


def _companions() -> dict[str, tuple[str, ...]]:
    """Benchmark key -> the keys thresholds.toml compares it with (same test function)."""
    limits, _ = guard.load_thresholds(guard.DEFAULT_THRESHOLDS)
    found: dict[str, list[str]] = {}
    for limit in limits:
        if limit.kind == "identity":
            continue
        function = limit.subject.split("[", 1)[0]
        others = [limit.reference, limit.baseline, limit.reference_baseline]
        for other in others:
            same_test = other.split("[", 1)[0] == function
            if other and same_test and other != limit.subject:
                keys = found.setdefault(limit.subject, [])
                if other not in keys:
                    keys.append(other)
    return {key: tuple(others) for key, others in found.items()}


COMPANIONS = _companions()


class Bench:
    """Runs one benchmark as rounds of ``calls`` operations and records the normalisation.

    Companions: when ``thresholds.toml`` compares this benchmark with others of the same test
    function (its reference and baseline), one round of each of them runs right before each
    round of this one (in pytest-benchmark's untimed ``setup``), timed with the same clock,
    and their per-round figures are stored in ``extra_info["companions"]``, aligned with this
    benchmark's rounds. The guard computes a ratio per round from these triples, measured
    within a few milliseconds of each other, and takes the median over the rounds: the
    "paired" figure, which the machine's slow and fast phases do not move.
    """

    def __init__(self, benchmark: Any, mode: Mode, clock: str, test_name: str) -> None:
        self.benchmark = benchmark
        self.mode = mode
        self.clock = clock
        self.test_name = test_name
        self.use_clock(CLOCKS[clock], clock)

    def use_clock(self, timer: Callable[[], float], name: str) -> None:
        """Time the rounds of this benchmark with ``timer`` (seconds, monotonic)."""
        # pytest-benchmark reads the fixture's timer when it builds each round's runner.
        self.benchmark._timer = timer
        self.benchmark.extra_info["clock"] = name
        self.timer = timer

    def rounds_for(self, one_round_s: float) -> int:
        wanted = math.ceil(self.mode.budget_s / max(one_round_s, 1e-9))
        return max(self.mode.min_rounds, min(self.mode.max_rounds, wanted))

    def measure(
        self,
        variant: str,
        build: Callable[[str], Round],
        *,
        unit: str = "call",
        info: dict[str, Any] | None = None,
    ) -> None:
        """Measure the round ``build(variant)``, with its companions.

        Args:
            variant: The variant this test id measures.
            build: Returns the round of any variant of this test (for the companions too).
            unit: What one operation is ("call", "item", "create-and-exhaust", ...).
            info: Extra facts stored with the result (``extra_info``), read after the
                subject's round is built (``build`` may fill it).
        """
        loop, calls = build(variant)
        facts = dict(info or {})
        companions: dict[str, Round] = {}
        for key in COMPANIONS.get(f"{self.test_name}[{variant}]", ()):
            try:
                companions[key] = build(key[key.index("[") + 1 : -1])
            except pytest.skip.Exception:
                # A companion this run cannot measure (no C compiler, pure Python): its
                # optional limit is reported as not measured; the subject is measured.
                continue
        self.per_call(loop, calls, unit=unit, companions=companions, **facts)

    def per_call(
        self,
        loop: Callable[[], object],
        calls: int,
        *,
        unit: str = "call",
        rounds: int | None = None,
        companions: dict[str, Round] | None = None,
        **info: object,
    ) -> None:
        """Measure ``loop``, which performs ``calls`` operations per invocation.

        Args:
            loop: Runs one round.
            calls: Operations per round; every statistic is divided by it downstream.
            unit: What one operation is ("call", "item", "create-and-exhaust", "import").
            rounds: Fixed number of rounds; default: from the mode's time budget.
            companions: Rounds to run right before each round (see the class docs).
            info: Extra facts stored with the result (``extra_info``).
        """
        extra = self.benchmark.extra_info
        extra.update(info)
        extra["calls_per_round"] = calls
        extra["unit"] = unit
        extra["mode"] = self.mode.name
        extra["passes"] = self.mode.passes
        companions = companions or {}
        timer = self.timer
        figures: dict[str, list[float]] = {key: [] for key in companions}
        disable_gc = bool(self.benchmark._disable_gc)

        def run_companions() -> None:
            gc_was_enabled = gc.isenabled()
            if disable_gc:
                gc.disable()
            try:
                for key, (companion, companion_calls) in companions.items():
                    started = timer()
                    companion()
                    figures[key].append((timer() - started) / companion_calls * 1e9)
            finally:
                if gc_was_enabled:
                    gc.enable()

        for _ in range(self.mode.warmup_rounds):
            for companion, _calls in companions.values():
                companion()
            loop()
        if rounds is None:
            started = timer()
            for companion, _calls in companions.values():
                companion()
            loop()
            rounds = self.rounds_for(timer() - started)
        self.benchmark.pedantic(
            loop, setup=run_companions if companions else None, rounds=rounds, iterations=1
        )
        if companions:
            extra["companions"] = figures


@pytest.fixture
def bench(benchmark: Any, mode: Mode, request: pytest.FixtureRequest) -> Bench:
    clock = request.config.getoption("--bench-clock")
    return Bench(benchmark, mode, clock, request.node.originalname)


@pytest.fixture
def collecting_sink() -> Iterator[CollectingSink]:
    sink = CollectingSink()
    remove = _emit.add_sink(sink)
    try:
        yield sink
    finally:
        remove()


@pytest.fixture
def aloop() -> Iterator[EventLoop]:
    """An event loop for one benchmark: every round runs inside it, closed after."""
    runner = EventLoop()
    try:
        yield runner
    finally:
        runner.close()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "implementation": sys.implementation.name}
    for dist in (
        "flext-ctx-aspects",
        "wrapt",
        "typing-extensions",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "structlog",
        "ddtrace",
        "pytest",
        "pytest-benchmark",
    ):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _load() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


_SESSION: dict[str, Any] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION["load_at_start"] = _load()
    _SESSION["started"] = time.time()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test id the suite defines, before -k/-m deselect any: recorded in the JSON so
    # that the guard's own test can check thresholds.toml against the suite in one small run.
    _SESSION["collected"] = [item.name for item in items]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]
) -> None:
    # What guard.py and report.py need to know about the run, next to pytest-benchmark's own
    # machine_info: the mode, the clock, the CPU, the versions, and how loaded the machine was.
    mode = MODES[config.getoption("--bench-mode")]
    output_json["flext_bench"] = {
        "mode": mode.name,
        "engine": flext_ctx_aspects.implementation,
        "passes": mode.passes,
        "clock": config.getoption("--bench-clock"),
        "gc_disabled": bool(config.getoption("benchmark_disable_gc")),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "versions": _versions(),
        "load_at_start": _SESSION.get("load_at_start", []),
        "load_at_end": _load(),
        "duration_s": round(time.time() - _SESSION.get("started", time.time()), 1),
        "command": " ".join(["pytest", *config.invocation_params.args]),
        "collected": _SESSION.get("collected", []),
    }
