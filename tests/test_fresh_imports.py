"""Every public module imported first, in a fresh interpreter, as a user's program starts.

The rest of the suite runs in one process where conftest and earlier tests have imported
most of the package already; an import-order bug (a cycle that only bites when a given
module is the first one imported) would pass there. Each case here is a new interpreter.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import flext_ctx_aspects

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(flext_ctx_aspects.__path__, "flext_ctx_aspects.")
    if not info.name.endswith("__main__")
)


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_module_is_listed() -> None:
    # A guard for the list itself: the walk found the package's layers.
    assert {"flext_ctx_aspects._state", "flext_ctx_aspects.settings"} <= set(MODULES)
    assert "flext_ctx_aspects.propagation.w3c" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = run_fresh(f"import {module}")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "program",
    [
        "from flext_ctx_aspects import Settings",
        (
            "from flext_ctx_aspects import apply_settings, current_settings; "
            "apply_settings(current_settings())"
        ),
        (
            "from flext_ctx_aspects import FlextContext\n"
            "assert FlextContext.create_environment_context_config('production').success"
        ),
        (
            "from flext_ctx_aspects import FlextContext\n"
            "assert FlextContext.optimize_context_performance({'sample_rate': 0.5}).success"
        ),
        (
            "from flext_ctx_aspects.concurrency import ContextExecutor\n"
            "with ContextExecutor() as pool: assert pool.submit(int, '3').result() == 3"
        ),
        (
            "from flext_ctx_aspects import FlextContext\n"
            "assert FlextContext.Serialization.set_from_context({'X-Correlation-Id': 'abc'}).success"
        ),
    ],
    ids=[
        "import-Settings",
        "apply-settings",
        "environment-preset-first",
        "optimize-first",
        "executor-first",
        "set-from-context-first",
    ],
)
def test_startup_idioms_work_as_the_first_call(program: str) -> None:
    done = run_fresh(program)
    assert done.returncode == 0, done.stderr
