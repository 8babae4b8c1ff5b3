"""Type checks of configuration options: one helper for settings, middlewares, integrations.

Every option a user passes (a `Settings` field, a middleware or integration keyword, a
decorator option) is checked here when it is given, not when it is first used, and a wrong
value raises `ConfigError` naming where it was given, the key, what was expected and what
was found. ``bool`` is a bool: ``"false"``, ``0`` and ``None`` (where None is not allowed)
are refused, because a truthy string would silently switch on what it meant to switch off
(``trust_inbound_user_id="false"``). Numbers are ``int``/``float`` but never ``bool``.
A tuple of names is never a bare ``str`` (a str would be read as one-letter names).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flext_ctx_aspects.errors import ConfigError

__all__ = [
    "check_bool",
    "check_callable",
    "check_int",
    "check_names",
    "check_number",
    "check_optional_bool",
    "check_optional_str",
    "check_str",
    "describe",
]


def describe(value: object) -> str:
    """Return a short description of ``value`` for an error message: its repr and type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    name = type(value).__name__
    return f"{text}, {'an' if name[:1] in 'aeiou' else 'a'} {name}"


def check_bool(where: str, key: str, value: object) -> bool:
    """Return ``value`` if it is a bool.

    Raises:
        ConfigError: Anything else (``"false"``, ``0``, None...).
    """
    if not isinstance(value, bool):
        raise ConfigError(where, key, "a bool (True or False)", describe(value))
    return value


def check_optional_bool(where: str, key: str, value: object) -> bool | None:
    """Return ``value`` if it is a bool or None (None: follow the settings)."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(where, key, "a bool (True or False) or None", describe(value))
    return value


def check_number(
    where: str, key: str, value: object, *, low: float | None = None, high: float | None = None
) -> float:
    """Return ``value`` as a float if it is an int or float (not a bool) within bounds."""
    expected = "a number (int or float)"
    if low is not None and high is not None:
        expected = f"a number from {low} to {high}"
    elif low is not None:
        expected = f"a number >= {low}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(where, key, expected, describe(value))
    if (low is not None and not value >= low) or (high is not None and not value <= high):
        raise ConfigError(where, key, expected, repr(value))
    return float(value)


def check_int(
    where: str, key: str, value: object, *, low: int | None = None, optional: bool = False
) -> int | None:
    """Return ``value`` if it is an int (not a bool) >= ``low`` (or None when optional)."""
    expected = "an int" if low is None else f"an int >= {low}"
    if optional:
        expected += " or None"
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, key, expected, describe(value))
    if low is not None and value < low:
        raise ConfigError(where, key, expected, repr(value))
    return value


def check_str(where: str, key: str, value: object, *, expected: str = "a str") -> str:
    """Return ``value`` if it is a str."""
    if not isinstance(value, str):
        raise ConfigError(where, key, expected, describe(value))
    return value


def check_optional_str(where: str, key: str, value: object) -> str | None:
    """Return ``value`` if it is a str or None."""
    if value is not None and not isinstance(value, str):
        raise ConfigError(where, key, "a str or None", describe(value))
    return value


def check_names(
    where: str,
    key: str,
    value: object,
    *,
    expected: str = "a list or tuple of str",
    item_types: tuple[type, ...] = (str,),
) -> tuple[Any, ...]:
    """Return ``value`` as a tuple if it is an iterable of ``item_types`` and not a bare str.

    Raises:
        ConfigError: A bare str or bytes (it would be read as one-letter names), a mapping,
            a non-iterable, or an item of another type.
    """
    if isinstance(value, (str, bytes, bytearray)):
        raise ConfigError(where, key, expected, f"a single {type(value).__name__} {value!r:.60}")
    if isinstance(value, dict) or not isinstance(value, Iterable):
        raise ConfigError(where, key, expected, describe(value))
    items = tuple(value)
    for item in items:
        if not isinstance(item, item_types):
            raise ConfigError(where, key, expected, f"an item {describe(item)}")
    return items


def check_callable(where: str, key: str, value: object, *, expected: str = "a callable") -> Any:
    """Return ``value`` if it is callable."""
    if not callable(value):
        raise ConfigError(where, key, expected, describe(value))
    return value
