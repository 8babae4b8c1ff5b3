from __future__ import annotations

import pytest

from flext_ctx_aspects import FlextResult
from flext_ctx_aspects.errors import ResultError


def test_ok_holds_its_value() -> None:
    result = FlextResult[dict].ok({"a": 1})
    assert result.success
    assert result.is_success
    assert not result.is_failure
    assert result.value == {"a": 1}
    assert result.error is None
    assert bool(result)


def test_fail_holds_its_error_and_refuses_value() -> None:
    result = FlextResult[int].fail("ETL pipeline failed: boom")
    assert not result.success
    assert result.is_failure
    assert result.error == "ETL pipeline failed: boom"
    assert not result
    with pytest.raises(ResultError, match="ETL pipeline failed: boom") as raised:
        _ = result.value
    assert raised.value.error == "ETL pipeline failed: boom"
    assert isinstance(raised.value, RuntimeError)


def test_fail_requires_a_message() -> None:
    with pytest.raises(TypeError, match="str error message"):
        FlextResult[int].fail(42)  # type: ignore[arg-type]


def test_value_or_map_and_equality() -> None:
    assert FlextResult[int].fail("x").value_or(7) == 7
    assert FlextResult.ok(2).map(lambda v: v * 3) == FlextResult.ok(6)
    failed = FlextResult[int].fail("nope").map(lambda v: v * 3)
    assert failed.is_failure
    assert failed.error == "nope"
    assert repr(FlextResult.ok(1)) == "FlextResult.ok(1)"
    assert repr(FlextResult[int].fail("e")) == "FlextResult.fail('e')"
    assert FlextResult.ok(1) != FlextResult.ok(2)
    assert hash(FlextResult[int].fail("a")) == hash(FlextResult[int].fail("a"))
