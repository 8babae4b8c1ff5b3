"""Integrations with web frameworks, HTTP clients and message queues (optional extras).

Import the module you need; none is imported here, and the core never imports the
libraries they integrate:

* `flext_ctx_aspects.integrations.asgi` — pure ASGI middleware (FastAPI, Starlette, any
  ASGI app); no dependency.
* `flext_ctx_aspects.integrations.wsgi` — WSGI middleware (Flask, Django, any WSGI app);
  no dependency.
* `flext_ctx_aspects.integrations.httpx` — outbound propagation for ``httpx`` clients
  (extra ``httpx``).
* `flext_ctx_aspects.integrations.requests` — outbound propagation for ``requests``
  sessions (extra ``requests``).
* `flext_ctx_aspects.integrations.messaging` — message headers on publish and a fresh
  scope on consume (Celery, Kafka, AMQP...); no dependency.
* `flext_ctx_aspects.integrations.opentelemetry` — records as OpenTelemetry spans, one
  trace with OpenTelemetry instrumentations (extra ``otel``).
"""

from __future__ import annotations

__all__: list[str] = []
