"""End-of-day figures, computed in worker processes."""

from __future__ import annotations


def daily_total(totals: list[int]) -> int:
    return sum(totals)


def invoice_number(order_id: int) -> str:
    return f"INV-{order_id:06d}"
