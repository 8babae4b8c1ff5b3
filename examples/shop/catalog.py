"""The catalog: plain functions, a class with instance, class and static methods."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One catalog item."""

    sku: str
    name: str
    cents: int


class Catalog:
    """A fixed catalog of items."""

    def __init__(self, items: list[Item]) -> None:
        self._items = {item.sku: item for item in items}

    @classmethod
    def sample(cls, size: int) -> Catalog:
        """Return a catalog of ``size`` generated items."""
        return cls([Item(sku_for(i), f"item {i}", 100 + (i * 37) % 900) for i in range(size)])

    @staticmethod
    def is_valid_sku(sku: str) -> bool:
        """Whether ``sku`` looks like a SKU."""
        return sku.startswith("SKU-") and sku[4:].isdigit()

    def lookup(self, sku: str) -> Item:
        """Return the item of ``sku``."""
        if not self.is_valid_sku(sku):
            raise KeyError(sku)
        return self._items[sku]

    def skus(self) -> Iterator[str]:
        """Yield every SKU."""
        yield from self._items


def sku_for(index: int) -> str:
    return f"SKU-{index:04d}"
