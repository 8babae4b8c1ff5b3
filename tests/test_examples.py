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


@pytest.mark.slow
def test_shop_demo_under_the_runner_prints_the_report_and_the_trace_path(tmp_path: Path) -> None:
    from flext_ctx_aspects.sinks._tracecheck import check_trace_file

    trace = tmp_path / "shop-trace.json"
    done = subprocess.run(
        [sys.executable, "-m", "flext_ctx_aspects", "run", "--config", "examples/shop.toml",
         "--trace", str(trace), "--", sys.executable, "examples/shop_demo.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert "orders placed: 200" in done.stdout
    assert "3 instrumented processes" in done.stderr  # the program and its two pool workers
    assert "shop.orders.reserve" in done.stderr
    assert f"written to {trace}" in done.stderr
    check_trace_file(trace)


def test_shop_demo_runs_plainly_without_the_library(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-S", "examples/shop_demo.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    # -S: no site-packages at all, so certainly no flext_ctx_aspects: the demo is plain code.
    assert done.returncode == 0, done.stderr
    assert "orders placed: 200" in done.stdout
