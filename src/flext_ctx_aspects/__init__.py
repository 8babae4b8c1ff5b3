"""flext_ctx_aspects: request/trace context for any Python callable, at almost no cost per call.

Correlation ids with parent tracking, service identity, request metadata and operation
timing, as decorators (``@with_correlation``, ``@service``, ``@timed``, ``@request_scope``)
that work on every callable kind and fuse into one wrapper layer, plus the ``FlextContext``
facade over the same state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flext_ctx_aspects._advice import arg, from_call
from flext_ctx_aspects._engine import is_enabled, set_enabled
from flext_ctx_aspects._native import implementation
from flext_ctx_aspects.aspects import request_scope, service, timed, with_correlation
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.facade import FlextContext
from flext_ctx_aspects.fields import ContextField
from flext_ctx_aspects.result import FlextResult
from flext_ctx_aspects.typing import FlextTypes
from flext_ctx_aspects.utilities import FlextUtilities

if TYPE_CHECKING:
    from flext_ctx_aspects.settings import Settings, apply_settings, current_settings

# Imported on first use (PEP 562): settings are only needed by programs that configure.
_LAZY = {
    "Settings": "flext_ctx_aspects.settings",
    "apply_settings": "flext_ctx_aspects.settings",
    "current_settings": "flext_ctx_aspects.settings",
}

# The pinned names and what every user needs. Each object has one import path: writing
# aspects (``Advice``, ``aspect``...) is ``flext_ctx_aspects.aspects``; records and sinks are
# ``flext_ctx_aspects.records`` / ``.sinks``; errors ``.errors``; protocols ``.typing``.
__all__ = [
    "ContextField",
    "FlextConstants",
    "FlextContext",
    "FlextResult",
    "FlextTypes",
    "FlextUtilities",
    "Settings",
    "__version__",
    "apply_settings",
    "arg",
    "current_settings",
    "from_call",
    "implementation",
    "is_enabled",
    "request_scope",
    "service",
    "set_enabled",
    "timed",
    "with_correlation",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is not None:
        import importlib

        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value
        return value
    # The version is read from the installed metadata on first use, not at import time.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("flext-ctx-aspects")
        except PackageNotFoundError:  # running from a source tree that is not installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'flext_ctx_aspects' has no attribute {name!r}")
