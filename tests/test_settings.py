from __future__ import annotations

import pytest

from flext_ctx_aspects import FlextContext, Settings, current_settings, timed
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.settings import settings_for_environment, tuned_settings
from flext_ctx_aspects.testing import capture_operations


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"min_duration_ms": -1}, "min_duration_ms"),
        ({"sinks": ("stats", "kafka")}, "sinks"),
        ({"correlation_sources": ("x-forwarded-for",)}, "correlation_sources"),
        ({"performance_level": "ludicrous"}, "performance_level"),
        ({"max_concurrent_contexts": 0}, "max_concurrent_contexts"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"context_cache_size": 0}, "context_cache_size"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_settings_name_the_key_and_expectation(changes: dict, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(**changes)
    assert raised.value.key == key
    assert f"`{key}`" in str(raised.value)
    assert "must be" in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_unknown_environment_error_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="development, staging, production, test"):
        settings_for_environment("qa")


def test_tuning_checks_types() -> None:
    with pytest.raises(ConfigError, match="context_cache_size"):
        tuned_settings(Settings(), {"context_cache_size": "big"})
    with pytest.raises(ConfigError, match="enabled"):
        tuned_settings(Settings(), {"enabled": "yes"})
    tuned = tuned_settings(Settings(), {"min_duration_ms": 2, "enabled": False})
    assert tuned.min_duration_ms == 2
    assert not tuned.enabled


def test_the_runtime_switch_follows_settings() -> None:
    @timed
    def body() -> None:
        return None

    FlextContext.optimize_context_performance({"enabled": False})
    with capture_operations() as ops:
        body()
    assert ops == []
    FlextContext.optimize_context_performance({"enabled": True})
    with capture_operations() as ops:
        body()
    assert len(ops) == 1


def test_settings_as_dict() -> None:
    data = current_settings().as_dict()
    assert data["environment"] == "development"
    assert data["id_generator"].endswith("generate_id")
