"""examples/two_services.py runs, in its own process, and finds one trace across two services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_services.py"


@pytest.mark.network
def test_two_services_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "one correlation id and one trace across both services: yes" in out
    assert "frontend" in out
    assert "inventory" in out
    assert "inventory.lookup" in out  # the @timed function inside service B, in the same trace


def test_core_imports_no_optional_dependency() -> None:
    """Importing the library, its propagation, concurrency and the dependency-free
    integrations never imports starlette, httpx, requests or flask."""
    code = (
        "import sys\n"
        "import flext_ctx_aspects, flext_ctx_aspects.propagation, flext_ctx_aspects.concurrency\n"
        "import flext_ctx_aspects.integrations, flext_ctx_aspects.integrations.asgi\n"
        "import flext_ctx_aspects.integrations.wsgi, flext_ctx_aspects.integrations.messaging\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(loaded & {'starlette', 'httpx', 'requests', 'flask', 'uvicorn'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
