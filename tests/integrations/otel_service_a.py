"""Service A for the ``opentelemetry-instrument`` test: run under OTel's auto-instrumentation.

Usage: ``opentelemetry-instrument python otel_service_a.py B_URL``. Starts the ``ctx_servers``
service A (our middleware, an ``instrument_client`` httpx client) with the bridge on the
provider OpenTelemetry's distro configured, prints its URL, and serves until stdin closes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ctx_servers import asgi_service_a, uvicorn_server

from flext_ctx_aspects.integrations.opentelemetry import enable_opentelemetry


def main() -> None:
    bridge = enable_opentelemetry(settle_s=0.05)
    with uvicorn_server(asgi_service_a(sys.argv[1]), lifespan="on") as url:
        print(url, flush=True)
        sys.stdin.read()
    bridge()


if __name__ == "__main__":
    main()
