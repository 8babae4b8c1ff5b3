"""W3C Baggage wire format: every rule of the spec is a test vector.

Quotes are from https://www.w3.org/TR/baggage/ (Candidate Recommendation, 2024); section
numbers are that document's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.propagation.baggage import (
    MAX_BAGGAGE_BYTES,
    MAX_BAGGAGE_MEMBERS,
    MIN_PROPAGATED_MEMBERS,
    format_baggage,
    is_valid_baggage_key,
    parse_baggage,
)

V = TypeVar("V")
R = TypeVar("R")

HUGE = 100_000
SENTINEL = "SENTINEL-c0ffee"
TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E (§3.3.1)
BAGGAGE_OCTETS = "".join(
    chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\'
)  # oracle from the ABNF
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
HEADER_RE = re.compile(r"[\x21-\x7e]*")  # what the formatter may emit: visible ASCII only


def outcome(parse: Callable[[V], R], value: V) -> R | InvalidValueError:
    """Return what ``parse(value)`` returns, or the InvalidValueError it raises."""
    try:
        return parse(value)
    except InvalidValueError as error:
        return error


# ---------------------------------------------------------------------------------------------
# parsing: valid headers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # §3.3.3 Example: "The following example header contains 3 list-members."
        pytest.param(
            "key1=value1;property1;property2, key2 = value2, "
            "key3=value3; propertyKey=propertyValue",
            {"key1": "value1", "key2": "value2", "key3": "value3"},
            id="spec-3.3.3-example",
        ),
        # §3.4 "Single header"
        pytest.param(
            "userId=alice,serverNode=DF%2028,isProduction=false",
            {"userId": "alice", "serverNode": "DF 28", "isProduction": "false"},
            id="spec-single-header",
        ),
        # §3.4 "values with characters outside of the baggage-octet range are percent-encoded"
        pytest.param(
            "userId=Am%C3%A9lie,serverNode=DF%2028,isProduction=false",
            {"userId": "Amélie", "serverNode": "DF 28", "isProduction": "false"},
            id="spec-amelie",
        ),
        # §3.4 "Context might be split into multiple headers"
        pytest.param(
            ["userId=alice", "serverNode=DF%2028,isProduction=false"],
            {"userId": "alice", "serverNode": "DF 28", "isProduction": "false"},
            id="spec-multiple-headers",
        ),
        # §3.4 "Values and names might begin and end with spaces"
        pytest.param(
            ["userId =   alice", "serverNode = DF%2028, isProduction = false"],
            {"userId": "alice", "serverNode": "DF 28", "isProduction": "false"},
            id="spec-spaces",
        ),
        pytest.param([b"a=1", b"b=2"], {"a": "1", "b": "2"}, id="bytes-lines"),
        pytest.param(b"a=1,b=%C3%A9", {"a": "1", "b": "é"}, id="bytes"),
        # §3.3.1.2 / §3.3.1.3 "Leading and trailing whitespaces (OWS) are allowed and are not
        # considered to be a part of the key" / "of the value"; OWS = *( SP / HTAB )
        pytest.param("\t k \t=\t v \t", {"k": "v"}, id="ows-tabs-and-spaces"),
        # §3.3.1.3 "value MAY contain any number of the equal sign (U+003D) code points.
        # Parsers MUST NOT assume that the equal sign is only used to separate key and value."
        pytest.param("k=a=b==", {"k": "a=b=="}, id="equals-in-value"),
        # value = *baggage-octet: the empty value is valid.
        pytest.param("k=", {"k": ""}, id="empty-value"),
        pytest.param("k= ;p", {"k": ""}, id="empty-value-with-property"),
        # Values are percent-encoded (RFC 3986 §2.1), not form-encoded: "+" is a plus.
        pytest.param("k=a+b", {"k": "a+b"}, id="plus-is-not-space"),
        pytest.param("k=%2B%20", {"k": "+ "}, id="escaped-plus-and-space"),
        # §3.3.1.3 "The percent code point (U+0025) MUST be percent-encoded."
        pytest.param("k=100%25", {"k": "100%"}, id="escaped-percent"),
        pytest.param("k=%c3%a9", {"k": "é"}, id="lowercase-escapes"),
        pytest.param("k=%F0%9F%98%80", {"k": "\U0001f600"}, id="four-byte-utf-8"),
        pytest.param("k=%2C%3B%3D%22%5C", {"k": ',;="\\'}, id="escaped-delimiters"),
        pytest.param("k=%0D%0A%00", {"k": "\r\n\x00"}, id="escaped-control-characters"),
        # §3.3.1.3 "Code points which are not required to be percent-encoded MAY be
        # percent-encoded."
        pytest.param("k=%61%62c", {"k": "abc"}, id="needless-escapes"),
        # §3.3.1.3 "percent-encoded octet sequences that do not match the UTF-8 encoding
        # scheme MUST be replaced with the replacement code point (U+FFFD)."
        pytest.param("k=%E9", {"k": "\ufffd"}, id="invalid-utf-8-latin-1"),
        pytest.param("k=a%FFb", {"k": "a\ufffdb"}, id="invalid-utf-8-ff"),
        pytest.param("k=%C3", {"k": "\ufffd"}, id="truncated-utf-8"),
        pytest.param("k=%ED%A0%80", {"k": "\ufffd\ufffd\ufffd"}, id="utf-8-surrogate"),
        # Every baggage-octet may appear unescaped in a value.
        pytest.param(
            "k=" + BAGGAGE_OCTETS.replace("%", ""),
            {"k": BAGGAGE_OCTETS.replace("%", "")},
            id="every-baggage-octet",
        ),
        # §3.3.1.2 key = token (RFC 7230 §3.2.6)
        pytest.param(TCHARS + "=v", {TCHARS: "v"}, id="every-tchar-key"),
        # §3.3.1.4 property = key OWS "=" OWS value / key OWS; properties are dropped.
        pytest.param("k=v;p1;p2=x", {"k": "v"}, id="properties"),
        pytest.param("k=v ; p1 = x ;\tp2 ", {"k": "v"}, id="properties-with-ows"),
        pytest.param("k=v;p=", {"k": "v"}, id="property-empty-value"),
        pytest.param("k=v;p=a=b%", {"k": "v"}, id="property-value-baggage-octets"),
        # §3.3.1.1 "Uniqueness of keys between multiple list-members in a baggage-string is
        # not guaranteed." §3.5 allows "keeping the last entry": the last value wins.
        pytest.param("k=1,j=2,k=3", {"k": "3", "j": "2"}, id="duplicate-last-wins"),
        pytest.param(["k=1", "k=2"], {"k": "2"}, id="duplicate-across-headers"),
        # Empty list elements are ignored (RFC 7230 §7).
        pytest.param("", {}, id="empty"),
        pytest.param([], {}, id="no-lines"),
        pytest.param(" \t", {}, id="whitespace-only"),
        pytest.param(",a=1,, ,b=2,", {"a": "1", "b": "2"}, id="empty-members"),
        pytest.param(["", "a=1", ""], {"a": "1"}, id="empty-lines"),
    ],
)
def test_parse_baggage_valid(
    values: str | bytes | Sequence[str | bytes], expected: dict[str, str]
) -> None:
    result = parse_baggage(values)
    assert result == expected
    assert list(result) == list(expected)  # order of first occurrence
    assert parse_baggage(values, strict=True) == expected


# ---------------------------------------------------------------------------------------------
# parsing: invalid list-members
# ---------------------------------------------------------------------------------------------

INVALID_MEMBERS = [
    # §3.3.1 list-member = key OWS "=" OWS value ...
    pytest.param("novalue", id="no-equals"),
    pytest.param("=v", id="empty-key"),
    pytest.param(" = v", id="blank-key"),
    # §3.3.1.2 key = token: no space, separator or non-ASCII character.
    pytest.param("my key=v", id="space-in-key"),
    pytest.param("k(=v", id="paren-in-key"),
    pytest.param('k"=v', id="dquote-in-key"),
    pytest.param("k@=v", id="at-in-key"),
    pytest.param("k/=v", id="slash-in-key"),
    pytest.param("k:=v", id="colon-in-key"),
    pytest.param("k\x00=v", id="nul-in-key"),
    pytest.param("k\u00e9=v", id="non-ascii-key"),
    # §3.3.1 baggage-octet excludes "CTLs, whitespace, DQUOTE, comma, semicolon, and
    # backslash"; §3.2 "it uses only code points from the Basic Latin Unicode Block".
    pytest.param("k=a b", id="space-in-value"),
    pytest.param("k=a\tb", id="tab-in-value"),
    pytest.param('k=a"b', id="dquote-in-value"),
    pytest.param("k=a\\b", id="backslash-in-value"),
    pytest.param("k=a\x00b", id="nul-in-value"),
    pytest.param("k=a\rb", id="cr-in-value"),
    pytest.param("k=a\nb", id="lf-in-value"),
    pytest.param("k=a\x7fb", id="del-in-value"),
    pytest.param("k=caf\u00e9", id="non-ascii-value"),
    pytest.param("k=\U0001f600", id="emoji-value"),
    # §3.3.1.3 "The percent code point (U+0025) MUST be percent-encoded": a "%" that does
    # not start an escape is a format error.
    pytest.param("k=%", id="lone-percent"),
    pytest.param("k=100%", id="trailing-percent"),
    pytest.param("k=%4", id="short-escape"),
    pytest.param("k=%zz", id="non-hex-escape"),
    pytest.param("k=%g1", id="non-hex-first-digit"),
    pytest.param("k=%+1", id="sign-in-escape"),
    # §3.3.1.4 property = key OWS "=" OWS value / key OWS
    pytest.param("k=v;", id="empty-property"),
    pytest.param("k=v;;p", id="empty-property-between"),
    pytest.param("k=v;p q", id="space-in-property-key"),
    pytest.param("k=v;=x", id="property-without-key"),
    pytest.param('k=v;p=a"b', id="dquote-in-property-value"),
    pytest.param("k=v;p=a b", id="space-in-property-value"),
]


@pytest.mark.parametrize("member", INVALID_MEMBERS)
def test_invalid_member_is_dropped_alone(member: str) -> None:
    """§3.5 "If a system determines that the value of a baggage entry is not in the format
    defined in this specification, it MAY remove that entry": only that member goes."""
    assert parse_baggage(f"first=1,{member},last=2") == {"first": "1", "last": "2"}


@pytest.mark.parametrize("member", INVALID_MEMBERS)
def test_invalid_member_alone_raises(member: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_baggage(member)
    assert caught.value.field == "baggage"
    assert caught.value.length == len(member)
    assert "no valid list-member" in caught.value.reason


@pytest.mark.parametrize("member", INVALID_MEMBERS)
def test_invalid_member_raises_in_strict_mode(member: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_baggage(f"first=1,{member},last=2", strict=True)
    assert caught.value.reason.startswith("list-member 2")


def test_non_ascii_bytes_invalidate_their_member_only() -> None:
    """Bytes are read as latin-1; a non-ASCII byte cannot be a baggage-octet (§3.2)."""
    assert parse_baggage(b"a=1,b=caf\xe9,c=3") == {"a": "1", "c": "3"}
    with pytest.raises(InvalidValueError):
        parse_baggage(b"b=caf\xe9", strict=True)


@pytest.mark.parametrize("values", [None, 1, [None], ["a=1", 2]], ids=repr)
def test_parse_baggage_refuses_other_types(values: object) -> None:
    with pytest.raises(InvalidValueError):
        parse_baggage(values)  # type: ignore[arg-type]


def test_parse_baggage_error_never_contains_the_value() -> None:
    for value in (SENTINEL, f"{SENTINEL} x=1", f"k={SENTINEL}%zz", f"k=v;{SENTINEL} x"):
        for strict in (False, True):
            with pytest.raises(InvalidValueError) as caught:
                parse_baggage(value, strict=strict)
            assert SENTINEL not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# parsing: limits (§3.3.2)
# ---------------------------------------------------------------------------------------------


def members(count: int, start: int = 0) -> list[str]:
    return [f"k{i}=v{i}" for i in range(start, start + count)]


def test_parse_accepts_64_members() -> None:
    """§3.3.2 "A platform MUST propagate all list-members ... whenever ... Condition 1: The
    resulting baggage-string contains 64 list-members or less." (and at least 8192 bytes)."""
    assert len(parse_baggage(",".join(members(MIN_PROPAGATED_MEMBERS)))) == 64


def test_parse_keeps_at_most_180_members() -> None:
    """baggage-string = list-member 0*179( OWS "," OWS list-member ); "If either of the above
    conditions is not met, a platform MAY drop list-members until both conditions are met"."""
    result = parse_baggage(",".join(members(200)))
    assert list(result) == [f"k{i}" for i in range(MAX_BAGGAGE_MEMBERS)]


def test_member_limit_counts_valid_members_only() -> None:
    header = ",".join(["bad key=1"] * 50 + members(MAX_BAGGAGE_MEMBERS))
    assert len(parse_baggage(header)) == MAX_BAGGAGE_MEMBERS


def test_member_limit_counts_duplicates() -> None:
    header = ",".join(["k=1"] * MAX_BAGGAGE_MEMBERS + ["last=1"])
    assert parse_baggage(header) == {"k": "1"}


def padded(length: int, key: str = "k") -> str:
    """A list-member of exactly ``length`` bytes."""
    return f"{key}=" + "x" * (length - len(key) - 1)


def test_parse_accepts_exactly_8192_bytes() -> None:
    """§3.3.2 "Condition 2: The resulting baggage-string is of size 8192 bytes or less."."""
    header = f"{padded(4095, 'a')},{padded(4096, 'b')}"
    assert len(header) == MAX_BAGGAGE_BYTES
    assert parse_baggage(header) == {"a": "x" * 4093, "b": "x" * 4094}


def test_member_crossing_8192_bytes_is_dropped_whole() -> None:
    """§3.3.2 "If a platform cannot propagate all baggage, it MUST NOT propagate any partial
    list-members."."""
    header = f"{padded(4095, 'a')},{padded(4097, 'b')},c=1"
    assert parse_baggage(header) == {"a": "x" * 4093}


def test_byte_limit_applies_to_the_combined_headers() -> None:
    """§3.3.2 "If there are multiple baggage headers, all limits apply to the combination of
    all baggage headers and not each header individually."."""
    lines = [padded(5000, "a"), padded(5000, "b")]
    assert parse_baggage(lines) == {"a": "x" * 4998}


def test_surrounding_ows_does_not_count_against_the_byte_limit() -> None:
    header = " " * 100 + padded(MAX_BAGGAGE_BYTES) + "\t" * 100
    assert parse_baggage(header) == {"k": "x" * (MAX_BAGGAGE_BYTES - 2)}


def test_first_member_over_8192_bytes_raises() -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_baggage(padded(MAX_BAGGAGE_BYTES + 1))
    assert "8192" in caught.value.reason


def test_work_is_bounded_for_huge_headers() -> None:
    header = ",".join(members(20_000))
    assert len(header) > HUGE
    assert len(parse_baggage(header)) == MAX_BAGGAGE_MEMBERS


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------


def test_format_spec_example() -> None:
    """§3.4 "baggage: userId=alice,serverNode=DF%2028,isProduction=false"."""
    items = {"userId": "alice", "serverNode": "DF 28", "isProduction": "false"}
    assert format_baggage(items) == "userId=alice,serverNode=DF%2028,isProduction=false"


def test_format_spec_non_ascii_example() -> None:
    """§3.4 "baggage: userId=Am%C3%A9lie,serverNode=DF%2028,isProduction=false"."""
    items = {"userId": "Amélie", "serverNode": "DF 28", "isProduction": "false"}
    assert format_baggage(items) == "userId=Am%C3%A9lie,serverNode=DF%2028,isProduction=false"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        # §3.3.1.3 "Any code points outside of the baggage-octet range MUST be
        # percent-encoded. The percent code point (U+0025) MUST be percent-encoded."
        pytest.param("%", "%25", id="percent"),
        pytest.param(",", "%2C", id="comma"),
        pytest.param(";", "%3B", id="semicolon"),
        pytest.param(" ", "%20", id="space"),
        pytest.param('"', "%22", id="dquote"),
        pytest.param("\\", "%5C", id="backslash"),
        pytest.param("\t\r\n\x00\x7f", "%09%0D%0A%00%7F", id="control-characters"),
        pytest.param("é", "%C3%A9", id="latin-small-e-acute"),
        pytest.param("\U0001f600", "%F0%9F%98%80", id="emoji"),
        # "=" is a baggage-octet but is encoded for parsers that split on every "=".
        pytest.param("a=b", "a%3Db", id="equals"),
        # Other baggage-octets are written as they are.
        pytest.param("a+b", "a+b", id="plus"),
        pytest.param("!#$&'()*+-./:<>?@[]^_`{|}~", "!#$&'()*+-./:<>?@[]^_`{|}~", id="specials"),
        pytest.param("", "", id="empty"),
    ],
)
def test_format_percent_encodes(value: str, encoded: str) -> None:
    assert format_baggage({"k": value}) == f"k={encoded}"
    assert parse_baggage(f"k={encoded}") == {"k": value}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param("k=", id="equals"),
        pytest.param("k,", id="comma"),
        pytest.param("ké", id="non-ascii"),
        pytest.param("k\n", id="newline"),
        pytest.param("@k", id="at"),
    ],
)
def test_format_skips_keys_that_are_not_tokens(key: str) -> None:
    """§3.3.1.2 key = token: an invalid key is skipped, never raised on."""
    assert not is_valid_baggage_key(key)
    assert format_baggage({"a": "1", key: "2", "b": "3"}) == "a=1,b=3"


def test_format_skips_unencodable_values() -> None:
    assert format_baggage({"a": "1", "bad": "\ud800", "b": "2"}) == "a=1,b=2"


def test_format_limits_members() -> None:
    """§3.3.2 "a platform MAY drop list-members until both conditions are met"."""
    items = {f"k{i}": str(i) for i in range(100)}
    assert format_baggage(items).count(",") == MIN_PROPAGATED_MEMBERS - 1
    assert format_baggage(items, max_members=2) == "k0=0,k1=1"
    assert format_baggage(items, max_members=0) == ""


def test_format_limits_bytes_by_whole_members() -> None:
    """§3.3.2 "it MUST NOT propagate any partial list-members"; a member that does not fit
    is skipped and later, smaller members may still be written."""
    items = {"a": "1" * 10, "big": "2" * 100, "c": "3"}
    assert format_baggage(items, max_bytes=20) == f"a={'1' * 10},c=3"
    assert format_baggage(items, max_bytes=12) == f"a={'1' * 10}"
    assert format_baggage(items, max_bytes=11) == "c=3"
    assert format_baggage(items, max_bytes=0) == ""
    header = format_baggage({f"k{i}": "x" * 1000 for i in range(20)})
    assert len(header) <= MAX_BAGGAGE_BYTES


@pytest.mark.parametrize(("max_members", "max_bytes"), [(-1, 10), (10, -1)])
def test_format_refuses_negative_limits(max_members: int, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        format_baggage({"a": "1"}, max_members=max_members, max_bytes=max_bytes)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------

tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)


@given(
    st.text()
    | st.binary()
    | st.lists(st.text() | st.binary(), max_size=5)
    | st.lists(
        st.tuples(st.text(alphabet=TCHARS + " \t;=", max_size=10), st.text(max_size=10)).map(
            "=".join
        ),
        max_size=20,
    ).map(",".join),
    st.booleans(),
)
@example(value="k=v," * (HUGE // 4), strict=False)
@example(value="%" * HUGE, strict=False)
@example(value=b"\x00\r\n" * HUGE, strict=True)
@example(value="k=%FF%FE%C0%80", strict=True)
def test_parse_baggage_returns_valid_or_raises(
    value: str | bytes | list[str | bytes], strict: bool
) -> None:
    result = outcome(lambda v: parse_baggage(v, strict=strict), value)
    if isinstance(result, InvalidValueError):
        assert result.field == "baggage"
        return
    assert len(result) <= MAX_BAGGAGE_MEMBERS
    for key, member_value in result.items():
        assert TOKEN_RE.fullmatch(key)
        assert isinstance(member_value, str)
        member_value.encode("utf-8")  # a valid Unicode string: no lone surrogate


@given(
    st.dictionaries(tokens, st.text(max_size=40), max_size=80),
    st.integers(0, 100),
    st.integers(0, 3000),
)
def test_format_round_trips_within_limits(
    items: dict[str, str], max_members: int, max_bytes: int
) -> None:
    header = format_baggage(items, max_members=max_members, max_bytes=max_bytes)
    assert HEADER_RE.fullmatch(header)  # ASCII, no space, no control character
    assert len(header.encode()) <= max_bytes
    parsed = parse_baggage(header) if header else {}
    assert len(parsed) <= max_members
    assert list(parsed) == [key for key in items if key in parsed]  # a subsequence, in order
    assert parsed == {key: items[key] for key in parsed}


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=10))
def test_format_never_raises_and_keeps_only_token_keys(items: dict[str, str]) -> None:
    header = format_baggage(items)
    assert HEADER_RE.fullmatch(header)
    parsed = parse_baggage(header) if header else {}
    assert parsed == {k: v for k, v in items.items() if TOKEN_RE.fullmatch(k)}


def test_format_default_limits_round_trip() -> None:
    items = {f"key{i:02d}": "é" * 50 for i in range(100)}
    header = format_baggage(items)
    assert len(header) <= MAX_BAGGAGE_BYTES
    parsed = parse_baggage(header)
    # Each member is 5 + 1 + 50 * 6 = 306 bytes: 26 * 306 + 25 commas = 7981 <= 8192, while
    # a 27th would need 8288.
    assert len(parsed) == 26
    assert parsed == {k: items[k] for k in list(items)[:26]}
