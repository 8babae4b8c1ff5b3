"""The peers side by side with the library, in the same run: per call.

Sync (group ``peers``) and coroutine (group ``peers-async``) functions. The library's
variants: ``timed``; ``corr_timed`` (``@with_correlation @timed``: a new id with parent
tracking and a timing, the work of a span); ``fused`` (the four-aspect stack). The peers are
described in ``peers.py``. ddtrace is measured in ``test_peers_ddtrace.py`` when installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from flext_ctx_aspects import timed, with_correlation
from kit import ASPECTS, call_loop
from peers import PEERS, Clearing

CALLS = 1000
PEER_CALLS = 200

OURS: dict[str, Any] = {
    "timed": ASPECTS["timed"],
    "corr_timed": lambda func: with_correlation(timed(func)),
    "fused": ASPECTS["fused"],
}


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


def _subject(variant: str, func: Any) -> tuple[Any, Any]:
    if variant == "bare":
        return func, None
    if variant in OURS:
        return OURS[variant](func), None
    peer = PEERS[variant]()
    return peer.decorate(func), (Clearing(peer.out) if peer.out is not None else None)


def _calls(variant: str) -> int:
    # The peers cost 5-50 us per call: fewer calls keep their rounds (and the companion
    # rounds run before each round of ours) a few milliseconds long.
    return CALLS if variant in {"bare", *OURS} else PEER_CALLS


@pytest.mark.benchmark(group="peers")
@pytest.mark.variants(
    "bare", "timed", "otel_sdk", "corr_timed", "fused", "otel_sdk_inmemory", "otel_noop",
    "structlog",
)  # fmt: skip
def test_peers(bench: Any, variant: str) -> None:
    def build(variant: str) -> tuple[Any, int]:
        func, out = _subject(variant, work)
        assert func(1) == 1
        return call_loop(func, _calls(variant), out), _calls(variant)

    bench.measure(variant, build)


@pytest.mark.benchmark(group="peers-async")
@pytest.mark.variants(
    "bare", "timed", "otel_sdk", "corr_timed", "fused", "otel_sdk_inmemory", "otel_noop"
)  # fmt: skip
def test_peers_async(bench: Any, aloop: Any, variant: str) -> None:
    def build(variant: str) -> tuple[Any, int]:
        func, out = _subject(variant, awork)
        assert aloop.loop.run_until_complete(func(1)) == 1
        return aloop.await_loop(func, _calls(variant), out), _calls(variant)

    bench.measure(variant, build)
