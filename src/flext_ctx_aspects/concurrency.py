"""Carry the context into threads and executors.

A new thread starts with an empty ``contextvars.Context``, and a ``ThreadPoolExecutor``
worker runs every task in the worker thread's own context: by default the correlation id,
service identity and request fields do not cross. The helpers here run the work in a *copy*
of the submitter's context, taken when the work is submitted:

* `ContextExecutor` — a ``ThreadPoolExecutor`` whose ``submit`` and ``map`` carry it.
* `submit` — the same for any executor (or a library-owned default one).
* `carry_context` — wraps a function for ``threading.Thread(target=...)``, callbacks,
  ``loop.call_soon_threadsafe`` and other places that call it later, elsewhere.
* `run_in_executor` — ``loop.run_in_executor`` that carries it (like ``asyncio.to_thread``
  but with your executor).

The worker sees the snapshot the submitter had; changes the worker makes (new scopes, a
``set_correlation_id``) stay in its copy and never leak back to the submitter, to the worker
thread's next task, or to other workers. Other ``ContextVar`` values (structlog's, your own)
are carried the same way.

The submitter's *running timed operation* is not carried: the worker may still run after that
operation finished and its record was sent, so ``add_operation_metadata`` in a worker does
nothing unless the worker times its own work (``@timed``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from flext_ctx_aspects import _state

__all__ = [
    "ContextExecutor",
    "carry_context",
    "default_executor",
    "run_in_executor",
    "set_default_workers",
    "shutdown_default_executor",
    "submit",
]

P = ParamSpec("P")
R = TypeVar("R")


def _captured() -> contextvars.Context:
    """Return a copy of the current context without the running timed operation."""
    context = contextvars.copy_context()
    if _state.get_operation() is not None:
        context.run(_state.push_operation, None)
    return context


def _bound(
    context: contextvars.Context, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> Callable[[], R]:
    """Return a no-argument callable running ``fn(*args, **kwargs)`` in ``context``."""

    def call() -> R:
        return context.run(fn, *args, **kwargs)

    return call


class ContextExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs each task in a copy of its submitter's context.

    ``map`` goes through ``submit`` (``Executor.map`` is built on it), so it carries the
    context too: the one in force when ``map`` is called.

    Args:
        max_workers: Worker threads; default ``Settings.max_concurrent_contexts`` (and, when
            that is None, ``concurrent.futures``' own default).
        thread_name_prefix: As for ``ThreadPoolExecutor``.
        initializer: As for ``ThreadPoolExecutor`` (runs in the worker's own context).
        initargs: As for ``ThreadPoolExecutor``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "flext-ctx",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is None:
            max_workers = _default_workers
        super().__init__(max_workers, thread_name_prefix, initializer, initargs)

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a copy of the caller's context."""
        return super().submit(_bound(_captured(), fn, *args, **kwargs))


_default_workers: int | None = None


def set_default_workers(max_workers: int | None) -> None:
    """Set the worker count of executors created without one (``apply_settings`` calls it).

    Args:
        max_workers: Worker threads; None lets ``concurrent.futures`` decide.
    """
    global _default_workers
    _default_workers = max_workers


_default_lock = threading.Lock()
_default: ContextExecutor | None = None


def default_executor() -> ContextExecutor:
    """Return the library's shared `ContextExecutor`, creating it on first use.

    Its size is ``Settings.max_concurrent_contexts`` when it is created; call
    `shutdown_default_executor` after changing the settings to get a new one.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = ContextExecutor(thread_name_prefix="flext-ctx-default")
        return _default


def shutdown_default_executor(*, wait: bool = True) -> None:
    """Shut the shared executor down; the next `submit` without executor makes a new one."""
    global _default
    with _default_lock:
        executor, _default = _default, None
    if executor is not None:
        executor.shutdown(wait=wait)


def submit(
    executor: Executor | None, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> Future[R]:
    """Submit ``fn(*args, **kwargs)`` to ``executor`` in a copy of the caller's context.

    Args:
        executor: Any ``concurrent.futures`` thread executor; None uses
            `default_executor`. (A process pool cannot carry a context: pass the
            values, e.g. ``FlextContext.Serialization.get_full_context()``, explicitly.)
        fn: The function to run.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments.

    Returns:
        The future of the call.
    """
    target = default_executor() if executor is None else executor
    if isinstance(target, ContextExecutor):
        return target.submit(fn, *args, **kwargs)
    return target.submit(_bound(_captured(), fn, *args, **kwargs))


def carry_context(fn: Callable[P, R], /) -> Callable[P, R]:
    """Wrap ``fn`` so that it runs in the context in force *now*, wherever it is called.

    ``threading.Thread(target=carry_context(work)).start()`` runs ``work`` with the
    creator's correlation id. Each call runs in its own copy of the captured context, so the
    wrapper may be called many times, from several threads at once, and what one call changes
    is seen neither by the others nor by the creator.

    Raises:
        TypeError: ``fn`` is a coroutine function or an async generator function: asyncio
            tasks already copy the context when they are created.
    """
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"carry_context() wraps functions run by threads and callbacks; "
            f"{getattr(fn, '__qualname__', fn)!r} is async, and asyncio tasks carry the "
            "context already (asyncio.create_task copies it)"
        )
    captured = _captured()

    @functools.wraps(fn)
    def in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return in_captured_context


def run_in_executor(
    loop: asyncio.AbstractEventLoop | None,
    executor: Executor | None,
    fn: Callable[..., R],
    /,
    *args: Any,
) -> asyncio.Future[R]:
    """``loop.run_in_executor(executor, fn, *args)``, run in a copy of the caller's context.

    Args:
        loop: The event loop; None uses the running loop.
        executor: The executor; None uses the loop's default executor.
        fn: The function to run in a worker thread.
        *args: Its positional arguments (use ``functools.partial`` for keywords).

    Returns:
        An awaitable future of the result.

    Raises:
        RuntimeError: ``loop`` is None and no event loop is running.
    """
    target_loop = asyncio.get_running_loop() if loop is None else loop
    return target_loop.run_in_executor(executor, _captured().run, fn, *args)
