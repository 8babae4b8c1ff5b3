"""Custom context fields (the FlextCliContext pattern)."""

from __future__ import annotations

import asyncio

import pytest

from flext_ctx_aspects import ContextField, FlextContext, arg, timed
from flext_ctx_aspects.aspects import Advice, aspect
from flext_ctx_aspects.errors import InvalidValueError
from flext_ctx_aspects.testing import capture_operations


class ShopContext(FlextContext):
    """A FlextContext subclass with two extra fields."""

    tenant_id = ContextField(header="X-Tenant-Id")
    session_id = ContextField(validator=str.isalnum)


def test_fields_get_set_scope() -> None:
    assert ShopContext.tenant_id.get() is None
    with ShopContext.tenant_id.scope("acme") as value:
        assert value == "acme"
        assert ShopContext.tenant_id.get() == "acme"
        with ShopContext.tenant_id.scope("other"):
            assert ShopContext.tenant_id.get() == "other"
        assert ShopContext.tenant_id.get() == "acme"
    assert ShopContext.tenant_id.get() is None
    ShopContext.session_id.set("abc123")
    assert ShopContext.session_id.get() == "abc123"
    ShopContext.session_id.set(None)
    assert ShopContext.session_id.get() is None


def test_default_header_name_and_validation() -> None:
    assert ShopContext.session_id.header == "X-Session-Id"
    with pytest.raises(InvalidValueError, match="validator"):
        ShopContext.session_id.set("not alnum!")
    with pytest.raises(InvalidValueError):
        ShopContext.tenant_id.set("line\nbreak")


def test_fields_serialize_and_propagate_like_builtin_ones() -> None:
    with (
        FlextContext.Correlation.new_correlation(),
        ShopContext.tenant_id.scope("acme"),
        ShopContext.session_id.scope("s1"),
    ):
        headers = ShopContext.Serialization.get_correlation_context()
        full = ShopContext.Serialization.get_full_context()
        summary = ShopContext.Utilities.get_context_summary()
    assert headers["X-Tenant-Id"] == "acme"
    assert headers["X-Session-Id"] == "s1"
    assert "tenant_id=acme" in headers["baggage"]
    assert full["tenant_id"] == "acme"
    assert summary.startswith("FlextContext(correlation=")

    # The receiving side reads them back from headers, whatever their case...
    FlextContext.Serialization.set_from_context({"x-tenant-id": "acme", "X-SESSION-ID": "s1"})
    assert (ShopContext.tenant_id.get(), ShopContext.session_id.get()) == ("acme", "s1")
    FlextContext.Utilities.clear_context()
    # ... from baggage alone ...
    FlextContext.Serialization.set_from_context({"baggage": "tenant_id=acme,other=kept"})
    assert ShopContext.tenant_id.get() == "acme"
    assert "other=kept" in FlextContext.Serialization.get_correlation_context()["baggage"]
    FlextContext.Utilities.clear_context()
    # ... and from a full context.
    FlextContext.Serialization.set_from_context(full)
    assert ShopContext.tenant_id.get() == "acme"
    FlextContext.Utilities.clear_context()


def test_invalid_inbound_field_values_are_dropped() -> None:
    FlextContext.Serialization.set_from_context({"X-Session-Id": "has space"})
    assert ShopContext.session_id.get() is None


def test_aspects_set_custom_fields_and_records_carry_them() -> None:
    tenant_scope = aspect(Advice(fields={"tenant_id": arg("tenant")}))

    @tenant_scope
    @timed(name="order")
    async def place_order(tenant: str) -> str | None:
        return ShopContext.tenant_id.get()

    with capture_operations() as ops:
        assert asyncio.run(place_order("globex")) == "globex"
    assert dict(ops[0].fields) == {"tenant_id": "globex"}


def test_field_names_are_checked() -> None:
    def message(error: BaseException) -> str:
        # Before 3.12 errors raised in __set_name__ arrive wrapped in a RuntimeError.
        cause = error.__cause__ if isinstance(error, RuntimeError) else error
        assert isinstance(cause, TypeError)
        return str(cause)

    with pytest.raises((TypeError, RuntimeError)) as clash:

        class Clash(FlextContext):
            user_id = ContextField()

    assert "built-in context field" in message(clash.value)

    with pytest.raises((TypeError, RuntimeError)) as duplicate:

        class Other(FlextContext):
            tenant_id = ContextField(header="X-Organisation")

    assert "already declared" in message(duplicate.value)

    class Compatible(FlextContext):
        tenant_id = ContextField(header="x-tenant-id")

    assert Compatible.tenant_id.header == "x-tenant-id"
