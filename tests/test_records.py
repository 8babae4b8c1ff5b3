"""Operation records, the sink registry and the built-in sinks."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone

import pytest

from flext_ctx_aspects import FlextContext, timed
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import (
    LoggingSink,
    StatsSink,
    add_sink,
    default_stats,
    registered_sinks,
    remove_sink,
)
from flext_ctx_aspects.testing import RecordingSink, capture_operations


@timed(name="unit")
def unit(fail: bool = False) -> str:
    if fail:
        raise ValueError("no")
    return "ok"


def test_record_fields_and_immutability() -> None:
    with (
        FlextContext.Correlation.new_correlation("c-1"),
        FlextContext.Service.service_context("svc", "1.0", "prod"),
        FlextContext.Request.request_context(user_id="u", operation_name="op", request_id="r"),
        capture_operations() as ops,
    ):
        before = datetime.now(timezone.utc)
        unit()
    (record,) = ops
    assert isinstance(record, OperationRecord)
    assert record.name == "unit"
    assert before.replace(microsecond=0) <= record.start_time <= datetime.now(timezone.utc)
    assert record.start_time.tzinfo is timezone.utc
    assert record.duration_ns > 0
    assert record.duration_seconds == record.duration_ns / 1e9
    assert (record.status, record.error_type) == ("ok", None)
    assert record.ok
    assert (record.correlation_id, record.parent_correlation_id) == ("c-1", None)
    assert (record.service_name, record.service_version, record.service_environment) == (
        "svc",
        "1.0",
        "prod",
    )
    assert (record.request_id, record.user_id, record.operation_name) == ("r", "u", "op")
    assert record.trace_id is not None
    assert len(record.trace_id) == 32
    assert record.kind == "function"
    with pytest.raises(AttributeError):
        record.name = "x"  # type: ignore[misc]
    assert OperationRecord.__slots__ == ()
    assert not dataclasses.is_dataclass(record)
    data = record.to_dict()
    assert data["start_time"] == record.start_time.isoformat()
    assert data["name"] == "unit"


def test_add_sink_handle_and_registry() -> None:
    sink = RecordingSink()
    handle = add_sink(sink)
    assert sink in registered_sinks()
    add_sink(sink)  # idempotent
    assert registered_sinks().count(sink) == 1
    unit()
    handle()
    unit()
    assert [r.name for r in sink.records] == ["unit"]
    with add_sink(sink):
        unit()
    assert len(sink.records) == 2
    remove_sink(sink)  # unknown sinks are ignored
    with pytest.raises(TypeError, match="emit"):
        add_sink(object())  # type: ignore[arg-type]


def test_stats_sink_counts_errors_and_percentiles() -> None:
    stats = StatsSink()
    with add_sink(stats):
        for _ in range(99):
            unit()
        with pytest.raises(ValueError):
            unit(fail=True)
    summary = stats.get("unit")
    assert summary is not None
    assert (summary.count, summary.errors) == (100, 1)
    assert summary.min_ns <= summary.p50_ns <= summary.p90_ns <= summary.p99_ns <= summary.max_ns
    assert summary.total_ns >= summary.max_ns
    report = stats.report()
    (operation,) = report["operations"]
    for key in ("name", "count", "errors", "total_ns", "p50_ns", "p99_ns", "max_ns"):
        assert key in operation
    assert stats.get("missing") is None
    stats.reset()
    assert stats.snapshot() == []


def test_logging_sink_logs_one_line_per_operation(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="flext_ctx_aspects.operations"),
        add_sink(LoggingSink(level=logging.DEBUG)),
    ):
        unit()
        with pytest.raises(ValueError):
            unit(fail=True)
    lines = [r for r in caplog.records if r.name == "flext_ctx_aspects.operations"]
    assert [r.levelno for r in lines] == [logging.DEBUG, logging.WARNING]
    assert "operation unit ok" in lines[0].getMessage()
    assert "error=ValueError" in lines[1].getMessage()
    assert lines[0].operation.name == "unit"  # type: ignore[attr-defined]


def test_settings_switch_the_builtin_sinks() -> None:
    FlextContext.create_environment_context_config("staging")
    stats = default_stats()
    stats.reset()
    assert stats in registered_sinks()
    unit()
    assert stats.get("unit") is not None
    FlextContext.create_environment_context_config("test")
    assert stats not in registered_sinks()
    FlextContext.optimize_context_performance({"sinks": ["stats", "logging"]})
    assert len(registered_sinks()) == 2
    FlextContext.optimize_context_performance({"performance_level": "maximum"})
    assert registered_sinks() == ()
