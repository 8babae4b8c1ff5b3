"""Start-up of every Python process under ``flext-ctx run`` (imported by ``site``).

This directory holds only this file and is prepended to ``PYTHONPATH`` by the runner. Here:

* cheap: only the standard library's ``json`` is imported at start-up; a tiny finder waits
  for the first import of a module the configuration includes, and only then loads
  ``flext_ctx_aspects`` and its import hook (a ``python -c pass`` child pays ~1 ms);
* idempotent: a process is bootstrapped once, whatever imports this again;
* never raises into the program: any failure is one line on stderr and the program runs
  uninstrumented;
* does nothing where ``flext_ctx_aspects`` is not importable (a virtualenv without it) or
  ``FLEXT_CTX_RUN`` is not set;
* chains the user's own ``sitecustomize``: the next one on ``sys.path`` runs after this one.
"""

# No `from __future__ import annotations`: it imports the __future__ module at start-up.
import os
import sys

TYPE_CHECKING = False  # not `from typing import ...`: typing costs a child several ms
if TYPE_CHECKING:
    import importlib.machinery
    import types
    from collections.abc import Sequence

_MARKER = "_flext_ctx_bootstrapped"
_WILDCARDS = "*?["


class _FirstMatchFinder:
    """Starts the instrumentation at the first import of an included module, then leaves."""

    def __init__(self, settings: str, includes: list[str]) -> None:
        self.settings = settings
        self.prefixes = tuple(_literal_prefix(p) for p in includes)
        self.includes = includes
        self.started = False

    def _included(self, name: str) -> bool:
        if not any(name.startswith(prefix) for prefix in self.prefixes):
            return False
        from fnmatch import fnmatchcase

        return any(fnmatchcase(name, pattern) for pattern in self.includes)

    def find_spec(
        self,
        name: str,
        path: "Sequence[str] | None" = None,
        target: "types.ModuleType | None" = None,
    ) -> "importlib.machinery.ModuleSpec | None":
        if self.started or not self._included(name):
            return None
        self.started = True
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            from flext_ctx_aspects.instrument._child import start

            finder = start(self.settings)
        except ModuleNotFoundError as error:
            if error.name != "flext_ctx_aspects":
                sys.stderr.write(f"flext-ctx: instrumentation not started: {error!r}\n")
            return None  # an interpreter without flext_ctx_aspects: the program runs as is
        except Exception as error:
            sys.stderr.write(f"flext-ctx: instrumentation not started in this process: {error!r}\n")
            return None
        # The hook now leads sys.meta_path; this lookup is already past it, so ask it here.
        spec: importlib.machinery.ModuleSpec | None = finder.find_spec(name, path, target)
        return spec


def _literal_prefix(pattern: str) -> str:
    cut = min((pattern.index(c) for c in _WILDCARDS if c in pattern), default=len(pattern))
    return pattern[:cut]


def _chain_user_sitecustomize() -> None:
    # The import system's own modules, loaded before site runs: importlib.util would import
    # contextlib and collections into every child.
    import _frozen_importlib
    import _frozen_importlib_external

    here = os.path.dirname(os.path.abspath(__file__))
    path = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    spec = _frozen_importlib_external.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = _frozen_importlib.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _bootstrap() -> None:
    if getattr(sys, _MARKER, False):
        return
    setattr(sys, _MARKER, True)
    settings = os.environ.get("FLEXT_CTX_RUN")
    if not settings:
        return
    import json

    includes = json.loads(settings)["config"]["config"]["instrument"]["include"]
    if not isinstance(includes, list) or not all(isinstance(p, str) for p in includes):
        raise TypeError("FLEXT_CTX_RUN: instrument.include is not a list of str")
    sys.meta_path.insert(0, _FirstMatchFinder(settings, includes))


try:
    _bootstrap()
except Exception as error:  # never into the program
    sys.stderr.write(f"flext-ctx: instrumentation not started in this process: {error!r}\n")
try:
    _chain_user_sitecustomize()
except Exception as error:
    # The user's sitecustomize failing is reported as site would, and start-up goes on.
    sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{error!r}\n")
