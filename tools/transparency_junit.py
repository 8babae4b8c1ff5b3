"""Per-test outcomes of a pytest junit XML file, and the comparison of two of them.

Used by ``tools/transparency.py`` to prove that a third-party test suite behaves the same
with and without instrumentation: the two runs must give every test the same outcome.
Kept apart from the harness (which downloads, installs and runs) so it is small, pure and
unit tested (``tests/test_transparency_tool.py``).

Outcomes are read the way pytest's ``--junitxml`` writes them: a ``<testcase>`` with no child
element is ``passed``; ``<failure>`` is ``failed``; ``<error>`` is ``error``; ``<skipped
type="pytest.xfail">`` is ``xfailed`` and any other ``<skipped>`` is ``skipped`` (a strict
xpass is written as a ``<failure>``). A test id is ``classname::name`` (``name`` carries the
parametrization, ``test_x[1-a]``). Pytest writes a second ``<testcase>`` for the same test when
its teardown errors after the call failed; such repeated ids keep all their outcomes, in order.
Messages, durations and captured output are ignored: only outcomes are compared.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
_XFAIL_TYPE = "pytest.xfail"


class JunitError(ValueError):
    """A junit XML file that cannot be read as pytest results."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of comparing the outcomes of two runs of one suite.

    Attributes:
        plain: outcome counts of the first (plain) run, by outcome name.
        instrumented: outcome counts of the second (instrumented) run.
        changed: ``(test id, plain outcome, instrumented outcome)`` for every test whose
            outcome differs, sorted by id.
        only_plain: ids present in the plain run only.
        only_instrumented: ids present in the instrumented run only.
    """

    plain: dict[str, int]
    instrumented: dict[str, int]
    changed: tuple[tuple[str, str, str], ...]
    only_plain: tuple[str, ...]
    only_instrumented: tuple[str, ...]

    @property
    def identical(self) -> bool:
        """True when both runs ran the same tests with the same outcomes."""
        return not (self.changed or self.only_plain or self.only_instrumented)

    def lines(self) -> list[str]:
        """Return the human-readable summary: counts both ways, then every difference."""
        out = [
            f"plain:        {_format_counts(self.plain)}",
            f"instrumented: {_format_counts(self.instrumented)}",
        ]
        out.extend(f"  CHANGED {tid}: {a} -> {b}" for tid, a, b in self.changed)
        out.extend(f"  MISSING under instrumentation: {tid}" for tid in self.only_plain)
        out.extend(f"  EXTRA under instrumentation: {tid}" for tid in self.only_instrumented)
        verdict = "identical" if self.identical else f"DIFFERENT ({self.difference_count} tests)"
        out.append(f"per-test outcomes: {verdict}")
        return out

    @property
    def difference_count(self) -> int:
        """Number of tests that differ between the runs, in any way."""
        return len(self.changed) + len(self.only_plain) + len(self.only_instrumented)


def _format_counts(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{counts.get(name, 0)} {name}" for name in OUTCOMES)
    return f"{total} tests: {parts}"


def _outcome(case: ET.Element) -> str:
    # pytest writes at most one result child per <testcase> (system-out/err are not results).
    for child in case:
        if child.tag == "failure":
            return "failed"
        if child.tag == "error":
            return "error"
        if child.tag == "skipped":
            return "xfailed" if child.get("type") == _XFAIL_TYPE else "skipped"
    return "passed"


def read_outcomes(path: Path) -> dict[str, str]:
    """Read the per-test outcomes of a pytest junit XML file.

    Args:
        path: the file ``pytest --junitxml`` wrote.

    Returns:
        Test id (``classname::name``) to outcome (one of `OUTCOMES`); a test id that
        appears more than once maps to its outcomes joined by ``+`` in file order
        (``failed+error``).

    Raises:
        JunitError: the file is missing, is not XML, or holds no ``<testsuite>``.
    """
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - a local file pytest wrote
    except FileNotFoundError:
        raise JunitError(f"{path}: junit XML file not found (did the test run start?)") from None
    except ET.ParseError as exc:
        raise JunitError(f"{path}: not a junit XML file ({exc})") from None
    if root.tag not in {"testsuites", "testsuite"}:
        raise JunitError(f"{path}: expected a <testsuites> or <testsuite> root, got <{root.tag}>")
    outcomes: dict[str, list[str]] = {}
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcomes.setdefault(test_id, []).append(_outcome(case))
    return {test_id: "+".join(found) for test_id, found in outcomes.items()}


def count_outcomes(outcomes: dict[str, str]) -> dict[str, int]:
    """Count outcomes as pytest's summary line does: a repeated id counts each of its outcomes."""
    counts = Counter(part for outcome in outcomes.values() for part in outcome.split("+"))
    return {name: counts.get(name, 0) for name in OUTCOMES}


def compare_outcomes(plain: dict[str, str], instrumented: dict[str, str]) -> Comparison:
    """Compare the outcomes of a plain and an instrumented run of the same suite.

    Args:
        plain: outcomes of the plain run (`read_outcomes`).
        instrumented: outcomes of the instrumented run.

    Returns:
        The `Comparison`; its ``identical`` is the verdict.
    """
    changed = tuple(
        (test_id, outcome, instrumented[test_id])
        for test_id, outcome in sorted(plain.items())
        if test_id in instrumented and instrumented[test_id] != outcome
    )
    return Comparison(
        plain=count_outcomes(plain),
        instrumented=count_outcomes(instrumented),
        changed=changed,
        only_plain=tuple(sorted(plain.keys() - instrumented.keys())),
        only_instrumented=tuple(sorted(instrumented.keys() - plain.keys())),
    )


def compare_files(plain: Path, instrumented: Path) -> Comparison:
    """Read two junit XML files and compare their per-test outcomes.

    Raises:
        JunitError: either file cannot be read.
    """
    return compare_outcomes(read_outcomes(plain), read_outcomes(instrumented))
