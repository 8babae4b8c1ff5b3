"""Run the overhead guard: the benchmarks, then ``guard.py`` on their results.

Usage::

    python benchmarks/run.py --mode short            # CI: a few minutes at most
    python benchmarks/run.py --mode full --report docs/performance.md   # release check

Runs ``pytest benchmarks`` with pytest-benchmark switched on (the project's pytest
configuration switches it off for the test suite), the benchmark JSON written to
``--json`` (default ``.benchmarks/guard-<mode>.json``), then the guard in the same mode.
The exit status is pytest's when the benchmarks fail, else the guard's. ``--report`` also
writes the performance page from the same JSON. Arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# pytest options per mode. The benchmarks' own rounds come from --bench-mode (conftest.py);
# the --benchmark-max-time/min-rounds options only bound benchmarks that calibrate
# themselves (other benchmark files in this directory that do not use the `bench` fixture).
PYTEST_OPTIONS = {
    "short": ["--benchmark-max-time=0.1", "--benchmark-min-rounds=5"],
    "full": ["--benchmark-max-time=1.0", "--benchmark-min-rounds=10"],
}


def pytest_command(mode: str, json_path: Path, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        "--benchmark-only",
        "--benchmark-enable",  # pyproject's addopts has --benchmark-disable
        f"--benchmark-json={json_path}",
        "--benchmark-disable-gc",
        "--benchmark-sort=name",
        "--benchmark-columns=min,median,rounds",
        "-p",
        "no:cacheprovider",
        f"--bench-mode={mode}",
        "-q",
        *PYTEST_OPTIONS[mode],
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description="Run the benchmarks, then the overhead guard.")
    parser.add_argument("--mode", choices=("short", "full"), default="short")
    parser.add_argument("--json", type=Path, default=None, help="where the results go")
    parser.add_argument("--report", type=Path, default=None, help="also write this page")
    parser.add_argument(
        "--no-guard", action="store_true", help="run and report, do not apply the limits"
    )
    args = parser.parse_args(argv)
    json_path = (args.json or ROOT / ".benchmarks" / f"guard-{args.mode}.json").resolve()
    json_path.parent.mkdir(parents=True, exist_ok=True)

    command = pytest_command(args.mode, json_path, extra)
    print("+", " ".join(command), flush=True)
    status = subprocess.run(command, cwd=ROOT, check=False).returncode
    if status != 0:
        print(f"run: the benchmarks failed (pytest exit status {status})", file=sys.stderr)
        return status

    if args.report is not None:
        report = [sys.executable, str(HERE / "report.py"), str(json_path)]
        report += ["--output", str(args.report)]
        print("+", " ".join(report), flush=True)
        status = subprocess.run(report, cwd=ROOT, check=False).returncode
        if status != 0:
            return status
    if args.no_guard:
        return 0
    guard = [sys.executable, str(HERE / "guard.py"), str(json_path), "--mode", args.mode]
    print("+", " ".join(guard), flush=True)
    return subprocess.run(guard, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
