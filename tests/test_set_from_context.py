"""Untrusted input to set_from_context: never raises, never stores a control character."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flext_ctx_aspects import FlextContext, _state

HEADER_NAMES = [
    "X-Correlation-Id",
    "x-parent-correlation-id",
    "X-SERVICE-NAME",
    "X-Service-Version",
    "X-Request-Id",
    "X-Operation-Name",
    "X-User-Id",
    "traceparent",
    "tracestate",
    "baggage",
    "correlation_id",
    "request_metadata",
    "X-Unknown",
]
HOSTILE_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="ascii")),
    st.sampled_from(["ok-id", "a\r\nSet-Cookie: x=1", "\x00", "é", "id\x7f", " padded ", ""]),
)
VALUES = st.one_of(
    HOSTILE_TEXT,
    st.binary(),
    st.none(),
    st.integers(),
    st.lists(HOSTILE_TEXT, max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.text(), st.integers()), max_size=3),
)
NAMES = st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=20), st.binary(max_size=20))
CARRIERS = st.one_of(
    st.dictionaries(NAMES, VALUES, max_size=8),
    st.lists(st.tuples(NAMES, VALUES), max_size=8),
    st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=64)), max_size=8),
)


def stored_strings() -> list[str]:
    """Every string now stored in the context, nested ones included."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)

    walk(_state.get())
    return found


def assert_clean() -> None:
    for value in stored_strings():
        assert all(ch.isprintable() for ch in value), f"control character stored: {value!r}"
        assert len(value) <= 8192


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(carrier=CARRIERS, strict=st.booleans(), trusted=st.booleans())
@example(carrier={"X-Correlation-Id": "a" * 100_000}, strict=False, trusted=False)
@example(carrier={"X-Correlation-Id": "x\r\ny"}, strict=False, trusted=False)
@example(carrier={b"x-correlation-id": b"\xff\xfe"}, strict=True, trusted=False)
@example(carrier=[("X-Request-Id", "a"), ("x-request-id", "b")], strict=False, trusted=False)
@example(carrier={"X-User-Id": ["u1", "u1"]}, strict=False, trusted=True)
@example(carrier={"baggage": "k=%0Aevil"}, strict=False, trusted=False)
def test_never_raises_and_never_stores_control_characters(
    carrier: Any, strict: bool, trusted: bool
) -> None:
    try:
        result = FlextContext.Serialization.set_from_context(
            carrier, strict=strict, trusted=trusted
        )
        assert result.success or result.is_failure
        assert_clean()
        headers = FlextContext.Serialization.get_correlation_context()
        for name, value in headers.items():
            assert name.isprintable()
            assert value.isprintable()
    finally:
        FlextContext.Utilities.clear_context()


@pytest.mark.parametrize(
    "carrier",
    [
        None,
        42,
        "X-Correlation-Id: abc",
        b"raw",
        [1, 2, 3],
        [("only-one",)],
        {"X-Correlation-Id": None},
        {"X-Correlation-Id": ["a", "b"]},
        {"X-Correlation-Id": 12345},
        {"request_metadata": "not a dict"},
    ],
    ids=repr,
)
def test_malformed_carriers_are_dropped_with_a_warning(
    carrier: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flext_ctx_aspects"):
        result = FlextContext.Serialization.set_from_context(carrier)
    assert result.success
    assert _state.get() == _state.EMPTY


def test_warning_names_the_field_but_never_the_value(caplog: pytest.LogCaptureFixture) -> None:
    hostile = "abc\r\nX-Injected: yes"
    with caplog.at_level(logging.WARNING, logger="flext_ctx_aspects"):
        FlextContext.Serialization.set_from_context({"X-Correlation-Id": hostile})
    (record,) = [r for r in caplog.records if r.name == "flext_ctx_aspects"]
    message = record.getMessage()
    assert "correlation_id" in message
    assert f"length {len(hostile)}" in message
    assert "X-Injected" not in message
    assert "abc" not in message


def test_repeated_identical_values_are_accepted_conflicting_ones_dropped() -> None:
    FlextContext.Serialization.set_from_context([("X-Request-Id", "r1"), ("x-request-id", "r1")])
    assert FlextContext.Request.get_request_id() == "r1"
    FlextContext.Utilities.clear_context()
    FlextContext.Serialization.set_from_context([("X-Request-Id", "r1"), ("x-request-id", "r2")])
    assert FlextContext.Request.get_request_id() is None


def test_oversized_and_non_ascii_values_are_dropped() -> None:
    result = FlextContext.Serialization.set_from_context(
        {"X-Correlation-Id": "a" * 100_000, "X-Service-Name": "sérvice", "X-Request-Id": "ok"}
    )
    assert result.value == {"request_id": "ok", "correlation_id": "ok"}
    assert FlextContext.Service.get_service_name() is None
    FlextContext.Utilities.clear_context()


def test_request_metadata_from_a_full_context_is_sanitised() -> None:
    FlextContext.Serialization.set_from_context(
        {
            "request_metadata": {
                "ok": "fine",
                "n": 3,
                "bad": "line\nbreak",
                "nested": {"no": "dicts"},
                "huge": "x" * 5000,
                7: "non-str key",
            }
        }
    )
    assert FlextContext.Request.get_request_metadata() == {"ok": "fine", "n": 3}
    FlextContext.Utilities.clear_context()
