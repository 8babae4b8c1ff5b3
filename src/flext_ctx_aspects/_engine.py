"""The aspect engine: one wrapper layer per function, whatever the callable kind.

Only this module knows callable kinds. At decoration time it detects the kind once, asks every
aspect on the function for its `Advice`, compiles their field changes
into one snapshot-building function (see ``_compile``) and picks a driver for the kind:

* plain function: set the snapshot, call, restore; the fast paths are specialised closures.
* coroutine function: the same around ``await``; tokens stay within the awaiting task.
* generator function: the body runs in its own ``contextvars.Context``, entered for each
  resume (``ctx.run(gen.send, value)``), so the aspect's context is visible to the body on
  every resume, never to the consumer between yields, and the generator may be resumed or
  closed from any thread, task or Context. No token is ever held across a ``yield``.
* async generator function: as for generators, each step of the awaitable returned by
  ``asend``/``athrow``/``aclose`` is driven inside the generator's Context. The inner
  generator is hidden from the event loop's asyncgen hooks, so only the outer one is
  finalised by the loop, and it closes the inner one itself, in its Context, exactly once.

The wrapper is a subclass of wrapt's C ``_FunctionWrapperBase``. wrapt's ``FunctionWrapper``
probes ``__wrapped__.__self__`` on every call of a plain function (an AttributeError raised
and cleared in C, ~0.8 µs here); the wrapper below uses a binding label the C code does not
probe for, and still binds as a descriptor through the wrapped function's ``__get__``, so
methods, classmethods and staticmethods work unchanged (measured in docs/architecture.md).
With the compiled parts, its base is ``_speedups.wrapper_base()``: wrapt's type with a
vectorcall entry that hands calls to compiled drivers as they were made.
"""

from __future__ import annotations

import _random
import contextvars
import functools
import inspect
import random
import sys
import time
import types
import warnings
from collections.abc import Callable, Generator
from typing import Any, Final, NamedTuple, cast

from flext_ctx_aspects import _emit, _ids, _state, _trace
from flext_ctx_aspects._advice import Advice, Call, CallableKind, Target
from flext_ctx_aspects._compile import (
    Updater,
    compile_update,
    program_of,
    reads_call,
    target_independent,
)
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects._emit import TimingSpec
from flext_ctx_aspects._native import speedups
from flext_ctx_aspects.fields import field_by_name
from flext_ctx_aspects.records import EMPTY_MAPPING, FrozenDict, OperationRecord

try:  # The C implementation; wrapt falls back to pure Python where it has no extension.
    from wrapt.__wrapt__ import BoundFunctionWrapper, _FunctionWrapperBase
except ImportError:  # pragma: no cover - layout of older wrapt releases
    from wrapt.wrappers import BoundFunctionWrapper, _FunctionWrapperBase

__all__ = [
    "KIND_OVERRIDES",
    "AspectWrapper",
    "apply_aspect",
    "apply_aspects",
    "detect_kind",
    "is_enabled",
    "set_enabled",
]

# A binding label that wrapt's C __call__ does not probe ``__self__`` for (see module doc).
_FUNCTION_BINDING: Final = "flext_ctx_aspects.function"

# One spelling per kind: the same words as ``CallableKind`` and ``OperationRecord.kind``.
KIND_OVERRIDES: Final[dict[str, CallableKind]] = {
    "function": "function",
    "coroutine": "coroutine",
    "generator": "generator",
    "async_generator": "async_generator",
}

_disabled = False
_measure_all_generators = False
_sinks: Final = _emit.active
_direct: Final = _emit.direct
_observer_failed: Final = _emit.observer_failed
_finish: Final = _emit.finish
_clock: Final = time.perf_counter_ns
_get: Final = _state.get
_push: Final = _state.push
_pop: Final = _state.pop
_push_op: Final = _state.push_operation
_pop_op: Final = _state.pop_operation
# Token reset with a by-value fallback when the scope ends in another Context.
_restore: Final = _state.restore
_restore_op: Final = _state.restore_operation
_copy_context: Final = contextvars.copy_context

# The compiled drivers (the sync shapes without hooks) read the same shared state.
_compiled_driver: Callable[..., Wrapper] | None = None if speedups is None else speedups.Driver
# A compiled driver that builds the plan and the real driver at its first call.
_deferred_driver: Callable[[Callable[..., Wrapper], tuple[Any, ...]], Wrapper] | None = (
    None if speedups is None else speedups.Driver.deferred
)


# wrapt's pure-Python __call__ (WRAPT_DISABLE_EXTENSIONS=1) is a Python frame of its own.
_WRAPT_COMPILED: Final = not inspect.isfunction(_FunctionWrapperBase.__call__)


def sync_wrapper_adds_frame(timings: int) -> bool:
    """Whether a sync function's wrapper puts a Python frame between it and its caller.

    Built-in aspects on a plain function (no hooks) with at most one timing get a compiled
    driver, which with wrapt's C extension adds no frame: ``sys._getframe(1)``,
    ``warnings.warn(stacklevel=2)`` and logging's ``stacklevel`` see the real caller.
    """
    return _compiled_driver is None or not _WRAPT_COMPILED or timings > 1


def use_compiled_drivers(*, enabled: bool) -> bool:
    """Decorate with the compiled drivers and updates (where built) or Python ones from now on.

    Returns the previous setting. Already decorated functions keep theirs. For the tests and
    benchmarks that compare both implementations in one process; users switch with
    ``FLEXT_CTX_PURE_PYTHON``.
    """
    global _compiled_driver, _deferred_driver
    previous = _compiled_driver is not None
    _compiled_driver = speedups.Driver if enabled and speedups is not None else None
    _deferred_driver = speedups.Driver.deferred if enabled and speedups is not None else None
    return previous


if speedups is not None:
    speedups.configure_drivers(
        _sinks,
        _direct,
        _finish,
        _observer_failed,
        report_internal_error,
        _state._snapshot,
        _state._operation,
        _clock,
    )
    speedups.configure_records(
        _emit.record_path,
        _emit._emitting,
        _emit._wall,
        _emit.sink_failed,
        OperationRecord,
        FrozenDict,
        EMPTY_MAPPING,
        time.time_ns,
        _emit.WALL_RESYNC_NS,
    )


def _configure_updates() -> bool:
    if speedups is None:
        return False
    # The compiled update draws ids from _ids.rng's state directly where its layout
    # checks out: 200 ids (past one refill of the state) from a probe must be those the
    # Python formula draws from a twin. Otherwise it calls rng.getrandbits.
    seed = 20261202
    probe, twin = random.Random(seed), random.Random(seed)
    expected = [_ids.id_from(twin) for _ in range(200)]
    drawn_from_state: bool = speedups.configure_updates(
        _ids.active_generator,
        _ids.generate_id,
        _ids.randbits,
        _trace.external_trace,
        _ids.rng,
        _random.Random,
        probe,
        expected,
    )
    return drawn_from_state


IDS_FROM_STATE: Final = _configure_updates()
"""Whether the compiled update draws ids from the random state without a call."""


def _compiled_update(update: Updater) -> Updater:
    """``update`` run by the compiled module where it has a program (see `_compile`).

    Made once per update function: the shape cache shares one among many targets.
    """
    native: Updater | None = getattr(update, "native", None)
    if native is None:
        program = program_of(update)
        if program is None or speedups is None:
            return update
        native = speedups.Update(update, *program)
        update.native = native  # type: ignore[attr-defined]
    return native


def set_enabled(enabled: bool) -> None:
    """Switch every aspect on or off at runtime, process-wide.

    Switched off, each instrumented call is a pass-through costing one flag test on top of
    the wrapper's own call; generators created while off are not instrumented.
    """
    global _disabled
    _disabled = not enabled
    if speedups is not None:
        speedups.set_disabled(_disabled)


def set_measure_generator_body(enabled: bool) -> None:
    """Measure the body time of every timed generator started from now on (settings)."""
    global _measure_all_generators
    _measure_all_generators = enabled


def is_enabled() -> bool:
    """Whether aspects are switched on (see `set_enabled`)."""
    return not _disabled


# --- kinds and targets --------------------------------------------------------------------


def _underlying(target: Any) -> Any:
    if isinstance(target, (classmethod, staticmethod)):
        return target.__func__
    return target


_MAX_UNWRAP: Final = 64


def _callee(target: Any) -> Any:
    """Return the routine that calling ``target`` runs.

    Looks through classmethod/staticmethod, partials, bound methods and callable instances
    (``type(obj).__call__``), so that a partial of a coroutine function or an object whose
    ``__call__`` is ``async def`` is seen for what calling it does.
    """
    function = target
    for _ in range(_MAX_UNWRAP):
        if isinstance(function, (classmethod, staticmethod)):
            function = function.__func__
        elif isinstance(function, functools.partial):
            function = function.func
        elif isinstance(function, types.MethodType):
            function = function.__func__
        elif inspect.isroutine(function) or inspect.isclass(function):
            return function
        else:
            # __class__, not type(): a proxy (wrapt's ObjectProxy) reports the proxied class.
            call = getattr(function.__class__, "__call__", None)  # noqa: B004 - the method itself
            if call is None:
                return function
            function = call
    return function


def detect_kind(target: Any) -> CallableKind:
    """Return how ``target`` runs; honours wrapt's ``mark_as_sync``/``mark_as_async``."""
    function = _underlying(target)
    if type(function) is types.FunctionType:
        # The common case (every function a module defines): its code flags say it all, one
        # attribute read instead of six inspect predicates (decoration time of whole packages).
        flags = function.__code__.co_flags
        if flags & inspect.CO_ASYNC_GENERATOR:
            return "async_generator"
        if flags & inspect.CO_GENERATOR:
            return "generator"
        if flags & inspect.CO_COROUTINE:
            return "coroutine"
        if not function.__dict__:
            # No attribute at all, so no coroutine marker (markcoroutinefunction, asyncio's
            # legacy _is_coroutine) either: nearly every function.
            return "function"
        if inspect.iscoroutinefunction(function) or _marked_coroutine(function):
            return "coroutine"
        return "function"
    callee = _callee(function)
    for candidate in (function, callee):
        if inspect.isasyncgenfunction(candidate):
            return "async_generator"
        if inspect.isgeneratorfunction(candidate):
            return "generator"
        if inspect.iscoroutinefunction(candidate) or _marked_coroutine(candidate):
            return "coroutine"
    return "function"


def _marked_coroutine(function: Any) -> bool:
    # asyncio's legacy marker (asyncio.coroutines._is_coroutine), honoured before 3.12.
    marker = getattr(function, "_is_coroutine", None)
    return marker is not None and getattr(marker, "__name__", "") == "_is_coroutine"


def _named(function: Any) -> Any:
    # A partial is named after the function it calls; a callable instance after its class.
    for _ in range(_MAX_UNWRAP):
        if not isinstance(function, functools.partial):
            break
        function = function.func
    return function


def _make_target(base: Any, kind: CallableKind) -> Target:
    if type(base) is types.FunctionType:
        # Every function a module defines: its own names, no partial to look through.
        module = base.__module__
        return Target(
            base, kind, module if type(module) is str else str(module or ""), base.__qualname__
        )
    function = _underlying(base)
    named = _named(function)
    module = getattr(named, "__module__", None) or ""
    qualname = getattr(named, "__qualname__", None) or getattr(
        type(named), "__qualname__", repr(named)
    )
    return Target(function=function, kind=kind, module=str(module), qualname=str(qualname))


def _object_names(base: Any, target: Target) -> tuple[str, str]:
    """``__name__`` and ``__qualname__`` of the coroutine or generator a call creates.

    CPython names a coroutine or generator object after the function that created it; the
    drivers' functions are renamed to these, once per decorated callable, so that task
    reprs, "never awaited" warnings and profilers show the user's names, not the drivers'.
    """
    if type(base) is types.FunctionType:
        return base.__name__, base.__qualname__
    callee = _callee(_underlying(base))
    name = getattr(callee, "__name__", None)
    qualname = getattr(callee, "__qualname__", None)
    if not isinstance(name, str) or not isinstance(qualname, str):
        return target.qualname.rpartition(".")[2], target.qualname
    return name, qualname


def _rename(function: Any, names: tuple[str, str]) -> None:
    function.__name__, function.__qualname__ = names


# --- plans and drivers --------------------------------------------------------------------


class _Plan(NamedTuple):
    target: Target
    names: tuple[str, str]
    update: Updater | None
    timings: tuple[TimingSpec, ...]
    measure_body: bool
    befores: tuple[Callable[[Call], None], ...]
    afters: tuple[Callable[[Call, BaseException | None], None], ...]


def _make_plan(target: Target, advices: list[Advice], names: tuple[str, str]) -> _Plan:
    # One pass over the advices (this runs once per function of an instrumented package).
    changes = []
    timings = []
    measure_body = False
    befores = []
    afters = []
    for advice in advices:
        if advice.fields:
            changes.append(advice.fields)
        timing = advice.timing
        if timing is not None:
            timings.append(
                _new_tuple(
                    TimingSpec,
                    (
                        timing.name or target.default_name,
                        target.kind,
                        timing.min_duration_ns,
                        timing.keep_errors,
                    ),
                )
            )
            measure_body = measure_body or timing.measure_body
        if advice.before is not None:
            befores.append(advice.before)
        if advice.after is not None:
            afters.append(advice.after)
    # After-hooks unwind inner first, as separate wrappers would.
    afters.reverse()
    update = compile_update(target, changes, field_by_name) if changes else None
    if update is not None and _compiled_driver is not None:
        update = _compiled_update(update)
    plan: _Plan = _new_tuple(
        _Plan,
        (
            target,
            names,
            update,
            tuple(timings),
            measure_body,
            tuple(befores),
            tuple(afters),
        ),
    )
    return plan


# A named tuple's own __new__ is a Python function: this is the C constructor it calls.
_new_tuple: Final[Callable[..., Any]] = tuple.__new__


Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


def _enter(plan: _Plan, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Open the plan's scope in the current Context; return the operation metadata dict.

    Used by every driver except the specialised sync fast paths. Never raises. The scope is
    not closed by a token when it runs in a private Context (generators): the Context is
    simply dropped at the end.
    """
    if plan.update is not None:
        try:
            _push(plan.update(_get(), instance, args, kwargs))
        except Exception as exc:
            report_internal_error(f"computing context fields for {plan.target.qualname}", exc)
    metadata: dict[str, Any] | None = None
    if plan.timings:
        metadata = {}
        _push_op(metadata)
    if plan.befores:
        call = Call(plan.target, instance, args, kwargs)
        for before in plan.befores:
            try:
                before(call)
            except Exception as exc:
                report_internal_error(f"before-hook of an aspect on {plan.target.qualname}", exc)
    return metadata


def _exit(
    plan: _Plan,
    start: int,
    error: BaseException | None,
    metadata: dict[str, Any] | None,
    body_ns: int | None,
    call: Call | None,
) -> None:
    """Record the finished call and run after-hooks, inside the plan's scope. Never raises."""
    end = _clock()
    if _sinks:
        for spec in plan.timings:
            _finish(spec, start, end, error, metadata, body_ns)
    for after in plan.afters:
        try:
            after(cast("Call", call), error)
        except Exception as exc:
            report_internal_error(f"after-hook of an aspect on {plan.target.qualname}", exc)


def _fields_failure(qualname: str) -> str:
    return f"computing context fields for {qualname}"


def _sync_driver(plan: _Plan) -> Wrapper:
    update = plan.update
    qualname = plan.target.qualname
    if not plan.timings and not plan.befores and not plan.afters:
        if update is None:
            return _pass_through
        if _compiled_driver is not None:
            return _compiled_driver(update, qualname, None, None, reads_call(update))

        def call_in_scope(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
        ) -> Any:
            if _disabled:
                return wrapped(*args, **kwargs)
            try:
                token = _push(update(_get(), instance, args, kwargs))
            except Exception as exc:
                report_internal_error(_fields_failure(qualname), exc)
            else:
                try:
                    return wrapped(*args, **kwargs)
                finally:
                    _pop(token)
            # Outside the handler: the body never sees the library's error as the exception
            # being handled (sys.exc_info(), __context__ of its own exceptions).
            return wrapped(*args, **kwargs)

        return call_in_scope

    if len(plan.timings) == 1 and update is None and not plan.befores and not plan.afters:
        # @timed alone, the most common aspect: nothing but the timing on the call path.
        timed_spec = plan.timings[0]
        # Statistics alone listening (`_emit.direct`): the driver feeds them itself.
        name = timed_spec.name
        direct_ok = timed_spec.min_duration_ns == 0
        if _compiled_driver is not None:
            return _compiled_driver(None, qualname, timed_spec, name)

        def call_timed_only(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
        ) -> Any:
            if _disabled:
                return wrapped(*args, **kwargs)
            metadata: dict[str, Any] = {}
            operation = _push_op(metadata)
            start = _clock()
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                end = _clock()
                # A sink may raise a BaseException (Ctrl-C): the scope is closed regardless.
                try:
                    if _sinks:
                        observe = _direct[0]
                        if observe is not None and direct_ok:
                            try:
                                observe(name, end - start, True)  # noqa: FBT003 - observe() is positional
                            except Exception as failure:
                                _observer_failed(observe, failure)
                        else:
                            _finish(timed_spec, start, end, exc, metadata)
                finally:
                    _pop_op(operation)
                raise
            end = _clock()
            try:
                if _sinks:
                    observe = _direct[0]
                    if observe is not None and direct_ok:
                        try:
                            observe(name, end - start, False)  # noqa: FBT003 - observe() is positional
                        except Exception as failure:
                            _observer_failed(observe, failure)
                    else:
                        _finish(timed_spec, start, end, None, metadata)
            finally:
                _pop_op(operation)
            return result

        return call_timed_only

    if len(plan.timings) == 1 and update is not None and not plan.befores and not plan.afters:
        # Fields and one timing: a fused stack.
        spec = plan.timings[0]
        scoped_update: Updater = update
        spec_name = spec.name
        spec_direct_ok = spec.min_duration_ns == 0
        if _compiled_driver is not None:
            return _compiled_driver(update, qualname, spec, spec_name, reads_call(update))

        def call_timed(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
        ) -> Any:
            if _disabled:
                return wrapped(*args, **kwargs)
            try:
                token = _push(scoped_update(_get(), instance, args, kwargs))
            except Exception as exc:
                report_internal_error(_fields_failure(qualname), exc)
                token = None
            metadata: dict[str, Any] = {}
            operation = _push_op(metadata)
            start = _clock()
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                end = _clock()
                try:
                    if _sinks:
                        observe = _direct[0]
                        if observe is not None and spec_direct_ok:
                            try:
                                observe(spec_name, end - start, True)  # noqa: FBT003 - observe() is positional
                            except Exception as failure:
                                _observer_failed(observe, failure)
                        else:
                            _finish(spec, start, end, exc, metadata)
                finally:
                    _pop_op(operation)
                    if token is not None:
                        _pop(token)
                raise
            end = _clock()
            try:
                if _sinks:
                    observe = _direct[0]
                    if observe is not None and spec_direct_ok:
                        try:
                            observe(spec_name, end - start, False)  # noqa: FBT003 - observe() is positional
                        except Exception as failure:
                            _observer_failed(observe, failure)
                    else:
                        _finish(spec, start, end, None, metadata)
            finally:
                _pop_op(operation)
                if token is not None:
                    _pop(token)
            return result

        return call_timed

    def call_general(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
    ) -> Any:
        if _disabled:
            return wrapped(*args, **kwargs)
        snapshot = _get()
        operation = _state.get_operation()
        call = Call(plan.target, instance, args, kwargs) if plan.afters else None
        try:
            metadata = _enter(plan, instance, args, kwargs)
        except BaseException:
            # A before-hook raised a BaseException (Ctrl-C): leave no scope behind.
            _reset_to(snapshot, operation)
            raise
        start = _clock()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            try:
                _exit(plan, start, exc, metadata, None, call)
            finally:
                _reset_to(snapshot, operation)
            raise
        try:
            _exit(plan, start, None, metadata, None, call)
        finally:
            _reset_to(snapshot, operation)
        return result

    return call_general


def _reset_to(snapshot: _state.Snapshot, operation: dict[str, Any] | None) -> None:
    # The general paths restore by value: _enter may have pushed zero, one or two variables.
    if _get() is not snapshot:
        _state.replace(snapshot)
    if _state.get_operation() is not operation:
        _state.push_operation(operation)


def _pass_through(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
) -> Any:
    return wrapped(*args, **kwargs)


def _coroutine_driver(plan: _Plan) -> Wrapper:
    if not plan.befores and not plan.afters and len(plan.timings) <= 1:
        return _fast_coroutine_driver(plan)
    needs_exit = bool(plan.timings or plan.afters)

    async def run_in_scope(
        wrapped: Any,
        pending: _Pending | None,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        # Restoring by value, not by token: a coroutine driven by hand may be resumed in
        # another Context, where a token reset would raise.
        snapshot = _get()
        operation = _state.get_operation()
        call = Call(plan.target, instance, args, kwargs) if plan.afters else None
        try:
            metadata = _enter(plan, instance, args, kwargs)
        except BaseException:
            _reset_to(snapshot, operation)
            raise
        # Created last, right before it is awaited: nothing is left unawaited if the scope
        # could not be entered (the arguments were checked at the call).
        coroutine = wrapped(*args, **kwargs) if pending is None else pending.coroutine
        start = _clock()
        try:
            result = await coroutine
        except BaseException as exc:
            try:
                if needs_exit:
                    _exit(plan, start, exc, metadata, None, call)
            finally:
                _reset_to(snapshot, operation)
            raise
        try:
            if needs_exit:
                _exit(plan, start, None, metadata, None, call)
        finally:
            _reset_to(snapshot, operation)
        return result

    return _coroutine_caller(run_in_scope, plan)


class _Pending:
    """Holds the inner coroutine for the outer one; closes it if the outer never ran it.

    The inner coroutine is created at call time (a bad call raises TypeError there, as it
    would undecorated). If the outer coroutine is then closed, thrown into or cancelled
    before its first step, none of its code runs and the inner one would be collected
    unstarted, warning "coroutine ... was never awaited" where the undecorated coroutine,
    closed, is silent. Dropped with the outer coroutine's frame, this closes the inner one.
    """

    __slots__ = ("coroutine",)
    coroutine: Any

    def __del__(self) -> None:
        coroutine = self.coroutine
        # cr_frame is None once the coroutine finished; only a never-started one is left.
        if getattr(coroutine, "cr_frame", None) is not None:
            coroutine.close()


def _coroutine_caller(run_in_scope: Callable[..., Any], plan: _Plan) -> Wrapper:
    """The call path of coroutine drivers: ``run_in_scope(wrapped, pending, ...)``.

    A bad call must raise TypeError at the call, as undecorated, not at the first await. For
    an ``async def`` function the arguments are checked by a generated function with the
    same parameters and the inner coroutine is created lazily, inside the outer one (so a
    coroutine closed or cancelled before its first step leaves nothing behind); that check
    costs less than the `_Pending` holder, which every other callable gets.
    """
    _rename(run_in_scope, plan.names)
    check = _argument_checker(plan.target.function)
    if check is not None:
        checked: Callable[..., None] = check

        def call_checked(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
        ) -> Any:
            if _disabled:
                return wrapped(*args, **kwargs)
            # Bound through wrapt (classmethods), the first parameter is not in args.
            if instance is None:
                checked(*args, **kwargs)
            else:
                checked(instance, *args, **kwargs)
            return run_in_scope(wrapped, None, instance, args, kwargs)

        return call_checked
    new_pending = _Pending

    def call_coroutine(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
    ) -> Any:
        if _disabled:
            return wrapped(*args, **kwargs)
        # The inner coroutine is created now, so a bad call raises TypeError here, as it
        # would undecorated, not at the first await.
        coroutine = wrapped(*args, **kwargs)
        pending = new_pending()
        pending.coroutine = coroutine
        return run_in_scope(wrapped, pending, instance, args, kwargs)

    return call_coroutine


@functools.lru_cache(maxsize=1024)
def _checker_code(parameters: str, name: str) -> types.CodeType:
    source = f"def {name}({parameters}):\n    pass\n"
    module = compile(source, "<flext_ctx_aspects argument check>", "exec")
    return next(c for c in module.co_consts if isinstance(c, types.CodeType))


def _argument_checker(function: Any) -> Callable[..., None] | None:
    """A function with ``function``'s parameters and an empty body, or None.

    Only for a plain ``async def`` function: its code object says exactly which calls bind
    (names, positional-only and keyword-only parameters, which have defaults), and calling
    it has no effect but binding, which the checker reproduces with the same messages.
    """
    if type(function) is not types.FunctionType:
        return None
    code = function.__code__
    if not code.co_flags & inspect.CO_COROUTINE:
        return None
    names = code.co_varnames
    positional, posonly, kwonly = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    parts: list[str] = []
    for index in range(positional):
        parts.append(names[index])
        if posonly and index == posonly - 1:
            parts.append("/")
    extra = positional + kwonly
    if code.co_flags & inspect.CO_VARARGS:
        parts.append("*" + names[extra])
        extra += 1
    elif kwonly:
        parts.append("*")
    parts.extend(names[positional : positional + kwonly])
    if code.co_flags & inspect.CO_VARKEYWORDS:
        parts.append("**" + names[extra])
    try:
        checker_code = _checker_code(", ".join(parts), code.co_name)
    except SyntaxError:  # pragma: no cover - names come from a compiled function
        return None
    if sys.version_info >= (3, 11):
        checker_code = checker_code.replace(co_qualname=function.__qualname__)
    # Defaults live on the function, not in its code: the same ones count, any value does.
    checker = types.FunctionType(
        checker_code, {}, code.co_name, (None,) * len(function.__defaults__ or ())
    )
    checker.__kwdefaults__ = dict.fromkeys(function.__kwdefaults__ or ())
    checker.__qualname__ = function.__qualname__
    return cast("Callable[..., None]", checker)


def _fast_coroutine_driver(plan: _Plan) -> Wrapper:
    """Fields and at most one timing, no hooks: the common shapes, without helper calls."""
    update = plan.update
    spec = plan.timings[0] if plan.timings else None
    qualname = plan.target.qualname

    async def run_in_scope(
        wrapped: Any,
        pending: _Pending | None,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        token = None
        pushed: _state.Snapshot = _state.EMPTY
        if update is not None:
            try:
                pushed = update(_get(), instance, args, kwargs)
                token = _push(pushed)
            except Exception as exc:
                report_internal_error(_fields_failure(qualname), exc)
        coroutine = wrapped(*args, **kwargs) if pending is None else pending.coroutine
        if spec is None:
            try:
                return await coroutine
            finally:
                if token is not None:
                    _restore(token, pushed)
        metadata: dict[str, Any] = {}
        operation = _push_op(metadata)
        start = _clock()
        try:
            result = await coroutine
        except BaseException as exc:
            end = _clock()
            try:
                if _sinks:
                    _finish(spec, start, end, exc, metadata)
            finally:
                _restore_op(operation, metadata)
                if token is not None:
                    _restore(token, pushed)
            raise
        end = _clock()
        try:
            if _sinks:
                _finish(spec, start, end, None, metadata)
        finally:
            _restore_op(operation, metadata)
            if token is not None:
                _restore(token, pushed)
        return result

    return _coroutine_caller(run_in_scope, plan)


def _generator_driver(plan: _Plan) -> Wrapper:
    needs_exit = bool(plan.timings or plan.afters)
    measure_own = plan.measure_body and bool(plan.timings)
    timed = bool(plan.timings)

    def drive(
        inner: Generator[Any, Any, Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: contextvars.Context,
    ) -> Generator[Any, Any, Any]:
        run = context.run
        call = Call(plan.target, instance, args, kwargs) if plan.afters else None
        metadata = run(_enter, plan, instance, args, kwargs)
        # Settings may switch body measurement on for every timed generator started later.
        measure = measure_own or (timed and _measure_all_generators)
        start = _clock()
        body_ns = 0 if measure else None
        send = inner.send
        action: Callable[[Any], Any] = send
        value: Any = None
        while True:
            try:
                if measure:
                    resumed = _clock()
                    try:
                        item = run(action, value)
                    finally:
                        body_ns += _clock() - resumed  # type: ignore[operator]
                else:
                    item = run(action, value)
            except StopIteration as stop:
                if needs_exit:
                    run(_exit, plan, start, None, metadata, body_ns, call)
                return stop.value
            except BaseException as exc:
                if needs_exit:
                    # A generator closed early (GeneratorExit) ended normally.
                    error = None if isinstance(exc, GeneratorExit) else exc
                    run(_exit, plan, start, error, metadata, body_ns, call)
                raise
            try:
                value = yield item
            except BaseException as exc:
                # Every exception, GeneratorExit from close() included, is thrown into the
                # body, not turned into inner.close() as ``yield from`` does: a body that
                # catches GeneratorExit and yields, or returns a value (which close()
                # returns on 3.13), behaves exactly as it does undecorated.
                action = inner.throw
                value = exc
            else:
                action = send

    _rename(drive, plan.names)

    def call_generator(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
    ) -> Any:
        if _disabled:
            return wrapped(*args, **kwargs)
        return drive(wrapped(*args, **kwargs), instance, args, kwargs, _copy_context())

    return call_generator


@types.coroutine
def _in_context(awaitable: Any, run: Callable[..., Any]) -> Generator[Any, Any, Any]:
    """Await ``awaitable`` with each of its steps run by ``run`` (a ``Context.run``)."""
    send = awaitable.send
    action: Callable[[Any], Any] = send
    value: Any = None
    while True:
        try:
            signal = run(action, value)
        except StopIteration as stop:
            return stop.value
        try:
            value = yield signal
        except GeneratorExit:
            run(awaitable.close)
            raise
        except BaseException as exc:
            action = awaitable.throw
            value = exc
        else:
            action = send


def _first_step_unhooked(inner: Any) -> Any:
    # The first asend() registers an async generator with the running loop's asyncgen hooks.
    # Hidden from them, the inner generator is finalised only through the outer one, which
    # closes it in its own Context exactly once, instead of the loop closing both
    # concurrently at shutdown.
    hooks = sys.get_asyncgen_hooks()
    if hooks.firstiter is None and hooks.finalizer is None:
        return inner.asend(None)
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
    try:
        return inner.asend(None)
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=hooks.finalizer)


def _async_generator_driver(plan: _Plan) -> Wrapper:
    needs_exit = bool(plan.timings or plan.afters)
    measure_own = plan.measure_body and bool(plan.timings)
    timed = bool(plan.timings)

    async def drive(
        inner: Any,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: contextvars.Context,
    ) -> Any:
        run = context.run
        call = Call(plan.target, instance, args, kwargs) if plan.afters else None
        metadata = run(_enter, plan, instance, args, kwargs)
        # Settings may switch body measurement on for every timed generator started later.
        measure = measure_own or (timed and _measure_all_generators)
        start = _clock()
        body_ns = 0 if measure else None
        awaitable = _first_step_unhooked(inner)
        while True:
            try:
                if measure:
                    resumed = _clock()
                    try:
                        item = await _in_context(awaitable, run)
                    finally:
                        body_ns += _clock() - resumed  # type: ignore[operator]
                else:
                    item = await _in_context(awaitable, run)
            except StopAsyncIteration:
                if needs_exit:
                    run(_exit, plan, start, None, metadata, body_ns, call)
                return
            except BaseException as exc:
                if needs_exit:
                    error = None if isinstance(exc, GeneratorExit) else exc
                    run(_exit, plan, start, error, metadata, body_ns, call)
                raise
            try:
                value = yield item
            except BaseException as exc:
                # GeneratorExit (aclose()) included: thrown into the body, as for generators.
                awaitable = inner.athrow(exc)
            else:
                awaitable = inner.asend(value)

    _rename(drive, plan.names)

    def call_async_generator(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], /
    ) -> Any:
        if _disabled:
            return wrapped(*args, **kwargs)
        return drive(wrapped(*args, **kwargs), instance, args, kwargs, _copy_context())

    return call_async_generator


_DRIVERS: Final[dict[CallableKind, Callable[[_Plan], Wrapper]]] = {
    "function": _sync_driver,
    "coroutine": _coroutine_driver,
    "generator": _generator_driver,
    "async_generator": _async_generator_driver,
}


# --- the wrapper ----------------------------------------------------------------------------


class _BoundAspectWrapper(BoundFunctionWrapper):  # type: ignore[misc]
    """The wrapper bound to an instance or class (created by ``__get__``)."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickled like a bound method: by owner and name.
        owner = getattr(self.__wrapped__, "__self__", None)
        if owner is None:
            raise TypeError(f"cannot pickle unbound {self.__qualname__!r}")
        return (getattr, (owner, self.__name__))


# How a wrapper binds when read as an attribute (_get_mode; AspectWrapper.__get__).
_GET_FUNCTION: Final = "function"
_GET_STATIC: Final = "static"
_GET_WRAPT: Final = "wrapt"
_GET_DESCRIPTOR: Final = "descriptor"
_GET_PARTIAL: Final = "partial"
_GET_CLASSMETHOD: Final = "classmethod"


def _wrapper_base() -> Any:
    """The wrapper's base: wrapt's C type, with a vectorcall entry of ours where possible.

    ``_speedups.wrapper_base`` subclasses wrapt's C type, calls compiled drivers with the
    call as received and binds in C where ``_bind_as_attribute`` would make a method or
    nothing, and instrumented classmethods as ``classmethod.__get__`` would (see there); it
    refuses a wrapt whose instance layout it does not know, and then wrapt's own
    ``__call__`` serves, as in pure Python.
    """
    if speedups is None or not _WRAPT_COMPILED:
        return _FunctionWrapperBase
    modes = (  # in the order of the C enum
        _GET_FUNCTION,
        _GET_STATIC,
        _GET_WRAPT,
        _GET_DESCRIPTOR,
        _GET_PARTIAL,
        _GET_CLASSMETHOD,
    )
    try:
        return speedups.wrapper_base(_FunctionWrapperBase, _FUNCTION_BINDING, _underlying, modes)
    except TypeError:
        return _FunctionWrapperBase


_WrapperBase: Final[Any] = _wrapper_base()
# The call reaches the driver without wrapt's __call__ (an args tuple, a dict, a C call).
VECTORCALL_WRAPPER: Final = _WrapperBase is not _FunctionWrapperBase


class AspectWrapper(_WrapperBase):  # type: ignore[misc]
    """A function instrumented by this library's aspects: one layer for the whole stack.

    ``_self_aspects`` holds the aspects, outermost first; applying one more aspect builds a
    new wrapper around the same original function with the longer tuple (fusion).
    """

    # One slot, not three dict entries: whole packages make one wrapper per function.
    __slots__ = ("_self_state",)
    _self_state: tuple[tuple[Any, ...], CallableKind, bool]
    __bound_function_wrapper__ = _BoundAspectWrapper
    # How the wrapper binds (_bind_as_attribute): set per instance where it is not
    # _GET_FUNCTION. With the compiled base, a field of it, read by its C __get__.
    _self_get: str
    if not VECTORCALL_WRAPPER:
        _self_get = _GET_FUNCTION

    def __init__(
        self,
        wrapped: Any,
        wrapper: Wrapper,
        binding: str,
        aspects: tuple[Any, ...],
        kind: CallableKind,
        kind_overridden: bool,
        hooks: bool = False,
    ) -> None:
        super().__init__(wrapped, None, wrapper, None, binding)
        self._self_state = (aspects, kind, kind_overridden)
        get_mode = _get_mode(wrapped, binding, hooks)
        if get_mode is not _GET_FUNCTION:
            _set_attribute(self, "_self_get", get_mode)

    @property
    def _self_aspects(self) -> tuple[Any, ...]:
        return self._self_state[0]

    @property
    def _self_kind(self) -> CallableKind:
        return self._self_state[1]

    @property
    def _self_kind_overridden(self) -> bool:
        return self._self_state[2]

    def _bind_as_attribute(self, instance: Any, owner: Any = None) -> Any:
        # wrapt binds by creating a bound wrapper per attribute access (~0.6 µs), which then
        # probes __self__ for staticmethods. Without hooks nothing needs that: a plain function
        # used as a method binds as a function does (a types.MethodType, ~0.25 µs, passing
        # the instance as the first argument), and a staticmethod (callable since 3.10) needs
        # no binding at all. Hooks get wrapt's binding, which passes Call.instance separately.
        how = self._self_get
        if how is _GET_FUNCTION:
            # Read from the class, a function is itself; so is its instrumented stand-in.
            return self if instance is None else _MethodType(self, instance)
        if how is _GET_STATIC:
            return self
        if how is _GET_CLASSMETHOD and (instance is not None or owner is not None):
            # A classmethod binds its function to the class: here the function's wrapper.
            cls = type(instance) if owner is None else owner
            return _MethodType(self._self_bound_function, cls)
        if how is _GET_PARTIAL:
            # 3.13 warns when a partial is read through an instance. Its C __get__ blames
            # the running Python frame, which would be this one: warn for the caller instead.
            if instance is not None:
                warnings.warn(_PARTIAL_WARNING, FutureWarning, stacklevel=2)
            return self
        if how is _GET_DESCRIPTOR:
            # Any other descriptor binds as it would undecorated: when its __get__ returns
            # the object itself (a partial on 3.13, a bound method on 3.10/3.13), there is
            # no binding; otherwise the bound object is wrapped as wrapt would wrap it.
            wrapped = self.__wrapped__
            bound = type(wrapped).__get__(wrapped, instance, owner)
            if bound is wrapped:
                return self
            return self.__bound_function_wrapper__(
                bound, instance, self._self_wrapper, None, self._self_binding, self, owner
            )
        return _base_get(self, instance, owner)

    if not VECTORCALL_WRAPPER:
        # The compiled base binds functions, staticmethods, wrapt's bindings and instrumented
        # classmethods in C, and calls this for the others.
        __get__ = _bind_as_attribute

    def __set_name__(self, owner: type, name: str) -> None:
        # type() turns a plain function named __init_subclass__ or __class_getitem__ into a
        # classmethod, and __new__ into a staticmethod, but only a real function: done here
        # for its instrumented stand-in, so decorating them directly keeps the class working.
        implicit = _IMPLICIT_BINDINGS.get(name)
        wrapped = self.__wrapped__
        if implicit is not None and type(wrapped) is types.FunctionType:
            setattr(owner, name, implicit(self))
            return
        set_name = getattr(type(wrapped), "__set_name__", None)
        if set_name is not None:
            set_name(wrapped, owner, name)

    @property
    def __code__(self) -> types.CodeType:
        code = cast("types.CodeType", _underlying(self.__wrapped__).__code__)
        if not self._self_kind_overridden:
            return code
        # An explicit kind makes inspect.iscoroutinefunction & co. answer accordingly.
        flags = code.co_flags & ~(_CO_KIND_FLAGS)
        return code.replace(co_flags=flags | _KIND_FLAG[self._self_kind])

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Functions pickle by reference; so does their instrumented stand-in.
        return self.__qualname__

    def __copy__(self) -> AspectWrapper:
        return self

    def __deepcopy__(self, memo: Any) -> AspectWrapper:
        return self


if VECTORCALL_WRAPPER:
    cast("Any", speedups).adopt_wrapper_type(AspectWrapper)

_base_get: Final = _FunctionWrapperBase.__get__
# AspectWrapper(...) without its Python __init__ (one per function of an instrumented
# package): the base's constructor, wrapt's initialiser, then the slot.
_wrapper_new: Final = _WrapperBase.__new__
_wrapper_init: Final = _FunctionWrapperBase.__init__
_set_state: Final = AspectWrapper.__dict__["_self_state"].__set__
_set_attribute: Final = setattr  # wrapt stores `_self_` names on the wrapper itself


def _new_wrapper(
    base: Any,
    driver: Wrapper,
    binding: str,
    aspects: tuple[Any, ...],
    kind: CallableKind,
    overridden: bool,
    hooks: bool,
) -> AspectWrapper:
    wrapper: AspectWrapper = _wrapper_new(AspectWrapper)
    _wrapper_init(wrapper, base, None, driver, None, binding)
    _set_state(wrapper, (aspects, kind, overridden))
    get_mode = _get_mode(base, binding, hooks)
    if (
        get_mode is _GET_WRAPT
        and binding == "classmethod"
        and not hooks
        and VECTORCALL_WRAPPER
        and type(driver) is _Driver
        and type(base) is classmethod
        and type(base.__func__) is _FunctionType
    ):
        # Bound like the classmethod (a method of the class, ~0.25 µs) rather than by
        # wrapt's bound wrapper (~0.75 µs): a function wrapper sharing the driver is bound
        # instead, so releasing the driver (uninstrument) releases both.
        get_mode = _GET_CLASSMETHOD
        function = _new_wrapper(
            base.__func__, driver, _FUNCTION_BINDING, aspects, kind, overridden, hooks=False
        )
        _set_attribute(wrapper, "_self_bound_function", function)
    if get_mode is not _GET_FUNCTION:
        _set_attribute(wrapper, "_self_get", get_mode)
    return wrapper


def apply_deferrable(aspects: tuple[Any, ...], function: types.FunctionType) -> Any:
    """`apply_aspects` for a plain function and a stack `deferrable` said yes to."""
    if _deferred_driver is None:
        return apply_aspects(aspects, function)
    return _deferred_function_wrapper(aspects, function)


def _deferred(function: Any, kind: CallableKind, aspects: tuple[Any, ...]) -> Wrapper:
    # What _make_target and _object_names read of a function, read now; the rest waits for
    # the first call (FixedAdviceAspect).
    module = function.__module__
    return cast("Callable[..., Wrapper]", _deferred_driver)(
        _settle,
        (
            function,
            kind,
            aspects,
            module if type(module) is str else str(module or ""),
            (function.__name__, function.__qualname__),
        ),
    )


def _deferred_function_wrapper(aspects: tuple[Any, ...], function: Any) -> AspectWrapper:
    """`apply_aspects` for a plain function and a deferrable stack: what is left of it."""
    kind = detect_kind(function)
    driver = _deferred(function, kind, aspects)
    wrapper: AspectWrapper = _wrapper_new(AspectWrapper)
    # What _new_wrapper does, knowing a function's binding and get mode (no hooks).
    _wrapper_init(wrapper, function, None, driver, None, _FUNCTION_BINDING)
    _set_state(wrapper, (aspects, kind, False))
    return wrapper


_PARTIAL_WARNING: Final = (
    "functools.partial will be a method descriptor in future Python versions; "
    "wrap it in staticmethod() if you want to preserve the old behavior"
)
_IMPLICIT_BINDINGS: Final[dict[str, Callable[[Any], Any]]] = {
    "__init_subclass__": classmethod,
    "__class_getitem__": classmethod,
    "__new__": staticmethod,
}


def _get_mode(wrapped: Any, binding: str, hooks: bool) -> str:
    """How the wrapper binds when read as an attribute: exactly as ``wrapped`` would.

    A plain function binds like a function (without hooks, as a ``types.MethodType``; with
    hooks, wrapt's way, which passes ``Call.instance`` separately). An object without
    ``__get__`` (a partial before 3.13, a callable instance, a bound method on 3.11/3.12)
    does not bind at all. Any other descriptor binds through its own ``__get__``.
    """
    if binding == "staticmethod":
        return _GET_WRAPT if hooks else _GET_STATIC
    if binding != _FUNCTION_BINDING:
        return _GET_WRAPT
    if type(wrapped) is types.FunctionType:
        return _GET_WRAPT if hooks else _GET_FUNCTION
    if getattr(type(wrapped), "__get__", None) is None:
        return _GET_STATIC
    if type(wrapped) is functools.partial and sys.version_info[:2] == (3, 13):
        return _GET_PARTIAL
    return _GET_DESCRIPTOR


_MethodType: Final = types.MethodType
_FunctionType: Final = types.FunctionType
_Driver: Final[Any] = None if speedups is None else speedups.Driver

_CO_KIND_FLAGS: Final = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)
_KIND_FLAG: Final[dict[CallableKind, int]] = {
    "function": 0,
    "coroutine": inspect.CO_COROUTINE,
    "generator": inspect.CO_GENERATOR,
    "async_generator": inspect.CO_ASYNC_GENERATOR,
}


def _binding_for(base: Any) -> str:
    if isinstance(base, classmethod):
        return "classmethod"
    if isinstance(base, staticmethod):
        return "staticmethod"
    if inspect.isbuiltin(base):
        return "builtin"
    return _FUNCTION_BINDING


def _unfuse(target: Any) -> tuple[Any, tuple[Any, ...], CallableKind | None]:
    """Split ``target`` into the original callable and the aspects already on it."""
    if isinstance(target, AspectWrapper):
        overridden = target._self_kind if target._self_kind_overridden else None
        return target.__wrapped__, target._self_aspects, overridden
    if isinstance(target, _BoundAspectWrapper):
        parent = target._self_parent
        overridden = parent._self_kind if parent._self_kind_overridden else None
        return target.__wrapped__, parent._self_aspects, overridden
    if isinstance(target, (classmethod, staticmethod)) and isinstance(
        target.__func__, AspectWrapper
    ):
        inner = target.__func__
        overridden = inner._self_kind if inner._self_kind_overridden else None
        return type(target)(inner.__wrapped__), inner._self_aspects, overridden
    return target, (), None


def apply_aspect(aspect: Any, target: Any, kind: str | None = None) -> Any:
    """Instrument ``target`` with ``aspect`` (fusing with aspects already applied).

    The same as ``apply_aspects((aspect,), target, kind)``.
    """
    return apply_aspects((aspect,), target, kind)


def apply_aspects(aspects: tuple[Any, ...], target: Any, kind: str | None = None) -> Any:
    """Instrument ``target`` with ``aspects`` (outermost first) in one pass.

    The result is what applying them one by one, innermost first, gives, for the cost of one
    (the plan is compiled once, not once per aspect): what the auto-instrumenter uses.

    Args:
        aspects: Objects with ``advise(target) -> Advice``, outermost first.
        target: A function, method, classmethod, staticmethod or other callable.
        kind: Explicit callable kind for callables that return awaitables or generators
            without being declared ``async def`` or containing ``yield``.

    Returns:
        The instrumented callable.

    Raises:
        TypeError: ``target`` is not callable, ``kind`` is unknown, or the aspect's advice
            does not fit the target.
    """
    if (
        type(target) is _FunctionType
        and kind is None
        and _deferred_driver is not None
        and deferrable(aspects)
    ):
        # The common case (every function of an instrumented package): nothing to unfuse.
        return _deferred_function_wrapper(aspects, target)
    base, existing, inherited_kind = _unfuse(target)
    if not callable(_underlying(base)):
        raise TypeError(f"cannot instrument {type(target).__qualname__} object: not callable")
    if kind is not None:
        if kind not in KIND_OVERRIDES:
            choices = ", ".join(sorted(KIND_OVERRIDES))
            raise TypeError(f"kind must be one of {choices} (got {kind!r})")
        resolved: CallableKind = KIND_OVERRIDES[kind]
        overridden = True
    elif inherited_kind is not None:
        resolved, overridden = inherited_kind, True
    else:
        resolved, overridden = detect_kind(base), False
    aspects = (*aspects, *existing)
    function = _underlying(base)
    if _deferred_driver is not None and type(function) is _FunctionType and deferrable(aspects):
        # A classmethod or staticmethod of a function, or an explicit kind.
        deferred = _deferred(function, resolved, aspects)
        return _new_wrapper(
            base, deferred, _binding_for(base), aspects, resolved, overridden, hooks=False
        )
    target_info = _make_target(base, resolved)
    plan = _make_plan(
        target_info, [a.advise(target_info) for a in aspects], _object_names(base, target_info)
    )
    driver = _DRIVERS[resolved](plan)
    hooks = bool(plan.befores or plan.afters)
    return _new_wrapper(base, driver, _binding_for(base), aspects, resolved, overridden, hooks)


class FixedAdviceAspect:
    """Base of the aspects whose advice is the same for every target.

    A subclass sets it once, with ``_fix(advice)``. When that advice has no hooks and its
    fields do not read the call (a shape the field compiler shares between targets), the
    compiled engine builds the plan and the driver at the function's first call rather than
    at decoration: instrumenting a whole package at import then costs only what the wrapper
    itself needs (kind, binding), and most functions of a package never run. Nothing can
    fail later that would have failed at decoration: such a plan depends on the function's
    names only, read at decoration.
    """

    __slots__ = ("advice", "deferrable")
    advice: Advice
    deferrable: bool

    def _fix(self, advice: Advice) -> None:
        self.advice = advice
        self.deferrable = (
            advice.before is None
            and advice.after is None
            and (not advice.fields or target_independent(advice.fields))
        )

    def advise(self, target: Target) -> Advice:
        """Return the advice (the same for every target)."""
        return self.advice


_FIXED_ADVISE: Final = FixedAdviceAspect.advise


def deferrable(aspects: tuple[Any, ...]) -> bool:
    """Whether the plan of ``aspects`` may wait for the first call (see `FixedAdviceAspect`)."""
    for aspect in aspects:
        if type(aspect).advise is not _FIXED_ADVISE or not aspect.deferrable:
            return False
    return True


def _settle(
    function: Any, kind: CallableKind, aspects: tuple[Any, ...], module: str, names: tuple[str, str]
) -> Wrapper:
    """The first call of a deferred driver: the plan and driver decoration would have built."""
    try:
        target = Target(function, kind, module, names[1])
        return _DRIVERS[kind](_make_plan(target, [a.advice for a in aspects], names))
    except Exception as exc:
        # Not expected (such a plan reads names only); the call goes on uninstrumented.
        report_internal_error(f"instrumenting {names[1]} at its first call", exc)
        return _pass_through


def aspects_of(function: Any) -> tuple[Any, ...]:
    """Return the aspects applied to ``function`` (outermost first), or ``()``."""
    return _unfuse(function)[1]
