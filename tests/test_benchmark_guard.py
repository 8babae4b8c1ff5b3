"""The overhead guard itself (benchmarks/guard.py, report.py, thresholds.toml).

Synthetic pytest-benchmark JSON drives the guard: a run meeting the limits passes, an
injected 2x slowdown of @timed fails with a message naming the limit and the measured value.
One small real run (smoke mode, a few rounds) checks that the suite's JSON is what the guard
reads; its limits are set so loose that machine noise cannot fail it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str) -> ModuleType:
    # benchmarks/ is a directory of scripts, not a package: load by path (report imports guard).
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


guard = _load("guard")
report = _load("report")

# ns per call of a run that meets every goal and every short-mode limit.
HEALTHY: dict[str, float] = {
    "test_sync[bare]": 45,
    "test_sync[floor_timed]": 700,
    "test_sync[floor_fused]": 1400,
    "test_sync[with_correlation]": 1050,
    "test_sync[service]": 720,
    "test_sync[timed]": 760,
    "test_sync[request_scope]": 1100,
    "test_sync[fused]": 1800,
    "test_sync[timed_sink]": 1600,
    "test_sync[fused_sink]": 3800,
    "test_async[bare]": 150,
    "test_async[floor_timed]": 950,
    "test_async[floor_fused]": 1650,
    "test_async[timed]": 1900,
    "test_async[fused]": 3200,
    "test_method[bare]": 30,
    "test_method[floor_timed]": 720,
    "test_method[floor_fused]": 1450,
    "test_method[timed]": 1500,
    "test_method[fused]": 2500,
    "test_classmethod[bare]": 90,
    "test_classmethod[floor_timed]": 780,
    "test_classmethod[floor_fused]": 1560,
    "test_classmethod[timed]": 1500,
    "test_classmethod[timed_above]": 1700,
    "test_classmethod[fused]": 2500,
    "test_generator_items[bare]": 35,
    "test_generator_items[floor]": 83,
    "test_generator_items[timed]": 88,
    "test_generator_items[fused]": 90,
    "test_generator_create[bare]": 250,
    "test_generator_create[floor]": 1700,
    "test_generator_create[timed]": 2300,
    "test_asyncgen_items[bare]": 113,
    "test_asyncgen_items[floor]": 800,
    "test_asyncgen_items[timed]": 810,
    "test_asyncgen_create[bare]": 1200,
    "test_asyncgen_create[floor]": 4400,
    "test_asyncgen_create[timed]": 5800,
    "test_stacking[bare]": 44,
    "test_stacking[stacked4]": 1800,
    "test_stacking[combined4]": 1800,
    "test_stacking[stacked2]": 1590,
    "test_stacking[combined2]": 1580,
    "test_disabled[bare]": 44,
    "test_disabled[decoration_timed]": 44,
    "test_disabled[decoration_fused]": 44,
    "test_disabled[runtime_timed]": 255,
    "test_disabled[runtime_fused]": 255,
    "test_disabled[wrapt_passthrough]": 240,
    "test_peers[bare]": 47,
    "test_peers[timed]": 780,
    "test_peers[corr_timed]": 1550,
    "test_peers[fused]": 1800,
    "test_peers[otel_sdk]": 21800,
    "test_peers_async[bare]": 150,
    "test_peers_async[timed]": 1800,
    "test_peers_async[otel_sdk]": 20700,
    "test_sink_timed[bare]": 44,
    "test_sink_timed[list_sink]": 1600,
    "test_sink_timed[stats]": 2700,
    "test_sink_emit[noop]": 31,
    "test_sink_emit[stats_emit]": 255,
    "test_sink_emit[floor_emit]": 410,
    "test_stats_per_call[bare]": 31,
    "test_stats_per_call[floor_stats]": 900,
    "test_stats_per_call[timed_stats]": 850,
    "test_stats_per_call[fused_stats]": 2500,
    "test_stats_per_call[otel_batch]": 14500,
    "test_stats_per_call[timed]": 300,
    "test_stats_per_call[timed_records]": 500,
    "test_queue_throughput[bare]": 22,
    "test_queue_throughput[queued]": 175,
    "test_propagation[bare]": 42,
    "test_propagation[inject]": 11500,
    "test_propagation[otel_inject]": 3300,
    "test_propagation[extract]": 20000,
    "test_propagation[otel_extract]": 13000,
    "test_import[dependencies]": 100e6,
    "test_import[flext_ctx_aspects]": 112e6,
    "test_instrument_import[bare]": 5000,
    "test_instrument_import[instrumented]": 12000,
    "test_filtered_call[bare]": 45,
    "test_filtered_call[timed]": 760,
    "test_filtered_call[timed_filtered]": 800,
    "test_filtered_call[instrumented_filtered]": 800,
    "test_runner_startup[plain]": 20e6,
    "test_runner_startup[bootstrapped]": 22e6,
    "test_otel_bridge[bare]": 47,
    "test_otel_bridge[timed_bridge]": 12000,
    "test_otel_bridge[otel_decorator]": 25000,
}
IDENTITY = {"test_disabled[decoration_timed]", "test_disabled[decoration_fused]"}
CALLS = 1000


def synthetic_run(
    per_call: dict[str, float], *, passes: int = 2, mode: str = "short"
) -> dict[str, Any]:
    """A pytest-benchmark JSON document: each benchmark in ``passes`` passes of 5 rounds."""
    benchmarks = []
    for index in range(passes):
        for key, ns in per_call.items():
            function, variant = key[:-1].split("[")
            # Rounds in seconds per round of CALLS calls; the best round is exactly `ns`.
            data = [ns * CALLS / 1e9 * factor for factor in (1.0, 1.05, 1.1, 1.2, 1.4)]
            extra: dict[str, Any] = {"calls_per_round": 1 if "import" in key else CALLS}
            if "import" in key:
                data = [ns / 1e9 * factor for factor in (0.98, 1.0, 1.0, 1.0, 1.3)]
            if key in IDENTITY:
                extra["identity"] = True
            benchmarks.append(
                {
                    "group": function.removeprefix("test_"),
                    "name": f"{function}[{variant}-p{index}]",
                    "fullname": f"benchmarks/{function}.py::{function}[{variant}-p{index}]",
                    "extra_info": extra,
                    "stats": {
                        "min": min(data),
                        "median": sorted(data)[len(data) // 2],
                        "iterations": 1,
                        "data": data,
                    },
                }
            )
    return {
        "benchmarks": benchmarks,
        "datetime": "2026-01-01T00:00:00",
        "flext_bench": {"mode": mode, "passes": passes, "clock": "cpu", "versions": {}},
    }


def run_guard(tmp_path: Path, document: dict[str, Any], *args: str) -> tuple[int, str]:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return guard.main([str(path), *args]), str(path)


def test_a_run_meeting_the_limits_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for mode in ("short", "full"):
        status, _ = run_guard(tmp_path, synthetic_run(HEALTHY), "--mode", mode)
        out = capsys.readouterr()
        assert status == 0, out.err
        assert "all limits hold" in out.out
        assert "FAIL" not in out.out


def test_an_injected_2x_slowdown_of_timed_fails_with_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = dict(HEALTHY)
    slow["test_sync[timed]"] *= 2
    status, _ = run_guard(tmp_path, synthetic_run(slow), "--mode", "short")
    err = capsys.readouterr().err
    assert status == 1
    expected = (2 * 760 - 45) / (700 - 45)  # overhead ratio computed from the figures above
    assert "1 limit(s) violated" in err
    assert "timed_vs_floor: @timed, sync call" in err
    # No companions in this document: the passes are paired (two passes, same figures).
    assert (
        f"measured {expected:.3g}x (paired: median of 2 per-pass ratios), limit 1.8x in "
        "short mode" in err
    )
    assert "test_sync[timed] 1,520" in err  # the subject's figure, for the reader


def test_passes_are_merged_into_one_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(synthetic_run(HEALTHY, passes=3)), encoding="utf-8")
    results, run = guard.load_results(path)
    timed = results["test_sync[timed]"]
    assert timed.passes == 3
    assert timed.rounds == 15
    assert timed.min == pytest.approx(760)
    assert run["mode"] == "short"


def test_the_statistic_and_the_per_call_normalisation(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(synthetic_run({"test_sync[bare]": 50}, passes=1)))
    results, _ = guard.load_results(path)
    bare = results["test_sync[bare]"]
    assert bare.min == pytest.approx(50)  # 50 us per round of 1,000 calls
    assert bare.median == pytest.approx(50 * 1.1)


def test_companion_rounds_pair_each_round_with_its_reference(tmp_path: Path) -> None:
    # The machine alternates between a fast and a 2x slower phase. The standalone floor and
    # bare benchmarks happened to run in slow phases only: their best-of figures mislead,
    # while each round of @timed, paired with the floor and bare rounds run just before it,
    # gives the true ratio in either phase.
    def entry(variant: str, per_call: list[float], **extra: Any) -> dict[str, Any]:
        data = [ns * CALLS / 1e9 for ns in per_call]
        return {
            "group": "sync",
            "name": f"test_sync[{variant}-p0]",
            "extra_info": {"calls_per_round": CALLS, **extra},
            "stats": {"min": min(data), "median": sorted(data)[2], "iterations": 1, "data": data},
        }

    companions = {
        "test_sync[floor_timed]": [700, 1400, 700, 1400],
        "test_sync[bare]": [45, 90, 45, 90],
    }
    document = {
        "benchmarks": [
            entry("bare", [90, 90, 90, 90]),
            entry("floor_timed", [1400, 1400, 1400, 1400]),
            entry("timed", [760, 1520, 760, 1520], companions=companions),
        ]
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    results, _ = guard.load_results(path)
    limits, _ = guard.load_thresholds(guard.DEFAULT_THRESHOLDS)
    timed_limit = [limit for limit in limits if limit.id == "timed_vs_floor"]
    (outcome,) = guard.evaluate(timed_limit, results, "full", "paired")
    assert outcome.values["paired"] == pytest.approx((760 - 45) / (700 - 45))
    assert outcome.how == "paired: median of 4 per-round ratios"
    assert outcome.values["min"] == pytest.approx((760 - 90) / (1400 - 90))
    assert outcome.passed


def test_a_missing_benchmark_fails_and_a_missing_optional_peer_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = dict(HEALTHY)
    del partial["test_sync[floor_timed]"]
    status, _ = run_guard(tmp_path, synthetic_run(partial))
    captured = capsys.readouterr()
    assert status == 1
    assert "timed_vs_floor: benchmark(s) missing from the results: test_sync[floor_timed]" in (
        captured.err
    )
    # ddtrace is not in HEALTHY: its optional limit is skipped, not failed.
    assert "skip  timed_vs_ddtrace" in captured.out


@pytest.mark.parametrize("engine", ["compiled", "python", None])
def test_a_limit_of_the_compiled_engine_is_judged_on_its_runs_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str | None
) -> None:
    # Record build + dispatch is the compiled engine's goal: 2 µs fails its short limit on a
    # compiled run, is skipped on a pure-Python one, and judged where the run does not say.
    slow = dict(HEALTHY)
    slow["test_stats_per_call[timed_records]"] = 2300
    document = synthetic_run(slow)
    if engine is not None:
        document["flext_bench"]["engine"] = engine
    status, _ = run_guard(tmp_path, document)
    captured = capsys.readouterr()
    if engine == "python":
        assert status == 0, captured.err
        assert (
            "skip  record_build_dispatch: a limit of the compiled engine; this run measured python"
        ) in captured.out
    else:
        assert status == 1
        assert "FAIL  record_build_dispatch:" in captured.out


def test_an_unknown_engine_in_the_thresholds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(
        '[[limit]]\nid = "x"\nsubject = "a[b]"\nreference = "a[c]"\nshort = 1\nengine = "pypy"\n',
        encoding="utf-8",
    )
    with pytest.raises(guard.GuardError, match=r"'engine' must be one of .*got 'pypy'"):
        guard.load_thresholds(path)


def test_a_decorator_returning_a_wrapper_when_disabled_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = synthetic_run(HEALTHY)
    for entry in document["benchmarks"]:
        if entry["name"].startswith("test_disabled[decoration_fused"):
            entry["extra_info"].pop("identity")
    status, _ = run_guard(tmp_path, document)
    assert status == 1
    assert "not the original object in test_disabled[decoration_fused]" in capsys.readouterr().err


def test_full_mode_holds_the_goals_themselves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heavy = dict(HEALTHY)
    heavy["test_import[flext_ctx_aspects]"] = 130e6  # +30 ms: within CI's limit, not the goal
    assert run_guard(tmp_path, synthetic_run(heavy), "--mode", "short")[0] == 0
    status, _ = run_guard(tmp_path, synthetic_run(heavy), "--mode", "full")
    err = capsys.readouterr().err
    assert status == 1
    assert "import_overhead" in err
    assert "measured 30.0 ms (paired: median of 2 per-pass differences), limit 20 ms" in err


def test_noise_that_makes_a_reference_overhead_vanish_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = dict(HEALTHY)
    broken["test_sync[floor_timed]"] = 40  # faster than the bare call
    status, _ = run_guard(tmp_path, synthetic_run(broken))
    assert status == 1
    assert "with a positive reference overhead: the run is too noisy" in capsys.readouterr().err


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.json"
    path.write_text("{not json", encoding="utf-8")
    assert guard.main([str(path)]) == 2
    assert "cannot read benchmark results" in capsys.readouterr().err
    bad = tmp_path / "thresholds.toml"
    bad.write_text('[[limit]]\nid = "x"\nkind = "ratio"\n', encoding="utf-8")
    good = tmp_path / "ok.json"
    good.write_text(json.dumps(synthetic_run(HEALTHY)), encoding="utf-8")
    assert guard.main([str(good), "--thresholds", str(bad)]) == 2
    assert "'kind' must be one of" in capsys.readouterr().err


def test_the_report_shows_goals_met_and_not_met(tmp_path: Path) -> None:
    heavy = copy.deepcopy(HEALTHY)
    heavy["test_import[flext_ctx_aspects]"] = 130e6
    path = tmp_path / "results.json"
    path.write_text(json.dumps(synthetic_run(heavy, mode="full")), encoding="utf-8")
    page = report.render(path, guard.DEFAULT_THRESHOLDS, "full")
    assert page.startswith("# Performance")
    assert "| @timed, sync call: overhead / the floor's overhead | 1.09x | " in page
    assert "| 30.0 ms | 29.4 ms | 30.0 ms | <= 20 ms | **NOT MET** |" in page
    assert "python benchmarks/run.py --mode full --report docs/performance.md" in page
    assert "`test_sync[timed]`" in page


def test_a_small_real_run_feeds_the_guard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "real.json"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCHMARKS),
         "--benchmark-only", "--benchmark-enable", f"--benchmark-json={results}",
         "-p", "no:cacheprovider", "--bench-mode=smoke", "-q",
         "-k", "test_sync and (bare or timed)"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    loose = tmp_path / "loose.toml"
    loose.write_text(
        "[[limit]]\n"
        'id = "timed_vs_floor"\n'
        'title = "smoke"\n'
        'subject = "test_sync[timed]"\n'
        'reference = "test_sync[floor_timed]"\n'
        'baseline = "test_sync[bare]"\n'
        "short = 1000\n",
        encoding="utf-8",
    )
    status = guard.main([str(results), "--thresholds", str(loose)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "ok    timed_vs_floor:" in out
    document = json.loads(results.read_text(encoding="utf-8"))
    run = document["flext_bench"]
    assert run["mode"] == "smoke"
    assert {b["extra_info"]["calls_per_round"] for b in document["benchmarks"]} == {1000}

    # Every benchmark thresholds.toml names exists in the suite (collected before -k):
    # a renamed test would otherwise only show up as "missing" in CI.
    defined = {guard.benchmark_key(name) for name in run["collected"]}
    limits, _ = guard.load_thresholds(guard.DEFAULT_THRESHOLDS)
    for limit in limits:
        for name in guard._needed(limit):
            assert name in defined, f"{limit.id} names {name}: not defined by the suite"
