"""Outbound propagation for httpx and requests: only to allowed destinations, redirects too."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import requests
from requests.adapters import BaseAdapter

from flext_ctx_aspects import FlextContext
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.integrations.httpx import (
    async_request_hook,
    instrument_client,
    request_hook,
)
from flext_ctx_aspects.integrations.requests import ContextAdapter, instrument_session
from flext_ctx_aspects.propagation import reset_refusal_warnings, set_allowed_destinations

PROPAGATION = ("x-correlation-id", "traceparent", "x-service-name")


@pytest.fixture(autouse=True)
def _log_every_refusal() -> None:
    # Refusals are logged once per host per 10 s, process-wide: start each test afresh.
    reset_refusal_warnings()


def echo_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers 200, except /redirect-out, which redirects to a third party."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/redirect-out":
            return httpx.Response(302, headers={"Location": "https://third-party.example/land"})
        return httpx.Response(200)

    return httpx.MockTransport(handler)


def carried(request: httpx.Request) -> dict[str, str]:
    return {name: request.headers[name] for name in PROPAGATION if name in request.headers}


def test_sync_client_propagates_only_to_allowed_hosts() -> None:
    seen: list[httpx.Request] = []
    client = instrument_client(
        httpx.Client(transport=echo_transport(seen)), allowed_destinations=["*.internal"]
    )
    with (
        client,
        FlextContext.Correlation.new_correlation() as correlation_id,
        FlextContext.Service.service_context("caller"),
    ):
        client.get("https://orders.internal/api")
        client.get("https://example.com/")
        client.get("https://internal/")  # "*.internal" means subdomains only
    inside, outside, apex = seen
    assert carried(inside)["x-correlation-id"] == correlation_id
    assert carried(inside)["x-service-name"] == "caller"
    assert carried(inside)["traceparent"].split("-")[1] == correlation_id
    assert carried(outside) == {}
    assert carried(apex) == {}


def test_redirect_to_a_third_party_strips_the_context() -> None:
    seen: list[httpx.Request] = []
    client = instrument_client(
        httpx.Client(transport=echo_transport(seen), follow_redirects=True),
        allowed_destinations=["api.internal"],
    )
    with client, FlextContext.Correlation.new_correlation():
        client.get("https://api.internal/redirect-out")
    first, redirected = seen
    assert redirected.url.host == "third-party.example"
    assert "x-correlation-id" in first.headers
    assert carried(redirected) == {}  # httpx copied them; the hook removed them


def test_context_headers_set_by_hand_are_removed_for_unlisted_hosts() -> None:
    seen: list[httpx.Request] = []
    client = instrument_client(
        httpx.Client(transport=echo_transport(seen)), allowed_destinations=["api.internal"]
    )
    with client:
        client.get("https://example.com/", headers={"X-Correlation-Id": "hand-made"})
    assert carried(seen[0]) == {}


def test_process_wide_allowlist_and_deny_by_default(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(transport=echo_transport(seen)) as client:
        instrument_client(client)
        with FlextContext.Correlation.new_correlation():
            client.get("https://api.internal/")  # no allowlist anywhere: nothing is sent
            with set_allowed_destinations(["https://api.internal"]):
                client.get("https://api.internal/")
                client.get("http://api.internal/")  # scheme not allowed
    assert [bool(carried(r)) for r in seen] == [False, True, False]
    refusals = [r.getMessage() for r in caplog.records if "not propagated" in r.getMessage()]
    assert refusals
    assert "api.internal" in refusals[0]


def test_async_client_propagates_in_each_tasks_own_context() -> None:
    seen: list[httpx.Request] = []

    async def scenario() -> None:
        async with instrument_client(
            httpx.AsyncClient(transport=echo_transport(seen)),
            allowed_destinations=["api.internal"],
        ) as client:

            async def call(number: int) -> None:
                with FlextContext.Correlation.new_correlation(f"task-{number}"):
                    await asyncio.sleep(0)
                    await client.get(f"https://api.internal/{number}")

            await asyncio.gather(*(call(n) for n in range(20)))

    asyncio.run(scenario())
    assert {r.url.path: r.headers["x-correlation-id"] for r in seen} == {
        f"/{n}": f"task-{n}" for n in range(20)
    }


def test_hooks_can_be_passed_at_client_construction() -> None:
    seen: list[httpx.Request] = []
    hook = request_hook(allowed_destinations=["api.internal"], formats=["b3"])
    with (
        httpx.Client(transport=echo_transport(seen), event_hooks={"request": [hook]}) as client,
        FlextContext.Correlation.new_correlation(),
    ):
        client.get("https://api.internal/")
    assert "b3" in seen[0].headers
    assert "traceparent" not in seen[0].headers

    async def scenario() -> None:
        async_hook = async_request_hook(allowed_destinations=["api.internal"])
        async with httpx.AsyncClient(
            transport=echo_transport(seen), event_hooks={"request": [async_hook]}
        ) as client:
            with FlextContext.Correlation.new_correlation("async-hook"):
                await client.get("https://api.internal/")

    asyncio.run(scenario())
    assert seen[1].headers["x-correlation-id"] == "async-hook"


def test_bad_patterns_and_formats_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"`allowed_destinations` in request_hook\(\)"):
        request_hook(allowed_destinations=["https://api.internal/path"])
    with pytest.raises(ConfigError, match="formats"):
        request_hook(formats=["jaeger"])
    with pytest.raises(ConfigError):
        ContextAdapter(allowed_destinations="api.internal")  # a str, not a list


class FakeAdapter(BaseAdapter):
    """Records the requests; answers 200 or a redirect to a third party."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.closed = False

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        if request.url and request.url.endswith("/redirect-out"):
            response.status_code = 302
            response.headers["Location"] = "https://third-party.example/land"
        else:
            response.status_code = 200
        response._content = b""
        return response

    def close(self) -> None:
        self.closed = True


def test_requests_session_propagates_only_to_allowed_hosts_and_strips_on_redirect() -> None:
    fake = FakeAdapter()
    session = requests.Session()
    session.mount("https://", fake)
    instrument_session(session, allowed_destinations=["api.internal"])
    with FlextContext.Correlation.new_correlation() as correlation_id:
        session.get("https://api.internal/x")
        session.get("https://example.com/")
        session.get("https://api.internal/redirect-out")
    inside, outside, first_hop, redirected = fake.sent
    assert inside.headers["X-Correlation-Id"] == correlation_id
    assert "traceparent" in inside.headers
    assert "X-Correlation-Id" not in outside.headers
    assert first_hop.headers["X-Correlation-Id"] == correlation_id
    assert redirected.url == "https://third-party.example/land"
    assert not any(name.lower() in PROPAGATION for name in redirected.headers)
    session.close()
    assert fake.closed


def test_instrument_session_keeps_existing_adapters_and_is_idempotent() -> None:
    session = requests.Session()
    original = session.get_adapter("https://x")
    instrument_session(session, allowed_destinations=["*"])
    instrument_session(session, allowed_destinations=["*"])
    adapter = session.get_adapter("https://x")
    assert isinstance(adapter, ContextAdapter)
    assert adapter.wrapped is original


def test_refused_destination_is_logged_without_unprintable_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    fake = FakeAdapter()
    session = requests.Session()
    session.mount("https://", ContextAdapter(fake, allowed_destinations=["api.internal"]))
    with FlextContext.Correlation.new_correlation():
        session.get("https://evil.example/")
    assert any("evil.example" in r.getMessage() for r in caplog.records)
