"""The transparency harness's verdicts: junit outcome comparison and report activity check.

The comparison is what makes the CI transparency step able to fail, so it is tested on small
hand-made junit files shaped the way pytest's ``--junitxml`` writes them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import transparency  # noqa: E402
import transparency_junit as junit  # noqa: E402


def _junit(tmp_path: Path, name: str, cases: str) -> Path:
    path = tmp_path / name
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="1">{cases}'
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    return path


PASSED = '<testcase classname="tests.test_a" name="test_ok" time="0.001" />'
FAILED = (
    '<testcase classname="tests.test_a" name="test_ok" time="0.001">'
    '<failure message="assert 1 == 2">trace</failure></testcase>'
)
SKIPPED = (
    '<testcase classname="tests.test_a" name="test_skip" time="0.0">'
    '<skipped type="pytest.skip" message="no network">reason</skipped></testcase>'
)
XFAILED = (
    '<testcase classname="tests.test_a" name="test_xfail" time="0.0">'
    '<skipped type="pytest.xfail" message="known" /></testcase>'
)
ERRORED = (
    '<testcase classname="tests.test_a" name="test_fixture" time="0.0">'
    '<error message="failed on setup with &quot;boom&quot;">trace</error></testcase>'
)
PARAM_1 = '<testcase classname="tests.test_p" name="test_p[1-a]" time="0.0" />'
PARAM_2 = '<testcase classname="tests.test_p" name="test_p[2-b]" time="0.0" />'
PARAM_2_FAILED = (
    '<testcase classname="tests.test_p" name="test_p[2-b]" time="0.0">'
    '<failure message="x">t</failure></testcase>'
)


def test_reads_every_outcome_kind(tmp_path: Path) -> None:
    path = _junit(tmp_path, "a.xml", PASSED + SKIPPED + XFAILED + ERRORED + PARAM_1)
    assert junit.read_outcomes(path) == {
        "tests.test_a::test_ok": "passed",
        "tests.test_a::test_skip": "skipped",
        "tests.test_a::test_xfail": "xfailed",
        "tests.test_a::test_fixture": "error",
        "tests.test_p::test_p[1-a]": "passed",
    }
    assert junit.read_outcomes(_junit(tmp_path, "b.xml", FAILED)) == {
        "tests.test_a::test_ok": "failed"
    }


def test_identical_runs_compare_identical(tmp_path: Path) -> None:
    cases = PASSED + SKIPPED + XFAILED + ERRORED + PARAM_1 + PARAM_2
    # Timings and messages differ between runs; only outcomes count.
    other = cases.replace('time="0.001"', 'time="9.5"').replace("no network", "other reason")
    result = junit.compare_files(_junit(tmp_path, "p.xml", cases), _junit(tmp_path, "i.xml", other))
    assert result.identical
    assert result.plain == result.instrumented
    assert result.plain == {"passed": 3, "failed": 0, "error": 1, "skipped": 1, "xfailed": 1}
    assert result.lines()[-1] == "per-test outcomes: identical"


def test_a_changed_outcome_is_a_difference(tmp_path: Path) -> None:
    result = junit.compare_files(
        _junit(tmp_path, "p.xml", PASSED + SKIPPED), _junit(tmp_path, "i.xml", FAILED + SKIPPED)
    )
    assert not result.identical
    assert result.changed == (("tests.test_a::test_ok", "passed", "failed"),)
    assert result.plain["passed"] == 1
    assert result.instrumented["failed"] == 1
    assert "  CHANGED tests.test_a::test_ok: passed -> failed" in result.lines()


def test_xfail_turning_into_skip_is_a_difference(tmp_path: Path) -> None:
    result = junit.compare_files(
        _junit(tmp_path, "p.xml", XFAILED),
        _junit(tmp_path, "i.xml", XFAILED.replace('type="pytest.xfail"', 'type="pytest.skip"')),
    )
    assert result.changed == (("tests.test_a::test_xfail", "xfailed", "skipped"),)


def test_a_missing_test_is_a_difference(tmp_path: Path) -> None:
    result = junit.compare_files(
        _junit(tmp_path, "p.xml", PASSED + SKIPPED), _junit(tmp_path, "i.xml", PASSED)
    )
    assert not result.identical
    assert result.only_plain == ("tests.test_a::test_skip",)
    assert result.only_instrumented == ()
    assert result.difference_count == 1
    assert "  MISSING under instrumentation: tests.test_a::test_skip" in result.lines()


def test_an_extra_test_is_a_difference(tmp_path: Path) -> None:
    result = junit.compare_files(
        _junit(tmp_path, "p.xml", PASSED), _junit(tmp_path, "i.xml", PASSED + SKIPPED)
    )
    assert result.only_instrumented == ("tests.test_a::test_skip",)
    assert not result.identical


def test_parametrized_ids_are_compared_one_by_one(tmp_path: Path) -> None:
    result = junit.compare_files(
        _junit(tmp_path, "p.xml", PARAM_1 + PARAM_2),
        _junit(tmp_path, "i.xml", PARAM_1 + PARAM_2_FAILED),
    )
    assert result.changed == (("tests.test_p::test_p[2-b]", "passed", "failed"),)
    assert result.plain == {"passed": 2, "failed": 0, "error": 0, "skipped": 0, "xfailed": 0}


def test_a_repeated_id_keeps_every_outcome(tmp_path: Path) -> None:
    # pytest writes a second <testcase> when teardown errors after a failed call.
    teardown = FAILED.replace("<failure", "<error").replace("</failure>", "</error>")
    plain = junit.read_outcomes(_junit(tmp_path, "p.xml", FAILED + teardown))
    assert plain == {"tests.test_a::test_ok": "failed+error"}
    assert junit.count_outcomes(plain)["failed"] == 1
    assert junit.count_outcomes(plain)["error"] == 1
    result = junit.compare_outcomes(plain, {"tests.test_a::test_ok": "failed"})
    assert result.changed == (("tests.test_a::test_ok", "failed+error", "failed"),)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("<html>", "not a junit XML file"), ("<html/>", "<html>")],
)
def test_unreadable_junit_files_are_refused(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "x.xml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(junit.JunitError, match=message):
        junit.read_outcomes(path)


def test_report_activity_thresholds(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    operations = [{"name": f"pkg.f{i}", "count": 10} for i in range(100)]
    report.write_text(json.dumps({"operations": [*operations, {"name": "pkg.never", "count": 0}]}))
    assert transparency.check_report(report, 1000, 100)[0]
    ok, line = transparency.check_report(report, 1001, 100)
    assert not ok
    assert "1000 calls over 100 wrapped functions" in line
    assert not transparency.check_report(report, 1000, 101)[0]
    report.write_text("{}")
    assert not transparency.check_report(report, 0, 0)[0]
    assert not transparency.check_report(tmp_path / "missing.json", 0, 0)[0]


def test_suites_file_is_valid_and_pinned() -> None:
    suites = transparency.load_suites(transparency.DEFAULT_SUITES)
    assert len(suites) >= 3
    for suite in suites.values():
        name, version = suite.requirement.split("==")
        assert name
        assert version[0].isdigit()
        assert suite.include
        assert all("==" in req for req in suite.test_requires)


def test_suites_file_errors_name_the_table_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text('[suites.x]\nrequirement = "toolz"\ninclude = ["toolz"]\n')
    with pytest.raises(transparency.SetupError, match=r"\[suites\.x\]: `requirement` must be"):
        transparency.load_suites(bad)
    bad.write_text('[suites.x]\nrequirement = "toolz==1"\ninclude = "toolz"\n')
    with pytest.raises(transparency.SetupError, match="`include` must be a list of strings"):
        transparency.load_suites(bad)


def test_compare_verb_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = _junit(tmp_path, "p.xml", PASSED)
    assert transparency.main(["compare", str(same), str(same)]) == 0
    changed = _junit(tmp_path, "i.xml", FAILED)
    assert transparency.main(["compare", str(same), str(changed)]) == 1
    assert "passed -> failed" in capsys.readouterr().out
