"""Reports: JSON round trip, merge of several files (merged sketches), the terminal table."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import (
    Report,
    StatsSink,
    load_report,
    merge_reports,
    render_table,
    report_from_stats,
    write_report,
)
from flext_ctx_aspects.sinks.report import format_duration

PINNED = ("name", "count", "errors", "total_ns", "p50_ns", "p99_ns", "max_ns")


def record(name: str, duration_ns: int, status: str = "ok") -> OperationRecord:
    return OperationRecord.make(name, duration_ns=duration_ns, status=status)  # type: ignore[arg-type]


def filled(seed: int, names: tuple[str, ...] = ("a", "b")) -> tuple[StatsSink, list[int]]:
    rng = random.Random(seed)
    sink = StatsSink()
    values = []
    for _ in range(2000):
        value = int(rng.lognormvariate(10 + seed, 1.5)) + 1
        values.append(value)
        sink.emit(record(rng.choice(names), value, "error" if value % 11 == 0 else "ok"))
    return sink, values


def test_json_round_trip_through_a_file(tmp_path: Path) -> None:
    sink, _ = filled(1)
    report = report_from_stats(sink)
    path = tmp_path / "report.json"
    write_report(report, path)
    data = json.loads(path.read_text())
    assert [op["name"] for op in data["operations"]] == [s.name for s in report.operations()]
    for operation in data["operations"]:
        for key in PINNED:
            assert key in operation
        assert "sketch" in operation
    loaded = load_report(path)
    assert loaded.operations() == report.operations()
    assert loaded.sources == (str(path),)
    assert Report.from_json(sink.to_json()).operations() == report.operations()


def test_merge_of_several_files_equals_one_sink_of_everything(tmp_path: Path) -> None:
    union = StatsSink()
    paths = []
    every: list[int] = []
    for seed in range(4):
        sink, values = filled(seed)
        every.extend(values)
        union.merge(sink)
        path = tmp_path / f"worker-{seed}.json"
        write_report(report_from_stats(sink), path)
        paths.append(path)
    merged = merge_reports(load_report(p) for p in paths)
    assert merged.operations() == union.snapshot()
    assert merged.sources == tuple(str(p) for p in paths)
    # Merged percentiles come from the merged sketch: within 1% of the exact union values,
    # where an average of per-file p99s is far off (the seeds have different scales).
    a = merged.get("a")
    b = merged.get("b")
    assert a is not None
    assert b is not None
    assert a.count + b.count == len(every) == 8000
    exact_all = sorted(every)
    whole = merge_reports([Report({"all": d}) for d in report_from_stats(union).digests.values()])
    p99 = whole.get("all").p99_ns  # type: ignore[union-attr]
    want = exact_all[math.floor(0.99 * (len(exact_all) - 1))]
    assert abs(p99 - want) <= 0.01 * want + 0.5


def test_merged_reports_round_trip(tmp_path: Path) -> None:
    merged = merge_reports([report_from_stats(filled(s)[0]) for s in range(3)])
    write_report(merged, tmp_path / "m.json")
    assert load_report(tmp_path / "m.json").operations() == merged.operations()


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("{not json", "file"),
        ('{"format": "other/v9", "operations": []}', "format"),
        ('{"operations": 3}', "operations"),
        ("[1, 2]", "operations"),
        ('{"operations": [{"name": "a", "count": 1}]}', "errors"),
    ],
)
def test_bad_files_are_refused_with_file_and_key(tmp_path: Path, content: str, key: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=key) as info:
        load_report(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="file"):
        load_report(tmp_path / "missing.json")


def test_table_fits_80_columns_sorted_by_total_and_plain_without_color() -> None:
    sink = StatsSink()
    for _ in range(3):
        sink.emit(record("fast", 1_000))
    sink.emit(record("package.module.Class.a_rather_long_method_name_indeed", 5_000_000_000))
    sink.emit(record("middle", 2_000_000, "error"))
    table = render_table(report_from_stats(sink), color=False)
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split()[:2] == ["operation", "count"]
    assert lines[1].startswith("…")
    assert "method_name_indeed" in lines[1]
    assert lines[2].startswith("middle")
    assert lines[3].startswith("fast")
    assert "\x1b" not in table
    assert lines[-1].startswith("3 operations, 5 calls, 1 errors")
    wide = render_table(report_from_stats(sink), width=120, color=False)
    assert "package.module.Class.a_rather_long_method_name_indeed" in wide


def test_table_colour_only_when_asked_or_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = StatsSink()
    sink.emit(record("x", 10, "error"))
    report = report_from_stats(sink)
    assert "\x1b[31m" in render_table(report, color=True)
    assert "\x1b" not in render_table(report)  # pytest's stdout is not a terminal

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdout", Tty())
    assert "\x1b[1m" in render_table(report)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in render_table(report)
    with pytest.raises(ConfigError, match="width"):
        render_table(report, width=40)


def test_durations_fit_their_column() -> None:
    samples = [0, 999, 1_000, 12_345, 999_999, 1_500_000, 123_456_789, 5e9, 9e13]
    texts = [format_duration(ns) for ns in samples]
    assert texts[:4] == ["0ns", "999ns", "1us", "12.3us"]
    assert all(len(text) <= 8 for text in texts)


def test_an_empty_report() -> None:
    table = render_table(Report(), color=False)
    assert table.splitlines()[-1].startswith("0 operations")
    assert Report().to_json() == {"format": "flext-ctx-aspects/stats-v1", "operations": []}
