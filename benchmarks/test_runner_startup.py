"""What ``flext-ctx run`` adds to the start-up of every Python child: ``python -c pass``.

Each round starts one child, timed from the parent (wall clock: start-up is the cost). The
``bootstrapped`` child has the runner's environment: the bootstrap directory first on
``PYTHONPATH`` and ``FLEXT_CTX_RUN`` with a configuration that includes a package the child
never imports, as most children of a run (tools, helpers, a pytest worker before it reaches
the package) never do. The guard takes ``bootstrapped - plain``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from flext_ctx_aspects.config import config_from_mapping
from flext_ctx_aspects.instrument._runner import RunOutputs, child_environment

VARIANTS = ("plain", "bootstrapped")


class ParentClock:
    """A clock that advances by the wall time of each child, measured around it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    plain["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    config = config_from_mapping(
        {"instrument": {"include": ["shop", "shop.*"], "aspects": ["timed"]}}, "<benchmark>"
    )
    outputs = RunOutputs(str(tmp_path_factory.mktemp("run")), None, None)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(plain)
    try:
        bootstrapped = child_environment(config, outputs)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"plain": plain, "bootstrapped": bootstrapped}


@pytest.mark.benchmark(group="runner-startup")
@pytest.mark.variants(*VARIANTS)
def test_runner_startup(bench: Any, environments: dict[str, dict[str, str]], variant: str) -> None:
    clock = ParentClock()
    bench.use_clock(clock, "child-wall")

    def build(variant: str) -> tuple[Any, int]:
        env = environments[variant]

        def one_child() -> None:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
            clock.now += time.perf_counter() - start

        one_child()  # fills the bytecode cache
        return one_child, 1

    bench.mode = dataclasses.replace(
        bench.mode,
        min_rounds=bench.mode.subprocess_rounds,
        max_rounds=bench.mode.subprocess_rounds,
        warmup_rounds=0,
    )
    bench.measure(variant, build, unit="start-up")
