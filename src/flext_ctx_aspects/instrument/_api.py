"""``instrument()``, ``uninstrument()``, ``@no_instrument`` and the undo handle."""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import sys
import threading
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects.aspects import stacked
from flext_ctx_aspects.config import (
    Config,
    build_decorator,
    ineffective_entries,
    load_config,
)
from flext_ctx_aspects.errors import ConfigError, ConfigWarning
from flext_ctx_aspects.instrument import _hook
from flext_ctx_aspects.instrument._ledger import Ledger
from flext_ctx_aspects.instrument._select import (
    NO_INSTRUMENT_ATTRIBUTE,
    Selected,
    module_refusal,
    select_module,
)

__all__ = ["Instrumentation", "instrument", "no_instrument", "uninstrument"]

T = TypeVar("T")
_logger = logging.getLogger("flext_ctx_aspects")
_lock = threading.Lock()


class _RefusedError(Exception):
    """A class refused the assignment of a wrapper (its metaclass forbids it)."""


def no_instrument(obj: T) -> T:
    """Mark a function, method or class as never instrumented (returns it unchanged).

    Above or below ``@classmethod``/``@staticmethod``; on a class, none of its members
    (nested classes included) is instrumented.

    Raises:
        TypeError: ``obj`` does not accept attributes (a builtin, for example).
    """
    try:
        setattr(obj, NO_INSTRUMENT_ATTRIBUTE, True)
    except (AttributeError, TypeError):
        raise TypeError(
            f"@no_instrument cannot mark {type(obj).__qualname__} objects (no attributes)"
        ) from None
    return obj


def _unset_decorator(function: Any) -> Any:
    raise AssertionError("no decorator built yet")  # never called: _last_specs is None


class Instrumentation:
    """The handle `instrument` returns: call it, ``.uninstrument()`` it, or use ``with``.

    Attributes:
        config: The validated configuration in force.
        ledger: Every attribute replaced.
        imported_early: Modules that were already imported when instrumentation started
            (instrumented too; references to their functions that other code took before,
            other than module attributes, still reach the originals).
        modules: Names of the modules instrumented so far.
        refused: ``(place, why)`` of callables left as they are because their class
            refused the assignment (a metaclass ``__setattr__`` that forbids it).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ledger = Ledger()
        self.imported_early: tuple[str, ...] = ()
        self.modules: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.active = False
        self._decorators: dict[tuple[int, ...], Callable[[Any], Any]] = {}
        self._last_specs: tuple[Any, ...] | None = None
        self._last_decorate: Callable[[Any], Any] = _unset_decorator
        self._wanted: dict[str, bool] = {}
        self._include = _glob_regex(config.instrument.include)
        self._settings: Any = None
        self._otel: Any = None

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"<Instrumentation {self.config.source} {state}, {len(self.ledger)} replaced>"

    def __call__(self) -> None:
        self.uninstrument()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstrument()

    def wants(self, name: str) -> bool:
        """Whether module ``name`` is instrumented (cached; cheap for the import hook)."""
        answer = self._wanted.get(name)
        if answer is None:
            answer = bool(self._include.match(name)) and module_refusal(name, self.config) is None
            self._wanted[name] = answer
        return answer

    def instrument_loaded(self, module: types.ModuleType) -> int:
        """Wrap what `select_module` selects in ``module``; return how many."""
        plan = select_module(module, self.config, _hook.is_ours)
        for entry in plan.selected:
            try:
                self._wrap(entry)
            except _RefusedError as refused:
                self.refused.append((f"{entry.module}:{entry.qualname}", str(refused)))
                _logger.info(
                    "flext_ctx_aspects: %s:%s left as is: %s", entry.module, entry.qualname, refused
                )
            except Exception as exc:
                report_internal_error(f"wrapping {entry.module}:{entry.qualname}", exc)
        if module.__name__ not in self.modules:
            self.modules.append(module.__name__)
        return len(plan.selected)

    def _wrap(self, entry: Selected) -> None:
        wrapper = self.ledger.wrapper_for(entry.original)
        if wrapper is None:
            specs = entry.aspects
            if specs is self._last_specs:  # the configuration's tuple, shared by most entries
                decorate = self._last_decorate
            else:
                # By identity: the specs are the config's own objects (their options are
                # mappings).
                key = tuple(map(id, specs))
                found = self._decorators.get(key)
                if found is None:
                    # One engine pass for the whole stack (the first aspect is the outermost).
                    found = stacked(tuple(build_decorator(s, self.config.service) for s in specs))
                    self._decorators[key] = found
                decorate = found
                self._last_specs, self._last_decorate = specs, decorate
            wrapper = decorate(entry.original)
        for index, (owner, attribute) in enumerate(entry.places):
            try:
                self.ledger.replace(owner, attribute, entry.original, wrapper)
            except (AttributeError, TypeError) as error:
                # A class (its metaclass) refusing assignment. Where it is the first place,
                # nothing was replaced; later places keep the original, and are reported.
                where = getattr(owner, "__qualname__", getattr(owner, "__name__", "?"))
                if index == 0:
                    raise _RefusedError(f"{where} refuses attribute assignment ({error})") from None
                self.refused.append((f"{where}.{attribute}", f"refuses assignment ({error})"))

    def start(self) -> None:
        """Apply the switches, activate the hook, instrument modules already imported."""
        self._settings = _apply_switches(self.config)
        if self.config.otel.enabled:
            self._otel = _enable_otel(self.config)
        self.active = True
        _hook.activate(self)
        early = []
        with _hook._lock:
            for name, module in list(sys.modules.items()):
                if isinstance(module, types.ModuleType) and self.wants(name):
                    early.append(name)
                    self.instrument_loaded(module)
            if early:
                self._redirect_references()
        self.imported_early = tuple(early)
        if early:
            _logger.info(
                "flext_ctx_aspects: %d module(s) were imported before instrumentation started "
                "and were instrumented in place: %s",
                len(early),
                ", ".join(early),
            )

    def _redirect_references(self) -> None:
        # Other modules imported these functions (``from shop import checkout``) before the
        # hook could see them: their module attributes are pointed at the wrappers too.
        replaced = self.ledger.originals()
        if not replaced:
            return
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for attribute, value in list(namespace.items()):
                found = replaced.get(id(value))
                if found is not None and found[0] is value:
                    self.ledger.replace(module, attribute, value, found[1])

    def uninstrument(self) -> None:
        """Undo this instrumentation (idempotent): restore every original object."""
        with _lock:
            if not self.active:
                return
            self.active = False
        _hook.deactivate(self)
        with _hook._lock:
            restored, left = self.ledger.restore()
        if left:
            _logger.info(
                "flext_ctx_aspects: %d attribute(s) were replaced after instrumentation and "
                "were left as they are",
                left,
            )
        if self._otel is not None:
            self._otel()
        _restore_switches(self._settings)
        del restored


def _apply_switches(config: Config) -> tuple[Any, Any] | None:
    # Settings are loaded only by programs that change them.
    from flext_ctx_aspects.settings import apply_settings, current_settings

    changes: dict[str, Any] = {}
    if config.disabled is not None:
        changes["enabled"] = not config.disabled
    if config.sinks is not None:
        changes["sinks"] = config.sinks
    if config.min_duration_ms is not None:
        changes["min_duration_ms"] = config.min_duration_ms
    if config.sample_rate is not None:
        changes["sample_rate"] = config.sample_rate
    if not changes:
        return None
    applied = replace(current_settings(), **changes)
    return apply_settings(applied), applied


def _restore_switches(saved: tuple[Any, Any] | None) -> None:
    from flext_ctx_aspects.settings import apply_settings, current_settings

    if saved is not None and current_settings() is saved[1]:
        apply_settings(saved[0])  # only if nobody changed the settings since


def _glob_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _enable_otel(config: Config) -> Any:
    try:
        from flext_ctx_aspects.integrations.opentelemetry import (  # type: ignore[import-not-found,unused-ignore]
            enable_opentelemetry,
        )
    except ImportError as error:
        raise ConfigError(
            f"{config.source} [otel]",
            "enabled",
            "possible only with the [otel] extra (pip install 'flext-ctx-aspects[otel]')",
            f"ImportError: {error}",
        ) from None
    return enable_opentelemetry()


def instrument(
    config: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
) -> Instrumentation:
    """Instrument the configured modules: those already imported, and those imported later.

    Args:
        config: A path to ``pyproject.toml`` or a standalone TOML file, the same tables as a
            mapping (``{"instrument": {"include": [...], "aspects": [...]}}``), a validated
            `Config`, or None for the file named by
            ``FLEXT_CTX_CONFIG``.

    Returns:
        The handle that undoes it (callable, ``.uninstrument()``, context manager).

    Raises:
        ConfigError: The configuration is invalid, or (``strict = true``) an include
            matches no importable module. Nothing has changed when it is raised.
    """
    resolved = config if isinstance(config, Config) else load_config(config)
    for problem in ineffective_entries(resolved):
        if resolved.instrument.strict:
            raise problem
        warnings.warn(str(problem), ConfigWarning, stacklevel=2)
    if _hook.active():
        warnings.warn(
            "instrument() called while another instrumentation is active: both apply; "
            "callables the first one wrapped are not wrapped again",
            RuntimeWarning,
            stacklevel=2,
        )
    handle = Instrumentation(resolved)
    handle.start()
    return handle


def uninstrument() -> int:
    """Undo every active instrumentation, newest first; return how many were undone."""
    handles = _hook.active()
    for handle in reversed(handles):
        handle.uninstrument()
    return len(handles)
