"""Two real uvicorn services on 127.0.0.1: A calls B with httpx; the context crosses both hops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from ctx_servers import (
    asgi_service_a,
    asgi_service_b,
    trace_of,
    uvicorn_server,
    wait_for_records,
)

from flext_ctx_aspects.testing import capture_operations

pytestmark = pytest.mark.network

INBOUND_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INBOUND_TRACEPARENT = f"00-{INBOUND_TRACE}-00f067aa0ba902b7-01"
TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    with (
        uvicorn_server(asgi_service_b()) as b_url,
        uvicorn_server(asgi_service_a(b_url), lifespan="on") as a_url,
    ):
        yield a_url, b_url


def test_correlation_and_trace_cross_both_hops(services: tuple[str, str]) -> None:
    a_url, _ = services
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(
            f"{a_url}/call",
            headers={"X-Correlation-Id": "client-corr-1", "traceparent": INBOUND_TRACEPARENT},
        )
        found = wait_for_records(ops, lambda op: op.correlation_id == "client-corr-1", 2)
    assert response.status_code == 200
    assert response.headers["X-Correlation-Id"] == "client-corr-1"
    a, b = response.json()["a"], response.json()["b"]
    assert a["correlation_id"] == b["correlation_id"] == "client-corr-1"
    assert a["service_name"] == "service-a"
    assert b["service_name"] == "service-b"  # B's own identity, not the caller's header
    # Trace Context §3.2.2.3: the trace-id is kept across hops; each hop is a new parent-id.
    assert trace_of(b["traceparent_in"]) == INBOUND_TRACE
    assert trace_of(a["outbound"]["traceparent"]) == INBOUND_TRACE
    assert trace_of(b["outbound"]["traceparent"]) == INBOUND_TRACE
    assert b["traceparent_in"].split("-")[2] != "00f067aa0ba902b7"
    assert b["outbound"]["traceparent"].split("-")[2] != b["traceparent_in"].split("-")[2]
    assert a["request_id"] == b["request_id"] is not None  # X-Request-Id travels with A's call

    by_service = {op.service_name: op for op in found}
    assert set(by_service) == {"service-a", "service-b"}
    rec_a, rec_b = by_service["service-a"], by_service["service-b"]
    assert rec_a.trace_id == rec_b.trace_id == INBOUND_TRACE
    assert rec_a.correlation_id == rec_b.correlation_id == "client-corr-1"
    assert rec_a.metadata["http.status_code"] == rec_b.metadata["http.status_code"] == 200
    assert rec_a.metadata["http.path"] == "/call"
    assert rec_a.metadata["downstream_status"] == 200
    assert rec_b.metadata["handled_by"] == "service-b"
    assert rec_a.status == rec_b.status == "ok"
    # B's request ran inside A's: its record finished first and took less time.
    assert rec_b.duration_ns <= rec_a.duration_ns


def test_root_request_starts_a_trace_that_both_services_share(services: tuple[str, str]) -> None:
    a_url, _ = services
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(f"{a_url}/call")
        body = response.json()
        correlation_id = response.headers["X-Correlation-Id"]
        found = wait_for_records(ops, lambda op: op.correlation_id == correlation_id, 2)
    assert body["a"]["correlation_id"] == body["b"]["correlation_id"] == correlation_id
    trace = trace_of(body["b"]["traceparent_in"])
    assert {op.trace_id for op in found} == {trace}
    assert {op.service_name for op in found} == {"service-a", "service-b"}


def test_unlisted_destination_receives_no_context(services: tuple[str, str]) -> None:
    a_url, _ = services
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(f"{a_url}/call-unlisted", headers={"X-Correlation-Id": "secret-1"})
    body = response.json()
    assert body["a"]["correlation_id"] == "secret-1"
    assert body["b"]["correlation_id"] != "secret-1"  # B started its own: nothing was sent
    assert body["b"]["traceparent_in"] is None


def test_200_concurrent_requests_without_cross_talk(services: tuple[str, str]) -> None:
    a_url, _ = services

    async def one(client: httpx.AsyncClient, number: int) -> tuple[int, httpx.Response]:
        return number, await client.get(
            f"{a_url}/call",
            headers={"X-Correlation-Id": f"conc-{number}", "X-Request-Id": f"req-{number}"},
        )

    async def run_all() -> list[tuple[int, httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
            return await asyncio.gather(*(one(client, n) for n in range(200)))

    with capture_operations() as ops:
        results = asyncio.run(run_all())
        requests_ = wait_for_records(
            ops, lambda op: (op.correlation_id or "").startswith("conc-"), 400
        )
    traces: set[str] = set()
    for number, response in results:
        assert response.status_code == 200
        assert response.headers["X-Correlation-Id"] == f"conc-{number}"
        a, b = response.json()["a"], response.json()["b"]
        assert a["correlation_id"] == b["correlation_id"] == f"conc-{number}"
        assert a["request_id"] == f"req-{number}"
        assert b["outbound"]["X-Correlation-Id"] == f"conc-{number}"
        assert trace_of(a["outbound"]["traceparent"]) == trace_of(b["traceparent_in"])
        traces.add(trace_of(b["traceparent_in"]))
    assert len(traces) == 200  # one trace per request, none shared
    per_correlation: dict[str, set[str | None]] = {}
    for op in requests_:
        per_correlation.setdefault(op.correlation_id or "", set()).add(op.service_name)
    assert all(services_ == {"service-a", "service-b"} for services_ in per_correlation.values())
    assert len(per_correlation) == 200


def test_keep_alive_connection_never_leaks_the_previous_request(
    services: tuple[str, str],
) -> None:
    _, b_url = services
    with httpx.Client(timeout=TIMEOUT) as client:
        first = client.get(
            f"{b_url}/work",
            headers={
                "X-Correlation-Id": "first-request",
                "X-Request-Id": "first-req",
                "X-Operation-Name": "first-op",
                "traceparent": INBOUND_TRACEPARENT,
                "baggage": "first_member=1",
            },
        ).json()
        second = client.get(f"{b_url}/work").json()
        third = client.get(f"{b_url}/work", headers={"X-Correlation-Id": "third"}).json()
    assert first["client_port"] == second["client_port"] == third["client_port"]  # one connection
    assert first["correlation_id"] == "first-request"
    assert first["baggage"] == {"first_member": "1"}
    assert second["correlation_id"] not in (None, "first-request")
    assert second["request_id"] not in (None, "first-req")
    assert second["baggage"] == {}
    assert second["traceparent_in"] is None
    assert trace_of(second["outbound"]["traceparent"]) != INBOUND_TRACE
    assert "X-Operation-Name" not in second["outbound"]
    assert third["correlation_id"] == "third"


def test_handler_error_is_recorded_with_status_500(services: tuple[str, str]) -> None:
    _, b_url = services
    with capture_operations() as ops, httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(f"{b_url}/boom", headers={"X-Correlation-Id": "boom-1"})
        (record,) = wait_for_records(ops, lambda op: op.correlation_id == "boom-1", 1)
    assert response.status_code == 500
    assert record.status == "error"
    assert record.error_type == "RuntimeError"
    assert record.metadata["http.status_code"] == 500


def test_requests_session_propagates_to_the_allowlisted_server(services: tuple[str, str]) -> None:
    import requests

    from flext_ctx_aspects import FlextContext
    from flext_ctx_aspects.integrations.requests import instrument_session

    _, b_url = services
    session = instrument_session(
        requests.Session(), allowed_destinations=[b_url.removeprefix("http://")]
    )
    with session, FlextContext.Correlation.new_correlation() as correlation_id:
        body = session.get(f"{b_url}/work", timeout=20).json()
    assert body["correlation_id"] == correlation_id
    assert body["traceparent_in"] is not None
