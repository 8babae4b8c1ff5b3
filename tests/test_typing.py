"""Type checking is part of the contract: tests/typing/ files are checked with mypy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

HERE = Path(__file__).resolve().parent / "typing"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def run_mypy(path: Path) -> list[tuple[int, str]]:
    stdout, _, _ = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", "--show-error-codes", str(path)]
    )
    errors = []
    for line in stdout.splitlines():
        match = ERROR.match(line)
        if match:
            errors.append((int(match["line"]), match["code"]))
    return errors


@pytest.mark.slow
def test_correct_usage_type_checks() -> None:
    assert run_mypy(HERE / "passes.py") == []


@pytest.mark.slow
def test_misuse_is_reported() -> None:
    source = (HERE / "fails.py").read_text().splitlines()
    expected = {
        (number, line.split("# E: ")[1].strip())
        for number, line in enumerate(source, start=1)
        if "# E: " in line
    }
    assert expected, "the negative file must declare the errors it expects"
    assert set(run_mypy(HERE / "fails.py")) == expected
