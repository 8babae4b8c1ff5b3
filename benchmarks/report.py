"""Write the performance page from one benchmark run: ``docs/performance.md``.

Usage::

    python benchmarks/report.py RESULTS.json [--output docs/performance.md] [--mode full]

Every figure on the page comes from ``RESULTS.json`` (the ``--benchmark-json`` output of one
run of this directory) and ``thresholds.toml``: nothing is typed by hand. The goals are
evaluated with ``guard.py``'s code, in ``--mode`` (default ``full``: the release goals).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard import (
    DEFAULT_THRESHOLDS,
    STATISTICS,
    GuardError,
    Measured,
    Outcome,
    evaluate,
    load_results,
    load_thresholds,
)

REPRODUCE = "python benchmarks/run.py --mode full --report docs/performance.md"

# Groups in page order: title and what one operation is.
GROUPS: dict[str, tuple[str, str]] = {
    "sync": ("Plain function", "per call of `work(1)`"),
    "async": ("Coroutine function", "per call, awaited 1,000 times inside one running loop"),
    "generator-items": ("Generator, per item", "per item, one generator of 1,000 items"),
    "generator-create": ("Generator, per create-and-exhaust", "per one-item generator"),
    "asyncgen-items": ("Async generator, per item", "per item, one async generator of 1,000"),
    "asyncgen-create": ("Async generator, per create-and-exhaust", "per one-item generator"),
    "method": ("Instance method", "per call of `obj.handle(1)`"),
    "classmethod": ("Classmethod", "per call of `Service.create(1)`"),
    "stacking": ("Stacked vs combined aspects", "per call"),
    "disabled": ("Disabled paths", "per call"),
    "peers": ("Peers, plain function", "per call"),
    "peers-async": ("Peers, coroutine function", "per call"),
    "sinks-emit": ("Sinks, emit", "per record"),
    "sinks-timed": ("Sinks behind @timed", "per call"),
    "propagation": ("Propagation", "per inject/extract"),
    "import": ("Import time", "per interpreter (a child process per round)"),
}
VARIANT_NOTES = {
    "bare": "undecorated",
    "with_correlation": "@with_correlation",
    "service": '@service("svc", "1")',
    "timed": "@timed",
    "request_scope": '@request_scope(user_id="u")',
    "floor_timed": "hand-written floor of @timed",
    "floor_fused": "hand-written floor of the four jobs",
    "floor": "hand-written Context.run floor",
    "fused": "the four-aspect stack",
    "timed_sink": "@timed, collecting sink registered",
    "fused_sink": "four-aspect stack, collecting sink registered",
    "corr_timed": "@with_correlation @timed",
    "otel_sdk": "OpenTelemetry SDK span decorator, no processor",
    "otel_sdk_inmemory": "OpenTelemetry SDK, SimpleSpanProcessor + InMemorySpanExporter",
    "otel_noop": "OpenTelemetry API no-op tracer",
    "structlog": "structlog bound_contextvars decorator",
    "ddtrace": "ddtrace tracer.wrap, agent absent",
    "decoration_timed": "@timed(enabled=False): the original function",
    "decoration_fused": "four aspects with enabled=False: the original function",
    "runtime_timed": "@timed after set_enabled(False)",
    "runtime_fused": "four-aspect stack after set_enabled(False)",
    "wrapt_passthrough": "bare C-level wrapt pass-through",
    "stacked4": "four stacked decorators (fused by the library)",
    "combined4": "one aspect() merging the same four",
    "stacked2": "@timed @with_correlation",
    "combined2": "one aspect() merging the same two",
    "no_sink": "@timed, no sink (default)",
    "list_sink": "@timed, a list's append as sink",
    "stats": "@timed, StatsSink registered",
    "capture": "@timed inside capture_operations()",
    "stats_emit": "StatsSink.emit",
    "capture_emit": "capture_operations() sink emit",
    "inject": "the library: write outbound headers",
    "extract": "the library: read and validate inbound headers",
    "extract_scope": "the library: extract, enter and leave the scope",
    "otel_inject": "OpenTelemetry propagate.inject (Trace Context + Baggage)",
    "otel_extract": "OpenTelemetry propagate.extract",
    "nothing": "an empty statement",
    "dependencies": "import wrapt, typing_extensions",
    "flext_ctx_aspects": "import flext_ctx_aspects",
}


def _ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:,.2f} ms"
    if value >= 1e4:
        return f"{value / 1e3:,.1f} µs"
    return f"{value:,.0f} ns"


def _variant(key: str) -> str:
    return key[key.index("[") + 1 : -1] if "[" in key else key


def _goal_text(outcome: Outcome) -> str:
    limit = outcome.limit
    if limit.goal_text:
        return limit.goal_text
    unit = " ms" if limit.kind == "difference_ms" else "x"
    return f"<= {limit.goal:g}{unit}"


def _value_text(outcome: Outcome, statistic: str) -> str:
    limit = outcome.limit
    if limit.kind == "identity":
        return "original object" if outcome.passed else "NOT the original object"
    value = outcome.values.get(statistic)
    if value is None:
        return "n/a"
    if limit.kind == "difference_ms":
        return f"{value:.1f} ms" if abs(value) >= 1 else f"{value:.3g} ms"
    if 0 < value < 0.5:  # a ratio against a much slower peer: say how many times less
        return f"{value:.3f} ({1 / value:.0f}x less)"
    return f"{value:.2f}x"


def _status(outcome: Outcome) -> str:
    if outcome.skipped:
        return "not measured"
    met = outcome.goal_met
    if met is None:
        return "n/a"
    return "met" if met else "**NOT MET**"


STAT_NAMES = {"paired": "Paired", "min": "Best-of", "median": "Median"}


def _stat_columns(guarded: str) -> list[str]:
    # The guard's own statistic first, then the others.
    return [guarded, *(name for name in STATISTICS if name != guarded)]


def _header(first: str, columns: list[str], guarded: str, last: list[str]) -> list[str]:
    names = [STAT_NAMES[c] + (" (guard)" if c == guarded else "") for c in columns]
    cells = [first, *names, *last]
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def machine_section(run: dict[str, Any], document_path: Path) -> list[str]:
    versions = run.get("versions", {})
    lines = [
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {run.get('cpu_model', '?')} |",
        f"| Cores | {run.get('cores', '?')} (usable: {run.get('usable_cores', '?')}) |",
        f"| Platform | {run.get('platform', '?')} |",
    ]
    for name in (
        "python",
        "flext-ctx-aspects",
        "wrapt",
        "typing-extensions",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "structlog",
        "ddtrace",
        "pytest-benchmark",
    ):
        shown = versions.get(name, "not installed")
        lines.append(f"| {'Python' if name == 'python' else name} | {shown} |")
    gc = "off" if run.get("gc_disabled") else "on"
    run_line = (
        f"| Run | mode `{run.get('mode', '?')}`, {run.get('passes', '?')} passes, clock "
        f"`{run.get('clock', '?')}`, GC {gc} during rounds, {run.get('duration_s', '?')} s |"
    )
    load = f"start {run.get('load_at_start', [])}, end {run.get('load_at_end', [])}"
    lines += [
        run_line,
        f"| Load average (1, 5, 15 min) | {load} |",
        f"| Results | `{document_path.name}` |",
        "",
    ]
    return lines


def goals_section(outcomes: list[Outcome], guarded: str) -> list[str]:
    columns = _stat_columns(guarded)
    lines = [
        "## Goals",
        "",
        (
            "Ratios of overheads measured side by side in this run (overhead = decorated - "
            f"bare; see *Method*). The guard judges the *{STAT_NAMES[guarded]}* figure; the "
            "others are shown next to it."
        ),
        "",
        *_header("Goal", columns, guarded, ["Goal", "Status"]),
    ]
    notes: list[str] = []
    for outcome in outcomes:
        if outcome.limit.goal is None:
            continue
        values = [_value_text(outcome, c) for c in columns]
        lines.append(
            f"| {outcome.limit.title} | {' | '.join(values)} | {_goal_text(outcome)} | "
            f"{_status(outcome)} |"
        )
        if outcome.limit.note:
            notes.append(f"- {outcome.limit.title}: {outcome.limit.note}")
        if outcome.statistic != guarded:
            notes.append(
                f"- {outcome.limit.title}: judged on the {STAT_NAMES[outcome.statistic]} figure."
            )
    unmet = [o for o in outcomes if o.limit.goal is not None and o.goal_met is False]
    lines.append("")
    if notes:
        lines += [*notes, ""]
    if unmet:
        lines += ["Goals not met in this run:", ""]
        for outcome in unmet:
            statistic = STAT_NAMES[outcome.statistic].lower()
            lines.append(
                f"- **{outcome.limit.title}**: measured "
                f"{_value_text(outcome, outcome.statistic)} ({statistic}) against "
                f"{_goal_text(outcome)}."
            )
        lines.append("")
    else:
        lines += ["Every goal is met in this run.", ""]
    return lines


def ratios_section(outcomes: list[Outcome], guarded: str) -> list[str]:
    columns = _stat_columns(guarded)
    lines = [
        "## Other ratios (regression limits of the CI guard)",
        "",
        *_header("Ratio", columns, guarded, ["CI limit (short mode)"]),
    ]
    for outcome in outcomes:
        if outcome.limit.goal is not None:
            continue
        short = outcome.limit.limits.get("short")
        unit = " ms" if outcome.limit.kind == "difference_ms" else "x"
        limit = f"<= {short:g}{unit}" if short is not None else "-"
        if outcome.skipped:
            values = ["not measured"] + [""] * (len(columns) - 1)
        else:
            values = [_value_text(outcome, c) for c in columns]
        lines.append(f"| {outcome.limit.title} | {' | '.join(values)} | {limit} |")
    lines.append("")
    return lines


def group_tables(results: dict[str, Measured]) -> list[str]:
    lines = ["## All benchmarks", ""]
    lines.append(
        "Per operation (the unit is given per group). *Overhead* is the best-of minus the "
        "best-of of the group's `bare` benchmark."
    )
    lines.append("")
    by_group: dict[str, list[Measured]] = {}
    others: set[str] = set()
    for measured in results.values():
        if "calls_per_round" not in measured.extra_info:
            others.add(measured.key.split("[", 1)[0])  # not a guard benchmark: see below
            continue
        by_group.setdefault(measured.group, []).append(measured)
    ordered = [g for g in GROUPS if g in by_group] + sorted(set(by_group) - set(GROUPS))
    for group in ordered:
        title, unit = GROUPS.get(group, (group, "per operation"))
        members = by_group[group]
        bare = next((m for m in members if _variant(m.key) == "bare"), None)
        if group == "peers" and bare is None:
            bare = results.get("test_peers[bare]")
        lines += [
            f"### {title}",
            "",
            f"Group `{group}`, {unit}.",
            "",
            "| Benchmark | What | Median | Best-of | Overhead (best-of) | Rounds |",
            "|---|---|---|---|---|---|",
        ]
        for measured in members:
            variant = _variant(measured.key)
            overhead = "" if bare is None or measured is bare else _ns(measured.min - bare.min)
            lines.append(
                f"| `{measured.key}` | {VARIANT_NOTES.get(variant, '')} | "
                f"{_ns(measured.median)} | {_ns(measured.min)} | {overhead} | "
                f"{measured.rounds} |"
            )
        lines.append("")
    if others:
        lines += [
            (
                f"The same run also measured {len(others)} design benchmarks that are not part "
                "of the guard (other files in `benchmarks/`, e.g. the context-state design "
                "behind docs/architecture.md); they are not normalised per operation and are "
                "left out of these tables."
            ),
            "",
        ]
    return lines


def import_section(results: dict[str, Measured], outcomes: list[Outcome]) -> list[str]:
    ours = results.get("test_import[flext_ctx_aspects]")
    deps = results.get("test_import[dependencies]")
    if ours is None or deps is None:
        return []
    paired = next(
        (o for o in outcomes if o.limit.subject == ours.key and "paired" in o.values), None
    )
    paired_text = (
        f"{paired.values['paired']:.1f} ms as the median of the per-round differences "
        "(each child importing the library right after one importing its dependencies), "
        if paired is not None
        else ""
    )
    summary = (
        f"Child-process figures over {ours.rounds} interpreters each: "
        f"`import wrapt, typing_extensions` median {deps.median / 1e6:.1f} ms "
        f"(best-of {deps.min / 1e6:.1f} ms), `import flext_ctx_aspects` median "
        f"{ours.median / 1e6:.1f} ms (best-of {ours.min / 1e6:.1f} ms). The library adds "
        f"{paired_text}{(ours.median - deps.median) / 1e6:.1f} ms as the difference of the "
        f"medians, {(ours.min - deps.min) / 1e6:.1f} ms as the difference of the best-of "
        "figures. The spread between these is the machine's slow and fast phases, which "
        "stretch CPU time too; the best-of figure is the closest to a quiet machine."
    )
    lines = ["## Import time in detail", "", summary, ""]
    dep_profile = deps.extra_info.get("importtime", {})
    via = dep_profile.get("imported_via", {})
    cumulative = dep_profile.get("cumulative_us", {})
    if via:
        lines += [
            (
                "What the dependencies themselves import (one `python -X importtime` child; "
                "these figures include the tool's own overhead):"
            ),
            "",
        ]
        for module, chain in via.items():
            importers = " → ".join(f"`{name}`" for name in chain[:-1])
            lines.append(
                f"- `{module}` ({cumulative.get(module, 0) / 1000:.1f} ms cumulative), "
                f"imported by {importers}"
            )
        if "wrapt" in cumulative:
            lines.append(f"- `wrapt` in total: {cumulative['wrapt'] / 1000:.1f} ms cumulative")
        lines.append("")
    own = ours.extra_info.get("importtime", {}).get("library_self_us", {})
    if own:
        lines += [
            "The library's own modules with the largest self time (`-X importtime`):",
            "",
            "| Module | Self time |",
            "|---|---|",
            *(f"| `{name}` | {value / 1000:.1f} ms |" for name, value in own.items()),
            "",
        ]
    return lines


METHOD = [
    (
        "Each benchmark runs rounds of many operations (1,000 calls, or the items of one "
        "1,000-item generator, ...) timed as one, so the timer is read twice per round, not "
        "per ~100 ns call; every figure is the round time divided by the operations per "
        "round (`extra_info.calls_per_round`)."
    ),
    (
        "Every benchmark runs in several passes (pass 0 of every variant of a test, then "
        "pass 1, ...); *Best-of* (minimum) and *Median* are taken over the rounds of all "
        "passes."
    ),
    (
        "*Paired* (the figure the guard judges): right before each round of a ratio's "
        "subject, one round of each benchmark it is compared with runs (its reference and "
        "baseline, timed the same way); each round gives one ratio from figures taken "
        "milliseconds apart, and the figure is the median of those. This machine alternates "
        "between a fast and a ~1.5-2x slower phase for tenths of a second at a time, so "
        "best-of or median figures of benchmarks measured seconds apart can come from "
        "different phases; paired rounds cannot. Ratios without such companions (across "
        "test functions) are paired by pass instead."
    ),
    (
        "The floors (`benchmarks/floors.py`) are hand-written closures doing the same work "
        "with nothing else: two `perf_counter_ns` reads, one ContextVar set/reset and a "
        "record tuple appended (timed); a new id from `random.getrandbits(128)`, parent "
        "tracking, service and request fields in one tuple, timing, one set/reset (fused); "
        "each step run by `ctx.run(inner.send, value)` in a private Context (generators)."
    ),
    (
        "The floors always append a record; the library builds none when no sink is "
        "registered (its default). The `*_sink` variants register the cheapest collecting "
        "sink (a list's `append`) for comparison."
    ),
    (
        "Import figures: each round is a fresh interpreter timing its one import statement "
        "(process CPU time), with the bytecode of every module cached beforehand in a "
        "private `PYTHONPYCACHEPREFIX`, as after `pip install`."
    ),
]


def method_section(run: dict[str, Any]) -> list[str]:
    clock = (
        "process CPU time (`time.process_time`): on a shared machine wall time also "
        "charges the benchmark for the time other processes run"
        if run.get("clock", "cpu") == "cpu"
        else "wall time (`time.perf_counter`)"
    )
    return [
        "## Method",
        "",
        *(f"- {item}" for item in METHOD),
        f"- Rounds are timed in {clock}.",
        "",
    ]


def render(results_path: Path, thresholds_path: Path, mode: str) -> str:
    results, run = load_results(results_path)
    limits, settings = load_thresholds(thresholds_path)
    guarded = settings.get("statistic", "min")
    if guarded not in STATISTICS:
        raise GuardError(f"{thresholds_path}: unknown statistic {guarded!r}")
    outcomes = evaluate(limits, results, mode, guarded, str(run.get("engine", "")))
    stamp = str(run.get("datetime") or "")[:16].replace("T", " ") or "date unknown"
    intro = (
        "What the aspects cost per call, measured against hand-written floors doing the same "
        "work and against the peers (OpenTelemetry, structlog, ddtrace), in one run of the "
        f"benchmark suite in `benchmarks/` ({run.get('mode', '?')} mode, {stamp})."
    )
    ci = (
        "CI runs the short mode, which fails when a ratio crosses its limit in "
        "`benchmarks/thresholds.toml`: `python benchmarks/run.py --mode short`."
    )
    lines = [
        "# Performance",
        "",
        "<!-- Generated by benchmarks/report.py from a benchmark run; do not edit by hand. -->",
        "",
        intro,
        "",
        "Reproduce (installs the peers measured side by side):",
        "",
        "```console",
        "pip install -e '.[bench]'",
        REPRODUCE,
        "```",
        "",
        ci,
        "",
    ]
    lines += goals_section(outcomes, guarded)
    lines += machine_section(run, results_path)
    lines += ratios_section(outcomes, guarded)
    lines += group_tables(results)
    lines += import_section(results, outcomes)
    lines += method_section(run)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/performance.md from a run.")
    parser.add_argument("results", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="default: standard output")
    parser.add_argument("--thresholds", type=Path, default=DEFAULT_THRESHOLDS)
    parser.add_argument("--mode", choices=("short", "full"), default="full")
    args = parser.parse_args(argv)
    try:
        page = render(args.results, args.thresholds, args.mode)
    except GuardError as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(page)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page, encoding="utf-8")
        print(f"report: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
