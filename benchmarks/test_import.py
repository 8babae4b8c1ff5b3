"""``import flext_ctx_aspects``: what the library adds on top of its dependencies' own import.

Each round starts a fresh interpreter (``sys.executable``, same environment) that times ONE
import statement itself and prints the figure: process CPU time by default (wall time with
``--bench-clock=wall``), so interpreter start-up and scheduling noise stay out.

Bytecode: the children run with a private ``PYTHONPYCACHEPREFIX`` (a temporary directory,
filled by a warm-up child) and without ``PYTHONDONTWRITEBYTECODE``, so every module, the
library included, loads from cached bytecode as it does after ``pip install``. Without that,
in an environment that sets ``PYTHONDONTWRITEBYTECODE=1`` (this one does) the library would
be compiled from source in every child while its dependencies load their installed
bytecode: a comparison of compilers, not of imports. Variants:
``nothing`` (an empty statement: the floor of the measurement), ``dependencies``
(``import wrapt, typing_extensions``) and ``flext_ctx_aspects``. The guard takes
``flext_ctx_aspects - dependencies``: each round of ``flext_ctx_aspects`` is preceded by
one child importing the dependencies (companions, see ``conftest.py``), and the figure is
the median of the per-round differences.

One extra child per variant runs with ``-X importtime``; the modules that dominate, and who
imports ``asyncio`` and ``importlib.metadata`` (wrapt 2.5 does, at import), are stored in
``extra_info["importtime"]`` for the report.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

import pytest

STATEMENTS = {
    "nothing": "pass",
    "dependencies": "import wrapt, typing_extensions",
    "flext_ctx_aspects": "import flext_ctx_aspects",
}
CHILD = """\
import sys, time
c0 = time.process_time_ns(); w0 = time.perf_counter_ns()
{statement}
w1 = time.perf_counter_ns(); c1 = time.process_time_ns()
sys.stdout.write(f"{{c1 - c0}} {{w1 - w0}}")
"""
WATCHED = (
    "flext_ctx_aspects",
    "wrapt",
    "typing_extensions",
    "asyncio",
    "importlib.metadata",
    "inspect",
    "logging",
    "typing",
    "dataclasses",
    "hashlib",
    "random",
)


class ChildClock:
    """A clock that advances by what each child process measured for its import."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def importtime_breakdown(stderr: str) -> dict[str, Any]:
    """Parse ``-X importtime`` output: cumulative us of watched modules and their importers."""
    entries: list[tuple[int, str, int, int]] = []  # depth, module, self us, cumulative us
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:") :].split("|")
        try:
            own, cumulative = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        label = parts[2]
        name = label.strip()
        depth = (len(label) - len(label.lstrip()) - 1) // 2
        entries.append((depth, name, own, cumulative))
    # Children are printed before their parent, one level deeper.
    parent_of: dict[str, str] = {}
    pending: list[tuple[int, str]] = []
    for depth, name, _, _ in entries:
        while pending and pending[-1][0] > depth:
            child_depth, child = pending.pop()
            if child_depth == depth + 1:
                parent_of[child] = name
        pending.append((depth, name))
    cumulative_us = {name: cum for _, name, _, cum in entries}

    def chain(name: str) -> list[str]:
        path = [name]
        while path[-1] in parent_of:
            path.append(parent_of[path[-1]])
        return path[::-1]

    own_modules = sorted(
        ((name, own) for _, name, own, _ in entries if name.startswith("flext_ctx_aspects")),
        key=lambda item: -item[1],
    )
    return {
        "cumulative_us": {name: cumulative_us[name] for name in WATCHED if name in cumulative_us},
        "imported_via": {
            name: chain(name) for name in ("asyncio", "importlib.metadata") if name in parent_of
        },
        "library_self_us": dict(own_modules[:8]),
        "modules": len(entries),
    }


@pytest.fixture(scope="module")
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The children's environment: the parent's, with a private bytecode cache."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return env


def _child(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, check=True, env=env
    )


@pytest.mark.benchmark(group="import")
@pytest.mark.variants(*STATEMENTS)
def test_import(bench: Any, child_env: dict[str, str], variant: str) -> None:
    clock = ChildClock()
    index = 0 if bench.clock == "cpu" else 1
    bench.use_clock(clock, f"child-{bench.clock}")

    def build(variant: str) -> tuple[Any, int]:
        child = CHILD.format(statement=STATEMENTS[variant])

        def one_import() -> None:
            done = _child(["-c", child], child_env)
            clock.now += int(done.stdout.split()[index]) / 1e9

        one_import()  # writes the bytecode cache of everything the statement imports
        return one_import, 1

    # One child per round (and one per companion): a fixed, small number of rounds.
    bench.mode = dataclasses.replace(
        bench.mode,
        min_rounds=bench.mode.subprocess_rounds,
        max_rounds=bench.mode.subprocess_rounds,
        warmup_rounds=0,
    )
    bench.measure(variant, build, unit="import")
    # After the measured children, so the bytecode cache is warm for this one too.
    profile = _child(["-X", "importtime", "-c", STATEMENTS[variant]], child_env)
    bench.benchmark.extra_info["importtime"] = importtime_breakdown(profile.stderr)
