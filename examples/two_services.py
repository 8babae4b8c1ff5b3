"""Two services, one trace: context propagation over real HTTP.

``frontend`` (service A) receives a request and calls ``inventory`` (service B) with httpx.
Both are Starlette apps behind ``FlextContextMiddleware``, served by uvicorn on 127.0.0.1
(ephemeral ports, in threads of this process). The client sends no context: the frontend
starts a correlation id and a W3C trace, and both cross to the inventory service.

Run it (needs the ``asgi`` and ``httpx`` extras and uvicorn)::

    python examples/two_services.py

It prints what each service saw and the operation records of both, and exits 1 if the two
hops do not share the correlation id and the trace.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flext_ctx_aspects import FlextContext, timed
from flext_ctx_aspects.integrations.asgi import FlextContextMiddleware
from flext_ctx_aspects.integrations.httpx import instrument_client
from flext_ctx_aspects.testing import capture_operations


def what_i_see() -> dict[str, Any]:
    """The context a handler runs in, and the headers it would send downstream."""
    headers = FlextContext.Serialization.get_correlation_context()
    return {
        "service": FlextContext.Service.get_service_name(),
        "correlation_id": FlextContext.Correlation.get_correlation_id(),
        "request_id": FlextContext.Request.get_request_id(),
        "trace_id": headers["traceparent"].split("-")[1],
    }


# --- service B: inventory ---------------------------------------------------------------------


@timed(name="inventory.lookup")
def lookup(sku: str) -> int:
    """Pretend to read a stock level."""
    return sum(map(ord, sku)) % 17


async def stock(request: Request) -> JSONResponse:
    """GET /stock/{sku}."""
    sku = request.path_params["sku"]
    return JSONResponse({"sku": sku, "stock": lookup(sku), "seen": what_i_see()})


inventory = FlextContextMiddleware(
    Starlette(routes=[Route("/stock/{sku}", stock)]),
    service_name="inventory",
    service_version="1.4",
)


# --- service A: frontend ----------------------------------------------------------------------


def make_frontend(inventory_url: str) -> FlextContextMiddleware:
    """The frontend calls the inventory service, and only it gets the context."""
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        host = inventory_url.removeprefix("http://")
        state["client"] = instrument_client(httpx.AsyncClient(), allowed_destinations=[host])
        yield
        await state["client"].aclose()

    async def product(request: Request) -> JSONResponse:
        sku = request.path_params["sku"]
        reply = (await state["client"].get(f"{inventory_url}/stock/{sku}")).json()
        FlextContext.Performance.add_operation_metadata("in_stock", reply["stock"] > 0)
        return JSONResponse({"sku": sku, "seen": what_i_see(), "inventory": reply})

    app = Starlette(routes=[Route("/product/{sku}", product)], lifespan=lifespan)
    return FlextContextMiddleware(app, service_name="frontend", service_version="2.0")


# --- running the two servers ------------------------------------------------------------------


@contextlib.contextmanager
def serve(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Serve ``app`` with uvicorn on an ephemeral 127.0.0.1 port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main() -> int:
    """Start both services, send one request, show and check what crossed."""
    with (
        serve(inventory) as inventory_url,
        serve(make_frontend(inventory_url), lifespan="on") as frontend_url,
        capture_operations() as records,
    ):
        reply = httpx.get(f"{frontend_url}/product/SKU-42", timeout=10)
        echoed = reply.headers["X-Correlation-Id"]
        deadline = time.monotonic() + 5
        while len([r for r in records if r.name == "HTTP GET"]) < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    body = reply.json()
    frontend, backend = body["seen"], body["inventory"]["seen"]
    print(f"client got {reply.status_code}, X-Correlation-Id: {echoed}")
    for seen in (frontend, backend):
        print(
            f"  {seen['service']:<9} correlation={seen['correlation_id']} "
            f"trace={seen['trace_id']} request={seen['request_id']}"
        )
    print("operation records:")
    for record in records:
        print(
            f"  {record.service_name:<9} {record.name:<16} {record.duration_ns / 1e6:7.2f} ms "
            f"trace={record.trace_id} status={record.metadata.get('http.status_code', '-')}"
        )
    same_correlation = frontend["correlation_id"] == backend["correlation_id"] == echoed
    traces = {seen["trace_id"] for seen in (frontend, backend)} | {r.trace_id for r in records}
    ok = reply.status_code == 200 and same_correlation and len(traces) == 1
    print("one correlation id and one trace across both services:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
