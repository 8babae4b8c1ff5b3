"""Library settings: what the environment presets and ``optimize_context_performance`` change.

Settings are a frozen dataclass. `apply_settings` makes one instance current and pushes
each value to the machinery that reads it (validation, id generation, record filtering, the
built-in sinks, the runtime switch). Nothing is read from the environment at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from flext_ctx_aspects import _compile, _emit, _engine, _ids, _options, concurrency
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.propagation._policy import (
    CORRELATION_SOURCES,
    InboundDefaults,
    parse_destination_pattern,
    set_allowed_destinations,
    set_inbound_defaults,
)
from flext_ctx_aspects.sinks import _builtin

__all__ = [
    "ENVIRONMENT_PRESETS",
    "PERFORMANCE_KEYS",
    "Settings",
    "apply_settings",
    "current_settings",
    "settings_for_environment",
    "tuned_settings",
]

BUILTIN_SINKS: Final = ("stats", "logging")
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PATTERNS: Final = 'a tuple of host patterns (e.g. ("*.internal", "127.0.0.1:8080"))'
_set = object.__setattr__
PERFORMANCE_LEVELS: Final = ("standard", "high", "maximum")


@dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide behaviour of the library.

    Attributes:
        environment: Name of the preset these settings came from.
        strict_validation: Refuse a whole inbound context that has any invalid value
            (``extract`` raises ``InvalidValueError``; ``set_from_context`` applies nothing
            and returns a failure) instead of dropping the invalid values with a warning.
        trust_inbound_user_id: Accept a user id from inbound headers. Off by default: a
            client can put anything in a header.
        correlation_sources: Where an inbound correlation id is taken from, first found
            wins: ``x-correlation-id``, ``x-request-id``, ``traceparent`` (its trace id).
        id_generator: Makes new correlation and request ids.
        context_cache_size: Compiled context-update shapes kept by the engine (one per
            distinct stack of aspects; instrumenting a large package may need more).
        sample_rate: Fraction of traces whose operation records reach sinks (decided per
            correlation id, so a trace is kept or dropped whole). Errors are always kept.
        min_duration_ms: Operations faster than this many milliseconds are not recorded
            (errors always are).
        sinks: Built-in sinks switched on: ``"stats"`` (in-process statistics) and
            ``"logging"`` (one log line per operation).
        log_level: Level of the ``"logging"`` sink's lines.
        measure_generator_body: Measure the body time of every timed generator and async
            generator (as ``@timed(measure_body=True)`` does for one), read when each
            generator starts.
        performance_level: ``"standard"``, ``"high"`` (no logging sink) or ``"maximum"``
            (no built-in sinks at all: timing costs two clock reads).
        max_concurrent_contexts: Worker count of the context-carrying executor the library
            creates when none is given (``flext_ctx_aspects.concurrency``); None lets
            ``concurrent.futures`` decide.
        allowed_destinations: Host patterns that may receive the context on outbound calls
            (``flext_ctx_aspects.propagation``); empty sends it nowhere. See the
            propagation docs for the pattern forms.
        enabled: The runtime switch; False makes every aspect a pass-through.
    """

    environment: str = "development"
    strict_validation: bool = False
    trust_inbound_user_id: bool = False
    correlation_sources: tuple[str, ...] = CORRELATION_SOURCES
    id_generator: Callable[[], str] = _ids.generate_id
    context_cache_size: int = _compile.DEFAULT_CACHE_SIZE
    sample_rate: float = 1.0
    min_duration_ms: float = 0.0
    sinks: tuple[str, ...] = ()
    log_level: str = "INFO"
    measure_generator_body: bool = False
    performance_level: str = "standard"
    max_concurrent_contexts: int | None = None
    allowed_destinations: tuple[str, ...] = ()
    enabled: bool = True

    def __post_init__(self) -> None:
        # Every field is type-checked here, at construction, by the one options helper
        # (`_options`): a bool is a bool ("false" would be truthy), numbers are numbers, a
        # tuple of names is never a bare str. The message names the key, what was expected
        # and what was given.
        where = "Settings"
        _options.check_str(where, "environment", self.environment)
        _options.check_bool(where, "strict_validation", self.strict_validation)
        _options.check_bool(where, "trust_inbound_user_id", self.trust_inbound_user_id)
        _options.check_bool(where, "measure_generator_body", self.measure_generator_body)
        _options.check_bool(where, "enabled", self.enabled)
        _options.check_number(where, "sample_rate", self.sample_rate, low=0.0, high=1.0)
        _options.check_number(where, "min_duration_ms", self.min_duration_ms, low=0)
        _options.check_int(where, "context_cache_size", self.context_cache_size, low=1)
        _options.check_int(
            where, "max_concurrent_contexts", self.max_concurrent_contexts, low=1, optional=True
        )
        sinks = _options.check_names(
            where, "sinks", self.sinks, expected=f"a tuple of names from {BUILTIN_SINKS}"
        )
        unknown = [s for s in sinks if s not in BUILTIN_SINKS]
        if unknown:
            raise ConfigError(where, "sinks", f"a subset of {BUILTIN_SINKS}", repr(unknown[0]))
        sources = _options.check_names(
            where,
            "correlation_sources",
            self.correlation_sources,
            expected=f"a non-empty tuple of names from {CORRELATION_SOURCES}",
        )
        bad_sources = [s for s in sources if s not in CORRELATION_SOURCES]
        if bad_sources or not sources:
            raise ConfigError(
                where,
                "correlation_sources",
                f"a non-empty subset of {CORRELATION_SOURCES}",
                repr(bad_sources[0] if bad_sources else self.correlation_sources),
            )
        if self.performance_level not in PERFORMANCE_LEVELS:
            raise ConfigError(
                where,
                "performance_level",
                f"one of {PERFORMANCE_LEVELS}",
                _options.describe(self.performance_level),
            )
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(
                where, "log_level", f"one of {_LOG_LEVELS}", _options.describe(self.log_level)
            )
        destinations = _options.check_names(
            where, "allowed_destinations", self.allowed_destinations, expected=_PATTERNS
        )
        for pattern in destinations:
            try:
                parse_destination_pattern(pattern)
            except ConfigError as error:
                raise ConfigError(
                    where,
                    "allowed_destinations",
                    f"host patterns: {error.expected}",
                    f"{error.got} in the list",
                ) from None
        # Lists are accepted for the tuple fields (as configuration files give them) and
        # stored as tuples, so settings stay hashable and immutable.
        _set(self, "sinks", sinks)
        _set(self, "correlation_sources", sources)
        _set(self, "allowed_destinations", destinations)
        _options.check_callable(
            where, "id_generator", self.id_generator, expected="a callable returning an id str"
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict (the id generator by qualified name)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        generator = self.id_generator
        data["id_generator"] = f"{generator.__module__}.{generator.__qualname__}"
        return data


ENVIRONMENT_PRESETS: Final[Mapping[str, Settings]] = {
    # Everything recorded and logged; lenient, so local experiments never get refused.
    "development": Settings(
        environment="development", sinks=("stats", "logging"), log_level="DEBUG"
    ),
    # Strict: a test that sends a malformed header should see it refused, not silently fixed.
    "test": Settings(environment="test", strict_validation=True),
    "staging": Settings(environment="staging", sinks=("stats",)),
    # Strict validation of inbound values; statistics on; operations under 100 µs not
    # recorded unless they fail.
    "production": Settings(
        environment="production",
        strict_validation=True,
        sinks=("stats",),
        min_duration_ms=0.1,
    ),
}


def settings_for_environment(environment: str) -> Settings:
    """Return the preset for ``environment``.

    Raises:
        ConfigError: Unknown environment; the message lists the valid ones.
    """
    preset = ENVIRONMENT_PRESETS.get(environment) if isinstance(environment, str) else None
    if preset is None:
        valid = ", ".join(FlextConstants.Context.ENVIRONMENTS)
        raise ConfigError(
            "create_environment_context_config()", "env", f"one of {valid}", repr(environment)
        )
    return preset


PERFORMANCE_KEYS: Final[Mapping[str, str]] = {
    "performance_level": "one of 'standard', 'high', 'maximum'",
    "context_cache_size": "an int >= 1 (compiled context-update shapes kept)",
    "max_concurrent_contexts": "an int >= 1 (workers of the context-carrying executor)",
    "sample_rate": "a number from 0.0 to 1.0",
    "min_duration_ms": "a number >= 0",
    "measure_generator_body": "a bool",
    "enabled": "a bool",
    "sinks": "a list of built-in sink names ('stats', 'logging')",
}


def tuned_settings(base: Settings, config: Mapping[str, Any]) -> Settings:
    """Return ``base`` updated with a performance configuration mapping.

    Raises:
        ConfigError: An unknown key (the message lists the accepted ones) or a bad value.
    """
    where = "optimize_context_performance()"
    changes: dict[str, Any] = {}
    for key, value in config.items():
        if key not in PERFORMANCE_KEYS:
            accepted = ", ".join(PERFORMANCE_KEYS)
            raise ConfigError(
                where, str(key), f"one of the accepted keys ({accepted})", "an unknown key"
            )
        expected = PERFORMANCE_KEYS[key]
        if key == "performance_level":
            if value not in PERFORMANCE_LEVELS:
                raise ConfigError(where, key, expected, repr(value))
            changes["performance_level"] = value
            if value == "high":
                changes["sinks"] = tuple(s for s in base.sinks if s != "logging")
                changes["measure_generator_body"] = False
            elif value == "maximum":
                changes["sinks"] = ()
                changes["measure_generator_body"] = False
        elif key == "context_cache_size":
            changes["context_cache_size"] = _int(where, key, value, expected)
        elif key == "max_concurrent_contexts":
            changes["max_concurrent_contexts"] = _int(where, key, value, expected)
        elif key == "sample_rate":
            changes["sample_rate"] = _number(where, key, value, expected)
        elif key == "min_duration_ms":
            changes["min_duration_ms"] = _number(where, key, value, expected)
        elif key in ("measure_generator_body", "enabled"):
            if not isinstance(value, bool):
                raise ConfigError(where, key, expected, repr(value))
            changes[key] = value
        elif key == "sinks":
            if isinstance(value, str) or not all(isinstance(s, str) for s in value):
                raise ConfigError(where, key, expected, repr(value))
            changes["sinks"] = tuple(value)
    try:
        return replace(base, **changes)
    except ConfigError as error:
        raise ConfigError(where, error.key, error.expected, error.got) from None


def _int(where: str, key: str, value: Any, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, key, expected, f"{value!r}, a {type(value).__name__}")
    return value


def _number(where: str, key: str, value: Any, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(where, key, expected, f"{value!r}, a {type(value).__name__}")
    return float(value)


_lock = threading.Lock()
_current = Settings()


def current_settings() -> Settings:
    """Return the settings in force."""
    return _current


def apply_settings(settings: Settings) -> Settings:
    """Make ``settings`` current and apply every value.

    Returns:
        The settings that were in force before.

    Raises:
        TypeError: ``settings`` is not a `Settings` (a dict, a preset name...); checked
            before anything changes, so the settings in force stay in force.
    """
    global _current

    if not isinstance(settings, Settings):
        raise TypeError(
            "apply_settings() expects a Settings instance "
            f"(got {_options.describe(settings)}); build one with "
            "Settings(sample_rate=0.5, ...) or settings_for_environment(name)"
        )
    with _lock:
        previous = _current
        _current = settings
        _ids.set_generator(settings.id_generator)
        _compile.set_cache_size(settings.context_cache_size)
        _emit.configure_filters(settings.sample_rate, round(settings.min_duration_ms * 1_000_000))
        _engine.set_enabled(settings.enabled)
        _engine.set_measure_generator_body(settings.measure_generator_body)
        concurrency.set_default_workers(settings.max_concurrent_contexts)
        set_inbound_defaults(
            InboundDefaults(
                strict=settings.strict_validation,
                trusted=settings.trust_inbound_user_id,
                correlation_sources=settings.correlation_sources,
            )
        )
        _builtin.switch_builtin_sinks(settings.sinks, settings.log_level)
        set_allowed_destinations(settings.allowed_destinations)
    return previous
