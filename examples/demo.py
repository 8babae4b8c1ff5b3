"""A small order service instrumented with flext_ctx_aspects, and its report.

Run: ``python examples/demo.py`` (after ``pip install .``). It places a few hundred orders
through sync functions, coroutines, a generator and an async generator, concurrently in
asyncio tasks and in worker threads, then prints per-operation statistics and one order's
trace: every operation of it, with its correlation id and parent.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
from collections.abc import AsyncIterator, Iterator

from flext_ctx_aspects import FlextContext, arg, request_scope, service, timed, with_correlation
from flext_ctx_aspects.records import OperationRecord
from flext_ctx_aspects.sinks import StatsSink, add_sink
from flext_ctx_aspects.testing import RecordingSink

rng = random.Random(7)


# --- the application ---------------------------------------------------------------------


@timed
@with_correlation
def price(sku: str, quantity: int) -> int:
    FlextContext.Performance.add_operation_metadata("sku", sku)
    return (sum(map(ord, sku)) % 90 + 10) * quantity


@timed
def stock_levels(skus: list[str]) -> Iterator[tuple[str, int]]:
    for sku in skus:
        yield sku, rng.randint(0, 20)


@timed
@with_correlation
async def reserve(sku: str, quantity: int) -> bool:
    await asyncio.sleep(0.0005)
    return quantity <= 15


@timed
async def notifications(order_id: str) -> AsyncIterator[str]:
    for channel in ("email", "sms"):
        await asyncio.sleep(0)
        yield f"{channel}:{order_id}"


@service("orders", version="1.0.0", environment="demo")
@request_scope(user_id=arg("customer"), metadata={"channel": "web"})
@with_correlation
@timed
async def place_order(customer: str, items: dict[str, int]) -> dict[str, object]:
    levels = dict(stock_levels(list(items)))
    total = 0
    for sku, quantity in items.items():
        if levels[sku] < quantity or not await reserve(sku, quantity):
            raise RuntimeError(f"{sku} out of stock")
        total += price(sku, quantity)
    sent = [message async for message in notifications(FlextContext.Request.get_request_id() or "")]
    return {"total": total, "sent": sent}


@service("reports", version="1.0.0", environment="demo")
@with_correlation
@timed
def nightly_report(day: int) -> int:
    return sum(price(f"SKU-{day}-{n}", 1) for n in range(20))


# --- the run -----------------------------------------------------------------------------


async def shop(orders: int) -> tuple[int, int]:
    async def one(index: int) -> bool:
        items = {f"SKU-{rng.randint(1, 9)}": rng.randint(1, 8) for _ in range(rng.randint(1, 3))}
        try:
            await place_order(f"customer-{index % 17}", items)
        except RuntimeError:
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(orders)))
    return results.count(True), results.count(False)


def main() -> int:
    stats = StatsSink()
    recorder = RecordingSink()
    with add_sink(stats), add_sink(recorder):
        placed, refused = asyncio.run(shop(300))
        workers = [threading.Thread(target=nightly_report, args=(day,)) for day in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    print(f"orders placed: {placed}, refused (out of stock): {refused}\n")
    print(f"{'operation':<28}{'count':>7}{'errors':>8}{'p50 µs':>10}{'p99 µs':>10}{'max µs':>10}")
    for op in stats.snapshot():
        short = op.name.removeprefix("__main__.")
        print(
            f"{short:<28}{op.count:>7}{op.errors:>8}"
            f"{op.p50_ns / 1e3:>10.1f}{op.p99_ns / 1e3:>10.1f}{op.max_ns / 1e3:>10.1f}"
        )

    print("\none order, operation by operation:")
    order = next(r for r in recorder.records if r.name.endswith("place_order") and r.ok)
    trace = sorted(
        (r for r in recorder.records if r.trace_id == order.trace_id), key=lambda r: r.start_time_ns
    )
    # The first operation of a correlation id owns it; others with that id run inside it.
    owners: dict[str | None, OperationRecord] = {}
    for record in trace:
        owners.setdefault(record.correlation_id, record)

    def depth_of(record: OperationRecord) -> int:
        depth = 0 if owners[record.correlation_id] is record else 1
        parent = record.parent_correlation_id
        while parent in owners:
            depth += 1
            parent = owners[parent].parent_correlation_id
        return depth

    for record in trace:
        print(
            f"  {'  ' * depth_of(record)}{record.name.removeprefix('__main__.'):<24} "
            f"correlation={(record.correlation_id or '-')[:8]}  "
            f"service={record.service_name}  user={record.user_id}  "
            f"{record.duration_ns / 1e3:.1f} µs"
        )
    print("\nreport JSON:", json.dumps(stats.report())[:160], "...")
    assert FlextContext.Correlation.get_correlation_id() is None  # nothing leaked
    return 0


if __name__ == "__main__":
    sys.exit(main())
