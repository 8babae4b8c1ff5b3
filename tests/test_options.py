"""Issue 10, items 1-3: settings and decorator options are type-checked when given.

Every ``Settings`` field refuses a value of the wrong type with a ``ConfigError`` naming the
key; ``apply_settings`` refuses what is not a ``Settings`` before anything changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flext_ctx_aspects import FlextContext, _state, timed
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.propagation import extract
from flext_ctx_aspects.settings import Settings, apply_settings, current_settings

# Values that are never a bool, a number, a name tuple... (each field picks what is wrong).
_TEXT = st.text(max_size=8)
_NOT_BOOL = st.one_of(
    st.sampled_from(["false", "False", "no", "0", "true", ""]),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.lists(st.booleans(), max_size=2),
)
_NOT_NUMBER = st.one_of(
    st.sampled_from(["0.5", "1", ""]), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)
)
_NOT_INT = st.one_of(
    st.sampled_from(["8", ""]),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
)
_NOT_NAMES = st.one_of(
    _TEXT.filter(bool),  # a bare str is refused, not read as one-letter names
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(_TEXT, _TEXT, min_size=1, max_size=2),
)
_NOT_STR = st.one_of(st.integers(), st.booleans(), st.none(), st.lists(_TEXT, max_size=2))
# Only the type is checked here: what a callable returns is main's policy (checked per id).
_NOT_GENERATOR = st.one_of(st.integers(), _TEXT, st.none(), st.lists(st.integers(), max_size=2))

WRONG: dict[str, st.SearchStrategy[Any]] = {
    "environment": _NOT_STR,
    "strict_validation": _NOT_BOOL,
    "trust_inbound_user_id": _NOT_BOOL,
    "correlation_sources": _NOT_NAMES,
    "id_generator": _NOT_GENERATOR,
    "context_cache_size": _NOT_INT,
    "sample_rate": _NOT_NUMBER,
    "min_duration_ms": _NOT_NUMBER,
    "sinks": _NOT_NAMES,
    "log_level": _NOT_STR,
    "measure_generator_body": _NOT_BOOL,
    "performance_level": _NOT_STR,
    "max_concurrent_contexts": _NOT_INT,
    "allowed_destinations": _NOT_NAMES,
    "enabled": _NOT_BOOL,
}


def test_every_settings_field_has_a_wrong_value_strategy() -> None:
    assert set(WRONG) == set(Settings.__dataclass_fields__)


@pytest.mark.parametrize("key", sorted(WRONG))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_wrong_typed_settings_are_refused_naming_the_key(key: str, data: st.DataObject) -> None:
    value = data.draw(WRONG[key], label=key)
    with pytest.raises(ConfigError) as caught:
        Settings(**{key: value})
    assert caught.value.key == key
    assert f"`{key}`" in str(caught.value)
    assert caught.value.expected in str(caught.value)


def test_a_string_false_never_trusts_an_inbound_user_id() -> None:
    # The security hole: "false" is truthy, so X-User-Id: admin used to be accepted.
    with pytest.raises(ConfigError, match=r"`trust_inbound_user_id` in Settings must be a bool"):
        Settings(trust_inbound_user_id="false")  # type: ignore[arg-type]
    assert extract({"X-User-Id": "admin"}).build_snapshot()[_state.USER_ID] is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strict_validation": "false"}, "got 'false', a str"),
        ({"enabled": 0}, "got 0, an int"),
        ({"sample_rate": "0.5"}, "got '0.5', a str"),
        ({"sinks": "stats"}, "got a single str 'stats'"),
        ({"id_generator": 42}, "got 42, an int"),
    ],
)
def test_the_reported_cases_name_key_expectation_and_value(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**changes)
    assert message in str(caught.value)


def test_lists_are_accepted_for_tuple_fields_and_stored_as_tuples() -> None:
    made = Settings(sinks=["stats"], allowed_destinations=["*.internal"])  # type: ignore[arg-type]
    assert made.sinks == ("stats",)
    assert made.allowed_destinations == ("*.internal",)
    hash(made)


@pytest.mark.parametrize("wrong", [{"sample_rate": 0.5}, "production", None, 3])
def test_apply_settings_refuses_a_non_settings_before_changing_anything(wrong: object) -> None:
    before = current_settings()
    with pytest.raises(TypeError, match=r"apply_settings\(\) expects a Settings instance"):
        apply_settings(wrong)  # type: ignore[arg-type]
    assert current_settings() is before
    # Later settings calls still work.
    previous = apply_settings(Settings(sample_rate=0.5))
    try:
        assert current_settings().sample_rate == 0.5
    finally:
        apply_settings(previous)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"min_duration_ms": "1"}, "min_duration_ms"),
        ({"min_duration_ms": True}, "min_duration_ms"),
        ({"min_duration_ms": -1}, "min_duration_ms"),
        ({"keep_errors": "no"}, "keep_errors"),
        ({"measure_body": 1}, "measure_body"),
        ({"enabled": "false"}, "enabled"),
    ],
)
def test_timed_options_are_refused_at_decoration(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        timed(**options)
    assert caught.value.key == key
    assert "@timed()" in str(caught.value)


def test_timed_accepts_a_positional_name() -> None:
    from flext_ctx_aspects.testing import capture_operations

    @timed("orders.create")
    def create() -> int:
        return 7

    with capture_operations() as ops:
        assert create() == 7
    assert [op.name for op in ops] == ["orders.create"]
    with pytest.raises(TypeError, match=r"@timed\(name='a'\)"):
        timed("a", name="b")  # type: ignore[call-overload]


def _message(call: Callable[[], object]) -> str:
    with pytest.raises((TypeError, ValueError)) as caught:
        call()
    return str(caught.value)


def test_bare_request_scope_says_it_needs_parentheses() -> None:
    def handle() -> None: ...

    from flext_ctx_aspects import request_scope, service

    text = _message(lambda: request_scope(handle))  # type: ignore[arg-type]
    assert "@request_scope needs parentheses: write @request_scope() above" in text
    assert "handle" in text
    text = _message(lambda: service(handle))  # type: ignore[arg-type]
    assert "@service needs parentheses" in text


def test_timed_above_property_says_to_put_it_below() -> None:
    def define() -> None:
        class Account:
            @timed  # type: ignore[prop-decorator]
            @property
            def balance(self) -> int:
                return 1

    text = _message(define)
    assert "@timed cannot wrap a property" in text
    assert "Account.balance" in text
    assert "below @property" in text


def test_an_unknown_environment_is_logged_once_and_still_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flext_ctx_aspects")
    before = current_settings()
    result = FlextContext.create_environment_context_config("prod")
    assert result.is_failure
    assert current_settings() is before
    lines = [r.getMessage() for r in caplog.records if "prod" in r.getMessage()]
    assert len(lines) == 1
    assert "must be one of development" in lines[0]
    assert "settings unchanged" in lines[0]
