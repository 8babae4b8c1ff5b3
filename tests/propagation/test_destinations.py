"""The outbound trust policy: context goes only to allowlisted destinations."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from flext_ctx_aspects import FlextContext
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.propagation import (
    allowed_destinations,
    destination_allowed,
    inject,
    parse_destination_pattern,
    reset_refusal_warnings,
    set_allowed_destinations,
)


@pytest.fixture(autouse=True)
def _clean_policy() -> Iterator[None]:
    reset_refusal_warnings()
    assert allowed_destinations() == ()
    yield
    assert allowed_destinations() == (), "a test left a process-wide allowlist behind"


@pytest.mark.parametrize(
    ("pattern", "destination", "allowed"),
    [
        ("api.internal", "https://api.internal/x", True),
        ("api.internal", "http://API.Internal:8080/x", True),  # any scheme, port; any case
        ("api.internal", "https://api.internal./x", True),  # trailing dot: the same host
        ("api.internal", "https://other.internal/", False),
        ("api.internal", "https://api.internal.evil.example/", False),
        ("api.internal", "https://evil.example/?next=api.internal", False),
        ("api.internal", "https://evil.example/#@api.internal", False),
        ("api.internal", "https://api.internal@evil.example/", False),  # user info
        ("api.internal", "https://user:pw@api.internal/", True),
        ("api.internal", "https://evil.example\\@api.internal/", False),  # backslash trick
        ("api.internal", "https://api.internal /", False),  # whitespace
        ("api.internal", "https://api.internal\r\n/", False),
        ("api.internal", "https://api.intern\u0430l/", False),  # Cyrillic "a"
        ("api.internal", "api.internal", True),  # a bare host
        ("api.internal", "api.internal:9000", True),
        ("api.internal", "", False),
        ("api.internal", "https:///nohost", False),
        ("api.internal", "http://[::1/", False),  # unparseable
        ("*.internal", "https://orders.internal/", True),
        ("*.internal", "https://a.b.internal/", True),
        ("*.internal", "https://internal/", False),  # subdomains only
        ("*.internal", "https://evilinternal/", False),
        ("api.internal:8443", "https://api.internal:8443/", True),
        ("api.internal:8443", "https://api.internal/", False),
        ("api.internal:443", "https://api.internal/", True),  # the scheme's default port
        ("api.internal:80", "http://api.internal/", True),
        ("https://api.internal", "https://api.internal/", True),
        ("https://api.internal", "http://api.internal/", False),
        ("https://*.internal:8443", "https://x.internal:8443/", True),
        ("127.0.0.1:8000", "http://127.0.0.1:8000/", True),
        ("127.0.0.1:8000", "http://127.0.0.1:8001/", False),
        ("[::1]:9000", "http://[::1]:9000/", True),
        ("[::1]", "http://[::1]:1234/", True),
        ("*", "https://anything.example/", True),
        ("*", "https://user@/", False),  # no host at all
    ],
)
def test_pattern_matching(pattern: str, destination: str, allowed: bool) -> None:
    assert destination_allowed(destination, [pattern]) is allowed


@pytest.mark.parametrize(
    ("destination", "allowed"),
    [
        (("https", "api.internal", None), True),
        (("https", "API.INTERNAL", 443), True),
        (("http", "api.internal", None), False),
        (("http", "::1", 9000), False),
        (("http", "::1", 7000), True),  # httpx gives IPv6 hosts without brackets
        ((None, "api.internal", None), False),  # the pattern requires https
        (("https", "", None), False),
        (("https", "bad host", None), False),
    ],
)
def test_tuple_destinations(destination: tuple[str | None, str, int | None], allowed: bool) -> None:
    assert destination_allowed(destination, ["https://api.internal", "[::1]:7000"]) is allowed


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "   ",
        "https://api.internal/path",
        "api.internal?x=1",
        "user@api.internal",
        "api.internal:0",
        "api.internal:70000",
        "api.internal:http",
        "api internal",
        "api.inter\nnal",
        "*api.internal",
        "api.*.internal",
        "-bad.internal",
        "a..b",
        "ht tp://api.internal",
        "[::1",
        "[zz::1]",
    ],
)
def test_invalid_patterns_are_configuration_errors(pattern: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_destination_pattern(pattern)
    assert "allowed destinations" in str(caught.value)


def test_a_single_string_is_not_a_list_of_patterns() -> None:
    with pytest.raises(ConfigError, match="a list of host patterns"):
        set_allowed_destinations("api.internal")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        inject({}, destination="https://api.internal/", allowed_destinations="api.internal")


def test_deny_by_default_and_strip_headers_already_present(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    carrier = {
        "X-Correlation-Id": "from-a-previous-hop",
        "TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "baggage": "a=1",
        "Accept": "*/*",
    }
    with FlextContext.Correlation.new_correlation():
        result = inject(carrier, destination="https://api.internal/")
        inject({}, destination="https://api.internal/other")
    assert result is carrier
    assert carrier == {"Accept": "*/*"}
    refusals = [r.getMessage() for r in caplog.records if "not propagated" in r.getMessage()]
    expected = (
        "flext_ctx_aspects: context not propagated to https://api.internal: "
        "not in the allowed destinations"
    )
    assert refusals == [
        expected
    ]  # once per origin (scheme://host:port, as patterns name them), not once per call


def test_refusal_of_an_unusable_destination_logs_a_hash_not_the_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FlextContext.Correlation.new_correlation():
        inject({}, destination="https://evil\r\nSet-Cookie: x/")
    assert "Set-Cookie" not in caplog.text
    assert "unusable destination (sha256" in caplog.text


def test_process_wide_allowlist_handle_and_per_call_override() -> None:
    with FlextContext.Correlation.new_correlation():
        handle = set_allowed_destinations(["*.internal"])
        try:
            assert allowed_destinations() == ("*.internal",)
            assert inject({}, destination="https://a.internal/")
            assert not inject({}, destination="https://a.example/")
            # The call's own allowlist replaces the process-wide one.
            assert inject({}, destination="https://a.example/", allowed_destinations=["a.example"])
            assert not inject({}, destination="https://a.internal/", allowed_destinations=[])
            with set_allowed_destinations([]):
                assert not inject({}, destination="https://a.internal/")
            assert allowed_destinations() == ("*.internal",)  # the nested handle restored it
        finally:
            handle()
    assert allowed_destinations() == ()


def test_invalid_allowlist_changes_nothing() -> None:
    with set_allowed_destinations(["api.internal"]):
        with pytest.raises(ConfigError):
            set_allowed_destinations(["ok.internal", "bad/path"])
        assert allowed_destinations() == ("api.internal",)


def test_no_destination_means_no_check() -> None:
    with FlextContext.Correlation.new_correlation("queue-1"):
        assert inject({})["X-Correlation-Id"] == "queue-1"
