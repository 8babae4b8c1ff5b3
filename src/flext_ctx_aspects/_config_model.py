"""The configuration's frozen, slotted data classes (see `flext_ctx_aspects.config`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "AspectSpec",
    "Config",
    "InstrumentConfig",
    "OtelConfig",
    "OutputConfig",
    "Rule",
    "ServiceConfig",
]


@dataclass(frozen=True, slots=True)
class AspectSpec:
    """One aspect by its configuration name, with its options.

    Attributes:
        name: A key of `flext_ctx_aspects.aspects.ASPECTS` (``"timed"``, ...).
        options: Keyword arguments of that decorator factory (``min_duration_ms=5``).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"name": ..., "options": {...}}``."""
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True, slots=True)
class Rule:
    """Aspects for the callables whose ``module:qualname`` matches ``match``.

    Attributes:
        match: ``"module-glob:qualname-glob"``, e.g. ``"shop.api:Cart.*"``.
        aspects: The aspects these callables get instead of the default ones; empty means
            they are not instrumented.
    """

    match: str
    aspects: tuple[AspectSpec, ...]

    @property
    def module(self) -> str:
        """The module-name glob (before the colon)."""
        return self.match.partition(":")[0]

    @property
    def qualname(self) -> str:
        """The qualified-name glob (after the colon)."""
        return self.match.partition(":")[2]


@dataclass(frozen=True, slots=True)
class InstrumentConfig:
    """``[tool.flext_ctx_aspects.instrument]``: what gets wrapped, with which aspects.

    Attributes:
        include: Module-name globs of the modules to instrument.
        exclude: Module-name globs never instrumented (wins over ``include``).
        functions: Qualified-name globs of the callables to wrap in those modules.
        exclude_functions: Qualified-name globs never wrapped (wins over ``functions``).
        aspects: The aspects applied, outermost first.
        rules: Per-callable aspect overrides; the first matching rule decides.
        include_tests: Also instrument test modules and ``conftest``.
        strict: Refuse (rather than warn about) includes that match no importable module.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    functions: tuple[str, ...] = ("*",)
    exclude_functions: tuple[str, ...] = ()
    aspects: tuple[AspectSpec, ...] = (AspectSpec("timed"),)
    rules: tuple[Rule, ...] = ()
    include_tests: bool = False
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """``[tool.flext_ctx_aspects.service]``: the identity the ``service`` aspect applies."""

    name: str | None = None
    version: str | None = None
    environment: str | None = None


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """``[tool.flext_ctx_aspects.output]``: where a run writes its files (paths as given)."""

    trace: str | None = None
    report_json: str | None = None


@dataclass(frozen=True, slots=True)
class OtelConfig:
    """``[tool.flext_ctx_aspects.otel]``: the OpenTelemetry bridge (needs the [otel] extra)."""

    enabled: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    """The whole resolved configuration (environment overrides applied).

    Attributes:
        source: Where it came from (a file path, or ``"<mapping>"``).
        instrument: What gets wrapped.
        service: Service identity.
        output: Output files of a run.
        otel: OpenTelemetry bridge switch.
        disabled: True switches every aspect off (None: leave the setting as it is).
        sinks: Built-in sinks switched on (None: leave as is).
        min_duration_ms: Operations faster than this are not recorded (None: leave as is).
        sample_rate: Fraction of traces recorded (None: leave as is).
    """

    source: str = "<mapping>"
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    otel: OtelConfig = field(default_factory=OtelConfig)
    disabled: bool | None = None
    sinks: tuple[str, ...] | None = None
    min_duration_ms: float | None = None
    sample_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The tables as plain data, in the shape the file uses (aspects as a table)."""
        ins = self.instrument
        data: dict[str, Any] = {
            "instrument": {
                "include": list(ins.include),
                "exclude": list(ins.exclude),
                "functions": list(ins.functions),
                "exclude_functions": list(ins.exclude_functions),
                "aspects": _aspects_table(ins.aspects),
                "rules": [
                    {"match": rule.match, "aspects": _aspects_table(rule.aspects)}
                    for rule in ins.rules
                ],
                "include_tests": ins.include_tests,
                "strict": ins.strict,
            },
            "service": _without_none(
                {
                    "name": self.service.name,
                    "version": self.service.version,
                    "environment": self.service.environment,
                }
            ),
            "output": _without_none(
                {"trace": self.output.trace, "report_json": self.output.report_json}
            ),
            "otel": {"enabled": self.otel.enabled},
        }
        switches = {
            "disabled": self.disabled,
            "sinks": list(self.sinks) if self.sinks is not None else None,
            "min_duration_ms": self.min_duration_ms,
            "sample_rate": self.sample_rate,
        }
        data.update(_without_none(switches))
        return data

    def to_json(self) -> str:
        """The JSON form, read back by `config_from_json` (source included)."""
        # Not sorted: the order of aspects is their nesting order.
        return json.dumps({"source": self.source, "config": self.as_dict()})


def _aspects_table(aspects: tuple[AspectSpec, ...]) -> dict[str, dict[str, Any]]:
    return {spec.name: dict(spec.options) for spec in aspects}


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}
