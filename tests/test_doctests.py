"""The ``>>>`` examples in docstrings (shown in the API reference) run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import flext_ctx_aspects
from flext_ctx_aspects import FlextContext

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(flext_ctx_aspects.__path__, "flext_ctx_aspects.")
    if not info.name.startswith("flext_ctx_aspects.integrations.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    try:
        failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    finally:
        FlextContext.Utilities.clear_context()
    assert failures == 0
