"""The overhead guard: check the ratios of one benchmark run against ``thresholds.toml``.

Usage::

    python benchmarks/guard.py RESULTS.json [--mode short|full] [--thresholds PATH]
                                            [--statistic min|median]

``RESULTS.json`` is the ``--benchmark-json`` output of ONE pytest-benchmark run of this
directory. Every figure the guard compares comes from that run: absolute times are not
stable on a shared machine, ratios measured side by side are.

How a figure is computed:

* A benchmark's rounds each run ``extra_info["calls_per_round"]`` operations; every round
  time is divided by it (ns per call, per item, ...).
* The passes of a benchmark (``test_sync[timed-p0]``, ``test_sync[timed-p1]``, ...) are
  merged: ``test_sync[timed]`` gets the rounds of all of them.
* Its statistic is ``min`` (best-of over all rounds of all passes) or ``median``. A ratio
  may also be ``paired``: the subject's benchmark ran one round of each benchmark it is
  compared with right before each of its own rounds (``extra_info["companions"]``), so
  there is one ratio per round from figures taken milliseconds apart; the figure is the
  median of those. Without companions, ``paired`` pairs passes instead: per pass the ratio
  of the best-of figures of that pass, then the median over passes. The default statistic is
  set in ``thresholds.toml``; each limit may name its own.
* ``overhead = subject - baseline`` (e.g. decorated call minus bare call), and a limit of
  kind ``overhead_ratio`` compares ``overhead(subject) / overhead(reference)`` with its
  limit; kind ``difference_ms`` compares ``subject - reference`` in milliseconds; kind
  ``identity`` checks that the benchmarks recorded ``extra_info["identity"] = True``.

Exit status: 0 when every limit holds, 1 when one does not (one message per violated limit
with the measured value), 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency provides tomli
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
DEFAULT_THRESHOLDS = HERE / "thresholds.toml"
MODES = ("short", "full")
STATISTICS = ("min", "median", "paired")
_PASS = re.compile(r"-p(\d+)\]$")


class GuardError(Exception):
    """The results or the thresholds cannot be used (exit status 2)."""


# --- results ----------------------------------------------------------------------------------


@dataclass
class Measured:
    """One benchmark of the run, its passes merged, in ns per operation."""

    key: str
    group: str
    unit: str
    per_op_ns: list[float]  # one figure per round, all passes
    extra_info: dict[str, Any] = field(default_factory=dict)
    by_pass: dict[int, list[float]] = field(default_factory=dict)
    # key of a companion benchmark -> pass -> its figure before each round of this one
    companions: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    @property
    def passes(self) -> int:
        return len(self.by_pass)

    @property
    def min(self) -> float:
        return min(self.per_op_ns)

    @property
    def median(self) -> float:
        return statistics.median(self.per_op_ns)

    def stat(self, name: str) -> float:
        """``min`` or ``median`` over all rounds (``paired`` is a property of a ratio)."""
        return self.median if name == "median" else self.min

    @property
    def rounds(self) -> int:
        return len(self.per_op_ns)


def benchmark_key(name: str) -> str:
    """``test_sync[timed-p1]`` -> ``test_sync[timed]``: the id thresholds refer to."""
    return _PASS.sub("]", name)


def load_results(path: Path) -> tuple[dict[str, Measured], dict[str, Any]]:
    """Read a pytest-benchmark JSON file: merged benchmarks by key, and the run's metadata."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GuardError(f"cannot read benchmark results {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise GuardError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    merged: dict[str, Measured] = {}
    for entry in document["benchmarks"]:
        extra = entry.get("extra_info") or {}
        calls = extra.get("calls_per_round", 1)
        stats = entry.get("stats") or {}
        # Rounds of pedantic(iterations=1) benchmarks: data holds one duration per round.
        iterations = stats.get("iterations", 1) or 1
        data = stats.get("data") or [stats.get("min", 0.0), stats.get("median", 0.0)]
        per_op = [value / iterations / calls * 1e9 for value in data]
        key = benchmark_key(entry["name"])
        found = _PASS.search(entry["name"])
        index = int(found.group(1)) if found else 0
        measured = merged.get(key)
        if measured is None:
            measured = merged[key] = Measured(
                key=key,
                group=entry.get("group") or "",
                unit=extra.get("unit", "call"),
                per_op_ns=[],
                extra_info=dict(extra),
            )
        measured.per_op_ns.extend(per_op)
        measured.by_pass.setdefault(index, []).extend(per_op)
        for companion, figures in (extra.get("companions") or {}).items():
            measured.companions.setdefault(companion, {})[index] = list(figures)
    if not merged:
        raise GuardError(f"{path} holds no benchmark")
    run = dict(document.get("flext_bench") or {})
    run.setdefault("datetime", document.get("datetime", ""))
    return merged, run


# --- thresholds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One entry of ``thresholds.toml``."""

    id: str
    title: str
    kind: str
    subject: str = ""
    reference: str = ""
    baseline: str = ""
    reference_baseline: str = ""
    benchmarks: tuple[str, ...] = ()
    statistic: str | None = None
    goal: float | None = None
    goal_text: str = ""
    note: str = ""
    optional: bool = False
    engine: str = ""  # "compiled" or "python": judged only on runs of that engine
    limits: dict[str, float] = field(default_factory=dict)

    def limit_for(self, mode: str) -> float | None:
        return self.limits.get(mode)


_KINDS = ("overhead_ratio", "difference_ms", "identity")
_ENGINES = ("", "compiled", "python")  # flext_ctx_aspects.implementation


def load_thresholds(path: Path) -> tuple[list[Limit], dict[str, Any]]:
    """Read and check ``thresholds.toml``."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GuardError(f"cannot read thresholds {path}: {exc}") from exc
    settings = document.get("settings", {})
    limits: list[Limit] = []
    seen: set[str] = set()
    for index, raw in enumerate(document.get("limit", [])):
        where = f"{path.name} [[limit]] #{index + 1}"
        ident = raw.get("id")
        if not isinstance(ident, str) or not ident:
            raise GuardError(f"{where}: 'id' must be a non-empty string (got {ident!r})")
        if ident in seen:
            raise GuardError(f"{where}: duplicate id {ident!r}")
        seen.add(ident)
        kind = raw.get("kind", "overhead_ratio")
        if kind not in _KINDS:
            raise GuardError(f"{where} ({ident}): 'kind' must be one of {_KINDS} (got {kind!r})")
        statistic = raw.get("statistic")
        if statistic is not None and statistic not in STATISTICS:
            raise GuardError(f"{where} ({ident}): 'statistic' must be min or median")
        mode_limits = {mode: float(raw[mode]) for mode in MODES if mode in raw}
        if kind != "identity" and not mode_limits:
            raise GuardError(f"{where} ({ident}): needs a 'short' and/or 'full' limit")
        if kind == "identity" and not raw.get("benchmarks"):
            raise GuardError(f"{where} ({ident}): an identity limit lists 'benchmarks'")
        if kind != "identity" and not (raw.get("subject") and raw.get("reference")):
            raise GuardError(f"{where} ({ident}): needs 'subject' and 'reference'")
        engine = raw.get("engine", "")
        if engine not in _ENGINES:
            raise GuardError(
                f"{where} ({ident}): 'engine' must be one of {_ENGINES[1:]} (got {engine!r})"
            )
        limits.append(
            Limit(
                id=ident,
                title=raw.get("title", ident),
                kind=kind,
                subject=raw.get("subject", ""),
                reference=raw.get("reference", ""),
                baseline=raw.get("baseline", ""),
                reference_baseline=raw.get("reference_baseline", raw.get("baseline", "")),
                benchmarks=tuple(raw.get("benchmarks", ())),
                statistic=statistic,
                goal=float(raw["goal"]) if "goal" in raw else None,
                goal_text=raw.get("goal_text", ""),
                note=raw.get("note", ""),
                optional=bool(raw.get("optional", False)),
                engine=engine,
                limits=mode_limits,
            )
        )
    return limits, settings


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """A limit evaluated on one run."""

    limit: Limit
    statistic: str
    value: float | None = None  # with the limit's statistic
    values: dict[str, float] = field(default_factory=dict)  # by statistic
    threshold: float | None = None
    passed: bool = True
    skipped: str = ""  # why an optional limit was not evaluated
    how: str = ""  # how the judged figure was computed
    message: str = ""
    parts: dict[str, float] = field(default_factory=dict)  # ns figures used, by role

    @property
    def goal_met(self) -> bool | None:
        """Whether the value meets the goal (within the full-mode limit), if there is one."""
        if self.value is None or self.limit.goal is None:
            return None
        if self.limit.kind == "identity":
            return self.passed
        return self.value <= self.limit.limits.get("full", self.limit.goal)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _compute(
    limit: Limit, results: dict[str, Measured], statistic: str
) -> tuple[float, dict[str, float], str]:
    """Return the limit's figure with ``statistic``, the ns figures behind it, and how."""
    roles = {
        "subject": limit.subject,
        "reference": limit.reference,
        "baseline": limit.baseline,
        "reference_baseline": limit.reference_baseline,
    }
    roles = {role: key for role, key in roles.items() if key}
    difference = limit.kind == "difference_ms"
    if statistic != "paired":
        parts = {role: results[key].stat(statistic) for role, key in roles.items()}
        how = "best-of" if statistic == "min" else "median"
        return _figure(limit, parts, difference), _with_defaults(parts), how
    parts = _with_defaults({role: results[key].stat("min") for role, key in roles.items()})
    subject = results[limit.subject]
    others = {role: key for role, key in roles.items() if role != "subject"}
    if others and all(key in subject.companions for key in others.values()):
        # Paired by round: the companions ran right before each round of the subject.
        per_round = []
        for index, rounds in subject.by_pass.items():
            series = {role: subject.companions[key].get(index, []) for role, key in others.items()}
            for position, value in enumerate(rounds):
                try:
                    sample = {role: figures[position] for role, figures in series.items()}
                    per_round.append(_figure(limit, {"subject": value, **sample}, difference))
                except (IndexError, GuardError):
                    continue
        if per_round:
            what = "differences" if difference else "ratios"
            how = f"paired: median of {len(per_round)} per-round {what}"
            return statistics.median(per_round), parts, how
    # Paired by pass: the figure of each pass that every benchmark ran, then the median.
    common = set.intersection(*(set(results[key].by_pass) for key in roles.values()))
    figures = []
    for index in sorted(common):
        samples = {role: results[key].by_pass[index] for role, key in roles.items()}
        pass_parts = {
            role: statistics.median(values) if difference else min(values)
            for role, values in samples.items()
        }
        try:
            figures.append(_figure(limit, pass_parts, difference))
        except GuardError:
            continue  # a pass where the reference overhead vanished in noise
    if not figures:
        raise GuardError(
            f"{limit.id}: no pass in which {', '.join(dict.fromkeys(roles.values()))} all ran "
            "with a positive reference overhead: the run is too noisy to compare"
        )
    how = f"paired: median of {len(figures)} per-pass {'differences' if difference else 'ratios'}"
    return statistics.median(figures), parts, how


def _with_defaults(parts: dict[str, float]) -> dict[str, float]:
    return {"baseline": 0.0, "reference_baseline": 0.0, **parts}


def _figure(limit: Limit, parts: dict[str, float], difference: bool) -> float:
    if difference:
        return (parts["subject"] - parts["reference"]) / 1e6
    subject = parts["subject"] - parts.get("baseline", 0.0)
    reference = parts["reference"] - parts.get("reference_baseline", 0.0)
    if reference <= 0:
        raise GuardError(
            f"{limit.id}: the reference overhead is not positive "
            f"({limit.reference} {_fmt(parts['reference'])} ns - baseline "
            f"{_fmt(parts.get('reference_baseline', 0.0))} ns): the run is too noisy to compare"
        )
    return subject / reference


def _needed(limit: Limit) -> list[str]:
    if limit.kind == "identity":
        return list(limit.benchmarks)
    names = [limit.subject, limit.reference, limit.baseline, limit.reference_baseline]
    return [name for name in names if name]


def evaluate(
    limits: Iterable[Limit],
    results: dict[str, Measured],
    mode: str,
    default_statistic: str = "min",
    engine: str = "",
) -> list[Outcome]:
    """Evaluate every limit on one run's results.

    ``engine`` is the run's ``flext_ctx_aspects.implementation`` (unknown: empty); a limit of
    the other engine is skipped.
    """
    outcomes = []
    for limit in limits:
        statistic = limit.statistic or default_statistic
        outcome = Outcome(limit=limit, statistic=statistic, threshold=limit.limit_for(mode))
        outcomes.append(outcome)
        if limit.engine and engine and limit.engine != engine:
            outcome.skipped = f"a limit of the {limit.engine} engine; this run measured {engine}"
            continue
        missing = [name for name in _needed(limit) if name not in results]
        if missing:
            if limit.optional:
                outcome.skipped = f"not measured in this run: {', '.join(missing)}"
            else:
                outcome.passed = False
                outcome.message = (
                    f"{limit.id}: benchmark(s) missing from the results: {', '.join(missing)} "
                    f"(renamed or not run?)"
                )
            continue
        if limit.kind == "identity":
            bad = [n for n in limit.benchmarks if results[n].extra_info.get("identity") is not True]
            outcome.value = 0.0 if not bad else 1.0
            outcome.values = {"min": outcome.value, "median": outcome.value}
            if bad:
                outcome.passed = False
                outcome.message = (
                    f"{limit.id}: {limit.title}: not the original object in {', '.join(bad)}"
                )
            continue
        try:
            outcome.values[statistic], outcome.parts, outcome.how = _compute(
                limit, results, statistic
            )
        except GuardError as exc:
            outcome.passed = False
            outcome.message = str(exc)
            continue
        for name in STATISTICS:  # the other figures, for the reader
            if name != statistic:
                try:
                    outcome.values[name] = _compute(limit, results, name)[0]
                except GuardError:
                    continue
        outcome.value = outcome.values[statistic]
        if outcome.threshold is None:
            continue  # reported, not guarded in this mode
        if outcome.value > outcome.threshold:
            outcome.passed = False
            outcome.message = _violation(limit, outcome, mode)
    return outcomes


def _ms(value: float) -> str:
    # Import times are tens of milliseconds; per-function costs are microseconds.
    return f"{value:.1f} ms" if abs(value) >= 1 else f"{value:.3g} ms"


def _violation(limit: Limit, outcome: Outcome, mode: str) -> str:
    parts = outcome.parts
    value = outcome.value if outcome.value is not None else float("nan")
    if limit.kind == "difference_ms":
        detail = (
            f"{limit.subject} {_ms(parts['subject'] / 1e6)} - {limit.reference} "
            f"{_ms(parts['reference'] / 1e6)}"
        )
        measured = _ms(value)
        bound = f"{outcome.threshold:g} ms"
    else:
        detail = (
            f"overhead {_fmt(parts['subject'] - parts['baseline'])} ns "
            f"({limit.subject} {_fmt(parts['subject'])} - {limit.baseline or '0'} "
            f"{_fmt(parts['baseline'])}) / "
            f"{_fmt(parts['reference'] - parts['reference_baseline'])} ns "
            f"({limit.reference} {_fmt(parts['reference'])} - "
            f"{limit.reference_baseline or '0'} {_fmt(parts['reference_baseline'])})"
        )
        measured = f"{value:.3g}x"
        bound = f"{outcome.threshold:g}x"
    if outcome.statistic == "paired":
        detail = f"best-of figures: {detail}"
    return (
        f"{limit.id}: {limit.title}: measured {measured} ({outcome.how}), "
        f"limit {bound} in {mode} mode; {detail}"
    )


# --- command line -----------------------------------------------------------------------------


def format_outcome(outcome: Outcome) -> str:
    limit = outcome.limit
    if outcome.skipped:
        return f"skip  {limit.id}: {outcome.skipped}"
    if not outcome.passed:
        return f"FAIL  {outcome.message}"
    if limit.kind == "identity":
        return f"ok    {limit.id}: {limit.title}: the original object"
    unit = " ms" if limit.kind == "difference_ms" else "x"
    bound = "" if outcome.threshold is None else f" <= {outcome.threshold:g}{unit}"
    others = ", ".join(
        f"{name} {outcome.values[name]:.3g}{unit}" for name in STATISTICS if name in outcome.values
    )
    status = "ok   " if outcome.threshold is not None else "info "
    return f"{status} {limit.id}: {outcome.value:.3g}{unit}{bound}  ({others}) {limit.title}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fail when overhead ratios of one benchmark run cross the committed limits."
    )
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON of one run")
    parser.add_argument(
        "--mode", choices=MODES, default=None, help="which limits apply (default: the run's)"
    )
    parser.add_argument("--thresholds", type=Path, default=DEFAULT_THRESHOLDS)
    parser.add_argument("--statistic", choices=STATISTICS, default=None)
    args = parser.parse_args(argv)
    try:
        results, run = load_results(args.results)
        limits, settings = load_thresholds(args.thresholds)
        mode = args.mode or (run.get("mode") if run.get("mode") in MODES else "short")
        statistic = args.statistic or settings.get("statistic", "min")
        outcomes = evaluate(limits, results, mode, statistic, str(run.get("engine", "")))
    except GuardError as exc:
        print(f"guard: error: {exc}", file=sys.stderr)
        return 2
    run_mode = run.get("mode", "?")
    print(f"overhead guard: {args.results} (run mode {run_mode}), limits: {mode} mode")
    for outcome in outcomes:
        print(format_outcome(outcome))
    failed = [outcome for outcome in outcomes if not outcome.passed]
    if failed:
        print(f"overhead guard: {len(failed)} limit(s) violated", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.message}", file=sys.stderr)
        return 1
    print("overhead guard: all limits hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
