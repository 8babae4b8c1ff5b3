"""The aspects: ``@with_correlation``, ``@service``, ``@timed``, ``@request_scope``, ``aspect()``.

This module is also the namespace for writing aspects of your own: `aspect`,
`Advice`, `Timing`, `Target`, `Call`, `Source`.

Each decorator works on plain functions, coroutine functions, generator functions, async
generator functions, methods, classmethods and staticmethods (above or below
``@classmethod``/``@staticmethod``), and on classes (see `instrument_class`). Stacked,
they fuse into one wrapper layer.

Every decorator accepts ``enabled=False`` (returns the callable untouched) and ``kind=`` to
declare how a callable runs when it returns an awaitable or a generator without being
declared ``async def`` or containing ``yield`` (``"coroutine"``, ``"generator"``,
``"async_generator"``, ``"function"``).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from flext_ctx_aspects import _options, _state
from flext_ctx_aspects._advice import Advice, Call, CallableKind, Source, Target, Timing
from flext_ctx_aspects._compile import (
    Current,
    CurrentOrNewId,
    MergeMetadata,
    NewId,
    TraceRoot,
)
from flext_ctx_aspects._engine import (
    FixedAdviceAspect,
    apply_aspect,
    apply_aspects,
    apply_deferrable,
    deferrable,
)
from flext_ctx_aspects.typing import Aspect

__all__ = [
    "ASPECTS",
    "Advice",
    "AspectDecorator",
    "Call",
    "CallableKind",
    "Source",
    "Target",
    "Timing",
    "aspect",
    "instrument_class",
    "request_scope",
    "service",
    "timed",
    "with_correlation",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)


class AspectDecorator(Protocol):
    """A configured aspect decorator: keeps the decorated object's type and signature."""

    @overload
    def __call__(self, func: type[T], /) -> type[T]: ...
    @overload
    def __call__(self, func: classmethod[T, P, R_co], /) -> classmethod[T, P, R_co]: ...
    @overload
    def __call__(self, func: staticmethod[P, R_co], /) -> staticmethod[P, R_co]: ...
    @overload
    def __call__(self, func: Callable[P, R_co], /) -> Callable[P, R_co]: ...


class _Decorator:
    """Applies one aspect; the runtime object behind `AspectDecorator`."""

    __slots__ = ("_aspect", "_enabled", "_kind")

    def __init__(self, aspect_: Aspect, enabled: bool, kind: CallableKind | None) -> None:
        self._aspect = aspect_
        self._enabled = enabled
        self._kind = kind

    def __call__(self, func: Any, /) -> Any:
        if not self._enabled:
            return func
        if isinstance(func, property):
            getter = getattr(func.fget, "__qualname__", "the getter")
            raise TypeError(
                f"@{_decorator_name(self._aspect)} cannot wrap a property ({getter}): put it "
                "below @property, directly above the def, to instrument the getter"
            )
        if isinstance(func, type):
            return instrument_class(func, self._aspect, kind=self._kind)
        return apply_aspect(self._aspect, func, self._kind)

    def __repr__(self) -> str:
        return f"<flext_ctx_aspects decorator {self._aspect!r}>"


def stacked(decorators: tuple[Callable[[Any], Any], ...]) -> Callable[[Any], Any]:
    """Return one decorator applying ``decorators`` (outermost first) to a function.

    Aspect decorators of this library are applied in one engine pass (one plan compiled,
    not one per aspect); anything else is applied one by one, innermost first, as stacked
    ``@`` lines would.
    """
    aspects = tuple(d._aspect for d in decorators if isinstance(d, _Decorator))
    one_pass = len(aspects) == len(decorators) and all(
        d._enabled and d._kind is None for d in decorators if isinstance(d, _Decorator)
    )
    # Known once for the stack, not once per function of an instrumented package.
    deferred = one_pass and deferrable(aspects)

    def apply(func: Any) -> Any:
        if deferred and type(func) is _FunctionType:
            return apply_deferrable(aspects, func)
        if one_pass and not isinstance(func, (type, property)):
            return apply_aspects(aspects, func)
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


_FunctionType: Final = types.FunctionType


def _decorator_name(aspect_: object) -> str:
    # The built-in aspects' reprs start with their decorator's name: "timed(...)".
    return repr(aspect_).split("(", 1)[0] or "aspect"


def _check_options(where: str, enabled: object) -> None:
    _options.check_bool(where, "enabled", enabled)


def _refuse_bare(decorator: str, example: str, parameter: str, value: object) -> None:
    """Refuse a decorator factory used without parentheses (the function as a value)."""
    if callable(value) and not isinstance(value, (str, Source)):
        target = getattr(value, "__qualname__", type(value).__name__)
        raise TypeError(
            f"@{decorator} needs parentheses: write @{example} above {target} "
            f"(@{decorator} without them received the function {target} as {parameter})"
        )


_SKIPPED_MEMBER_TYPES = (property, type)
# The built-in aspects below are plain slotted classes rather than dataclasses: each
# dataclass costs about a millisecond of import time (docs/performance.md).


def instrument_class(cls: type[T], aspect_: Aspect, *, kind: CallableKind | None = None) -> type[T]:
    """Apply ``aspect_`` to the methods a class defines itself.

    Instrumented: plain methods, classmethods, staticmethods and already instrumented
    methods found in ``cls.__dict__``. Skipped: dunder methods (``__init__``, ``__repr__``,
    ...), inherited methods, properties, nested classes and non-callable attributes.

    Returns:
        ``cls`` itself, modified in place.
    """
    for name, member in list(vars(cls).items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(member, _SKIPPED_MEMBER_TYPES):
            continue
        if not (
            inspect.isfunction(member)
            or isinstance(member, (classmethod, staticmethod))
            or hasattr(member, "_self_aspects")
        ):
            continue
        setattr(cls, name, apply_aspect(aspect_, member, kind))
    return cls


def aspect(spec: Aspect | Advice | Callable[[Target], Advice]) -> AspectDecorator:
    """Make a decorator from a custom aspect.

    The aspect gets the same semantics as the built-in ones on every callable kind, and
    fuses with them into one wrapper layer.

    Args:
        spec: An object with ``advise(target) -> Advice``, a function ``target -> Advice``,
            or a fixed `Advice`.

    Returns:
        The decorator.

    Example:
        >>> from flext_ctx_aspects import arg
        >>> from flext_ctx_aspects.aspects import Advice, aspect
        >>> tenant_scope = aspect(Advice(fields={"tenant_id": arg("tenant")}))
        >>> @tenant_scope
        ... def handle(tenant: str) -> str:
        ...     return tenant
    """
    if isinstance(spec, Advice):
        return _Decorator(_FixedAdvice(spec), enabled=True, kind=None)
    if isinstance(spec, Aspect):
        return _Decorator(spec, enabled=True, kind=None)
    if callable(spec):
        return _Decorator(_AdviceFunction(spec), enabled=True, kind=None)
    raise TypeError(
        f"aspect() takes an Aspect, an Advice or a function returning one "
        f"(got {type(spec).__qualname__})"
    )


class _FixedAdvice:
    __slots__ = ("advice",)

    def __init__(self, advice: Advice) -> None:
        self.advice = advice

    def __repr__(self) -> str:
        return f"aspect({self.advice!r})"

    def advise(self, target: Target) -> Advice:
        return self.advice


class _AdviceFunction:
    __slots__ = ("function",)

    def __init__(self, function: Callable[[Target], Advice]) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"aspect({self.function!r})"

    def advise(self, target: Target) -> Advice:
        return self.function(target)


# --- @with_correlation ----------------------------------------------------------------------


class _Correlation(FixedAdviceAspect):
    __slots__ = ("inherit",)

    def __init__(self, inherit: bool) -> None:
        self.inherit = inherit
        # Target-independent (its sources are stateless): built once, as for @timed.
        if inherit:
            self._fix(
                Advice(
                    fields={
                        "correlation_id": CurrentOrNewId("correlation_id"),
                        "trace_id": TraceRoot(),
                    }
                )
            )
        else:
            self._fix(
                Advice(
                    fields={
                        "correlation_id": NewId(),
                        "parent_correlation_id": Current("correlation_id"),
                        "trace_id": TraceRoot(),
                    }
                )
            )

    def __repr__(self) -> str:
        return f"with_correlation(inherit={self.inherit!r})"


@overload
def with_correlation(func: type[T], /) -> type[T]: ...
@overload
def with_correlation(func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
@overload
def with_correlation(func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
@overload
def with_correlation(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def with_correlation(
    *, inherit: bool = False, enabled: bool = True, kind: CallableKind | None = None
) -> AspectDecorator: ...
def with_correlation(
    func: Any = None,
    /,
    *,
    inherit: bool = False,
    enabled: bool = True,
    kind: CallableKind | None = None,
) -> Any:
    """Run each call in a new correlation id whose parent is the caller's.

    Usable bare (``@with_correlation``) or configured (``@with_correlation(inherit=True)``).

    Args:
        func: The callable, when used bare.
        inherit: Reuse the caller's correlation id when there is one (a new id otherwise).
        enabled: False returns the callable untouched.
        kind: Explicit callable kind (see module docs).

    Returns:
        The instrumented callable, or a decorator when called with options only.
    """
    _options.check_bool("@with_correlation()", "inherit", inherit)
    _check_options("@with_correlation()", enabled)
    decorator = _Decorator(_Correlation(inherit), enabled, kind)
    return decorator if func is None else decorator(func)


# --- @service -------------------------------------------------------------------------------


def _check_name(parameter: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if isinstance(value, Source):
        return
    if not isinstance(value, str) or not value:
        raise TypeError(f"{parameter} must be a non-empty str (got {value!r})")
    if not value.isprintable():
        raise ValueError(f"{parameter} must not contain control characters (got {value!r})")


_VALIDATORS: Final = {f.name: f.validator for f in _state.FIELDS if f.validator is not None}


def _field_value(field: str, parameter: str, value: Any, *, required: bool = False) -> Any:
    """Return ``value`` cleaned by the field's one validator; sources pass through.

    The validator is the one every other way of setting the field uses (``service_context``,
    inbound headers), so a value accepted here is never dropped on the other side.

    Raises:
        TypeError: Not a str (nor a source), or missing when required.
        InvalidValueError: Not a valid value for the field (non-ASCII, control characters,
            too long, empty).
    """
    if value is None and not required:
        return None
    if isinstance(value, Source):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{parameter} must be a str (got {value!r}, a {type(value).__name__})")
    return _VALIDATORS[field](parameter, value)


class _Service(FixedAdviceAspect):
    __slots__ = ("environment", "name", "version")

    def __init__(
        self, name: str | Source, version: str | Source | None, environment: str | Source | None
    ) -> None:
        self.name = name
        self.version = version
        self.environment = environment
        # Target-independent (a source is resolved per target by the engine): built once.
        # The values were validated by service() already.
        self._fix(
            Advice(
                fields={
                    "service_name": name,
                    "service_version": version,
                    "service_environment": environment,
                }
            )
        )

    def __repr__(self) -> str:
        return f"service({self.name!r}, {self.version!r}, {self.environment!r})"


def service(
    name: str | Source,
    version: str | Source | None = None,
    environment: str | Source | None = None,
    *,
    enabled: bool = True,
    kind: CallableKind | None = None,
) -> AspectDecorator:
    """Run each call as service ``name`` (with ``version`` and ``environment``).

    Args:
        name: Service name, e.g. ``"user-service"`` (or a source such as ``arg("svc")``).
        version: Service version, e.g. ``"1.2.0"``.
        environment: Deployment environment, e.g. ``"production"``.
        enabled: False returns the callable untouched.
        kind: Explicit callable kind (see module docs).

    Raises:
        TypeError: ``name`` is not a string or source.
        InvalidValueError: A value is not valid for its field, as ``service_context`` and
            inbound headers refuse it (1 to 256 visible ASCII characters, inner spaces
            allowed; surrounding spaces are removed).
    """
    _refuse_bare("service", 'service("my-service")', "the service name", name)
    _check_options("@service()", enabled)
    return _Decorator(
        _Service(
            _field_value("service_name", "service name", name, required=True),
            _field_value("service_version", "service version", version),
            _field_value("service_environment", "service environment", environment),
        ),
        enabled,
        kind,
    )


# --- @timed -----------------------------------------------------------------------------------


class _Timed(FixedAdviceAspect):
    __slots__ = ("timing",)

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        # The same for every target (Advice is frozen): built once, not once per function of
        # an instrumented package.
        self._fix(Advice(timing=timing))

    def __repr__(self) -> str:
        return f"timed({self.timing!r})"


@overload
def timed(func: type[T], /) -> type[T]: ...
@overload
def timed(func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
@overload
def timed(func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
@overload
def timed(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def timed(
    func: str,
    /,
    *,
    min_duration_ms: float = 0.0,
    keep_errors: bool = True,
    measure_body: bool = False,
    enabled: bool = True,
    kind: CallableKind | None = None,
) -> AspectDecorator: ...
@overload
def timed(
    *,
    name: str | None = None,
    min_duration_ms: float = 0.0,
    keep_errors: bool = True,
    measure_body: bool = False,
    enabled: bool = True,
    kind: CallableKind | None = None,
) -> AspectDecorator: ...
def timed(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    min_duration_ms: float = 0.0,
    keep_errors: bool = True,
    measure_body: bool = False,
    enabled: bool = True,
    kind: CallableKind | None = None,
) -> Any:
    """Time each call and record it as an operation (see ``capture_operations`` and sinks).

    For generators and async generators the operation runs from the first resume to
    exhaustion or close.

    Args:
        func: The callable, when used bare (``@timed``), or the operation name
            (``@timed("orders.create")`` is ``@timed(name="orders.create")``).
        name: Operation name; defaults to ``module.qualname`` of the callable.
        min_duration_ms: Milliseconds; faster calls are not recorded, decided per call at its
            end.
        keep_errors: Record failed calls even when faster than ``min_duration_ms``.
        measure_body: Generators: also record the time spent in the body, excluding time
            suspended at ``yield`` (``OperationRecord.body_duration_ns``).
        enabled: False returns the callable untouched.
        kind: Explicit callable kind (see module docs).

    Raises:
        ConfigError: ``min_duration_ms`` is not a number >= 0 (``"1"`` is refused), or
            ``keep_errors``/``measure_body``/``enabled`` is not a bool (a ``ValueError``).
        TypeError: ``name`` is given but is not a non-empty string.
    """
    where = "@timed()"
    if isinstance(func, str):
        # @timed("orders.create"): the positional name users write first.
        if name is not None:
            raise TypeError(
                f"@timed got two names: {func!r} and name={name!r}; give one, e.g. "
                f"@timed(name={func!r})"
            )
        name, func = func, None
    if name is not None:
        _check_name("timed name", name, required=True)
    min_duration = _options.check_number(where, "min_duration_ms", min_duration_ms, low=0)
    _options.check_bool(where, "keep_errors", keep_errors)
    _options.check_bool(where, "measure_body", measure_body)
    _check_options(where, enabled)
    timing = Timing(
        name=name,
        min_duration_ns=round(min_duration * 1_000_000),
        keep_errors=keep_errors,
        measure_body=measure_body,
    )
    decorator = _Decorator(_Timed(timing), enabled, kind)
    return decorator if func is None else decorator(func)


# --- @request_scope -------------------------------------------------------------------------


class _RequestScope:
    __slots__ = ("metadata", "operation_name", "request_id", "user_id")

    def __init__(
        self,
        user_id: str | Source | None,
        operation_name: str | Source | None,
        request_id: str | Source | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        self.user_id = user_id
        self.operation_name = operation_name
        self.request_id = request_id
        self.metadata = metadata

    def __repr__(self) -> str:
        return (
            f"request_scope(user_id={self.user_id!r}, operation_name={self.operation_name!r}, "
            f"request_id={self.request_id!r}, metadata={self.metadata!r})"
        )

    def advise(self, target: Target) -> Advice:
        fields: dict[str, Any] = {
            "operation_name": self.operation_name
            if self.operation_name is not None
            else target.qualname,
        }
        if self.user_id is not None:
            fields["user_id"] = self.user_id
        if self.request_id is None:
            fields["request_id"] = CurrentOrNewId("request_id")
        elif isinstance(self.request_id, Source):
            fields["request_id"] = CurrentOrNewId("request_id", self.request_id)
        else:
            fields["request_id"] = self.request_id
        if self.metadata:
            fields["request_metadata"] = MergeMetadata(self.metadata)
        return Advice(fields=fields)


def request_scope(
    user_id: str | Source | None = None,
    operation_name: str | Source | None = None,
    request_id: str | Source | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    enabled: bool = True,
    kind: CallableKind | None = None,
) -> AspectDecorator:
    """Run each call in a request scope: user, operation name, request id and metadata.

    Any value may be taken from the call's own arguments with `arg` (or
    `from_call`), e.g. ``@request_scope(user_id=arg("user", lambda u: u.id))``.

    Args:
        user_id: The user the request runs for; None keeps the caller's.
        operation_name: Defaults to the function's ``__qualname__``.
        request_id: None keeps the caller's request id, or generates one when there is
            none; a source that yields None does the same.
        metadata: Request metadata merged over the caller's; values may be sources.
        enabled: False returns the callable untouched.
        kind: Explicit callable kind (see module docs).

    Raises:
        TypeError: A value has the wrong type, or ``metadata`` has non-str keys.
        InvalidValueError: A value is not valid for its field (the same rule as
            ``request_context`` and inbound headers).
    """
    _refuse_bare("request_scope", "request_scope()", "user_id", user_id)
    _check_options("@request_scope()", enabled)
    user_id = _field_value("user_id", "user_id", user_id)
    operation_name = _field_value("operation_name", "operation_name", operation_name)
    request_id = _field_value("request_id", "request_id", request_id)
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping (got {type(metadata).__qualname__})")
        bad_keys = [key for key in metadata if not isinstance(key, str)]
        if bad_keys:
            raise TypeError(f"metadata keys must be str (got {bad_keys[0]!r})")
    return _Decorator(
        _RequestScope(user_id, operation_name, request_id, dict(metadata or {})), enabled, kind
    )


# The built-in aspects by the names configuration uses (``aspects = ["timed", ...]`` in the
# ``[tool.flext_ctx_aspects.instrument]`` table): name -> the decorator factory.
ASPECTS: Final[Mapping[str, Callable[..., Any]]] = {
    "timed": timed,
    "with_correlation": with_correlation,
    "service": service,
    "request_scope": request_scope,
}
