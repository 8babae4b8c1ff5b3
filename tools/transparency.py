"""Transparency harness: a third-party test suite, plain and instrumented, must not notice.

For each named suite of ``tools/transparency_suites.toml`` (or ``--suites FILE``) this

1. downloads the pinned sdist (``pip download --no-binary :all: --no-deps NAME==VERSION``),
   unpacks it under ``--workdir`` (default: a new temporary directory), creates a virtualenv
   there (or uses ``--python``) and installs the unpacked sdist, the suite's test
   requirements and this repository (``pip install -e REPO``), whose bytecode it compiles as
   a regular install would;
2. runs the suite's pytest command plain with ``--junitxml``, then a second time
   instrumented: ``timed`` and ``with_correlation`` on every function of the package
   (``include`` of the suite), through
   ``python -m flext_ctx_aspects run --config CFG --report-json R -- python -m pytest ...``
   (``--instrument-mode runner``) or, in-process, through the pytest plugin
   ``tools/transparency_plugin.py`` that calls ``flext_ctx_aspects.instrument.instrument``
   before collection (``--instrument-mode inproc``); ``auto`` (the default) takes the runner
   when the installed tree has one, else the in-process plugin, else stops with exit code 3
   and says which API is missing;
3. compares the per-test outcomes of the two junit files (``tools/transparency_junit.py``),
   prints both counts and every differing test, and checks that the report JSON proves the
   instrumentation was active: at least ``--min-calls`` calls over at least
   ``--min-functions`` distinct operation names.

Exit status: 0 every suite identical and active; 1 some suite differs or shows too little
activity; 2 bad usage or a setup step (download, install) failed; 3 the instrumentation API
is missing from the tree under test. A ``summary.json`` per suite in the work directory keeps
the counts and wall times. Usage::

    python tools/transparency.py list
    python tools/transparency.py run toolz boltons --workdir /tmp/transparency
    python tools/transparency.py compare plain.xml instrumented.xml
    python tools/transparency.py check-report report.json --min-calls 1000

See ``docs/transparency.md`` for the chosen suites and why.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli there
    import tomli as tomllib

from transparency_junit import JunitError, compare_files, count_outcomes, read_outcomes

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
DEFAULT_SUITES = TOOLS / "transparency_suites.toml"
DEFAULT_ASPECTS = ("timed", "with_correlation")
DEFAULT_RUNNER = "{python} -m flext_ctx_aspects run --config {config} --report-json {report} --"
EXIT_DIFFERENT, EXIT_SETUP, EXIT_NO_API = 1, 2, 3


class SetupError(RuntimeError):
    """A step before the comparison failed (bad spec, download, install)."""


class MissingApiError(RuntimeError):
    """The tree under test has neither the runner nor ``instrument()``."""


@dataclass(frozen=True, slots=True)
class Suite:
    """One third-party suite: the pinned package and how to run its tests.

    Attributes:
        key: the table name in the suites file.
        requirement: ``NAME==VERSION``, exactly pinned.
        include: module globs to instrument (the package itself).
        test_requires: extra requirements to install for the tests.
        pytest_args: arguments after ``python -m pytest``, run from the unpacked sdist.
        env: extra environment for install and test runs (e.g. pure-Python switches).
        min_calls: this suite's activity threshold, overriding ``--min-calls`` (None: the option).
        min_functions: same for ``--min-functions``.
    """

    key: str
    requirement: str
    include: tuple[str, ...]
    test_requires: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    min_calls: int | None = None
    min_functions: int | None = None


def _strings(table: dict[str, Any], key: str, where: str, *, required: bool = False) -> list[str]:
    value = table.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SetupError(f"{where}: `{key}` must be a list of strings (got {value!r})")
    return value


def load_suites(path: Path) -> dict[str, Suite]:
    """Read a suites file: one ``[suites.KEY]`` table per package.

    Raises:
        SetupError: the file is missing, not TOML, or a table is malformed.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SetupError(f"{path}: cannot read suites file ({exc})") from None
    suites: dict[str, Suite] = {}
    for key, table in data.get("suites", {}).items():
        where = f"{path} [suites.{key}]"
        requirement = table.get("requirement")
        if not isinstance(requirement, str) or requirement.count("==") != 1:
            raise SetupError(
                f"{where}: `requirement` must be 'NAME==VERSION' (got {requirement!r})"
            )
        env = table.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise SetupError(f"{where}: `env` must be a table of strings (got {env!r})")
        thresholds = {}
        for name in ("min_calls", "min_functions"):
            value = table.get(name)
            if value is not None and (type(value) is not int or value < 0):
                raise SetupError(
                    f"{where}: `{name}` must be a non-negative integer (got {value!r})"
                )
            thresholds[name] = value
        suites[key] = Suite(
            key=key,
            requirement=requirement,
            include=tuple(_strings(table, "include", where, required=True)),
            test_requires=tuple(_strings(table, "test_requires", where)),
            pytest_args=tuple(_strings(table, "pytest_args", where)),
            env=dict(env),
            **thresholds,
        )
    if not suites:
        raise SetupError(f"{path}: no [suites.NAME] tables")
    return suites


def _run(
    command: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> int:
    """Run ``command``; with ``log``, its output goes there instead of the console."""
    print("$", shlex.join(command), flush=True)
    if log is None:
        return subprocess.run(command, cwd=cwd, env=env, check=False).returncode  # noqa: S603
    with log.open("w", encoding="utf-8") as out:
        return subprocess.run(  # noqa: S603
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode


def _setup_step(command: list[str], log: Path, **kwargs: Any) -> None:
    if _run(command, log=log, **kwargs) != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        raise SetupError(f"step failed: {shlex.join(command)} (log {log}):\n{tail}")


def base_env(suite: Suite) -> dict[str, str]:
    """The environment of every child: ours minus PYTHONPATH (the venv decides), plus suite's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(suite.env)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def unpack(archive: Path, into: Path) -> Path:
    """Unpack an sdist (.tar.gz or .zip) and return its single top-level directory."""
    into.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(into)  # noqa: S202 - an sdist we just downloaded from the registry
    else:
        with tarfile.open(archive) as tarred:
            if hasattr(tarfile, "data_filter"):  # 3.10.12+, 3.11.4+: refuse links out of `into`
                tarred.extractall(into, filter="data")
            else:
                tarred.extractall(into)  # noqa: S202 - an sdist from the registry we trust
    tops = [p for p in into.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise SetupError(f"{archive}: expected one top-level directory, found {tops}")
    return tops[0]


def prepare(
    suite: Suite, work: Path, python: str | None, *, install: bool, repo: Path
) -> tuple[str, Path]:
    """Download, unpack and install a suite; return (interpreter, unpacked sdist directory)."""
    dist, logs = work / "dist", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = base_env(suite)
    if not any(dist.glob("*")):
        _setup_step(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                suite.requirement,
                "-d",
                str(dist),
            ],
            logs / "download.log",
            env=env,
        )
    archives = sorted(dist.iterdir())
    if len(archives) != 1:
        raise SetupError(f"{dist}: expected one sdist, found {[a.name for a in archives]}")
    source_root = work / "src"
    source = (
        next(source_root.iterdir()) if source_root.is_dir() else unpack(archives[0], source_root)
    )
    if python is None:
        venv = work / "venv"
        if not venv.is_dir():
            _setup_step([sys.executable, "-m", "venv", str(venv)], logs / "venv.log", env=env)
        python = str(venv / "bin" / "python")
        # A virtualenv of an earlier run in the same --workdir is reused as it was set up,
        # unless that was for another flext_ctx_aspects tree.
        marker = work / "installed"
        install = install and not (marker.exists() and marker.read_text() == str(repo))
    if install:
        _setup_step(
            [python, "-m", "pip", "install", str(source), *suite.test_requires, "-e", str(repo)],
            logs / "install.log",
            env=env,
        )
        (work / "installed").write_text(str(repo))
    # A regular install compiles the bytecode; the editable one of REPO does not, and under
    # PYTHONDONTWRITEBYTECODE (CI) every instrumented process would compile the library's
    # modules from source (~0.1 s a run) where the plain runs import nothing of it.
    package = repo / "src" / "flext_ctx_aspects"
    if package.is_dir():
        _setup_step([python, "-m", "compileall", "-q", str(package)], logs / "compile.log", env=env)
    return python, source


def _probe(python: str, code: str, env: dict[str, str]) -> bool:
    done = subprocess.run([python, "-c", code], env=env, check=False, capture_output=True)  # noqa: S603
    return done.returncode == 0


def choose_mode(requested: str, python: str, env: dict[str, str]) -> str:
    """Resolve ``auto`` to ``runner`` or ``inproc`` from what the installed tree offers.

    Raises:
        MissingApiError: the requested (or, for ``auto``, any) way is not available.
    """
    has_runner = _probe(python, "import flext_ctx_aspects.__main__", env)
    has_api = _probe(python, "from flext_ctx_aspects.instrument import instrument", env)
    where = (
        subprocess.run(  # noqa: S603
            [python, "-c", "import flext_ctx_aspects as f; print(f.__file__)"],
            env=env,
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "nowhere (flext_ctx_aspects not importable)"
    )
    if requested == "runner" and not has_runner:
        raise MissingApiError(f"no `python -m flext_ctx_aspects run` in the tree at {where}")
    if requested == "inproc" and not has_api:
        raise MissingApiError(
            f"no flext_ctx_aspects.instrument.instrument in the tree at {where}: "
            "the in-process instrumented run cannot be made"
        )
    if requested == "auto":
        if has_runner:
            return "runner"
        if not has_api:
            raise MissingApiError(
                f"neither `python -m flext_ctx_aspects run` nor "
                f"flext_ctx_aspects.instrument.instrument exists in the tree at {where}: "
                "nothing to run the instrumented suite with"
            )
        return "inproc"
    return requested


def write_config(suite: Suite, path: Path, aspects: tuple[str, ...]) -> dict[str, list[str]]:
    """Write the instrumentation config (DESIGN.md format) and return its instrument table."""
    table = {"include": list(suite.include), "aspects": list(aspects)}
    lines = ["[tool.flext_ctx_aspects.instrument]"]
    lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def check_report(path: Path, min_calls: int, min_functions: int) -> tuple[bool, str]:
    """Check that a statistics report proves activity.

    Args:
        path: a report JSON (``{"operations": [{"name": ..., "count": ...}, ...]}``).
        min_calls: the least total number of calls over all operations.
        min_functions: the least number of distinct operation names that ran.

    Returns:
        (whether both thresholds are met, a one-line explanation).
    """
    try:
        operations = json.loads(path.read_text(encoding="utf-8"))["operations"]
        counts = {str(op["name"]): int(op["count"]) for op in operations}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{path}: no readable statistics report ({type(exc).__name__}: {exc})"
    calls = sum(counts.values())
    functions = sum(1 for count in counts.values() if count > 0)
    verdict = calls >= min_calls and functions >= min_functions
    return verdict, (
        f"instrumentation activity: {calls} calls over {functions} wrapped functions "
        f"(need >= {min_calls} calls over >= {min_functions}): {'ok' if verdict else 'TOO LITTLE'}"
    )


def _timed_pytest(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> tuple[int, float]:
    start = time.perf_counter()
    code = _run(command, cwd=cwd, env=env, log=log)
    return code, time.perf_counter() - start


def run_suite(suite: Suite, work: Path, args: argparse.Namespace) -> int:
    """Set up one suite, run it both ways, compare; return its exit status."""
    python, source = prepare(suite, work, args.python, install=not args.no_install, repo=args.repo)
    env = base_env(suite)
    mode = "plain only" if args.plain_only else choose_mode(args.instrument_mode, python, env)
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    plain_xml, instr_xml, report = (
        runs / "plain.xml",
        runs / "instrumented.xml",
        runs / "report.json",
    )
    report.unlink(missing_ok=True)
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider", *suite.pytest_args]
    plain_code, plain_s = _timed_pytest(
        [*pytest, f"--junitxml={plain_xml}"], source, env, runs / "plain.log"
    )
    if args.plain_only:
        counts = count_outcomes(read_outcomes(plain_xml))
        print(
            f"[{suite.key}] {suite.requirement}: plain only; pytest exit {plain_code}; "
            f"wall {plain_s:.1f} s; {sum(counts.values())} tests: {counts}; logs in {runs}"
        )
        return 0 if plain_code == 0 else EXIT_DIFFERENT
    table = write_config(suite, work / "instrument.toml", tuple(args.aspects))
    instr_env = dict(env)
    if mode == "runner":
        prefix = shlex.split(
            args.runner.format(
                python=shlex.quote(python),
                config=shlex.quote(str(work / "instrument.toml")),
                report=shlex.quote(str(report)),
            )
        )
        command = [*prefix, *pytest, f"--junitxml={instr_xml}"]
    else:
        instr_env["PYTHONPATH"] = str(TOOLS)
        instr_env["FLEXT_TRANSPARENCY_CONFIG"] = json.dumps(table)
        instr_env["FLEXT_TRANSPARENCY_REPORT"] = str(report)
        command = [*pytest, "-p", "transparency_plugin", f"--junitxml={instr_xml}"]
    instr_code, instr_s = _timed_pytest(command, source, instr_env, runs / "instrumented.log")
    print(
        f"[{suite.key}] {suite.requirement}: mode {mode}; pytest exit {plain_code} plain, "
        f"{instr_code} instrumented; wall {plain_s:.1f} s plain, {instr_s:.1f} s instrumented "
        f"({instr_s / plain_s:.2f}x); logs in {runs}"
    )
    try:
        comparison = compare_files(plain_xml, instr_xml)
    except JunitError as exc:
        print(f"[{suite.key}] FAILED: {exc}")
        return EXIT_DIFFERENT
    for line in comparison.lines():
        print(f"[{suite.key}] {line}")
    active, activity = check_report(
        report,
        args.min_calls if suite.min_calls is None else suite.min_calls,
        args.min_functions if suite.min_functions is None else suite.min_functions,
    )
    print(f"[{suite.key}] {activity}")
    ran = sum(comparison.plain.values())
    summary = {
        "suite": suite.key,
        "requirement": suite.requirement,
        "mode": mode,
        "plain": comparison.plain,
        "instrumented": comparison.instrumented,
        "differences": comparison.difference_count,
        "active": active,
        "activity": activity,
        "plain_seconds": round(plain_s, 2),
        "instrumented_seconds": round(instr_s, 2),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    ok = comparison.identical and active and ran > 0
    print(f"[{suite.key}] {'PASS' if ok else 'FAIL'}" + ("" if ran else " (no test ran)"))
    return 0 if ok else EXIT_DIFFERENT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transparency", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="set up suites and run each plain and instrumented")
    run.add_argument("suites", nargs="+", help="suite names from the suites file")
    run.add_argument("--suites-file", type=Path, default=DEFAULT_SUITES)
    run.add_argument("--workdir", type=Path, help="kept work directory (default: a temp dir)")
    run.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="flext_ctx_aspects tree to install (default: this one)",
    )
    run.add_argument("--python", help="use this interpreter instead of creating a virtualenv")
    run.add_argument(
        "--no-install",
        action="store_true",
        help="skip pip install: --python is ready (a --workdir venv is reused anyway)",
    )
    run.add_argument(
        "--plain-only",
        action="store_true",
        help="set up and run plain only: does the suite pass here, how long",
    )
    run.add_argument("--instrument-mode", choices=("auto", "runner", "inproc"), default="auto")
    run.add_argument(
        "--runner",
        default=DEFAULT_RUNNER,
        help="runner-mode command prefix; {python} {config} {report} are filled in",
    )
    run.add_argument("--aspects", nargs="+", default=list(DEFAULT_ASPECTS))
    run.add_argument("--min-calls", type=int, default=1000)
    run.add_argument("--min-functions", type=int, default=100)
    listing = verbs.add_parser("list", help="list the suites of the suites file")
    listing.add_argument("--suites-file", type=Path, default=DEFAULT_SUITES)
    compare = verbs.add_parser("compare", help="compare the per-test outcomes of two junit files")
    compare.add_argument("plain", type=Path)
    compare.add_argument("instrumented", type=Path)
    report = verbs.add_parser("check-report", help="check a report JSON proves activity")
    report.add_argument("report", type=Path)
    report.add_argument("--min-calls", type=int, default=1000)
    report.add_argument("--min-functions", type=int, default=100)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.verb == "compare":
            comparison = compare_files(args.plain, args.instrumented)
            print("\n".join(comparison.lines()))
            return 0 if comparison.identical else EXIT_DIFFERENT
        if args.verb == "check-report":
            ok, line = check_report(args.report, args.min_calls, args.min_functions)
            print(line)
            return 0 if ok else EXIT_DIFFERENT
        suites = load_suites(args.suites_file)
        if args.verb == "list":
            for suite in suites.values():
                print(f"{suite.key}: {suite.requirement} include={list(suite.include)}")
            return 0
        unknown = [name for name in args.suites if name not in suites]
        if unknown:
            print(
                f"transparency: unknown suites {unknown}; {args.suites_file} has {sorted(suites)}",
                file=sys.stderr,
            )
            return EXIT_SETUP
        root = args.workdir or Path(tempfile.mkdtemp(prefix="transparency-"))
        verdict = (
            "all suites passed plain" if args.plain_only else "all suites identical and active"
        )
        status = 0
        for name in args.suites:
            status = max(status, run_suite(suites[name], root / name, args))
    except (SetupError, JunitError) as exc:
        print(f"transparency: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except MissingApiError as exc:
        print(f"transparency: {exc}", file=sys.stderr)
        return EXIT_NO_API
    print(f"transparency: {verdict if status == 0 else 'FAILED'} (work dir {root})")
    return status


if __name__ == "__main__":
    sys.exit(main())
