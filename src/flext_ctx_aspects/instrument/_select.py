"""The one selection function: what gets wrapped in a module, and what is skipped and why.

Shared by ``flext-ctx plan`` and the import hook, so the plan is never a guess. Selection
only reads: it never changes a module or a class.

Wrapped: Python functions, coroutine, generator and async generator functions, and methods
(plain, classmethod, staticmethod) *defined in the module*, found as module attributes and as
attributes of the classes the module defines (nested classes too), whose qualified name
resolves back to them (so they pickle by reference). Each original appears once, with every
place it is stored (``b = a``, a module function stored as a class attribute): one wrapper
replaces it in all of them, so identity holds.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from flext_ctx_aspects._engine import AspectWrapper, detect_kind, sync_wrapper_adds_frame
from flext_ctx_aspects.config import AspectSpec, Config
from flext_ctx_aspects.instrument._frames import FrameScan, frame_use

__all__ = [
    "NO_INSTRUMENT_ATTRIBUTE",
    "ModulePlan",
    "Selected",
    "Skipped",
    "module_refusal",
    "select_module",
]

NO_INSTRUMENT_ATTRIBUTE: Final = "__flext_ctx_no_instrument__"

# Dunders the interpreter calls implicitly, at class creation, on attribute access, when
# copying or pickling: never wrapped, even when a pattern names them.
NEVER_WRAPPED: Final = frozenset(
    {
        "__init_subclass__",
        "__class_getitem__",
        "__subclasshook__",
        "__set_name__",
        "__new__",
        "__getattribute__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__get__",
        "__set__",
        "__delete__",
        "__del__",
        "__instancecheck__",
        "__subclasscheck__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__getnewargs__",
        "__getnewargs_ex__",
        "__copy__",
        "__deepcopy__",
        "__mro_entries__",
        "__prepare__",
    }
)
# Never instrumented, whatever the configuration says: the machinery itself.
_OWN_PACKAGES: Final = ("flext_ctx_aspects", "wrapt")
_new_tuple: Final[Any] = tuple.__new__
_FunctionType: Final = types.FunctionType
# Code flags of the functions the engine does not drive as plain (sync) functions.
_NOT_SYNC: Final = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_C_CALLABLES: Final = (
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
)
_TEST_PART: Final = re.compile(r"(test_.*|.*_test|tests?|conftest)")


class Selected(NamedTuple):
    """A callable that gets wrapped (a named tuple: thousands are made per large import).

    Attributes:
        module: Module name.
        qualname: Qualified name in that module.
        binding: ``"function"``, ``"method"``, ``"classmethod"`` or ``"staticmethod"``.
        aspects: The aspects applied, outermost first.
        original: The object replaced (a function, classmethod or staticmethod).
        places: Every ``(owner, attribute)`` where it is stored.
    """

    module: str
    qualname: str
    binding: str
    aspects: tuple[AspectSpec, ...]
    original: Any
    places: tuple[tuple[Any, str], ...]

    @property
    def kind(self) -> str:
        """``"function"``, ``"coroutine"``, ``"generator"`` or ``"async_generator"``."""
        # Computed on demand: the plan shows it, the hook does not need it (the engine
        # detects the kind itself when it wraps).
        return detect_kind(_function_of(self.original))


@dataclass(frozen=True, slots=True)
class Skipped:
    """A callable that is not wrapped, and why."""

    module: str
    qualname: str
    reason: str


@dataclass(slots=True)
class ModulePlan:
    """What `select_module` decided for one module."""

    module: str
    selected: list[Selected] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


_compiled: dict[tuple[str, ...], re.Pattern[str]] = {}


def _any_match(name: str, patterns: tuple[str, ...]) -> str | None:
    """The first of ``patterns`` matching ``name`` (one compiled regex per pattern tuple)."""
    regex = _compiled.get(patterns)
    if regex is None:
        if len(_compiled) > 256:  # configurations are few; never let this grow unbounded
            _compiled.clear()
        body = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or r"(?!)"
        regex = _compiled[patterns] = re.compile(body)
    if regex.match(name) is None:
        return None
    return next(p for p in patterns if fnmatch.fnmatchcase(name, p))


def module_refusal(name: str, config: Config) -> str | None:
    """Why module ``name`` is not instrumented under ``config``, or None if it is."""
    top = name.partition(".")[0]
    if top in _OWN_PACKAGES:
        return f"{top} itself is never instrumented"
    if top in getattr(sys, "stdlib_module_names", ()) or top in sys.builtin_module_names:
        return "standard library"
    ins = config.instrument
    if _any_match(name, ins.include) is None:
        return "not matched by include"
    excluded = _any_match(name, ins.exclude)
    if excluded is not None:
        return f"excluded by {excluded!r}"
    if not ins.include_tests and any(_TEST_PART.fullmatch(p) for p in name.split(".")):
        return "test module (set include_tests = true to instrument it)"
    return None


def _explicitly_named(qualname: str, patterns: tuple[str, ...], prefix: str) -> bool:
    # A private or dunder name is selected only by a pattern that spells the underscore
    # itself ("_*", "Cart.__call__"), never by "*".
    return any(
        fnmatch.fnmatchcase(qualname, pattern)
        and any(part.startswith(prefix) for part in pattern.split("."))
        for pattern in patterns
    )


def _function_of(value: Any) -> Any:
    return value.__func__ if isinstance(value, (classmethod, staticmethod)) else value


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _marked(obj: Any) -> bool:
    # Read from the instance dict: a missing attribute costs an exception inside getattr.
    namespace = getattr(obj, "__dict__", None)
    if namespace and namespace.get(NO_INSTRUMENT_ATTRIBUTE) is True:
        return True
    inner = getattr(obj, "__func__", None)
    return inner is not None and _marked(inner)


class _Walk:
    """One module's scan: candidates by identity, each with every place it is stored."""

    def __init__(self, module: types.ModuleType, config: Config, ours: Callable[[Any], bool]):
        self.module = module
        self.name = module.__name__
        self.namespace = vars(module)
        self.config = config
        self.ours = ours
        self.plan = ModulePlan(self.name)
        self.places: dict[int, list[tuple[Any, str]]] = {}
        self.canonical: dict[int, tuple[Any, str, str, str]] = {}  # id -> owner, attr, qual, bind
        self.objects: dict[int, Any] = {}
        self.frames = FrameScan(self.namespace)
        self.all_functions = "*" in config.instrument.functions
        # Rules whose module glob matches this module: the rest never apply here.
        self.rules = [
            rule for rule in config.instrument.rules if _any_match(self.name, (rule.module,))
        ]
        self.aspects = config.instrument.aspects
        # id(aspects) -> (aspects, whether their sync wrapper adds a frame): few tuples.
        self.frames_added: dict[int, tuple[tuple[AspectSpec, ...], bool]] = {}
        self.default_frameless = not sync_wrapper_adds_frame(
            sum(spec.name == "timed" for spec in self.aspects)
        )

    def skip(self, qualname: str, reason: str) -> None:
        self.plan.skipped.append(Skipped(self.name, qualname, reason))

    def scan(self, owner: Any, prefix: str, seen: set[int]) -> None:
        name = self.name
        objects = self.objects
        places = self.places
        canonical = self.canonical
        binding = "method" if prefix else "function"
        for attribute, value in list(vars(owner).items()):
            qualname = prefix + attribute
            if type(value) is _FunctionType and value.__module__ == name:
                # A function defined here, the common case, without member()'s checks.
                key = id(value)
                stored = places.get(key)
                if stored is None:
                    objects[key] = value
                    places[key] = [(owner, attribute)]
                else:
                    stored.append((owner, attribute))
                if value.__qualname__ == qualname:
                    canonical[key] = (owner, attribute, qualname, binding)
                continue
            if isinstance(value, type):
                if (
                    getattr(value, "__module__", None) == self.name
                    and getattr(value, "__qualname__", None) == qualname
                    and id(value) not in seen
                ):
                    if _marked(value):
                        self.skip(qualname, "@no_instrument")
                        continue
                    seen.add(id(value))
                    self.scan(value, f"{qualname}.", seen)
                continue
            self.member(owner, attribute, qualname, value, in_class=bool(prefix))

    def member(self, owner: Any, attribute: str, qualname: str, value: Any, in_class: bool) -> None:
        if isinstance(value, (AspectWrapper, types.FunctionType, classmethod, staticmethod)):
            pass
        elif isinstance(value, (property, functools.cached_property)):
            self.skip(qualname, f"{type(value).__name__} (runs as attribute access; left as is)")
            return
        elif isinstance(value, _C_CALLABLES):
            if in_class or getattr(value, "__module__", None) == self.name:
                self.skip(qualname, "builtin or C function")
            return
        else:
            # Callables defined here that are not functions (functools.lru_cache, partial
            # objects, callable instances): listed, so the plan explains why they stay as is.
            here = in_class or getattr(value, "__module__", None) == self.name
            if here and callable(value) and not isinstance(value, type):
                self.skip(qualname, f"not a Python function ({type(value).__name__})")
            return
        if isinstance(value, AspectWrapper):
            if self.ours(value):  # only wrappers can be ours: plain functions skip the call
                self.skip(qualname, "already instrumented")
                return
            if getattr(value, "__module__", None) == self.name:
                self.skip(qualname, "already decorated with flext_ctx_aspects aspects")
            return
        function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if not isinstance(function, types.FunctionType):
            self.skip(qualname, f"not a Python function ({type(function).__name__})")
            return
        home = function.__module__
        if home != self.name:
            if attribute == function.__name__ and not in_class:
                self.skip(qualname, f"imported from {home}")
            else:  # an alias of a function of another module, or a decorator's closure
                self.skip(qualname, f"defined in {home} as {function.__qualname__}, not here")
            return
        key = id(value)
        self.objects[key] = value
        self.places.setdefault(key, []).append((owner, attribute))
        if function.__qualname__ == qualname:
            binding = "function" if not in_class else "method"
            if isinstance(value, classmethod):
                binding = "classmethod"
            elif isinstance(value, staticmethod):
                binding = "staticmethod"
            self.canonical[key] = (owner, attribute, qualname, binding)

    def decide(self) -> ModulePlan:
        selected = self.plan.selected
        module = self.name
        places_of = self.places
        canonical = self.canonical
        for key, value in self.objects.items():
            places = tuple(places_of[key])
            home = canonical.get(key)
            function: types.FunctionType = (
                value if type(value) is _FunctionType else _function_of(value)
            )
            if home is None:
                owner, attribute = places[0]
                where = getattr(owner, "__qualname__", None)
                qualname = f"{where}.{attribute}" if isinstance(owner, type) else attribute
                self.skip(
                    qualname,
                    f"not reachable by its qualified name {function.__qualname__!r} "
                    "(would not pickle by reference)",
                )
                continue
            _, attribute, qualname, binding = home
            aspects = self.aspects_for(qualname) if self.rules else self.aspects
            reason = "@no_instrument" if _marked(value) else None
            reason = reason or self.refusal(function, attribute, qualname, aspects)
            if reason is not None:
                self.skip(qualname, reason)
                continue
            if not aspects:
                self.skip(qualname, "a rule gives it no aspects")
                continue
            # The named tuple's C constructor (its __new__ is Python): in field order.
            entry = (module, qualname, binding, aspects, value, places)
            selected.append(_new_tuple(Selected, entry))
        return self.plan

    def refusal(
        self,
        function: types.FunctionType,
        attribute: str,
        qualname: str,
        aspects: tuple[AspectSpec, ...],
    ) -> str | None:
        ins = self.config.instrument
        if attribute in NEVER_WRAPPED:
            return "dunder the interpreter calls implicitly (never wrapped)"
        if _is_dunder(attribute):
            if not _explicitly_named(qualname, ins.functions, "__"):
                return "dunder (name it in functions to wrap it)"
        elif (qualname[0] == "_" or "._" in qualname) and not _explicitly_named(
            qualname, ins.functions, "_"
        ):
            return "private (name it in functions to wrap it)"
        # The common configurations (functions = ["*"], no exclusions) cost no matching.
        if not self.all_functions and _any_match(qualname, ins.functions) is None:
            return "not matched by functions"
        if ins.exclude_functions:
            excluded = _any_match(qualname, ins.exclude_functions)
            if excluded is not None:
                return f"excluded by exclude_functions {excluded!r}"
        if function.__dict__ and function.__dict__.get("__isabstractmethod__", False):
            return "abstract method"
        if self.frameless(aspects) and (
            # detect_kind's answer for a plain function, without the call where it is plain.
            (not function.__code__.co_flags & _NOT_SYNC and not function.__dict__)
            or detect_kind(function) == "function"
        ):
            return None  # a compiled sync driver adds no frame: nothing to look for
        use = frame_use(function, self.frames)
        if use is not None:
            return f"frame-sensitive ({use}): a wrapper would be seen as its caller"
        return None

    def frameless(self, aspects: tuple[AspectSpec, ...]) -> bool:
        """Whether these aspects wrap a sync function without adding a Python frame."""
        if aspects is self.aspects:  # the configuration's own: nearly every function
            return self.default_frameless
        known = self.frames_added.get(id(aspects))
        if known is None or known[0] is not aspects:
            timings = sum(spec.name == "timed" for spec in aspects)
            known = self.frames_added[id(aspects)] = (aspects, sync_wrapper_adds_frame(timings))
        return not known[1]

    def aspects_for(self, qualname: str) -> tuple[AspectSpec, ...]:
        for rule in self.rules:
            if _any_match(qualname, (rule.qualname,)):
                return rule.aspects
        return self.config.instrument.aspects


def select_module(
    module: types.ModuleType, config: Config, ours: Callable[[Any], bool] = lambda _: False
) -> ModulePlan:
    """Decide what to wrap in ``module``; change nothing.

    Args:
        module: An imported module (its name must pass `module_refusal`).
        config: The configuration.
        ours: Tells whether an object is a wrapper an active instrumentation put in place.

    Returns:
        The selected callables (each with all the places it is stored) and the skipped
        ones with their reason, in the module's definition order.
    """
    walk = _Walk(module, config, ours)
    walk.scan(module, "", set())
    return walk.decide()
