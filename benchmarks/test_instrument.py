"""Auto-instrumentation: its import-time cost per wrapped function, and a filtered call.

``test_instrument_import``: a generated pure-Python package (``MODULES`` modules of
``FUNCTIONS`` functions and ``CLASSES`` classes of ``METHODS`` methods each: thousands of
callables) imported fresh each round, from cached bytecode, with (``instrumented``) and
without (``bare``) instrumentation. The instrumented round includes ``instrument()`` and
``uninstrument()`` themselves. Both rounds divide by the number of callables wrapped, so the
guard's ``instrumented - bare`` difference is the cost per wrapped function.

``test_filtered_call``: a function of a generated module, instrumented with
``aspects = { timed = { min_duration_ms = 5 } }`` and called with a sink listening, so every
call is timed, reaches the filter and is dropped there (``instrumented_filtered``), against
the same function decorated by hand with ``@timed(min_duration_ms=5)`` under the same
conditions (``timed_filtered``: the goal's reference, what instrumentation adds over writing
the decorator), with plain ``@timed`` and no sink (``timed``: the standard ``@timed``
overhead, reported) and the bare function.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from flext_ctx_aspects import _emit, timed
from flext_ctx_aspects.instrument import instrument
from kit import CollectingSink, call_loop

MODULES = 20
FUNCTIONS = 80
CLASSES = 4
METHODS = 5
WRAPPED = MODULES * (FUNCTIONS + CLASSES * METHODS)
PACKAGE = "ctx_bench_pkg"
CALLS = 1000


def _module_source(index: int) -> str:
    lines = [f'"""Generated module {index}."""', ""]
    for n in range(FUNCTIONS):
        lines += [f"def f{n}(x, y=1):", f"    return x + y + {n}", ""]
    for c in range(CLASSES):
        lines.append(f"class C{c}:")
        for m in range(METHODS):
            lines += [f"    def m{m}(self, x):", f"        return x * {m}", ""]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("instrument_bench")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("", encoding="utf-8")
    for index in range(MODULES):
        path = root / PACKAGE / f"mod{index}.py"
        path.write_text(_module_source(index), encoding="utf-8")
    (root / "filtered_target.py").write_text(
        textwrap.dedent("def work(x):\n    return x\n"), encoding="utf-8"
    )
    sys.path.insert(0, str(root))
    # Bytecode is written once (the first import) and read afterwards, as after an install.
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        _import_all()
        _forget()
        yield PACKAGE
    finally:
        sys.dont_write_bytecode = writes
        sys.path.remove(str(root))
        _forget()
        sys.modules.pop("filtered_target", None)


def _forget() -> None:
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def _import_all() -> None:
    for index in range(MODULES):
        importlib.import_module(f"{PACKAGE}.mod{index}")


CONFIG = {"instrument": {"include": [f"{PACKAGE}.*"], "aspects": ["timed"]}}


@pytest.mark.benchmark(group="instrument-import")
@pytest.mark.variants("bare", "instrumented")
def test_instrument_import(bench: Any, package: str, variant: str) -> None:
    def bare() -> None:
        _forget()
        _import_all()

    def instrumented() -> None:
        _forget()
        handle = instrument(CONFIG)
        try:
            _import_all()
        finally:
            handle.uninstrument()

    def build(variant: str) -> tuple[Any, int]:
        if variant == "instrumented":
            _forget()
            with instrument(CONFIG) as handle:
                _import_all()
                wrapped = len(handle.ledger)
            assert wrapped == WRAPPED, f"wrapped {wrapped}, expected {WRAPPED}"
            return instrumented, WRAPPED
        return bare, WRAPPED

    bench.measure(variant, build, unit="wrapped function", info={"wrapped": WRAPPED})


@pytest.mark.benchmark(group="instrument-filtered")
@pytest.mark.variants("bare", "timed", "timed_filtered", "instrumented_filtered")
def test_filtered_call(bench: Any, package: str, variant: str) -> None:
    import filtered_target

    bare_work = filtered_target.work
    handle = instrument(
        {
            "instrument": {
                "include": ["filtered_target"],
                "aspects": {"timed": {"min_duration_ms": 5}},
            }
        }
    )
    instrumented_work = filtered_target.work
    assert instrumented_work is not bare_work
    decorated = timed(bare_work)
    decorated_filtered = timed(min_duration_ms=5)(bare_work)
    sink = CollectingSink()

    def build(variant: str) -> tuple[Any, int]:
        if variant == "bare":
            return call_loop(bare_work, CALLS), CALLS
        if variant == "timed":
            return call_loop(decorated, CALLS), CALLS
        subject = decorated_filtered if variant == "timed_filtered" else instrumented_work
        loop = call_loop(subject, CALLS)

        def with_sink() -> None:
            remove = _emit.add_sink(sink)
            try:
                loop()
            finally:
                remove()

        with_sink()
        assert sink.records == [], "the instrumented calls must be filtered out"
        return with_sink, CALLS

    try:
        bench.measure(variant, build)
    finally:
        handle.uninstrument()
