"""`flext-ctx run` end to end, in real subprocesses: children, pools, pytest-xdist, exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flext_ctx_aspects.sinks._tracecheck import check_trace_file

ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")

PACKAGE = {
    "__init__.py": "",
    "work.py": """
        def square(x):
            return x * x

        def total(n):
            return sum(square(i) for i in range(n))
    """,
}
CONFIG = """
[instrument]
include = ["runpkg", "runpkg.*"]
aspects = ["timed", "with_correlation"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in PACKAGE.items():
        path = tmp_path / "runpkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "cfg.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def flext_ctx(
    project: Path, *args: str, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ if env is None else env)
    # The child finds the package under test (this tree) and the project's own package.
    environment["PYTHONPATH"] = os.pathsep.join([SRC, str(project)])
    return subprocess.run(
        [sys.executable, "-m", "flext_ctx_aspects", "run", *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


def counts(report_path: Path) -> dict[str, int]:
    data = json.loads(report_path.read_text(encoding="utf-8"))
    return {op["name"]: op["count"] for op in data["operations"]}


def write_main(project: Path, code: str) -> str:
    (project / "main.py").write_text(textwrap.dedent(code), encoding="utf-8")
    return "main.py"


def test_children_of_every_kind_are_instrumented_and_merged(project: Path) -> None:
    main = write_main(
        project,
        """
        import multiprocessing, subprocess, sys
        import runpkg.work as w

        if __name__ == "__main__":
            w.total(10)                                           # 1 total, 10 squares
            subprocess.run([sys.executable, "-c", "import runpkg.work as w; w.total(3)"],
                           check=True)                            # 1 total, 3 squares
            for method in ("spawn", "fork"):
                p = multiprocessing.get_context(method).Process(target=w.total, args=(4,))
                p.start(); p.join(); assert p.exitcode == 0       # 2 totals, 8 squares
            with multiprocessing.get_context("fork").Pool(2) as pool:
                assert pool.map(w.square, range(5)) == [0, 1, 4, 9, 16]   # 5 squares
                pool.close(); pool.join()
        """,
    )
    report = project / "report.json"
    trace = project / "trace.json"
    done = flext_ctx(
        project, "--config", "cfg.toml", "--report-json", str(report), "--trace", str(trace),
        "--", sys.executable, main,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert counts(report) == {"runpkg.work.total": 4, "runpkg.work.square": 26}
    assert "runpkg.work.square" in done.stderr  # the table
    assert f"written to {trace}" in done.stderr
    merged = check_trace_file(trace)
    pids = {e["pid"] for e in merged["traceEvents"] if e.get("name") == "runpkg.work.total"}
    assert len(pids) == 4  # one track per process that ran total()


def test_the_exit_status_is_the_commands(project: Path) -> None:
    done = flext_ctx(
        project, "--config", "cfg.toml", "--", sys.executable, "-c", "raise SystemExit(3)"
    )
    assert done.returncode == 3


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs signals")
def test_a_command_killed_by_a_signal_kills_the_runner_with_it(project: Path) -> None:
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    done = flext_ctx(project, "--config", "cfg.toml", "--", sys.executable, "-c", kill)
    assert done.returncode == -signal.SIGTERM
    assert "instrumented process" in done.stderr  # the report came first


def test_a_missing_command_is_a_usage_error(project: Path) -> None:
    done = flext_ctx(project, "--config", "cfg.toml")
    assert done.returncode == 2
    assert "run needs a command" in done.stderr
    missing = flext_ctx(project, "--config", "cfg.toml", "--", "no-such-program-here")
    assert missing.returncode == 127


def test_a_bad_configuration_is_refused_before_anything_runs(project: Path) -> None:
    (project / "bad.toml").write_text('[instrument]\ninclude = "runpkg"\n', encoding="utf-8")
    marker = project / "ran"
    done = flext_ctx(
        project, "--config", "bad.toml", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert done.returncode == 2
    assert "include" in done.stderr
    assert "bad.toml" in done.stderr
    assert not marker.exists()


def test_pytest_and_its_xdist_workers_are_instrumented(project: Path) -> None:
    pytest.importorskip("xdist")
    tests = project / "tests_here"
    tests.mkdir()
    for index in range(4):
        (tests / f"test_{index}.py").write_text(
            "import runpkg.work as w\n\ndef test_total():\n    assert w.total(5) == 30\n",
            encoding="utf-8",
        )
    report = project / "report.json"
    done = flext_ctx(
        project, "--config", "cfg.toml", "--report-json", str(report), "--",
        sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", str(tests),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    assert counts(report) == {"runpkg.work.total": 4, "runpkg.work.square": 20}


def test_a_broken_environment_never_stops_the_program(project: Path) -> None:
    bootstrap = ROOT / "src" / "flext_ctx_aspects" / "instrument" / "_bootstrap"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(bootstrap), SRC, str(project)])
    env["FLEXT_CTX_RUN"] = "{not json"
    done = subprocess.run(
        [sys.executable, "-c", "import runpkg.work as w; print(w.total(3))"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.strip() == "5"
    assert done.stderr.count("flext-ctx: instrumentation not started") == 1


def test_the_users_own_sitecustomize_still_runs(project: Path) -> None:
    user_site = project / "usersite"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text(
        "import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n", encoding="utf-8"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(user_site), str(project)])
    environment_check = "import os; print(os.environ.get('USER_SITECUSTOMIZE'))"
    done = subprocess.run(
        [sys.executable, "-m", "flext_ctx_aspects", "run", "--config", "cfg.toml", "--",
         sys.executable, "-c", environment_check],
        cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran"


def test_an_interpreter_without_the_package_runs_the_program_silently(
    project: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    bootstrap = ROOT / "src" / "flext_ctx_aspects" / "instrument" / "_bootstrap"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(bootstrap), str(project)])
    env["FLEXT_CTX_RUN"] = json.dumps(
        {"config": {"source": "x", "config": {"instrument": {"include": ["runpkg*"]}}},
         "dir": str(tmp_path), "trace": False}
    )  # fmt: skip
    done = subprocess.run(
        [str(python), "-c", "import runpkg.work as w; print(w.total(3))"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "5", "")


def test_report_verb_merges_saved_reports(project: Path) -> None:
    main = write_main(project, "import runpkg.work as w\nw.total(6)\n")
    first, second = project / "a.json", project / "b.json"
    for path in (first, second):
        flext_ctx(project, "--config", "cfg.toml", "--report-json", str(path), "--",
                  sys.executable, main, check=True)  # fmt: skip
    merged = project / "merged.json"
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run(
        [sys.executable, "-m", "flext_ctx_aspects", "report", str(first), str(second),
         "--json", str(merged)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "runpkg.work.square" in done.stdout
    assert counts(merged) == {"runpkg.work.total": 2, "runpkg.work.square": 12}
