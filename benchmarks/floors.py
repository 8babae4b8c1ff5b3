"""The floors: the least hand-written code doing the same work as the aspects.

A floor is the physical limit the aspects are compared against: a plain closure written for
one purpose, with every lookup hoisted, no configuration, no fallbacks and no sinks. The
library is allowed to cost more than its floor (it binds methods, detects kinds, reports its
own failures, supports custom aspects), and the guard says by how much at most.

* ``timed_floor``: two ``perf_counter_ns`` reads, one ContextVar set/reset, one record tuple
  appended to a list (also on error, with the exception's class name).
* ``fused_floor``: the four jobs of ``@with_correlation @service @timed @request_scope``:
  a new correlation id from ``random.getrandbits(128)`` (hex, as the library formats ids),
  the caller's id as parent, the trace root, service name/version/environment, user id,
  operation name, the caller's request id or a new one, all in ONE tuple in ONE ContextVar
  (set/reset once), timed, and a record tuple appended.
* ``generator_floor`` / ``async_generator_floor``: a wrapping generator that runs each step
  of the inner one with ``ctx.run(inner.send, value)`` in a private ``contextvars.Context``
  (no token is held across a yield), forwards ``throw``/``close``, and times first resume to
  exhaustion like ``@timed``.

The record is ``(name, start_ns, duration_ns, status, error_type[, context])``.
"""

from __future__ import annotations

import contextvars
import random
import time
import types
from collections.abc import Callable, Generator
from typing import Any

_clock = time.perf_counter_ns
_getrandbits = random.getrandbits
_copy_context = contextvars.copy_context

# cid, parent, trace root, service, version, environment, user, operation, request id
_EMPTY: tuple[Any, ...] = (None,) * 9
_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "floor.operation", default=None
)
_context: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "floor.context", default=_EMPTY
)


def timed_floor(func: Callable[..., Any], out: list[Any], name: str) -> Callable[..., Any]:
    """Time ``func``: the floor of ``@timed`` on a plain function (and on methods)."""
    set_op, reset_op = _operation.set, _operation.reset
    append = out.append

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = set_op(name)
        start = _clock()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            end = _clock()
            reset_op(token)
            append((name, start, end - start, "error", type(exc).__name__))
            raise
        end = _clock()
        reset_op(token)
        append((name, start, end - start, "ok", None))
        return result

    return wrapper


def timed_floor_async(func: Callable[..., Any], out: list[Any], name: str) -> Callable[..., Any]:
    """The floor of ``@timed`` on a coroutine function."""
    set_op, reset_op = _operation.set, _operation.reset
    append = out.append

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = set_op(name)
        start = _clock()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            end = _clock()
            reset_op(token)
            append((name, start, end - start, "error", type(exc).__name__))
            raise
        end = _clock()
        reset_op(token)
        append((name, start, end - start, "ok", None))
        return result

    return wrapper


def fused_floor(
    func: Callable[..., Any],
    out: list[Any],
    name: str,
    service: str,
    version: str,
    user: str,
    operation: str,
) -> Callable[..., Any]:
    """The floor of the fused four-aspect stack on a plain function."""
    get, set_, reset = _context.get, _context.set, _context.reset
    append = out.append
    bits = _getrandbits

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current = get()
        cid = (bits(128) or 1).to_bytes(16, "big").hex()
        request = current[8]
        if request is None:
            request = (bits(128) or 1).to_bytes(16, "big").hex()
        trace = current[2] if current[2] is not None else cid
        state = (cid, current[0], trace, service, version, None, user, operation, request)
        token = set_(state)
        start = _clock()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            end = _clock()
            reset(token)
            append((name, start, end - start, "error", type(exc).__name__, state))
            raise
        end = _clock()
        reset(token)
        append((name, start, end - start, "ok", None, state))
        return result

    return wrapper


def fused_floor_async(
    func: Callable[..., Any],
    out: list[Any],
    name: str,
    service: str,
    version: str,
    user: str,
    operation: str,
) -> Callable[..., Any]:
    """The floor of the fused four-aspect stack on a coroutine function."""
    get, set_, reset = _context.get, _context.set, _context.reset
    append = out.append
    bits = _getrandbits

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        current = get()
        cid = (bits(128) or 1).to_bytes(16, "big").hex()
        request = current[8]
        if request is None:
            request = (bits(128) or 1).to_bytes(16, "big").hex()
        trace = current[2] if current[2] is not None else cid
        state = (cid, current[0], trace, service, version, None, user, operation, request)
        token = set_(state)
        start = _clock()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            end = _clock()
            reset(token)
            append((name, start, end - start, "error", type(exc).__name__, state))
            raise
        end = _clock()
        reset(token)
        append((name, start, end - start, "ok", None, state))
        return result

    return wrapper


def generator_floor(
    func: Callable[..., Generator[Any, Any, Any]], out: list[Any], name: str
) -> Callable[..., Generator[Any, Any, Any]]:
    """The floor of ``@timed`` on a generator function: each step in a private Context."""
    append = out.append

    def drive(inner: Generator[Any, Any, Any], context: contextvars.Context) -> Any:
        run = context.run
        run(_operation.set, name)  # private Context: dropped at the end, never reset
        start = _clock()
        send = inner.send
        action: Callable[[Any], Any] = send
        value: Any = None
        while True:
            try:
                item = run(action, value)
            except StopIteration as stop:
                end = _clock()
                append((name, start, end - start, "ok", None))
                return stop.value
            except BaseException as exc:
                end = _clock()
                append((name, start, end - start, "error", type(exc).__name__))
                raise
            try:
                value = yield item
            except GeneratorExit:
                run(inner.close)
                end = _clock()
                append((name, start, end - start, "ok", None))
                raise
            except BaseException as exc:
                action = inner.throw
                value = exc
            else:
                action = send

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        return drive(func(*args, **kwargs), _copy_context())

    return wrapper


@types.coroutine
def _step_in(awaitable: Any, run: Callable[..., Any]) -> Generator[Any, Any, Any]:
    # Await ``awaitable`` with each of its steps run by ``run`` (a Context.run).
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


def async_generator_floor(func: Callable[..., Any], out: list[Any], name: str) -> Any:
    """The floor of ``@timed`` on an async generator function: each step in a private Context."""
    append = out.append

    async def drive(inner: Any, context: contextvars.Context) -> Any:
        run = context.run
        run(_operation.set, name)
        start = _clock()
        awaitable = inner.asend(None)
        while True:
            try:
                item = await _step_in(awaitable, run)
            except StopAsyncIteration:
                end = _clock()
                append((name, start, end - start, "ok", None))
                return
            except BaseException as exc:
                end = _clock()
                append((name, start, end - start, "error", type(exc).__name__))
                raise
            try:
                value = yield item
            except GeneratorExit:
                await _step_in(inner.aclose(), run)
                end = _clock()
                append((name, start, end - start, "ok", None))
                raise
            except BaseException as exc:
                awaitable = inner.athrow(exc)
            else:
                awaitable = inner.asend(value)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return drive(func(*args, **kwargs), _copy_context())

    return wrapper


# --- the C floor ----------------------------------------------------------------------------

_c_floor_module: list[Any] = []


def c_floor(func: Callable[..., Any]) -> Callable[..., Any] | None:
    """``cfloor.c``'s wrapper of ``func`` (compiled once per run), or None without a compiler.

    The least a compiled ``@timed`` without a sink can do: a fresh snapshot set in a context
    variable, two clock reads, the call passed through as received, the reset.
    """
    if not _c_floor_module:
        _c_floor_module.append(_build_c_floor())
    module = _c_floor_module[0]
    return None if module is None else module.floor(func)


def _build_c_floor() -> Any:
    import importlib.util
    import sysconfig
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("_hatch_build", root.parent / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    out = Path(tempfile.mkdtemp(prefix="cfloor-")) / f"cfloor{suffix}"
    command = hook.compile_command(out)
    command[command.index(str(hook.SOURCE))] = str(root / "cfloor.c")
    import shutil
    import subprocess

    if shutil.which(command[0]) is None:
        return None
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    loaded = importlib.util.spec_from_file_location("cfloor", out)
    assert loaded is not None
    assert loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module
