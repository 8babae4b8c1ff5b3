"""The ``flext-ctx`` command (also ``python -m flext_ctx_aspects``).

Verbs:

* ``plan [--config FILE] [--import MODULE ...] [--format text|json]``: what would be
  instrumented (module, qualname, kind, aspects) and what would be skipped and why, without
  changing anything.
* ``check-config [FILE]``: validate a configuration and print it resolved (JSON).
* ``run [--config FILE] [--trace PATH] [--report-json PATH] -- COMMAND ARGS...``: run any
  command, and the Python processes it starts, instrumented; print the merged report; keep
  the command's exit status.
* ``report FILE... [--json PATH]``: render (and merge) saved JSON reports.

Without a file, ``plan``, ``check-config`` and ``run`` read the one ``FLEXT_CTX_CONFIG`` names.

Exit status: 0 when all went well, 2 on a usage or configuration error (the message on
stderr). Each verb is one `Verb` in `VERBS`; adding a verb is adding one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from flext_ctx_aspects.config import Config, ineffective_entries, load_config
from flext_ctx_aspects.errors import ConfigError

__all__ = ["EXIT_OK", "EXIT_USAGE", "VERBS", "Verb", "main"]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2


class UsageError(Exception):
    """A verb cannot run with what it was given (exit status 2, message on stderr)."""


@dataclass(frozen=True, slots=True)
class Verb:
    """One sub-command: its name, help line, arguments and what it runs."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, TextIO], int]


def _load(path: str | None) -> Config:
    config = load_config(path)
    for problem in ineffective_entries(config):
        if config.instrument.strict:
            raise problem
        print(f"flext-ctx: warning: {problem}", file=sys.stderr)
    return config


# --- plan -----------------------------------------------------------------------------------


def _configure_plan(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="configuration file (default: $FLEXT_CTX_CONFIG)"
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable), e.g. the application's entry point",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _run_plan(args: argparse.Namespace, out: TextIO) -> int:
    from flext_ctx_aspects.instrument._plan import make_plan

    config = _load(args.config)
    try:
        plan = make_plan(config, args.imports)
    except ImportError as error:
        raise UsageError(f"--import: {error}") from None
    if args.format == "json":
        json.dump(plan.as_dict(), out, indent=2)
        out.write("\n")
        return EXIT_OK
    rows = [
        (
            "instrument",
            s.module,
            s.qualname,
            _kind(s.kind, s.binding),
            ", ".join(a.name for a in s.aspects),
        )
        for m in plan.modules
        for s in m.selected
    ]
    rows += [("skip", s.module, s.qualname, s.reason, "") for m in plan.modules for s in m.skipped]
    rows += [("skip-module", name, "", reason, "") for name, reason in plan.skipped_modules]
    header = ("action", "module", "qualname", "kind (or why skipped)", "aspects")
    # Columns are as wide as their longest cell; reasons of skipped rows may overflow theirs.
    width_rows = [header, *(row for row in rows if row[0] == "instrument")]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    widths.append(max(len(row[3]) for row in width_rows))
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")
    selected = sum(len(m.selected) for m in plan.modules)
    skipped = sum(len(m.skipped) for m in plan.modules)
    out.write(f"{selected} to instrument, {skipped} skipped, in {len(plan.modules)} module(s)\n")
    return EXIT_OK


def _kind(kind: str, binding: str) -> str:
    if kind == "function":
        return binding
    return kind if binding == "function" else f"{kind} {binding}"


# --- check-config ---------------------------------------------------------------------------


def _configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        help="pyproject.toml or a standalone TOML file (default: $FLEXT_CTX_CONFIG)",
    )


def _run_check(args: argparse.Namespace, out: TextIO) -> int:
    config = _load(args.file)
    json.dump({"source": config.source, **config.as_dict()}, out, indent=2)
    out.write("\n")
    return EXIT_OK


# --- run ----------------------------------------------------------------------------------


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="configuration (default: $FLEXT_CTX_CONFIG)"
    )
    parser.add_argument("--trace", metavar="PATH", help="write the run's Perfetto / Chrome trace")
    parser.add_argument("--report-json", metavar="PATH", help="write the run's JSON report")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS...")


def _run_run(args: argparse.Namespace, out: TextIO) -> int:
    from flext_ctx_aspects.instrument._runner import run_command

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("run needs a command: flext-ctx run --config FILE -- COMMAND ARGS...")
    # Validated here, before anything runs; includes are looked up by the processes
    # themselves (the command may change directories or sys.path).
    config = load_config(args.config)
    return run_command(config, command, trace=args.trace, report_json=args.report_json)


# --- report -------------------------------------------------------------------------------


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="saved JSON reports")
    parser.add_argument("--json", metavar="PATH", help="also write the merged report there")
    parser.add_argument("--width", type=int, default=80, help="table width (default 80)")


def _run_report(args: argparse.Namespace, out: TextIO) -> int:
    from flext_ctx_aspects.sinks.report import (
        load_report,
        merge_reports,
        render_table,
        write_report,
    )

    merged = merge_reports(load_report(path) for path in args.files)
    table = render_table(merged, width=args.width, color=out.isatty())
    out.write(table if table.endswith("\n") else table + "\n")
    if args.json:
        write_report(merged, args.json)
    return EXIT_OK


VERBS: Final[list[Verb]] = [
    Verb(
        "run",
        "run any command, and the Python processes it starts, instrumented",
        _configure_run,
        _run_run,
    ),
    Verb(
        "plan",
        "list what would be instrumented, and what skipped and why (changes nothing)",
        _configure_plan,
        _run_plan,
    ),
    Verb(
        "check-config",
        "validate a configuration and print it resolved",
        _configure_check,
        _run_check,
    ),
    Verb(
        "report",
        "render and merge saved JSON reports",
        _configure_report,
        _run_report,
    ),
]
"""The sub-commands, in the order ``--help`` lists them."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flext-ctx", description="flext_ctx_aspects: auto-instrumentation from configuration"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        sub = verbs.add_parser(verb.name, help=verb.help, description=verb.help)
        verb.configure(sub)
        sub.set_defaults(run=verb.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``flext-ctx`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)  # exits with status 2 on a usage error
    try:
        return int(args.run(args, sys.stdout))
    except (ConfigError, UsageError) as error:
        print(f"flext-ctx: error: {error}", file=sys.stderr)
        return EXIT_USAGE
