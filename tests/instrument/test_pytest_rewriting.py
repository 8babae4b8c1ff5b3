"""pytest's assertion rewriting stays active in a test run that instruments its test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import flext_ctx_aspects

pytest_plugins = ["pytester"]

CONFTEST = """\
from flext_ctx_aspects.instrument import instrument

HANDLE = instrument(
    {"instrument": {"include": ["app", "test_*"], "include_tests": True, "aspects": ["timed"]}}
)


def pytest_unconfigure(config):
    HANDLE.uninstrument()
"""

APP = """\
def double(x):
    return x * 2
"""

TESTS = """\
import app
from flext_ctx_aspects.testing import capture_operations


def helper(x):
    return x + 1


def test_instrumented():
    with capture_operations() as operations:
        assert helper(1) == 2
        assert app.double(2) == 4
    assert [op.name for op in operations] == ["test_app.helper", "app.double"]
    assert hasattr(app.double, "_self_aspects")


def test_rewritten():
    assert app.double(1) == 3
"""


def test_assertion_rewriting_survives_instrumentation(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child runs elsewhere: the library under test must win there too, by absolute path.
    source = str(Path(flext_ctx_aspects.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(app=APP, test_app=TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:ddtrace")
    result.assert_outcomes(passed=1, failed=1)
    # Only a rewritten assert explains its operands: "where 2 = <...>(1)", "... = app.double".
    result.stdout.fnmatch_lines(["*assert 2 == 3*", "*where 2 = *(1)*", "*= app.double"])
