"""W3C Trace Context wire format: every rule of the spec is a test vector.

Quotes are from https://www.w3.org/TR/trace-context/ (W3C Recommendation, Level 1); section
numbers are that document's. Vectors marked "test suite" come from the W3C conformance suite
(w3c/trace-context, test/test.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.propagation.w3c import (
    FLAG_SAMPLED,
    MAX_TRACESTATE_MEMBERS,
    TRACEPARENT_LENGTH,
    TraceParent,
    format_traceparent,
    format_tracestate,
    is_valid_parent_id,
    is_valid_trace_id,
    is_valid_tracestate_key,
    is_valid_tracestate_value,
    new_parent_id,
    parse_traceparent,
    parse_tracestate,
    update_tracestate,
)

V = TypeVar("V")
R = TypeVar("R")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SUITE_TRACE = "12345678901234567890123456789012"
SUITE_PARENT = "1234567890123456"
SUITE = f"00-{SUITE_TRACE}-{SUITE_PARENT}-01"
SENTINEL = "SENTINEL-TOKEN-c0ffee"
HUGE = 100_000

# Independent oracles, written from the ABNF rather than from the module under test.
TRACEPARENT_00_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
KEY_RE = re.compile(
    r"[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"
)
VALUE_RE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\U0010ffff]")


def outcome(parse: Callable[[V], R], value: V) -> R | InvalidValueError:
    """Return what ``parse(value)`` returns, or the InvalidValueError it raises."""
    try:
        return parse(value)
    except InvalidValueError as error:
        return error


def tp(version: str = "00", trace: str = TRACE, parent: str = PARENT, flags: str = "01") -> str:
    return f"{version}-{trace}-{parent}-{flags}"


# ---------------------------------------------------------------------------------------------
# traceparent: valid vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # §3.2.3 "Valid traceparent when caller sampled this request"
        pytest.param(tp(), TraceParent(0, TRACE, PARENT, 1), id="spec-example-sampled"),
        # §3.2.3 "Valid traceparent when caller didn't sample this request"
        pytest.param(
            tp(flags="00"), TraceParent(0, TRACE, PARENT, 0), id="spec-example-not-sampled"
        ),
        # test suite: test_traceparent_included_tracestate_missing
        pytest.param(SUITE, TraceParent(0, SUITE_TRACE, SUITE_PARENT, 1), id="suite-basic"),
        # §3.2.2.5 "a flag 00000001 could be encoded as 01 in hex, or 09 in hex if present with
        # the flag 00001000": unknown bits are kept for version 00.
        pytest.param(tp(flags="09"), TraceParent(0, TRACE, PARENT, 9), id="flags-09"),
        # §3.2.2.5 "all 8 flags set would be ff"
        pytest.param(tp(flags="ff"), TraceParent(0, TRACE, PARENT, 0xFF), id="flags-ff"),
        # test suite test_traceparent_ows_handling: "heading and trailing OWS" is accepted
        # (RFC 7230 §3.2.4 excludes it from the field value).
        pytest.param(
            " " + SUITE, TraceParent(0, SUITE_TRACE, SUITE_PARENT, 1), id="ows-leading-space"
        ),
        pytest.param(
            "\t" + SUITE, TraceParent(0, SUITE_TRACE, SUITE_PARENT, 1), id="ows-leading-tab"
        ),
        pytest.param(
            SUITE + " ", TraceParent(0, SUITE_TRACE, SUITE_PARENT, 1), id="ows-trailing-space"
        ),
        pytest.param(
            SUITE + "\t", TraceParent(0, SUITE_TRACE, SUITE_PARENT, 1), id="ows-trailing-tab"
        ),
        pytest.param(
            "\t " + SUITE + " \t", TraceParent(0, SUITE_TRACE, SUITE_PARENT, 1), id="ows-both"
        ),
        # §3.2.4 "If a higher version is detected, the implementation SHOULD try to parse it"
        # (test suite test_traceparent_version_0xcc)
        pytest.param(tp("cc"), TraceParent(0xCC, TRACE, PARENT, 1), id="version-cc-55-chars"),
        pytest.param(
            tp("cc") + "-what-the-future-will-be-like",
            TraceParent(0xCC, TRACE, PARENT, 1),
            id="version-cc-extra-fields",
        ),
        # §3.2.4 "Vendors MUST check that the 2 characters are either the end of the string or
        # a dash": a bare trailing dash is "a dash".
        pytest.param(
            tp("01") + "-", TraceParent(1, TRACE, PARENT, 1), id="version-01-trailing-dash"
        ),
        # §3.2.2.1 only ff is forbidden; fe is the highest usable version.
        pytest.param(tp("fe"), TraceParent(0xFE, TRACE, PARENT, 1), id="version-fe"),
        # §4.3 "The vendor will only parse the trace-flags values supported by this version of
        # this specification and ignore all other values."
        pytest.param(
            tp("01", flags="ff"), TraceParent(1, TRACE, PARENT, 1), id="higher-version-flags-masked"
        ),
        pytest.param(
            tp("01", flags="fe"), TraceParent(1, TRACE, PARENT, 0), id="higher-version-unsampled"
        ),
    ],
)
def test_parse_traceparent_valid(value: str, expected: TraceParent) -> None:
    assert parse_traceparent(value) == expected
    assert parse_traceparent(value.encode("latin-1")) == expected


def test_sampled_masks_the_flag_bit() -> None:
    """§3.2.2.5 "A common mistake in bit fields is forgetting to mask when interpreting flags"."""
    assert parse_traceparent(tp(flags="01")).sampled is True
    assert parse_traceparent(tp(flags="09")).sampled is True
    assert parse_traceparent(tp(flags="ff")).sampled is True
    assert parse_traceparent(tp(flags="fe")).sampled is False
    assert parse_traceparent(tp(flags="00")).sampled is False


# ---------------------------------------------------------------------------------------------
# traceparent: invalid vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        # §3.2.2.1 "Version ff is invalid" (test suite test_traceparent_version_0xff)
        pytest.param(tp("ff"), id="version-ff"),
        pytest.param(tp("ff") + "-future", id="version-ff-longer"),
        # §3.2.4 "When the version prefix cannot be parsed (it's not 2 hex characters followed
        # by a dash (-)), the implementation should restart the trace."
        pytest.param(tp(".0"), id="version-illegal-first-char"),
        pytest.param(tp("0."), id="version-illegal-second-char"),
        pytest.param(tp("000"), id="version-too-long-3"),
        pytest.param(tp("0000"), id="version-too-long-4"),
        pytest.param(tp("0"), id="version-too-short"),
        # §3.2.2.1 version = 2HEXDIGLC: uppercase is not HEXDIGLC.
        pytest.param(tp("0A"), id="version-uppercase"),
        pytest.param("00", id="version-only"),
        pytest.param("00-", id="version-and-dash-only"),
        # §3.2.2.3 "All bytes as zero (00000000000000000000000000000000) is considered an
        # invalid value." (test suite test_traceparent_trace_id_all_zero)
        pytest.param(tp(trace="0" * 32), id="trace-id-all-zero"),
        pytest.param(tp("cc", trace="0" * 32), id="trace-id-all-zero-higher-version"),
        # §3.2.2.3 "If the trace-id value is invalid (for example if it contains non-allowed
        # characters or all zeros), vendors MUST ignore the traceparent."
        pytest.param(tp(trace="." + SUITE_TRACE[1:]), id="trace-id-illegal-first-char"),
        pytest.param(tp(trace=SUITE_TRACE[:-1] + "."), id="trace-id-illegal-last-char"),
        # §3.2.2.2 trace-id = 32HEXDIGLC: uppercase is not allowed.
        pytest.param(tp(trace=TRACE.upper()), id="trace-id-uppercase"),
        pytest.param(tp(trace=TRACE[:-1] + "F"), id="trace-id-one-uppercase"),
        pytest.param(tp(trace=TRACE + "1"), id="trace-id-too-long"),
        pytest.param(tp(trace=TRACE[:-1]), id="trace-id-too-short"),
        # §3.2.2.4 "All bytes as zero (0000000000000000) is considered an invalid value."
        pytest.param(tp(parent="0" * 16), id="parent-id-all-zero"),
        pytest.param(tp("cc", parent="0" * 16), id="parent-id-all-zero-higher-version"),
        # §3.2.2.4 "Vendors MUST ignore the traceparent when the parent-id is invalid (for
        # example, if it contains non-lowercase hex characters)."
        pytest.param(tp(parent=PARENT.upper().replace("0", "A")), id="parent-id-uppercase"),
        pytest.param(tp(parent="." + SUITE_PARENT[1:]), id="parent-id-illegal-first-char"),
        pytest.param(tp(parent=SUITE_PARENT[:-1] + "."), id="parent-id-illegal-last-char"),
        pytest.param(tp(parent=PARENT + "1"), id="parent-id-too-long"),
        pytest.param(tp(parent=PARENT[:-1]), id="parent-id-too-short"),
        # §3.2.2.2 trace-flags = 2HEXDIGLC (test suite trace_flags_* tests)
        pytest.param(tp(flags=".0"), id="flags-illegal-first-char"),
        pytest.param(tp(flags="0."), id="flags-illegal-second-char"),
        pytest.param(tp(flags="0A"), id="flags-uppercase"),
        pytest.param(tp(flags="001"), id="flags-too-long"),
        pytest.param(tp(flags="1"), id="flags-too-short"),
        # test suite test_traceparent_version_0x00: version 00 is exactly 55 characters.
        pytest.param(SUITE + ".", id="version-00-trailing-char"),
        pytest.param(SUITE + "-what-the-future-will-be-like", id="version-00-extra-fields"),
        pytest.param(SUITE + "-", id="version-00-trailing-dash"),
        # §3.2.4 "Vendors MUST check that the 2 characters are either the end of the string or
        # a dash." (test suite: "cc-...-01.what-the-future-will-be-like")
        pytest.param(
            tp("cc") + ".what-the-future-will-be-like", id="higher-version-no-dash-after-flags"
        ),
        pytest.param(tp("cc") + "0", id="higher-version-flags-too-long"),
        # No HTTP field value holds a control character (RFC 7230 §3.2.6), even in the fields
        # a higher version adds, which are otherwise not interpreted (§3.2.4).
        pytest.param(tp("cc") + "-future\r\nx-injected: 1", id="higher-version-crlf-in-future"),
        pytest.param(tp("cc") + "-\x00", id="higher-version-nul-in-future"),
        pytest.param(tp("cc") + "-a\tb", id="higher-version-tab-in-future"),
        # §3.2.4 "If the size of the header is shorter than 55 characters, the vendor should
        # not parse the header and should restart the trace."
        pytest.param(tp("cc")[:-1], id="higher-version-shorter-than-55"),
        # §3.2.4 "Parse trace-id (...). Vendors MUST check that the 32 characters are hex, and
        # that they are followed by a dash (-)."
        pytest.param(tp().replace("-", "_"), id="underscore-separators"),
        pytest.param(f"00-{TRACE}_{PARENT}-01", id="trace-id-not-followed-by-dash"),
        pytest.param(f"00-{TRACE}-{PARENT}_01", id="parent-id-not-followed-by-dash"),
        pytest.param(f"cc-{TRACE}-{PARENT}_01-future", id="higher-version-parent-id-no-dash"),
        pytest.param("", id="empty"),
        pytest.param(" \t ", id="whitespace-only"),
        # Only SP and HTAB are optional whitespace (RFC 7230 §3.2.3); nothing else is trimmed.
        pytest.param(SUITE + "\r\n", id="trailing-crlf"),
        pytest.param("\n" + SUITE, id="leading-lf"),
        pytest.param(SUITE + "\x00", id="trailing-nul"),
        pytest.param("\x0b" + SUITE, id="leading-vertical-tab"),
        pytest.param(SUITE + "\u00a0", id="trailing-no-break-space"),
        pytest.param(f"00 -{TRACE}-{PARENT}-01", id="inner-space"),
        pytest.param(f"00-{TRACE} -{PARENT}-01"[:TRACEPARENT_LENGTH], id="inner-space-in-trace-id"),
        # The value is US-ASCII (§3.2.2.1): digits from other scripts are not hex.
        pytest.param(tp("\u0660\u0660"), id="arabic-indic-version"),
        pytest.param(tp(trace="\uff10" + TRACE[1:]), id="fullwidth-digit-trace-id"),
    ],
)
def test_parse_traceparent_invalid(value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_traceparent(value)
    assert caught.value.field == "traceparent"
    assert caught.value.length == len(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(tp().encode() + b"\xe9", id="trailing-latin-1"),
        pytest.param(b"\xff" + tp().encode()[1:], id="non-ascii-version"),
        pytest.param(tp().encode()[:-1] + b"\x81", id="non-ascii-flags"),
        pytest.param(tp("cc").encode() + b"-\xe9t\xe9", id="non-ascii-in-future-fields"),
    ],
)
def test_parse_traceparent_refuses_non_ascii_bytes(value: bytes) -> None:
    """Bytes are read as latin-1 and "The value is US-ASCII encoded" (§3.2.2.1)."""
    with pytest.raises(InvalidValueError) as caught:
        parse_traceparent(value)
    assert caught.value.length == len(value)


@pytest.mark.parametrize("value", [None, 55, ["00"], 1.5], ids=repr)
def test_parse_traceparent_refuses_other_types(value: object) -> None:
    with pytest.raises(InvalidValueError):
        parse_traceparent(value)  # type: ignore[arg-type]


def test_traceparent_error_never_contains_the_value() -> None:
    for value in (SENTINEL, tp(trace=SENTINEL.ljust(32, "x")), tp("cc") + "." + SENTINEL + "\r\n"):
        with pytest.raises(InvalidValueError) as caught:
            parse_traceparent(value)
        assert SENTINEL not in str(caught.value)
        assert SENTINEL not in caught.value.reason


# ---------------------------------------------------------------------------------------------
# format_traceparent, new_parent_id, id validators
# ---------------------------------------------------------------------------------------------


def test_format_traceparent_emits_version_00() -> None:
    """§3.2.4 "Vendors MUST use these fields to construct the new traceparent field according
    to the highest version of the specification known to the implementation"."""
    assert format_traceparent(TRACE, PARENT, 1) == tp()
    assert format_traceparent(TRACE, PARENT, 0) == tp(flags="00")
    assert format_traceparent(TRACE, PARENT, 0xFF) == tp(flags="ff")
    higher = parse_traceparent(tp("cc") + "-future")
    assert format_traceparent(higher.trace_id, higher.parent_id, higher.flags) == tp()


@pytest.mark.parametrize(
    ("trace_id", "parent_id", "flags"),
    [
        pytest.param("0" * 32, PARENT, 1, id="trace-id-all-zero"),
        pytest.param(TRACE.upper(), PARENT, 1, id="trace-id-uppercase"),
        pytest.param(TRACE[:-1], PARENT, 1, id="trace-id-short"),
        pytest.param(TRACE + "0", PARENT, 1, id="trace-id-long"),
        pytest.param(TRACE, "0" * 16, 1, id="parent-id-all-zero"),
        pytest.param(TRACE, "00F067AA0BA902B7", 1, id="parent-id-uppercase"),
        pytest.param(TRACE, PARENT[:-1], 1, id="parent-id-short"),
        pytest.param(TRACE, PARENT, -1, id="flags-negative"),
        pytest.param(TRACE, PARENT, 256, id="flags-too-big"),
        pytest.param(TRACE, PARENT, True, id="flags-bool"),
        pytest.param(TRACE, PARENT, "01", id="flags-str"),
        pytest.param(None, PARENT, 1, id="trace-id-none"),
        pytest.param(TRACE, b"00f067aa0ba902b7", 1, id="parent-id-bytes"),
    ],
)
def test_format_traceparent_refuses_invalid_arguments(
    trace_id: object, parent_id: object, flags: object
) -> None:
    with pytest.raises(ValueError, match=r"trace_id|parent_id|flags"):
        format_traceparent(trace_id, parent_id, flags)  # type: ignore[arg-type]


def test_new_parent_id_is_valid_and_random() -> None:
    """§3.2.2.4 parent-id = 16HEXDIGLC, "All bytes as zero ... is considered an invalid value"."""
    ids = {new_parent_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) and i != "0" * 16 for i in ids)


@pytest.mark.parametrize(
    ("candidate", "valid"),
    [
        pytest.param(TRACE, True, id="spec-example"),
        pytest.param("0" * 31 + "1", True, id="only-last-bit"),
        pytest.param("0" * 32, False, id="all-zero"),
        pytest.param(TRACE.upper(), False, id="uppercase"),
        pytest.param(TRACE[:-1], False, id="31-chars"),
        pytest.param(TRACE + "a", False, id="33-chars"),
        pytest.param("g" * 32, False, id="not-hex"),
        pytest.param("", False, id="empty"),
        pytest.param(" " + TRACE[1:], False, id="space"),
    ],
)
def test_is_valid_trace_id(candidate: str, valid: bool) -> None:
    assert is_valid_trace_id(candidate) is valid


@pytest.mark.parametrize(
    ("candidate", "valid"),
    [
        pytest.param(PARENT, True, id="spec-example"),
        pytest.param("0" * 16, False, id="all-zero"),
        pytest.param(PARENT.upper().replace("0", "F"), False, id="uppercase"),
        pytest.param(PARENT[:-1], False, id="15-chars"),
        pytest.param(PARENT + "a", False, id="17-chars"),
        pytest.param(TRACE, False, id="trace-id-length"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_valid_parent_id(candidate: str, valid: bool) -> None:
    assert is_valid_parent_id(candidate) is valid


# ---------------------------------------------------------------------------------------------
# traceparent: properties
# ---------------------------------------------------------------------------------------------

trace_ids = st.from_regex(r"[0-9a-f]{32}", fullmatch=True).filter(lambda s: s != "0" * 32)
parent_ids = st.from_regex(r"[0-9a-f]{16}", fullmatch=True).filter(lambda s: s != "0" * 16)


def assert_valid_traceparent(result: TraceParent) -> None:
    assert 0 <= result.version < 0xFF
    assert re.fullmatch(r"[0-9a-f]{32}", result.trace_id)
    assert result.trace_id != "0" * 32
    assert re.fullmatch(r"[0-9a-f]{16}", result.parent_id)
    assert result.parent_id != "0" * 16
    assert 0 <= result.flags <= 0xFF


@given(st.text() | st.binary())
@example("a" * HUGE)
@example(b"\x00" * HUGE)
@example(SUITE + "\r\n" * HUGE)
@example(tp("cc") + "-" + "\x00\r\n\u2028" * HUGE)
@example("\r\n" + SUITE)
@example(SUITE.encode() + b"\n")
def test_parse_traceparent_returns_valid_or_raises(value: str | bytes) -> None:
    result = outcome(parse_traceparent, value)
    if isinstance(result, InvalidValueError):
        assert result.field == "traceparent"
        assert result.length == len(value)
    else:
        assert_valid_traceparent(result)


near_traceparents = st.lists(
    st.sampled_from(["0", "1", "a", "f", "F", "-", " ", "\t", "c", "\n", "."]),
    min_size=50,
    max_size=70,
).map("".join)


@given(
    st.builds(
        lambda version, trace_id, parent_id, flags, rest: (
            f"{version}-{trace_id}-{parent_id}-{flags}{rest}"
        ),
        st.from_regex(r"[0-9a-fA-F.]{2}", fullmatch=True),
        trace_ids,
        parent_ids,
        st.from_regex(r"[0-9a-fA-F]{2}", fullmatch=True),
        st.sampled_from(["", "-", "-x", ".x", "x", " "]),
    )
    | near_traceparents
)
def test_parse_traceparent_structured_fuzz(value: str) -> None:
    try:
        result = parse_traceparent(value)
    except InvalidValueError:
        return
    assert_valid_traceparent(result)
    text = value.strip(" \t")
    if result.version == 0:
        assert TRACEPARENT_00_RE.fullmatch(text)
    else:
        assert len(text) == TRACEPARENT_LENGTH or text[TRACEPARENT_LENGTH] == "-"


@given(trace_ids, parent_ids, st.integers(0, 0xFF))
def test_format_traceparent_round_trips(trace_id: str, parent_id: str, flags: int) -> None:
    value = format_traceparent(trace_id, parent_id, flags)
    assert TRACEPARENT_00_RE.fullmatch(value)
    assert not CONTROL_RE.search(value)
    parsed = parse_traceparent(value)
    assert parsed == TraceParent(0, trace_id, parent_id, flags)
    assert parsed.sampled is bool(flags & FLAG_SAMPLED)


# ---------------------------------------------------------------------------------------------
# tracestate: keys and values
# ---------------------------------------------------------------------------------------------

ALL_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
ALL_VALUE_CHARS = "".join(
    [
        "".join(map(chr, range(0x20, 0x2B + 1))),
        "".join(map(chr, range(0x2D, 0x3C + 1))),
        "".join(map(chr, range(0x3E, 0x7E + 1))),
    ]
)


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        # §3.3.1.3.1 simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        pytest.param("a", True, id="one-letter"),
        pytest.param("rojo", True, id="spec-rojo"),
        pytest.param("my-tracing-system", True, id="spec-simple-key-example"),
        pytest.param(ALL_KEY_CHARS, True, id="every-key-char"),
        pytest.param("z" * 256, True, id="256-chars"),
        pytest.param("z" * 257, False, id="257-chars"),
        pytest.param("1abc", False, id="simple-key-digit-first"),
        pytest.param("_abc", False, id="simple-key-underscore-first"),
        pytest.param("FOO", False, id="uppercase"),
        pytest.param("foo.bar", False, id="dot"),
        pytest.param("foo ", False, id="trailing-space"),
        pytest.param("", False, id="empty"),
        # §3.3.1.3.1 multi-tenant-key = tenant-id "@" system-id
        pytest.param("fw529a3039@dt", True, id="multi-tenant"),
        pytest.param("1a2b@dt", True, id="tenant-digit-first"),
        pytest.param("9@a", True, id="shortest-multi-tenant"),
        pytest.param(ALL_KEY_CHARS + "@a-z0-9_-*/", True, id="suite-key-with-vendor"),
        pytest.param("t" * 241 + "@" + "v" * 14, True, id="tenant-241-system-14"),
        pytest.param("t" * 242 + "@v", False, id="tenant-242"),
        pytest.param("t@" + "v" * 15, False, id="system-15"),
        pytest.param("t@1v", False, id="system-digit-first"),
        pytest.param("foo@", False, id="empty-system"),
        pytest.param("@foo", False, id="empty-tenant"),
        pytest.param("foo@@bar", False, id="double-at"),
        pytest.param("foo@bar@baz", False, id="two-ats"),
        pytest.param("_t@v", False, id="tenant-underscore-first"),
    ],
)
def test_tracestate_key_grammar(key: str, valid: bool) -> None:
    assert is_valid_tracestate_key(key) is valid
    assert bool(KEY_RE.fullmatch(key)) is valid  # the oracle agrees with the vector


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        # §3.3.1.3.2 "up to 256 printable ASCII characters (i.e., the range 0x20 to 0x7E)
        # except comma (,) and (=)"; value = 0*255(chr) nblk-chr
        pytest.param("t61rcWkgMzE", True, id="spec-congo"),
        pytest.param(ALL_VALUE_CHARS, True, id="every-value-char"),
        pytest.param(" leading", True, id="leading-space"),
        pytest.param("in ner", True, id="inner-space"),
        pytest.param("x" * 256, True, id="256-chars"),
        pytest.param("x" * 257, False, id="257-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("trailing ", False, id="trailing-space"),
        pytest.param("a,b", False, id="comma"),
        pytest.param("a=b", False, id="equals"),
        # §3.3.1.3.2 "Note that this also excludes tabs, newlines, carriage returns, etc."
        pytest.param("a\tb", False, id="tab"),
        pytest.param("a\nb", False, id="newline"),
        pytest.param("a\rb", False, id="carriage-return"),
        pytest.param("a\x7fb", False, id="del"),
        pytest.param("caf\u00e9", False, id="non-ascii"),
    ],
)
def test_tracestate_value_grammar(value: str, valid: bool) -> None:
    assert is_valid_tracestate_value(value) is valid
    assert bool(VALUE_RE.fullmatch(value)) is valid


# ---------------------------------------------------------------------------------------------
# tracestate: parsing
# ---------------------------------------------------------------------------------------------

MEMBERS_32 = ",".join(f"bar{i:02d}={i:02d}" for i in range(1, 33))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # §3.3.2 "Single tracing system (generic format)"
        pytest.param("rojo=00f067aa0ba902b7", (("rojo", "00f067aa0ba902b7"),), id="spec-single"),
        # §3.3.2 "Multiple tracing systems (with different formatting)"
        pytest.param(
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            (("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")),
            id="spec-multiple",
        ),
        # §3.3.1.1 "When receiving multiple tracestate header fields, they MUST be combined
        # into a single header" (test suite test_tracestate_multiple_headers_different_keys)
        pytest.param(
            ["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
            (("foo", "1"), ("bar", "2"), ("rojo", "1"), ("congo", "2"), ("baz", "3")),
            id="suite-multiple-headers",
        ),
        pytest.param([b"foo=1", b"bar=2"], (("foo", "1"), ("bar", "2")), id="multiple-bytes"),
        pytest.param(("foo=1", b"bar=2"), (("foo", "1"), ("bar", "2")), id="tuple-mixed"),
        # §3.3.1.1 "Vendors MUST accept empty tracestate headers"; "Empty and whitespace-only
        # list members are allowed" (test suite test_tracestate_empty_header)
        pytest.param("", (), id="empty"),
        pytest.param([], (), id="no-lines"),
        pytest.param(" \t ", (), id="whitespace-only"),
        pytest.param(",, ,\t,", (), id="only-empty-members"),
        pytest.param(["foo=1", ""], (("foo", "1"),), id="suite-empty-second-header"),
        pytest.param(["", "foo=1"], (("foo", "1"),), id="suite-empty-first-header"),
        pytest.param("foo=1,,bar=2", (("foo", "1"), ("bar", "2")), id="empty-member-between"),
        pytest.param("foo=1, ,bar=2,", (("foo", "1"), ("bar", "2")), id="blank-members"),
        # §3.3.1.1 "Spaces and horizontal tabs surrounding list-members are ignored."
        # (test suite test_tracestate_ows_handling)
        pytest.param(
            "foo=1 \t , \t bar=2, \t baz=3",
            (("foo", "1"), ("bar", "2"), ("baz", "3")),
            id="suite-ows-1",
        ),
        pytest.param(
            "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
            (("foo", "1"), ("bar", "2"), ("baz", "3")),
            id="suite-ows-2",
        ),
        pytest.param(" foo=1", (("foo", "1"),), id="suite-leading-space"),
        pytest.param("\tfoo=1", (("foo", "1"),), id="suite-leading-tab"),
        pytest.param("foo=1 ", (("foo", "1"),), id="suite-trailing-space"),
        pytest.param("foo=1\t", (("foo", "1"),), id="suite-trailing-tab"),
        pytest.param("\t foo=1 \t", (("foo", "1"),), id="suite-both"),
        # §3.3.1.3.2 value = 0*255(chr) nblk-chr with chr = %x20 / nblk-chr: a space right
        # after "=" belongs to the value.
        pytest.param("foo= bar", (("foo", " bar"),), id="value-leading-space"),
        pytest.param("foo=a b", (("foo", "a b"),), id="value-inner-space"),
        # test suite test_tracestate_all_allowed_characters
        pytest.param(
            f"{ALL_KEY_CHARS}={ALL_VALUE_CHARS}",
            ((ALL_KEY_CHARS, ALL_VALUE_CHARS),),
            id="suite-all-allowed-characters",
        ),
        pytest.param(
            f"{ALL_KEY_CHARS}@a-z0-9_-*/={ALL_VALUE_CHARS}",
            ((ALL_KEY_CHARS + "@a-z0-9_-*/", ALL_VALUE_CHARS),),
            id="suite-all-allowed-characters-vendor",
        ),
        # test suite test_tracestate_key_length_limit
        pytest.param(
            ["foo=1", "z" * 256 + "=1"], (("foo", "1"), ("z" * 256, "1")), id="suite-key-256"
        ),
        pytest.param(
            ["foo=1", "t" * 241 + "@" + "v" * 14 + "=1"],
            (("foo", "1"), ("t" * 241 + "@" + "v" * 14, "1")),
            id="suite-tenant-241-system-14",
        ),
        pytest.param("k=" + "v" * 256, (("k", "v" * 256),), id="value-256"),
        # test suite test_tracestate_member_count_limit: 32 list-members are accepted.
        pytest.param(
            MEMBERS_32,
            tuple((f"bar{i:02d}", f"{i:02d}") for i in range(1, 33)),
            id="suite-32-members",
        ),
        pytest.param(
            MEMBERS_32 + ",,  ,",
            tuple((f"bar{i:02d}", f"{i:02d}") for i in range(1, 33)),
            id="32-members-and-empty-ones",
        ),
    ],
)
def test_parse_tracestate_valid(
    values: str | Sequence[str | bytes], expected: tuple[tuple[str, str], ...]
) -> None:
    assert parse_tracestate(values) == expected


@pytest.mark.parametrize(
    "values",
    [
        # §3.3.1.1 "There can be a maximum of 32 list-members in a list." (test suite
        # test_tracestate_member_count_limit)
        pytest.param(MEMBERS_32 + ",bar33=33", id="suite-33-members"),
        pytest.param([MEMBERS_32, "bar33=33"], id="33-members-across-headers"),
        # §3.3.1.4 "Only one entry per key is allowed" (test suite
        # test_tracestate_duplicated_keys)
        pytest.param("foo=1,foo=1", id="suite-duplicate-same-value"),
        pytest.param("foo=1,foo=2", id="suite-duplicate-other-value"),
        pytest.param(["foo=1", "foo=1"], id="suite-duplicate-across-headers"),
        pytest.param(["foo=1", "foo=2"], id="suite-duplicate-across-headers-other-value"),
        # §3.3.1.3.1 key grammar (test suite test_tracestate_key_illegal_characters)
        pytest.param("foo =1", id="suite-space-before-equals"),
        pytest.param("FOO=1", id="suite-uppercase-key"),
        pytest.param("foo.bar=1", id="suite-dot-in-key"),
        pytest.param("1foo=1", id="simple-key-digit-first"),
        # test suite test_tracestate_key_illegal_vendor_format
        pytest.param("foo@=1,bar=2", id="suite-empty-system-id"),
        pytest.param("@foo=1,bar=2", id="suite-empty-tenant-id"),
        pytest.param("foo@@bar=1,bar=2", id="suite-double-at"),
        pytest.param("foo@bar@baz=1,bar=2", id="suite-two-ats"),
        # test suite test_tracestate_key_length_limit
        pytest.param(["foo=1", "z" * 257 + "=1"], id="suite-key-257"),
        pytest.param(["foo=1", "t" * 242 + "@v=1"], id="suite-tenant-242"),
        pytest.param(["foo=1", "t@" + "v" * 15 + "=1"], id="suite-system-15"),
        # §3.3.1.3.2 value grammar (test suite test_tracestate_value_illegal_characters)
        pytest.param("foo=bar=baz", id="suite-equals-in-value"),
        pytest.param("foo=,bar=3", id="suite-empty-value"),
        pytest.param("foo=" + "v" * 257, id="value-257"),
        pytest.param("foo=a\tb", id="tab-in-value"),
        pytest.param("foo=a\x7f", id="del-in-value"),
        pytest.param("foo=1\r\n", id="trailing-crlf"),
        pytest.param("foo=1\n,bar=2", id="lf-after-value"),
        pytest.param("foo=1,\x00,bar=2", id="nul-member"),
        pytest.param("foo=1,\x0b", id="vertical-tab-member"),
        # §3.3.1.1 "A list-member is a key/value pair separated by an equals sign (=)."
        pytest.param("foo", id="no-equals"),
        pytest.param("=1", id="no-key"),
        pytest.param("foo=1,bar", id="second-member-no-equals"),
        pytest.param("foo=caf\u00e9", id="non-ascii-value"),
        pytest.param(b"foo=caf\xe9", id="non-ascii-bytes"),
        pytest.param(["foo=1", b"bar=\xff"], id="non-ascii-bytes-in-second-line"),
    ],
)
def test_parse_tracestate_invalid(values: str | bytes | Sequence[str | bytes]) -> None:
    """§4.3 "If the tracestate header cannot be parsed the vendor MAY discard the entire
    header": every invalid header raises, and nothing of it is returned."""
    with pytest.raises(InvalidValueError) as caught:
        parse_tracestate(values)
    assert caught.value.field == "tracestate"


@pytest.mark.parametrize("value", [None, 5, [None], ["foo=1", 3]], ids=repr)
def test_parse_tracestate_refuses_other_types(value: object) -> None:
    with pytest.raises(InvalidValueError):
        parse_tracestate(value)  # type: ignore[arg-type]


def test_parse_tracestate_error_reports_combined_length_not_value() -> None:
    lines = ["foo=1", f"{SENTINEL.lower()}=1,{SENTINEL.lower()}=2"]
    with pytest.raises(InvalidValueError) as caught:
        parse_tracestate(lines)
    assert caught.value.length == len(",".join(lines))
    assert SENTINEL.lower() not in str(caught.value)
    assert "repeats a key" in caught.value.reason


# ---------------------------------------------------------------------------------------------
# tracestate: formatting, truncation and mutation
# ---------------------------------------------------------------------------------------------


def test_format_tracestate_joins_without_ows() -> None:
    """§3.3.1.4 Example: vendorname1=opaqueValue1,vendorname2=opaqueValue2."""
    entries = [("vendorname1", "opaqueValue1"), ("vendorname2", "opaqueValue2")]
    assert format_tracestate(entries) == "vendorname1=opaqueValue1,vendorname2=opaqueValue2"
    assert format_tracestate([]) == ""


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([("FOO", "1")], id="invalid-key"),
        pytest.param([("foo", "")], id="empty-value"),
        pytest.param([("foo", "a,b")], id="comma-in-value"),
        pytest.param([("foo", "1 ")], id="trailing-space-in-value"),
        # §3.3.1.4 "Only one entry per key is allowed"
        pytest.param([("foo", "1"), ("foo", "2")], id="duplicate-key"),
    ],
)
def test_format_tracestate_refuses_invalid_entries(entries: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="tracestate"):
        format_tracestate(entries)


@pytest.mark.parametrize(("max_members", "max_length"), [(-1, 512), (32, -1)])
def test_format_tracestate_refuses_negative_limits(max_members: int, max_length: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        format_tracestate([("a", "1")], max_members=max_members, max_length=max_length)


def test_format_tracestate_drops_members_from_the_end_over_the_count() -> None:
    """§3.3.1.5 "Then entries SHOULD be removed starting from the end of tracestate"."""
    entries = [(f"k{i}", str(i)) for i in range(40)]
    assert format_tracestate(entries) == ",".join(f"k{i}={i}" for i in range(32))
    assert format_tracestate(entries, max_members=3) == "k0=0,k1=1,k2=2"
    assert format_tracestate(entries, max_members=0) == ""


def test_format_tracestate_removes_long_entries_first() -> None:
    """§3.3.1.5 "the vendor MUST truncate whole entries. Entries larger than 128 characters
    long SHOULD be removed first. Then entries SHOULD be removed starting from the end"."""
    long_a = ("longa", "a" * 200)  # 206 characters
    long_b = ("longb", "b" * 200)
    short = [(f"s{i}", "x" * 20) for i in range(6)]  # 23 characters each
    entries = [short[0], long_a, short[1], long_b, *short[2:]]
    # 6 * 23 + 2 * 206 + 7 commas = 557 > 512: removing the rightmost long entry suffices.
    assert format_tracestate(entries) == format_tracestate([short[0], long_a, short[1], *short[2:]])
    # With a smaller budget both long entries go before any short one.
    assert format_tracestate(entries, max_length=6 * 23 + 5) == ",".join(
        f"{k}={v}" for k, v in short
    )
    # Then short entries are removed from the end.
    assert format_tracestate(entries, max_length=2 * 23 + 1) == f"s0={'x' * 20},s1={'x' * 20}"


def test_format_tracestate_never_emits_a_partial_entry() -> None:
    """§3.3.1.5 "the vendor MUST truncate whole entries"."""
    entries = [("a", "1" * 100), ("b", "2" * 100)]
    assert format_tracestate(entries, max_length=150) == "a=" + "1" * 100
    assert format_tracestate(entries, max_length=50) == ""
    exact = format_tracestate(entries)
    assert format_tracestate(entries, max_length=len(exact)) == exact
    assert format_tracestate(entries, max_length=len(exact) - 1) == "a=" + "1" * 100


def test_format_tracestate_keeps_512_characters() -> None:
    """§3.3.1.5 "Vendors SHOULD propagate at least 512 characters of a combined header"."""
    entries = [(f"k{i:02d}", "v" * 124) for i in range(4)]  # 4 * 128 + 3 = 515
    assert len(format_tracestate(entries)) == 3 * 128 + 2
    entries = [(f"k{i:02d}", "v" * 123) for i in range(4)]  # 4 * 127 + 3 = 511
    assert len(format_tracestate(entries)) == 511


def test_update_tracestate_adds_a_new_key_on_the_left() -> None:
    """§3.1: "The receiving server, traced in the Rojo tracing system, carries over the
    tracestate it received and adds a new entry to the left." §3.5 "The new key/value pair
    SHOULD be added to the beginning of the list."."""
    received = parse_tracestate("congo=t61rcWkgMzE")
    updated = update_tracestate(received, "rojo", "00f067aa0ba902b7")
    assert format_tracestate(updated) == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def test_update_tracestate_moves_a_modified_key_to_the_left() -> None:
    """§3.3.1.4: not "congo=congosFirstPosition,rojo=rojosFirstPosition,congo=congosSecond
    Position" but "congo=congosSecondPosition,rojo=rojosFirstPosition". §3.5 "Modified keys
    SHOULD be moved to the beginning (left) of the list"."""
    received = parse_tracestate("rojo=rojosFirstPosition,congo=congosFirstPosition")
    updated = update_tracestate(received, "congo", "congosSecondPosition")
    assert updated == (("congo", "congosSecondPosition"), ("rojo", "rojosFirstPosition"))


def test_update_tracestate_preserves_the_order_of_unmodified_pairs() -> None:
    """§3.5 "the order of unmodified key/value pairs MUST be preserved"."""
    received = parse_tracestate("a=1,b=2,c=3,d=4")
    assert update_tracestate(received, "c", "9") == (("c", "9"), ("a", "1"), ("b", "2"), ("d", "4"))


def test_update_tracestate_keeps_at_most_32_members() -> None:
    """§3.3.1.1 maximum of 32 list-members; §3.3.1.5 remove "starting from the end"."""
    received = parse_tracestate(MEMBERS_32)
    updated = update_tracestate(received, "mine", "1")
    assert len(updated) == MAX_TRACESTATE_MEMBERS
    assert updated[0] == ("mine", "1")
    assert updated[1:] == received[:-1]


@pytest.mark.parametrize(
    ("key", "value"),
    [("Rojo", "1"), ("rojo", ""), ("rojo", "a=b"), ("", "1"), ("rojo", "1 ")],
)
def test_update_tracestate_refuses_invalid_key_or_value(key: str, value: str) -> None:
    with pytest.raises(ValueError, match="tracestate"):
        update_tracestate((), key, value)


# ---------------------------------------------------------------------------------------------
# tracestate: properties
# ---------------------------------------------------------------------------------------------

simple_keys = st.from_regex(r"[a-z][a-z0-9_\-*/]{0,15}", fullmatch=True)
tenant_keys = st.from_regex(r"[a-z0-9][a-z0-9_\-*/]{0,8}@[a-z][a-z0-9_\-*/]{0,13}", fullmatch=True)
keys = simple_keys | tenant_keys
values = st.builds(
    lambda body, last: body + last,
    st.text(alphabet=ALL_VALUE_CHARS, max_size=255),
    st.sampled_from(ALL_VALUE_CHARS.strip()),
)
entry_lists = st.lists(st.tuples(keys, values), max_size=40, unique_by=lambda e: e[0])


@given(
    st.text()
    | st.binary()
    | st.lists(st.text() | st.binary(), max_size=5)
    | st.lists(st.tuples(keys, values).map("=".join), max_size=40).map(",".join)
)
@example("a=1," * (HUGE // 4))
@example("," * HUGE)
@example(" \t" * HUGE)
@example(b"\x00" * HUGE)
@example("foo=1\r\nbar=2")
def test_parse_tracestate_returns_valid_or_raises(
    value: str | bytes | list[str | bytes],
) -> None:
    result = outcome(parse_tracestate, value)
    if isinstance(result, InvalidValueError):
        assert result.field == "tracestate"
        return
    assert len(result) <= MAX_TRACESTATE_MEMBERS
    assert len({key for key, _ in result}) == len(result)
    for key, member_value in result:
        assert KEY_RE.fullmatch(key)
        assert VALUE_RE.fullmatch(member_value)


@given(entry_lists, st.integers(0, 40), st.integers(0, 2000))
def test_format_tracestate_round_trips_within_limits(
    entries: list[tuple[str, str]], max_members: int, max_length: int
) -> None:
    value = format_tracestate(entries, max_members=max_members, max_length=max_length)
    assert len(value) <= max_length
    assert value.isascii()
    assert not CONTROL_RE.search(value)
    parsed = parse_tracestate(value)
    assert len(parsed) <= max_members
    # Whole entries, unchanged, in their original order: a subsequence of the input.
    remaining = iter(entries)
    assert all(entry in remaining for entry in parsed)
    if len(entries) <= max_members and len(",".join("=".join(e) for e in entries)) <= max_length:
        assert parsed == tuple(entries)


@given(entry_lists, keys, values)
def test_update_tracestate_property(entries: list[tuple[str, str]], key: str, value: str) -> None:
    updated = update_tracestate(entries, key, value)
    assert updated[0] == (key, value)
    assert [k for k, _ in updated].count(key) == 1
    assert list(updated[1:]) == [e for e in entries if e[0] != key][: MAX_TRACESTATE_MEMBERS - 1]
    parse_tracestate(format_tracestate(updated))  # always formats to a valid header
