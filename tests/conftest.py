"""Shared fixtures: every test starts and ends with an empty context and default settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flext_ctx_aspects import _emit, _state
from flext_ctx_aspects._diagnostics import reset_diagnostics
from flext_ctx_aspects.propagation import allowed_destinations, reset_refusal_warnings
from flext_ctx_aspects.settings import Settings, apply_settings


@pytest.fixture(autouse=True)
def _isolated_context() -> Iterator[None]:
    # A test that leaves context behind fails here, then the state is reset so that one
    # leak does not cascade into the following tests.
    assert _state.get() == _state.EMPTY, "context not empty before the test"
    assert _state.get_operation() is None, "an operation is running before the test"
    apply_settings(Settings())
    _emit.clear_sinks()
    reset_diagnostics()
    reset_refusal_warnings()
    try:
        yield
        assert _state.get() == _state.EMPTY, "the test leaked context"
        assert allowed_destinations() == (), "the test left a destination allowlist"
        assert _state.get_operation() is None, "the test leaked a running operation"
    finally:
        _state.clear()
        _emit.clear_sinks()
        apply_settings(Settings())
