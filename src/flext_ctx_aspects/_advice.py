"""What an aspect asks the engine to do: the ``Advice`` data model and value sources.

An aspect is consulted once, at decoration time, with a :class:`Target` describing the
callable; it answers with an :class:`Advice`: context fields to set while the body runs
(constants, or values taken from the call's arguments), an optional timing, and optional
``before``/``after`` hooks. The engine compiles the advice of every aspect stacked on a
function into one wrapper, so aspects never deal with callable kinds themselves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

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


@dataclass(frozen=True, slots=True)
class Target:
    """The callable an aspect is applied to, as the engine sees it at decoration time.

    Attributes:
        function: The underlying function (``__func__`` of a classmethod/staticmethod).
        kind: How it runs: plain function, coroutine, generator or async generator.
        module: ``__module__`` of the function ("" when unknown).
        qualname: ``__qualname__`` of the function (its ``repr`` when unknown).
    """

    function: Callable[..., Any]
    kind: CallableKind
    module: str
    qualname: str

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


@dataclass(frozen=True, slots=True)
class Timing:
    """Ask the engine to time each call and emit an operation record.

    Attributes:
        name: Operation name; None means ``module.qualname`` of the target.
        min_duration_s: Calls faster than this are not recorded (decided per call, at its
            end), unless they failed and ``keep_errors`` is true.
        keep_errors: Always record failed calls, however fast.
        measure_body: For generators and async generators, also measure the time spent
            inside the body, excluding time suspended at ``yield`` (two clock reads per
            item).
    """

    name: str | None = None
    min_duration_s: float = 0.0
    keep_errors: bool = True
    measure_body: bool = False

    def __post_init__(self) -> None:
        if self.min_duration_s < 0:
            raise ValueError(f"min_duration must be >= 0 seconds (got {self.min_duration_s!r})")


@dataclass(frozen=True, slots=True)
class Advice:
    """What an aspect contributes to each call.

    Attributes:
        fields: Context fields to set while the body runs, by name: the built-in fields
            (``correlation_id``, ``service_name``, ``user_id``, ``request_id``, ...) or custom
            fields declared on a ``FlextContext`` subclass. Values are constants or sources
            (:func:`arg`, :func:`from_call`).
        timing: Time each call and record it.
        before: Called with the :class:`Call` when the body starts, inside the aspect's
            context (for generators: at the first resume).
        after: Called with the :class:`Call` and the exception (or None) when the body ends.
    """

    fields: Mapping[str, Any] = field(default_factory=dict)
    timing: Timing | None = None
    before: Callable[[Call], None] | None = None
    after: Callable[[Call, BaseException | None], None] | None = None


class Source:
    """A value computed per call. Use :func:`arg` and :func:`from_call` to make one."""

    __slots__ = ()

    def resolver(self, target: Target) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        """Return ``resolve(instance, args, kwargs) -> value`` for ``target``.

        Raises:
            TypeError: The source does not fit the target (e.g. no such parameter).
        """
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Argument(Source):
    name: str
    transform: Callable[[Any], Any] | None = None

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


@dataclass(frozen=True, slots=True)
class _FromCall(Source):
    function: Callable[[inspect.BoundArguments], Any]

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
    Binding costs a few microseconds per call: prefer :func:`arg` on hot paths.
    """
    return _FromCall(function)
