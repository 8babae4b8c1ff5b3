"""Two real Flask services under waitress on 127.0.0.1: A calls B with a sync httpx.Client.

Waitress reuses a small pool of threads for every request: these tests would catch any
context left on a worker thread by a previous request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from ctx_servers import (
    trace_of,
    wait_for_records,
    waitress_server,
    wsgi_service_a,
    wsgi_service_b,
)

from flext_ctx_aspects.integrations.httpx import instrument_client
from flext_ctx_aspects.testing import capture_operations

pytestmark = pytest.mark.network

INBOUND_TRACE = "0af7651916cd43dd8448eb211c80319c"
INBOUND_TRACEPARENT = f"00-{INBOUND_TRACE}-b7ad6b7169203331-00"
TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    with waitress_server(wsgi_service_b(), threads=8) as b_url:
        client = instrument_client(
            httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=32)),
            allowed_destinations=[b_url.removeprefix("http://")],
        )
        with client, waitress_server(wsgi_service_a(b_url, client), threads=16) as a_url:
            yield a_url, b_url


def test_correlation_and_trace_cross_both_hops(services: tuple[str, str]) -> None:
    a_url, _ = services
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(
            f"{a_url}/call",
            headers={"X-Correlation-Id": "wsgi-corr-1", "traceparent": INBOUND_TRACEPARENT},
        )
        found = wait_for_records(ops, lambda op: op.correlation_id == "wsgi-corr-1", 2)
    assert response.status_code == 200
    assert response.headers["X-Correlation-Id"] == "wsgi-corr-1"
    a, b = response.json()["a"], response.json()["b"]
    assert a["correlation_id"] == b["correlation_id"] == "wsgi-corr-1"
    assert (a["service_name"], b["service_name"]) == ("service-a", "service-b")
    assert trace_of(b["traceparent_in"]) == INBOUND_TRACE
    # Trace Context §3.2.2.5.1: the sampled flag received (here 00: not sampled) is kept.
    assert b["traceparent_in"].endswith("-00")
    assert b["outbound"]["traceparent"].endswith("-00")
    records = {op.service_name: op for op in found}
    assert set(records) == {"service-a", "service-b"}
    assert records["service-a"].trace_id == records["service-b"].trace_id == INBOUND_TRACE
    assert records["service-a"].metadata["http.status_code"] == 200
    assert records["service-b"].metadata["handled_by"] == "service-b"
    assert records["service-a"].metadata["downstream_status"] == 200


def test_200_concurrent_requests_without_cross_talk(services: tuple[str, str]) -> None:
    a_url, _ = services

    async def one(client: httpx.AsyncClient, number: int) -> tuple[int, httpx.Response]:
        return number, await client.get(
            f"{a_url}/call", headers={"X-Correlation-Id": f"wsgi-{number}"}
        )

    async def run_all() -> list[tuple[int, httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
            return await asyncio.gather(*(one(client, n) for n in range(200)))

    with capture_operations() as ops:
        results = asyncio.run(run_all())
        found = wait_for_records(ops, lambda op: (op.correlation_id or "").startswith("wsgi-"), 400)
    for number, response in results:
        assert response.status_code == 200
        assert response.headers["X-Correlation-Id"] == f"wsgi-{number}"
        a, b = response.json()["a"], response.json()["b"]
        assert a["correlation_id"] == b["correlation_id"] == f"wsgi-{number}"
        assert trace_of(a["outbound"]["traceparent"]) == trace_of(b["traceparent_in"])
    by_correlation: dict[str, set[str | None]] = {}
    for op in found:
        by_correlation.setdefault(op.correlation_id or "", set()).add(op.service_name)
    assert len(by_correlation) == 200
    assert all(names == {"service-a", "service-b"} for names in by_correlation.values())


def test_keep_alive_connection_never_leaks_the_previous_request(
    services: tuple[str, str],
) -> None:
    _, b_url = services
    with httpx.Client(timeout=TIMEOUT) as client:
        first = client.get(
            f"{b_url}/work",
            headers={
                "X-Correlation-Id": "first-wsgi",
                "X-Request-Id": "first-req",
                "traceparent": INBOUND_TRACEPARENT,
                "baggage": "member=1",
            },
        ).json()
        later = [client.get(f"{b_url}/work").json() for _ in range(20)]
    assert first["correlation_id"] == "first-wsgi"
    assert {r["client_port"] for r in [first, *later]} == {first["client_port"]}
    for report in later:
        assert report["correlation_id"] not in (None, "first-wsgi")
        assert report["request_id"] not in (None, "first-req")
        assert report["baggage"] == {}
        assert report["traceparent_in"] is None
        assert trace_of(report["outbound"]["traceparent"]) != INBOUND_TRACE
    assert len({r["correlation_id"] for r in later}) == 20


def test_handler_error_is_recorded_with_status_500(services: tuple[str, str]) -> None:
    _, b_url = services
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(f"{b_url}/boom", headers={"X-Correlation-Id": "wsgi-boom"})
        (record,) = wait_for_records(ops, lambda op: op.correlation_id == "wsgi-boom", 1)
    assert response.status_code == 500
    # Flask turns the exception into a 500 response itself: the middleware sees the status.
    assert record.metadata["http.status_code"] == 500
