"""Configuration: one test per kind of refusal, each asserting what the message says."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from flext_ctx_aspects.config import (
    AspectSpec,
    Config,
    config_from_json,
    ineffective_entries,
    load_config,
    unmatched_includes,
)
from flext_ctx_aspects.errors import ConfigError


def refused(tables: dict[str, Any], **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(tables, environ=env)
    return str(info.value)


def test_pinned_example_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n'
        "[tool.flext_ctx_aspects.instrument]\n"
        'include = ["shop", "shop.*"]\n'
        'exclude = ["shop.migrations.*"]\n'
        'aspects = ["timed", "with_correlation"]\n',
        encoding="utf-8",
    )
    config = load_config(pyproject, environ={})
    assert config.instrument.include == ("shop", "shop.*")
    assert config.instrument.exclude == ("shop.migrations.*",)
    assert [a.name for a in config.instrument.aspects] == ["timed", "with_correlation"]
    assert config.source == str(pyproject)


def test_standalone_file_holds_the_same_tables(tmp_path: Path) -> None:
    path = tmp_path / "ctx.toml"
    path.write_text(
        '[instrument]\ninclude = ["shop"]\n'
        "aspects = { timed = { min_duration_ms = 5 }, with_correlation = {} }\n"
        '[service]\nname = "shop"\nversion = "1.0"\n'
        '[output]\ntrace = "trace.json"\n',
        encoding="utf-8",
    )
    config = load_config(path, environ={})
    assert config.instrument.aspects == (
        AspectSpec("timed", {"min_duration_ms": 5}),
        AspectSpec("with_correlation", {}),
    )
    assert config.service.name == "shop"
    assert config.output.trace == "trace.json"


def test_config_env_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ctx.toml"
    path.write_text('[instrument]\ninclude = ["shop"]\n', encoding="utf-8")
    assert load_config(None, environ={"FLEXT_CTX_CONFIG": str(path)}).source == str(path)
    message = refused_none()
    assert "FLEXT_CTX_CONFIG" in message


def refused_none() -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={})
    return str(info.value)


def test_json_form_round_trips() -> None:
    config = load_config(
        {
            "instrument": {
                "include": ["shop.*"],
                "aspects": {"timed": {"min_duration_ms": 2.5}, "service": {}},
                "rules": [{"match": "shop.api:Cart.*", "aspects": ["with_correlation"]}],
            },
            "service": {"name": "shop"},
            "sinks": ["stats"],
        },
        environ={},
    )
    again = config_from_json(config.to_json())
    assert again == config
    assert isinstance(again, Config)


def test_unknown_key_suggests_the_close_one() -> None:
    message = refused({"instrument": {"inclde": ["shop"]}})
    assert message.startswith("`inclde` in the mapping [instrument] must be one of the known keys")
    assert "did you mean 'include'?" in message


def test_unknown_top_level_table() -> None:
    assert "did you mean 'service'?" in refused({"servce": {"name": "x"}})


def test_unknown_key_in_pyproject_names_file_and_table(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.flext_ctx_aspects.instrument]\nexlude = ["x"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(pyproject, environ={})
    assert str(info.value).startswith(
        f"`exlude` in {pyproject} [tool.flext_ctx_aspects.instrument] must be one of the known"
    )
    assert "did you mean 'exclude'?" in str(info.value)
    assert info.value.key == "exlude"


def test_wrong_type_says_expected_and_found() -> None:
    message = refused({"instrument": {"include": "shop"}})
    assert message == (
        "`include` in the mapping [instrument] must be a list of module-name globs "
        "(got 'shop', a str)"
    )


def test_bad_glob_and_file_path_instead_of_module() -> None:
    assert "(got 'shop[api')" in refused({"instrument": {"include": ["shop[api"]}})
    message = refused({"instrument": {"exclude": ["shop/migrations.py"]}})
    assert "`exclude[0]`" in message
    assert "did you mean 'shop.migrations'?" in message


def test_string_false_is_never_true() -> None:
    message = refused({"instrument": {"include_tests": "false"}})
    assert "must be true or false (got 'false', a str)" in message
    message = refused({"instrument": {"aspects": {"timed": {"keep_errors": "false"}}}})
    assert "[instrument.aspects.timed]" in message


def test_unknown_aspect_and_option() -> None:
    assert "did you mean 'timed'?" in refused({"instrument": {"aspects": ["timd"]}})
    message = refused({"instrument": {"aspects": {"timed": {"min_duraton_ms": 1}}}})
    assert "`min_duraton_ms`" in message
    assert "did you mean 'min_duration_ms'?" in message


def test_aspect_option_value_refused_by_the_decorator() -> None:
    message = refused({"instrument": {"aspects": {"timed": {"min_duration_ms": -1}}}})
    assert "`min_duration_ms`" in message
    assert "a number >= 0.0 (got -1, an int)" in message
    assert "(got '5', a str)" in refused(
        {"instrument": {"aspects": {"timed": {"min_duration_ms": "5"}}}}
    )


def test_service_aspect_needs_a_name() -> None:
    message = refused({"instrument": {"aspects": ["service"]}})
    assert "`aspects.service`" in message
    assert "[service] table" in message
    config = load_config(
        {"instrument": {"aspects": ["service"]}, "service": {"name": "shop"}}, environ={}
    )
    assert config.instrument.aspects == (AspectSpec("service"),)


def test_rule_shape() -> None:
    message = refused({"instrument": {"rules": [{"match": "shop", "aspects": []}]}})
    assert "[instrument.rules[0]]" in message
    assert "'module-glob:qualname-glob'" in message
    assert "`aspects`" in refused({"instrument": {"rules": [{"match": "shop:f"}]}})
    assert "did you mean 'aspects'?" in refused(
        {"instrument": {"rules": [{"match": "shop:f", "aspect": []}]}}
    )


def test_switches_are_type_checked() -> None:
    assert "from 0.0 to 1.0 (got 2, an int)" in refused({"sample_rate": 2})
    assert "one of stats, logging (got 'stat')" in refused({"sinks": ["stat"]})
    assert "(got 'yes', a str)" in refused({"otel": {"enabled": "yes"}})
    assert "(got 'no', a str)" in refused({"disabled": "no"})


def test_environment_overrides() -> None:
    config = load_config(
        {"disabled": True, "sample_rate": 1.0},
        environ={
            "FLEXT_CTX_DISABLED": "false",
            "FLEXT_CTX_SINKS": "stats, logging",
            "FLEXT_CTX_MIN_DURATION_MS": "2.5",
            "FLEXT_CTX_SAMPLE_RATE": "0.25",
        },
    )
    assert config.disabled is False
    assert config.sinks == ("stats", "logging")
    assert config.min_duration_ms == 2.5
    assert config.sample_rate == 0.25


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FLEXT_CTX_DISABLED", "maybe", "1/true/yes/on or 0/false/no/off (got 'maybe')"),
        ("FLEXT_CTX_SINKS", "stats,stat", "one of stats, logging (got 'stat')"),
        ("FLEXT_CTX_MIN_DURATION_MS", "fast", "a number (got 'fast')"),
        ("FLEXT_CTX_SAMPLE_RATE", "1.5", "a number from 0.0 to 1.0 (got 1.5, a float)"),
    ],
)
def test_environment_values_are_checked(variable: str, value: str, expected: str) -> None:
    message = refused({}, **{variable: value})
    assert message.startswith(f"`{variable if variable != 'FLEXT_CTX_SINKS' else 'sinks[1]'}`")
    assert "the environment" in message
    assert expected in message


def test_unreadable_file_and_bad_toml(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="a readable TOML file"):
        load_config(missing, environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[instrument\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(broken, environ={})


def test_pyproject_without_the_table(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.flext_ctx_aspect.instrument]\ninclude = []\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(pyproject, environ={})
    assert "[tool.flext_ctx_aspects]" in str(info.value)
    assert "found [tool.flext_ctx_aspect], a misspelling?" in str(info.value)


def test_includes_that_match_nothing_are_reported() -> None:
    config = load_config(
        {"instrument": {"include": ["json", "json.*", "no_such_pkg_xyz.*", "*"]}}, environ={}
    )
    assert unmatched_includes(config) == ["no_such_pkg_xyz.*"]


def test_duplicate_aspect_is_refused() -> None:
    assert "each aspect at most once (got 'timed' again)" in refused(
        {"instrument": {"aspects": ["timed", "timed"]}}
    )


def test_checking_includes_imports_nothing(make_package: Any) -> None:
    package = make_package({"sub/__init__.py": "", "sub/leaf.py": "import sys\n"})
    config = load_config(
        {"instrument": {"include": [f"{package}.sub.leaf", f"{package}.sub.none", f"{package}.*"]}},
        environ={},
    )
    assert unmatched_includes(config) == [f"{package}.sub.none"]
    assert package not in sys.modules
    assert f"{package}.sub" not in sys.modules


def test_a_rule_no_include_reaches_is_reported() -> None:
    config = load_config(
        {
            "instrument": {
                "include": ["json", "json.*"],
                "rules": [
                    {"match": "jsn.decoder:*", "aspects": []},
                    {"match": "json.*:*", "aspects": []},
                ],
            }
        },
        environ={},
    )
    problems = [str(p) for p in ineffective_entries(config)]
    expected = (
        "`match` in the mapping [instrument.rules[0]] must be a module the include globs "
        "select (got 'jsn.decoder:*', whose module no include glob matches)"
    )
    assert problems == [expected]
