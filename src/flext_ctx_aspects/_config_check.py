"""Checks of configuration values, each refusal naming file, key path, expected and found.

Used by `flext_ctx_aspects.config`.

A "where" is the file and the table, as users write them: ``pyproject.toml
[tool.flext_ctx_aspects.instrument]``; with the key, a `ConfigError` reads
"`include` in pyproject.toml [tool.flext_ctx_aspects.instrument] must be a list of module
globs (got 'shop', a str)".
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import math
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from flext_ctx_aspects.errors import ConfigError

if TYPE_CHECKING:
    from flext_ctx_aspects._config_model import Config

__all__ = [
    "Where",
    "check_keys",
    "describe",
    "ineffective_entries",
    "module_glob",
    "qualname_glob",
    "unmatched_includes",
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


# --- entries that are valid but cannot take effect -------------------------------------


def ineffective_entries(config: Config) -> list[ConfigError]:
    """Valid entries that cannot take effect, as errors to warn about (or raise, if strict).

    An ``include`` glob matching no importable module (`unmatched_includes`), and a
    rule whose module glob is a plain name that no ``include`` glob matches (it would never
    apply).
    """
    where = f"{config.source} [instrument]"
    found = []
    missing = unmatched_includes(config)
    if missing:
        found.append(
            ConfigError(where, "include", "globs matching importable modules", repr(missing))
        )
    for index, rule in enumerate(config.instrument.rules):
        module = rule.module
        if _literal_prefix(module) == module.split(".") and not any(
            fnmatch.fnmatchcase(module, pattern) for pattern in config.instrument.include
        ):
            found.append(
                ConfigError(
                    f"{config.source} [instrument.rules[{index}]]",
                    "match",
                    "a module the include globs select",
                    f"{rule.match!r}, whose module no include glob matches",
                )
            )
    return found


def unmatched_includes(config: Config) -> list[str]:
    """The ``include`` globs that can match no importable module (warn, or refuse if strict).

    A glob's literal dotted prefix (``shop`` of ``shop.*``, ``shop.api`` of ``shop.api.v*``)
    must name an importable module. It is looked up without importing anything: the top
    level with the import system's finders, each further part in its parent's search path.
    """
    return [p for p in config.instrument.include if not _importable(_literal_prefix(p))]


def _literal_prefix(pattern: str) -> list[str]:
    prefix = []
    for part in pattern.split("."):
        if any(char in part for char in "*?[]!"):
            break
        prefix.append(part)
    return prefix


def _importable(parts: list[str]) -> bool:
    if not parts:
        return True  # '*' or '*.api': nothing fixed to look up
    from importlib.machinery import PathFinder

    name = parts[0]
    try:
        spec = None if name in sys.modules else importlib.util.find_spec(name)
        for part in parts[1:]:
            module = sys.modules.get(name)
            locations = (
                getattr(module, "__path__", None)
                if module is not None
                else (spec.submodule_search_locations if spec is not None else None)
            )
            if locations is None:
                return False
            name = f"{name}.{part}"
            spec = None if name in sys.modules else PathFinder.find_spec(name, list(locations))
            if spec is None and name not in sys.modules:
                return False
    except (ImportError, ValueError):
        return False
    return name in sys.modules or spec is not None
