"""Which functions look at their caller's frame (and would see the wrapper's instead).

A Python driver (pure-Python engine; generators, coroutines and async generators always) adds
one Python frame between a function and its caller. A function that reads
``sys._getframe(1)``, ``inspect.currentframe().f_back``, ``inspect.stack()``, or passes
``stacklevel=`` to ``warnings.warn`` or to a logging call would then report the wrapper as
its caller. Such functions are found by scanning their code objects (and the code of their
nested functions, lambdas and comprehensions) for the names these operations use, and by
following calls to functions of the same module that do. They are not wrapped; the plan
lists them as "frame-sensitive". Sync functions whose wrapper is a compiled driver (no
frame: `flext_ctx_aspects._engine.sync_wrapper_adds_frame`) are not scanned: they are wrapped
and see their real caller.

Not detectable this way: a stack level passed positionally through a variable, or frames
reached through an object of another module. A positional ``warnings.warn(msg, cat, 2)`` is
caught by its constant.
"""

from __future__ import annotations

import inspect
import sys
import traceback
import types
import warnings
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FrameScan", "frame_use"]

# Attribute and global names whose use means the code walks frames.
_FRAME_NAMES: Final = frozenset(
    {
        "_getframe",
        "_getframemodulename",
        "currentframe",
        "f_back",
        "getouterframes",
        "getinnerframes",
        "getframeinfo",
        "extract_stack",
        "format_stack",
        "print_stack",
        "walk_stack",
        "findCaller",
        "stacklevel",
    }
)
_CodeType: Final = types.CodeType
_FunctionType: Final = types.FunctionType
_FRAME_FUNCTIONS: Final = frozenset(
    id(function)
    for function in (
        sys._getframe,
        inspect.currentframe,
        inspect.stack,
        inspect.getouterframes,
        traceback.extract_stack,
        traceback.print_stack,
        traceback.format_stack,
        traceback.walk_stack,
    )
)


class FrameScan:
    """One module's frame scan: its namespace, the aliases of frame functions, the results.

    Results are kept by ``id(code)`` across the module's functions (helpers are scanned once).
    """

    __slots__ = ("aliases", "memo", "namespace")

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.memo: dict[int, str | None] = {}
        # Names of the module bound to a frame function (``from sys import _getframe as f``):
        # found once per module, not by looking up every name of every function.
        self.aliases = frozenset(
            name for name, value in namespace.items() if id(value) in _FRAME_FUNCTIONS
        )


def _direct_use(code: types.CodeType, scan: FrameScan, visited: list[types.CodeType]) -> str | None:
    """What in ``code`` or its nested code walks frames; ``visited`` gets the code scanned.

    Depth-first, in definition order (the reason names the first hit); each code object's
    constants are read once.
    """
    pending = [code]
    while pending:
        inner = pending.pop()
        visited.append(inner)
        names = inner.co_names
        if not _FRAME_NAMES.isdisjoint(names):
            return min(_FRAME_NAMES.intersection(names))
        if "stack" in names and "inspect" in names:
            return "inspect.stack"
        if "stacklevel" in inner.co_varnames:
            return "stacklevel"
        nested = None
        stack_level = False
        for const in inner.co_consts:
            kind = type(const)
            if kind is tuple:
                # Keyword names of calls are a tuple constant (``f(x, stacklevel=2)``).
                if "stacklevel" in const:
                    return "stacklevel"
            elif kind is int:
                stack_level = stack_level or const >= 2
            elif kind is _CodeType:
                if nested is None:
                    nested = [const]
                else:
                    nested.append(const)
        if (
            stack_level
            and "warn" in names
            and ("warnings" in names or scan.namespace.get("warn") is warnings.warn)
        ):
            # warnings.warn(message, category, 2): a positional stack level.
            return "warnings.warn with a stack level"
        if scan.aliases and not scan.aliases.isdisjoint(names):
            return min(scan.aliases.intersection(names))
        if nested is not None:
            nested.reverse()
            pending.extend(nested)
    return None


def frame_use(function: types.FunctionType, scan: FrameScan) -> str | None:
    """What makes ``function`` frame-sensitive, or None.

    Args:
        function: The function to scan.
        scan: Its module's scan (`FrameScan` of the module's globals: aliases such as
            ``from sys import _getframe as f``, and helpers of the same module it calls).

    Returns:
        A short description ("_getframe", "stacklevel", "calls frame-sensitive helper") or
        None when nothing was found.
    """
    memo = scan.memo
    code = function.__code__
    key = id(code)
    if key in memo:
        return memo[key]
    memo[key] = None  # recursion guard for mutually recursive helpers
    codes: list[types.CodeType] = []
    found = _direct_use(code, scan, codes)
    if found is None:
        namespace = scan.namespace
        module = function.__module__
        for inner in codes:
            for name in inner.co_names:
                helper = namespace.get(name)
                if (
                    type(helper) is _FunctionType
                    and helper is not function
                    and helper.__module__ == module
                    and frame_use(helper, scan) is not None
                ):
                    found = f"calls frame-sensitive {name}()"
                    break
            if found is not None:
                break
    memo[key] = found
    return found
