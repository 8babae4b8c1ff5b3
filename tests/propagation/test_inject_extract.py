"""``inject`` / ``extract``: carriers, formats, W3C rules end to end, correlation priority.

W3C quotes are from https://www.w3.org/TR/trace-context/ (Level 1) and
https://www.w3.org/TR/baggage/; section numbers are those documents'.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx
import pytest

from flext_ctx_aspects import ContextField, FlextContext, _state
from flext_ctx_aspects.errors import ConfigError, InvalidValueError
from flext_ctx_aspects.propagation import (
    ALL_FORMATS,
    ASGI_SCOPE,
    MAPPING,
    PAIRS,
    WSGI_ENVIRON,
    AsgiHeadersSetter,
    Extracted,
    PairsSetter,
    extract,
    inject,
    propagation_header_names,
)
from flext_ctx_aspects.settings import Settings, apply_settings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
UNSAMPLED = f"00-{TRACE}-{PARENT}-00"


class PropagationTestContext(FlextContext):
    """A FlextContext subclass with a custom field, as the original design's FlextCliContext."""

    prop_tenant = ContextField(header="X-Prop-Tenant")


def parts(traceparent: str) -> tuple[str, str, str, str]:
    version, trace_id, parent_id, flags = traceparent.split("-")
    return version, trace_id, parent_id, flags


def outbound_in(extracted: Extracted) -> dict[str, str]:
    with extracted:
        return inject({})


# --- carriers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "carrier",
    [
        pytest.param({"X-Correlation-Id": "c-1", "x-request-id": "r-1"}, id="dict"),
        pytest.param({"X-CORRELATION-ID": ["c-1"], "X-Request-Id": ("r-1", "r-1")}, id="lists"),
        pytest.param({b"x-correlation-id": b"c-1", b"x-request-id": b"r-1"}, id="bytes-dict"),
        pytest.param([(b"x-correlation-id", b"c-1"), (b"x-request-id", b"r-1")], id="asgi-list"),
        pytest.param(
            {"type": "http", "headers": [(b"x-correlation-id", b"c-1"), (b"x-request-id", b"r-1")]},
            id="asgi-scope",
        ),
        pytest.param(
            {"wsgi.version": (1, 0), "HTTP_X_CORRELATION_ID": "c-1", "HTTP_X_REQUEST_ID": "r-1"},
            id="wsgi-environ",
        ),
        pytest.param([("x-correlation-id", b"c-1"), ("x-request-id", b"r-1")], id="kafka-pairs"),
        pytest.param(httpx.Headers({"X-Correlation-Id": "c-1", "X-Request-Id": "r-1"}), id="httpx"),
    ],
)
def test_extract_reads_every_carrier_type(carrier: object) -> None:
    extracted = extract(carrier)
    assert extracted.values == {"correlation_id": "c-1", "request_id": "r-1"}
    assert extracted.problems == ()


def test_explicit_getters() -> None:
    scope = {"headers": [(b"x-correlation-id", b"g-1")]}  # no "type": not auto-detected
    assert extract(scope, getter=ASGI_SCOPE).correlation_id == "g-1"
    environ = {"HTTP_X_CORRELATION_ID": "g-2", "CONTENT_TYPE": "text/plain"}
    assert extract(environ, getter=WSGI_ENVIRON).correlation_id == "g-2"
    assert extract([("X-Correlation-Id", "g-3")], getter=PAIRS).correlation_id == "g-3"
    assert extract({"x-correlation-id": "g-4"}, getter=MAPPING).correlation_id == "g-4"


def test_user_defined_getter_needs_no_subclassing() -> None:
    class Metadata:
        def __init__(self, items: dict[str, str]) -> None:
            self.items = items

    class MetadataGetter:
        def keys(self, carrier: Metadata) -> list[str]:
            return list(carrier.items)

        def get(self, carrier: Metadata, key: str) -> list[str | bytes]:
            return [v for k, v in carrier.items.items() if k.lower() == key.lower()]

    extracted = extract(Metadata({"X-Correlation-Id": "m-1"}), getter=MetadataGetter())
    assert extracted.correlation_id == "m-1"


def test_broken_getter_is_an_empty_carrier_or_a_strict_refusal() -> None:
    class Broken:
        def keys(self, carrier: object) -> list[str]:
            raise RuntimeError("boom")

        def get(self, carrier: object, key: str) -> list[str | bytes]:
            return []

    assert extract({}, getter=Broken()).values == {}
    with pytest.raises(InvalidValueError):
        extract({}, getter=Broken(), strict=True)


def test_inject_writes_every_carrier_type() -> None:
    with FlextContext.Correlation.new_correlation("inj-1"):
        as_dict = inject({"x-correlation-id": "stale", "Accept": "*/*"})
        as_asgi = inject([(b"accept", b"*/*")])
        as_empty_list = inject([])
        as_pairs = inject([("Accept", "*/*")])
        as_httpx = inject(httpx.Headers({"X-Correlation-Id": "stale"}))
        explicit = inject([], setter=PairsSetter())
        explicit_asgi = inject([("accept", "*/*")], setter=AsgiHeadersSetter())
    assert as_dict["X-Correlation-Id"] == "inj-1"
    assert "x-correlation-id" not in as_dict  # replaced under any spelling, not duplicated
    assert as_dict["Accept"] == "*/*"
    assert (b"x-correlation-id", b"inj-1") in as_asgi
    assert (b"x-correlation-id", b"inj-1") in as_empty_list  # an empty list is ASGI: bytes
    assert ("X-Correlation-Id", "inj-1") in as_pairs
    assert as_httpx.get_list("x-correlation-id") == ["inj-1"]
    assert ("X-Correlation-Id", "inj-1") in explicit
    assert (b"x-correlation-id", b"inj-1") in explicit_asgi


def test_user_defined_setter_and_unsupported_carrier() -> None:
    class Collect:
        def __init__(self) -> None:
            self.items: list[tuple[str, str]] = []

        def set(self, carrier: object, key: str, value: str) -> None:
            self.items.append((key, value))

    setter = Collect()
    with FlextContext.Correlation.new_correlation("s-1"):
        inject(object(), setter=setter)
        with pytest.raises(TypeError, match="mutable mapping"):
            inject(("immutable",))
    assert ("X-Correlation-Id", "s-1") in setter.items


def test_inject_without_context_writes_nothing() -> None:
    assert inject({}) == {}


# --- formats ----------------------------------------------------------------------------------


def test_default_formats_and_explicit_ones() -> None:
    with (
        FlextContext.Correlation.new_correlation(TRACE),
        PropagationTestContext.prop_tenant.scope("acme"),
    ):
        default = inject({})
        b3_only = inject({}, formats=["b3"])
        multi = inject({}, formats=["b3multi", "flext"])
    assert set(default) == {"X-Correlation-Id", "traceparent", "X-Prop-Tenant", "baggage"}
    assert default["baggage"] == "prop_tenant=acme"
    assert set(b3_only) == {"b3"}
    assert b3_only["b3"].startswith(TRACE + "-")
    assert {"X-B3-TraceId", "X-B3-SpanId", "X-Correlation-Id"} <= set(multi)
    assert {"flext", "tracecontext", "baggage", "b3", "b3multi"} == ALL_FORMATS


def test_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="jaeger"):
        extract({}, formats=["jaeger"])
    with pytest.raises(ConfigError, match="a str"):
        inject({}, formats="flext")
    with pytest.raises(ConfigError, match="x-trace-id"):
        extract({}, correlation_sources=["x-correlation-id", "x-trace-id"])
    with pytest.raises(ConfigError, match="a str"):
        extract({}, correlation_sources="x-request-id")


def test_b3_inbound_continues_the_trace_when_no_traceparent() -> None:
    b3 = f"{TRACE}-{PARENT}-1"
    extracted = extract({"b3": b3}, formats=["flext", "tracecontext", "b3"])
    assert extracted.trace_id == TRACE
    assert extracted.parent_id == PARENT
    assert extracted.sampled is True
    # traceparent, when valid, wins over B3.
    other = "11111111111111111111111111111111"
    both = extract(
        {"b3": f"{other}-{PARENT}", "traceparent": TRACEPARENT}, formats=["b3", "tracecontext"]
    )
    assert both.trace_id == TRACE
    assert extract({"b3": b3}).trace_id is None  # B3 is read only when asked for


class AmznFormat:
    """A custom format: ``X-Amzn-Trace-Id: Root=...`` carries a correlation id."""

    header_names = ("X-Amzn-Trace-Id",)

    def read(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        value = headers.get("x-amzn-trace-id", "")
        return {"correlation_id": value.removeprefix("Root=")} if value else {}

    def write(self, context: Mapping[str, str]) -> Mapping[str, str]:
        return {"X-Amzn-Trace-Id": f"Root={context['correlation_id']}"}


def test_custom_format_reads_and_writes_through_the_validation() -> None:
    fmt = AmznFormat()
    assert extract({"X-Amzn-Trace-Id": "Root=1-abc"}, formats=[fmt]).correlation_id == "1-abc"
    # The built-in formats' values come first; the custom format fills what they left.
    both = extract(
        {"X-Amzn-Trace-Id": "Root=amzn", "X-Correlation-Id": "own"}, formats=["flext", fmt]
    )
    assert both.correlation_id == "own"
    # A hostile value read by the format is validated like any other.
    hostile = extract({"X-Amzn-Trace-Id": "Root=a\r\nb"}, formats=[fmt])
    assert hostile.correlation_id is None
    assert hostile.problems == (("correlation_id", "contains a character outside the allowed set"),)
    with pytest.raises(InvalidValueError):
        extract({"X-Amzn-Trace-Id": "Root=a b"}, formats=[fmt], strict=True)
    with FlextContext.Correlation.new_correlation("w-1"):
        assert inject({}, formats=[fmt]) == {"X-Amzn-Trace-Id": "Root=w-1"}
    assert "X-Amzn-Trace-Id" in propagation_header_names([fmt])


def test_custom_format_gets_trace_fields_and_cannot_emit_control_characters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Evil:
        header_names = ("X-Evil",)

        def read(self, headers: Mapping[str, str]) -> Mapping[str, str]:
            raise RuntimeError("a bug in the format")

        def write(self, context: Mapping[str, str]) -> Mapping[str, str]:
            return {
                "X-Evil": "a\r\nSet-Cookie: x",
                "Bad Name": "v",
                "X-Trace": f"{context['trace_id']}/{context['span_id']}/{context['sampled']}",
            }

    with FlextContext.Correlation.new_correlation(TRACE):
        written = inject({}, formats=[Evil()])
    assert written == {"X-Trace": f"{TRACE}/{TRACE[16:]}/1"}
    assert extract({"X-Evil": "x"}, formats=[Evil()]).values == {}  # its read failed: nothing
    assert "Set-Cookie" not in caplog.text


# --- W3C Trace Context, at the extract/inject level -------------------------------------------


def test_valid_traceparent_continues_the_trace() -> None:
    """§3.2.2.3 trace-id "is the ID of the whole trace forest": it is passed on unchanged;
    §3.2.2.4 parent-id "is the ID of this request as known by the caller": a new one for our
    outbound call."""
    outbound = outbound_in(extract({"traceparent": TRACEPARENT}))
    version, trace_id, parent_id, flags = parts(outbound["traceparent"])
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert parent_id != PARENT
    assert len(parent_id) == 16


@pytest.mark.parametrize("flags", ["00", "01"])
def test_sampled_flag_is_kept(flags: str) -> None:
    """§3.2.2.5.1: the sampled flag records the caller's sampling decision; a vendor that makes
    no decision of its own passes the received one on."""
    outbound = outbound_in(extract({"traceparent": f"00-{TRACE}-{PARENT}-{flags}"}))
    assert parts(outbound["traceparent"])[3] == flags


def test_unknown_flags_are_not_propagated() -> None:
    """§3.2.2.5: the only flag of version 00 is sampled; the others are reserved and "Vendors
    MUST set those to zero"."""
    outbound = outbound_in(extract({"traceparent": f"00-{TRACE}-{PARENT}-ff"}))
    assert parts(outbound["traceparent"])[3] == "01"


@pytest.mark.parametrize(
    "traceparent",
    [
        pytest.param(f"ff-{TRACE}-{PARENT}-01", id="version-ff"),  # "Version ff is invalid"
        pytest.param(f"00-{'0' * 32}-{PARENT}-01", id="zero-trace-id"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", id="zero-parent-id"),
        pytest.param(f"00-{TRACE.upper()}-{PARENT}-01", id="uppercase"),
        pytest.param(f"00-{TRACE}-{PARENT}-01-extra", id="version-00-too-long"),
        pytest.param(f"00-{TRACE}-{PARENT}", id="too-short"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_invalid_traceparent_starts_a_new_trace_and_drops_tracestate(traceparent: str) -> None:
    """§3.3: "If the vendor failed to parse traceparent, it MUST NOT attempt to parse
    tracestate"; §4.3: a traceparent that cannot be parsed means a new trace."""
    extracted = extract({"traceparent": traceparent, "tracestate": "vendor=kept"})
    assert extracted.trace_id is None
    assert extracted.parent_id is None
    assert extracted.tracestate == ()
    assert extracted.problems[0][0] == "traceparent"
    with extracted as correlation_id:
        outbound = inject({})
    assert correlation_id is not None
    _, trace_id, _, flags = parts(outbound["traceparent"])
    assert trace_id not in (TRACE, TRACE.upper(), "0" * 32)
    assert trace_id == correlation_id  # the new trace is named by the new correlation id
    assert flags == "01"
    assert "tracestate" not in outbound


def test_invalid_traceparent_in_strict_mode_is_refused() -> None:
    with pytest.raises(InvalidValueError) as caught:
        extract({"traceparent": f"00-{'0' * 32}-{PARENT}-01"}, strict=True)
    assert caught.value.field == "traceparent"


def test_tracestate_passes_on_with_a_valid_traceparent() -> None:
    outbound = outbound_in(
        extract(
            {"traceparent": TRACEPARENT, "tracestate": "rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE"}
        )
    )
    assert outbound["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def test_tracestate_with_32_members_passes_and_33_is_discarded() -> None:
    """§3.3.1.1 "There can be a maximum of 32 list-members in a list"; W3C test suite
    test_tracestate_member_count_limit: 32 members are propagated, 33 are discarded."""
    members = [f"k{n}=v{n}" for n in range(33)]
    kept = extract({"traceparent": TRACEPARENT, "tracestate": ",".join(members[:32])})
    assert len(kept.tracestate) == 32
    assert outbound_in(kept)["tracestate"] == ",".join(members[:32])
    dropped = extract({"traceparent": TRACEPARENT, "tracestate": ",".join(members)})
    assert dropped.tracestate == ()
    assert dropped.trace_id == TRACE  # §3.3: failing tracestate "MUST NOT affect" traceparent
    assert "tracestate" not in outbound_in(dropped)


def test_long_tracestate_is_trimmed_by_whole_entries() -> None:
    """§3.3.1.5: "the vendor MUST truncate whole entries. Entries larger than 128 characters
    long SHOULD be removed first. Then entries SHOULD be removed starting from the end"."""
    entries = [(f"k{n}", ("x" * 140 if n in (3, 7) else f"v{n:02}" * 8)) for n in range(32)]
    header = ",".join(f"{k}={v}" for k, v in entries)
    assert len(header) > 512
    outbound = outbound_in(extract({"traceparent": TRACEPARENT, "tracestate": header}))[
        "tracestate"
    ]
    assert len(outbound) <= 512
    written = [member.split("=") for member in outbound.split(",")]
    assert all((key, value) in entries for key, value in written)  # never a partial entry
    keys = [key for key, _ in written]
    assert "k3" not in keys
    assert "k7" not in keys
    assert keys == [k for k, v in entries if len(v) <= 128][: len(keys)]  # then from the end


# --- correlation priority ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"X-Correlation-Id": "cid", "X-Request-ID": "rid", "traceparent": TRACEPARENT},
            "cid",
            id="correlation-header-first",
        ),
        pytest.param(
            {"X-Request-ID": "rid", "traceparent": TRACEPARENT}, "rid", id="then-request-id"
        ),
        pytest.param({"traceparent": TRACEPARENT}, TRACE, id="then-trace-id"),
        pytest.param(
            {"X-Correlation-Id": "bad id", "X-Request-ID": "rid"}, "rid", id="invalid-falls-through"
        ),
        pytest.param({"x-correlation-id": "lower", "X-REQUEST-ID": "rid"}, "lower", id="any-case"),
        pytest.param({"traceparent": "garbage"}, None, id="nothing-valid"),
    ],
)
def test_correlation_priority(headers: dict[str, str], expected: str | None) -> None:
    assert extract(headers).correlation_id == expected


def test_correlation_priority_is_configurable() -> None:
    headers = {"X-Correlation-Id": "cid", "X-Request-ID": "rid", "traceparent": TRACEPARENT}
    assert (
        extract(headers, correlation_sources=["traceparent", "x-correlation-id"]).correlation_id
        == TRACE
    )
    assert extract(headers, correlation_sources=["x-request-id"]).correlation_id == "rid"
    apply_settings(Settings(correlation_sources=("traceparent",)))
    assert extract(headers).correlation_id == TRACE
    # With no usable source a scope opens a new correlation id, in the inbound trace.
    with extract({"traceparent": TRACEPARENT}, correlation_sources=["x-correlation-id"]) as cid:
        assert cid != TRACE
        assert parts(inject({})["traceparent"])[1] == TRACE


# --- Baggage ----------------------------------------------------------------------------------


def test_baggage_carries_custom_fields_with_percent_encoding() -> None:
    """Baggage §3.3.1.3: values are percent-encoded; "+" is a literal plus, not a space."""
    extracted = extract({"baggage": "prop_tenant=a+b%20c, other=1;prop=x"})
    assert extracted.values["prop_tenant"] == "a+b c"
    assert dict(extracted.baggage) == {"other": "1"}
    with extracted:
        assert PropagationTestContext.prop_tenant.get() == "a+b c"
        outbound = inject({})
    assert outbound["baggage"] == "prop_tenant=a+b%20c,other=1"
    assert outbound["X-Prop-Tenant"] == "a+b c"


def test_field_header_wins_over_baggage() -> None:
    extracted = extract({"X-Prop-Tenant": "header", "baggage": "prop_tenant=baggage"})
    assert extracted.values["prop_tenant"] == "header"


def test_baggage_within_64_members_and_8192_bytes_passes_on_whole() -> None:
    """Baggage §3.3.2: a baggage-string of "64 list-members or less" and "8192 bytes or less"
    MUST be propagated; this service's own fields must not push members out."""
    members = [f"m{n:02}={'v' * 110}" for n in range(64)]
    header = ",".join(members)
    assert len(header) <= 8192
    with (
        extract({"baggage": header}),
        PropagationTestContext.prop_tenant.scope("ours"),
    ):
        outbound = inject({})["baggage"].split(",")
    assert outbound[0] == "prop_tenant=ours"
    assert outbound[1:] == members


def test_baggage_members_with_control_characters_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    extracted = extract({"baggage": "ok=1,bad=line%0Abreak,tenant=%C3%A9"})
    assert dict(extracted.baggage) == {"ok": "1", "tenant": "é"}
    assert ("baggage", "member value has a control character") in extracted.problems
    assert "break" not in caplog.text
    assert outbound_in(extracted)["baggage"] == "ok=1,tenant=%C3%A9"


# --- trust and validation ---------------------------------------------------------------------


def test_user_id_needs_a_trusted_source_and_is_never_emitted() -> None:
    headers = {"X-User-Id": "u-1"}
    assert "user_id" not in extract(headers).values
    assert extract(headers, trusted=True).values["user_id"] == "u-1"
    apply_settings(Settings(trust_inbound_user_id=True))
    with extract(headers):
        assert FlextContext.Request.get_user_id() == "u-1"
        assert "X-User-Id" not in inject({})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("abc\r\nX-Injected: 1", id="crlf"),
        pytest.param("abc\x00", id="nul"),
        pytest.param("abc\x1b[31m", id="escape"),
        pytest.param("a" * 100_000, id="100kb"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param(b"caf\xc3\xa9", id="non-ascii-bytes"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_values_are_dropped_with_a_warning_that_never_echoes_them(
    value: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    extracted = extract({"X-Correlation-Id": value, "X-Service-Name": "ok"})
    assert "correlation_id" not in extracted.values
    assert extracted.values["service_name"] == "ok"
    assert extracted.problems
    assert extracted.problems[0][0] == "correlation_id"
    (warning,) = [r for r in caplog.records if r.name == "flext_ctx_aspects"]
    message = warning.getMessage()
    assert "length" in message
    assert "sha256" in message
    shown = value.decode("latin-1") if isinstance(value, bytes) else value
    if shown:
        assert shown[:12] not in message


def test_strict_mode_refuses_with_a_clear_error_and_the_per_call_override_wins() -> None:
    bad = {"X-Correlation-Id": "ok-id", "X-Service-Name": "bad\nname"}
    with pytest.raises(InvalidValueError) as caught:
        extract(bad, strict=True)
    error = caught.value
    assert (error.field, error.length) == ("service_name", 8)
    assert "bad" not in str(error)
    apply_settings(Settings(strict_validation=True))
    with pytest.raises(InvalidValueError):
        extract(bad)
    assert extract(bad, strict=False).values == {"correlation_id": "ok-id"}


def test_conflicting_duplicates_are_dropped_identical_ones_kept() -> None:
    assert extract([("x-correlation-id", "a"), ("X-Correlation-Id", "a")]).correlation_id == "a"
    conflicting = extract([("x-correlation-id", "a"), ("x-correlation-id", "b")])
    assert conflicting.correlation_id is None
    assert conflicting.problems == (("x-correlation-id", "conflicting duplicate values"),)


def test_outbound_never_emits_a_control_character(caplog: pytest.LogCaptureFixture) -> None:
    # A value that reached the context through an unchecked path (not the validated API).
    _state.replace(
        _state.with_changes(
            _state.EMPTY,
            {_state.CORRELATION_ID: "ok-1", _state.SERVICE_NAME: "svc\r\nSet-Cookie: a=b"},
        )
    )
    try:
        outbound = inject({})
    finally:
        _state.clear()
    assert outbound["X-Correlation-Id"] == "ok-1"
    assert "X-Service-Name" not in outbound
    assert "Set-Cookie" not in caplog.text


# --- scopes -----------------------------------------------------------------------------------


def test_scope_is_fresh_and_restores_the_previous_context() -> None:
    with (
        FlextContext.Service.service_context("receiver", "1.0"),
        FlextContext.Request.request_context(user_id="previous-user", request_id="previous-req"),
    ):
        before = _state.get()
        with extract({"X-Correlation-Id": "in-1", "X-Service-Name": "caller"}) as cid:
            assert cid == "in-1"
            assert FlextContext.Request.get_user_id() is None  # fresh: nothing of before
            assert FlextContext.Request.get_request_id() is None
            assert FlextContext.Service.get_service_name() == "receiver"  # own identity wins
            assert FlextContext.Service.get_service_version() == "1.0"
        assert _state.get() is before


def test_scope_without_a_service_takes_the_callers() -> None:
    with extract({"X-Service-Name": "caller"}):
        assert FlextContext.Service.get_service_name() == "caller"


def test_non_fresh_scope_and_apply_merge_over_the_current_context() -> None:
    extracted = extract({"X-Correlation-Id": "m-1"})
    with FlextContext.Request.request_context(request_id="kept"):
        with extracted.scope(fresh=False):
            assert FlextContext.Request.get_request_id() == "kept"
            assert FlextContext.Correlation.get_correlation_id() == "m-1"
        with extracted.scope(ensure_correlation=False):
            assert FlextContext.Correlation.get_correlation_id() == "m-1"
    with extract({}).scope(ensure_correlation=False) as nothing:
        assert nothing is None
    extracted.apply()
    try:
        assert FlextContext.Correlation.get_correlation_id() == "m-1"
    finally:
        FlextContext.Utilities.clear_context()


def test_one_extracted_can_be_entered_twice_nested() -> None:
    extracted = extract({"X-Correlation-Id": "n-1"})
    with extracted, extracted:
        assert FlextContext.Correlation.get_correlation_id() == "n-1"
    assert _state.get() == _state.EMPTY


def test_extracted_is_read_only() -> None:
    extracted = extract({"X-Correlation-Id": "r-1", "baggage": "a=1"})
    with pytest.raises(TypeError):
        extracted.values["correlation_id"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        extracted.baggage["a"] = "2"  # type: ignore[index]
    assert "problems=0" in repr(extracted)


# --- FlextContext.Serialization continues the trace -------------------------------------------


def test_set_from_context_then_get_correlation_context_continues_the_trace() -> None:
    result = FlextContext.Serialization.set_from_context(
        {"traceparent": UNSAMPLED, "tracestate": "congo=t61rcWkgMzE"}
    )
    try:
        assert result.success
        headers = FlextContext.Serialization.get_correlation_context()
        version, trace_id, parent_id, flags = parts(headers["traceparent"])
        assert (version, trace_id, flags) == ("00", TRACE, "00")
        assert parent_id != PARENT
        assert headers["tracestate"] == "congo=t61rcWkgMzE"
        # A nested correlation scope is still in the same trace.
        with FlextContext.Correlation.new_correlation():
            nested = FlextContext.Serialization.get_correlation_context()["traceparent"]
        assert parts(nested)[1] == TRACE
        assert parts(nested)[2] != parent_id
    finally:
        FlextContext.Utilities.clear_context()


def test_each_hop_names_a_new_parent_id() -> None:
    """A correlation id crosses services unchanged; the parent-id must still change per hop."""
    with FlextContext.Correlation.new_correlation():
        hop_a = inject({})
    with extract(hop_a):
        hop_b = inject({})
    with extract(hop_b):
        hop_c = inject({})
    assert hop_a["X-Correlation-Id"] == hop_b["X-Correlation-Id"] == hop_c["X-Correlation-Id"]
    trace_ids = {parts(h["traceparent"])[1] for h in (hop_a, hop_b, hop_c)}
    parent_ids = [parts(h["traceparent"])[2] for h in (hop_a, hop_b, hop_c)]
    assert len(trace_ids) == 1
    assert len(set(parent_ids)) == 3
