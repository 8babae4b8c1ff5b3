"""Checks of configuration values, each refusal naming file, key path, expected and found.

Used by `flext_ctx_aspects.config`.

A "where" is the file and the table, as users write them: ``pyproject.toml
[tool.flext_ctx_aspects.instrument]``; with the key, a `ConfigError` reads
"`include` in pyproject.toml [tool.flext_ctx_aspects.instrument] must be a list of module
globs (got 'shop', a str)".
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from flext_ctx_aspects.errors import ConfigError

__all__ = [
    "Where",
    "check_keys",
    "describe",
    "module_glob",
    "qualname_glob",
    "want_bool",
    "want_globs",
    "want_number",
    "want_optional_str",
    "want_str_list",
    "want_table",
]

# Module globs: dotted names made of identifier characters and fnmatch wildcards.
_MODULE_GLOB: Final = re.compile(r"[A-Za-z0-9_*?\[\]!]+(\.[A-Za-z0-9_*?\[\]!]+)*")
# Qualified names also hold ``<locals>``-free dotted identifiers.
_QUALNAME_GLOB: Final = _MODULE_GLOB


class Where:
    """A table of one configuration file, for messages: ``file [tool.flext_ctx_aspects.x]``."""

    __slots__ = ("file", "table")

    def __init__(self, file: str, table: str) -> None:
        self.file = file
        self.table = table

    def __str__(self) -> str:
        return f"{self.file} [{self.table}]"

    def child(self, name: str) -> Where:
        """The sub-table ``name`` of this table."""
        return Where(self.file, f"{self.table}.{name}")

    def error(self, key: str, expected: str, got: str) -> ConfigError:
        """A `ConfigError` for ``key`` of this table."""
        return ConfigError(str(self), key, expected, got)


def describe(value: object) -> str:
    """A one-line description of a found value: ``'shop', a str``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    name = _type_name(value)
    article = "an" if name[0] in "aeiou" else "a"
    return f"{text}, {article} {name}"


def _type_name(value: object) -> str:
    names = {str: "str", bool: "bool", int: "int", float: "float", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


def check_keys(where: Where, table: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse any key of ``table`` not in ``known``, suggesting the closest known one."""
    accepted = list(known)
    for key in table:
        if key in accepted:
            continue
        close = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise where.error(
            str(key), f"one of the known keys ({', '.join(accepted)})", f"an unknown key{hint}"
        )


def want_table(where: Where, key: str, value: object) -> Mapping[str, Any]:
    """``value`` as a table (a TOML table / dict with str keys)."""
    if not isinstance(value, Mapping):
        raise where.error(key, "a table", describe(value))
    return value


def want_bool(where: Where, key: str, value: object) -> bool:
    """``value`` as a bool: only ``true``/``false``, never a string or a number."""
    if not isinstance(value, bool):
        raise where.error(key, "true or false", describe(value))
    return value


def want_number(
    where: Where, key: str, value: object, low: float, high: float | None = None
) -> float:
    """``value`` as a finite number within ``[low, high]`` (bools refused)."""
    bounds = f"from {low} to {high}" if high is not None else f">= {low}"
    expected = f"a number {bounds}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(key, expected, describe(value))
    number = float(value)
    if not math.isfinite(number) or number < low or (high is not None and number > high):
        raise where.error(key, expected, describe(value))
    return number


def want_optional_str(where: Where, key: str, value: object) -> str | None:
    """``value`` as a non-empty, printable str (None passes through)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise where.error(key, "a non-empty string without control characters", describe(value))
    return value


def want_str_list(where: Where, key: str, value: object, what: str) -> tuple[str, ...]:
    """``value`` as a list of non-empty strings (a single str is refused, not split)."""
    if isinstance(value, str) or not isinstance(value, list):
        raise where.error(key, f"a list of {what}", describe(value))
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise where.error(f"{key}[{index}]", f"a non-empty string ({what})", describe(item))
    return tuple(value)


def _balanced(pattern: str) -> bool:
    depth = 0
    for char in pattern:
        if char == "[":
            if depth:
                return False
            depth = 1
        elif char == "]" and depth:
            depth = 0
    return depth == 0


def module_glob(where: Where, key: str, pattern: str) -> str:
    """Check one module-name glob (``shop``, ``shop.*``, ``shop.api.v[12]``)."""
    expected = "a module-name glob such as 'shop' or 'shop.*'"
    hint = ""
    if pattern.endswith(".py") or "/" in pattern or "\\" in pattern:
        guess = pattern.removesuffix(".py").replace("/", ".").replace("\\", ".").strip(".")
        hint = f"; a file path, did you mean {guess!r}?"
    if hint or not _MODULE_GLOB.fullmatch(pattern) or not _balanced(pattern):
        raise where.error(key, expected, f"{pattern!r}{hint}")
    return pattern


def qualname_glob(where: Where, key: str, pattern: str) -> str:
    """Check one qualified-name glob (``Cart.*``, ``*.checkout``, ``handle_*``)."""
    if not _QUALNAME_GLOB.fullmatch(pattern) or not _balanced(pattern):
        raise where.error(
            key, "a qualified-name glob such as 'handle_*' or 'Cart.*'", repr(pattern)
        )
    return pattern


def want_globs(where: Where, key: str, value: object, *, modules: bool) -> tuple[str, ...]:
    """A list of module-name (``modules=True``) or qualified-name globs, each checked."""
    what = "module-name globs" if modules else "qualified-name globs"
    patterns = want_str_list(where, key, value, what)
    check = module_glob if modules else qualname_glob
    return tuple(check(where, f"{key}[{i}]", p) for i, p in enumerate(patterns))
