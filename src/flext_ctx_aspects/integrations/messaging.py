"""Context in message headers: inject on publish, a fresh scope on consume.

Works with any broker whose messages carry a headers mapping (Celery task headers, AMQP
properties, Kafka record headers as ``(str, bytes)`` pairs, SQS message attributes mapped to
a dict). The publisher adds the current context to the message's headers; the consumer runs
the handling of each message in a fresh context built from them, so nothing of the previous
message handled by the same worker thread is visible.

`consumer` builds a handler's context on the aspect engine (the machinery of the decorators),
so it works the same on plain, ``async``, generator and async-generator handlers (the
message's context is in force whenever the handler's body runs, across every ``yield``),
and each consumed message gets its own operation record (name, status, duration, like a
served HTTP request). The consumer's own service identity (``service_name=``, or the
``@service``/``service_context`` it runs in) wins over the message's ``X-Service-Name``.

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

import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, ParamSpec, TypeVar, cast

import wrapt

from flext_ctx_aspects import _options, _state
from flext_ctx_aspects._advice import Advice, Source, Target, Timing
from flext_ctx_aspects._engine import apply_aspect
from flext_ctx_aspects._validate import validate_name
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.integrations._outbound import outbound_formats
from flext_ctx_aspects.propagation import Extracted, Format, extract, inject
from flext_ctx_aspects.propagation._policy import inbound_defaults
from flext_ctx_aspects.typing import Getter

__all__ = ["consume_message", "consumer", "inject_message", "message_headers"]

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=MutableMapping[str, Any])


def message_headers(*, formats: Iterable[str | Format] | None = None) -> dict[str, str]:
    """Return the current context as a new headers dict for a message.

    Raises:
        ConfigError: ``formats`` is not a list of format names.
    """
    return inject({}, formats=outbound_formats("message_headers()", formats))


def inject_message(headers: H, *, formats: Iterable[str | Format] | None = None) -> H:
    """Add the current context to a message's ``headers`` mapping (in place); returns it.

    Raises:
        ConfigError: ``formats`` is not a list of format names.
        TypeError: ``headers`` is not a mutable mapping.
    """
    if not isinstance(headers, MutableMapping):
        raise TypeError(
            "inject_message() expects the message's headers as a mutable mapping "
            f"(got {_options.describe(headers)})"
        )
    return inject(headers, formats=outbound_formats("inject_message()", formats))


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
        ConfigError: An option of the wrong type (``strict="no"``).
    """
    where = "consume_message()"
    return extract(
        headers,
        getter=getter,
        formats=outbound_formats(where, formats),
        strict=_options.check_optional_bool(where, "strict", strict),
        trusted=_options.check_optional_bool(where, "trusted", trusted),
    )


class _PerCall:
    """Extracts one message's context per handler call, shared by the field sources.

    The engine computes a call's fields one after another in one thread with no other
    code in between, so the first field's source extracts the message and the others read
    the snapshot it left in a thread-local slot.
    """

    __slots__ = ("headers_of", "identity", "local", "options")

    def __init__(
        self, headers_of: Callable[..., object], options: dict[str, Any], identity: dict[str, Any]
    ) -> None:
        self.headers_of = headers_of
        self.options = options
        self.identity = identity
        self.local = threading.local()

    def compute(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        headers = (
            self.headers_of(*args, **kwargs)
            if instance is None
            else self.headers_of(instance, *args, **kwargs)
        )
        extracted = extract(headers, **self.options)
        snapshot = extracted.build_snapshot(
            fresh=True, ensure_correlation=True, overrides=self.identity
        )
        self.local.snapshot = snapshot
        return snapshot


class _MessageField(Source):
    __slots__ = ("first", "shared", "slot")

    def __init__(self, shared: _PerCall, slot: int, first: bool) -> None:
        self.shared = shared
        self.slot = slot
        self.first = first

    def __repr__(self) -> str:
        return f"message_field({self.slot})"

    def resolver(self, target: Target) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        slot = self.slot
        shared = self.shared
        if self.first:

            def extract_message(
                instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> Any:
                return shared.compute(instance, args, kwargs)[slot]

            return extract_message
        local = shared.local

        def read_message(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return local.snapshot[slot]

        return read_message


class _MessageScope:
    """The consumer aspect: every built-in field from the message, and a timing."""

    __slots__ = ("shared", "timing")

    def __init__(self, shared: _PerCall, timing: Timing) -> None:
        self.shared = shared
        self.timing = timing

    def __repr__(self) -> str:
        return f"consumer({self.shared.headers_of!r})"

    def advise(self, target: Target) -> Advice:
        fields = {
            name: _MessageField(self.shared, slot, first=index == 0)
            for index, (name, slot) in enumerate(_state.FIELD_SLOTS.items())
        }
        return Advice(fields=fields, timing=self.timing)


def consumer(
    headers_of: Callable[..., object],
    *,
    formats: Iterable[str | Format] | None = None,
    strict: bool | None = None,
    trusted: bool | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    service_environment: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a message handler so that each call runs in the message's context.

    Built on the aspect engine: plain, ``async``, generator and async-generator handlers
    (and methods) all run their whole body in the message's context, and each call is
    recorded as one operation (``name``, status, duration), as a served request is.

    Args:
        headers_of: Called with the handler's arguments, returns the message headers
            (e.g. ``lambda message: message.headers``).
        formats: As for `consume_message`.
        strict: As for `consume_message`.
        trusted: As for `consume_message`.
        service_name: This worker's service name; it wins over the message's
            ``X-Service-Name`` (so do ``service_version``/``service_environment``). Without
            it, an enclosing ``service_context``/``@service`` identity wins the same way.
        service_version: This worker's version.
        service_environment: This worker's environment.
        name: The record name of each consumed message; default ``module.qualname`` of
            the handler.

    Returns:
        A decorator for every kind of handler.

    Raises:
        ConfigError: An option of the wrong type, an unknown format, ``headers_of`` not
            callable.
        InvalidValueError: A service value is not a valid name. In strict mode, also raised
            by a call of the decorated handler whose message has an invalid context value,
            before the handler's body runs (for a generator or ``async`` handler: by the
            call itself, not at the first ``next``/``await``).
    """
    where = "consumer()"
    _options.check_callable(
        where, "headers_of", headers_of, expected="a function (handler's arguments) -> headers"
    )
    fixed: dict[str, Any] = {
        "formats": outbound_formats(where, formats),
        "strict": _options.check_optional_bool(where, "strict", strict),
        "trusted": _options.check_optional_bool(where, "trusted", trusted),
    }
    identity: dict[str, Any] = {}
    for key, value in (
        ("service_name", service_name),
        ("service_version", service_version),
        ("service_environment", service_environment),
    ):
        if _options.check_optional_str(where, key, value) is not None:
            identity[key] = validate_name(key, cast("str", value))
    if identity and "service_name" not in identity:
        raise ConfigError(
            where, "service_name", "a str when a service version or environment is given", "None"
        )
    if name is not None:
        _options.check_str(where, "name", name, expected="a non-empty str")
        if not name:
            raise ConfigError(where, "name", "a non-empty str", "''")
    shared = _PerCall(headers_of, fixed, identity)
    scope = _MessageScope(shared, Timing(name=name))

    def refuse_invalid(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # The engine never lets a failure of its field computation reach the caller, so a
        # strict refusal is decided here, when the handler is called, before its body runs
        # (for every kind: a generator or coroutine handler raises on the call itself).
        strict = fixed["strict"]
        if strict is None:
            strict = inbound_defaults().strict
        if strict:
            shared.compute(instance, args, kwargs)  # raises InvalidValueError
        return wrapped(*args, **kwargs)

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        instrumented = apply_aspect(scope, handler)
        if fixed["strict"] is False:
            return cast("Callable[P, R]", instrumented)
        # A wrapt proxy keeps what the handler is (coroutine function, generator function,
        # method binding), as the engine's own wrapper does.
        return cast("Callable[P, R]", wrapt.FunctionWrapper(instrumented, refuse_invalid))

    return decorate
