"""What an aspect asks the engine to do: the ``Advice`` data model and value sources.

An aspect is consulted once, at decoration time, with a `Target` describing the
callable; it answers with an `Advice`: context fields to set while the body runs
(constants, or values taken from the call's arguments), an optional timing, and optional
``before``/``after`` hooks. The engine compiles the advice of every aspect stacked on a
function into one wrapper, so aspects never deal with callable kinds themselves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

__all__ = [
    "Advice",
    "Call",
    "CallableKind",
    "Source",
    "Target",
    "Timing",
    "arg",
    "from_call",
]

CallableKind = Literal["function", "coroutine", "generator", "async_generator"]


class _Frozen:
    """Base of the frozen, slotted value classes below.

    Hand-written rather than ``@dataclass(frozen=True, slots=True)``: those classes are
    created at import time, where each dataclass cost about a millisecond of the 20 ms
    import budget (docs/architecture.md). Same behaviour: keyword or positional
    construction, equality by value, a readable repr, no attribute assignment.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        items = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({items})"


_set = object.__setattr__


def _check_type(where: str, value: object, expected: type | tuple[type, ...], what: str) -> None:
    # bool is an int subclass, and "false" is truthy: options get exactly the type they name.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise TypeError(f"{where} must be {what} (got {type(value).__name__}: {value!r})")


class Target(_Frozen):
    """The callable an aspect is applied to, as the engine sees it at decoration time.

    Attributes:
        function: The underlying function (``__func__`` of a classmethod/staticmethod).
        kind: How it runs: plain function, coroutine, generator or async generator.
        module: ``__module__`` of the function ("" when unknown).
        qualname: ``__qualname__`` of the function (its ``repr`` when unknown).
    """

    __slots__ = ("function", "kind", "module", "qualname")
    _fields = __slots__
    function: Callable[..., Any]
    kind: CallableKind
    module: str
    qualname: str

    def __init__(
        self, function: Callable[..., Any], kind: CallableKind, module: str, qualname: str
    ) -> None:
        _set(self, "function", function)
        _set(self, "kind", kind)
        _set(self, "module", module)
        _set(self, "qualname", qualname)

    @property
    def default_name(self) -> str:
        """``module.qualname``: the default operation name of ``@timed``."""
        return f"{self.module}.{self.qualname}" if self.module else self.qualname

    def signature(self) -> inspect.Signature | None:
        """Return the function's signature, or None when it has none (some builtins)."""
        try:
            return inspect.signature(self.function)
        except (TypeError, ValueError):
            return None


class Call(NamedTuple):
    """One call of an instrumented callable, as passed to ``before``/``after`` hooks.

    ``instance`` is the bound ``self`` or ``cls`` when the callable was called as a method
    (then ``args`` excludes it), None otherwise.
    """

    target: Target
    instance: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Timing(_Frozen):
    """Ask the engine to time each call and emit an operation record.

    Attributes:
        name: Operation name; None means ``module.qualname`` of the target.
        min_duration_ns: Calls faster than this many nanoseconds are not recorded (decided
            per call, at its end), unless they failed and ``keep_errors`` is true.
        keep_errors: Always record failed calls, however fast.
        measure_body: For generators and async generators, also measure the time spent
            inside the body, excluding time suspended at ``yield`` (two clock reads per
            item).
    """

    __slots__ = ("keep_errors", "measure_body", "min_duration_ns", "name")
    _fields = ("name", "min_duration_ns", "keep_errors", "measure_body")
    name: str | None
    min_duration_ns: int
    keep_errors: bool
    measure_body: bool

    def __init__(
        self,
        name: str | None = None,
        min_duration_ns: int = 0,
        keep_errors: bool = True,
        measure_body: bool = False,
    ) -> None:
        if name is not None:
            _check_type("Timing name", name, str, "a str or None")
            if not name:
                raise ValueError("Timing name must not be empty (use None for the default)")
        _check_type("Timing min_duration_ns", min_duration_ns, int, "an int")
        _check_type("Timing keep_errors", keep_errors, bool, "a bool")
        _check_type("Timing measure_body", measure_body, bool, "a bool")
        if min_duration_ns < 0:
            raise ValueError(f"min_duration_ns must be >= 0 (got {min_duration_ns!r})")
        _set(self, "name", name)
        _set(self, "min_duration_ns", min_duration_ns)
        _set(self, "keep_errors", keep_errors)
        _set(self, "measure_body", measure_body)


class Advice(_Frozen):
    """What an aspect contributes to each call.

    Attributes:
        fields: Context fields to set while the body runs, by name: the built-in fields
            (``correlation_id``, ``service_name``, ``user_id``, ``request_id``, ...) or custom
            fields declared on a ``FlextContext`` subclass. Values are constants or sources
            (`arg`, `from_call`).
        timing: Time each call and record it.
        before: Called with the `Call` when the body starts, inside the aspect's
            context (for generators: at the first resume).
        after: Called with the `Call` and the exception (or None) when the body ends.
    """

    __slots__ = ("after", "before", "fields", "timing")
    _fields = ("fields", "timing", "before", "after")
    fields: Mapping[str, Any]
    timing: Timing | None
    before: Callable[[Call], None] | None
    after: Callable[[Call, BaseException | None], None] | None

    def __init__(
        self,
        fields: Mapping[str, Any] | None = None,
        timing: Timing | None = None,
        before: Callable[[Call], None] | None = None,
        after: Callable[[Call, BaseException | None], None] | None = None,
    ) -> None:
        if fields is not None:
            _check_type("Advice fields", fields, Mapping, "a mapping of field names to values")
            for name in fields:
                _check_type("Advice field name", name, str, "a str")
        if timing is not None:
            _check_type("Advice timing", timing, Timing, "a Timing or None")
        for hook_name, hook in (("before", before), ("after", after)):
            if hook is not None and not callable(hook):
                raise TypeError(
                    f"Advice {hook_name} must be callable or None (got {type(hook).__name__})"
                )
        _set(self, "fields", dict(fields) if fields is not None else {})
        _set(self, "timing", timing)
        _set(self, "before", before)
        _set(self, "after", after)


class Source:
    """A value computed per call. Use `arg` and `from_call` to make one."""

    __slots__ = ()

    def resolver(self, target: Target) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        """Return ``resolve(instance, args, kwargs) -> value`` for ``target``.

        Raises:
            TypeError: The source does not fit the target (e.g. no such parameter).
        """
        raise NotImplementedError


class _Argument(Source):
    # Plain slotted classes, not dataclasses: see aspects.py on import time.
    __slots__ = ("name", "transform")

    def __init__(self, name: str, transform: Callable[[Any], Any] | None = None) -> None:
        self.name = name
        self.transform = transform

    def __repr__(self) -> str:
        return f"arg({self.name!r})" if self.transform is None else f"arg({self.name!r}, ...)"

    def resolver(self, target: Target) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        signature = target.signature()
        if signature is None:
            raise TypeError(f"arg({self.name!r}): {target.qualname} has no inspectable signature")
        parameter = signature.parameters.get(self.name)
        if parameter is None or parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            accepts_any = any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
            )
            if parameter is None and accepts_any:
                return self._from_kwargs(None)
            names = ", ".join(signature.parameters) or "none"
            raise TypeError(
                f"arg({self.name!r}): {target.qualname}() has no parameter {self.name!r} "
                f"(its parameters: {names})"
            )
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            return self._from_kwargs(default)
        position = list(signature.parameters).index(self.name)
        name = self.name
        transform = self.transform
        positional_only = parameter.kind is inspect.Parameter.POSITIONAL_ONLY

        def resolve(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # Called as a bound method, the first parameter (self/cls) is not in args.
            index = position - 1 if instance is not None else position
            if 0 <= index < len(args):
                value = args[index]
            elif positional_only:
                value = default
            else:
                value = kwargs.get(name, default)
            return value if transform is None or value is None else transform(value)

        return resolve

    def _from_kwargs(self, default: Any) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        name = self.name
        transform = self.transform

        def resolve(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            value = kwargs.get(name, default)
            return value if transform is None or value is None else transform(value)

        return resolve


class _FromCall(Source):
    __slots__ = ("function",)

    def __init__(self, function: Callable[[inspect.BoundArguments], Any]) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"from_call({self.function!r})"

    def resolver(self, target: Target) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        signature = target.signature()
        if signature is None:
            raise TypeError(f"from_call(): {target.qualname} has no inspectable signature")
        function = self.function

        def resolve(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            bound = (
                signature.bind(instance, *args, **kwargs)
                if instance is not None
                else signature.bind(*args, **kwargs)
            )
            bound.apply_defaults()
            return function(bound)

        return resolve


def arg(name: str, transform: Callable[[Any], Any] | None = None) -> Source:
    """Take a context value from the call's argument ``name``.

    The parameter is located once at decoration time; at call time reading it is an index
    or a dict lookup. A missing argument gives the parameter's default (or None).

    Args:
        name: Parameter name of the decorated callable.
        transform: Applied to the argument when it is not None, e.g. ``lambda u: u.id``.

    Returns:
        A source usable as any field value of ``request_scope``, ``service`` or an Advice.

    Raises:
        TypeError: At decoration time, when the callable has no such parameter.
    """
    return _Argument(name, transform)


def from_call(function: Callable[[inspect.BoundArguments], Any]) -> Source:
    """Compute a context value from all the call's arguments.

    ``function`` receives the ``inspect.BoundArguments`` of the call (defaults applied).
    Binding costs a few microseconds per call: prefer `arg` on hot paths.
    """
    return _FromCall(function)
