"""Hypothesis fuzzing of ``extract`` over arbitrary header sets.

Whatever arrives: ``extract`` never raises (lenient) or raises only ``InvalidValueError``
(strict); the context built from it never holds a control character or an oversized value;
``inject`` never emits one either.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flext_ctx_aspects import ContextField, FlextContext, _state
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.propagation import extract, inject

MAX_VALUE = FlextConstants.Limits.MAX_HEADER_VALUE_LENGTH
TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
VISIBLE = frozenset(chr(code) for code in range(0x20, 0x7F))


class FuzzContext(FlextContext):
    fuzz_tenant = ContextField(header="X-Fuzz-Tenant", validator=str.isalnum)


KNOWN = [
    "X-Correlation-Id",
    "X-Parent-Correlation-Id",
    "X-Service-Name",
    "X-Service-Version",
    "X-Service-Environment",
    "X-Request-Id",
    "X-Operation-Name",
    "X-User-Id",
    "X-Fuzz-Tenant",
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-Sampled",
    "X-B3-Flags",
    "correlation_id",
    "request_metadata",
    "trace_id",
]

names = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN).map(str.upper),
    st.text(max_size=20),
    st.binary(max_size=20),
)
plausible = st.one_of(
    st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    st.just("4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
    st.from_regex(r"[a-z0-9]{1,8}=[ -~]{0,20}(,[a-z0-9]{1,8}=[ -~]{0,20}){0,5}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", fullmatch=True),
)
huge = st.builds(
    lambda chunk, times: chunk * times,
    st.sampled_from(["a", "\r\n", "%0A", "k=v,", "\u00e9", "\x00"]),
    st.integers(min_value=1000, max_value=100_000),
)
scalar_values = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="ascii")),
    st.binary(),
    plausible,
    huge,
)
values = st.one_of(
    scalar_values,
    st.lists(scalar_values, max_size=3),
    st.none(),
    st.integers(),
    st.dictionaries(st.text(max_size=5), st.one_of(st.text(), st.integers()), max_size=3),
)
carriers = st.one_of(
    st.dictionaries(names, values, max_size=8),
    st.lists(st.tuples(names, values), max_size=8),
    st.lists(st.tuples(st.binary(max_size=20), st.binary()), max_size=8),
)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from strings_in(item)


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def check_context_and_outbound(extracted: Any) -> None:
    for _, reason in extracted.problems:
        assert isinstance(reason, str)
    with extracted:
        snapshot = _state.get()
        for text in strings_in(snapshot):
            assert not has_control(text), "a control character was stored"
            assert len(text) <= MAX_VALUE, "an oversized value was stored"
        outbound = inject({})
        outbound_b3 = inject({}, formats=["b3", "b3multi"])
    for name, value in {**outbound, **outbound_b3}.items():
        assert TOKEN.issuperset(name)
        assert VISIBLE.issuperset(value), "a header value outside visible ASCII was emitted"
        assert 0 < len(value) <= MAX_VALUE
    assert _state.get() == _state.EMPTY


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(carrier=carriers, trusted=st.booleans())
@example(carrier={"request_metadata": []}, trusted=False)  # once raised IndexError
def test_lenient_extract_never_raises_and_stores_nothing_hostile(
    carrier: object, trusted: bool
) -> None:
    extracted = extract(
        carrier, strict=False, trusted=trusted, formats=["flext", "tracecontext", "baggage", "b3"]
    )
    check_context_and_outbound(extracted)


@FUZZ
@given(carrier=carriers)
@example(carrier={"request_metadata": []})  # once raised IndexError
def test_strict_extract_raises_only_invalid_value_error(carrier: object) -> None:
    try:
        extracted = extract(
            carrier, strict=True, formats=["flext", "tracecontext", "baggage", "b3multi"]
        )
    except InvalidValueError as error:
        refused: InvalidValueError | None = error
    else:
        refused = None
    if refused is not None:
        assert len(str(refused)) < 400  # the message never carries a huge raw value
        return
    assert extracted.problems == ()
    check_context_and_outbound(extracted)
