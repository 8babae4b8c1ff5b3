"""Which implementation runs: the compiled parts (``_speedups``) or pure Python.

The compiled module is built when the package is installed on a machine with a C compiler
(``hatch_build.py``); without one, the package installs and runs in pure Python. Both behave
identically (the test suite runs against each). Setting ``FLEXT_CTX_PURE_PYTHON=1`` before
the first import forces pure Python, as ``WRAPT_DISABLE_EXTENSIONS`` does for wrapt.

Compiled today: the per-record path of the statistics sink (``_sketch.Digest.add``), the
sync drivers without hooks (``_speedups.Driver``, used by ``_engine._sync_driver``), the
wrapper's call entry (``_speedups.wrapper_base``, the base of ``_engine.AspectWrapper``) and
the snapshot updates that read nothing of the call (``_speedups.Update``, run from the
program ``_compile`` derives alongside each update's Python source).
"""

from __future__ import annotations

import os
import types
import warnings
from importlib import import_module
from typing import Final, Literal

__all__ = ["ABI", "ENVIRONMENT_VARIABLE", "implementation", "speedups"]

ENVIRONMENT_VARIABLE: Final = "FLEXT_CTX_PURE_PYTHON"
# The entry points this source expects of the compiled module (its ABI constant).
ABI: Final = 10
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def _forced_pure() -> bool:
    raw = os.environ.get(ENVIRONMENT_VARIABLE, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        # Not a boolean: dropped with a warning (the compiled parts stay on), never guessed.
        warnings.warn(
            f"{ENVIRONMENT_VARIABLE}={raw!r} is not a boolean (expected 1/0, true/false, "
            "yes/no, on/off): ignored",
            RuntimeWarning,
            stacklevel=2,
        )
    return False


def _load() -> types.ModuleType | None:
    if _forced_pure():
        return None
    try:
        module = import_module("flext_ctx_aspects._speedups")
    except ModuleNotFoundError:
        return None  # installed without a compiler: pure Python, as documented
    except ImportError as error:
        # Built, but not loadable here (another Python's build, a broken file): say so.
        warnings.warn(
            f"flext_ctx_aspects: the compiled module does not load ({error}); "
            "running the pure-Python implementation",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    if getattr(module, "ABI", None) != ABI:
        # Built from another version of the source (an old in-place build): refused whole.
        warnings.warn(
            "flext_ctx_aspects: the compiled module is out of date (reinstall the package to "
            "rebuild it); running the pure-Python implementation",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return module


speedups: Final = _load()
implementation: Final[Literal["compiled", "python"]] = "python" if speedups is None else "compiled"
"""``"compiled"`` when the compiled parts are built and loaded, else ``"python"``.

``FLEXT_CTX_PURE_PYTHON=1`` before the first import forces ``"python"``. Both behave
identically; the compiled parts are faster (today: the statistics digest, the wrapper's
call entry, the sync drivers, which also add no Python frame between a caller and a
decorated function, and the snapshot updates).
"""
