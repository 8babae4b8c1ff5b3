"""The import hook: ONE ``sys.meta_path`` finder that instruments modules as they load.

The finder never finds anything itself. For a module some active instrumentation wants, it
asks the finders *behind it* on ``sys.meta_path`` (pytest's assertion rewriter, the path
finder, zip importers, namespace packages, custom finders: never patched, never bypassed),
takes the spec they return and wraps only its loader. The wrapping loader forwards every
attribute to the real one (``get_source``, ``get_resource_reader``, ``is_package``, ...), puts
the real loader back on the spec and the module *before* running it (so the module's own code,
``inspect.getsource``, ``importlib.resources`` and ``linecache`` see the real loader), runs
it, then instruments the module. It never calls ``importlib.util.find_spec`` itself: that
would re-enter the import system from inside it, which deadlocks under concurrent imports.

``importlib.reload`` goes through the finder again, so a reloaded module is instrumented
again. Instrumentation of a module runs under one lock, so threads importing concurrently
never interleave their changes to the ledgers.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

from flext_ctx_aspects._diagnostics import report_internal_error

if TYPE_CHECKING:
    from flext_ctx_aspects.instrument._api import Instrumentation

__all__ = ["InstrumentingFinder", "activate", "active", "deactivate", "instrument_module"]

_lock = threading.RLock()
_active: tuple[Instrumentation, ...] = ()


def active() -> tuple[Instrumentation, ...]:
    """The instrumentations in force, oldest first."""
    return _active


class _InstrumentingLoader:
    """Wraps the loader another finder returned; forwards everything else to it."""

    def __init__(self, loader: Any) -> None:
        self._flext_ctx_loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._flext_ctx_loader, name)

    def __repr__(self) -> str:
        return f"<flext_ctx_aspects instrumenting {self._flext_ctx_loader!r}>"

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        create = getattr(self._flext_ctx_loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        loader = self._flext_ctx_loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        loader.exec_module(module)
        instrument_module(module)


class InstrumentingFinder:
    """The meta path finder (one instance, inserted once at the front of ``sys.meta_path``)."""

    def __repr__(self) -> str:
        return "<flext_ctx_aspects InstrumentingFinder>"

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Return the spec the finders behind this one give, with an instrumenting loader."""
        current = _active
        if not current or not any(inst.wants(fullname) for inst in current):
            return None
        finders = sys.meta_path
        try:
            behind = finders[finders.index(self) + 1 :]
        except ValueError:
            return None
        for finder in behind:
            find: Callable[..., ModuleSpec | None] | None = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if (
            loader is not None
            and not isinstance(loader, _InstrumentingLoader)
            and hasattr(loader, "exec_module")
        ):
            spec.loader = _InstrumentingLoader(loader)  # type: ignore[assignment]
        return spec

    def invalidate_caches(self) -> None:
        """Nothing is cached here (``importlib.invalidate_caches`` calls every finder)."""


_finder = InstrumentingFinder()


def finder() -> InstrumentingFinder:
    """Return the one import hook's finder."""
    return _finder


def activate(instrumentation: Instrumentation) -> None:
    """Add an instrumentation; insert the finder if it is not on ``sys.meta_path``."""
    global _active
    with _lock:
        _active = (*_active, instrumentation)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def deactivate(instrumentation: Instrumentation) -> None:
    """Remove an instrumentation; remove the finder when none is left."""
    global _active
    with _lock:
        _active = tuple(inst for inst in _active if inst is not instrumentation)
        if not _active:
            while _finder in sys.meta_path:
                sys.meta_path.remove(_finder)


def is_ours(obj: Any) -> bool:
    """Whether ``obj`` is a wrapper an active instrumentation put in place."""
    return any(inst.ledger.owns(obj) for inst in _active)


def instrument_module(module: types.ModuleType) -> None:
    """Instrument ``module`` for every active instrumentation that wants it. Never raises."""
    name = getattr(module, "__name__", None)
    if not isinstance(name, str):
        return
    with _lock:
        for inst in _active:
            if not inst.wants(name):
                continue
            try:
                inst.instrument_loaded(module)
            except Exception as exc:
                report_internal_error(f"instrumenting module {name}", exc)
