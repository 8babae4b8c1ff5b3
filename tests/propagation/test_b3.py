"""Zipkin B3 wire formats: every rule of the README is a test vector.

Quotes are from https://github.com/openzipkin/b3-propagation (README.md), the B3
specification; where it is silent the vectors follow the reference implementation (Brave).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.propagation.b3 import (
    B3_FLAGS_HEADER,
    B3_PARENT_SPAN_ID_HEADER,
    B3_SAMPLED_HEADER,
    B3_SPAN_ID_HEADER,
    B3_TRACE_ID_HEADER,
    SAMPLING_ONLY_REASON,
    B3Context,
    format_b3_multi,
    format_b3_single,
    parse_b3_multi,
    parse_b3_single,
)

V = TypeVar("V")
R = TypeVar("R")

# README examples.
TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
SPAN = "e457b5a2e4d86bd1"
PARENT = "05e3ac9a4f6e3b90"
TRACE64 = "463ac35c9f6413ad"
TRACE64_PADDED = "0" * 16 + TRACE64
HUGE = 100_000
SENTINEL = "SENTINEL-c0ffee"
HEADER_NAMES = (
    B3_TRACE_ID_HEADER,
    B3_SPAN_ID_HEADER,
    B3_PARENT_SPAN_ID_HEADER,
    B3_SAMPLED_HEADER,
    B3_FLAGS_HEADER,
)
SINGLE_RE = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}(-[01d](-[0-9a-f]{16})?)?")


def outcome(parse: Callable[[V], R], value: V) -> R | InvalidValueError:
    """Return what ``parse(value)`` returns, or the InvalidValueError it raises."""
    try:
        return parse(value)
    except InvalidValueError as error:
        return error


def getter(headers: Mapping[str, str | bytes]) -> Callable[[str], str | None]:
    """A case-insensitive header lookup, as an HTTP framework provides."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return lambda name: lowered.get(name.lower())  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# single header
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # README "b3={TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}, where the last two
        # fields are optional."
        pytest.param(
            f"{TRACE}-{SPAN}-1-{PARENT}",
            B3Context(TRACE, SPAN, sampled=True, parent_span_id=PARENT),
            id="readme-all-fields",
        ),
        # README "Defer is absence of the sampling field."
        pytest.param(f"{TRACE}-{SPAN}", B3Context(TRACE, SPAN), id="ids-only-defer"),
        # README "Accept: 1", "Deny: 0"
        pytest.param(f"{TRACE}-{SPAN}-1", B3Context(TRACE, SPAN, sampled=True), id="accept"),
        pytest.param(f"{TRACE}-{SPAN}-0", B3Context(TRACE, SPAN, sampled=False), id="deny"),
        # README "Debug: d"; "Debug is an emphasized accept decision that implies accept"
        pytest.param(
            f"{TRACE}-{SPAN}-d", B3Context(TRACE, SPAN, sampled=True, debug=True), id="debug"
        ),
        pytest.param(
            f"{TRACE}-{SPAN}-0-{PARENT}",
            B3Context(TRACE, SPAN, sampled=False, parent_span_id=PARENT),
            id="deny-with-parent",
        ),
        pytest.param(
            f"{TRACE}-{SPAN}-d-{PARENT}",
            B3Context(TRACE, SPAN, sampled=True, debug=True, parent_span_id=PARENT),
            id="debug-with-parent",
        ),
        # README "The first position of the b3 value is the 32 or 16 lower-hex character
        # TraceId": a 64-bit id is left-padded.
        pytest.param(
            f"{TRACE64}-{SPAN}-1", B3Context(TRACE64_PADDED, SPAN, sampled=True), id="trace-64"
        ),
        pytest.param(f" \t{TRACE}-{SPAN}-1\t ", B3Context(TRACE, SPAN, sampled=True), id="ows"),
    ],
)
def test_parse_b3_single_valid(value: str, expected: B3Context) -> None:
    assert parse_b3_single(value) == expected
    assert parse_b3_single(value.encode()) == expected


@pytest.mark.parametrize(
    "value",
    [
        # README "Note: When only propagating a sampling decision, the header is still named
        # b3, but only contains the sampling state."; "A deny decision encodes as: b3: 0"
        pytest.param("0", id="deny-only"),
        pytest.param("1", id="accept-only"),
        pytest.param("d", id="debug-only"),
        pytest.param(" 0 ", id="deny-only-ows"),
    ],
)
def test_parse_b3_single_sampling_only(value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_b3_single(value)
    assert caught.value.reason == SAMPLING_ONLY_REASON
    assert caught.value.field == "b3"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(" \t", id="whitespace-only"),
        # README "Unless propagating only the Sampling State, the TraceId is required." /
        # "the SpanId is required."
        pytest.param(TRACE, id="trace-id-only"),
        pytest.param(f"{TRACE}-", id="empty-span-id"),
        pytest.param(f"-{SPAN}", id="empty-trace-id"),
        # README: ids are "lower-hex characters".
        pytest.param(f"{TRACE.upper()}-{SPAN}", id="trace-id-uppercase"),
        pytest.param(f"{TRACE}-{SPAN.upper()}", id="span-id-uppercase"),
        pytest.param(f"{TRACE}-{SPAN}-1-{PARENT.upper()}", id="parent-id-uppercase"),
        pytest.param(f"{TRACE[:-1]}g-{SPAN}", id="trace-id-not-hex"),
        # README "32 or 16 lower-hex character TraceId"; "16 lower-hex character SpanId"
        pytest.param(f"{TRACE[:-1]}-{SPAN}", id="trace-id-31"),
        pytest.param(f"{TRACE}0-{SPAN}", id="trace-id-33"),
        pytest.param(f"{TRACE64[:-1]}-{SPAN}", id="trace-id-15"),
        pytest.param(f"{TRACE64}0-{SPAN}", id="trace-id-17"),
        pytest.param(f"{TRACE}-{SPAN[:-1]}", id="span-id-15"),
        pytest.param(f"{TRACE}-{SPAN}0", id="span-id-17"),
        pytest.param(f"{TRACE}-{SPAN}-1-{PARENT[:-1]}", id="parent-id-15"),
        pytest.param(f"{TRACE}-{SPAN}-1-{PARENT}0", id="parent-id-17"),
        # Brave: "expected a 16 or 32 lower hex trace ID" refuses zero ids.
        pytest.param(f"{'0' * 32}-{SPAN}", id="trace-id-zero"),
        pytest.param(f"{'0' * 16}-{SPAN}", id="trace-id-64-zero"),
        pytest.param(f"{TRACE}-{'0' * 16}", id="span-id-zero"),
        pytest.param(f"{TRACE}-{SPAN}-1-{'0' * 16}", id="parent-id-zero"),
        # README Sampling State: "Accept: 1", "Deny: 0", "Debug: d", nothing else.
        pytest.param(f"{TRACE}-{SPAN}-2", id="sampling-2"),
        pytest.param(f"{TRACE}-{SPAN}-D", id="sampling-uppercase-d"),
        pytest.param(f"{TRACE}-{SPAN}-true", id="sampling-true"),
        pytest.param(f"{TRACE}-{SPAN}-", id="sampling-empty"),
        pytest.param(f"{TRACE}-{SPAN}-1-", id="parent-empty"),
        # The parent comes after a sampling state, never in its place.
        pytest.param(f"{TRACE}-{SPAN}-{PARENT}", id="parent-without-sampling"),
        pytest.param(f"{TRACE}-{SPAN}-1-{PARENT}-x", id="five-fields"),
        pytest.param(f"{TRACE}-{SPAN}-1-{PARENT}\r\n", id="trailing-crlf"),
        pytest.param(f"{TRACE}-{SPAN}\n-1", id="inner-lf"),
        pytest.param(f"{TRACE}-{SPAN}-1\x00", id="trailing-nul"),
        pytest.param(f"{TRACE}-{SPAN}-\u0661", id="non-ascii-digit"),
        pytest.param(f"{TRACE}-{SPAN}-1-{PARENT}" + "-0" * HUGE, id="huge"),
    ],
)
def test_parse_b3_single_invalid(value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_b3_single(value)
    assert caught.value.field == "b3"
    assert caught.value.length == len(value)
    assert caught.value.reason != SAMPLING_ONLY_REASON


def test_parse_b3_single_refuses_non_ascii_bytes_and_other_types() -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_b3_single(f"{TRACE}-{SPAN}-1".encode() + b"\xe9")
    assert caught.value.length == 52
    with pytest.raises(InvalidValueError):
        parse_b3_single(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# multiple headers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # README example of the multiple header encoding.
        pytest.param(
            {
                "X-B3-TraceId": TRACE,
                "X-B3-ParentSpanId": PARENT,
                "X-B3-SpanId": SPAN,
                "X-B3-Sampled": "1",
            },
            B3Context(TRACE, SPAN, sampled=True, parent_span_id=PARENT),
            id="readme-example",
        ),
        # README "The X-B3-TraceId header is required and is encoded as 32 or 16 lower-hex
        # characters."
        pytest.param(
            {"X-B3-TraceId": TRACE64, "X-B3-SpanId": "a2fb4a1d1a96d312"},
            B3Context(TRACE64_PADDED, "a2fb4a1d1a96d312"),
            id="readme-trace-64",
        ),
        # README "Absent means defer the decision to the receiver of this header."
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN}, B3Context(TRACE, SPAN), id="defer"
        ),
        # README "a deny as X-B3-Sampled: 0"
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "0"},
            B3Context(TRACE, SPAN, sampled=False),
            id="deny",
        ),
        # README "some tracers propagated X-B3-Sampled as true or false ... a lenient
        # implementation may accept them."
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "true"},
            B3Context(TRACE, SPAN, sampled=True),
            id="lenient-true",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "False"},
            B3Context(TRACE, SPAN, sampled=False),
            id="lenient-false",
        ),
        # README "Debug is encoded as X-B3-Flags: 1. Debug implies an accept decision"
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "1"},
            B3Context(TRACE, SPAN, sampled=True, debug=True),
            id="debug",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "1", "X-B3-Sampled": "0"},
            B3Context(TRACE, SPAN, sampled=True, debug=True),
            id="debug-wins-over-deny",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "0"},
            B3Context(TRACE, SPAN),
            id="flags-0",
        ),
        # README "Http headers are case-insensitive"; gRPC "names are explicitly or
        # implicitly down-cased".
        pytest.param(
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-parentspanid": PARENT},
            B3Context(TRACE, SPAN, parent_span_id=PARENT),
            id="lowercase-names",
        ),
        pytest.param(
            {"X-B3-TraceId": f" {TRACE}\t", "X-B3-SpanId": SPAN, "X-B3-ParentSpanId": ""},
            B3Context(TRACE, SPAN),
            id="ows-and-empty-parent",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE.encode(), "X-B3-SpanId": SPAN.encode()},
            B3Context(TRACE, SPAN),
            id="bytes-values",
        ),
    ],
)
def test_parse_b3_multi_valid(headers: dict[str, str | bytes], expected: B3Context) -> None:
    assert parse_b3_multi(getter(headers)) == expected


@pytest.mark.parametrize(
    ("headers", "field", "reason"),
    [
        pytest.param({}, B3_TRACE_ID_HEADER, "missing", id="no-headers"),
        # README "While valid to propagate only a reject sampling decision (X-B3-Sampled: 0)"
        pytest.param(
            {"X-B3-Sampled": "0"}, B3_TRACE_ID_HEADER, SAMPLING_ONLY_REASON, id="deny-only"
        ),
        pytest.param(
            {"X-B3-Flags": "1"}, B3_TRACE_ID_HEADER, SAMPLING_ONLY_REASON, id="debug-only"
        ),
        # README "The X-B3-TraceId header is required"; "The X-B3-SpanId header is required"
        pytest.param({"X-B3-SpanId": SPAN}, B3_TRACE_ID_HEADER, "missing", id="no-trace-id"),
        pytest.param({"X-B3-TraceId": TRACE}, B3_SPAN_ID_HEADER, "missing", id="no-span-id"),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": " "},
            B3_SPAN_ID_HEADER,
            "missing",
            id="blank-span-id",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE.upper(), "X-B3-SpanId": SPAN},
            B3_TRACE_ID_HEADER,
            "lowercase hex",
            id="trace-id-uppercase",
        ),
        pytest.param(
            {"X-B3-TraceId": "0" * 32, "X-B3-SpanId": SPAN},
            B3_TRACE_ID_HEADER,
            "not all zeros",
            id="trace-id-zero",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN[:-1]},
            B3_SPAN_ID_HEADER,
            "16 lowercase hex",
            id="span-id-short",
        ),
        # README "It is encoded as 16 lower-hex characters."
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-ParentSpanId": PARENT + "0"},
            B3_PARENT_SPAN_ID_HEADER,
            "parent span id",
            id="parent-long",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-ParentSpanId": "0" * 16},
            B3_PARENT_SPAN_ID_HEADER,
            "parent span id",
            id="parent-zero",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "2"},
            B3_SAMPLED_HEADER,
            "expected",
            id="sampled-2",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "d"},
            B3_SAMPLED_HEADER,
            "expected",
            id="sampled-d",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "true"},
            B3_FLAGS_HEADER,
            "expected",
            id="flags-true",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "3"},
            B3_FLAGS_HEADER,
            "expected",
            id="flags-3",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE + "\r\n", "X-B3-SpanId": SPAN},
            B3_TRACE_ID_HEADER,
            "lowercase hex",
            id="trace-id-crlf",
        ),
        pytest.param(
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": "\u0661" * 16},
            B3_SPAN_ID_HEADER,
            "non-ASCII",
            id="span-id-non-ascii",
        ),
    ],
)
def test_parse_b3_multi_invalid(headers: dict[str, str], field: str, reason: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_b3_multi(getter(headers))
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert caught.value.length == len(headers.get(field, ""))


def test_b3_errors_never_contain_the_value() -> None:
    for value in (SENTINEL, f"{TRACE}-{SENTINEL}", f"{TRACE}-{SPAN}-{SENTINEL}"):
        with pytest.raises(InvalidValueError) as caught:
            parse_b3_single(value)
        assert SENTINEL not in str(caught.value)
    for name in HEADER_NAMES:
        headers = {B3_TRACE_ID_HEADER: TRACE, B3_SPAN_ID_HEADER: SPAN, name: SENTINEL}
        with pytest.raises(InvalidValueError) as caught:
            parse_b3_multi(getter(headers))
        assert SENTINEL not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctx", "single", "multi"),
    [
        pytest.param(
            B3Context(TRACE, SPAN),
            f"{TRACE}-{SPAN}",
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN},
            id="defer",
        ),
        pytest.param(
            B3Context(TRACE, SPAN, sampled=True, parent_span_id=PARENT),
            f"{TRACE}-{SPAN}-1-{PARENT}",
            {
                "X-B3-TraceId": TRACE,
                "X-B3-SpanId": SPAN,
                "X-B3-ParentSpanId": PARENT,
                "X-B3-Sampled": "1",
            },
            id="readme-example",
        ),
        pytest.param(
            B3Context(TRACE, SPAN, sampled=False),
            f"{TRACE}-{SPAN}-0",
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "0"},
            id="deny",
        ),
        # README "Debug implies an accept decision, so don't also send the X-B3-Sampled
        # header."
        pytest.param(
            B3Context(TRACE, SPAN, sampled=True, debug=True),
            f"{TRACE}-{SPAN}-d",
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "1"},
            id="debug",
        ),
        pytest.param(
            B3Context(TRACE, SPAN, debug=True),
            f"{TRACE}-{SPAN}-d",
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "1"},
            id="debug-sampled-unset",
        ),
        # The single header has no place for a parent without a sampling state.
        pytest.param(
            B3Context(TRACE, SPAN, parent_span_id=PARENT),
            f"{TRACE}-{SPAN}",
            {"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-ParentSpanId": PARENT},
            id="defer-with-parent",
        ),
        pytest.param(
            B3Context(TRACE64, SPAN, sampled=True),
            f"{TRACE64_PADDED}-{SPAN}-1",
            {"X-B3-TraceId": TRACE64_PADDED, "X-B3-SpanId": SPAN, "X-B3-Sampled": "1"},
            id="trace-64-written-as-32",
        ),
    ],
)
def test_format_b3(ctx: B3Context, single: str, multi: dict[str, str]) -> None:
    assert format_b3_single(ctx) == single
    assert format_b3_multi(ctx) == multi


@pytest.mark.parametrize(
    "ctx",
    [
        pytest.param(B3Context(TRACE.upper(), SPAN), id="trace-id-uppercase"),
        pytest.param(B3Context("0" * 32, SPAN), id="trace-id-zero"),
        pytest.param(B3Context(TRACE[:-1], SPAN), id="trace-id-31"),
        pytest.param(B3Context(TRACE, SPAN.upper()), id="span-id-uppercase"),
        pytest.param(B3Context(TRACE, "0" * 16), id="span-id-zero"),
        pytest.param(B3Context(TRACE, SPAN, parent_span_id=""), id="parent-empty"),
        pytest.param(B3Context(TRACE, SPAN, parent_span_id="0" * 16), id="parent-zero"),
        pytest.param(B3Context(TRACE, SPAN, sampled=False, debug=True), id="debug-denied"),
        pytest.param(B3Context(TRACE, SPAN, sampled="yes"), id="sampled-str"),  # type: ignore[arg-type]
        pytest.param(B3Context(TRACE, SPAN, debug=None), id="debug-none"),  # type: ignore[arg-type]
        pytest.param(B3Context(TRACE, SPAN, sampled=1), id="sampled-int"),  # type: ignore[arg-type]
        pytest.param(B3Context(None, SPAN), id="trace-id-none"),  # type: ignore[arg-type]
    ],
)
def test_format_b3_refuses_invalid_context(ctx: B3Context) -> None:
    with pytest.raises(ValueError, match=r"trace_id|span_id|sampled|debug"):
        format_b3_single(ctx)
    with pytest.raises(ValueError, match=r"trace_id|span_id|sampled|debug"):
        format_b3_multi(ctx)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------

trace_ids = st.from_regex(r"[0-9a-f]{32}", fullmatch=True).filter(lambda s: s.strip("0"))
span_ids = st.from_regex(r"[0-9a-f]{16}", fullmatch=True).filter(lambda s: s.strip("0"))
contexts = st.builds(
    lambda trace_id, span_id, decision, parent: B3Context(
        trace_id, span_id, sampled=decision[0], debug=decision[1], parent_span_id=parent
    ),
    trace_ids,
    span_ids,
    st.sampled_from([(None, False), (True, False), (False, False), (True, True)]),
    st.none() | span_ids,
)


def assert_valid_context(ctx: B3Context) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", ctx.trace_id)
    assert ctx.trace_id.strip("0")
    assert re.fullmatch(r"[0-9a-f]{16}", ctx.span_id)
    assert ctx.span_id.strip("0")
    assert ctx.parent_span_id is None or re.fullmatch(r"[0-9a-f]{16}", ctx.parent_span_id)
    assert not ctx.debug or ctx.sampled is True


@given(st.text() | st.binary())
@example("0" * HUGE)
@example(b"\x00\r\n" * HUGE)
@example(f"{TRACE}-{SPAN}-1-{PARENT}\r\n")
def test_parse_b3_single_returns_valid_or_raises(value: str | bytes) -> None:
    result = outcome(parse_b3_single, value)
    if isinstance(result, InvalidValueError):
        assert result.field == "b3"
        assert result.length == len(value)
    else:
        assert_valid_context(result)


@given(
    st.dictionaries(
        st.sampled_from(HEADER_NAMES),
        st.text(max_size=40) | st.binary(max_size=40) | st.sampled_from(["0", "1", "d", TRACE]),
    )
)
@example({B3_TRACE_ID_HEADER: "f" * HUGE, B3_SPAN_ID_HEADER: "\x00" * HUGE})
def test_parse_b3_multi_returns_valid_or_raises(headers: dict[str, str | bytes]) -> None:
    result = outcome(parse_b3_multi, getter(headers))
    if isinstance(result, InvalidValueError):
        assert result.field in HEADER_NAMES
    else:
        assert_valid_context(result)


@given(contexts)
def test_format_b3_single_round_trips(ctx: B3Context) -> None:
    value = format_b3_single(ctx)
    assert SINGLE_RE.fullmatch(value)
    expected = ctx
    if ctx.sampled is None and not ctx.debug:
        expected = B3Context(ctx.trace_id, ctx.span_id)  # no place for the parent
    assert parse_b3_single(value) == expected


@given(contexts)
def test_format_b3_multi_round_trips(ctx: B3Context) -> None:
    headers = format_b3_multi(ctx)
    assert all(re.fullmatch(r"[0-9a-f]+", v) for v in headers.values())
    assert not (B3_SAMPLED_HEADER in headers and B3_FLAGS_HEADER in headers)
    assert parse_b3_multi(getter(headers)) == ctx
