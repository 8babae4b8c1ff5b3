"""The dry run: it changes nothing, and it lists exactly what the hook then wraps."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from flext_ctx_aspects.config import load_config
from flext_ctx_aspects.instrument import instrument
from flext_ctx_aspects.instrument._plan import make_plan

SOURCE = """\
import sys

def a():
    return 1

b = a

async def c():
    return 2

def frames():  # a generator: frame-sensitive and skipped with either implementation
    yield sys._getframe(1)

class K:
    def m(self):
        return 3

    @staticmethod
    def s():
        return 4

    def _hidden(self):
        return 5
"""


def test_plan_changes_nothing_and_matches_the_hook(make_package: Any) -> None:
    package = make_package({"one.py": SOURCE, "two/__init__.py": "", "two/deep.py": SOURCE})
    settings = {"instrument": {"include": [f"{package}.*"], "exclude": [f"{package}.two"]}}
    config = load_config(settings, environ={})
    plan = make_plan(config)
    one = sys.modules[f"{package}.one"]
    before = dict(vars(one)), dict(vars(one.K))
    planned = {(s.module, s.qualname) for m in plan.modules for s in m.selected}
    assert planned == {
        (f"{package}.{name}", q) for name in ("one", "two.deep") for q in ("a", "c", "K.m", "K.s")
    }
    assert (dict(vars(one)), dict(vars(one.K))) == before  # nothing replaced
    assert all(value is before[0][key] for key, value in vars(one).items())
    assert (f"{package}.two", "excluded by " + repr(f"{package}.two")) in plan.skipped_modules

    with instrument(settings) as handle:
        importlib.import_module(f"{package}.two.deep")
        assert hasattr(one.a, "_self_aspects")
        assert one.b is one.a
        wrapped = {
            (function.__module__, function.__qualname__)
            for entry in handle.ledger._entries
            for function in [getattr(entry.original, "__func__", entry.original)]
        }
    assert wrapped == planned  # the same selection function decided both
