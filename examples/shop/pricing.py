"""Pricing: a generator of line prices and a discount function."""

from __future__ import annotations

from collections.abc import Iterator

from shop.catalog import Catalog


def discount(cents: int, quantity: int) -> int:
    return cents * quantity * (90 if quantity >= 10 else 100) // 100


def line_prices(catalog: Catalog, lines: list[tuple[str, int]]) -> Iterator[int]:
    for sku, quantity in lines:
        yield discount(catalog.lookup(sku).cents, quantity)
