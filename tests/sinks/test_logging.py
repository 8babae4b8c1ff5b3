"""Context fields on log records: the filter, the setup one-liner, LoggingSink, structlog."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog

try:
    from pythonjsonlogger.json import JsonFormatter
except ImportError:  # python-json-logger < 3
    from pythonjsonlogger.jsonlogger import JsonFormatter  # type: ignore[no-redef]

from flext_ctx_aspects import _state, service, timed, with_correlation
from flext_ctx_aspects.facade import FlextContext
from flext_ctx_aspects.integrations.logging import (
    LOG_FIELDS,
    LOG_FORMAT,
    ContextFilter,
    enable_log_context,
)
from flext_ctx_aspects.integrations.structlog import ContextFields, add_context_fields
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import LoggingSink, add_sink
from flext_ctx_aspects.sinks._logfields import escape

HOSTILE = "abc\r\n2026-01-01 INFO root [admin svc] forged line\x1b[31m\u2028x\\"


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(correlation_id)s|%(service_name)s|%(message)s"))
    logger = logging.getLogger(f"test.sinks.logging.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    undo = enable_log_context(logger)
    yield logger, stream
    undo()
    logger.removeHandler(handler)


def test_unset_context_reads_dash_not_none(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    logger.info("hello")
    assert stream.getvalue() == "-|-|hello\n"


def test_fields_follow_the_context(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = stream_logger
    with (
        FlextContext.Correlation.new_correlation("cid-1"),
        FlextContext.Service.service_context("orders", "2"),
    ):
        logger.info("inside")
    logger.info("outside")
    assert stream.getvalue().splitlines() == ["cid-1|orders|inside", "-|-|outside"]


def test_every_field_is_set_and_extra_wins() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.correlation_id = "mine"
    with FlextContext.Request.request_context(user_id="u1", operation_name="op"):
        ContextFilter().filter(record)
    assert record.correlation_id == "mine"
    assert record.user_id == "u1"
    assert record.operation_name == "op"
    assert all(hasattr(record, name) for name in LOG_FIELDS)
    assert record.request_id not in (None, "-")


def test_propagated_records_through_root_handlers_and_the_undo_handle() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with enable_log_context(), FlextContext.Correlation.new_correlation("cid-root"):
            logging.getLogger("some.child").warning("propagated")
        assert "[cid-root -] propagated" in stream.getvalue()
        assert not handler.filters
    finally:
        root.removeHandler(handler)


def test_python_json_logger_gets_the_fields_as_keys() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(message)s %(correlation_id)s"))
    logger = logging.getLogger("test.sinks.json")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        with enable_log_context(logger):

            @with_correlation
            @service("billing", "3")
            def work() -> None:
                logger.warning("json line")

            work()
        data = json.loads(stream.getvalue())
        assert data["message"] == "json line"
        assert data["service_name"] == "billing"
        assert data["service_version"] == "3"
        assert len(data["correlation_id"]) > 8
        assert data["user_id"] == "-"
        assert len(data["trace_id"]) == 32
    finally:
        logger.removeHandler(handler)


def test_log_lines_carry_their_own_context_in_real_threads(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    barrier = threading.Barrier(16)

    def work(index: int) -> None:
        with FlextContext.Correlation.new_correlation(f"t{index}"):
            barrier.wait()
            for step in range(50):
                logger.info("t%d step %d", index, step)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 800
    for line in lines:
        cid, _service, message = line.split("|")
        assert message.startswith(cid + " step"), line


def test_log_lines_carry_their_own_context_in_many_asyncio_tasks(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger

    @with_correlation
    async def task(index: int) -> None:
        cid = FlextContext.Correlation.get_correlation_id()
        for step in range(5):
            await asyncio.sleep(0)
            logger.info("%s %d %d", cid, index, step)

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(300)))

    asyncio.run(main())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1500
    seen = set()
    for line in lines:
        cid, _service, message = line.split("|")
        assert message.split()[0] == cid
        seen.add(cid)
    assert len(seen) == 300


def test_hostile_ids_never_forge_a_log_line(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    # Values the validating setters refuse, placed in the context directly: the log path
    # must be safe on its own.
    token = _state.push(_state.with_changes(_state.get(), {
        _state.CORRELATION_ID: HOSTILE, _state.SERVICE_NAME: "svc\nx"}))  # fmt: skip
    try:
        logger.info("one")
    finally:
        _state.pop(token)
    (line,) = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line.startswith("abc\\x0d\\x0a2026-01-01")
    assert "svc\\x0ax|one" in line


def test_escape_is_injective_on_backslashes() -> None:
    assert escape("a\\x0ab") != escape("a\nb")
    assert escape("plain-id.1") == "plain-id.1"
    assert escape(3) == "3"


def _record(**changes: object) -> OperationRecord:
    values: dict[str, object] = {
        "duration_ns": 2_500_000,
        "correlation_id": "cid",
        "parent_correlation_id": "parent",
        "service_name": "svc",
        "service_version": "1",
        "request_id": "req",
        "user_id": "u",
        "operation_name": "opn",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        **changes,
    }
    name = str(values.pop("name", "op"))
    return OperationRecord.make(name, **values)  # type: ignore[arg-type]


def test_logging_sink_writes_named_fields_and_escapes(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingSink()
    with caplog.at_level(logging.INFO, logger="flext_ctx_aspects.operations"):
        sink.emit(_record())
        sink.emit(
            _record(name="evil\nop", correlation_id=HOSTILE, status="error", error_type="E\r")
        )
    ok, bad = caplog.records
    assert ok.correlation_id == "cid"  # type: ignore[attr-defined]
    assert ok.parent_correlation_id == "parent"  # type: ignore[attr-defined]
    assert ok.trace_id == "0af7651916cd43dd8448eb211c80319c"  # type: ignore[attr-defined]
    assert (ok.timed_name, ok.status, ok.duration_ms, ok.kind) == ("op", "ok", 2.5, "function")  # type: ignore[attr-defined]
    assert ok.getMessage() == "operation op ok 2.500 ms correlation=cid service=svc"
    assert bad.levelno == logging.WARNING
    message = bad.getMessage()
    assert "\n" not in message
    assert "\r" not in message
    assert message.startswith("operation evil\\x0aop error")
    assert "\n" not in bad.correlation_id  # type: ignore[attr-defined]


def test_logging_sink_fields_survive_the_context_filter(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    LoggingSink(logger).emit(_record())  # emitted with no context set, e.g. on a flusher
    assert stream.getvalue().startswith("cid|svc|operation op ok")


def test_logging_sink_with_timed(caplog: pytest.LogCaptureFixture) -> None:
    @timed(name="timed.op")
    def work() -> None: ...

    with (
        caplog.at_level(logging.INFO, logger="flext_ctx_aspects.operations"),
        add_sink(LoggingSink()),
        FlextContext.Correlation.new_correlation("c-7"),
    ):
        work()
    (line,) = caplog.records
    assert line.correlation_id == "c-7"  # type: ignore[attr-defined]


def test_structlog_processor_merges_the_fields() -> None:
    captured: list[dict[str, object]] = []

    def capture(_logger: object, _name: str, event: dict[str, object]) -> dict[str, object]:
        captured.append(dict(event))
        raise structlog.DropEvent

    log = structlog.wrap_logger(None, processors=[add_context_fields, capture])
    with FlextContext.Correlation.new_correlation("s-1"):
        log.info("hi", user_id="explicit")
    log.info("bare")
    inside, outside = captured
    assert inside["correlation_id"] == "s-1"
    assert inside["user_id"] == "explicit"
    assert inside["service_name"] == "-"
    assert outside["correlation_id"] == "-"
    quiet = ContextFields(missing=None)({}, "info", {"event": "x"})
    assert quiet == {"event": "x"}


def test_structlog_integration_without_structlog_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['structlog'] = None\n"
        "try:\n    import flext_ctx_aspects.integrations.structlog\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "flext-ctx-aspects[structlog]" in out.stdout
