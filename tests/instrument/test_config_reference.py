"""docs/config-reference.md: every TOML example loads, and every accepted key is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flext_ctx_aspects import config as config_module
from flext_ctx_aspects.config import ENVIRONMENT_OVERRIDES, load_config

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"
TEXT = PAGE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```toml\n(.*?)^```", TEXT, re.DOTALL | re.MULTILINE)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_example_is_a_valid_configuration(block: str, tmp_path: Path) -> None:
    name = "pyproject.toml" if "[tool." in block else "ctx.toml"
    path = tmp_path / name
    path.write_text(block, encoding="utf-8")
    config = load_config(path, environ={})
    assert config.source == str(path)


@pytest.mark.parametrize(
    "key",
    sorted(
        {
            *config_module._TOP_KEYS,
            *config_module._INSTRUMENT_KEYS,
            *config_module._RULE_KEYS,
            *config_module._SERVICE_KEYS,
            *config_module._OUTPUT_KEYS,
            *config_module._OTEL_KEYS,
            *ENVIRONMENT_OVERRIDES,
            config_module.CONFIG_ENV,
        }
    ),
)
def test_every_key_is_documented(key: str) -> None:
    assert f"`{key}`" in TEXT
