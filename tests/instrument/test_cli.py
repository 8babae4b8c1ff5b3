"""``flext-ctx plan`` and ``flext-ctx check-config``, run as the user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flext_ctx_aspects

SOURCE = str(Path(flext_ctx_aspects.__file__).resolve().parent.parent)


def flext_ctx(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), SOURCE])}
    env.pop("FLEXT_CTX_CONFIG", None)
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "flext_ctx_aspects", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _wrapt_pure() -> bool:
    from flext_ctx_aspects._engine import _WRAPT_COMPILED

    return not _WRAPT_COMPILED


@pytest.fixture
def project(tmp_path: Path) -> Path:
    package = tmp_path / "shopcli"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "migrations" / "__init__.py").write_text("", encoding="utf-8")
    (package / "migrations" / "m1.py").write_text("def up():\n    pass\n", encoding="utf-8")
    (package / "api.py").write_text(
        textwrap.dedent(
            """\
            import sys
            from os.path import join

            def checkout(cart):
                return cart

            async def pay(amount):
                return amount

            def caller():
                yield sys._getframe(1)

            def who_called():
                return sys._getframe(1).f_code.co_name

            class Cart:
                @classmethod
                def empty(cls):
                    return cls()

                def __repr__(self):
                    return "Cart()"
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "shopcli"

            [tool.flext_ctx_aspects.instrument]
            include = ["shopcli", "shopcli.*"]
            exclude = ["shopcli.migrations.*"]
            aspects = ["timed", "with_correlation"]
            """
        ),
        encoding="utf-8",
    )
    return tmp_path


def test_plan_lists_what_and_why(project: Path) -> None:
    result = flext_ctx("plan", "--config", "pyproject.toml", cwd=project)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["instrument", "shopcli.api", "checkout", "function", "timed,", "with_correlation"] in (
        lines
    )
    assert ["instrument", "shopcli.api", "pay", "coroutine", "timed,", "with_correlation"] in lines
    assert ["instrument", "shopcli.api", "Cart.empty", "classmethod", "timed,",
            "with_correlation"] in lines  # fmt: skip
    text = result.stdout
    assert ["skip", "shopcli.api", "join", "imported", "from", "posixpath"] in lines
    assert "join" in text
    assert "imported from posixpath" in text
    assert "caller" in text
    assert "frame-sensitive (_getframe)" in text  # a generator: its driver is a Python frame
    # A sync function gets a compiled driver, which adds no frame (the CLI runs with this
    # process's implementation: FLEXT_CTX_PURE_PYTHON is inherited).
    frameless = flext_ctx_aspects.implementation == "compiled" and not _wrapt_pure()
    who_called = ["instrument", "shopcli.api", "who_called", "function", "timed,",
                  "with_correlation"]  # fmt: skip
    assert (who_called in lines) is frameless
    assert "Cart.__repr__" in text
    assert "dunder" in text
    assert ["skip-module", "shopcli.migrations.m1", "excluded", "by", "'shopcli.migrations.*'"] in (
        lines
    )
    assert "excluded by" in text
    assert f"{4 if frameless else 3} to instrument" in text


def test_plan_json_and_import(project: Path) -> None:
    result = flext_ctx(
        "plan", "--config", "pyproject.toml", "--import", "shopcli.api", "--format", "json",
        cwd=project,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    selected = {(e["module"], e["qualname"]): e for e in plan["instrument"]}
    assert selected["shopcli.api", "pay"]["kind"] == "coroutine"
    assert selected["shopcli.api", "Cart.empty"]["binding"] == "classmethod"
    assert selected["shopcli.api", "checkout"]["aspects"] == ["timed", "with_correlation"]
    reasons = {(e["module"], e["qualname"]): e["reason"] for e in plan["skip"]}
    assert reasons["shopcli.api", "caller"].startswith("frame-sensitive")


def test_plan_unknown_import_is_a_usage_error(project: Path) -> None:
    result = flext_ctx("plan", "--config", "pyproject.toml", "--import", "nope_xq", cwd=project)
    assert result.returncode == 2
    assert "nope_xq" in result.stderr


def test_check_config_prints_resolved(project: Path) -> None:
    result = flext_ctx("check-config", "pyproject.toml", cwd=project)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert resolved["source"] == "pyproject.toml"
    assert resolved["instrument"]["aspects"] == {"timed": {}, "with_correlation": {}}
    assert resolved["instrument"]["functions"] == ["*"]


def test_check_config_error_exit_2_message_on_stderr(project: Path) -> None:
    bad = project / "bad.toml"
    bad.write_text('[instrument]\ninclde = ["x"]\n', encoding="utf-8")
    result = flext_ctx("check-config", "bad.toml", cwd=project)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("flext-ctx: error: `inclde` in bad.toml [instrument]")
    assert "did you mean 'include'?" in result.stderr


def test_strict_include_matching_nothing(project: Path) -> None:
    path = project / "strict.toml"
    path.write_text('[instrument]\ninclude = ["ghost_pkg"]\nstrict = true\n', encoding="utf-8")
    result = flext_ctx("check-config", "strict.toml", cwd=project)
    assert result.returncode == 2
    assert "ghost_pkg" in result.stderr
    path.write_text('[instrument]\ninclude = ["ghost_pkg"]\n', encoding="utf-8")
    result = flext_ctx("check-config", "strict.toml", cwd=project)
    assert result.returncode == 0
    assert "warning" in result.stderr
    assert "ghost_pkg" in result.stderr


def test_usage_errors(project: Path) -> None:
    assert flext_ctx(cwd=project).returncode == 2
    result = flext_ctx("plan", cwd=project)  # no --config and no FLEXT_CTX_CONFIG
    assert result.returncode == 2
    assert "FLEXT_CTX_CONFIG" in result.stderr
    result = flext_ctx("check-config", cwd=project, FLEXT_CTX_CONFIG="pyproject.toml")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "pyproject.toml"
    result = flext_ctx("--help", cwd=project)
    assert result.returncode == 0
    assert "plan" in result.stdout
    assert "check-config" in result.stdout
