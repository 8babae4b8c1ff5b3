"""Must NOT type-check: each line marked with an E-comment is an error mypy has to report."""

from __future__ import annotations

from flext_ctx_aspects import FlextResult, service, timed, with_correlation


@timed
def plain(x: int) -> str:
    return str(x)


@with_correlation
@service("svc")
async def fused(user: str) -> int:
    return len(user)


plain("not an int")  # E: arg-type
plain(1, 2)  # E: call-arg
_ = fused(user=3)  # E: arg-type
wrong: int = plain(1)  # E: assignment
timed(name=3)  # E: call-overload
FlextResult[int].ok("x")  # E: arg-type
