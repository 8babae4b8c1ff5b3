"""ddtrace ``tracer.wrap()`` as a peer, when it is installed: per call, sync functions.

Runs offline: no agent listens, so finished traces are encoded and their sending fails
(ddtrace logs "failed to send"); telemetry and remote configuration are switched off so the
tracer makes no other network attempts. The tracer is imported only here, inside a module
fixture, and shut down (its writer stopped) before the next benchmark module runs: its
threads would otherwise count in the process CPU time of later benchmarks. Same group as
``test_peers.py`` (``peers``), measured at another moment of the run: compare with caution.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from kit import call_loop

CALLS = 200

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ddtrace") is None, reason="ddtrace is not installed"
)

_OFFLINE = {
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_TRACE_STARTUP_LOGS": "false",
}


def work(x: int) -> int:
    return x


@pytest.fixture(scope="module")
def ddtracer() -> Iterator[Any]:
    for name, value in _OFFLINE.items():
        os.environ.setdefault(name, value)
    from ddtrace.trace import tracer

    try:
        yield tracer
    finally:
        tracer.shutdown(timeout=2)


@pytest.mark.benchmark(group="peers")
@pytest.mark.variants("ddtrace")
def test_peers_ddtrace(bench: Any, ddtracer: Any, variant: str) -> None:
    import ddtrace

    func = ddtracer.wrap("op")(work)
    assert func(1) == 1
    bench.per_call(call_loop(func, CALLS), CALLS, peer_version=ddtrace.__version__)
