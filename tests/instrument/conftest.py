"""Fixtures of the instrumentation tests: small packages written in the test, and cleanup.

``make_package(files)`` writes a package of a unique name under ``tmp_path``, puts
``tmp_path`` on ``sys.path`` and returns the name; its modules are forgotten afterwards.
Every test ends with no instrumentation active and the finder gone from ``sys.meta_path``.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flext_ctx_aspects.instrument import uninstrument
from flext_ctx_aspects.instrument._hook import InstrumentingFinder, active

_counter = itertools.count()

MakePackage = Callable[[dict[str, str]], str]


@pytest.fixture
def make_package(tmp_path: Path) -> Iterator[MakePackage]:
    names: list[str] = []

    def make(files: dict[str, str], name: str | None = None) -> str:
        package = name or f"ctxpkg{next(_counter)}_{tmp_path.name[-8:].replace('-', '_')}"
        root = tmp_path / package
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        if not (root / "__init__.py").exists() and not name:
            (root / "__init__.py").write_text("", encoding="utf-8")
        names.append(package)
        return package

    sys.path.insert(0, str(tmp_path))
    try:
        yield make
    finally:
        sys.path.remove(str(tmp_path))
        for module in list(sys.modules):
            if any(module == n or module.startswith(f"{n}.") for n in names):
                del sys.modules[module]


@pytest.fixture(autouse=True)
def _no_instrumentation_left() -> Iterator[None]:
    yield
    left = len(active())
    uninstrument()
    assert left == 0, "the test left an instrumentation active"
    assert not any(isinstance(f, InstrumentingFinder) for f in sys.meta_path)
