"""The one built-in field table and what derives from it."""

from __future__ import annotations

import ast
import inspect
import pickle

import pytest

from flext_ctx_aspects import FlextConstants, FlextContext, _state, records, timed
from flext_ctx_aspects.testing import capture_operations


def _record_annotations() -> set[str]:
    tree = ast.parse(inspect.getsource(records))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OperationRecord"]
    (block,) = [n for n in cls.body if isinstance(n, ast.If)]
    return {n.target.id for n in block.body if isinstance(n, ast.AnnAssign)}  # type: ignore[union-attr]


def test_the_typed_record_attributes_are_the_table_fields() -> None:
    # The TYPE_CHECKING list in records.py is for type checkers only; the runtime attributes
    # come from the table. This keeps the two the same when a row is added.
    own = {"name", "start_time_ns", "duration_ns", "status", "error_type", "metadata",
           "body_duration_ns", "kind", "context"}  # fmt: skip
    table = {f.name for f in _state.PUBLIC_FIELDS} - {"trace_id"}
    assert _record_annotations() == own | table


def test_every_public_field_is_a_record_attribute_and_a_full_context_key() -> None:
    @timed(name="op")
    def op() -> dict[str, object]:
        return FlextContext.Serialization.get_full_context()

    with (
        FlextContext.Service.service_context("svc", "1.2", "prod"),
        FlextContext.Request.request_context(user_id="u-1", operation_name="o", request_id="r-1"),
        FlextContext.Correlation.new_correlation() as cid,
        capture_operations() as ops,
    ):
        full = op()
    (record,) = ops
    for field in _state.PUBLIC_FIELDS:
        assert field.name in full
        assert hasattr(record, field.name)
        if field.validator is not None:
            assert getattr(record, field.name) == full[field.name], field.name
    assert record.correlation_id == cid
    assert record.to_dict()["service_version"] == "1.2"


def test_headers_and_summary_come_from_the_table() -> None:
    assert _state.FIELDS[_state.CORRELATION_ID].header == FlextConstants.Headers.CORRELATION_ID
    with FlextContext.Service.service_context("svc"), FlextContext.Correlation.new_correlation():
        sent = FlextContext.Serialization.get_correlation_context()
        summary = FlextContext.Utilities.get_context_summary()
    assert {"X-Correlation-Id", "X-Service-Name"} <= set(sent)
    assert "X-User-Id" not in sent  # outbound=False in the table
    labels = [f.summary for f in _state.FIELDS if f.summary]
    assert summary.startswith("FlextContext(correlation=")
    assert "service=svc" in summary
    assert labels == ["correlation", "service", "user"]


def test_full_context_trace_id_is_the_w3c_trace_id_sent_downstream() -> None:
    with FlextContext.Correlation.new_correlation("order-42"):  # not a W3C trace id
        full = FlextContext.Serialization.get_full_context()
        traceparent = FlextContext.Serialization.get_correlation_context()["traceparent"]
    assert full["trace_id"] == traceparent.split("-")[1]
    assert full["trace_id"] != "order-42"
    assert len(full["trace_id"]) == 32


def test_records_carry_the_trace_and_span_ids_of_the_outbound_traceparent() -> None:
    @timed(name="call")
    def call() -> str:
        return FlextContext.Serialization.get_correlation_context()["traceparent"]

    with FlextContext.Correlation.new_correlation("order-7"), capture_operations() as ops:
        traceparent = call()
    (record,) = ops
    _, trace_id, span_id, _ = traceparent.split("-")
    assert (record.trace_id, record.span_id) == (trace_id, span_id)


def test_records_are_immutable_snapshots_that_pickle() -> None:
    @timed(name="op")
    def op() -> None:
        FlextContext.Performance.add_operation_metadata("k", 1)

    with (
        FlextContext.Request.request_context(metadata={"a": 1}),
        capture_operations() as ops,
    ):
        op()
        live = FlextContext.Request.get_request_metadata()
    (record,) = ops
    try:
        record.request_metadata["a"] = 2  # type: ignore[index]
    except TypeError:
        pass
    else:  # pragma: no cover - the assertion below reports it
        raise AssertionError("request_metadata is writable")
    assert live == {"a": 1}
    # Dicts, as the design says and JSON encoders want, that refuse changes.
    assert isinstance(record.metadata, dict)
    assert isinstance(record.request_metadata, dict)
    with pytest.raises(TypeError):
        record.metadata["k"] = 2  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(record))
    assert copy == record
    assert copy.metadata == {"k": 1}
    assert type(copy) is records.OperationRecord
