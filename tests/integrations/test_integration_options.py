"""Issue 10, items 2 and 9: every middleware / integration option is type-checked when given.

Hypothesis draws wrong-typed values for each option; each is refused with a ``ConfigError``
naming the option (and the call it was given to, never an internal function).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware
from flext_ctx_aspects.integrations.httpx import instrument_client
from flext_ctx_aspects.integrations.messaging import (
    consume_message,
    consumer,
    inject_message,
    message_headers,
)
from flext_ctx_aspects.integrations.requests import instrument_session
from flext_ctx_aspects.integrations.wsgi import FlextContextWSGIMiddleware


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    return None


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:  # pragma: no cover
    return []


_NOT_OPTIONAL_BOOL = st.one_of(
    st.sampled_from(["false", "yes", "", "0"]), st.integers(), st.lists(st.booleans(), max_size=1)
)
_NOT_OPTIONAL_STR = st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3)))
_NOT_NAMES = st.one_of(
    st.sampled_from(["flext", "w3c", "127.0.0.1", "x"]),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), min_size=1, max_size=2),
)
_NOT_STATUSES = st.one_of(
    st.integers(),
    st.sampled_from(["500", "5xx"]),
    st.lists(st.sampled_from(["500", 5.5, 99, 600, True]), min_size=1, max_size=2),
)
_NOT_CALLABLE = st.one_of(st.integers(), st.text(max_size=3), st.booleans())

SERVER_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "service_name": _NOT_OPTIONAL_STR,
    "service_version": _NOT_OPTIONAL_STR,
    "service_environment": _NOT_OPTIONAL_STR,
    "strict": _NOT_OPTIONAL_BOOL,
    "trusted": _NOT_OPTIONAL_BOOL,
    "formats": _NOT_NAMES,
    "correlation_sources": _NOT_NAMES,
    "echo_header": st.one_of(_NOT_OPTIONAL_STR, st.sampled_from(["", "X Bad", "a:b"])),
    "record_name": _NOT_CALLABLE,
    "error_statuses": _NOT_STATUSES,
}

MIDDLEWARES: dict[str, Callable[..., object]] = {
    "FlextContextMiddleware()": lambda **kw: FlextContextMiddleware(_asgi_app, **kw),
    "FlextContextWSGIMiddleware()": lambda **kw: FlextContextWSGIMiddleware(_wsgi_app, **kw),
}


def _refused(make: Callable[[], object], key: str, where: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        make()
    error = caught.value
    assert error.key == key, str(error)
    assert f"`{key}`" in str(error)
    assert where in str(error)
    assert "extract()" not in str(error)
    assert "`patterns`" not in str(error)
    return error


@pytest.mark.parametrize("middleware", sorted(MIDDLEWARES))
@pytest.mark.parametrize("key", sorted(SERVER_OPTIONS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_middleware_options_are_type_checked(
    middleware: str, key: str, data: st.DataObject
) -> None:
    value = data.draw(SERVER_OPTIONS[key], label=key)
    extra = {"service_name": "svc"} if key in ("service_version", "service_environment") else {}
    _refused(lambda: MIDDLEWARES[middleware](**{key: value}, **extra), key, middleware)


@pytest.mark.parametrize("middleware", sorted(MIDDLEWARES))
def test_strict_yes_is_refused(middleware: str) -> None:
    error = _refused(lambda: MIDDLEWARES[middleware](strict="yes"), "strict", middleware)
    assert "a bool (True or False) or None" in str(error)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlextContextMiddleware("not an app"),  # type: ignore[arg-type]
        lambda: FlextContextWSGIMiddleware(None),  # type: ignore[arg-type]
    ],
)
def test_the_app_must_be_callable(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError, match="`app`"):
        make()


def test_unknown_format_names_the_middleware_not_extract() -> None:
    with pytest.raises(ConfigError) as caught:
        FlextContextMiddleware(_asgi_app, formats=["w3c"])
    assert str(caught.value).startswith("`formats` in FlextContextMiddleware() must be")
    assert "'w3c'" in str(caught.value)


CLIENT_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "allowed_destinations": _NOT_NAMES,
    "formats": _NOT_NAMES,
}


@pytest.mark.parametrize(
    ("where", "make"),
    [
        ("instrument_client()", lambda **kw: instrument_client(httpx.Client(), **kw)),
        ("instrument_client()", lambda **kw: instrument_client(httpx.AsyncClient(), **kw)),
        ("instrument_session()", lambda **kw: instrument_session(requests.Session(), **kw)),
    ],
)
@pytest.mark.parametrize("key", sorted(CLIENT_OPTIONS))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_client_options_are_type_checked(
    where: str, make: Callable[..., object], key: str, data: st.DataObject
) -> None:
    value = data.draw(CLIENT_OPTIONS[key], label=key)
    _refused(lambda: make(**{key: value}), key, where)


def test_a_bare_host_string_names_allowed_destinations() -> None:
    with pytest.raises(ConfigError) as caught:
        instrument_client(httpx.Client(), allowed_destinations="127.0.0.1")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "`allowed_destinations` in instrument_client() must be a list of host patterns, "
        "e.g. [\"127.0.0.1\"] (got '127.0.0.1', a str)"
    )


def test_instrument_client_of_a_requests_session_points_to_the_requests_integration() -> None:
    with pytest.raises(TypeError) as caught:
        instrument_client(requests.Session())  # type: ignore[type-var]
    text = str(caught.value)
    assert "instrument_client() expects an httpx.Client or httpx.AsyncClient" in text
    assert "requests.sessions.Session" in text
    assert "flext_ctx_aspects.integrations.requests.instrument_session(session)" in text
    with pytest.raises(TypeError, match=r"integrations\.httpx\.instrument_client"):
        instrument_session(httpx.Client())  # type: ignore[arg-type]


MESSAGING_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "formats": _NOT_NAMES,
    "strict": _NOT_OPTIONAL_BOOL,
    "trusted": _NOT_OPTIONAL_BOOL,
    "service_name": _NOT_OPTIONAL_STR,
    "name": _NOT_OPTIONAL_STR,
}


@pytest.mark.parametrize("key", sorted(MESSAGING_OPTIONS))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_consumer_options_are_type_checked(key: str, data: st.DataObject) -> None:
    value = data.draw(MESSAGING_OPTIONS[key], label=key)
    _refused(lambda: consumer(lambda m: m, **{key: value}), key, "consumer()")


@pytest.mark.parametrize("key", ["formats", "strict", "trusted"])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_consume_message_options_are_type_checked(key: str, data: st.DataObject) -> None:
    value = data.draw(MESSAGING_OPTIONS[key], label=key)
    _refused(lambda: consume_message({}, **{key: value}), key, "consume_message()")


@settings(max_examples=20, deadline=None)
@given(value=_NOT_NAMES)
def test_publish_formats_are_type_checked(value: object) -> None:
    _refused(lambda: inject_message({}, formats=value), "formats", "inject_message()")
    _refused(lambda: message_headers(formats=value), "formats", "message_headers()")


def test_consumer_needs_a_callable_headers_of() -> None:
    _refused(lambda: consumer("headers"), "headers_of", "consumer()")  # type: ignore[arg-type]


_BLOCKER = textwrap.dedent(
    """
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == {name!r} or name.startswith({name!r} + "."):
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import flext_ctx_aspects.integrations.{name}
    except ImportError as error:
        print(error)
        print(error.name)
    """
)


@pytest.mark.parametrize("name", ["httpx", "requests"])
def test_importing_an_integration_without_its_extra_names_the_extra(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKER.format(name=name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    message, missing = done.stdout.strip().splitlines()
    assert message.startswith(
        f"flext_ctx_aspects.integrations.{name} needs {name}, which is not installed: "
        f"install the '{name}' extra, pip install 'flext-ctx-aspects[{name}]'"
    )
    assert f"pip install -e '.[{name}]'" in message
    assert missing == name
