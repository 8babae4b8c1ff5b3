"""Custom context fields: the ``FlextCliContext`` pattern.

A ``FlextContext`` subclass declares extra fields as class attributes::

    class ShopContext(FlextContext):
        tenant_id = ContextField(header="X-Tenant-Id")
        session_id = ContextField(header="X-Session-Id", validator=str.isalnum)

Declared fields are read, scoped, serialized and propagated exactly like the built-in ones:
``ShopContext.tenant_id.get()``, ``with ShopContext.tenant_id.scope("acme"):``, included in
``get_full_context()`` and ``get_correlation_context()``, read back by
``set_from_context()`` and ``extract()``, settable by aspects (``Advice(fields=...)``), and
carried in W3C ``baggage`` under their baggage key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from flext_ctx_aspects import _state
from flext_ctx_aspects._validate import as_text, validate_name
from flext_ctx_aspects.constants import FlextConstants
from flext_ctx_aspects.errors import InvalidValueError

__all__ = ["ContextField", "declared_fields", "field_by_header"]

_BUILTIN_NAMES: Final = frozenset(_state.SLOT_NAMES) | {
    "operation_metadata",
    "service_environment",
}


class ContextField:
    """A custom context field, declared as a class attribute of a ``FlextContext`` subclass.

    Args:
        header: HTTP header carrying the field (default ``X-`` + the name in Title-Case,
            e.g. ``tenant_id`` -> ``X-Tenant-Id``).
        validator: Extra check on inbound and programmatic values: returns False (or raises
            ValueError) to refuse a value. Values always must be visible ASCII (inner spaces
            allowed) and at most ``max_length`` characters.
        max_length: Length cap.
        baggage_key: Key in W3C baggage (default: the field name); None-like "" disables
            baggage propagation for the field.
        propagate: Whether the field is written to outbound headers at all.
    """

    def __init__(
        self,
        header: str | None = None,
        *,
        validator: Callable[[str], bool] | None = None,
        max_length: int = FlextConstants.Limits.MAX_NAME_LENGTH,
        baggage_key: str | None = None,
        propagate: bool = True,
    ) -> None:
        self.name = ""
        self.header = header
        self.validator = validator
        self.max_length = max_length
        self.baggage_key = baggage_key
        self.propagate = propagate
        self.owner: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        if name in _BUILTIN_NAMES:
            raise TypeError(f"{owner.__qualname__}.{name}: {name!r} is a built-in context field")
        self.name = name
        self.owner = owner
        if self.header is None:
            self.header = "X-" + "-".join(part.capitalize() for part in name.split("_"))
        if self.baggage_key is None:
            self.baggage_key = name
        _register(self)

    def __repr__(self) -> str:
        return f"ContextField(name={self.name!r}, header={self.header!r})"

    # --- validation -----------------------------------------------------------------------

    def clean(self, raw: object) -> str:
        """Return ``raw`` as a valid value of this field.

        Raises:
            InvalidValueError: The value is not acceptable.
        """
        text = as_text(self.name, raw)
        if len(text) > self.max_length:
            raise InvalidValueError(
                self.name, f"longer than {self.max_length} characters", len(text)
            )
        value = validate_name(self.name, text)
        if self.validator is not None:
            try:
                accepted = self.validator(value)
            except ValueError:
                accepted = False
            if not accepted:
                raise InvalidValueError(self.name, "refused by the field's validator", len(text))
        return value

    # --- access -----------------------------------------------------------------------------

    def get(self) -> str | None:
        """Return the field's value in the current context, or None."""
        fields = _state.get()[_state.CUSTOM_FIELDS]
        return None if fields is None else fields.get(self.name)

    def set(self, value: str | None) -> None:
        """Set the field for the rest of the current context (None removes it).

        Raises:
            InvalidValueError: The value is not acceptable.
        """
        clean = None if value is None else self.clean(value)
        _state.replace(_state.with_fields(_state.get(), {self.name: clean}))

    def scope(self, value: str | None) -> _FieldValueScope:
        """Set the field for the duration of a ``with`` block; yields the value.

        Raises:
            InvalidValueError: The value is not acceptable.
        """
        return _FieldValueScope(self.name, None if value is None else self.clean(value))


class _FieldValueScope(_state.Scope):
    """``ContextField.scope(value)``: one custom field set (None: removed) in a block."""

    __slots__ = ("_name", "_value")

    def __init__(self, name: str, value: str | None) -> None:
        super().__init__()
        self._name = name
        self._value = value

    def build(self, current: _state.Snapshot) -> _state.Snapshot:
        return _state.with_fields(current, {self._name: self._value})

    def __enter__(self) -> str | None:
        super().__enter__()
        return self._value


_lock = threading.Lock()
_fields: dict[str, ContextField] = {}
_by_header: dict[str, ContextField] = {}


def _register(field: ContextField) -> None:
    # Two declarations of one name share the value, so they must agree on the wire: the same
    # header. Different headers for one name would make propagation ambiguous.
    header = (field.header or "").lower()
    with _lock:
        existing = _fields.get(field.name)
        if existing is not None and (existing.header or "").lower() != header:
            owner = existing.owner.__qualname__ if existing.owner else "another class"
            raise TypeError(
                f"context field {field.name!r} is already declared by {owner} "
                f"with header {existing.header!r} (got {field.header!r})"
            )
        if existing is None:
            _fields[field.name] = field
            _by_header[header] = field


def declared_fields() -> tuple[ContextField, ...]:
    """Return every declared custom field."""
    return tuple(_fields.values())


def field_by_header(header: str) -> ContextField | None:
    """Return the custom field carried by ``header`` (case-insensitive), or None."""
    return _by_header.get(header.lower())


def field_by_name(name: str) -> ContextField | None:
    """Return the custom field called ``name``, or None."""
    return _fields.get(name)
