"""Context in message headers: inject on publish, a fresh scope on consume.

Works with any broker whose messages carry a headers mapping (Celery task headers, AMQP
properties, Kafka record headers as ``(str, bytes)`` pairs, SQS message attributes mapped to
a dict). The publisher adds the current context to the message's headers; the consumer runs
the handling of each message in a fresh context built from them, so nothing of the previous
message handled by the same worker thread is visible.

Messages usually stay inside your own system, so `inject_message` checks no
destination; messages to a third party's broker should not get the context (do not call it).

Celery-style wiring (signal names from Celery; any framework with publish/consume hooks
works the same way)::

    from celery.signals import before_task_publish, task_prerun, task_postrun

    @before_task_publish.connect
    def _publish(headers, **_):
        inject_message(headers)

    _scopes = {}

    @task_prerun.connect
    def _consume(task_id, task, **_):
        scope = consume_message(vars(task.request))
        scope.__enter__()
        _scopes[task_id] = scope

    @task_postrun.connect
    def _done(task_id, **_):
        _scopes.pop(task_id).__exit__(None, None, None)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, ParamSpec, TypeVar, cast

from flext_ctx_aspects.propagation import Extracted, Format, extract, inject
from flext_ctx_aspects.typing import Getter

__all__ = ["consume_message", "consumer", "inject_message", "message_headers"]

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=MutableMapping[str, Any])


def message_headers(*, formats: Iterable[str | Format] | None = None) -> dict[str, str]:
    """Return the current context as a new headers dict for a message."""
    return inject({}, formats=formats)


def inject_message(headers: H, *, formats: Iterable[str | Format] | None = None) -> H:
    """Add the current context to a message's ``headers`` mapping (in place); returns it."""
    return inject(headers, formats=formats)


def consume_message(
    headers: object,
    *,
    getter: Getter | None = None,
    formats: Iterable[str | Format] | None = None,
    strict: bool | None = None,
    trusted: bool | None = None,
) -> Extracted:
    """Read a consumed message's headers; enter the result to handle it in a fresh scope.

    ``with consume_message(message.headers) as correlation_id: handle(message)``.

    Args:
        headers: The message's headers (mapping or pairs; bytes values are fine).
        getter: A getter for another carrier shape.
        formats: Formats to read; None uses the defaults.
        strict: Raise ``InvalidValueError`` on an invalid value; default
            ``Settings.strict_validation``.
        trusted: Accept a user id from the message; default
            ``Settings.trust_inbound_user_id``. A queue only your services publish to can be
            trusted; one that outside clients can publish to cannot.

    Raises:
        InvalidValueError: Only in strict mode.
    """
    return extract(headers, getter=getter, formats=formats, strict=strict, trusted=trusted)


def consumer(
    headers_of: Callable[..., object],
    *,
    formats: Iterable[str | Format] | None = None,
    strict: bool | None = None,
    trusted: bool | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a message handler so that each call runs in the message's context.

    Args:
        headers_of: Called with the handler's arguments, returns the message headers
            (e.g. ``lambda message: message.headers``).
        formats: As for `consume_message`.
        strict: As for `consume_message`.
        trusted: As for `consume_message`.

    Returns:
        A decorator for plain and ``async`` handlers.
    """
    fixed: dict[str, Any] = {"formats": formats, "strict": strict, "trusted": trusted}

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def handle_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with consume_message(headers_of(*args, **kwargs), **fixed):
                    return await handler(*args, **kwargs)

            return cast("Callable[P, R]", handle_async)

        @functools.wraps(handler)
        def handle(*args: P.args, **kwargs: P.kwargs) -> R:
            with consume_message(headers_of(*args, **kwargs), **fixed):
                return handler(*args, **kwargs)

        return handle

    return decorate
