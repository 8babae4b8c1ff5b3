"""The instrumentation configuration: ``[tool.flext_ctx_aspects]``, validated, frozen.

Read from ``pyproject.toml`` (the ``[tool.flext_ctx_aspects]`` tables) or a standalone TOML file
holding the same tables at its top level (``[instrument]``, ``[service]``, ...), or given as a
mapping of those tables. ``FLEXT_CTX_CONFIG`` names the file when none is given. The common
switches can be overridden from the environment (`ENVIRONMENT_OVERRIDES`).

Everything is checked before anything runs: an unknown key (with "did you mean"), a value of
the wrong type, a bad glob, an unknown aspect or aspect option is a
`ConfigError` naming the file, the table, the key, what was
expected and what was found. Nothing is read at import time: only `load_config`
(called by ``instrument()`` and the CLI) reads files and the environment.

The resolved configuration has a JSON form (`Config.to_json`, `config_from_json`)
so a parent process can hand it to its children in one environment variable, and the
children never parse TOML again.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from flext_ctx_aspects._config_check import (
    Where,
    check_keys,
    describe,
    ineffective_entries,
    module_glob,
    qualname_glob,
    unmatched_includes,
    want_bool,
    want_globs,
    want_number,
    want_optional_str,
    want_str_list,
    want_table,
)
from flext_ctx_aspects._config_model import (
    AspectSpec,
    Config,
    InstrumentConfig,
    OtelConfig,
    OutputConfig,
    Rule,
    ServiceConfig,
)
from flext_ctx_aspects.aspects import ASPECTS
from flext_ctx_aspects.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the 3.10 test run
    import tomli as tomllib

__all__ = [
    "CONFIG_ENV",
    "ENVIRONMENT_OVERRIDES",
    "AspectSpec",
    "Config",
    "InstrumentConfig",
    "OtelConfig",
    "OutputConfig",
    "Rule",
    "ServiceConfig",
    "config_from_json",
    "config_from_mapping",
    "ineffective_entries",
    "load_config",
    "unmatched_includes",
]

CONFIG_ENV: Final = "FLEXT_CTX_CONFIG"
"""Environment variable naming the configuration file when none is given."""

ENVIRONMENT_OVERRIDES: Final[Mapping[str, str]] = {
    "FLEXT_CTX_DISABLED": "disabled",
    "FLEXT_CTX_SINKS": "sinks",
    "FLEXT_CTX_MIN_DURATION_MS": "min_duration_ms",
    "FLEXT_CTX_SAMPLE_RATE": "sample_rate",
}
"""Environment variable -> the top-level key it overrides (the environment wins)."""

_ROOT: Final = "tool.flext_ctx_aspects"
_TOP_KEYS: Final = (
    "instrument",
    "service",
    "output",
    "otel",
    "disabled",
    "sinks",
    "min_duration_ms",
    "sample_rate",
)
_INSTRUMENT_KEYS: Final = (
    "include",
    "exclude",
    "functions",
    "exclude_functions",
    "aspects",
    "rules",
    "include_tests",
    "strict",
)
_RULE_KEYS: Final = ("match", "aspects")
_SERVICE_KEYS: Final = ("name", "version", "environment")
_OUTPUT_KEYS: Final = ("trace", "report_json")
_OTEL_KEYS: Final = ("enabled",)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})
# Options no configuration may set: they are the decorator's own plumbing.
_NOT_OPTIONS: Final = frozenset({"func"})


# --- loading ------------------------------------------------------------------------------


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, validate and resolve a configuration.

    Args:
        source: A path to ``pyproject.toml`` or a standalone TOML file, a mapping of the
            tables (``{"instrument": {...}}``), or None to use the file named by
            ``FLEXT_CTX_CONFIG``.
        environ: The environment to read ``FLEXT_CTX_*`` from (default ``os.environ``).

    Returns:
        The validated configuration, environment overrides applied.

    Raises:
        ConfigError: No configuration, an unreadable file, invalid TOML or any invalid key.
    """
    env = os.environ if environ is None else environ
    if source is None:
        named = env.get(CONFIG_ENV)
        if not named:
            raise ConfigError(
                "instrument()",
                "config",
                f"a path or a mapping, or a file named by ${CONFIG_ENV}",
                f"nothing (${CONFIG_ENV} is not set)",
            )
        source = named
    if isinstance(source, Mapping):
        config = config_from_mapping(source, "the mapping", root="")
    else:
        config = _from_file(Path(source))
    return _with_environment(config, env)


def _from_file(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            str(path), "file", "a readable TOML file", f"{type(error).__name__}: {error.strerror}"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), "file", "valid TOML", str(error)) from None
    if "tool" in document or path.name == "pyproject.toml":
        tool = document.get("tool", {})
        tables = tool.get("flext_ctx_aspects") if isinstance(tool, dict) else None
        if tables is None:
            close = [name for name in tool if "flext" in name or "ctx" in name]
            hint = f"; found [tool.{close[0]}], a misspelling?" if close else ""
            raise ConfigError(str(path), f"[{_ROOT}]", "present", f"no such table{hint}")
        return config_from_mapping(tables, str(path), root=_ROOT)
    return config_from_mapping(document, str(path), root="")


def config_from_mapping(tables: Mapping[str, Any], source: str, *, root: str = _ROOT) -> Config:
    """Validate ``tables`` (the ``[tool.flext_ctx_aspects]`` content) into a `Config`.

    Args:
        tables: The tables as TOML parses them (``{"instrument": {...}, ...}``).
        source: The file name (or ``"<mapping>"``) for messages.
        root: The table path of ``tables`` in that file (``""`` for a standalone file).

    Raises:
        ConfigError: Any unknown key or invalid value.
    """
    where = Where(source, root or "top level")

    def sub(name: str) -> Where:
        return Where(source, f"{root}.{name}" if root else name)

    tables = want_table(Where(source, "file"), root or "top level", tables)
    check_keys(where, tables, _TOP_KEYS)
    instrument = _instrument(sub("instrument"), tables.get("instrument", {}))
    service_where = sub("service")
    service = want_table(where, "service", tables.get("service", {}))
    check_keys(service_where, service, _SERVICE_KEYS)
    output_where = sub("output")
    output = want_table(where, "output", tables.get("output", {}))
    check_keys(output_where, output, _OUTPUT_KEYS)
    otel_where = sub("otel")
    otel = want_table(where, "otel", tables.get("otel", {}))
    check_keys(otel_where, otel, _OTEL_KEYS)
    service_config = ServiceConfig(
        **{key: want_optional_str(service_where, key, service.get(key)) for key in _SERVICE_KEYS}
    )
    _check_service_uses(instrument, service_config, sub("instrument"))
    return Config(
        source=source,
        instrument=instrument,
        service=service_config,
        output=OutputConfig(
            **{key: want_optional_str(output_where, key, output.get(key)) for key in _OUTPUT_KEYS}
        ),
        otel=OtelConfig(enabled=want_bool(otel_where, "enabled", otel.get("enabled", False))),
        disabled=_maybe(tables, "disabled", lambda v: want_bool(where, "disabled", v)),
        sinks=_maybe(tables, "sinks", lambda v: _sinks(where, v)),
        min_duration_ms=_maybe(
            tables, "min_duration_ms", lambda v: want_number(where, "min_duration_ms", v, 0.0)
        ),
        sample_rate=_maybe(
            tables, "sample_rate", lambda v: want_number(where, "sample_rate", v, 0.0, 1.0)
        ),
    )


def _maybe(tables: Mapping[str, Any], key: str, check: Callable[[Any], Any]) -> Any:
    return check(tables[key]) if key in tables else None


def _sinks(where: Where, value: object) -> tuple[str, ...]:
    # Settings are loaded only by programs that change them.
    from flext_ctx_aspects.settings import BUILTIN_SINKS

    names = want_str_list(where, "sinks", value, "built-in sink names")
    for index, name in enumerate(names):
        if name not in BUILTIN_SINKS:
            raise where.error(f"sinks[{index}]", f"one of {', '.join(BUILTIN_SINKS)}", repr(name))
    return names


def _instrument(where: Where, value: object) -> InstrumentConfig:
    parent = Where(where.file, where.table.rpartition(".")[0] or "top level")
    table = want_table(parent, "instrument", value)
    check_keys(where, table, _INSTRUMENT_KEYS)
    defaults = InstrumentConfig()
    rules = table.get("rules", [])
    if not isinstance(rules, list):
        raise where.error("rules", "an array of tables ([[...instrument.rules]])", describe(rules))
    return InstrumentConfig(
        include=want_globs(where, "include", table.get("include", []), modules=True),
        exclude=want_globs(where, "exclude", table.get("exclude", []), modules=True),
        functions=want_globs(
            where, "functions", table.get("functions", list(defaults.functions)), modules=False
        ),
        exclude_functions=want_globs(
            where, "exclude_functions", table.get("exclude_functions", []), modules=False
        ),
        aspects=_aspects(where, "aspects", table["aspects"])
        if "aspects" in table
        else defaults.aspects,
        rules=tuple(_rule(where, index, rule) for index, rule in enumerate(rules)),
        include_tests=want_bool(where, "include_tests", table.get("include_tests", False)),
        strict=want_bool(where, "strict", table.get("strict", False)),
    )


def _rule(where: Where, index: int, value: object) -> Rule:
    rule_where = Where(where.file, f"{where.table}.rules[{index}]")
    table = want_table(where, f"rules[{index}]", value)
    check_keys(rule_where, table, _RULE_KEYS)
    if "match" not in table:
        raise rule_where.error("match", "a 'module-glob:qualname-glob' string", "no match key")
    if "aspects" not in table:
        raise rule_where.error("aspects", "a list or table of aspects ([] for none)", "no key")
    match = table["match"]
    expected = "a 'module-glob:qualname-glob' string such as 'shop.api:Cart.*'"
    if not isinstance(match, str) or match.count(":") != 1:
        raise rule_where.error("match", expected, describe(match))
    module, _, qualname = match.partition(":")
    module_glob(rule_where, "match", module)
    qualname_glob(rule_where, "match", qualname)
    return Rule(match=match, aspects=_aspects(rule_where, "aspects", table["aspects"]))


def _aspects(where: Where, key: str, value: object) -> tuple[AspectSpec, ...]:
    if isinstance(value, list):
        entries: list[tuple[str, str, object]] = []
        for index, name in enumerate(value):
            if not isinstance(name, str):
                raise where.error(f"{key}[{index}]", "an aspect name", describe(name))
            entries.append((f"{key}[{index}]", name, {}))
    elif isinstance(value, Mapping):
        entries = [(f"{key}.{name}", str(name), options) for name, options in value.items()]
    else:
        raise where.error(
            key, "a list of aspect names or a table of aspect options", describe(value)
        )
    specs = []
    seen: set[str] = set()
    for path, name, options in entries:
        if name in seen:
            raise where.error(path, "each aspect at most once", f"{name!r} again")
        seen.add(name)
        specs.append(_aspect(where, path, name, options))
    return tuple(specs)


def _aspect(where: Where, path: str, name: str, options: object) -> AspectSpec:
    if name not in ASPECTS:
        close = difflib.get_close_matches(name, list(ASPECTS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise where.error(path, f"an aspect name ({', '.join(ASPECTS)})", f"{name!r}{hint}")
    table = want_table(where, path, options)
    parameters = _option_parameters(name)
    option_where = Where(where.file, f"{where.table}.{path}")
    check_keys(option_where, table, parameters)
    for option, option_value in table.items():
        _check_option(option_where, option, option_value, parameters[option])
    spec = AspectSpec(name, MappingProxyType(dict(table)))
    if name != "service":  # service needs its name, which may come from [service]
        _build_checked(option_where, spec, ServiceConfig())
    return spec


def _option_parameters(name: str) -> dict[str, inspect.Parameter]:
    signature = inspect.signature(ASPECTS[name])
    return {
        key: parameter
        for key, parameter in signature.parameters.items()
        if key not in _NOT_OPTIONS and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    }


def _check_option(where: Where, key: str, value: object, parameter: inspect.Parameter) -> None:
    # The factories' defaults say each option's type: a bool default wants a bool ("false"
    # is never true), a number default a number, anything else a string or a table.
    default = parameter.default
    if isinstance(default, bool):
        want_bool(where, key, value)
    elif isinstance(default, (int, float)):
        want_number(where, key, value, 0.0)
    elif "Mapping" in str(parameter.annotation):
        want_table(where, key, value)
    elif not isinstance(value, str):
        raise where.error(key, "a string", describe(value))


def _build_checked(where: Where, spec: AspectSpec, service: ServiceConfig) -> None:
    try:
        build_decorator(spec, service)
    except (TypeError, ValueError) as error:
        raise where.error(spec.name, "options the decorator accepts", str(error)) from None


def build_decorator(spec: AspectSpec, service: ServiceConfig) -> Callable[[Any], Any]:
    """The decorator ``spec`` names, with its options (``service`` fills the service aspect).

    Raises:
        TypeError: The options do not fit the decorator.
        ValueError: An option value is refused by the decorator.
    """
    options = dict(spec.options)
    if spec.name == "service":
        for key in ("name", "version", "environment"):
            if key not in options and getattr(service, key) is not None:
                options[key] = getattr(service, key)
    return ASPECTS[spec.name](**options)  # type: ignore[no-any-return]


def _check_service_uses(instrument: InstrumentConfig, service: ServiceConfig, where: Where) -> None:
    specs = [(where, "aspects", s) for s in instrument.aspects]
    specs += [
        (Where(where.file, f"{where.table}.rules[{i}]"), "aspects", s)
        for i, rule in enumerate(instrument.rules)
        for s in rule.aspects
    ]
    for spec_where, key, spec in specs:
        if spec.name != "service":
            continue
        if "name" not in spec.options and service.name is None:
            raise spec_where.error(
                f"{key}.service",
                "a service name: `name` in its options or in the [service] table",
                "no name",
            )
        _build_checked(spec_where, spec, service)


# --- the environment and the JSON form ----------------------------------------------------


def _with_environment(config: Config, env: Mapping[str, str]) -> Config:
    from dataclasses import replace

    where = Where("the environment", "FLEXT_CTX_*")
    changes: dict[str, Any] = {}
    for variable, key in ENVIRONMENT_OVERRIDES.items():
        raw = env.get(variable)
        if raw is None:
            continue
        text = raw.strip().lower()
        if key == "disabled":
            if text not in _TRUE | _FALSE:
                raise where.error(variable, "1/true/yes/on or 0/false/no/off", repr(raw))
            changes[key] = text in _TRUE
        elif key == "sinks":
            names = [part.strip() for part in raw.split(",") if part.strip()]
            changes[key] = _sinks(where, names) if names else ()
        else:
            try:
                number = float(raw)
            except ValueError:
                number = float("nan")
            high = 1.0 if key == "sample_rate" else None
            if math.isnan(number):  # not a number at all
                raise where.error(variable, "a number", repr(raw))
            changes[key] = want_number(where, variable, number, 0.0, high)
    return replace(config, **changes) if changes else config


def config_from_json(text: str) -> Config:
    """Rebuild a `Config` from `Config.to_json` (validated again, no TOML).

    Raises:
        ConfigError: The text is not the JSON form of a configuration.
    """
    try:
        data = json.loads(text)
        source, tables = data["source"], data["config"]
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(
            "the JSON form", "config", '{"source": ..., "config": {...}}', repr(error)
        ) from None
    return config_from_mapping(tables, str(source))
