"""Hostile inbound headers against running servers (uvicorn + ASGI, waitress + WSGI).

CR, LF, NUL and other control characters cannot be sent through httpx, so every request here
is written on a raw socket. Every hostile value carries the marker ``EVILMARK``: whatever
happens (the server refuses the request, the middleware drops the value, or strict mode
answers 400), the marker must not be stored in the context, echoed in the response, written
into an operation record, or logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ctx_servers import (
    asgi_service_b,
    raw_request,
    uvicorn_server,
    wait_for_records,
    waitress_server,
    wsgi_service_b,
)

from flext_ctx_aspects import _emit
from flext_ctx_aspects.testing import capture_operations

pytestmark = pytest.mark.network

MARK = b"EVILMARK"
VALID_TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

HOSTILE: dict[str, bytes] = {
    "bare-cr-in-value": b"X-Correlation-Id: abc\rEVILMARK\r\n",
    "bare-lf-in-value": b"X-Correlation-Id: abc\nEVILMARK: injected\r\n",
    "nul-in-value": b"X-Correlation-Id: abc\x00EVILMARK\r\n",
    "ansi-escape-in-name": b"X-Service-Name: \x1b[31mEVILMARK\x1b[0m\r\n",
    "obs-text-latin1": b"X-Correlation-Id: EVILMARK\xff\xfe\r\n",
    "utf8-non-ascii": "X-Service-Name: EVILMARK-\u00e9\u4e2d\r\n".encode(),
    "100kb-correlation-id": b"X-Correlation-Id: " + MARK * 12_800 + b"\r\n",
    "100kb-baggage": b"baggage: k=" + MARK * 12_800 + b"\r\n",
    "conflicting-duplicates": b"X-Correlation-Id: EVILMARK-1\r\nX-Correlation-Id: EVILMARK-2\r\n",
    "space-in-id": b"X-Request-Id: EVILMARK with spaces\r\n",
    "invalid-traceparent": b"traceparent: 00-EVILMARK0000000000000000000000000-00f067aa0ba902b7-01\r\n",
    "tracestate-with-invalid-traceparent": (
        b"traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n"
        b"tracestate: vendor=EVILMARK\r\n"
    ),
    "tracestate-33-members": (
        b"traceparent: "
        + VALID_TRACEPARENT
        + b"\r\ntracestate: "
        + b",".join(b"k%d=EVILMARK" % n for n in range(33))
        + b"\r\n"
    ),
    "baggage-percent-encoded-lf": b"baggage: note=EVILMARK%0D%0AX-Evil%3A%201\r\n",
    "untrusted-user-id": b"X-User-Id: EVILMARK\r\n",
    "control-in-header-name": b"X-Correlation\x01-Id: EVILMARK\r\n",
}


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def lenient_server(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "asgi":
        with uvicorn_server(asgi_service_b(strict=False)) as url:
            yield url
    else:
        with waitress_server(wsgi_service_b(strict=False), threads=4) as url:
            yield url


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def strict_server(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "asgi":
        with uvicorn_server(asgi_service_b(strict=True)) as url:
            yield url
    else:
        with waitress_server(wsgi_service_b(strict=True), threads=4) as url:
            yield url


def send(base_url: str, extra_headers: bytes) -> tuple[int, bytes]:
    head = (
        b"GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers + b"\r\n"
    )
    reply = raw_request(base_url, head)
    status_line = reply.split(b"\r\n", 1)[0]
    return int(status_line.split(b" ")[1]), reply


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (bytes, bytearray)):
        yield bytes(value).decode("latin-1")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)


def assert_nothing_hostile_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert "EVILMARK" not in record.getMessage()
        assert not any("EVILMARK" in text for text in strings_in(record.args))


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_lenient_server_drops_hostile_values(
    lenient_server: str, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Records' wall-clock starts are perf_counter_ns plus an offset resynced every second
    # (_emit._wall); where the wall clock is being slewed (0.5% seen on a VM), time_ns()
    # runs milliseconds ahead of them. The earlier of the two still excludes earlier tests.
    started = min(time.time_ns(), time.perf_counter_ns() + _emit._wall[0])
    with capture_operations() as ops:
        status, reply = send(lenient_server, HOSTILE[case])
        # Either the server refuses a malformed request itself, or the request succeeds with
        # the hostile value dropped.
        assert status in (200, 400, 431), reply[:200]
        handled = status == 200
        found = wait_for_records(ops, lambda op: op.start_time_ns >= started, int(handled))
    if handled:
        assert MARK not in reply
    else:
        # Refused by the HTTP server itself, before any application code: the middleware
        # never saw it (waitress quotes the bad header line in its own 400 page).
        assert b"invalid request context" not in reply
    for record in found:
        assert record.metadata["http.status_code"] == 200
        assert not any("EVILMARK" in text for text in strings_in(record.to_dict()))
        assert record.user_id is None
    assert_nothing_hostile_logged(caplog)
    if handled and case not in ("bare-lf-in-value",):
        # A dropped value is reported: field, reason, length, hash; never the value.
        warnings = [r.getMessage() for r in caplog.records if r.name == "flext_ctx_aspects"]
        if case != "untrusted-user-id":
            assert any("length" in message and "sha256" in message for message in warnings)


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_strict_server_answers_400_without_echoing(
    strict_server: str, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, reply = send(strict_server, HOSTILE[case])
    if b"invalid request context" in reply or status == 200:
        assert MARK not in reply  # the middleware's answer never quotes the value
    assert_nothing_hostile_logged(caplog)
    if case == "untrusted-user-id":
        assert status == 200  # not invalid: an untrusted user id is ignored
    elif case == "bare-lf-in-value":
        # h11 reads a bare LF as a line end ("EVILMARK: injected" becomes a header nobody
        # reads); waitress refuses the request itself.
        assert status in (200, 400)
    else:
        assert status in (400, 431)


def test_strict_refusal_names_the_header_and_reason(strict_server: str) -> None:
    status, reply = send(strict_server, b"X-Correlation-Id: EVILMARK with spaces\r\n")
    assert status == 400
    assert b"invalid request context: correlation_id: contains a character" in reply
    assert b"x-correlation-id: " in reply.lower()  # a fresh correlation id is still echoed
    assert MARK not in reply


def test_valid_request_after_hostile_ones_is_clean(lenient_server: str) -> None:
    status, reply = send(lenient_server, b"X-Correlation-Id: clean-after-hostile\r\n")
    assert status == 200
    assert b'"correlation_id":"clean-after-hostile"' in reply.replace(b" ", b"")
