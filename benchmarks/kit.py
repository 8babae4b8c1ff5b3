"""What the benchmarks decorate, and the loops that call it.

``ASPECTS`` maps the variant ids used in every test id (``test_sync[timed]``, ...) to the
decorator under test; ``fused`` is the four-aspect stack of the issue::

    @with_correlation
    @service("svc", "1")
    @timed
    @request_scope(user_id="u")

Loops run ``calls`` operations per round; the per-call normalisation happens downstream
(``extra_info["calls_per_round"]``). A loop whose subject appends records (a floor, a
collecting sink) empties its list at the end of each round, so memory stays flat and the
cost of dropping the records is paid, as it would be in a real program.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flext_ctx_aspects import request_scope, service, timed, with_correlation

SERVICE_NAME = "svc"
SERVICE_VERSION = "1"
USER_ID = "u"


def fused(func: Any) -> Any:
    """The four-aspect stack, as users write it (the library fuses it into one layer)."""
    return with_correlation(service(SERVICE_NAME, SERVICE_VERSION)(timed(request_scope(
        user_id=USER_ID)(func))))  # fmt: skip


ASPECTS: dict[str, Callable[[Any], Any]] = {
    "with_correlation": with_correlation,
    "service": service(SERVICE_NAME, SERVICE_VERSION),
    "timed": timed,
    "request_scope": request_scope(user_id=USER_ID),
    "fused": fused,
}


def call_loop(func: Callable[[int], object], calls: int, out: list[Any] | None = None) -> Any:
    """Return a round: ``calls`` calls of ``func(1)`` (then ``out.clear()``)."""
    times = range(calls)
    if out is None:

        def loop() -> None:
            for _ in times:
                func(1)

        return loop
    clear = out.clear

    def loop_and_clear() -> None:
        for _ in times:
            func(1)
        clear()

    return loop_and_clear


class CollectingSink:
    """The cheapest possible collecting sink: ``emit`` is a list's ``append``."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.emit = self.records.append


class EventLoop:
    """One event loop per benchmark: every round runs inside it (``run_until_complete``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def await_loop(
        self, func: Callable[[int], Any], calls: int, out: list[Any] | None = None
    ) -> Callable[[], None]:
        """Return a round: one coroutine awaiting ``func(1)`` ``calls`` times."""
        times = range(calls)
        clear = out.clear if out is not None else None

        async def many() -> None:
            for _ in times:
                await func(1)

        run = self.loop.run_until_complete

        def loop() -> None:
            run(many())
            if clear is not None:
                clear()

        return loop

    def run(self, factory: Callable[[], Any]) -> Callable[[], None]:
        """Return a round: run the coroutine ``factory()`` to completion."""
        run = self.loop.run_until_complete

        def loop() -> None:
            run(factory())

        return loop

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
