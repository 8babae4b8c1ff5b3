"""Must type-check cleanly: decorated callables keep their signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from typing_extensions import assert_type

from flext_ctx_aspects import (
    FlextContext,
    FlextResult,
    arg,
    request_scope,
    service,
    timed,
    with_correlation,
)


@timed
def plain(x: int, y: str = "a") -> float:
    return float(x)


@timed(name="named", min_duration_ms=100)
@with_correlation(inherit=True)
@service("svc", "1.0")
@request_scope(user_id=arg("user"))
async def fused(user: str, count: int) -> list[str]:
    return [user] * count


@with_correlation
def gen(n: int) -> Iterator[int]:
    yield n


@timed
async def agen(n: int) -> AsyncIterator[int]:
    yield n


class Host:
    @timed
    def method(self, value: int) -> int:
        return value

    @timed
    @classmethod
    def build(cls, value: int) -> Host:
        return cls()

    @staticmethod
    @with_correlation
    def helper(value: str) -> str:
        return value


@service("cls")
class Decorated:
    def run(self) -> int:
        return 1


async def uses() -> None:
    assert_type(plain(1, "b"), float)
    assert_type(await fused("u", 2), list[str])
    assert_type(next(gen(1)), int)
    async for item in agen(1):
        assert_type(item, int)
    assert_type(Host().method(3), int)
    assert_type(Host.build(3), Host)
    assert_type(Host.helper("x"), str)
    assert_type(Decorated().run(), int)
    result = FlextResult[dict[str, int]].ok({"a": 1})
    assert_type(result.value, dict[str, int])
    with FlextContext.Correlation.new_correlation() as correlation_id:
        assert_type(correlation_id, str)
    with FlextContext.Performance.timed_operation("op") as metadata:
        assert_type(metadata, dict[str, Any])
