"""The dry run behind ``flext-ctx plan``: what would be instrumented, and what skipped, why.

The modules are found as the hook would meet them: those named with ``--import`` and the
literal part of each ``include`` glob are imported (their top-level code runs, as in any
import), and the submodules of packages named by a glob (``shop.*``) are discovered with
``pkgutil`` and imported when the configuration wants them. Each wanted module then goes
through the same `select_module` as the hook.
Nothing is wrapped or replaced.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flext_ctx_aspects.config import Config
from flext_ctx_aspects.instrument._select import (
    ModulePlan,
    module_refusal,
    select_module,
)

__all__ = ["Plan", "make_plan"]

_GLOB_CHARACTERS = frozenset("*?[]!")


@dataclass(slots=True)
class Plan:
    """The dry run's result.

    Attributes:
        modules: One plan per module that would be instrumented, in name order.
        skipped_modules: ``(module, reason)`` for modules imported or discovered but not
            instrumented (excluded, test modules, failed imports).
    """

    modules: list[ModulePlan] = field(default_factory=list)
    skipped_modules: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``flext-ctx plan --format json``."""
        return {
            "instrument": [
                {
                    "module": s.module,
                    "qualname": s.qualname,
                    "kind": s.kind,
                    "binding": s.binding,
                    "aspects": [a.name for a in s.aspects],
                }
                for m in self.modules
                for s in m.selected
            ],
            "skip": [
                {"module": s.module, "qualname": s.qualname, "reason": s.reason}
                for m in self.modules
                for s in m.skipped
            ],
            "skipped_modules": [
                {"module": name, "reason": reason} for name, reason in self.skipped_modules
            ],
        }


def _literal_prefix(pattern: str) -> tuple[str, bool]:
    parts: list[str] = []
    for part in pattern.split("."):
        if _GLOB_CHARACTERS.intersection(part):
            return ".".join(parts), True
        parts.append(part)
    return ".".join(parts), False


def _import(name: str, plan: Plan) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception as error:  # the plan reports it, and goes on with the others
        plan.skipped_modules.append((name, f"import failed: {type(error).__name__}: {error}"))
        return None


def make_plan(config: Config, imports: Iterable[str] = ()) -> Plan:
    """Import what the configuration names and decide, module by module, what to wrap.

    Args:
        config: The validated configuration.
        imports: Modules to import first (``--import``), e.g. an application entry point.

    Returns:
        The plan. Modules that fail to import are listed in ``skipped_modules``.

    Raises:
        ModuleNotFoundError: A module named in ``imports`` does not exist.
    """
    plan = Plan()
    for name in imports:
        importlib.import_module(name)  # a usage error: let the CLI report it
    for pattern in config.instrument.include:
        prefix, globbed = _literal_prefix(pattern)
        if not prefix:
            continue
        package = _import(prefix, plan) if prefix not in sys.modules else sys.modules[prefix]
        path = getattr(package, "__path__", None)
        if not globbed or path is None:
            continue
        for info in pkgutil.walk_packages(path, f"{prefix}.", onerror=lambda _: None):
            reason = module_refusal(info.name, config)
            if reason is None and info.name not in sys.modules:
                _import(info.name, plan)
            elif reason is not None and _included_by_name(info.name, config):
                plan.skipped_modules.append((info.name, reason))
    failed = {name for name, _ in plan.skipped_modules}
    for name in sorted(sys.modules):
        module = sys.modules.get(name)
        if not isinstance(module, types.ModuleType) or name in failed:
            continue  # already listed
        reason = module_refusal(name, config)
        if reason is None:
            plan.modules.append(select_module(module, config))
        elif reason != "not matched by include" and _included_by_name(name, config):
            plan.skipped_modules.append((name, reason))
    plan.skipped_modules.sort()
    return plan


def _included_by_name(name: str, config: Config) -> bool:
    # Only modules an include glob names are worth listing as skipped (not all of sys.modules).
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p) for p in config.instrument.include)
