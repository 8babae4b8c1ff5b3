"""The README's demo runs and prints its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_prints_statistics_and_a_trace() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = done.stdout
    assert "orders placed:" in out
    assert "place_order" in out
    assert "one order, operation by operation:" in out
    assert "service=orders" in out
    assert '"operations"' in out
