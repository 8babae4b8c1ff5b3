"""The shop demo's entry point: orders in asyncio tasks, invoices in a process pool.

Instrumented only by ``examples/shop.toml`` under ``flext-ctx run``; run plainly
(``python examples/shop_demo.py``) it does exactly the same, uninstrumented.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random

from shop.catalog import Catalog, sku_for
from shop.orders import place_orders
from shop.reports import daily_total, invoice_number


def main() -> None:
    rng = random.Random(7)
    catalog = Catalog.sample(50)
    orders = [
        [(sku_for(rng.randrange(50)), rng.randint(1, 25)) for _ in range(rng.randint(1, 4))]
        for _ in range(200)
    ]
    totals = asyncio.run(place_orders(catalog, orders))
    # Invoices are made in worker processes: the runner instruments and reports them too.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        invoices = pool.map(invoice_number, range(len(orders)))
        pool.close()
        pool.join()
    print(f"orders placed: {len(totals)}, revenue: {daily_total(totals) / 100:.2f}")
    print(f"invoices: {invoices[0]} .. {invoices[-1]}")


if __name__ == "__main__":
    main()
