"""Orders: coroutines and an async generator, many orders at once in asyncio tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from shop.catalog import Catalog
from shop.pricing import line_prices


async def reserve(sku: str, quantity: int) -> bool:
    await asyncio.sleep(0)
    return quantity <= 20


async def confirmations(order_id: int, lines: list[tuple[str, int]]) -> AsyncIterator[str]:
    for sku, quantity in lines:
        if await reserve(sku, quantity):
            yield f"order {order_id}: {quantity} x {sku} reserved"


async def place_order(catalog: Catalog, order_id: int, lines: list[tuple[str, int]]) -> int:
    async for _ in confirmations(order_id, lines):
        pass
    return sum(line_prices(catalog, lines))


async def place_orders(catalog: Catalog, orders: list[list[tuple[str, int]]]) -> list[int]:
    return list(
        await asyncio.gather(*(place_order(catalog, i, lines) for i, lines in enumerate(orders)))
    )
